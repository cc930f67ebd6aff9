"""An ingest job's result files, as Bulk 2.0 names and shapes them, with every input record in exactly one:

* ``successfulResults``: ``sf__Id``, ``sf__Created``, then the record's fields;
* ``failedResults``: ``sf__Id``, ``sf__Error``, then the record's fields as sent;
* ``unprocessedrecords``: the record's fields as sent (every record of a job that failed or was aborted: its load
  ran in one transaction, so none of it was applied).

``sf__Id`` is the record's external id (``externalIdFieldName``), empty for an insert that names none: a warehouse
table has no record id of its own. The outcome of each record comes from the warehouse: the rows its COPY rejected
(``stl_load_errors``: file and line) and the ids its staging step refused (missing, duplicated, not found) or, for an
upsert, created (or updated, whichever is fewer), which the load UNLOADed to the job's prefix. Source files are
streamed once, record by record, and the ids are kept in a SQLite file on local disk, so memory stays flat whatever
the file's size.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import re
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext

from events import ErrorInfo
from spectra.bulk.csvfiles import (
    BOM,
    HEADER_MAX_BYTES,
    LEADING_COLUMNS,
    MAX_RECORD_CHARS,
    NULL,
    QUOTED_EMPTY,
    UNDECODABLE,
    Quoted,
    Record,
    records,
    unpadded_name,
)
from spectra.bulk.files import FileReplaced, FileUnreadable, results_key
from spectra.bulk.models import BulkJob, BulkOperation, BulkState, SourceFile
from spectra.errors import NotFound
from spectra.ports import Ports
from spectra.sql_layout import fold_name
from spectra.unload import read_unload_manifest

logger = logging.getLogger(__name__)

KINDS = ("successful", "failed", "unprocessed")
MISSING_ID = "missing external id"
RECORD_BATCH = 2000  # records whose outcomes are looked up together (memory: one batch)
LOOKUP_IDS = 500  # ids per lookup query (under SQLite's oldest limit of 999 parameters)


#: Integer types, whose ids the warehouse prints in one way only: " 7", "007" and "+7" are all "7".
_INTEGER_TYPES = frozenset({"int2", "int4", "int8", "smallint", "integer", "int", "bigint"})
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")


#: Fixed-length character types: their values compare without trailing blanks, and print without them
_CHAR_TYPES = frozenset({"bpchar", "char", "character", "nchar"})
#: Character types with a declared length, past which a value's trailing blanks are cut when it is stored
_SIZED_TYPES = _CHAR_TYPES | {"varchar", "character varying", "nvarchar"}


#: Decimal types: a value prints with its column's scale (``4`` in a NUMERIC(10,2) is ``4.00``)
_DECIMAL_TYPES = frozenset({"numeric", "decimal"})


def as_printed(external_id: str, type_name: str | None, length: int | None = None, scale: int | None = None) -> str:
    """The id as the warehouse prints its value (``id::varchar`` in the outcome SELECT): an integer column's as a
    number; a decimal column's with its ``scale`` (rounded half away from zero, as COPY's ROUNDEC does); a sized
    character column's without the blanks past its ``length`` (the warehouse cuts them when it stores the value;
    other characters past it are a rejected row); a CHAR column's without any trailing blanks (``x`` and ``x  `` are
    one value there, the same row, one id given twice); ids of other types as written (a text id is its own value;
    write floats and dates as the warehouse prints them)."""
    if type_name in _INTEGER_TYPES and _INTEGER.fullmatch(external_id):
        return str(int(external_id))
    if type_name in _DECIMAL_TYPES and scale is not None:
        return _decimal_as_printed(external_id, scale)
    if type_name in _SIZED_TYPES and length and len(external_id) > length and not external_id[length:].strip(" "):
        external_id = external_id[:length]  # characters, as the emulator counts them (Redshift counts bytes)
    if type_name in _CHAR_TYPES:
        return external_id.rstrip(" ")
    return external_id


def _decimal_as_printed(external_id: str, scale: int) -> str:
    with localcontext() as context:
        context.prec = 100  # NUMERIC(38, s) and then some: quantize refuses a result longer than the precision
        try:
            value = Decimal(external_id.strip(" "))
            if not value.is_finite():
                return external_id
            value = value.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
        except InvalidOperation:
            return external_id  # not a number: a row COPY refuses, listed as sent
    return format(abs(value) if value.is_zero() else value, "f")  # no "-0.00": the warehouse prints 0.00


def is_missing_id(external_id: str) -> bool:
    """Empty or spaces only, or COPY's NULL marker (an unquoted ``\\N``): the staging SQL's rule too
    (spectra.bulk.sql; ``trim`` takes spaces only)."""
    return external_id is NULL or not external_id.strip(" ")


@dataclass
class ResultCounts:
    successful: int = 0
    failed: int = 0
    unprocessed: int = 0


class _Outcomes:
    """The warehouse's verdicts: rejected lines, and per-id outcomes (on disk)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.rejected: dict[tuple[str, int], str] = {}
        self._db = db
        # A scratch file for one writer: no journal, no fsync; a bounded page cache (memory stays flat).
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -32768"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE outcome (id TEXT PRIMARY KEY, reason TEXT NOT NULL)")
        self.created_listed = True  # upsert: the listed set is the created ids (else the updated ones)

    def add_ids(self, rows: Iterator[list[str]]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO outcome VALUES (?, ?)", ((r[0], r[1]) for r in rows if len(r) == 2)
        )

    def of_many(self, external_ids: list[str]) -> dict[str, str]:
        """The listed outcome of each of ``external_ids`` that has one: one query per few hundred ids, so a file of
        millions of records does not pay a query per record."""
        found: dict[str, str] = {}
        # An id holding bytes that are not UTF-8 (kept as surrogates, so the record is written back as sent) is no
        # id the warehouse printed, and SQLite cannot take it: it has no outcome.
        external_ids = [i for i in external_ids if not UNDECODABLE.search(i)]
        for start in range(0, len(external_ids), LOOKUP_IDS):
            chunk = external_ids[start : start + LOOKUP_IDS]
            marks = ", ".join("?" * len(chunk))
            found.update(self._db.execute(f"SELECT id, reason FROM outcome WHERE id IN ({marks})", chunk))
        return found


def no_records(job: BulkJob, kind: str) -> bytes:
    """The result file of ``kind`` of a job that had no records: the header line every other such file starts with
    (a Bulk 2.0 client reads its columns), or nothing for unprocessedrecords, whose columns only a batch could tell."""
    columns = LEADING_COLUMNS[kind]
    if not columns:
        return b""
    line = io.StringIO()
    csv.writer(line, delimiter=job.column_delimiter.char, lineterminator=job.line_ending.chars).writerow(columns)
    return line.getvalue().encode()


def write_results(ports: Ports, job: BulkJob) -> ResultCounts:
    """Write the job's three result files under its ``results_attempt`` and return how many rows each has.

    Each run that writes them names an attempt of its own (:func:`~spectra.bulk.files.new_results_attempt`), and
    only the job's write recording that attempt makes them the ones served: a second ending of the same statement
    (a status event delivered twice, the reconciler beside it) that loses its terminal write, or reads the drop put
    again since, or fails part-way, writes beside the winner's files, never over them. An error part-way gives every
    upload up, so no attempt is left with short files either."""
    if job.results_attempt is None:
        raise ValueError(f"bulk job {job.job_id}: result files are written under an attempt of their own")
    bulk = ports.bulk
    assert bulk is not None
    delimiter = job.column_delimiter.char
    terminator = job.line_ending.chars
    counts = ResultCounts()
    with ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="bulk-outcomes-"))
        db = stack.enter_context(closing(sqlite3.connect(f"{scratch}/outcomes.db")))
        verdicts = _read_outcomes(ports, job, _Outcomes(db)) if job.state is BulkState.JOB_COMPLETE else None
        writers, uploads = {}, []
        for kind in KINDS:
            upload = stack.enter_context(closing(bulk.files.writer(results_key(job, kind))))
            uploads.append(upload)
            text = stack.enter_context(
                io.TextIOWrapper(upload, encoding="utf-8", errors="surrogateescape", newline="", write_through=False)
            )
            writers[kind] = _RowWriter(text, delimiter=delimiter, lineterminator=terminator)
        # unwound first: on an error, every upload is given up before its text is flushed and it is closed
        stack.push(lambda failed, *_: failed is not None and _give_up(uploads))
        # A file with CR line ends alone was never loaded (its header check failed): its rows are listed as its
        # author sees them, one per CR-ended line, rather than as the one long line the warehouse would have read.
        line_ends = {s.url: _line_end(bulk.files, s) if verdicts is None else "\n" for s in job.files}
        header = _header(ports, job, line_ends)
        writers["successful"].writerow([*LEADING_COLUMNS["successful"], *header])
        writers["failed"].writerow([*LEADING_COLUMNS["failed"], *header])
        # a job that never loaded may have failed for batches whose headers differ: each file's records are listed in
        # the columns of one header, every batch's columns in it (a job that loaded had one header in all)
        listed_header, in_columns = (
            _unprocessed_columns(ports, job, header, line_ends) if verdicts is None else (header, {})
        )
        writers["unprocessed"].writerow(listed_header, header=True)
        key_index = _key_index(job, header)
        key_type = job.plan.external_id_type if job.plan is not None else None
        key_length = job.plan.external_id_length if job.plan is not None else None
        key_scale = job.plan.external_id_scale if job.plan is not None else None
        for source in job.files:
            url = source.url
            records_read = _readable_records(bulk.files, source, delimiter, line_ends[url])
            for batch in _batches(records_read, RECORD_BATCH):
                if verdicts is None:
                    place = in_columns.get(url)
                    for record in batch:
                        writers["unprocessed"].writerow(_in_columns(record.fields, place))
                    counts.unprocessed += len(batch)
                    continue
                keyed = [_external_id(record, key_index) for record in batch]
                printed = [as_printed(i, key_type, key_length, key_scale) for i in keyed]
                listed = (
                    verdicts.of_many([p for i, p in zip(keyed, printed, strict=True) if i and not is_missing_id(i)])
                    if key_index is not None
                    else {}
                )
                for record, sf_id, lookup in zip(batch, keyed, printed, strict=True):
                    fields = record.fields
                    error = verdicts.rejected.get((_load_error_file(url), record.line))
                    if error is None and fields is None:
                        error = f"a record longer than {MAX_RECORD_CHARS} characters"
                    reason = listed.get(lookup)
                    if error is None and key_index is not None and job.operation.needs_external_id:
                        error = MISSING_ID if is_missing_id(sf_id) else _refused(reason)
                    if error is not None:
                        writers["failed"].writerow([sf_id, error, *(fields or [])])
                        counts.failed += 1
                        continue
                    writers["successful"].writerow([sf_id, _created(verdicts, job, reason), *fields])
                    counts.successful += 1
    if results_mismatch(job, counts) is not None:
        logger.warning("bulk job %s: result files count %s, the warehouse counted %s", job.job_id, counts, job.counts)
    return counts


def _give_up(uploads: list) -> bool:
    for upload in uploads:
        upload.give_up()
    return False  # the error goes on


RESULTS_MISMATCH = "results_mismatch"
#: A job's ``error`` code when its result files were given up (spectra.bulk.lifecycle.give_up_results).
RESULTS_UNAVAILABLE = "results_unavailable"


def results_mismatch(job: BulkJob, written: ResultCounts) -> ErrorInfo | None:
    """Why the result files do not list the records the warehouse counted, or None when they do.

    A load that committed is ``JobComplete`` whatever its files say: the table holds what the warehouse loaded, and
    the job's counts are the warehouse's. When the files list other numbers (a source file that could not be read
    through, a record cut otherwise than the warehouse cut it), processed = succeeded + failed does not hold for
    the files, and the job says so with this error (``errorMessage``), rather than only in a log line.
    """
    expected = job.counts
    if expected is None or (written.successful + written.failed, written.failed) == (
        expected.processed,
        expected.failed,
    ):
        return None
    return ErrorInfo(
        code=RESULTS_MISMATCH,
        message=(
            f"the load committed: the warehouse processed {expected.processed} records, {expected.failed} of them"
            f" failed; but the result files list {written.successful} successful and {written.failed} failed"
            " records, so they do not account for every record (the job's counts are the warehouse's)"
        ),
    )


#: ``stl_load_errors.filename`` is CHAR(256): a longer file URL comes back cut there (and padded, which the load's
#: SELECT trims). Redshift's CHAR counts bytes, so a URL with multi-byte characters (a drop named in Japanese) is cut
#: at 256 bytes, maybe inside a character, where the emulator's column counts characters: both sides are matched on
#: the whole characters of their first 240 bytes, which either cut keeps. Two files of one job whose URLs share those
#: would be told apart by line only; a job's files are named by the service (``batch-NNNNN.csv``) or by one drop, so
#: they differ well within that.
LOAD_ERROR_FILENAME_BYTES = 240


def _load_error_file(url: str) -> str:
    return url.encode("utf-8", "surrogateescape")[:LOAD_ERROR_FILENAME_BYTES].decode("utf-8", "ignore").rstrip()


class _RowWriter:
    """csv.writer (minimal quoting) that also quotes a field holding a CR, and writes ``\\N`` and empty fields as they
    were sent: COPY's NULL marker (:data:`~spectra.bulk.csvfiles.NULL`) unquoted, the text quoted; a quoted empty
    field (:data:`~spectra.bulk.csvfiles.QUOTED_EMPTY`) ``""``, an unquoted one empty, and a quoted field of blanks
    (:class:`~spectra.bulk.csvfiles.QuotedBlank`) quoted. With an LF line terminator, Python's minimal quoting quotes
    only LF, and a bare CR written unquoted would read back as a line break; writing such rows all quoted would quote
    NULL too, which would read back as the text."""

    def __init__(self, stream, *, delimiter: str, lineterminator: str) -> None:
        self._stream = stream
        self._minimal = csv.writer(stream, delimiter=delimiter, lineterminator=lineterminator)
        self._delimiter, self._lineterminator = delimiter, lineterminator
        self._special = (delimiter, '"', "\r", "\n")

    def writerow(self, row: list[str], *, header: bool = False) -> None:
        if row == [""] and row[0] is not QUOTED_EMPTY and not header:
            # a record of one empty field sent unquoted (a blank line): csv.writer writes "", a quoted empty field,
            # which COPY reads as the empty string where the blank line was NULL; a header of one empty
            # name stays "" (written blank, the file's first line would be blank)
            self._stream.write(self._lineterminator)
        elif NULL in row or any("\r" in field or isinstance(field, Quoted) for field in row):  # rare: quoted as needed
            self._stream.write(self._delimiter.join(map(self._field, row)) + self._lineterminator)
        else:
            self._minimal.writerow(row)

    def _field(self, field: str) -> str:
        if isinstance(field, Quoted):  # "" and "  ": unquoted, each would read as NULL
            return f'"{field}"'
        if field is NULL or (field != NULL and not any(c in field for c in self._special)):
            return field
        return '"' + field.replace('"', '""') + '"'


def _batches(items: Iterator[Record], size: int) -> Iterator[list[Record]]:
    """``items`` in lists of ``size`` (itertools.batched, from Python 3.12)."""
    while batch := list(itertools.islice(items, size)):
        yield batch


def _external_id(record: Record, key_index: int | None) -> str:
    fields = record.fields
    return fields[key_index] if fields is not None and key_index is not None and key_index < len(fields) else ""


def _readable_records(files, source, delimiter: str, newline: str = "\n") -> Iterator[Record]:
    """The file's records; a file that cannot be read (gone, bad gzip, replaced by a newer upload) ends early: its
    job already says why, or the warning does (a file replaced after its load: the rows now there are not the ones
    the load judged)."""
    try:
        yield from records(files, source, delimiter, newline=newline)
    except (FileUnreadable, FileReplaced, NotFound) as exc:
        logger.warning("bulk result files stop early at %s: %s", source.url, exc)


def _line_end(files, source: SourceFile) -> str:
    """CR for a file whose first ``HEADER_MAX_BYTES`` hold CRs and no LF (classic Mac, some spreadsheet exports),
    else LF."""
    try:
        head, _ = files.head_bytes(source, limit=HEADER_MAX_BYTES)
    except (FileUnreadable, FileReplaced, NotFound):
        return "\n"
    return "\r" if b"\r" in head and b"\n" not in head else "\n"


def _header(ports: Ports, job: BulkJob, line_ends: dict[str, str]) -> list[str]:
    """The file's own column names (as the tenant wrote them), from its first record."""
    if job.plan is not None:
        return job.plan.header or job.plan.columns
    return _file_header(ports, job, job.files[0], line_ends) if job.files else []


def _unprocessed_columns(
    ports: Ports, job: BulkJob, header: list[str], line_ends: dict[str, str]
) -> tuple[list[str], dict[str, tuple[int, list[int | None]]]]:
    """The header unprocessedrecords lists a job's records under, and, for each file whose columns are not that
    header's, how many fields its records have and where each listed column is among them (``None``: a column the
    file lacks, listed empty).

    A job whose batches' headers differ fails ``invalid_header`` before loading anything, and every record goes to
    unprocessedrecords, the file a tenant fixes and sends again. Listed under the first batch's header, the records of a
    batch with its columns in another order would be in the wrong columns (a city under ``name``), and, sent again,
    would load so. The listed header is the first batch's, then any column only later batches have; columns match as the
    header check matches them (case and surrounding blanks aside). Records are placed only when each batch has the first
    batch's columns, or some of them, or them and more: a batch whose header misspells a name or was cut at another
    delimiter would have its values split off into a column of their own, and headers that name a column twice cannot be
    placed by name. Those jobs list every record as it was sent (the job's error names the fault); a JSON job's batches,
    whose keys are checked column names, are placed whatever keys each has."""
    if job.plan is not None or len(job.files) < 2 or not header:
        return header, {}  # loaded, or failed after the header check, which every file passed: one header
    first, *others = job.files
    headers = {first.url: header} | {source.url: _file_header(ports, job, source, line_ends) for source in others}
    folded = {url: [fold_name(name.strip()) for name in names] for url, names in headers.items()}
    if any(len(set(columns)) != len(columns) for columns in folded.values()):
        return header, {}
    ours = set(folded[first.url])
    same_columns = all(ours <= set(columns) or set(columns) <= ours for columns in folded.values() if columns)
    if not same_columns and job.content_type != "JSON":
        # a misspelt name, another delimiter: not the same columns, which placing would split. A JSON job's headers
        # are its records' keys, each checked as a column name when its batch was uploaded: batches of other keys
        # (optional fields) are placed by name, where listing them in the first batch's columns would put a city
        # under email
        return header, {}
    listed, listed_folded = list(header), list(folded[first.url])
    seen = set(listed_folded)  # looked up in a set: a list takes minutes for 100 batches of 38,000 names each
    for url, names in headers.items():
        for name, column in zip(names, folded[url], strict=True):
            if column not in seen:
                listed.append(name)
                listed_folded.append(column)
                seen.add(column)
    places = {}
    for url, columns in folded.items():
        if columns and columns != listed_folded:  # no header read: its records (if any) as they are
            position = {column: n for n, column in enumerate(columns)}
            places[url] = (len(columns), [position.get(column) for column in listed_folded])
    return listed, places


def _in_columns(fields: list[str] | None, place: tuple[int, list[int | None]] | None) -> list[str]:
    """A record's fields in the listed header's columns (:func:`_unprocessed_columns`); a ragged record (not as many
    fields as its file's header: which field is which column cannot be told) is listed as it was sent."""
    if fields is None:
        return []
    if place is None or len(fields) != place[0]:
        return fields
    return [fields[n] if n is not None else "" for n in place[1]]


def _file_header(ports: Ports, job: BulkJob, source: SourceFile, line_ends: dict[str, str]) -> list[str]:
    """One file's column names, as written in its first line ([] when it cannot be read)."""
    bulk = ports.bulk
    assert bulk is not None
    try:
        with bulk.files.text(source, newline=line_ends.get(source.url, "\n")) as stream:  # its first line, bounded
            line = stream.readline(HEADER_MAX_BYTES).removeprefix(BOM)  # before the CSV reads its quotes
        delimiter = job.column_delimiter.char
        return [unpadded_name(name, delimiter) for name in next(csv.reader([line], delimiter=delimiter), [])]
    except (FileUnreadable, FileReplaced, NotFound, csv.Error):
        return []


def _key_index(job: BulkJob, header: list[str]) -> int | None:
    if not job.external_id_field:
        return None
    name = job.external_id_field.lower()
    columns = [fold_name(field.strip()) for field in header]  # matched as the header check matches them
    return columns.index(name) if name in columns else None


def _refused(reason: str | None) -> str | None:
    return reason if reason not in (None, "created", "updated") else None


def _created(verdicts: _Outcomes, job: BulkJob, reason: str | None) -> str:
    if job.operation is BulkOperation.INSERT:
        return "true"
    if job.operation is not BulkOperation.UPSERT:
        return "false"
    listed = reason in ("created", "updated")
    return "true" if listed == verdicts.created_listed else "false"


def _read_outcomes(ports: Ports, job: BulkJob, verdicts: _Outcomes) -> _Outcomes:
    """Rejected lines and per-id outcomes, from the answers of the load's sub-statements."""
    plan = job.plan
    if plan is None or job.statement_id is None:
        return verdicts
    info = ports.warehouse.describe(job.statement_id)
    subs = info.sub_statements
    for _, errors in plan.copies:
        for row in result_rows(ports, subs[errors].statement_id):
            if len(row) >= 4:
                filename, line, column, reason = row[:4]
                where = f"{column}: " if column else ""
                verdicts.rejected[(_load_error_file(filename), int(line))] = f"{where}{reason}"
    if plan.outcome_url is not None:
        verdicts.add_ids(_unloaded_rows(ports, plan.outcome_url))
    elif plan.outcome_index is not None:  # a plan recorded before outcomes were unloaded
        verdicts.add_ids(result_rows(ports, subs[plan.outcome_index].statement_id))
    if job.operation is BulkOperation.UPSERT and job.counts is not None and job.counts.created is not None:
        applied = job.counts.processed - job.counts.failed
        updated = applied - job.counts.created
        verdicts.created_listed = updated * 2 >= applied  # the same choice the outcome SELECT made
    return verdicts


def _unloaded_rows(ports: Ports, url: str) -> Iterator[list[str]]:
    """The rows of an UNLOAD's CSV parts (each after its header line), in the order of its manifest, streamed."""
    bulk = ports.bulk
    assert bulk is not None
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    manifest = json.loads(bulk.files.read_all(f"{prefix}manifest"))
    for key, _, _ in read_unload_manifest(manifest, bucket, header=True).files:
        with bulk.files.text(SourceFile(bucket=bucket, key=key)) as stream:
            reader = csv.reader(stream)
            next(reader, None)
            yield from reader


def result_rows(ports: Ports, statement_id: str) -> Iterator[list[str]]:
    """A sub-statement's result rows. A first record that is the column names is a header line: whether the Data
    API's CSV results carry one is not documented (the emulator sends none), so the bulk path allows for it as the
    query path does (``spectra.delivery``); these SELECTs' values are never their columns' names."""
    columns, pages = ports.warehouse.csv_result(statement_id)
    names = [column.name for column in columns]
    first = True
    for page in pages:
        for row in csv.reader(io.StringIO(page, newline="")):
            if first and names and row == names:
                first = False
                continue
            first = False
            yield row
