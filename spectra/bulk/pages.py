"""Query job results, page by page, as Bulk 2.0 serves them: CSV, each page starting with the header line, the next
page named by an opaque locator (``Sforce-Locator``; the string ``null`` after the last page).

The pages are read straight from the UNLOAD's part files (CSV with a header line): a locator is a part and a byte
offset into it, so a page is one ranged GET that stops after ``maxRecords`` records (or a byte budget that keeps
the response inside Lambda's payload limit). Records are cut by counting quotes: a line break inside a quoted field
leaves an odd number of quotes behind it, so the record goes on.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

from spectra.bulk.files import BulkFiles
from spectra.bulk.models import BulkJob, SourceFile
from spectra.errors import InvalidRequest

_LOCATOR = re.compile(r"^(\d{1,6})\.(\d{1,15})$")


@dataclass(frozen=True)
class Page:
    body: bytes
    records: int
    locator: str | None  # None: this was the last page


def encode_locator(part: int, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{part}.{offset}".encode()).decode().rstrip("=")


def decode_locator(locator: str, job: BulkJob) -> tuple[int, int]:
    try:
        text = base64.urlsafe_b64decode(locator + "=" * (-len(locator) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("locator is not valid") from exc
    match = _LOCATOR.match(text)
    if not match:
        raise InvalidRequest("locator is not valid")
    part, offset = int(match.group(1)), int(match.group(2))
    if part >= len(job.export_files) or offset > job.export_files[part].bytes:
        raise InvalidRequest("locator is not valid")
    return part, offset


def read_page(files: BulkFiles, job: BulkJob, *, locator: str | None, max_records: int, max_bytes: int) -> Page:
    part, offset = decode_locator(locator, job) if locator else (0, 0)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(job.export_columns)
    body = bytearray(out.getvalue().encode())
    count = 0
    while part < len(job.export_files):
        export = job.export_files[part]
        source = SourceFile(bucket=files.results_bucket, key=export.key, size=export.bytes)
        skip_header = offset == 0
        consumed = offset
        finished_part = True
        for record in _records(files.chunks(source, start=offset)):
            consumed += len(record)
            if skip_header:
                skip_header = False
                continue
            body += record if record.endswith(b"\n") else record + b"\n"
            count += 1
            if count >= max_records or len(body) >= max_bytes:
                finished_part = consumed >= export.bytes
                break
        if not finished_part:
            return Page(bytes(body), count, encode_locator(part, consumed))
        part, offset = part + 1, 0
        if count >= max_records or len(body) >= max_bytes:
            break
    more = part < len(job.export_files)
    return Page(bytes(body), count, encode_locator(part, 0) if more else None)


def _records(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Whole CSV records (with their line break) from a byte stream, in order."""
    pending = b""
    record = bytearray()
    quotes = 0
    for chunk in chunks:
        pending += chunk
        lines = pending.split(b"\n")
        pending = lines.pop()
        for line in lines:
            record += line + b"\n"
            quotes += line.count(b'"')
            if quotes % 2 == 0:
                yield bytes(record)
                record.clear()
                quotes = 0
    if pending or record:
        yield bytes(record + pending)
