"""The result sink: a statement's CSV pages, converted column-wise, delivered as the job asked.

* ``inline`` (and ``auto`` for a small ``json`` result): the rows, as the JSON array text the results response
  serves, go on the job record itself (:attr:`JobResult.inline_rows`). Nothing is written to S3.
* ``s3`` (and ``auto`` past the inline limits, or for a file format): files under ``<tenant>/<job_id>/``:
  ``part-00000.<ext>`` ... split every ``part_max_rows`` rows (``csv`` → ``.csv.gz``, ``jsonl`` and ``json`` →
  ``.jsonl.gz``, one JSON object per row, ``parquet`` → ``.parquet``, snappy inside), and ``manifest.json``
  (columns, counts, the parts).
* ``export``: the warehouse wrote the files (UNLOAD, :mod:`spectra.delivery`); :meth:`ResultSink.collect_export`
  lists them in the same ``manifest.json``.

An ``auto`` result is held in memory until it passes the inline limits (rows, and bytes of uncompressed JSON), so a
small one costs no S3 request; past them the held pages go to the files and the rest streams after them. Pages are
parsed by pyarrow (:mod:`spectra.result_pages`) and encoded column-wise (:mod:`spectra.result_encoding`), one page
at a time, through smart-open's multipart uploads, so memory is bounded by a page, not by the result. A ``row_limit``
stops the reading once it is reached: the pages after it are never fetched.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from events import Delivery, ResultFormat
from spectra.errors import DuplicateColumns, ResultTooLarge, ResultUnconvertible
from spectra.jobs import JobResult, ResultFile
from spectra.result_encoding import (
    has_exponent_decimals,
    has_special_floats,
    json_arrays,
    json_lines,
    parquet_times_of_day,
    postgres_booleans,
    postgres_datetimes,
    postgres_floats,
    unique_names,
)
from spectra.result_pages import TIME_OF_DAY_TYPES, PageReader, arrow_type
from spectra.warehouse import Column

__all__ = ["NO_STORE", "ResultSink", "S3Upload", "arrow_type", "inline_rows", "manifest_document"]

#: The Cache-Control S3 answers a presigned GET with (signed into the URL as ``response-cache-control``). S3 sends a
#: file with Last-Modified and no Cache-Control, which RFC 9111's heuristics let any cache keep fresh for a tenth of
#: the file's age (hours, for a day-old result) and hand to the URL's next holder without asking S3: a tenant's rows
#: on a proxy's disk, and a bearer URL that outlived its few minutes.
NO_STORE = "no-store"
#: The most parts an export may have: every results answer links each part with a presigned URL, and on AWS each URL
#: carries the function role's session token (about 1.6 KB a link), so 3,000 links take about 5 MB of Lambda's 6 MB
#: answer (and about 210 KB of the job record's 400 KB). UNLOAD writes parts of up to 100 MB: about 300 GB.
MAX_EXPORT_FILES = 3000

_EXTENSIONS = {
    ResultFormat.CSV: ".csv.gz",
    ResultFormat.JSONL: ".jsonl.gz",
    ResultFormat.JSON: ".jsonl.gz",
    ResultFormat.PARQUET: ".parquet",
}
#: What a file's URL answers as its Content-Type: the bytes of CSV and JSON Lines files are gzip (labelled text/csv,
#: a client that trusted the label read binary), and are not sent with Content-Encoding, which would have HTTP
#: clients unpack them behind the caller's back while the name still says .gz.
_CONTENT_TYPES = {
    ResultFormat.CSV: "application/gzip",
    ResultFormat.JSONL: "application/gzip",
    ResultFormat.JSON: "application/gzip",
    ResultFormat.PARQUET: "application/vnd.apache.parquet",
}


class S3Upload(io.RawIOBase):
    """A write-only S3 object: small objects go up in one PutObject, large ones stream as a multipart upload.

    Most query results are small, and a multipart upload costs three requests where one will do. Bytes are held
    until ``MULTIPART_THRESHOLD``; past it, a smart-open multipart writer takes over, so memory stays bounded.
    ``count`` is the size that reached S3, known without asking S3.
    """

    MULTIPART_THRESHOLD = 8 * 1024 * 1024

    def __init__(self, s3_client, bucket: str, key: str, content_type: str) -> None:
        self._s3, self._bucket, self._key, self._content_type = s3_client, bucket, key, content_type
        self._buffer = bytearray()
        self._multipart: IO[bytes] | None = None
        self._given_up = False
        self.count = 0

    def give_up(self) -> None:
        """Write nothing: :meth:`close` then drops what it holds, or ends its multipart upload without completing
        it, so an object its writer stopped short of (an error part-way) never replaces the one at its key."""
        self._given_up = True

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        size = len(data)
        self.count += size
        if self._multipart is not None:
            self._multipart.write(data)
            return size
        self._buffer += data
        if len(self._buffer) >= self.MULTIPART_THRESHOLD:
            import smart_open
            import smart_open.s3

            # botocore has already retried a connection that failed; smart_open's own retry of it (6 times, 10 s apart)
            # spent a minute of the function and raised a bare OSError, which hid that the trouble was passing
            smart_open.s3.RETRY.exceptions = []
            self._multipart = smart_open.open(
                f"s3://{self._bucket}/{self._key}",
                "wb",
                compression="disable",
                transport_params={
                    "client": self._s3,
                    "min_part_size": self.MULTIPART_THRESHOLD,  # smart-open's default buffers 50 MB per upload
                    "client_kwargs": {"S3.Client.create_multipart_upload": {"ContentType": self._content_type}},
                },
            )
            self._multipart.write(bytes(self._buffer))
            self._buffer.clear()
        return size

    def close(self) -> None:
        if self.closed:
            return
        if self._given_up:
            self._buffer.clear()
            if self._multipart is not None:
                self._multipart.terminate()
        elif self._multipart is not None:
            self._multipart.close()
        else:
            self._s3.put_object(
                Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer), ContentType=self._content_type
            )
        super().close()


class _PartWriter:
    """One part file: Arrow tables in, the job's format out to S3; ``close`` finishes the object."""

    def __init__(self, s3_client, bucket: str, key: str, fmt: ResultFormat) -> None:
        self.key = key
        self.rows = 0
        self._fmt = fmt
        self._counter = S3Upload(s3_client, bucket, key, _CONTENT_TYPES[fmt])
        self._parquet = None
        self._csv_header_written = False
        if fmt is ResultFormat.PARQUET:
            self._stream: IO[bytes] = self._counter
        else:
            self._stream = gzip.GzipFile(fileobj=self._counter, mode="wb", compresslevel=6)

    def accepts(self, schema) -> bool:
        """Parquet fixes a file's schema with its first table; the CSV and JSON writers take any table."""
        return self._parquet is None or self._parquet.schema.equals(schema)

    def write(self, table) -> None:
        import pyarrow.parquet as pq

        if self._fmt is ResultFormat.PARQUET:
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._stream, table.schema, compression="snappy")
            self._parquet.write_table(table)
        elif self._fmt is ResultFormat.CSV:
            self._write_csv(table)
        else:
            for buffer in json_lines(table):
                self._stream.write(buffer)
        self.rows += table.num_rows

    def _write_csv(self, table) -> None:
        """pyarrow's CSV writer, page by page (a page read as text may have other column types than the last);
        booleans as ``t`` / ``f``, and only a page with NaN, an infinity or a tiny decimal takes a detour to spell
        them as PostgreSQL does."""
        import pyarrow.csv as pacsv

        options = pacsv.WriteOptions(include_header=not self._csv_header_written)
        self._csv_header_written = True
        table = postgres_datetimes(postgres_booleans(table))
        if has_special_floats(table) or has_exponent_decimals(table):
            text = io.BytesIO()
            pacsv.write_csv(table, text, write_options=options)
            self._stream.write(postgres_floats(text.getvalue()))
        else:
            pacsv.write_csv(table, self._stream, write_options=options)

    def close(self, schema) -> ResultFile:
        import pyarrow.parquet as pq

        if self._fmt is ResultFormat.PARQUET:
            writer = self._parquet or pq.ParquetWriter(self._stream, schema, compression="snappy")
            writer.close()
        elif self._fmt is ResultFormat.CSV and not self._csv_header_written:
            self._write_csv(schema.empty_table())  # an empty result is still a CSV file with its header line
        if self._stream is not self._counter:
            self._stream.close()
        self._counter.close()
        return ResultFile(key=self.key, rows=self.rows, bytes=self._counter.count)


class _Parts:
    """The part files of one result, a new one every ``max_rows`` rows (or when a Parquet schema changes).
    ``times_of_day``: the columns that are the warehouse's TIME, which a Parquet file holds as times of day."""

    def __init__(
        self,
        s3_client,
        bucket: str,
        prefix: str,
        fmt: ResultFormat,
        schema,
        max_rows: int,
        times_of_day: frozenset[str],
    ) -> None:
        self._s3, self._bucket, self._prefix, self._fmt = s3_client, bucket, prefix, fmt
        self._times = times_of_day if fmt is ResultFormat.PARQUET else frozenset()
        self._schema = parquet_times_of_day(schema.empty_table(), self._times).schema
        self._max_rows = max_rows
        self._part: _PartWriter | None = None
        self.files: list[ResultFile] = []

    def write(self, table) -> None:
        table = parquet_times_of_day(table, self._times)
        offset = 0
        while offset < table.num_rows:
            if self._part is not None and not self._part.accepts(table.schema):
                # A page read as text cannot join a Parquet file of typed columns: it starts a part of its own.
                self._close_part()
            if self._part is None:
                key = f"{self._prefix}part-{len(self.files):05d}{_EXTENSIONS[self._fmt]}"
                self._part = _PartWriter(self._s3, self._bucket, key, self._fmt)
            chunk = table.slice(offset, self._max_rows - self._part.rows)
            self._part.write(chunk)
            offset += chunk.num_rows
            if self._part.rows >= self._max_rows:
                self._close_part()

    def close(self) -> list[ResultFile]:
        if self._part is not None or not self.files:
            if self._part is None:  # an empty result is still one readable part
                key = f"{self._prefix}part-00000{_EXTENSIONS[self._fmt]}"
                self._part = _PartWriter(self._s3, self._bucket, key, self._fmt)
            self._close_part()
        return self.files

    def _close_part(self) -> None:
        assert self._part is not None
        self.files.append(self._part.close(self._schema))
        self._part = None


class _Limited:
    """The page tables, cut at ``row_limit``. ``truncated``: rows were left out; ``rows_read``: data rows the pages
    held, or None when reading stopped at the limit (it reads on, only counting, after a guessed header line, so
    completion can still tell that line from data)."""

    def __init__(self, reader: PageReader, row_limit: int | None) -> None:
        self._reader = reader
        self.row_limit = row_limit
        self.truncated = False
        self.rows_read: int | None = 0

    def __iter__(self) -> Iterator:
        delivered = 0
        for table in self._reader:
            self.rows_read = (self.rows_read or 0) + table.num_rows
            room = table.num_rows if self.row_limit is None else self.row_limit - delivered
            if table.num_rows > room:
                self.truncated = True
                if room > 0:
                    delivered += room
                    yield table.slice(0, room)
                if not self._reader.guessed_header:
                    self.rows_read = None
                    return
                continue
            delivered += table.num_rows
            yield table


#: What a page that cannot be converted raises: pyarrow's errors (a malformed page, a value no type takes) and
#: text that is not valid UTF-8.
def _conversion_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    return (pa.ArrowException, UnicodeError, csv.Error)


class ResultSink:
    def __init__(
        self,
        s3_client,
        bucket: str,
        *,
        part_max_rows: int = 1_000_000,
        inline_max_rows: int = 1_000,
        inline_max_bytes: int = 256 * 1024,
    ) -> None:
        self._s3 = s3_client
        self._bucket = bucket
        self._part_max_rows = part_max_rows
        self._inline_max_rows = inline_max_rows
        self._inline_max_bytes = inline_max_bytes

    @staticmethod
    def prefix_for(tenant_id: str, job_id: str) -> str:
        return f"{tenant_id}/{job_id}/"

    def write(
        self,
        *,
        tenant_id: str,
        job_id: str,
        fmt: ResultFormat,
        columns: list[Column],
        csv_pages: Iterable[str],
        header: bool | None = None,
        delivery: Delivery = Delivery.AUTO,
        row_limit: int | None = None,
        total_rows: int | None = None,
        inline_budget: int | None = None,
        affected_rows: int | None = None,
        folder: str = "",
    ) -> JobResult:
        """Deliver the pages as the job's result.

        ``header``: whether the first page starts with a header line (None: a first record equal to the column
        names is taken for one; see :class:`~spectra.result_pages.PageReader`). ``total_rows``: the statement's own
        row count, reported beside a ``row_limit`` cut. ``inline_budget``: the bytes the job record has room for
        beside its SQL and parameters; inline rows never take more than that less the column list, whatever
        ``inline_max_bytes`` allows. ``affected_rows``: the rows a statement without a result set changed (an INSERT,
        UPDATE or DELETE), the result's row count in the answer and in ``manifest.json`` alike. ``folder``: the
        files and ``manifest.json`` go under it, inside the job's prefix (a result written again, see
        :func:`spectra.delivery.collect_result`).

        Raises :class:`~spectra.errors.ResultTooLarge` when ``inline`` cannot hold the rows, and
        :class:`~spectra.errors.ResultUnconvertible` when a page cannot be converted.
        """
        import pyarrow as pa

        prefix = self.prefix_for(tenant_id, job_id) + folder
        sent = [c.name for c in columns]  # as the service names them: a header line repeats these, duplicates included
        columns = [
            Column(name, c.type_name, c.precision, c.scale) for name, c in zip(unique_names(sent), columns, strict=True)
        ]
        schema = pa.schema([pa.field(c.name, arrow_type(c)) for c in columns])
        times_of_day = frozenset(c.name for c in columns if c.type_name.lower() in TIME_OF_DAY_TYPES)
        tables = _Limited(PageReader(csv_pages, sent, schema, header), row_limit)
        if inline_budget is not None:  # the column list shares the job record with the rows (hundreds of long names)
            inline_budget -= len(json.dumps([c.as_dict() for c in columns]).encode())
        max_bytes = self._inline_max_bytes if inline_budget is None else min(self._inline_max_bytes, inline_budget)
        inline = fmt is ResultFormat.JSON and delivery in (Delivery.AUTO, Delivery.INLINE)
        held: list = []  # the tables while they may still go inline
        chunks: list[bytes] = []
        held_rows = held_bytes = 0
        parts: _Parts | None = None

        def to_files() -> _Parts:
            files = _Parts(self._s3, self._bucket, prefix, fmt, schema, self._part_max_rows, times_of_day)
            for held_table in held:
                files.write(held_table)
            held.clear()
            return files

        try:
            for table in tables:
                if inline:
                    chunk = json_arrays(table)
                    held_rows += table.num_rows
                    held_bytes += len(chunk) + (1 if chunk and chunks else 0)
                    if held_rows <= self._inline_max_rows and held_bytes + 2 <= max_bytes:
                        held.append(table)
                        if chunk:
                            chunks.append(chunk)
                        continue
                    if delivery is Delivery.INLINE:
                        raise self._too_large(held_rows, held_bytes + 2, max_bytes, tables, total_rows)
                    inline = False
                    parts = to_files()
                parts = parts or _Parts(self._s3, self._bucket, prefix, fmt, schema, self._part_max_rows, times_of_day)
                parts.write(table)
        except _conversion_errors() as exc:
            raise ResultUnconvertible(f"the result could not be converted to {fmt.value}: {exc}") from exc

        common = dict(
            bucket=self._bucket,
            prefix=prefix,
            columns=[c.as_dict() for c in columns],
            truncated=tables.truncated,
            total_row_count=total_rows if total_rows is not None else tables.rows_read,
            rows_read=tables.rows_read,
        )
        counted = {} if affected_rows is None else {"row_count": affected_rows, "total_row_count": affected_rows}
        if inline:
            text = b"[" + b",".join(chunks) + b"]"
            stored = base64.b64encode(gzip.compress(text, 1)).decode()  # small, and read back soon: favour speed
            # The stored form is held to the room the job record has, not to the JSON's limit: rows that barely
            # compress (random tokens, hashes) take more stored than as JSON, so held to the JSON's limit, 250 KB of
            # JSON (277328 bytes stored) would be refused inline
            if inline_budget is None or len(stored) <= inline_budget:
                return JobResult(
                    **{
                        **common,
                        "manifest_key": None,
                        "files": [],
                        "row_count": held_rows,
                        "bytes": len(text),
                        "inline": True,
                        "delivery": Delivery.INLINE,
                        "inline_rows": stored,
                        **counted,
                    }
                )
            if delivery is Delivery.INLINE:  # room for the JSON, but not once gzipped and base64-encoded
                raise self._too_large(held_rows, len(stored), inline_budget, tables, total_rows, stored=True)
            parts = to_files()
        files = (parts or to_files()).close()
        result = JobResult(
            **{
                **common,
                "manifest_key": f"{prefix}manifest.json",
                "files": files,
                "row_count": sum(f.rows for f in files),
                "bytes": sum(f.bytes for f in files),
                "delivery": Delivery.S3,
                **counted,
            }
        )
        self._put_json(result.manifest_key, manifest_document(job_id, fmt, result))
        return result

    def _too_large(
        self, rows: int, size: int, max_bytes: int, tables: _Limited, total: int | None, *, stored: bool = False
    ) -> ResultTooLarge:
        """What the job fails with. A request that set a ``row_limit`` is told what that limit keeps and to lower
        it: it was told the statement's whole row count and to "set a row_limit", which it had."""
        cut = tables.row_limit
        details: dict[str, int] = {"inline_max_rows": self._inline_max_rows, "inline_max_bytes": max_bytes}
        if rows > self._inline_max_rows:
            kept = min(total, cut) if total is not None and cut is not None else total  # None: more than the most
            over = f"{kept if kept is not None else 'more than ' + str(self._inline_max_rows)} rows"
            limit = f"{self._inline_max_rows} rows"
            lower = f"a row_limit of at most {self._inline_max_rows}"
        else:
            over, limit = f"at least {size} bytes of JSON", f"{max_bytes} bytes"
            if stored:  # the JSON fits inline's limit; gzipped and base64-encoded, it does not fit the job's record
                over = f"{size} bytes as the job record stores it, gzipped and base64-encoded"
                limit = f"{max_bytes} bytes so, the room left on the job's record"
                details = {**details, "inline_max_bytes": self._inline_max_bytes, "record_room_bytes": max_bytes}
            lower = f"a row_limit lower than {min(cut, rows) if cut is not None else rows}"  # the rows it held then
        if cut is not None:
            over = f"{over} under row_limit {cut}"
        return ResultTooLarge(
            f"the result is too large to deliver inline ({over}; inline holds at most {limit}): ask for delivery "
            f"s3 or export, or {'set a row_limit' if cut is None else lower}",
            details=details,
        )

    def collect_export(self, *, tenant_id: str, job_id: str, fmt: ResultFormat, unload_manifest_key: str) -> JobResult:
        """The files an UNLOAD wrote under the job's prefix, from its verbose manifest, listed in ``manifest.json``
        as an ``s3`` result's are. Written only after the UNLOAD succeeded, so it never lists partial files."""
        from spectra.unload import read_unload_manifest

        body = self._s3.get_object(Bucket=self._bucket, Key=unload_manifest_key)["Body"].read()
        unloaded = read_unload_manifest(json.loads(body), self._bucket, header=fmt is not ResultFormat.PARQUET)
        sent = [name for name, _ in unloaded.columns]
        if fmt is ResultFormat.PARQUET and len(set(sent)) < len(sent):
            twice = sorted({name for name in sent if sent.count(name) > 1})
            raise DuplicateColumns(
                f"the query returns more than one column named {', '.join(twice)}; Parquet files need distinct "
                "names, and these names were not known before the query ran (a *, or an expression the warehouse "
                "names itself): give the columns aliases",
                details={"columns": twice},
            )
        files = [ResultFile(key=key, rows=rows, bytes=size) for key, rows, size in unloaded.files]
        if len(files) > MAX_EXPORT_FILES:
            raise ResultTooLarge(
                f"the export wrote {len(files)} files of up to 100 MB, more than the {MAX_EXPORT_FILES} one results "
                "answer can link to: narrow the query (fewer rows or columns) or split it into several exports",
                details={"files": len(files), "max_files": MAX_EXPORT_FILES},
            )
        names = unique_names(sent)
        row_count = sum(f.rows for f in files)
        prefix = self.prefix_for(tenant_id, job_id)
        result = JobResult(
            bucket=self._bucket,
            prefix=prefix,
            manifest_key=f"{prefix}manifest.json",
            files=files,
            row_count=row_count,
            bytes=sum(f.bytes for f in files),
            columns=[{"name": name, "type": kind} for name, (_, kind) in zip(names, unloaded.columns, strict=True)],
            delivery=Delivery.EXPORT,
            total_row_count=row_count,
        )
        self._put_json(result.manifest_key, manifest_document(job_id, fmt, result))
        return result

    def _put_json(self, key: str, document: Any) -> None:
        body = json.dumps(document, separators=(",", ":")).encode()
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType="application/json")

    def read_inline(self, result: JobResult) -> dict[str, Any]:
        """The manifest of a result written before inline rows moved to the job record (it carries the rows)."""
        if not result.inline or result.manifest_key is None:
            raise ValueError("result is not inline")
        return json.loads(self._s3.get_object(Bucket=result.bucket, Key=result.manifest_key)["Body"].read())

    def rows_of(self, result: JobResult) -> list[list[Any]] | None:
        """The inline rows of a result, wherever they are kept; None for a result delivered as files."""
        if result.inline_rows is not None:
            return inline_rows(result)
        if result.inline:
            return self.read_inline(result).get("rows")
        return None

    def presign(self, result: JobResult, *, ttl_seconds: int) -> list[dict[str, Any]]:
        """Short-lived download links, one per part. Signing is local: no request to S3."""
        return [
            {"url": self.presign_key(result, f.key, ttl_seconds=ttl_seconds), "rows": f.rows, "bytes": f.bytes}
            for f in result.files
        ]

    def presign_key(self, result: JobResult, key: str, *, ttl_seconds: int) -> str:
        params = {"Bucket": result.bucket, "Key": key, "ResponseCacheControl": NO_STORE}
        return self._s3.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl_seconds)


def inline_rows(result: JobResult) -> list[list[Any]] | None:
    """The rows kept on the job record, decoded (None when the result has none there)."""
    if result.inline_rows is None:
        return None
    return json.loads(gzip.decompress(base64.b64decode(result.inline_rows)))


def manifest_document(job_id: str, fmt: ResultFormat, result: JobResult) -> dict[str, Any]:
    """``manifest.json``: the same shape for ``s3`` and ``export`` results."""
    return {
        "job_id": job_id,
        "format": fmt.value,
        "delivery": result.delivery.value,
        "prefix": result.prefix,
        "columns": result.columns,
        "row_count": result.row_count,
        "truncated": result.truncated,
        "total_row_count": result.total_row_count,
        "bytes": result.bytes,
        "files": [f.model_dump() for f in result.files],
    }
