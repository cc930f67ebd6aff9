"""The bulk file port: the S3 side of bulk jobs (uploaded batches, dropped files, manifests, result files).

Layout, one prefix per job in the results bucket: ``<tenant>/<job_id>/``

* ``uploads/batch-00001.csv[.gz]``: batches PUT through the API or uploaded to a presigned URL;
* ``load/plain.manifest``, ``load/gzip.manifest``: COPY manifests naming exactly the job's files (a COPY from a bare
  key would load every object that key prefixes);
* ``load/outcome_000``..., ``load/outcome_manifest``: the per-id outcomes a load UNLOADs (spectra.bulk.sql);
* ``export/``: a query job's UNLOAD (CSV parts with a header line, and their manifest);
* ``results/<attempt>/successful.csv``, ``failed.csv``, ``unprocessed.csv``: an ingest job's Bulk 2.0 result files,
  one folder per run that wrote them; the job records the one it serves (``results_attempt``), and the others (a
  run that lost to another ending, or whose lease ran out) are left to the bucket's expiry.

Dropped files stay where the tenant put them in the ingest bucket (``<tenant>/<table>/<name>.csv``); once their job
ends they are tagged ``spectra-processed=true`` and the bucket's lifecycle expires them.

Everything streams: bodies are read and written chunk by chunk, so no function holds a whole file.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import secrets
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from spectra.bulk.models import BulkJob, SourceFile
from spectra.errors import NotFound
from spectra.jobs import utcnow
from spectra.results import NO_STORE, S3Upload

logger = logging.getLogger(__name__)

#: Result files and pages are UTF-8, as batches must be: without the charset a client decodes text/csv by its own
#: default (requests' ``.text`` as ISO-8859-1, browsers as windows-1252), and every non-ASCII value comes out garbled.
#: A row sent with bytes that are not UTF-8 comes back in failedResults as sent, labelled so all the same.
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
#: The two bytes every gzip member starts with (RFC 1952).
GZIP_MAGIC = b"\x1f\x8b"


def starts_as_gzip(data: bytes) -> bool:
    """Whether ``data`` starts as gzip data: a gzip header and deflate data that begins to decode (the rest is checked
    when the job runs, as a file too large to read at once would be)."""
    try:
        gzip.GzipFile(fileobj=io.BytesIO(data[:1024])).read(1)
    except (OSError, EOFError, zlib.error):  # zlib.error: a gzip header over data that is not deflate
        return False
    return True


CHUNK = 1024 * 1024


class FileUnreadable(Exception):
    """A source file is not what it claims to be (bad gzip); the message says what was wrong, after the file's URL
    (``reason`` alone: what a job's error says after the file's name as its tenant knows it)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url} {reason}")
        self.reason = reason


class FileReplaced(Exception):
    """A dropped file's key holds a newer upload than the one its job was made for: the ingest bucket keeps no
    versions, so the job's own file is gone (the newer one has a job of its own)."""


class WrittenBefore(Exception):
    """A small object (a sidecar) was last written before the time its reader asked for: an earlier tenant's of the
    id, or one staged before its tenant was created."""


#: How far S3's clock and the one that stamps our records (a tenant's creation, a job's) may differ: an object
#: written this long before the record was made is not the record's (a tenant's, spectra/bulk/drops.py; a job's,
#: :meth:`BulkFiles.uploaded_batches`)
CLOCK_LEEWAY = timedelta(seconds=30)


def job_prefix(tenant_id: str, job_id: str) -> str:
    return f"{tenant_id}/{job_id}/"


def results_key(job: BulkJob, kind: str) -> str:
    """Where the result file of ``kind`` of the job's ``results_attempt`` is (``results/`` itself for a job that records
    no attempt)."""
    folder = f"{job.results_attempt}/" if job.results_attempt else ""
    return f"{job_prefix(job.tenant_id, job.job_id)}results/{folder}{kind}.csv"


def new_results_attempt() -> str:
    """A name for one run's result files: its time (so a listing sorts the runs) and 48 random bits."""
    return f"{utcnow():%Y%m%dT%H%M%S}-{secrets.token_hex(6)}"


def outcome_prefix(job: BulkJob) -> str:
    """Where a load UNLOADs its per-id outcomes: ``<prefix>000``... and ``<prefix>manifest``."""
    return f"{job_prefix(job.tenant_id, job.job_id)}load/outcome_"


class BulkFiles:
    def __init__(self, s3_client, *, results_bucket: str, ingest_bucket: str) -> None:
        self._s3 = s3_client
        self.results_bucket = results_bucket
        self.ingest_bucket = ingest_bucket

    @property
    def client(self):
        return self._s3

    # -- uploads --------------------------------------------------------------------------------------------------

    def put(self, key: str, body: bytes) -> SourceFile:
        """One uploaded batch, stored in the results bucket as sent (gzip stays gzip: COPY reads it so)."""
        self._s3.put_object(Bucket=self.results_bucket, Key=key, Body=body, ContentType="text/csv")
        return SourceFile(bucket=self.results_bucket, key=key, size=len(body), gzip=key.endswith(".gz"))

    def discard(self, source: SourceFile) -> bool:
        """Delete a stored batch, best effort: whether it is gone (False: it stays, and the error is logged)."""
        try:
            self._s3.delete_object(Bucket=source.bucket, Key=source.key)
        except (ClientError, BotoCoreError):
            logger.warning("could not take back batch %s", source.key, exc_info=True)
            return False
        return True

    def uploaded_batches(self, job: BulkJob) -> list[SourceFile]:
        """Every batch under the job's uploads prefix (PUT through the API or through a presigned URL), in order.

        Not one written before the job was made (its ``created_at``, less :data:`CLOCK_LEEWAY`): a job made again
        under an Idempotency-Key whose record expired keeps its id, so its prefix, and the old job's batches stay
        there until the bucket's lifecycle removes them, days after they expire; listed, they would load a second time
        as duplicate rows. Everything else under the prefix is read through a manifest naming exactly what this job
        wrote (its UNLOADs), or written anew by it (its result files)."""
        prefix = f"{job_prefix(job.tenant_id, job.job_id)}uploads/"
        own_since = job.created_at - CLOCK_LEEWAY
        files = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.results_bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                written = obj.get("LastModified")
                if isinstance(written, datetime) and written < own_since:
                    logger.info(
                        "bulk job %s: %s was written before the job was made; not its batch", job.job_id, obj["Key"]
                    )
                    continue
                files.append(
                    SourceFile(
                        bucket=self.results_bucket,
                        key=obj["Key"],
                        size=obj["Size"],
                        gzip=obj["Key"].endswith(".gz"),
                        # pinned as listed: the job reads this upload of the batch or fails, never a larger one put
                        # at its key later
                        etag=str(obj.get("ETag", "")).strip('"') or None,
                    )
                )
        return sorted(files, key=lambda f: f.key)

    def presign_put(
        self,
        bucket: str,
        key: str,
        *,
        ttl_seconds: int,
        metadata: dict[str, str] | None = None,
        once: bool = False,
    ) -> str:
        """A SigV4 URL that lets its holder PUT exactly this one object (with exactly this metadata, sent as
        ``x-amz-meta-*`` headers), for ``ttl_seconds``. ``once``: only while the key holds nothing (S3's conditional
        write, ``If-None-Match: *``, signed into the URL and to be sent with the PUT), so the URL writes once."""
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if metadata:
            params["Metadata"] = metadata
        if once:
            params["IfNoneMatch"] = "*"
        return self._s3.generate_presigned_url("put_object", Params=params, ExpiresIn=ttl_seconds, HttpMethod="PUT")

    def presign_get(self, bucket: str, key: str, *, ttl_seconds: int) -> str:
        """A result file's download URL: S3 answers it ``no-store`` and as :data:`CSV_CONTENT_TYPE`, as the API
        answers the file inline (files stored without the charset included), so its type does not depend on its
        size."""
        params = {
            "Bucket": bucket,
            "Key": key,
            "ResponseCacheControl": NO_STORE,
            "ResponseContentType": CSV_CONTENT_TYPE,
        }
        return self._s3.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl_seconds, HttpMethod="GET")

    # -- dropped files --------------------------------------------------------------------------------------------

    def keys_starting(self, bucket: str, prefix: str) -> list[str]:
        """Every key starting with ``prefix`` (the names beside a dropped file), all pages of them."""
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def head(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            return self._s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def read_small(self, bucket: str, key: str, *, limit: int, written_since: datetime | None = None) -> bytes | None:
        """A small object (a sidecar), or None when there is none; refuses to read past ``limit`` bytes. Raises
        :class:`WrittenBefore` for one last written before ``written_since`` (a sidecar older than its tenant)."""
        try:
            response = self._s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        body = response["Body"]
        written = response.get("LastModified")
        if written_since is not None and isinstance(written, datetime) and written < written_since:
            body.close()
            raise WrittenBefore(f"s3://{bucket}/{key} was last written at {written.isoformat()}")
        with body:
            data = body.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"s3://{bucket}/{key} is larger than {limit} bytes")
        return data

    def tag_processed(self, source: SourceFile) -> None:
        """Mark a dropped file as loaded: the ingest bucket's lifecycle expires tagged objects."""
        self.tag(source, "spectra-processed", "true")

    def tag(self, source: SourceFile, key: str, value: str) -> None:
        try:
            self._s3.put_object_tagging(
                Bucket=source.bucket, Key=source.key, Tagging={"TagSet": [{"Key": key, "Value": value}]}
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise

    # -- reading --------------------------------------------------------------------------------------------------

    def head_bytes(self, source: SourceFile, *, limit: int) -> tuple[bytes, bool]:
        """Up to ``limit`` bytes of the file's (decompressed) content, and whether that is the whole file."""
        out = bytearray()
        for chunk in self.chunks(source):
            out += chunk
            if len(out) > limit:
                return bytes(out[:limit]), False
        return bytes(out), True

    def chunks(self, source: SourceFile, *, start: int = 0) -> Iterator[bytes]:
        """The file's content, decompressed when it is gzip, streamed; ``start`` (plain files only) skips bytes. A
        dropped file is read only while its key still holds the upload it was dropped as (:class:`FileReplaced`)."""
        params: dict[str, Any] = {"Bucket": source.bucket, "Key": source.key}
        if start:
            params["Range"] = f"bytes={start}-"
        if source.etag:  # a dropped file: the very upload its job was made for, never a newer one put at its key
            params["IfMatch"] = f'"{source.etag}"'
        try:
            body = self._s3.get_object(**params)["Body"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise NotFound(f"{source.url} does not exist") from exc
            if code == "PreconditionFailed":
                raise FileReplaced(
                    f"{source.key} was replaced by a newer upload before this job read it; the newer file is loaded"
                    " by its own job"
                ) from exc
            if code == "InvalidRange":
                return
            raise
        with body:
            if not source.gzip:
                while chunk := body.read(CHUNK):
                    yield chunk
                return
            yield from _gunzip(iter(lambda: body.read(CHUNK), b""), source.url)

    def text(self, source: SourceFile, *, newline: str = "\n") -> IO[str]:
        """The file as text for the csv module: UTF-8, undecodable bytes kept (surrogateescape) so a row is written
        back exactly as it was sent, and lines ending at LF only, as COPY counts them (``stl_load_errors`` lines): a
        CR is data, and CRLF is a line whose CR the csv module takes as part of its ending. ``newline="\\r"``: lines
        end at CR, for a file that was never loaded because it has no other line ends."""
        return io.TextIOWrapper(
            _ChunkReader(self.chunks(source)), encoding="utf-8", errors="surrogateescape", newline=newline
        )

    # -- writing --------------------------------------------------------------------------------------------------

    def write_manifest(self, job: BulkJob, name: str, files: list[SourceFile]) -> str:
        key = f"{job_prefix(job.tenant_id, job.job_id)}load/{name}.manifest"
        manifest = {"entries": [{"url": f.url, "mandatory": True} for f in files]}
        self._s3.put_object(
            Bucket=self.results_bucket, Key=key, Body=json.dumps(manifest).encode(), ContentType="application/json"
        )
        return f"s3://{self.results_bucket}/{key}"

    def writer(self, key: str) -> S3Upload:
        """A streaming CSV object in the results bucket (one PUT when small, multipart when large)."""
        return S3Upload(self._s3, self.results_bucket, key, CSV_CONTENT_TYPE)

    def size(self, key: str) -> int | None:
        head = self.head(self.results_bucket, key)
        return head["ContentLength"] if head else None

    def read_all(self, key: str) -> bytes:
        return b"".join(self.chunks(SourceFile(bucket=self.results_bucket, key=key)))


def gunzipped(data: bytes, url: str) -> Iterator[bytes]:
    """gzip ``data`` held in memory (an API batch) inflated as a job reads a stored file (:meth:`BulkFiles.chunks`):
    a ``CHUNK`` at most at a time, a :class:`FileUnreadable` for what the job would fail ``bad_gzip``."""
    yield from _gunzip((data[start : start + CHUNK] for start in range(0, len(data), CHUNK)), url)


def _gunzip(compressed: Iterator[bytes], url: str) -> Iterator[bytes]:
    """gzip data inflated a ``CHUNK`` at most at a time, whatever its ratio: a small file of one repeated byte inflates
    a thousandfold, and inflated whole a single read would hold gigabytes. Concatenated members (``cat a.gz b.gz``)
    are read on as one file. NUL bytes after a member (a tool's padding to whole blocks, which gzip itself skips)
    are refused by name: the load's COPY reads them as a member that is no gzip."""
    try:
        yield from _members(compressed, url)
    except zlib.error as exc:  # not deflate data, or bytes after a member that are no gzip member
        raise FileUnreadable(url, f"is not a valid gzip file: {exc}") from exc


def _members(compressed: Iterator[bytes], url: str) -> Iterator[bytes]:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing
    fed = False  # whether the member being read has had any input
    members = 0
    for data in compressed:
        while data:
            if members and not fed and not data.strip(b"\0"):
                raise FileUnreadable(url, "is not a valid gzip file: NUL bytes follow its gzip data (padding)")
            fed = True
            out = inflater.decompress(data, CHUNK)
            if out:
                yield out
            if inflater.eof:  # the member ended: what follows is the next one's
                data, members = inflater.unused_data, members + 1
                inflater, fed = zlib.decompressobj(16 + zlib.MAX_WBITS), False
            else:
                data = inflater.unconsumed_tail
    while fed and not inflater.eof and (out := inflater.decompress(b"", CHUNK)):
        yield out
    if (fed or not members) and not inflater.eof:
        raise FileUnreadable(url, "is not a complete gzip file (it ends early)")


class _ChunkReader(io.RawIOBase):
    """A readable binary stream over an iterator of chunks (for TextIOWrapper)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size
