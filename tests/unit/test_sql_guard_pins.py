"""The SQL guard: behaviour no test held before (found by mutation testing spectra/sql_guard.py, second pass). A
clause Redshift lacks is refused naming it (IF EXISTS emptied went unseen); an unclosed quote or comment is refused
with the tokenizer's complaint (None in its place went unseen); the backslash-quote check reads inside each plain
string only (reading on to the statement's end refused an E'' string or a comment after it, unseen); a text out of
its own parse budget is remembered as too_complex, not parsed again (treating it as a shared budget went unseen)."""

from __future__ import annotations

import pytest

from spectra import sql_guard
from spectra.sql_guard import check_sql
from tests.unit.test_sql_guard_refusals_told import WRITER, refusal

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("sql", "told"),
    [
        (
            "ALTER TABLE IF EXISTS owned.t ADD COLUMN b int",
            "ALTER TABLE ... IF EXISTS is not allowed in queries: Redshift has no such clause",
        ),
        (
            "TRUNCATE TABLE IF EXISTS owned.t",
            "TRUNCATE ... IF EXISTS is not allowed in queries: Redshift has no such clause",
        ),
    ],
)
def test_a_clause_redshift_lacks_is_refused_by_its_name(sql, told):
    """A writer's statement in its own schema with PostgreSQL's IF EXISTS is refused as unsupported, and the message
    names IF EXISTS (not an empty clause) so the tenant knows what to take out."""
    error = refusal(sql, **WRITER)
    assert error.details == {"reason": "unsupported"}
    assert error.message == told


@pytest.mark.parametrize("sql", ["SELECT 'abc", "SELECT $$abc", 'SELECT "abc', "SELECT 1 /* x"])
def test_an_unclosed_quote_or_comment_is_refused_saying_the_tokenizer_stopped(sql):
    """A string, dollar quote, quoted name or comment left open is a syntax refusal whose message carries the
    tokenizer's complaint (its first line), not 'None' where the complaint should be."""
    error = refusal(sql)
    assert error.details == {"reason": "syntax"}
    assert error.message.startswith("sql could not be parsed: Error tokenizing ")
    assert "None" not in error.message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'a' AS x -- don\\'t",
        "SELECT 'a', E'it\\'s'",
        "SELECT 'a' AS x /* it\\'s */",
    ],
)
def test_a_backslash_quote_after_a_plain_string_is_not_held_against_it(sql):
    """The backslash-before-quote refusal looks inside each plain string only: a \\' later in the statement, in an
    E'' string (where it is an escape to both readers) or in a comment, lets a statement that starts with a plain
    string run as it is."""
    assert check_sql(sql, max_bytes=10_000) == sql


def test_a_statement_too_complex_on_its_own_budget_is_remembered(monkeypatch):
    """A text that ran out of its own parse budget is refused too_complex, and the same text sent again is refused
    from memory rather than parsed again (each parse may burn seconds of CPU)."""
    parses = []
    parse_once = sql_guard._parse_once

    def counted(sql):
        parses.append(sql)
        return parse_once(sql)

    monkeypatch.setattr(sql_guard, "_parse_once", counted)
    monkeypatch.setattr(sql_guard, "PARSE_SECONDS", -1.0)  # the clock is past the deadline at the first look
    sql = "SELECT " + " + ".join(["1"] * 600) + " AS remembered_too_complex"
    for _ in range(2):
        assert refusal(sql).details == {"reason": "too_complex"}
    assert len(parses) == 1
