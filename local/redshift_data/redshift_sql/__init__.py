"""The Redshift statements PostgreSQL lacks, run by the Data API emulator on its PostgreSQL engine.

The executor calls, for every statement (each statement of a batch too), on the connection logged in as the
statement's database user and inside the statement's transaction::

    result = run_redshift_statement(sql, conn, s3_client)   # None: not Redshift-only, run it on PostgreSQL
    ...
    conn.execute(translate_sql(sql))                        # GETDATE(), NVL(...) and friends mapped, table
                                                            # design clauses (DISTKEY, SORTKEY, ENCODE) left out

- ``COPY table [(cols)] FROM 's3://...'``: see :mod:`.copy_from_s3` (prefix or MANIFEST sources, CSV or text, GZIP,
  IGNOREHEADER, NULL AS, MAXERROR with rejected rows in ``stl_load_errors``).
- ``UNLOAD ('select ...') TO 's3://prefix'``: see :mod:`.unload` (text, CSV, JSON, Parquet, HEADER, GZIP, PARALLEL,
  MAXFILESIZE, MANIFEST [VERBOSE], ALLOWOVERWRITE, CLEANPATH, EXTENSION).
- ``CREATE TABLE`` and ``ALTER TABLE`` with Redshift's table design clauses: see :mod:`.table_design`.
- Redshift's type names PostgreSQL lacks (``VARCHAR(MAX)``, ``NVARCHAR``, ``VARBYTE``): see :mod:`.type_names`.
- :func:`install_system_tables` creates ``stl_load_errors``; run it once per database as a superuser at start-up.

Failures: a Redshift-level problem the user can fix (bad option, missing S3 object, load errors past MAXERROR, UNLOAD
destination not empty) raises :class:`RedshiftSqlError`. PostgreSQL's own errors while running the statement
(permission denied, cancelled by CancelStatement, division by zero in an UNLOAD query) propagate unchanged as
``psycopg.Error``, exactly as they would for any other statement. Either way the statement's writes roll back.
"""

from __future__ import annotations

import psycopg

from .base import RedshiftResult, RedshiftSqlError
from .copy_from_s3 import run_copy
from .functions import translate_functions
from .load_errors import install_system_tables
from .statements import classify, parse_copy, parse_unload
from .table_design import translate_table_design
from .type_names import translate_type_names
from .unload import run_unload

__all__ = [
    "RedshiftResult",
    "RedshiftSqlError",
    "install_system_tables",
    "is_redshift_statement",
    "run_redshift_statement",
    "translate_sql",
]


def is_redshift_statement(sql: str) -> bool:
    """True for the statements :func:`run_redshift_statement` runs itself (COPY from S3, UNLOAD)."""
    return classify(sql) is not None


def translate_sql(sql: str) -> str:
    """``sql`` as PostgreSQL runs it: Redshift's type names PostgreSQL lacks rewritten, its table design clauses left
    out, its cheap functions mapped, quoted names folded; unchanged when it needs none of that. Raises
    :class:`RedshiftSqlError` for a DISTKEY or SORTKEY naming a column the table lacks."""
    return translate_functions(translate_table_design(translate_type_names(sql)))


def run_redshift_statement(sql: str, conn: psycopg.Connection, s3_client) -> RedshiftResult | None:
    """Run ``sql`` if it is a Redshift-only statement; None when it is not (the caller runs it on PostgreSQL)."""
    kind = classify(sql)
    if kind == "COPY":
        return run_copy(parse_copy(sql), conn, s3_client)
    if kind == "UNLOAD":
        return run_unload(parse_unload(sql), conn, s3_client)
    return None
