"""Typed parameter behaviour no test held before (found by mutation testing spectra/parameters.py): the exact size
of the largest value (README: "one value over 65,535 bytes ... is 413"), a typed value whose placeholder ends the
statement, what a statement generated again from its tree (tokens and tree disagree) keeps as the tenant wrote it
(TEXT casts, strings with quotes, backslashes and line breaks) and when it is generated again at all, the total of
names and values and the bound statement at their limits, what the 400s for mismatched, positional, NUL and too-wide
parameters say, and which words of an EXPLAIN are its placeholders."""

from __future__ import annotations

import pytest

from spectra.errors import InvalidParameters, PayloadTooLarge
from spectra.parameters import TypedParameter, bind, check_bound_size, placeholders
from spectra.sql_guard import check_sql, parse_checked

pytestmark = pytest.mark.unit

LIMIT = 200_000  # names and values together, well above one value's cap


def bound(sql: str, limit: int = LIMIT, **values):
    statement, parsed = parse_checked(sql, max_bytes=100_000)
    parameters = [TypedParameter(name=name, value=value) for name, value in values.items()]
    return bind(statement, parsed, parameters, max_total_bytes=limit)[0]


def test_one_value_of_exactly_65535_bytes_is_taken_and_one_byte_more_is_413():
    """README: one value over 65,535 bytes (Redshift's longest VARCHAR) is 413 naming it. The figures are written out
    here, not read from the module, so the limit cannot move (either way) without this test failing: a client whose
    value fits a VARCHAR(65535) column must be able to send it, and one a byte over must hear so before a job exists."""
    statement = bound("select :big as b", big="x" * 65_535)
    assert [(p.name, len(p.value)) for p in statement.parameters] == [("big", 65_535)]
    with pytest.raises(PayloadTooLarge) as raised:
        bound("select :big as b", big="x" * 65_536)
    assert raised.value.details == {"field": "parameters", "parameter": "big", "limit": 65_535}
    assert "65536 bytes" in raised.value.message


@pytest.mark.parametrize(
    ("sql", "value", "expected"),
    [
        ("select a from t where a is not distinct from :v", None, "select a from t where a is not distinct from NULL"),
        ("select a from t where a = :v", "", "select a from t where a = ''"),
        ("select a from t where a = :v", 5, "select a from t where a = CAST(:v AS BIGINT)"),
        ("select a from t where a =:v", None, "select a from t where a =NULL"),
    ],
)
def test_a_typed_value_whose_placeholder_ends_the_statement_is_bound(sql, value, expected):
    """A placeholder at the very end of the statement (the usual place for a WHERE's last condition) has nothing after
    it to be spaced from: its NULL, '' or CAST ends the statement, which the guard takes as it will run."""
    statement = bound(sql, v=value)
    assert statement.sql == expected
    check_sql(statement.sql, max_bytes=100_000)


def test_a_statement_generated_again_keeps_its_text_casts_as_text():
    """Where the tokens and the tree disagree (an array slice ``arr[1:v]`` beside ``:v``) the statement is generated
    again from its tree: a cast to TEXT stays TEXT (sqlglot's Redshift would write VARCHAR(MAX), a different type),
    and comments are left out, as the module's docstring says."""
    statement = bound("select arr[1:v], a::text as t /* a note */ from x where y = :v", v=1)
    assert statement.sql == "SELECT arr[1:v], CAST(a AS TEXT) AS t FROM x WHERE y = CAST(:v AS BIGINT)"
    check_sql(statement.sql, max_bytes=100_000)


@pytest.mark.parametrize(
    ("literal", "written"),
    [
        ("'a\\\\b'", "'a\\\\b'"),  # a backslash, escaped as the tenant escaped it
        ("'it''s'", "'it''s'"),  # a quote doubled, never backslashed (the guard refuses \\')
        ("'two\nlines'", "'two\nlines'"),  # a line break as it was, not an escape sequence
        ("'a\\\\b''c'", "'a\\\\b''c'"),  # a backslash and a quote: the quote still doubled, not backslashed
    ],
)
def test_a_statement_generated_again_keeps_its_strings_as_written(literal, written):
    """Strings in a statement generated again from its tree are written so that they mean what the tenant's did."""
    statement = bound(f"select arr[1:v], {literal} as s from x where y = :v", v=1)
    assert statement.sql == f"SELECT arr[1:v], {written} AS s FROM x WHERE y = CAST(:v AS BIGINT)"
    check_sql(statement.sql, max_bytes=100_000)


def test_names_and_values_exactly_at_their_limit_together_are_taken_and_one_byte_more_is_413():
    """Names and values together may reach ``max_total_bytes`` (a job is one DynamoDB item), not pass it: the name
    counts as well as the value, in bytes."""
    assert bound("select :ab as x", limit=10, ab="é" * 4).parameters[0].value == "éééé"  # 2 + 8 bytes
    with pytest.raises(PayloadTooLarge) as raised:
        bound("select :ab as x", limit=10, ab="é" * 4 + "x")  # 2 + 9 bytes
    assert raised.value.details == {"field": "parameters", "limit": 10}
    assert "11 bytes" in raised.value.message
    assert bound("select :ab as x", limit=2, ab=None).sql == "select NULL as x"  # a null is sent as nothing: 0 bytes


def test_a_string_holding_nul_is_a_400_whose_details_name_the_field_and_parameter():
    with pytest.raises(InvalidParameters) as raised:
        bound("select :s as s", s="\x00")
    assert raised.value.details == {"field": "parameters", "parameter": "s"}


def test_an_integer_too_wide_for_the_warehouse_is_a_400_whose_details_name_the_field_and_parameter():
    with pytest.raises(InvalidParameters) as raised:
        bound("select :n as n", n=-(10**38))
    assert raised.value.details == {"field": "parameters", "parameter": "n"}
    assert "38 digits" in raised.value.message


def test_a_mismatch_message_names_each_unbound_placeholder_and_each_unused_value_and_nothing_else():
    """The 400's message says which placeholder lacks a value and which value has no placeholder, and only what is
    wrong: a request missing nothing is not told of missing values."""
    with pytest.raises(InvalidParameters) as raised:
        bound("select :a as x", a="1", extra="2", more="3")
    assert raised.value.message == "parameters do not match the SQL: no placeholder for extra, more"
    with pytest.raises(InvalidParameters) as raised:
        bound("select :a as x, :b as y, :c as z", a="1")
    assert raised.value.message == "parameters do not match the SQL: no value for :b, :c"
    with pytest.raises(InvalidParameters) as raised:
        bound("select :a as x, :b as y", a="1", c="3")
    assert raised.value.message == "parameters do not match the SQL: no value for :b; no placeholder for c"


def test_an_explains_placeholders_are_its_colon_names_only():
    """EXPLAIN is kept as text and its placeholders read from its tokens: a name after a dot, a parenthesis or an
    operator is a column, not a placeholder the request must give a value for."""
    statement, parsed = parse_checked("explain select t.a, f(x), 1+y from t where b = :b", max_bytes=100_000)
    assert placeholders(parsed) == ["b"]
    assert bound("explain select t.a, f(x), 1+y from t where b = :b", b="1").sql == statement


@pytest.mark.parametrize("sql", ["select ? as a", "select $1 as a"])
def test_a_positional_placeholder_is_a_400_about_the_sql(sql):
    """``?`` and ``$1`` are refused as such, pointing at the SQL (not at the parameters, which may be all right)."""
    with pytest.raises(InvalidParameters) as raised:
        bound(sql)
    assert raised.value.details == {"field": "sql"}
    assert "positional" in raised.value.message


def test_a_bound_statement_may_be_exactly_the_data_apis_limit():
    """The bound statement is refused only past the limit: one exactly at it runs."""
    check_bound_size("select 1 -- " + "é" * 44, max_bytes=100)  # 12 + 88 bytes
    with pytest.raises(PayloadTooLarge) as raised:
        check_bound_size("select 1 -- " + "é" * 44 + "x", max_bytes=100)
    assert raised.value.details == {"limit": 100}
    assert "101 bytes" in raised.value.message


def test_a_parameters_name_used_as_a_column_too_leaves_the_statement_as_written():
    """Only a ``:`` followed by a name is a placeholder's text: a column of the same name after a dot or a parenthesis
    (``t.v``, ``f(v)``) does not make the tokens and the tree disagree, so the statement is not generated again
    (which would translate ``now()`` and drop the comment)."""
    statement = bound("select now() as t, x.v, f(v) from x -- keep\nwhere y = :v", v=1)
    assert statement.sql == "select now() as t, x.v, f(v) from x -- keep\nwhere y = CAST(:v AS BIGINT)"
