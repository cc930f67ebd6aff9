"""Reading the tenants' CSV files: the header check before anything is written, and records with their line numbers.

Line numbers are the file's physical lines, counted from 1 at the header, as Redshift's ``stl_load_errors`` counts
them: a line ends at LF (a CR alone is data), and a record that holds a quoted line break spans several lines and is
known by its first. Every line after the header is a record to account for, blank ones included: COPY rejects a blank
line of a table with several columns (a "missing data" error, listed in failedResults with its reason), and loads it as
an empty value into a table of one.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, NamedTuple

from spectra.bulk.files import BulkFiles, FileUnreadable, starts_as_gzip
from spectra.bulk.models import COLUMN_PATTERN, BulkJob, BulkOperation, SourceFile
from spectra.errors import NotFound, echoed
from spectra.sql_layout import fold_name

HEADER_MAX_BYTES = 1024 * 1024
#: The header's column names a job may have, in bytes as the job keeps them in its DynamoDB item (its load plan:
#: folded, and as written for the result files' header where that differs, :func:`names_kept`), which holds 400 KB
#: beside its batches' list; past this the plan's write would be refused and the load would crash on every delivery.
#: Redshift's 1,600 columns of 127 bytes pass it written as they are folded (lower case, no spaces around them).
HEADER_NAMES_MAX_BYTES = 256 * 1024
BOM = "\ufeff"
#: The columns each result file starts with, before the records' own (unprocessedrecords has the records' alone).
LEADING_COLUMNS = {"successful": ("sf__Id", "sf__Created"), "failed": ("sf__Id", "sf__Error"), "unprocessed": ()}
#: Those columns, folded: a file naming one would have its result files name it twice, and a client reading them by
#: name takes one for the other.
RESULT_FILE_COLUMNS = frozenset(fold_name(name) for names in LEADING_COLUMNS.values() for name in names)
_COLUMN = re.compile(COLUMN_PATTERN)
#: what surrogateescape makes of bytes that are not UTF-8
UNDECODABLE = re.compile("[\udc80-\udcff]")
csv.field_size_limit(16 * 1024 * 1024)  # a field may be as large as Redshift's largest VARCHAR (64 KB) and more


class BulkInputError(Exception):
    """The job's input cannot be loaded as it is: ``code`` is stable, ``message`` says exactly what was wrong."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FileHeader(NamedTuple):
    """A file's header line, read by :func:`read_header`."""

    columns: list[str]
    #: whether a row follows the header (a file past the first MB is taken to have one)
    rows: bool
    #: the column names as the file writes them (a BOM left out), which the result files repeat
    names: list[str]


def _name(source: SourceFile) -> str:
    return source.key.rsplit("/", 1)[-1]


def names_kept(columns: list[str], names: list[str]) -> list[str]:
    """The header's names as written, as a job's load plan keeps them beside its ``columns`` (folded) for the result
    files' header: none when they are the same."""
    return [] if names == columns else names


def read_header(files: BulkFiles, source: SourceFile, delimiter: str, *, called: str | None = None) -> FileHeader:
    """The file's column names (lower-cased, as the warehouse folds them), and whether rows follow them. Errors name
    the file as ``called`` (its stored name by default).

    A header line without rows is not this file's error: one batch of several may hold none (a script that sends
    every chunk it cut, the last one empty). The job fails ``no_rows`` when none of its files has a row
    (:func:`no_rows`)."""
    name = called or _name(source)
    try:
        head, whole = files.head_bytes(source, limit=HEADER_MAX_BYTES)
    except FileUnreadable as exc:  # named as its tenant knows it: an API batch's URL is the results bucket's
        raise BulkInputError("bad_gzip", f"{name} {exc.reason}") from exc
    except NotFound as exc:  # deleted after it was dropped or uploaded: the job fails, the message is not retried
        raise BulkInputError("file_not_found", f"{name} was deleted before the job read it") from exc
    if not head.removeprefix(BOM.encode()).strip():
        raise BulkInputError("empty_file", f"{name} is empty: a header line and at least one row are needed")
    if not source.gzip and starts_as_gzip(head):  # else told only that its header is not UTF-8
        raise BulkInputError(
            "invalid_header",
            f"{name} is gzip data sent as plain CSV: drop it named .csv.gz, or ask for an upload URL with gzip true",
        )
    text = head.decode("utf-8", errors="surrogateescape")  # rows' bad bytes are the rows' problem, reported per row
    reader = csv.reader(io.StringIO(text.removeprefix(BOM), newline="\n"), delimiter=delimiter)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise BulkInputError(
            "invalid_header",
            f"{name}: the header line is not valid CSV: {exc} (lines must end with LF or CRLF, not CR alone)",
        ) from exc
    header = [unpadded_name(field, delimiter) for field in header]
    if reader.line_num > 1 or any("\r" in field or "\n" in field for field in header):
        # the load skips one line (IGNOREHEADER 1): the rest of a header quoted across lines, and the rows after it up
        # to the next quote, would become one failed record
        raise BulkInputError(
            "invalid_header", f"{name}: a header field holds a line break (inside quotes); the header must be one line"
        )
    if names_no_column(header, delimiter):  # else a blank first line would pass as a header of no columns
        raise BulkInputError(
            "invalid_header", f"{name}: the first line has no column names; it must be the header line"
        )
    _, ended, rest = text.removeprefix(BOM).partition("\n")  # the header is one line (checked above)
    if not whole and not ended:
        raise BulkInputError("invalid_header", f"{name}: no header line within the first 1 MB")
    has_rows = any(_is_row(line, delimiter, one_column=len(header) == 1) for line in rest.split("\n"))
    if any(UNDECODABLE.search(field) for field in header):
        raise BulkInputError("invalid_header", f"{name}: the header line is not valid UTF-8")
    columns = header_columns(name, header, delimiter=delimiter)
    return FileHeader(columns, rows=has_rows or not whole, names=header)


def names_no_column(fields: list[str], delimiter: str) -> bool:
    """Whether a header line's fields, as the csv module reads them, name no column: each blank (``str.strip``'s
    white space: a no-break space, a form feed) once the blanks around a quoted one are dropped. An empty line, a
    line of blanks, or of delimiters and empty quotes alone (a spreadsheet's empty first row, ``,,,``)."""
    return not any(unpadded_name(field, delimiter).strip() for field in fields)


def first_line_names_no_column(line: str, delimiter: str) -> bool:
    """:func:`names_no_column` for a file's first line, its line break left out: the API's check of a batch when it
    is uploaded, the job's own test (a line the csv module cannot read is left to the job, which says why)."""
    try:
        fields = next(csv.reader([line.rstrip("\r")], delimiter=delimiter), [])
    except csv.Error:
        return False
    return names_no_column(fields, delimiter)


def _is_row(line: str, delimiter: str, *, one_column: bool) -> bool:
    """Whether a line after the header is a row (:func:`no_rows` when no file has one), read from its raw text: the
    csv module's fields have lost their quotes, so read from them, a one-column file of ``""`` or ``"  "`` rows (a JSON
    job's empty strings are written so) would fail ``no_rows``, where beside any other row the same rows load. A quote,
    a delimiter (``,`` is a row of empty fields) or any other character makes a row. Blanks alone do in a one-column
    file, whose one value they are (kept in a text column, NULL in another: README, "Empty fields"), not in one of
    several columns, where COPY rejects the line ("missing data") as it rejects an empty one. An empty line is never
    counted (README's ``no_rows``), though beside rows COPY judges it as any record."""
    blanks = " \t".replace(delimiter, "")
    return bool(line.strip("\r" if one_column else blanks + "\r"))


def unpadded_name(field: str, delimiter: str) -> str:
    """A header field as COPY reads a field (:func:`_fields`): blanks around a quoted one are not its, where Python's
    csv module keeps a quote after a blank as a character (read so, `` "email" `` would be refused as no column name,
    while the same shape in a row is read as its value)."""
    inner = field.strip(" \t".replace(delimiter, ""))
    if inner != field and len(inner) >= 2 and inner[0] == '"' == inner[-1]:
        return inner[1:-1].replace('""', '"')
    return field


#: An error names at most this many of the names it refuses (spectra.errors.echoed): a header (or a JSON batch's
#: keys) of many long bad names, echoed whole, would make an answer past Lambda's 6 MiB (a 502)
NAMES_SHOWN = 20


def shown(names: list[str], *, quoted: bool = False) -> str:
    """``names`` as an error lists them (spectra.errors.echoed), each quoted when asked."""
    listed = echoed(names, most=NAMES_SHOWN)
    if quoted:
        listed = [repr(n) for n in listed[:NAMES_SHOWN]] + listed[NAMES_SHOWN:]
    return ", ".join(listed)


def header_columns(name: str, header: list[str], *, delimiter: str | None) -> list[str]:
    """A header's column names, folded as the warehouse folds them (A-Z only: str.lower folds the Kelvin sign to k),
    or the :class:`BulkInputError` that refuses them: not column names, too long together for the job's record, named
    twice, or named as the result files' own columns. ``delimiter``: the CSV's, for the hint that it may be wrong;
    None for a JSON job's keys (spectra.bulk.jsonfiles), checked when the batch is uploaded."""
    hint = f" (is the column delimiter {delimiter!r} right?)" if delimiter else ""
    columns = [fold_name(field.strip()) for field in header]
    bad = [c for c in columns if not _is_identifier(c)]
    if bad:
        raise BulkInputError(
            "invalid_header",
            f"{name}: {'header fields' if delimiter else 'keys'} that are not column names:"
            f" {shown(bad, quoted=True)}{hint}",
        )
    size = sum(len(text.encode()) for text in [*columns, *names_kept(columns, header)])
    if size > HEADER_NAMES_MAX_BYTES:
        raise BulkInputError(
            "invalid_header",
            f"{name}: the header line's column names take {size} bytes as the job keeps them in its record (lower-"
            f"cased, and as written where that differs, spaces around them included); at most {HEADER_NAMES_MAX_BYTES}",
        )
    # counted once (list.count over a header of 100,000 columns named alike takes minutes, past the executor's 30 s)
    duplicates = sorted(c for c, n in Counter(columns).items() if n > 1)
    if duplicates:
        raise BulkInputError("duplicate_columns", f"{name}: columns named twice: {shown(duplicates)}")
    taken = [c for c in columns if c in RESULT_FILE_COLUMNS]
    if taken:
        raise BulkInputError(
            "invalid_header",
            f"{name}: {shown(taken)}: the result files name their own columns sf__Id, sf__Created and sf__Error,"
            " so a file's column may not be named so (a client reading them by name would read one for the other):"
            " leave the column out, or load a table whose column has another name",
        )
    return columns


def no_rows(called: list[str]) -> BulkInputError:
    """The error of a job whose files have a header line each and no rows, ``called`` as the job's other errors name
    them (an API batch by its place among the job's batches, not by its stored name alone, which the client never
    saw)."""
    if len(called) == 1:
        return BulkInputError("no_rows", f"{called[0]} has a header line but no rows")
    return BulkInputError("no_rows", f"none of the job's {len(called)} files has rows, only a header line each")


def _is_identifier(name: str) -> bool:
    return _COLUMN.fullmatch(name) is not None


@dataclass(frozen=True)
class TableColumn:
    name: str
    required: bool  # NOT NULL without a default: an insert must give it
    owner: bool = False  # the warehouse fills it with the loading user: never taken from a file
    defaulted: bool = True  # has a default (a NOT NULL column without one is ``required``)


#: A column default that is the user running the statement: the column says whose row it is.
_LOADING_USER = re.compile(r"\b(current_user|current_user_id|session_user|current_role|user)\b", re.IGNORECASE)
_QUOTED = re.compile(r"'(?:[^']|'')*'")


def owner_column(name: str, default: str | None, owner_name: str) -> bool:
    """Whether the column records whose row it is: named ``owner_name`` (``BULK_OWNER_COLUMN``), or defaulting to the
    user that runs the statement. Redshift applies no row-level security to INSERT or COPY (its RLS filters SELECT,
    UPDATE and DELETE only), so a file that set it could hand its rows to another tenant, in a load or an update."""
    unquoted = _QUOTED.sub("", default or "")  # a string literal that merely spells the words is not the user
    return bool(owner_name and name == owner_name) or bool(_LOADING_USER.search(unquoted))


def check_columns(job: BulkJob, header: list[str], table: list[TableColumn]) -> None:
    """Refuse, naming them, columns the table lacks, columns that say whose a row is (the warehouse sets them), and
    columns the operation needs but the file lacks."""
    known = {c.name for c in table}
    unknown = [c for c in header if c not in known]
    if unknown:
        raise BulkInputError("unknown_columns", f"columns not in table {job.object}: {', '.join(unknown)}")
    inserting = job.operation in (BulkOperation.INSERT, BulkOperation.UPSERT)
    # An owner column the warehouse cannot fill (no default) is one no file may fill either: NOT NULL, asking the file
    # for it (missing_columns) and then refusing it (owner_column) would send the tenant round in a circle; nullable,
    # the rows would land with no owner, which no tenant's row-level security shows (Redshift has no WITH CHECK)
    unfilled = [c.name for c in table if c.owner and (c.required or not c.defaulted)]
    if inserting and unfilled:
        raise BulkInputError(
            "owner_column",
            f"{', '.join(unfilled)} of {job.object} records whose row it is, may not be set by a file, and has no "
            f"default that fills it with the loading tenant's user: rows cannot be inserted into {job.object} "
            "(its administrator may give the column DEFAULT current_user)",
        )
    owned = [c.name for c in table if c.owner and c.name in header]
    if job.operation is BulkOperation.DELETE:
        # a delete reads the id alone (the rest is staged as text and never written): a file exported from the
        # table, its owner column included, is a delete file as it is; not keyed on it
        owned = [name for name in owned if name == (job.external_id_field or "").lower()]
    if owned:
        raise BulkInputError(
            "owner_column",
            f"{', '.join(owned)} of {job.object} records whose row it is and is set by the warehouse (the loading "
            "tenant's user), not by the file: leave it out",
        )
    external_id = (job.external_id_field or "").lower()
    if job.operation.needs_external_id and external_id not in header:
        raise BulkInputError(
            "missing_columns", f"the file has no column {external_id!r}, the job's externalIdFieldName"
        )
    if inserting:
        missing = [c.name for c in table if c.required and c.name not in header]
        if missing:
            raise BulkInputError(
                "missing_columns", f"required columns of {job.object} missing from the file: {', '.join(missing)}"
            )
    if job.operation is BulkOperation.UPDATE and len(header) < 2:
        raise BulkInputError("missing_columns", f"nothing to update: the file has only the column {external_id!r}")


class NullField(str):
    """An unquoted ``\\N`` field, COPY's NULL marker (its default NULL AS): NULL in any column, where ``"\\N"`` quoted
    is that text to the warehouse the local stack runs. Read as a plain string, the two would be one: a record whose
    external id is NULL (refused by the load as a missing id) would be listed as loaded, and the result files would
    write NULL and the text back each as the other. It is still the string ``\\N`` everywhere else."""

    __slots__ = ()


#: The one :class:`NullField`.
NULL = NullField("\\N")


class Quoted(str):
    """A field sent quoted that unquoted would read otherwise (:class:`QuotedEmpty`, :class:`QuotedBlank`): the result
    files write it quoted again."""

    __slots__ = ()


class QuotedEmpty(Quoted):
    """A field sent as ``""``: the empty text, where an empty field sent unquoted is NULL (COPY's CSV rule, which the
    warehouse the local stack runs follows: ``""`` into a number is refused, an empty field loads NULL). Read as a plain
    string, the two would be one, and the result files would write ``""`` back as an empty field: a failed row re-sent
    from failedResults would load NULL where it had been refused. It is still the empty string everywhere else (a
    missing external id, say)."""

    __slots__ = ()


#: The one :class:`QuotedEmpty`.
QUOTED_EMPTY = QuotedEmpty()


class QuotedBlank(Quoted):
    """A field of blanks alone sent quoted (``"  "``): text, where the same blanks unquoted are NULL in a column that
    is not text (README, "Empty fields"). Written back unquoted, a record the warehouse refused for it ("invalid input
    syntax for type integer") would load NULL when re-sent from failedResults."""

    __slots__ = ()


@dataclass(frozen=True)
class Record:
    line: int  # the physical line the record starts on (the header is line 1)
    #: None: a record longer than MAX_RECORD_CHARS (the warehouse rejects it too); an unquoted \N is :data:`NULL`, a
    #: quoted empty field :data:`QUOTED_EMPTY`, a quoted one of blanks alone a :class:`QuotedBlank`
    fields: list[str] | None


#: A record longer than this is one bad record, not read into memory (Redshift's rows stop at 4 MB).
MAX_RECORD_CHARS = 16 * 1024 * 1024
_PIECE_CHARS = 1024 * 1024  # how much of a line past that limit is read at a time


def records(
    files: BulkFiles, source: SourceFile, delimiter: str, quote: str = '"', *, newline: str = "\n"
) -> Iterator[Record]:
    """The file's data records (after the header), streamed, with the line each starts on, cut and split as COPY's
    CSV mode does (PostgreSQL's, which the emulator runs; Redshift's descends from it), so that each record is the
    one the warehouse loaded or rejected at that line:

    - a quote *anywhere* opens a quoted section, up to the next quote (``12" Pipe`` opens one, where Python's csv
      module would keep the quote as a character and so see other records than the warehouse);
    - inside a quoted section, a doubled quote is a quote, and delimiters and line ends are data;
    - a record ends at the first LF outside quotes, less one CR before it (CRLF files); a CR elsewhere is data;
    - a blank line is a record of one empty field (see the module's docstring);
    - a quoted section still open at the end of the file ends the record there (the warehouse rejects it).
    """
    with files.text(source, newline=newline) as stream:
        lines = _lines(stream, quote, newline)
        if next(lines, None) is None:  # the header (no quoted line breaks: read_header checked it)
            return
        number = 1
        pending: list[str] = []
        size = quotes = start = 0
        for line, line_quotes in lines:
            number += 1
            if not pending and not quotes:
                start = number
                if line is not None and not line_quotes:  # the common case, and the fast one: no quoting at all
                    fields = line.rstrip("\n").removesuffix("\r").split(delimiter)
                    yield Record(start, [NULL if f == NULL else f for f in fields] if "\\N" in line else fields)
                    continue
            quotes += line_quotes
            if line is None:  # a line past the limit: the record is too long, whatever else it holds
                pending, size = [], MAX_RECORD_CHARS + 1
            elif size <= MAX_RECORD_CHARS:
                pending.append(line)
                size += len(line)
            if quotes % 2:
                continue  # inside a quoted section: the record goes on at the next line
            yield Record(start, _fields("".join(pending), delimiter, quote) if size <= MAX_RECORD_CHARS else None)
            pending, size, quotes = [], 0, 0
        if pending or quotes:
            yield Record(start, _fields("".join(pending), delimiter, quote) if size <= MAX_RECORD_CHARS else None)


def _lines(stream: IO[str], quote: str, end: str = "\n") -> Iterator[tuple[str | None, int]]:
    """The stream's lines (each to its ``end``, LF unless told) and the quotes in each. A line past
    :data:`MAX_RECORD_CHARS` is None: it is read through a bounded piece at a time and never held whole (read whole, a
    file of one 150 MB line would be held in memory, and again split into fields), its quotes still counted, since they
    decide where the next record starts."""
    while line := stream.readline(MAX_RECORD_CHARS + 1):
        if line.endswith(end) or len(line) <= MAX_RECORD_CHARS:
            yield line, line.count(quote)
            continue
        quotes = line.count(quote)
        while piece := stream.readline(_PIECE_CHARS):
            quotes += piece.count(quote)
            if piece.endswith(end):
                break
        yield None, quotes


def _fields(record: str, delimiter: str, quote: str) -> list[str]:
    """One record's fields (see :func:`records`): the text between quotes alternates unquoted and quoted parts.

    Blanks (spaces, tabs; never the delimiter) between a delimiter and a quoted field's quotes are not the field's, as
    Redshift reads CSV ("white space between the delimiters and the quote characters is ignored", which the emulator
    does too): kept, `` "m2" `` would read as `` m2 `` and an upsert's id would never match the ``m2`` the warehouse
    prints, so the row it creates would be listed as updated, and a delete's id it does not find as deleted."""
    parts = record.split(quote)
    if len(parts) % 2:  # it ends outside quotes: its line end is not data
        parts[-1] = parts[-1].removesuffix("\n").removesuffix("\r")
    fields = [""]
    leads = [""]  # per field: its unquoted text before its first quoted part (all of it while there is none)
    tails: list[str | None] = [None]  # its unquoted text after its last quoted part; None: no quoted part
    for index, part in enumerate(parts):
        if index % 2:  # a quoted part, taken whole
            fields[-1] += part
            tails[-1] = ""
        elif not part and 0 < index < len(parts) - 1:  # "" inside a quoted section: one quote
            fields[-1] += quote
        else:
            first, *others = part.split(delimiter)
            fields[-1] += first
            if tails[-1] is None:
                leads[-1] += first
            else:
                tails[-1] = first
            fields.extend(others)
            leads.extend(others)
            tails.extend([None] * len(others))
    blanks = " \t".replace(delimiter, "")
    for index, (lead, tail) in enumerate(zip(leads, tails, strict=True)):
        if tail is None:  # no quoted part
            if fields[index] == NULL:  # COPY's NULL marker
                fields[index] = NULL
            continue
        if (lead or tail) and not lead.strip(blanks) and not tail.strip(blanks):
            fields[index] = fields[index][len(lead) : len(fields[index]) - len(tail)]
        if not fields[index]:
            fields[index] = QUOTED_EMPTY
        elif not fields[index].strip(blanks):
            fields[index] = QuotedBlank(fields[index])
    return fields
