"""Reading the tenants' CSV files: the header check before anything is written, and records with their line numbers.

Line numbers are the file's physical lines, counted from 1 at the header, as Redshift's ``stl_load_errors`` counts
them: a line ends at LF (a CR alone is data, inside quotes; outside them it makes the record invalid), and a record
that holds a quoted line break spans several lines and is known by its first. Every line after the header is a record
to account for, blank ones included: COPY rejects a blank line of a table with several columns (a "missing data"
error, listed in failedResults with its reason), and loads it as an empty value into a table of one.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

from spectra.bulk.files import BulkFiles, FileUnreadable
from spectra.bulk.models import COLUMN_PATTERN, BulkJob, BulkOperation, SourceFile
from spectra.errors import NotFound

HEADER_MAX_BYTES = 1024 * 1024
BOM = "\ufeff"
_COLUMN = re.compile(COLUMN_PATTERN)
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of bytes that are not UTF-8
csv.field_size_limit(16 * 1024 * 1024)  # a field may be as large as Redshift's largest VARCHAR (64 KB) and more


class BulkInputError(Exception):
    """The job's input cannot be loaded as it is: ``code`` is stable, ``message`` says exactly what was wrong."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _name(source: SourceFile) -> str:
    return source.key.rsplit("/", 1)[-1]


def read_header(files: BulkFiles, source: SourceFile, delimiter: str) -> list[str]:
    """The file's column names (lower-cased, as the warehouse folds them), after checking the file has rows."""
    try:
        head, whole = files.head_bytes(source, limit=HEADER_MAX_BYTES)
    except FileUnreadable as exc:
        raise BulkInputError("bad_gzip", str(exc)) from exc
    except NotFound as exc:  # deleted after it was dropped or uploaded: the job fails, the message is not retried
        raise BulkInputError("file_not_found", str(exc)) from exc
    if not head.removeprefix(BOM.encode()).strip():
        raise BulkInputError("empty_file", f"{_name(source)} is empty: a header line and at least one row are needed")
    text = head.decode("utf-8", errors="surrogateescape")  # rows' bad bytes are the rows' problem, reported per row
    reader = csv.reader(io.StringIO(text.removeprefix(BOM), newline="\n"), delimiter=delimiter)
    try:
        header = next(reader)
        has_rows = any(any(field.strip() for field in row) for row in reader)
    except csv.Error as exc:
        raise BulkInputError(
            "invalid_header",
            f"{_name(source)}: the header line is not valid CSV: {exc} (lines must end with LF or CRLF, not CR alone)",
        ) from exc
    if not any(field.strip() for field in header):  # else a blank first line would pass as a header of no columns
        raise BulkInputError(
            "invalid_header", f"{_name(source)}: the first line has no column names; it must be the header line"
        )
    if not whole and reader.line_num <= 1:
        raise BulkInputError("invalid_header", f"{_name(source)}: no header line within the first 1 MB")
    if not has_rows and whole:
        raise BulkInputError("no_rows", f"{_name(source)} has a header line but no rows")
    if any(_UNDECODABLE.search(field) for field in header):
        raise BulkInputError("invalid_header", f"{_name(source)}: the header line is not valid UTF-8")
    columns = [field.strip().lower() for field in header]
    bad = [c for c in columns if not _is_identifier(c)]
    if bad:
        raise BulkInputError(
            "invalid_header",
            f"{_name(source)}: header fields that are not column names: {', '.join(repr(c) for c in bad)}"
            f" (is the column delimiter {delimiter!r} right?)",
        )
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise BulkInputError("duplicate_columns", f"{_name(source)}: columns named twice: {', '.join(duplicates)}")
    return columns


def _is_identifier(name: str) -> bool:
    return _COLUMN.fullmatch(name) is not None


@dataclass(frozen=True)
class TableColumn:
    name: str
    required: bool  # NOT NULL without a default: an insert must give it


def check_columns(job: BulkJob, header: list[str], table: list[TableColumn]) -> None:
    """Refuse, naming them, columns the table lacks and columns the operation needs but the file lacks."""
    known = {c.name for c in table}
    unknown = [c for c in header if c not in known]
    if unknown:
        raise BulkInputError("unknown_columns", f"columns not in table {job.object}: {', '.join(unknown)}")
    external_id = (job.external_id_field or "").lower()
    if job.operation.needs_external_id and external_id not in header:
        raise BulkInputError(
            "missing_columns", f"the file has no column {external_id!r}, the job's externalIdFieldName"
        )
    if job.operation in (BulkOperation.INSERT, BulkOperation.UPSERT):
        missing = [c.name for c in table if c.required and c.name not in header]
        if missing:
            raise BulkInputError(
                "missing_columns", f"required columns of {job.object} missing from the file: {', '.join(missing)}"
            )
    if job.operation is BulkOperation.UPDATE and len(header) < 2:
        raise BulkInputError("missing_columns", f"nothing to update: the file has only the column {external_id!r}")


@dataclass(frozen=True)
class Record:
    line: int  # the physical line the record starts on (the header is line 1)
    fields: list[str] | None  # None: not valid CSV (a CR outside quotes, or a quote left open to the end of the file)


def records(files: BulkFiles, source: SourceFile, delimiter: str) -> Iterator[Record]:
    """The file's data records (after the header), streamed, with the line each starts on; a blank line is a record
    with one empty field (see the module's docstring)."""
    with files.text(source) as stream:
        reader = csv.reader(stream, delimiter=delimiter)  # lenient, as COPY is, about quotes inside fields
        previous_end = 0
        first = True
        while True:
            line = previous_end + 1
            try:
                fields: list[str] | None = next(reader)
            except StopIteration:
                return
            except csv.Error:
                fields = None  # this record cannot be read; the reader goes on at the next line
            previous_end = reader.line_num
            if first:
                first = False  # the header
                continue
            yield Record(line, [""] if fields == [] else fields)
