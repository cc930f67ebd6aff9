"""S3 access for COPY and UNLOAD: listing sources the way Redshift does, streaming objects, Redshift-style errors.

Everything here streams: objects are read in chunks (gzip decompressed chunk by chunk), so a COPY of a file larger
than memory never holds more than one chunk of it.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from .base import RedshiftSqlError

CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_url(url: str) -> S3Object:
    """Split ``s3://bucket/key``; the key may be empty (a whole bucket) or a prefix."""
    if not url.lower().startswith("s3://"):
        raise RedshiftSqlError(f"Invalid S3 URL '{url}': expected s3://bucket/key")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise RedshiftSqlError(f"Invalid S3 URL '{url}': no bucket name")
    return S3Object(bucket, key)


def s3_error(error: Exception, url: str) -> RedshiftSqlError:
    """Word an S3 failure as Redshift does (``S3ServiceException:...,Status 404,Error NoSuchKey``) plus the URL."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = details.get("Code", "Unknown")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        message = details.get("Message") or _DEFAULT_MESSAGES.get(code, code)
        return RedshiftSqlError(f"S3ServiceException:{message},Status {status},Error {code}: {url}")
    return RedshiftSqlError(f"S3ServiceException:{error}: {url}")


_DEFAULT_MESSAGES = {
    "NoSuchKey": "The specified key does not exist.",
    "NoSuchBucket": "The specified bucket does not exist",
    "AccessDenied": "Access Denied",
    "404": "The specified key does not exist.",
}


# --------------------------------------------------------------------------------------------------------------------
# Listing


def copy_sources(s3_client, url: str, manifest: bool) -> list[S3Object]:
    """The objects a COPY reads: every object under the prefix, or the manifest's entries.

    Redshift treats ``FROM 's3://b/data/part'`` as a key prefix: ``part_1.csv``, ``part_2.csv`` (and ``part/x``) all
    load. A prefix that matches nothing is an error, as is a missing mandatory manifest entry.
    """
    location = parse_s3_url(url)
    if manifest:
        return _manifest_entries(s3_client, location)
    objects = [obj for obj in list_objects(s3_client, location) if not obj.key.endswith("/")]
    if not objects:
        raise RedshiftSqlError(f"The specified S3 prefix '{location.key}' does not exist: {url}")
    return objects


def list_objects(s3_client, location: S3Object) -> Iterator[S3Object]:
    """Every object whose key starts with ``location.key``, in key order."""
    try:
        paginator = s3_client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=location.bucket, Prefix=location.key):
            for item in page.get("Contents", []):
                yield S3Object(location.bucket, item["Key"])
    except (ClientError, BotoCoreError) as error:
        raise s3_error(error, location.url) from error


def _manifest_entries(s3_client, location: S3Object) -> list[S3Object]:
    try:
        body = s3_client.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
        entries = json.loads(body)["entries"]
    except (ClientError, BotoCoreError) as error:
        raise s3_error(error, location.url) from error
    except (ValueError, KeyError, TypeError) as error:
        raise RedshiftSqlError(f"Manifest file is not in correct json format: {location.url}") from error
    objects = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise RedshiftSqlError(f"Manifest file is not in correct json format (entry without url): {location.url}")
        obj = parse_s3_url(entry["url"])
        if _exists(s3_client, obj):
            objects.append(obj)
        elif entry.get("mandatory", False):
            raise RedshiftSqlError(
                f"S3ServiceException:The specified key does not exist.,Status 404,Error NoSuchKey: {obj.url} "
                f"(mandatory entry of manifest {location.url})"
            )
    return objects


def _exists(s3_client, obj: S3Object) -> bool:
    try:
        s3_client.head_object(Bucket=obj.bucket, Key=obj.key)
        return True
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise s3_error(error, obj.url) from error


# --------------------------------------------------------------------------------------------------------------------
# Reading


def read_chunks(s3_client, obj: S3Object, gzip: bool) -> Iterator[bytes]:
    """The object's bytes, chunk by chunk, gunzipped on the fly when ``gzip`` is set."""
    try:
        body = s3_client.get_object(Bucket=obj.bucket, Key=obj.key)["Body"]
        raw = body.iter_chunks(CHUNK_SIZE)
        yield from (_gunzip(raw, obj.url) if gzip else raw)
    except (ClientError, BotoCoreError) as error:
        raise s3_error(error, obj.url) from error


def _gunzip(chunks: Iterable[bytes], url: str) -> Iterator[bytes]:
    """Decompress a gzip stream, including concatenated members (what ``cat a.gz b.gz`` produces)."""
    decompressor = zlib.decompressobj(wbits=31)
    pending_member = False
    try:
        for chunk in chunks:
            while chunk:
                pending_member = True
                out = decompressor.decompress(chunk)
                if out:
                    yield out
                if decompressor.eof:
                    chunk = decompressor.unused_data
                    decompressor = zlib.decompressobj(wbits=31)
                    pending_member = False
                else:
                    chunk = b""
    except zlib.error as error:
        raise RedshiftSqlError(f"gzip: invalid compressed data ({error}): {url}") from error
    if pending_member:
        raise RedshiftSqlError(f"gzip: unexpected end of stream: {url}")


def skip_lines(chunks: Iterable[bytes], count: int) -> Iterator[bytes]:
    """Drop the first ``count`` lines of a byte stream (IGNOREHEADER), passing the rest through untouched."""
    iterator = iter(chunks)
    remaining = count
    for chunk in iterator:
        while remaining and chunk:
            newline = chunk.find(b"\n")
            if newline < 0:
                chunk = b""
            else:
                chunk = chunk[newline + 1 :]
                remaining -= 1
        if chunk:
            yield chunk
        if not remaining:
            break
    yield from iterator


@dataclass(frozen=True)
class Record:
    """One input record as it appears in the file: where it starts and its raw bytes (newline included)."""

    line_number: int
    raw: bytes


def split_records(chunks: Iterable[bytes], first_line: int, csv_quote: bytes | None) -> Iterator[Record]:
    """Cut a byte stream into records, keeping the file's line numbers.

    In the text format a record is a line. In CSV a quoted field may hold newlines, so a newline ends a record only
    when the quote characters seen so far are balanced (a doubled quote inside a field counts twice, keeping parity).
    """
    buffer = b""
    line_number = first_line
    record_start = first_line
    parts: list[bytes] = []
    open_quote = False
    for chunk in chunks:
        buffer += chunk
        lines = buffer.split(b"\n")
        buffer = lines.pop()
        for line in lines:
            parts.append(line + b"\n")
            if csv_quote is not None and line.count(csv_quote) % 2:
                open_quote = not open_quote
            line_number += 1
            if not open_quote:
                yield Record(record_start, b"".join(parts))
                parts.clear()
                record_start = line_number
    if buffer or parts:
        parts.append(buffer + b"\n" if buffer else b"")
        yield Record(record_start, b"".join(parts))
