"""``stl_load_errors``: where COPY records the rows it rejected, as Redshift does.

Layout (decided here, created by :func:`install_system_tables`, which needs a superuser):

- schema ``redshift_system`` holds the table ``redshift_system.stl_load_errors`` with Redshift's columns;
- view ``public.stl_load_errors`` (``security_invoker``) over it, so the unqualified name users type resolves
  through the default search path, exactly like the Redshift system table;
- every role may INSERT and SELECT, and a row-level security policy keeps each role to its own rows (``userid`` is the
  role's OID). Superusers see every row. That is Redshift's visibility rule: "Superusers can see all rows; regular
  users can see only their own data."

Rows are written on a second connection logged in as the same user, committed at once: in Redshift a failed COPY's
errors stay in STL_LOAD_ERRORS after the statement rolls back (that is the whole point of reading them).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from .base import RedshiftSqlError

logger = logging.getLogger(__name__)

SCHEMA = "redshift_system"
TABLE = "stl_load_errors"

_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
GRANT USAGE ON SCHEMA {SCHEMA} TO PUBLIC;
CREATE SEQUENCE IF NOT EXISTS {SCHEMA}.query_id;
GRANT USAGE ON SEQUENCE {SCHEMA}.query_id TO PUBLIC;
CREATE TABLE IF NOT EXISTS {SCHEMA}.{TABLE} (
    userid integer NOT NULL DEFAULT to_regrole(current_user)::oid::integer,
    slice integer NOT NULL DEFAULT 0,
    tbl integer,
    starttime timestamp NOT NULL,
    session integer NOT NULL DEFAULT pg_backend_pid(),
    query integer NOT NULL,
    filename varchar(256),
    line_number bigint,
    colname varchar(127),
    type varchar(10),
    col_length varchar(10),
    position integer NOT NULL DEFAULT 0,
    raw_line varchar(1024),
    raw_field_value varchar(1024),
    err_code integer,
    err_reason varchar(100)
);
ALTER TABLE {SCHEMA}.{TABLE} ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS own_rows ON {SCHEMA}.{TABLE};
CREATE POLICY own_rows ON {SCHEMA}.{TABLE}
    USING (userid = to_regrole(current_user)::oid::integer)
    WITH CHECK (userid = to_regrole(current_user)::oid::integer);
GRANT SELECT, INSERT ON {SCHEMA}.{TABLE} TO PUBLIC;
CREATE OR REPLACE VIEW public.{TABLE} WITH (security_invoker = true) AS SELECT * FROM {SCHEMA}.{TABLE};
GRANT SELECT ON public.{TABLE} TO PUBLIC;
"""


def install_system_tables(conn: psycopg.Connection) -> None:
    """Create ``stl_load_errors`` (idempotent). Run once per database as a superuser, e.g. at emulator start-up."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('redshift_system.install'))")
        for statement in filter(str.strip, _DDL.split(";")):
            cur.execute(statement)


@dataclass(frozen=True)
class LoadError:
    """One rejected input record, in Redshift's terms."""

    filename: str
    line_number: int
    raw_line: str
    colname: str
    type: str
    col_length: str
    raw_field_value: str
    err_code: int
    err_reason: str


# PostgreSQL's COPY error context: 'COPY t, line 3, column amount: "abc"' (the column part is absent for row errors).
_CONTEXT_COLUMN = re.compile(r'column (?P<column>[^:]+?)(?:: "(?P<value>.*)")?$', re.DOTALL)
_CONTEXT_LINE = re.compile(r"\bline (?P<line>\d+)")
# Row-level messages name the column in the message itself: 'missing data for column "day"'.
_MESSAGE_COLUMN = re.compile(r'column "(?P<column>[^"]+)"')


def copy_context_line(error: psycopg.Error) -> int | None:
    """The 1-based line of the COPY input PostgreSQL blamed, if it said."""
    match = _CONTEXT_LINE.search(error.diag.context or "")
    return int(match.group("line")) if match else None


def describe_error(
    error: psycopg.Error, filename: str, line_number: int, raw: bytes, columns: dict[str, tuple[str, str]]
) -> LoadError:
    """Turn PostgreSQL's error for a single record into a stl_load_errors row (its reason kept verbatim)."""
    context = (error.diag.context or "").splitlines()[0] if error.diag.context else ""
    match = _CONTEXT_COLUMN.search(context)
    reason = error.diag.message_primary or str(error)
    in_message = _MESSAGE_COLUMN.search(reason)
    if match:
        colname = match.group("column").strip()
    else:
        colname = error.diag.column_name or (in_message.group("column") if in_message else "")
    value = (match.group("value") or "") if match else ""
    type_name, length = columns.get(colname, ("", ""))
    return LoadError(
        filename=filename,
        line_number=line_number,
        raw_line=raw.decode("utf-8", "replace").rstrip("\r\n").replace("\x00", ""),
        colname=colname,
        type=type_name,
        col_length=length,
        raw_field_value=value,
        err_code=redshift_error_code(error.sqlstate or "", reason, type_name),
        err_reason=reason,
    )


_TYPE_CODES = {"int2": 1207, "int4": 1207, "int8": 1207, "float4": 1208, "float8": 1208, "numeric": 1209}
_TYPE_CODES |= {"bool": 1210, "date": 1205, "timestamp": 1206, "timestamptz": 1206}


def redshift_error_code(sqlstate: str, reason: str, type_name: str) -> int:
    """Map a PostgreSQL SQLSTATE to the nearest code of Redshift's load error reference."""
    if sqlstate == "22P04":  # bad COPY file format: wrong number of columns
        return 1202 if reason.startswith("extra data") else 1203
    if sqlstate in ("22P02", "22007", "22008"):  # invalid text representation / datetime format
        return _TYPE_CODES.get(type_name, 1216)
    if sqlstate in ("22001", "22003"):  # value too long / out of range
        return 1204
    if sqlstate == "23502":  # NOT NULL column got no value
        return 1213
    if sqlstate in ("22021", "22P05"):  # invalid UTF-8
        return 1220
    return 1216


#: The session settings behind ``pg_last_copy_id()`` and ``pg_last_copy_count()`` (see :mod:`.functions`).
LAST_COPY_SETTING = "redshift.last_copy_id"
LAST_COPY_COUNT_SETTING = "redshift.last_copy_count"


def new_copy_query_id(conn: psycopg.Connection) -> int:
    """The query id of a COPY: the key of its ``stl_load_errors`` rows and what ``pg_last_copy_id()`` returns after
    it. Sequences ignore transactions, so ids stay unique whatever rolls back."""
    try:
        with conn.transaction():
            return conn.execute(f"SELECT nextval('{SCHEMA}.query_id')::integer").fetchone()[0]
    except psycopg.errors.UndefinedTable:
        with _same_user_connection(conn) as log_conn:
            _install_lazily(log_conn)
        return conn.execute(f"SELECT nextval('{SCHEMA}.query_id')::integer").fetchone()[0]


def remember_last_copy(conn: psycopg.Connection, query_id: int) -> None:
    """Redshift's ``pg_last_copy_id()``: the id of the session's most recent COPY (a session-level setting, so it
    survives the statement, and is rolled back with a failed transaction)."""
    conn.execute("SELECT set_config(%s, %s, false)", (LAST_COPY_SETTING, str(query_id)))


def remember_copy_count(conn: psycopg.Connection, rows: int) -> None:
    """Redshift's ``pg_last_copy_count()``: the rows the session's most recent COPY loaded (session-level, rolled back
    with a failed transaction, as ``pg_last_copy_id()``)."""
    conn.execute("SELECT set_config(%s, %s, false)", (LAST_COPY_COUNT_SETTING, str(rows)))


def record_load_errors(
    conn: psycopg.Connection, errors: list[LoadError], table_oid: int, started: datetime, query_id: int
) -> None:
    """Insert ``errors`` as the connection's user, in their own committed transaction, under ``query_id``."""
    if not errors:
        return
    with _same_user_connection(conn) as log_conn:
        try:
            _insert(log_conn, errors, table_oid, started, session=conn.info.backend_pid, query_id=query_id)
        except psycopg.errors.UndefinedTable:
            _install_lazily(log_conn)
            _insert(log_conn, errors, table_oid, started, session=conn.info.backend_pid, query_id=query_id)


def _install_lazily(log_conn: psycopg.Connection) -> None:
    """Create the table on first use when the user may (a superuser); otherwise say who must."""
    try:
        install_system_tables(log_conn)
    except psycopg.errors.InsufficientPrivilege as error:
        raise RedshiftSqlError(
            f"{SCHEMA}.{TABLE} is not installed in this database; run install_system_tables() as a superuser "
            "(the emulator does it at start-up)"
        ) from error


def _same_user_connection(conn: psycopg.Connection) -> psycopg.Connection:
    params = conn.info.get_parameters()
    password = conn.info.password
    return psycopg.connect(**params, **({"password": password} if password else {}), autocommit=True)


def _insert(log_conn, errors: list[LoadError], table_oid: int, started: datetime, session: int, query_id: int) -> None:
    statement = sql.SQL(
        "INSERT INTO {table} (tbl, starttime, session, query, filename, line_number, colname, type, col_length,"
        " raw_line, raw_field_value, err_code, err_reason)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    ).format(table=sql.Identifier(SCHEMA, TABLE))
    rows = [
        (
            table_oid,
            started,
            session,
            query_id,
            e.filename[:256],
            e.line_number,
            e.colname[:127],
            e.type[:10],
            e.col_length[:10],
            e.raw_line[:1024],
            e.raw_field_value[:1024],
            e.err_code,
            e.err_reason[:100],
        )
        for e in errors
    ]
    with log_conn.cursor() as cur:
        cur.executemany(statement, rows)
