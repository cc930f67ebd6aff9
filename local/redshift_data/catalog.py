"""ListDatabases, ListSchemas, ListTables, DescribeTable: catalog queries run as the caller's database user.

Patterns use SQL LIKE syntax (``%`` and ``_``) as on Redshift. Type names and the precision/scale/length of columns
follow Redshift's ColumnMetadata conventions (``int4``, ``varchar`` with its length, ``numeric`` with precision and
scale decoded from the type modifier).
"""

from __future__ import annotations

from typing import Any

import psycopg

_TABLE_TYPES = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "f": "EXTERNAL TABLE"}
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")


def list_databases(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("SELECT datname::text FROM pg_database WHERE NOT datistemplate ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def list_schemas(conn: psycopg.Connection, pattern: str | None) -> list[str]:
    rows = conn.execute(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE %s AND nspname NOT LIKE 'pg_toast%%'"
        " AND nspname NOT LIKE 'pg_temp_%%' ORDER BY 1",
        (pattern or "%",),
    ).fetchall()
    return [r[0] for r in rows]


def list_tables(conn: psycopg.Connection, schema_pattern: str | None, table_pattern: str | None) -> list[dict]:
    rows = conn.execute(
        "SELECT n.nspname::text, c.relname::text, c.relkind::text, c.relpersistence::text"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname LIKE %s AND c.relname LIKE %s"
        " AND n.nspname NOT LIKE 'pg_toast%%' ORDER BY 1, 2",
        (schema_pattern or "%", table_pattern or "%"),
    ).fetchall()
    tables = []
    for schema, name, kind, persistence in rows:
        table_type = _TABLE_TYPES[kind]
        if persistence == "t":
            table_type = "LOCAL TEMPORARY"
        elif schema in _SYSTEM_SCHEMAS and table_type == "TABLE":
            table_type = "SYSTEM TABLE"
        tables.append({"name": name, "schema": schema, "type": table_type})
    return tables


def describe_table(conn: psycopg.Connection, schema: str | None, table: str | None) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT n.nspname::text, c.relname::text, a.attname::text, t.typname::text, a.atttypmod, a.attnotnull,"
        " pg_get_expr(d.adbin, d.adrelid)"
        " FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_type t ON t.oid = a.atttypid"
        " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
        " AND n.nspname = coalesce(%s, n.nspname) AND c.relname = coalesce(%s, c.relname)"
        " AND (%s::text IS NOT NULL OR n.nspname NOT IN ('pg_catalog', 'information_schema'))"
        " ORDER BY n.nspname, c.relname, a.attnum",
        (schema, table, schema),
    ).fetchall()
    columns = []
    for schema_name, table_name, name, type_name, typmod, not_null, default in rows:
        precision, scale, length = _type_modifier(type_name, typmod)
        column: dict[str, Any] = {
            "name": name,
            "label": name,
            "typeName": type_name,
            "schemaName": schema_name,
            "tableName": table_name,
            "nullable": 0 if not_null else 1,
            "precision": precision,
            "scale": scale,
            "length": length,
            "isCaseSensitive": type_name in ("varchar", "bpchar", "text"),
            "isCurrency": False,
            "isSigned": type_name in ("int2", "int4", "int8", "float4", "float8", "numeric"),
        }
        if default is not None:
            column["columnDefault"] = default
        columns.append(column)
    return columns


def _type_modifier(type_name: str, typmod: int) -> tuple[int, int, int]:
    """(precision, scale, length) from PostgreSQL's atttypmod, as Redshift reports them."""
    if typmod is None or typmod < 0:
        return 0, 0, 0
    if type_name == "numeric":
        value = typmod - 4
        return (value >> 16) & 0xFFFF, value & 0xFFFF, 0
    if type_name in ("varchar", "bpchar"):
        return typmod - 4, 0, typmod - 4
    return 0, 0, 0
