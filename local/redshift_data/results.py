"""Result sets spooled to disk, served back as Data API pages.

A finished statement's rows are serialized once, while they stream from PostgreSQL, straight into the wire form the
result call needs (a JSON ``[Field, ...]`` array per row for GetStatementResult, CSV text for GetStatementResultV2),
and appended to a file per statement. Only page boundaries stay in memory, so a million-row result costs a few
hundred bytes of RAM plus the file; a page request is one ``seek`` + ``read`` and a few string joins.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

import psycopg
from psycopg.types.string import TextLoader

from .errors import ValidationException

# Types whose values map to a typed Field; everything else is loaded as PostgreSQL's own text (which is also how
# Redshift renders dates, timestamps and numerics: e.g. "2024-01-02 03:04:05", numeric as stringValue).
LONG_TYPES = {"int2", "int4", "int8", "oid"}
DOUBLE_TYPES = {"float4", "float8"}
NATIVE_TYPES = LONG_TYPES | DOUBLE_TYPES | {"bool", "bytea"}
SIGNED_TYPES = LONG_TYPES | DOUBLE_TYPES | {"numeric"}
CASE_SENSITIVE_TYPES = {"varchar", "bpchar", "text", "char", "name", "character varying"}
# Redshift's ColumnMetadata precision for fixed-size types (the JDBC "column size").
FIXED_PRECISION = {"int2": 5, "int4": 10, "int8": 19, "float4": 8, "float8": 17, "bool": 1, "date": 13, "timestamp": 29}
# ... and scale: a timestamp column is precision 29, scale 6 in the guide's get-statement-result example.
FIXED_SCALE = {"timestamp": 6}


def configure_text_loading(conn: psycopg.Connection, *, everything: bool) -> None:
    """Load non-native types as text on ``conn`` (``everything=True``: all types, as CSV wants)."""
    for info in psycopg.postgres.types:
        if everything or info.name not in NATIVE_TYPES:
            conn.adapters.register_loader(info.oid, TextLoader)
            if info.array_oid:
                conn.adapters.register_loader(info.array_oid, TextLoader)
        elif info.array_oid:
            conn.adapters.register_loader(info.array_oid, TextLoader)


_EMPTY = "\x00"  # stands for an empty string while the csv module writes a row


@dataclass
class Column:
    name: str
    type_name: str
    nullable: int = 1  # 0 = NOT NULL, 1 = nullable, 2 = unknown (JDBC convention, as Redshift reports it)
    precision: int = 0
    scale: int = 0
    schema_name: str = ""
    table_name: str = ""
    type_oid: int = field(default=0, repr=False)
    origin: tuple[int, int] = field(default=(0, 0), repr=False)  # (table oid, column number) or (0, 0)

    def metadata(self) -> dict[str, Any]:
        return {
            "isCaseSensitive": self.type_name in CASE_SENSITIVE_TYPES,
            "isCurrency": False,
            "isSigned": self.type_name in SIGNED_TYPES,
            "label": self.name,
            "name": self.name,
            "nullable": self.nullable,
            "precision": self.precision,
            "scale": self.scale,
            "schemaName": self.schema_name,
            "tableName": self.table_name,
            "typeName": self.type_name,
            "length": 0,
        }


def columns_from_cursor(cursor: psycopg.Cursor) -> list[Column]:
    """ColumnMetadata for the cursor's current result, without a query (the connection may be mid-stream).

    Built-in types get their name from psycopg's registry; ``enrich_columns`` fills in the rest once the rows are in.
    """
    description = cursor.description or []
    result = cursor.pgresult
    columns = []
    for i, d in enumerate(description):
        info = psycopg.postgres.types.get(d.type_code)
        type_name = info.name if info is not None else ""
        precision = d.precision or FIXED_PRECISION.get(type_name) or d.internal_size or 0
        if type_name in ("varchar", "bpchar") and d.display_size:
            precision = d.display_size
        scale = d.scale or FIXED_SCALE.get(type_name, 0)
        column = Column(name=d.name, type_name=type_name, precision=max(precision, 0), scale=scale)
        column.type_oid = d.type_code
        if result is not None:
            column.origin = (result.ftable(i), result.ftablecol(i))
        columns.append(column)
    return columns


def enrich_columns(conn: psycopg.Connection, columns: list[Column]) -> None:
    """Type names of non built-in types, and schema, table and NOT NULL of columns that come from a table."""
    names = _type_names(conn, [c.type_oid for c in columns if not c.type_name])
    tables = _table_columns(conn, list({c.origin for c in columns if c.origin[0]}))
    for column in columns:
        if not column.type_name:
            column.type_name = names.get(column.type_oid, "unknown")
        if origin := tables.get(column.origin):
            column.schema_name, column.table_name, not_null = origin
            column.nullable = 0 if not_null else 1


def _type_names(conn: psycopg.Connection, oids: Iterable[int]) -> dict[int, str]:
    names: dict[int, str] = {}
    unknown = list(set(oids))
    if unknown:
        rows = conn.execute("SELECT oid::int8, typname::text FROM pg_type WHERE oid = ANY(%s)", (unknown,)).fetchall()
        names.update({int(oid): str(name) for oid, name in rows})
    return names


def _table_columns(
    conn: psycopg.Connection, keys: list[tuple[int, int]]
) -> dict[tuple[int, int], tuple[str, str, bool]]:
    if not keys:
        return {}
    rows = conn.execute(
        "SELECT a.attrelid::int8, a.attnum::int8, n.nspname::text, c.relname::text, a.attnotnull"
        " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE (a.attrelid, a.attnum) IN (SELECT * FROM unnest(%s::oid[], %s::int2[]))",
        ([k[0] for k in keys], [k[1] for k in keys]),
    ).fetchall()
    return {(int(r[0]), int(r[1])): (r[2], r[3], bool(r[4])) for r in rows}


def _field_encoder(type_name: str) -> Callable[[Any], str]:
    """A per-column function from a loaded value to its Field JSON (built once per result, called per value)."""
    null = '{"isNull":true}'
    if type_name in LONG_TYPES:
        return lambda v: null if v is None else f'{{"longValue":{v:d}}}'
    if type_name in DOUBLE_TYPES:
        return lambda v: null if v is None else f'{{"doubleValue":{json.dumps(v)}}}'
    if type_name == "bool":
        return lambda v: null if v is None else ('{"booleanValue":true}' if v else '{"booleanValue":false}')
    if type_name == "bytea":
        return lambda v: null if v is None else f'{{"blobValue":"{base64.b64encode(v).decode()}"}}'
    return lambda v: null if v is None else '{"stringValue":' + _json_string(str(v)) + "}"


def _value_bytes(row: Sequence[Any]) -> int:
    """A row's size as its values' UTF-8 bytes (never more than its JSON, which escapes each non-ASCII character)."""
    return sum(len(v.encode()) if isinstance(v, str) else len(v) if isinstance(v, bytes) else len(str(v)) for v in row)


class ResultTooLarge(Exception):
    """The result broke one of the Data API's size limits; the message is the one AWS uses."""


@dataclass
class Page:
    offset: int
    length: int
    rows: int


@dataclass
class SpooledResult:
    """A finished result on disk: ``pages`` index the file; JSON pages hold comma-joined row arrays."""

    path: str
    result_format: str  # "JSON" | "CSV"
    columns: list[Column]
    total_rows: int = 0
    size_bytes: int = 0
    pages: list[Page] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def read_page(self, index: int) -> str:
        if not self.pages:
            return ""
        if index < 0 or index >= len(self.pages):
            raise ValidationException("The NextToken is invalid or expired. Start again without a NextToken.")
        page = self.pages[index]
        with self._lock, open(self.path, "rb") as f:
            f.seek(page.offset)
            return f.read(page.length).decode("utf-8")

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class ResultWriter:
    """Serialize rows as they stream in, cut them into pages, enforce the Data API's size limits."""

    def __init__(
        self,
        path: str,
        result_format: str,
        columns: list[Column],
        *,
        page_max_bytes: int,
        page_max_rows: int,
        max_result_bytes: int,
        max_row_bytes: int,
    ) -> None:
        self.result = SpooledResult(path=path, result_format=result_format, columns=columns)
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close(); the writer outlives any one block
        self._page_max_bytes = page_max_bytes
        self._page_max_rows = page_max_rows
        self._max_result_bytes = max_result_bytes
        self._max_row_bytes = max_row_bytes
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._offset = 0
        self._encoders = [_field_encoder(c.type_name) for c in columns]
        self._csv_buffer = io.StringIO()
        # csv quotes a field holding a character of the line terminator: with "\r\n", a lone carriage return is quoted
        # too, as PostgreSQL's COPY CSV quotes it (with "\n" it would go out bare and end the record for any reader).
        # Each line's "\r\n" becomes "\n" below.
        self._csv = csv.writer(self._csv_buffer, lineterminator="\r\n")

    def write_rows(self, rows: Sequence[Sequence[Any]]) -> None:
        if self.result.result_format == "CSV":
            serialized = self._csv_lines(rows)
        else:
            encoders = self._encoders
            serialized = ["[" + ",".join([f(v) for f, v in zip(encoders, row, strict=True)]) + "]" for row in rows]
        for row, line in zip(rows, serialized, strict=True):
            # bytes, as the Data API's limits count them ("64 KB per row"): 'é' * 40000 is 80,000 of them
            size = row_size = len(line) if line.isascii() else len(line.encode())
            if row_size > self._max_row_bytes and self.result.result_format != "CSV":
                row_size = _value_bytes(row)  # JSON escapes non-ASCII ('é' is 6 characters): the row's own bytes
            if row_size > self._max_row_bytes:
                raise ResultTooLarge(
                    f"Packet for query is too large: a result row is {row_size} bytes; the Data API allows "
                    f"{self._max_row_bytes} bytes per row."
                )
            if self._pending and (
                self._pending_bytes + size > self._page_max_bytes or len(self._pending) >= self._page_max_rows
            ):
                self._flush_page()
            self._pending.append(line)
            self._pending_bytes += size + 1
            self.result.total_rows += 1
            self.result.size_bytes += size
        if self.result.size_bytes > self._max_result_bytes:
            raise ResultTooLarge(
                f"Database response exceeded size limit: the result is over {self._max_result_bytes} bytes. "
                "Add a LIMIT, page the query, or UNLOAD the result to S3."
            )

    def _csv_lines(self, rows: Sequence[Sequence[Any]]) -> list[str]:
        """CSV as PostgreSQL's COPY writes it: NULL is an empty unquoted field, an empty string is ``""``.

        Python's csv module writes both the same way (and quotes a lone NULL), so empty strings go through a
        sentinel that cannot occur in database text (NUL) and a row of one NULL is written as an empty line.
        """
        lines = []
        buffer, writer = self._csv_buffer, self._csv
        for row in rows:
            if len(row) == 1 and row[0] is None:
                lines.append("\n")
                continue
            buffer.seek(0)
            buffer.truncate()
            writer.writerow([_EMPTY if value == "" else value for value in row])
            line = buffer.getvalue()[:-2] + "\n"
            lines.append(line.replace(_EMPTY, '""') if _EMPTY in line else line)
        return lines

    def _flush_page(self) -> None:
        sep = "" if self.result.result_format == "CSV" else ","
        data = sep.join(self._pending).encode("utf-8")
        self._file.write(data)
        self.result.pages.append(Page(offset=self._offset, length=len(data), rows=len(self._pending)))
        self._offset += len(data)
        self._pending = []
        self._pending_bytes = 0

    def close(self) -> SpooledResult:
        if self._pending:
            self._flush_page()
        self._file.close()
        return self.result

    def abort(self) -> None:
        self._file.close()
        self.result.delete()
