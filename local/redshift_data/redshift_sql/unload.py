"""Redshift's ``UNLOAD ('select ...') TO 's3://prefix'`` on PostgreSQL.

The query runs on the caller's connection, as the statement's user, and its rows stream straight into S3 multipart
uploads (smart-open), part file by part file, so memory stays flat whatever the result size:

- text (Redshift's default, pipe-delimited) and CSV come from PostgreSQL's own ``COPY (query) TO STDOUT``: one
  message per row, formatted by the server exactly as COPY FROM reads it back;
- JSON (one object per line) and Parquet read a server-side cursor in batches; Parquet is written by pyarrow, one row
  group per batch.

Names follow Redshift: ``<prefix>0000_part_00``, ``_01``... (PARALLEL ON, one slice here) or ``<prefix>000``, ``001``...
(PARALLEL OFF), plus ``.parquet`` / ``.gz`` / the EXTENSION. A new part starts before a file would pass MAXFILESIZE
(for GZIP the compressed size is measured as it is produced, so a part may overshoot by a compression block).
``MANIFEST`` writes ``<prefix>manifest``. Existing files under the prefix make UNLOAD fail unless ALLOWOVERWRITE or
CLEANPATH, with Redshift's message. A failed UNLOAD removes the parts it had written.

Known difference: the text format is PostgreSQL's (backslash-escaped, i.e. Redshift's ESCAPE behaviour, always on).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import smart_open
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql
from psycopg.types.string import TextLoader
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import TokenError
from sqlglot.tokens import TokenType

from .base import RedshiftResult, RedshiftSqlError
from .functions import translate_functions
from .s3io import S3Object, list_objects, parse_s3_url, s3_error
from .statements import UnloadCommand
from .type_names import translate_type_names

FETCH_ROWS = 10_000
WRITE_BUFFER = 256 * 1024
S3_PART_SIZE = 8 * 1024 * 1024
NOT_EMPTY = (
    "Specified unload destination on S3 is not empty. Consider using a different bucket / prefix, manually "
    "removing the target files in S3, or using the ALLOWOVERWRITE option."
)


@dataclass(frozen=True)
class Part:
    url: str
    content_length: int
    record_count: int


def run_unload(command: UnloadCommand, conn: psycopg.Connection, s3_client) -> RedshiftResult:
    destination = parse_s3_url(command.destination)
    # as any query: Redshift's type names and functions, names folded
    query = translate_functions(translate_type_names(_single_query(command.query)))
    _prepare_destination(s3_client, destination, command)
    namer = _PartNamer(destination, command)
    try:
        with conn.transaction():
            if command.format in ("TEXT", "CSV"):
                parts, columns = _unload_delimited(conn, query, command, s3_client, namer)
            else:
                parts, columns = _unload_from_cursor(conn, query, command, s3_client, namer)
    except BaseException:
        namer.abort(s3_client)
        raise
    if command.manifest:
        header = command.header and command.format in ("TEXT", "CSV")
        _write_manifest(s3_client, destination, parts, columns, command.manifest_verbose, header=header)
    return RedshiftResult(sum(part.record_count for part in parts))


# --------------------------------------------------------------------------------------------------------------------
# Query and destination checks


def _single_query(query: str) -> str:
    """The UNLOAD query, checked to be one statement that cannot close the ``COPY ( ... )`` wrapped around it."""
    text = query.strip().rstrip(";").strip()
    try:
        tokens = Postgres().tokenize(text)
    except TokenError as error:
        raise RedshiftSqlError(f"UNLOAD query could not be read: {error}") from error
    depth = 0
    previous = None
    for token in tokens:
        if token.token_type is TokenType.SEMICOLON:
            raise RedshiftSqlError("UNLOAD takes a single SELECT statement")
        depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(token.token_type, 0)
        if depth < 0:
            raise RedshiftSqlError("UNLOAD query has an unbalanced ')'")
        named = previous is not None and previous.token_type in (TokenType.ALIAS, TokenType.DOT)
        previous = token
        if depth == 0 and token.token_type in (TokenType.LIMIT, TokenType.OFFSET) and not named:
            # (not the word as a column's alias or name: `select id as offset`, `t.limit`)
            # Redshift's own rule (UNLOAD, usage notes): a LIMIT goes in a nested SELECT, never the outer one
            raise RedshiftSqlError(
                f"{token.text.upper()} clause is not supported in the outer SELECT of UNLOAD; nest it in a subquery"
            )
    if not text:
        raise RedshiftSqlError("UNLOAD query is empty")
    return text


def _prepare_destination(s3_client, destination: S3Object, command: UnloadCommand) -> None:
    existing = list_objects(s3_client, destination)
    if command.cleanpath:
        _delete_quietly(s3_client, [obj.url for obj in existing], strict=True)
    elif not command.allowoverwrite and next(existing, None) is not None:
        raise RedshiftSqlError(NOT_EMPTY)


def _delete_quietly(s3_client, urls: list[str], strict: bool = False) -> None:
    """Delete objects, in batches of 1000 (S3's limit). Best effort on cleanup after a failure."""
    objects = [parse_s3_url(url) for url in urls]
    for start in range(0, len(objects), 1000):
        batch = objects[start : start + 1000]
        try:
            s3_client.delete_objects(
                Bucket=batch[0].bucket, Delete={"Objects": [{"Key": obj.key} for obj in batch], "Quiet": True}
            )
        except (ClientError, BotoCoreError) as error:
            if strict:
                raise s3_error(error, batch[0].url) from error


class _PartNamer:
    """Names part files as Redshift does and keeps track of them, so a failed UNLOAD can take them back."""

    def __init__(self, destination: S3Object, command: UnloadCommand):
        self._destination = destination
        self._command = command
        self._next = 0
        self.written: list[str] = []
        self._open_files: list = []

    def open_next(self, s3_client):
        """Start the next part: its URL and a streaming (multipart) S3 writer."""
        url = self.next_url()
        file = _open_s3(s3_client, url)
        self._open_files.append(file)
        return url, file

    def abort(self, s3_client) -> None:
        """Cancel uploads still in flight (else closing them would publish a partial part) and delete the rest."""
        for file in self._open_files:
            if not file.closed:
                file.terminate()
        _delete_quietly(s3_client, self.written)

    def next_url(self) -> str:
        index, self._next = self._next, self._next + 1
        name = f"0000_part_{index:02d}" if self._command.parallel else f"{index:03d}"
        suffix = ""
        if self._command.extension:
            suffix = "." + self._command.extension
        elif self._command.format == "PARQUET":
            suffix = ".parquet"
        if self._command.gzip and not suffix.endswith(".gz"):
            suffix += ".gz"
        url = f"s3://{self._destination.bucket}/{self._destination.key}{name}{suffix}"
        self.written.append(url)
        return url


def _open_s3(s3_client, url: str):
    location = parse_s3_url(url)
    return smart_open.open(
        f"s3://{location.bucket}/{location.key}",
        "wb",
        compression="disable",
        transport_params={"client": s3_client, "min_part_size": S3_PART_SIZE},
    )


# --------------------------------------------------------------------------------------------------------------------
# Text, CSV, JSON: rows of bytes into rolling part files


class _RollingTextParts:
    """Writes rows into part files of at most ``maxfilesize`` bytes, each starting with the header if any."""

    def __init__(self, s3_client, namer: _PartNamer, command: UnloadCommand, header: bytes | None):
        self._s3 = s3_client
        self._namer = namer
        self._max = command.maxfilesize
        self._gzip = command.gzip
        self._header = header
        self._file = None
        self.parts: list[Part] = []

    def write(self, row: bytes | memoryview) -> None:
        if self._file is None:
            self._open()
        elif self._rows and self._size() + len(row) > self._max:
            self._close()
            self._open()
        self._buffer += row
        self._rows += 1
        if len(self._buffer) >= WRITE_BUFFER:
            self._flush()

    def write_rows(self, rows: Iterable[bytes | memoryview]) -> None:
        """``write`` for every row. Uncompressed, the rows that fit in the current part are appended by a tight loop
        (a length check and an append per row): an UNLOAD of millions of short rows spends its time here."""
        rows = iter(rows)
        for row in rows:
            self.write(row)  # opens or rolls the part as needed
            if self._compressor is None:
                self._write_fitting(rows)

    def _write_fitting(self, rows: Iterator[bytes | memoryview]) -> None:
        """Append rows while they fit in this part; the first that does not is given to ``write`` (which starts the
        next part) and the caller goes on from there. The same limit as ``write``, without a method call per row."""
        buffer = self._buffer
        room = self._max - self._written - len(buffer)
        count = 0
        try:
            for row in rows:
                size = len(row)
                if size > room:
                    self._rows += count
                    count = 0
                    self.write(row)
                    return
                buffer += row
                room -= size
                count += 1
                if len(buffer) >= WRITE_BUFFER:
                    self._flush()  # empties the buffer in place; what it wrote counts in _written instead
        finally:
            self._rows += count

    def finish(self) -> list[Part]:
        if self._file is None:  # no rows at all: Redshift still writes one (header-only) file
            self._open()
        self._close()
        return self.parts

    def _open(self) -> None:
        self._url, self._file = self._namer.open_next(self._s3)
        self._compressor = zlib.compressobj(wbits=31) if self._gzip else None
        self._written = 0
        self._rows = 0
        self._buffer = bytearray(self._header or b"")

    def _size(self) -> int:
        """Bytes this part will hold so far (compressed bytes already produced, for GZIP)."""
        return self._written + (0 if self._compressor else len(self._buffer))

    def _flush(self, final: bool = False) -> None:
        data = bytes(self._buffer)
        self._buffer.clear()
        if self._compressor is not None:
            data = self._compressor.compress(data) + (self._compressor.flush() if final else b"")
        if data:
            self._file.write(data)
            self._written += len(data)

    def _close(self) -> None:
        self._flush(final=True)
        self._file.close()
        self.parts.append(Part(self._url, self._written, self._rows))
        self._file = None


def _unload_delimited(conn, query: str, command: UnloadCommand, s3_client, namer: _PartNamer):
    columns = _describe(conn, query)
    delimiter = command.effective_delimiter
    # the query on lines of its own: a trailing "--" comment in it must not swallow the closing parenthesis
    copy_sql = sql.SQL("COPY (\n{query}\n) TO STDOUT (FORMAT {fmt}, DELIMITER {delimiter}, NULL {null})").format(
        query=sql.SQL(query),
        fmt=sql.SQL("csv" if command.format == "CSV" else "text"),
        delimiter=sql.Literal(delimiter),
        null=sql.Literal(command.null_as),
    )
    header = _header_line([name for name, _ in columns], delimiter, command.format == "CSV") if command.header else None
    parts = _RollingTextParts(s3_client, namer, command, header)
    with conn.cursor() as cur, cur.copy(copy_sql) as copy:
        parts.write_rows(copy)  # PostgreSQL sends one COPY data message per row
    return parts.finish(), columns


def _header_line(names: list[str], delimiter: str, csv_quoting: bool) -> bytes:
    """The header line; in CSV a name holding the delimiter, a quote or a line break is quoted, as PostgreSQL's CSV
    output quotes a value (a bare line break in a name read as a record of its own)."""
    if csv_quoting:
        names = [f'"{n.replace(chr(34), chr(34) * 2)}"' if _needs_quotes(n, delimiter) else n for n in names]
    return (delimiter.join(names) + "\n").encode()


def _needs_quotes(name: str, delimiter: str) -> bool:
    return any(c in name for c in (delimiter, '"', "\n", "\r"))


def _describe(conn, query: str) -> list[tuple[str, psycopg.Column]]:
    """Column names and types of the query, without running it (planning only: LIMIT 0)."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM (\n{query}\n) AS unload_query LIMIT 0").format(query=sql.SQL(query)))
        return [(column.name, column) for column in cur.description]


# --------------------------------------------------------------------------------------------------------------------
# JSON and Parquet: a server-side cursor read in batches


def _unload_from_cursor(conn, query: str, command: UnloadCommand, s3_client, namer: _PartNamer):
    with conn.cursor(name="redshift_unload") as cur:
        if command.format != "JSON" and str(conn.info.parameter_status("DateStyle") or "").startswith("ISO"):
            # Parquet takes dates and timestamps as text: Python's datetime holds years 1 to 9999 only, and a BC date
            # (or a year past 9999), which Redshift unloads, would fail the whole UNLOAD here (_times reads them). Only
            # ISO's text is read so; a session that set another DateStyle keeps psycopg's loaders (years 1 to 9999).
            for type_name in _TIME_TYPES:
                cur.adapters.register_loader(type_name, TextLoader)
        if command.format != "JSON":
            # kept as the warehouse's text in their Parquet string columns: psycopg's objects would spell them
            # Python's way (an interval's timedelta folds '1 mon' into '30 days', a json value is re-serialised),
            # where the emulator's CSV UNLOAD and its Data API give PostgreSQL's text
            for type_name in _TEXT_KEPT_TYPES:
                cur.adapters.register_loader(type_name, TextLoader)
        cur.execute(sql.SQL(query))
        columns = [(column.name, column) for column in cur.description]
        batches = iter(lambda: cur.fetchmany(FETCH_ROWS), [])
        if command.format == "JSON":
            parts = _RollingTextParts(s3_client, namer, command, header=None)
            names = [name for name, _ in columns]
            for batch in batches:
                for row in batch:
                    parts.write((json.dumps(dict(zip(names, row, strict=True)), default=str) + "\n").encode())
            return parts.finish(), columns
        return _write_parquet(batches, columns, command, s3_client, namer), columns


def _write_parquet(batches, columns, command: UnloadCommand, s3_client, namer: _PartNamer) -> list[Part]:
    schema = pa.schema([pa.field(name, _arrow_type(column)) for name, column in columns])
    parts: list[Part] = []
    current = None  # (url, file, writer, rows)
    last_batch_bytes = 0
    for rows in batches:
        table = _arrow_table(rows, schema)
        if current is not None and current[3] and current[1].tell() + last_batch_bytes > command.maxfilesize:
            parts.append(_close_parquet(current))
            current = None
        if current is None:
            url, sink = namer.open_next(s3_client)
            current = [url, sink, pq.ParquetWriter(sink, schema, compression="snappy"), 0]
        before = current[1].tell()
        current[2].write_table(table)
        current[3] += table.num_rows
        last_batch_bytes = current[1].tell() - before
    if current is None:  # an empty result still produces one file, with the schema
        url, sink = namer.open_next(s3_client)
        current = [url, sink, pq.ParquetWriter(sink, schema, compression="snappy"), 0]
    parts.append(_close_parquet(current))
    return parts


def _close_parquet(current) -> Part:
    url, sink, writer, rows = current
    writer.close()
    size = sink.tell()
    sink.close()
    return Part(url, size, rows)


_ARROW_TYPES = {
    "bool": pa.bool_(),
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "bytea": pa.binary(),
}


def _type_name(column: psycopg.Column) -> str:
    info = psycopg.adapters.types.get(column.type_code)
    return info.name if info else ""


def _arrow_type(column: psycopg.Column) -> pa.DataType:
    name = _type_name(column)
    if name == "numeric":
        if column.precision is not None and column.precision <= 38:
            return pa.decimal128(column.precision, column.scale or 0)
        return pa.string()  # unconstrained NUMERIC has no fixed scale: keep it exact as text
    return _ARROW_TYPES.get(name, pa.string())


def _arrow_table(rows: list[tuple], schema: pa.Schema) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = []
    for values, field in zip(columns, schema, strict=True):
        if pa.types.is_string(field.type):
            values = [None if v is None else _as_text(v) for v in values]
        elif pa.types.is_timestamp(field.type) or pa.types.is_date32(field.type):
            arrays.append(_times(values, field.type))
            continue
        arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


_TIME_TYPES = ("date", "timestamp", "timestamptz")
#: Types a Parquet UNLOAD holds as text (not in :data:`_ARROW_TYPES`) that psycopg would load as Python objects
_TEXT_KEPT_TYPES = ("interval", "json", "jsonb", "timetz", "uuid")

#: PostgreSQL's text of a date or timestamp, BC and years past 9999 included: ``0044-03-15 12:00:00.5+00 BC``.
_TIME_TEXT = re.compile(
    r"(\d{4,})-(\d\d)-(\d\d)(?: (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?)?"
    r"(?:([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?)?( BC)?"
)


def _times(texts, type_: pa.DataType) -> pa.Array:
    """Dates or timestamps from PostgreSQL's text: Arrow's cast reads years 1 to 9999; a page holding others is read
    value by value, in the proleptic Gregorian calendar (year 0 for 1 BC), as Parquet counts days and microseconds.
    Anything else (PostgreSQL's ``infinity``, which Redshift has not) fails the UNLOAD."""
    if not any(isinstance(text, str) for text in texts):  # read by psycopg's loaders (a DateStyle other than ISO)
        return pa.array(texts, type=type_)
    try:
        return pa.array(texts, type=pa.string()).cast(type_)
    except pa.ArrowInvalid:
        pass
    date = pa.types.is_date32(type_)
    values = []
    for text in texts:
        match = _TIME_TEXT.fullmatch(text) if text is not None else None
        if text is not None and match is None:
            raise RedshiftSqlError(f"cannot unload {text!r} to Parquet: not a date or timestamp Redshift holds")
        values.append(_epoch_value(match, date) if match else None)
    try:
        return pa.array(values, type=pa.int32() if date else pa.int64()).cast(type_)
    except OverflowError:  # past 294247 AD, microseconds since 1970 no longer fit Parquet's 64 bits
        raise RedshiftSqlError("cannot unload a timestamp past 294247-01-10 to Parquet") from None


def _epoch_value(match: re.Match, date: bool) -> int:
    """Days (``date``) or microseconds since 1970-01-01 of a :data:`_TIME_TEXT` match. The product reads the
    warehouse's text with the same arithmetic (``spectra/result_pages.py``); the emulator, which stands for Redshift,
    imports nothing of the product's, so it keeps its own copy."""
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m, off_s, bc = match.groups()
    year = 1 - int(year) if bc else int(year)
    year -= int(month) <= 2  # Howard Hinnant's days_from_civil, any year
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (int(month) + (-3 if int(month) > 2 else 9)) + 2) // 5 + int(day) - 1
    days = era * 146097 + year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year - 719468
    if date:
        return days
    seconds = days * 86400 + int(hour or 0) * 3600 + int(minute or 0) * 60 + int(second or 0)
    if sign:
        offset = int(off_h) * 3600 + int(off_m or 0) * 60 + int(off_s or 0)
        seconds -= offset if sign == "+" else -offset
    return seconds * 1_000_000 + int((fraction or "").ljust(6, "0"))


def _as_text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    if isinstance(value, decimal.Decimal):
        return format(value, "f")  # PostgreSQL's digits, never str()'s exponent ('1.00000000000000000E-7')
    if isinstance(value, uuid.UUID | dt.timedelta):
        return str(value)
    return str(value)


# --------------------------------------------------------------------------------------------------------------------
# Manifest


def _write_manifest(
    s3_client, destination: S3Object, parts: list[Part], columns, verbose: bool, *, header: bool
) -> None:
    """Redshift's manifest. With HEADER, each part's ``record_count`` (and the total) counts its header line too:
    "If the HEADER option is specified, the row count includes the header line" (UNLOAD's reference)."""
    counts = [part.record_count + int(header) for part in parts]
    manifest: dict = {
        "entries": [
            {"url": part.url, "meta": {"content_length": part.content_length, "record_count": count}}
            for part, count in zip(parts, counts, strict=True)
        ]
    }
    if verbose:
        manifest["schema"] = {"elements": [{"name": name, "type": _manifest_type(col)} for name, col in columns]}
        manifest["meta"] = {
            "content_length": sum(part.content_length for part in parts),
            "record_count": sum(counts),
        }
        manifest["author"] = {"name": "Amazon Redshift", "version": "1.0.0"}
    key = destination.key + "manifest"
    try:
        s3_client.put_object(Bucket=destination.bucket, Key=key, Body=json.dumps(manifest, indent=2).encode())
    except (ClientError, BotoCoreError) as error:
        raise s3_error(error, f"s3://{destination.bucket}/{key}") from error


_MANIFEST_BASE = {"int2": "smallint", "int4": "integer", "int8": "bigint", "float4": "real"}
_MANIFEST_BASE |= {"float8": "double precision", "bool": "boolean", "bpchar": "character"}
_MANIFEST_BASE |= {"varchar": "character varying", "numeric": "numeric"}
_MANIFEST_BASE |= {"timestamptz": "timestamp with time zone", "timestamp": "timestamp without time zone"}


def _manifest_type(column: psycopg.Column) -> dict:
    name = _type_name(column)
    entry: dict = {"base": _MANIFEST_BASE.get(name, name or "unknown")}
    if name in ("varchar", "bpchar") and column.display_size:
        entry["dimensions"] = [[column.display_size]]
    if name == "numeric" and column.precision is not None:
        entry["dimensions"] = [[column.precision, column.scale or 0]]
    return entry
