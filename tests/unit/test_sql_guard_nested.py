"""The SQL guard: what the mutation review (rv-mutants7) found the suite let change unnoticed."""

from __future__ import annotations

import pytest

from spectra.errors import SqlRejected
from spectra.sql_guard import check_sql

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("allow_writes", [False, True])
@pytest.mark.parametrize(
    "sql", ["WITH d AS (DROP TABLE other.t) SELECT 1", "WITH d AS (DROP TABLE owned.t) SELECT * FROM owned.x"]
)
def test_a_drop_nested_in_a_query_is_refused(sql, allow_writes):
    """Only ALTER TABLE's DROP COLUMN / CONSTRAINT is a DROP that belongs to its root. Mutant G16 (every Drop taken
    for a part of the root) let a DROP TABLE inside a CTE through, the root being a SELECT, for a read-only tenant
    too, and out of the owned schemas."""
    with pytest.raises(SqlRejected) as refused:
        check_sql(sql, max_bytes=10_000, allow_writes=allow_writes, owned_schemas=["owned"])
    assert refused.value.details["reason"] == "nested_statement"


def test_alter_table_drop_column_still_passes():
    sql = "ALTER TABLE owned.t DROP COLUMN c"
    assert check_sql(sql, max_bytes=10_000, allow_writes=True, owned_schemas=["owned"]) == sql
