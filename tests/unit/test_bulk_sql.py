"""The SQL a bulk job runs (spectra.bulk.sql): its shape per operation, where the plan says each answer is, and that
nothing the tenant sent reaches the warehouse except as a quoted name or an escaped literal."""

from __future__ import annotations

import re

import pytest
import sqlglot

from spectra.bulk.models import BulkOperation, ColumnDelimiter
from spectra.bulk.outcomes import is_missing_id
from spectra.bulk.sql import (
    COUNTS,
    CREATED,
    FAILED,
    LOADED_ROWS,
    REJECTED_ROWS,
    STAGE,
    STAGED,
    Manifest,
    copy_statement,
    iam_role_clause,
    ident,
    literal,
    load_statements,
    table_name,
    unload_statement,
)
from tests.unit.bulk_helpers import bulk_job, run, sqlite_warehouse

pytestmark = pytest.mark.unit

PLAIN = Manifest("s3://results/acme/b_1/load/plain.manifest", gzip=False)
GZIP = Manifest("s3://results/acme/b_1/load/gzip.manifest", gzip=True)
TARGET = '"public"."accounts"'
COLUMNS = ["id", "name", "city"]


def load(operation: BulkOperation, manifests=(PLAIN,), columns=COLUMNS, outcome_url=None, not_null=(), **fields):
    return load_statements(
        bulk_job(operation, **fields),
        list(columns),
        list(manifests),
        role="default",
        max_errors=250,
        outcome_url=outcome_url,
        not_null=not_null,
    )


def verb(sql: str) -> str:
    """The statement's kind and the table it changes or reads first, e.g. ``COPY bulk_stage``."""
    match = re.match(
        r"(LOCK|CREATE TEMP TABLE|INSERT INTO|DELETE FROM|UPDATE|MERGE INTO|COPY|SELECT count\(\*\) FROM|SELECT)"
        r"\s+(\S+)",
        sql,
    )
    assert match, sql
    return f"{match.group(1)} {match.group(2)}" if match.group(1) != "SELECT" else "SELECT"


# -- shapes ---------------------------------------------------------------------------------------------------------


def test_insert_copies_straight_into_the_target_once_per_compression():
    statements, plan = load(BulkOperation.INSERT, manifests=[PLAIN, GZIP])
    assert [verb(s) for s in statements] == [f"COPY {TARGET}", "SELECT", "SELECT", f"COPY {TARGET}", "SELECT", "SELECT"]
    assert statements[1] == statements[4] == REJECTED_ROWS
    assert statements[2] == statements[5] == LOADED_ROWS  # what each COPY loaded, asked, not read from ResultRows
    assert (plan.copies, plan.loaded) == ([(0, 1), (3, 4)], [2, 5])
    assert (plan.applied_index, plan.updated_index, plan.outcome_index) == (None, None, None)
    assert plan.columns == COLUMNS
    plain, gzipped = statements[0], statements[3]
    assert plain.startswith(f'COPY {TARGET} ("id", "name", "city") FROM \'{PLAIN.url}\' IAM_ROLE default MANIFEST')
    for option in ("FORMAT AS CSV", "DELIMITER ','", "IGNOREHEADER 1", "MAXERROR 250"):
        assert option in plain and option in gzipped
    # ISO 8601 timestamps, which Redshift's COPY refuses without 'auto', and decimals rounded, not truncated
    for option in ("DATEFORMAT 'auto'", "TIMEFORMAT 'auto'", "ROUNDEC"):
        assert option in plain and option in gzipped
    assert not plain.endswith("GZIP") and gzipped.endswith(" GZIP")
    assert f"FROM '{GZIP.url}'" in gzipped


def test_update_stages_refuses_bad_ids_then_updates_every_column_but_the_key():
    statements, plan = load(BulkOperation.UPDATE)
    assert [verb(s) for s in statements] == [
        f"CREATE TEMP TABLE {STAGE}",
        f"COPY {STAGE}",
        "SELECT",
        "SELECT",  # pg_last_copy_count()
        f"DELETE FROM {STAGE}",  # rows without an id
        f"CREATE TEMP TABLE {FAILED}",  # duplicated ids
        f"INSERT INTO {FAILED}",  # ids matching no row
        f"DELETE FROM {STAGE}",  # failed rows change nothing
        f"UPDATE {TARGET}",
        f"SELECT count(*) FROM {STAGE}",
        "SELECT",
    ]
    assert statements[0] == f'CREATE TEMP TABLE {STAGE} AS SELECT "id", "name", "city" FROM {TARGET} WHERE 1 = 0'
    assert "'not found'" in statements[6]
    assert statements[8] == (
        f'UPDATE {TARGET} SET "name" = {STAGED}."name", "city" = {STAGED}."city" FROM {STAGE} {STAGED}'
        f' WHERE {TARGET}."id" = {STAGED}."id"'
    )
    assert (plan.copies, plan.loaded, plan.applied_index, plan.updated_index, plan.outcome_index) == (
        [(1, 2)],
        [3],
        9,
        None,
        10,
    )
    assert statements[plan.outcome_index] == f"SELECT id::varchar(65535), reason FROM {FAILED}"


def test_delete_removes_the_staged_ids_and_reports_unknown_ones():
    statements, plan = load(BulkOperation.DELETE, columns=["id"])
    assert statements[0] == f"LOCK {TARGET}"  # before anything reads it: an update's read holds it off, and so on
    assert statements[9] == f'DELETE FROM {TARGET} USING {STAGE} {STAGED} WHERE {TARGET}."id" = {STAGED}."id"'
    assert "'not found'" in statements[7]
    assert (plan.applied_index, plan.updated_index, plan.outcome_index) == (10, None, 11)


def test_upsert_updates_every_row_of_an_id_then_inserts_the_new_ids_and_counts_what_existed():
    """No MERGE: Redshift's allows no source row to match two target rows and its reference's example keeps one row
    of a key held twice, where the warehouse enforces no key; UPDATE ... FROM sets every row of the id."""
    statements, plan = load(BulkOperation.UPSERT, manifests=[PLAIN, GZIP])
    assert [verb(s) for s in statements] == [
        f"LOCK {TARGET}",  # before anything reads it: two upserts of one table take turns
        f"CREATE TEMP TABLE {STAGE}",
        f"COPY {STAGE}",
        "SELECT",
        "SELECT",
        f"COPY {STAGE}",
        "SELECT",
        "SELECT",
        f"DELETE FROM {STAGE}",
        f"CREATE TEMP TABLE {FAILED}",
        f"DELETE FROM {STAGE}",  # no "not found" for an upsert: a new id is inserted
        f"CREATE TEMP TABLE {CREATED}",  # before the writes: which ids are new
        f"CREATE TEMP TABLE {COUNTS}",  # applied and created, counted once
        f"UPDATE {TARGET}",
        f"INSERT INTO {TARGET}",
        "SELECT",  # updated
        "SELECT",  # applied
        "SELECT",
    ]
    assert not any("MERGE" in statement for statement in statements)
    assert statements[15] == f"SELECT applied - created FROM {COUNTS}"
    assert statements[16] == f"SELECT applied FROM {COUNTS}"
    row = STAGED
    assert statements[13] == (
        f'UPDATE {TARGET} SET "name" = {row}."name", "city" = {row}."city" FROM {STAGE} {row}'
        f' WHERE {TARGET}."id" = {row}."id"'
    )
    assert statements[11] == (
        f'CREATE TEMP TABLE {CREATED} AS SELECT s."id", s."name", s."city" FROM {STAGE} s'
        f' WHERE NOT EXISTS (SELECT 1 FROM {TARGET} t WHERE t."id" = s."id")'
    )
    assert statements[14] == f'INSERT INTO {TARGET} ("id", "name", "city") SELECT "id", "name", "city" FROM {CREATED}'
    assert (plan.copies, plan.loaded, plan.applied_index, plan.updated_index, plan.outcome_index) == (
        [(2, 3), (5, 6)],
        [4, 7],
        16,
        15,
        17,
    )
    assert plan.outcome_url is None


@pytest.mark.parametrize("operation", [BulkOperation.UPDATE, BulkOperation.UPSERT, BulkOperation.DELETE])
def test_outcomes_are_unloaded_to_the_given_prefix_when_one_is_given(operation):
    url = "s3://results/acme/b_1/load/outcome_"
    selected, _ = load(operation)
    statements, plan = load(operation, outcome_url=url)
    assert statements[:-1] == selected[:-1]  # only the last statement changes
    assert plan.outcome_url == url and plan.outcome_index == len(statements) - 1
    assert statements[-1] == unload_statement(selected[-1], url, role="default")
    assert sqlglot.parse_one(f"SELECT {literal(selected[-1])}", read="redshift").expressions[0].this == selected[-1]


@pytest.mark.parametrize("operation", [op for op in BulkOperation if op is not BulkOperation.QUERY])
def test_every_statement_is_one_well_formed_statement(operation):
    statements, _ = load(operation, manifests=[PLAIN, GZIP], external_id_field="Id")
    for sql in statements:
        assert len(sqlglot.parse(sql, read="redshift")) == 1, sql


def test_the_external_id_is_matched_lower_cased_as_the_header_is():
    statements, _ = load(BulkOperation.UPDATE, external_id_field="ID")
    assert f'{TARGET}."id" = {STAGED}."id"' in statements[8]


@pytest.mark.parametrize("delimiter", list(ColumnDelimiter))
def test_copy_uses_the_jobs_delimiter(delimiter):
    sql = copy_statement(TARGET, ["a"], PLAIN, bulk_job(column_delimiter=delimiter), role="default", max_errors=0)
    assert f"DELIMITER {literal(delimiter.char)}" in sql
    assert "MAXERROR 0" in sql


def test_copy_and_unload_name_an_iam_role_as_a_literal():
    role = "arn:aws:iam::123456789012:role/spectra-copy"
    assert iam_role_clause("default") == "IAM_ROLE default"
    assert iam_role_clause(role) == f"IAM_ROLE '{role}'"
    assert f"IAM_ROLE '{role}'" in copy_statement(TARGET, ["a"], PLAIN, bulk_job(), role=role, max_errors=1)
    assert f"IAM_ROLE '{role}'" in unload_statement("select 1", "s3://b/p/part_", role=role)


# -- names and literals ---------------------------------------------------------------------------------------------


def test_identifiers_are_quoted_with_inner_quotes_doubled():
    assert ident("name") == '"name"'
    assert ident('we"ird') == '"we""ird"'
    quoted = ident('we"ird')
    assert sqlglot.parse_one(f"SELECT {quoted} FROM t", read="redshift").expressions[0].name == 'we"ird'


@pytest.mark.parametrize(
    ("obj", "expected"),
    [("accounts", TARGET), ("Accounts", TARGET), ("Sales.Orders", '"sales"."orders"'), ("_x.y_1", '"_x"."y_1"')],
)
def test_table_names_are_folded_and_qualified(obj, expected):
    assert table_name(bulk_job(object=obj)) == expected


@pytest.mark.parametrize("obj", ['a"b', "a.b.c", "1abc", "a b", "a;drop", ""])
def test_a_table_name_that_is_not_plain_identifiers_is_refused(obj):
    with pytest.raises(ValueError):
        table_name(bulk_job().model_copy(update={"object": obj}))


TRICKY = ["it's", "a\\b", "\\'", "\\", "''", "'; DROP TABLE accounts; --", "tab\there", "naïve ☃", "a\\nb", "\\\\''"]


@pytest.mark.parametrize("value", TRICKY)
def test_literals_read_back_as_the_value_in_redshifts_dialect(value):
    # Redshift reads a backslash in a literal as an escape: a quote after a backslash must not end the string
    parsed = sqlglot.parse(f"SELECT {literal(value)}", read="redshift")
    assert len(parsed) == 1
    assert parsed[0].expressions[0].this == value


@pytest.mark.parametrize("query", ["select 'it''s' as x", "select '\\\\' as b, 1", "select 1 -- it's"])
def test_unload_quotes_the_query_as_one_literal(query):
    sql = unload_statement(query, "s3://results/acme/b_1/export/part_", role="default")
    assert sql.startswith(f"UNLOAD ({literal(query)}) TO 's3://results/acme/b_1/export/part_' IAM_ROLE default ")
    for option in ("FORMAT AS CSV", "HEADER", "PARALLEL OFF", "MANIFEST VERBOSE", "ALLOWOVERWRITE"):
        assert option in sql
    inner = sqlglot.parse_one(f"SELECT {literal(query)}", read="redshift").expressions[0].this
    assert inner == query


# -- the staging step's answers, run on SQLite -----------------------------------------------------------------------


def starting(statements: list[str], prefix: str, containing: str = "") -> str:
    return next(s for s in statements if s.startswith(prefix) and containing in s)


def staged(operation: BulkOperation, stage_rows: list[tuple], target_ids: list[str]):
    """Run the staging statements up to (not including) the change of the target, with ``stage_rows`` as the COPY's
    rows; returns the database and the statements."""
    statements, plan = load(operation, columns=["id", "name"])
    db = sqlite_warehouse(["id", "name"], [(i, f"old {i}") for i in target_ids])
    run(db, starting(statements, f"CREATE TEMP TABLE {STAGE}"))
    db.executemany(f"INSERT INTO {STAGE} VALUES (?, ?)", stage_rows)  # what COPY loaded
    return db, statements, plan


@pytest.mark.parametrize("operation", [BulkOperation.UPDATE, BulkOperation.DELETE])
def test_missing_duplicated_and_unknown_ids_are_refused_once_each(operation):
    rows = [("1", "a"), ("2", "b"), ("2", "c"), (None, "no id"), ("9", "new"), ("7", "x"), ("7", "y")]
    db, statements, plan = staged(operation, rows, target_ids=["1", "2", "3"])
    run(db, starting(statements, f"DELETE FROM {STAGE} WHERE"))  # ... IS NULL
    run(db, starting(statements, f"CREATE TEMP TABLE {FAILED}"))  # duplicated ids
    run(db, starting(statements, f"INSERT INTO {FAILED}", "'not found'"))  # ids matching no row
    outcome = sorted(run(db, statements[plan.outcome_index]))
    # 7 is duplicated *and* unknown: listed once, as the first reason found
    assert outcome == [("2", "duplicate external id"), ("7", "duplicate external id"), ("9", "not found")]
    assert sorted(r[0] for r in db.execute(f"SELECT id FROM {STAGE}")) == ["1", "2", "2", "7", "7", "9"]


@pytest.mark.parametrize("operation", [BulkOperation.UPDATE, BulkOperation.UPSERT, BulkOperation.DELETE])
def test_a_blank_external_id_is_missing_as_the_result_files_say(operation):
    """Without EMPTYASNULL, Redshift's COPY loads an empty CHAR/VARCHAR field as '' rather than NULL: a blank id
    must be refused whichever it became, by the same rule the result files apply (spectra.bulk.outcomes)."""
    ids = [None, "", "  ", "\t", "1"]
    db, statements, _ = staged(operation, [(i, "x") for i in ids], target_ids=["1"])
    run(db, starting(statements, f"DELETE FROM {STAGE} WHERE"))
    left = sorted(r[0] for r in db.execute(f"SELECT id FROM {STAGE}"))
    assert left == ["\t", "1"]  # SQL's trim, like the files' rule, takes spaces only
    assert [i for i in ids if i is None or is_missing_id(i)] == [None, "", "  "]


@pytest.mark.parametrize(
    ("created", "updated"),
    [(0, 0), (1, 0), (0, 1), (1, 1), (2, 1), (1, 2), (2, 2), (3, 2), (2, 3), (5, 0), (0, 5)],
)
def test_upsert_lists_the_smaller_of_the_created_and_updated_sets_as_outcomes_expects(created, updated):
    """The outcome SELECT lists created ids when at least half the applied rows were updates, else the updated ids;
    the result files read the list by the same rule (spectra.bulk.outcomes), from the job's counts."""
    new_ids = [f"n{i}" for i in range(created)]
    old_ids = [f"o{i}" for i in range(updated)]
    db, statements, plan = staged(
        BulkOperation.UPSERT, [(i, "x") for i in new_ids + old_ids] + [("d", "1"), ("d", "2")], [*old_ids, "other"]
    )
    run(db, starting(statements, f"DELETE FROM {STAGE} WHERE"))
    run(db, starting(statements, f"CREATE TEMP TABLE {FAILED}"))
    db.execute(f"DELETE FROM {STAGE} WHERE id IN (SELECT id FROM {FAILED})")  # DELETE ... USING: not SQLite
    run(db, starting(statements, f"CREATE TEMP TABLE {CREATED}"))  # which staged ids are new
    run(db, starting(statements, f"CREATE TEMP TABLE {COUNTS}"))  # the counts
    assert run(db, statements[plan.updated_index]) == [(updated,)]
    assert run(db, statements[plan.applied_index]) == [(created + updated,)]
    outcome = run(db, statements[plan.outcome_index])
    assert ("d", "duplicate external id") in outcome
    listed = sorted(row for row in outcome if row[1] != "duplicate external id")
    applied = created + updated
    created_listed = updated * 2 >= applied  # spectra.bulk.outcomes._read_outcomes' rule
    if created_listed:
        assert listed == sorted((i, "created") for i in new_ids)
    else:
        assert listed == sorted((i, "updated") for i in old_ids)
    assert len(listed) <= applied / 2  # the smaller set, so the answer stays small


@pytest.mark.parametrize("operation", [BulkOperation.UPDATE, BulkOperation.UPSERT])
def test_a_null_for_a_not_null_column_is_refused_row_by_row(operation):
    """It failed the UPDATE or INSERT, and with it the whole job, for one empty field (found by the bulk values
    review); an insert's COPY refuses such a row on its own. The key is left to the missing-id refusal."""
    statements, _ = load(operation, not_null=["id", "city", "elsewhere"])
    refusals = [s for s in statements if s.startswith(f"INSERT INTO {FAILED}") and "IS NULL" in s]
    assert refusals == [
        f'INSERT INTO {FAILED} SELECT DISTINCT s."id", CASE WHEN s."city" IS NULL THEN'
        f" 'city: missing data for a NOT NULL column' END FROM {STAGE} s WHERE (s.\"city\" IS NULL)"
        f' AND NOT EXISTS (SELECT 1 FROM {FAILED} f WHERE f.id = s."id")'
    ]
    # before the failed ids leave the staging table, so the change never sees them
    assert statements.index(refusals[0]) < next(
        i for i, s in enumerate(statements) if s.startswith(f"DELETE FROM {STAGE} USING")
    )


def test_an_insert_and_a_delete_leave_not_null_columns_to_copy_and_the_table():
    """A delete's file may name other columns (a table's export): it reads the id alone, stages them as NULL text,
    and must refuse no row for them."""
    for operation in (BulkOperation.INSERT, BulkOperation.DELETE):
        statements, _ = load(operation, not_null=["city"], columns=COLUMNS)
        assert not any("IS NULL THEN" in s for s in statements)
