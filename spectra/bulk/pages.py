"""Query job results, page by page, as Bulk 2.0 serves them: CSV, each page starting with the header line, the next
page named by an opaque locator (``Sforce-Locator``; the string ``null`` after the last page).

The pages are read straight from the UNLOAD's part files (CSV with a header line, its fields separated by the job's
``columnDelimiter``; each record is passed on ending in the job's ``lineEnding``): a locator is a part and a byte
offset into it, so a page is one ranged GET that stops after ``maxRecords`` records, or before the record that would
take it past a byte budget that keeps the response inside Lambda's payload quota. A record past that budget is a
page of its own, up to :data:`ALONE_MAX_BYTES` (about 4.7 MB with the header line); one past that (some 72 full
``VARCHAR(65535)`` columns) cannot be served: it is a 422 ``record_too_large`` naming its size and the locator of
the record after it, so the rest can still be read (such rows come whole through ``POST /v1/queries`` with
``delivery`` ``export``). Records are cut by counting quotes: a line break inside a quoted field leaves an odd
number of quotes behind it, so the record goes on.

A locator is signed like a page token (:mod:`spectra.tokens`), bound to the tenant and the job: only an offset this
module wrote, at the start of a record, is ever read from. An offset chosen by the caller could land inside a quoted
field, where the quote count runs the wrong way and the rest of the part (UNLOAD writes parts of up to 6.2 GB) reads
as one record, into memory.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

from spectra.bulk.files import BulkFiles
from spectra.bulk.models import BulkJob, ColumnDelimiter, SourceFile
from spectra.errors import InvalidRequest, InvalidToken, RecordTooLarge
from spectra.result_encoding import unique_names
from spectra.tokens import PageTokens

#: The most a page holding one record may be: Lambda answers at most 6 MiB, and the page goes base64 (4/3) in a JSON
#: envelope with its headers (16 KiB kept for them). A page of several records stops at the smaller budget the caller
#: gives (BULK_PAGE_MAX_BYTES); a record that alone passes that budget is still served up to this.
ALONE_MAX_BYTES = (6 * 1024 * 1024 - 16 * 1024) * 3 // 4


@dataclass(frozen=True)
class Page:
    body: bytes
    records: int
    locator: str | None  # None: this was the last page


_REFUSED = "locator is not valid for this job's results; start again without it"


def _binding(job: BulkJob) -> dict[str, str]:
    """What a locator is good for: this tenant's job, and this making of it. A job made again under its
    Idempotency-Key once its record expired has the same id and other parts, where an old locator's offset could
    land inside a record; its creation time tells the two apart."""
    return {
        "listing": "bulk-query-results",
        "tenant": job.tenant_id,
        "job": job.job_id,
        "made": job.created_at.isoformat(),
    }


def encode_locator(tokens: PageTokens, job: BulkJob, part: int, offset: int) -> str:
    return tokens.encode({"part": part, "offset": offset}, bound_to=_binding(job))


def decode_locator(tokens: PageTokens, locator: str, job: BulkJob) -> tuple[int, int]:
    try:
        position = tokens.decode(locator, bound_to=_binding(job))
    except InvalidToken:
        raise InvalidRequest(_REFUSED) from None
    part, offset = position.get("part"), position.get("offset")
    if not (
        type(part) is int
        and type(offset) is int
        and 0 <= part < len(job.export_files)
        and 0 <= offset <= job.export_files[part].bytes
    ):
        raise InvalidRequest(_REFUSED)
    return part, offset


def read_page(
    files: BulkFiles, tokens: PageTokens, job: BulkJob, *, locator: str | None, max_records: int, max_bytes: int
) -> Page:
    """The page at ``locator`` (the first without one), and the next page's locator."""
    part, offset = decode_locator(tokens, locator, job) if locator else (0, 0)
    alone_max_bytes = max(max_bytes, ALONE_MAX_BYTES)  # a page of one record
    out = io.StringIO()
    ending = job.line_ending.chars
    delimiter = (job.export_delimiter or ColumnDelimiter.COMMA).char  # the parts' own, which the records keep
    names = unique_names(job.export_columns)  # as POST /v1/queries names them: a reader by name keeps every column
    # with an LF ending, minimal quoting leaves a name holding a lone CR bare, which readers take for a line break
    quoting = csv.QUOTE_ALL if any("\r" in name for name in names) else csv.QUOTE_MINIMAL
    csv.writer(out, delimiter=delimiter, lineterminator=ending, quoting=quoting).writerow(names)
    body = bytearray(out.getvalue().encode())
    count = 0
    while part < len(job.export_files):
        export = job.export_files[part]
        source = SourceFile(bucket=files.results_bucket, key=export.key, size=export.bytes)
        skip_header = offset == 0
        consumed = offset
        finished_part = True
        for record in _records(files.chunks(source, start=offset), keep_at_most=alone_max_bytes):
            unkept = isinstance(record, Unkept)
            size = record.size if unkept else len(record)
            start, consumed = consumed, consumed + size
            if skip_header:
                skip_header = False
                continue
            line_break = record.line_break if unkept else record.endswith(b"\n")
            line_size = size - line_break + len(ending)
            if count and len(body) + line_size > max_bytes:
                # past the budget with this record: it starts the next page
                return Page(bytes(body), count, encode_locator(tokens, job, part, start))
            if unkept or len(body) + line_size > alone_max_bytes:
                raise _too_large(tokens, job, line_size, alone_max_bytes - len(body), (part, consumed))
            body += record.removesuffix(b"\n") + ending.encode()
            count += 1
            if count >= max_records or len(body) >= max_bytes:
                finished_part = consumed >= export.bytes
                break
        if not finished_part:
            return Page(bytes(body), count, encode_locator(tokens, job, part, consumed))
        part, offset = part + 1, 0
        if count >= max_records or len(body) >= max_bytes:
            break
    more = part < len(job.export_files)
    return Page(bytes(body), count, encode_locator(tokens, job, part, 0) if more else None)


def _too_large(tokens: PageTokens, job: BulkJob, size: int, room: int, after: tuple[int, int]) -> RecordTooLarge:
    part, offset = after
    if offset >= job.export_files[part].bytes:
        part, offset = part + 1, 0
    following = encode_locator(tokens, job, part, offset) if part < len(job.export_files) else None
    return RecordTooLarge(
        f"a record of this job's results is {size} bytes, more than a page can carry ({room} with the header line):"
        " the locator in details reads on after it; POST /v1/queries with delivery export gives such rows whole",
        details={"record_bytes": size, "page_max_bytes": room, "locator_after": following or "null"},
    )


@dataclass(frozen=True)
class Unkept:
    """A record too long to keep: its size in bytes, and whether it ended with a line break (the last of a part may
    not)."""

    size: int
    line_break: bool


#: From a point outside quotes, as much of a record as lies there: runs of bytes that are neither a quote nor a line
#: break, and each quoted field whole (a doubled quote inside one closes it and opens the next). It stops at the
#: record's line break, at a quote that nothing after it closes, or at the end; possessive, so it never goes back.
_OUTSIDE_QUOTES = re.compile(rb'[^"\n]*+(?:"[^"]*+"[^"\n]*+)*+')


def _records(chunks: Iterator[bytes], *, keep_at_most: int) -> Iterator[bytes | Unkept]:
    """Whole CSV records (with their line break) from a byte stream, in order: a line break ends a record where the
    quotes before it in the record are even. A record longer than ``keep_at_most`` bytes is not kept (:class:`Unkept`
    stands in its place), so a record of hundreds of megabytes (a row of many full ``VARCHAR(65535)`` columns of
    quotes, each doubled) costs neither its memory nor, cut as it arrives, time that grows with its square (1 GB and a
    minute for a 210 MB record). The searches run in C, a few a record or a chunk whatever the fields hold: to the next
    line break, which ends the record if the quotes up to it are even; if not, :data:`_OUTSIDE_QUOTES` takes the record
    on past its quoted fields; and in a field the chunk before left open, to the quote that closes it. Cut quote by
    quote and line by line in Python, a field of line breaks and doubled quotes (``\\n""`` over and over) would take
    half a second a megabyte, half the API's 29 s for a 30 MB record; searched so, it takes about 0.01 s, less than
    plain rows of 40 bytes."""
    record = bytearray()
    size = 0  # of the record so far, kept or not
    quoted = False  # the record so far ends inside a quoted field
    last_newline = False
    for chunk in chunks:
        start, length = 0, len(chunk)
        while start < length:
            end = start
            if quoted:
                closing = chunk.find(b'"', end)
                quoted = closing < 0
                end = length if quoted else closing + 1
            if not quoted:
                line_break = chunk.find(b"\n", end)
                stop = length if line_break < 0 else line_break
                if chunk.count(b'"', end, stop) % 2:  # a quoted field is open there
                    stop = _OUTSIDE_QUOTES.match(chunk, end).end()
                    if stop < length and chunk[stop] == 0x22:  # ord('"'): a field this chunk does not close
                        quoted, stop = True, length
                end = stop
            ended = end < length  # stopped at a line break outside quotes
            end += ended
            size += end - start
            last_newline = chunk[end - 1] == 0x0A  # ord("\n")
            if size > keep_at_most:
                record.clear()
                if ended:
                    yield Unkept(size, line_break=True)
            elif not ended:
                record += chunk[start:end]
            elif record:
                record += chunk[start:end]
                yield bytes(record)
            else:
                yield chunk[start:end]  # a record inside one chunk: no copy through ``record``
            if ended:
                record.clear()
                size = 0
            start = end
    if size:
        yield bytes(record) if size <= keep_at_most else Unkept(size, line_break=last_newline)
