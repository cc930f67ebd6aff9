"""What the bulk unit tests share: a job factory, and the product's own staging SQL run on SQLite.

SQLite stands in for the warehouse where a test needs the *answer* of a statement the product generates (which ids
failed, which were created): the statement is transpiled from Redshift's dialect by sqlglot, so the test checks the
SQL the product really runs instead of a copy of its rules. Statements SQLite cannot run (COPY, UPDATE ... FROM,
DELETE ... USING) are left to the integration tier.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

import sqlglot

from spectra.bulk.models import BulkJob, BulkOperation, new_bulk_job_id

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def bulk_job(operation: BulkOperation = BulkOperation.INSERT, **fields: Any) -> BulkJob:
    values: dict[str, Any] = {
        "job_id": new_bulk_job_id(),
        "tenant_id": "acme",
        "db_user": "tenant_acme",
        "object": "accounts",
        "operation": operation,
        "external_id_field": "id" if operation.needs_external_id else None,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return BulkJob(**values)


def sqlite_warehouse(target_columns: list[str], target_rows: list[tuple] = ()) -> sqlite3.Connection:
    """An in-memory database with the target table ``"public"."accounts"`` (every column text)."""
    db = sqlite3.connect(":memory:")
    db.execute("ATTACH DATABASE ':memory:' AS public")
    db.execute(f"CREATE TABLE public.accounts ({', '.join(target_columns)})")
    if target_rows:
        marks = ", ".join("?" for _ in target_columns)
        db.executemany(f"INSERT INTO public.accounts VALUES ({marks})", target_rows)
    return db


def run(db: sqlite3.Connection, redshift_sql: str) -> list[tuple]:
    """One statement of the product's, in Redshift's dialect, on SQLite; its rows (if any)."""
    (sql,) = sqlglot.transpile(redshift_sql, read="redshift", write="sqlite")
    return db.execute(sql).fetchall()
