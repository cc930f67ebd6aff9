"""The result sink: a statement's CSV pages, converted column-wise, streamed into S3.

Layout under the results bucket, one prefix per job: ``<tenant>/<job_id>/``

* ``part-00000.<ext>`` ... the rows, split every ``part_max_rows`` rows. ``csv`` → ``.csv.gz``, ``jsonl`` and ``json``
  → ``.jsonl.gz`` (one JSON object per row), ``parquet`` → ``.parquet`` (snappy inside).
* ``manifest.json``: columns, counts and the list of parts; for a result within the inline limits also the rows
  themselves, so ``GET /results`` answers small results with one read and the job costs one PUT less.

Pages are parsed by pyarrow with the column types from the Data API's metadata, one page at a time, and written
through smart-open's multipart uploads, so memory is bounded by a page, not by the result.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import gzip
import io
import json
from collections.abc import Iterable
from typing import IO, Any

from events import ResultFormat
from spectra.jobs import JobResult, ResultFile
from spectra.warehouse import Column

_EXTENSIONS = {
    ResultFormat.CSV: ".csv.gz",
    ResultFormat.JSONL: ".jsonl.gz",
    ResultFormat.JSON: ".jsonl.gz",
    ResultFormat.PARQUET: ".parquet",
}
_CONTENT_TYPES = {
    ResultFormat.CSV: "text/csv",
    ResultFormat.JSONL: "application/x-ndjson",
    ResultFormat.JSON: "application/x-ndjson",
    ResultFormat.PARQUET: "application/vnd.apache.parquet",
}


def arrow_type(column: Column):
    """The Arrow type for a Redshift column type; anything unusual stays text rather than failing a job."""
    import pyarrow as pa

    name = column.type_name.lower()
    if name in {"int2", "smallint"}:
        return pa.int16()
    if name in {"int4", "int", "integer", "serial"}:
        return pa.int32()
    if name in {"int8", "bigint", "bigserial"}:
        return pa.int64()
    if name in {"float4", "real"}:
        return pa.float32()
    if name in {"float8", "float", "double precision"}:
        return pa.float64()
    if name in {"bool", "boolean"}:
        return pa.bool_()
    if name in {"numeric", "decimal"} and column.precision and 0 < column.precision <= 38:
        return pa.decimal128(column.precision, column.scale or 0)
    if name == "date":
        return pa.date32()
    if name in {"timestamp", "timestamp without time zone"}:
        return pa.timestamp("us")
    if name in {"timestamptz", "timestamp with time zone"}:
        return pa.timestamp("us", tz="UTC")
    return pa.string()


def json_default(value: Any) -> Any:
    """JSON for values the stdlib cannot encode: decimals as strings (no float rounding), times as ISO 8601."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


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
        self.count = 0

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
        if self._multipart is not None:
            self._multipart.close()
        else:
            self._s3.put_object(
                Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer), ContentType=self._content_type
            )
        super().close()


class _PartWriter:
    """One part file: Arrow tables in, the job's format out to S3; ``close`` finishes the object."""

    def __init__(self, s3_client, bucket: str, key: str, fmt: ResultFormat, columns: list[Column]) -> None:
        self.key = key
        self.rows = 0
        self._fmt = fmt
        self._names = [c.name for c in columns]
        self._counter = S3Upload(s3_client, bucket, key, _CONTENT_TYPES[fmt])
        self._parquet = None
        self._csv = None
        if fmt is ResultFormat.PARQUET:
            self._stream: IO[bytes] = self._counter
        else:
            self._stream = gzip.GzipFile(fileobj=self._counter, mode="wb", compresslevel=6)

    def accepts(self, schema) -> bool:
        """Parquet fixes a file's schema with its first table; the CSV and JSON writers take any table."""
        return self._parquet is None or self._parquet.schema.equals(schema)

    def write(self, table) -> None:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        if self._fmt is ResultFormat.PARQUET:
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._stream, table.schema, compression="snappy")
            self._parquet.write_table(table)
        elif self._fmt is ResultFormat.CSV:
            if self._csv is None:
                self._csv = pacsv.CSVWriter(self._stream, table.schema)
            self._csv.write_table(table)
        else:
            lines = (json.dumps(row, default=json_default) for row in json_ready(table).to_pylist())
            self._stream.write(("\n".join(lines) + "\n").encode())
        self.rows += table.num_rows

    def close(self, schema) -> ResultFile:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        if self._fmt is ResultFormat.PARQUET:
            writer = self._parquet or pq.ParquetWriter(self._stream, schema, compression="snappy")
            writer.close()
        elif self._fmt is ResultFormat.CSV:
            (self._csv or pacsv.CSVWriter(self._stream, schema)).close()
        if self._stream is not self._counter:
            self._stream.close()
        self._counter.close()
        return ResultFile(key=self.key, rows=self.rows, bytes=self._counter.count)


def _rows(table) -> Iterable[tuple]:
    columns = [column.to_pylist() for column in json_ready(table).columns]
    return zip(*columns, strict=True)


def json_ready(table):
    """The table with decimals, dates and timestamps as ISO / exact strings, converted column-wise by Arrow.

    Converting per value in Python (Decimal and datetime objects, then ``json_default``) is several times slower;
    the strings are the same ones ``json_default`` would produce (``isoformat``, ``str(Decimal)``).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_decimal(kind) or pa.types.is_date(kind):
            column = pc.cast(column, pa.string())
        elif pa.types.is_timestamp(kind):
            text = pc.replace_substring_regex(pc.strftime(column, format="%Y-%m-%dT%H:%M:%S"), r"\.0+$", "")
            column = pc.binary_join_element_wise(text, pa.scalar("+00:00"), "") if kind.tz else text
        arrays.append(column)
    return pa.table(arrays, names=table.column_names)


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
    ) -> JobResult:
        """Write the pages as the job's result. ``header``: whether the first page starts with a header line;
        None takes a first line equal to the column names for one (the caller can check the count, see
        :func:`spectra.lifecycle` for how a data row that looks like the header is told apart)."""
        import pyarrow as pa

        prefix = self.prefix_for(tenant_id, job_id)
        named = columns  # as the service names them: a header line repeats these, duplicates included
        columns = _unique(columns)
        schema = pa.schema([pa.field(c.name, arrow_type(c)) for c in columns])
        files: list[ResultFile] = []
        part: _PartWriter | None = None
        inline: list[list[Any]] | None = []
        inline_bytes = 0

        for table in _parse_pages(csv_pages, named, schema, header):
            offset = 0
            while offset < table.num_rows:
                if part is not None and not part.accepts(table.schema):
                    # A page read as text cannot join a Parquet file of typed columns: it starts a part of its own.
                    files.append(part.close(schema))
                    part = None
                if part is None:
                    key = f"{prefix}part-{len(files):05d}{_EXTENSIONS[fmt]}"
                    part = _PartWriter(self._s3, self._bucket, key, fmt, columns)
                chunk = table.slice(offset, self._part_max_rows - part.rows)
                part.write(chunk)
                offset += chunk.num_rows
                if part.rows >= self._part_max_rows:
                    files.append(part.close(schema))
                    part = None
            if inline is not None:
                rows = [list(row) for row in _rows(table)]
                inline_bytes += len(json.dumps(rows, default=json_default))
                inline.extend(rows)
                if len(inline) > self._inline_max_rows or inline_bytes > self._inline_max_bytes:
                    inline = None  # too big to return inline: the files are the answer
        if part is not None or not files:
            part = part or _PartWriter(self._s3, self._bucket, f"{prefix}part-00000{_EXTENSIONS[fmt]}", fmt, columns)
            files.append(part.close(schema))

        column_dicts = [c.as_dict() for c in columns]
        row_count = sum(f.rows for f in files)
        total_bytes = sum(f.bytes for f in files)
        manifest_key = f"{prefix}manifest.json"
        result = JobResult(
            bucket=self._bucket,
            prefix=prefix,
            manifest_key=manifest_key,
            files=files,
            row_count=row_count,
            bytes=total_bytes,
            columns=column_dicts,
            inline=inline is not None,
        )
        self._put_json(
            manifest_key,
            {
                "job_id": job_id,
                "format": fmt.value,
                **result.model_dump(mode="json", exclude={"bucket", "inline"}),
                **({"rows": inline} if inline is not None else {}),
            },
        )
        return result

    def _put_json(self, key: str, document: Any) -> None:
        body = json.dumps(document, default=json_default, separators=(",", ":")).encode()
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType="application/json")

    def read_inline(self, result: JobResult) -> dict[str, Any]:
        if not result.inline:
            raise ValueError("result is not inline")
        return json.loads(self._s3.get_object(Bucket=result.bucket, Key=result.manifest_key)["Body"].read())

    def presign(self, result: JobResult, *, ttl_seconds: int) -> list[dict[str, Any]]:
        """Short-lived download links, one per part. Signing is local: no request to S3."""
        return [
            {
                "url": self._s3.generate_presigned_url(
                    "get_object", Params={"Bucket": result.bucket, "Key": f.key}, ExpiresIn=ttl_seconds
                ),
                "rows": f.rows,
                "bytes": f.bytes,
            }
            for f in result.files
        ]


def _unique(columns: list[Column]) -> list[Column]:
    """Arrow and JSON need distinct names; ``SELECT 1, 1`` gives two ``?column?`` columns."""
    seen: dict[str, int] = {}
    out = []
    for column in columns:
        count = seen.get(column.name, 0)
        seen[column.name] = count + 1
        name = column.name if count == 0 else f"{column.name}_{count + 1}"
        out.append(Column(name, column.type_name, column.precision, column.scale))
    return out


def _parse_pages(pages: Iterable[str], columns: list[Column], schema, header: bool | None) -> Iterable:
    """Arrow tables, one per CSV page; the first page's header line skipped as ``header`` says (see ``write``)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = schema.names
    column_names = [c.name for c in columns]
    typed = pacsv.ConvertOptions(
        column_types=schema,
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        null_values=[""],
        true_values=_TRUE,
        false_values=_FALSE,
    )
    text = pacsv.ConvertOptions(
        column_types=pa.schema([pa.field(n, pa.string()) for n in names]),
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        null_values=[""],
    )
    first = True
    for page in pages:
        if first:
            first = False
            line, _, rest = page.partition("\n")
            if header or (header is None and next(csv.reader([line]), None) == column_names):
                page = rest
        if not page:
            continue
        options = dict(
            read_options=pacsv.ReadOptions(column_names=names, block_size=max(1 << 20, len(page) + 1)),
            # an empty line is a row of one NULL, not nothing
            parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
        )
        try:
            table = pacsv.read_csv(io.BytesIO(page.encode()), convert_options=typed, **options)
        except pa.ArrowInvalid:
            # A value the typed parse cannot read (an exotic timestamp, say): read the page as text and cast column
            # by column, so one odd value costs that column its type, never the job its rows.
            table = _cast_or_text(pacsv.read_csv(io.BytesIO(page.encode()), convert_options=text, **options), schema)
        yield table


def _cast_or_text(table, schema):
    """Cast each column to its type where possible; the rest stays text, so one odd value never fails a job."""
    import pyarrow as pa

    arrays = []
    for column, field in zip(table.columns, schema, strict=True):
        try:
            arrays.append(_bool_from_text(column) if pa.types.is_boolean(field.type) else column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            arrays.append(column)
    return pa.table(arrays, names=schema.names)


_TRUE = ["t", "true", "TRUE", "True", "1"]
_FALSE = ["f", "false", "FALSE", "False", "0"]


def _bool_from_text(column):
    """Booleans as the CSV reader reads them (Arrow's string cast knows only "true"/"false")."""
    import pyarrow as pa
    import pyarrow.compute as pc

    truth = pc.is_in(column, value_set=pa.array(_TRUE))
    known = pc.or_(truth, pc.is_in(column, value_set=pa.array(_FALSE)))
    if not pc.all(pc.or_(known, pc.is_null(column))).as_py():
        raise pa.ArrowInvalid("not a boolean")
    return pc.if_else(pc.is_null(column), pa.scalar(None, pa.bool_()), truth)
