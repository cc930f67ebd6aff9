"""Typed, named parameters (spectra.parameters): placeholders found on the parse tree, values bound by type."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from spectra.errors import InvalidParameters, PayloadTooLarge, SqlRejected
from spectra.jobs import QueryParameter
from spectra.parameters import MAX_VALUE_BYTES, TypedParameter, bind, placeholders
from spectra.sql_guard import parse_checked

pytestmark = pytest.mark.unit

LIMIT = 200_000  # names and values together; one value alone is capped lower, at MAX_VALUE_BYTES


def tree(sql: str):
    return parse_checked(sql, max_bytes=100_000)


def bound(sql: str, **values):
    statement, parsed = tree(sql)
    parameters = [TypedParameter(name=name, value=value) for name, value in values.items()]
    return bind(statement, parsed, parameters, max_total_bytes=LIMIT)


def wire(parameters: list[QueryParameter]) -> dict[str, str]:
    return {p.name: p.value for p in parameters}


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("select :a, :b, :a", ["a", "b"]),
        ("select ':a' as s, \"x:y\" as q, $$ :c $$ as d from t", []),  # strings, quoted identifiers, dollar bodies
        ("select 1 -- :a\n, 2 /* :b */", []),  # comments
        ("select a::int, :b::text from t", ["b"]),  # casts are not placeholders, a cast placeholder is one
        ("select * from t where c in (:x, :y) limit :n", ["x", "y", "n"]),
        ("explain select * from t where a = :a", ["a"]),  # EXPLAIN is kept as text by the guard: tokens are read
        ("explain select ':a'", []),
        ("select * from t where d >= :from and d < :to and :select", ["from", "to", "select"]),  # keywords as names
        ("explain select * from t where d >= :from", ["from"]),
    ],
)
def test_placeholders_come_from_the_parse_tree(sql, names):
    assert sorted(placeholders(tree(sql)[1])) == sorted(names)


def test_strings_only_run_the_statement_as_written():
    statement, rewritten = bound("select * from t /* keep me */ where item = :item", item="widget")
    assert rewritten is False
    assert statement.sql == "select * from t /* keep me */ where item = :item"
    assert wire(statement.parameters) == {"item": "widget"}


@pytest.mark.parametrize(
    ("value", "bound_sql", "sent"),
    [
        (None, "NULL", {}),
        ("", "''", {}),
        (True, "CAST(:v AS BOOLEAN)", {"v": "true"}),
        (False, "CAST(:v AS BOOLEAN)", {"v": "false"}),
        (42, "CAST(:v AS BIGINT)", {"v": "42"}),
        (-(2**63), "CAST(:v AS BIGINT)", {"v": str(-(2**63))}),
        (2**63, "CAST(:v AS DECIMAL(38, 0))", {"v": str(2**63)}),
        (0.1, "CAST(:v AS DOUBLE PRECISION)", {"v": "0.1"}),
        (1e300, "CAST(:v AS DOUBLE PRECISION)", {"v": "1e+300"}),
    ],
)
def test_each_type_is_bound_by_rewriting_its_placeholder_in_place(value, bound_sql, sent):
    statement, rewritten = bound("select :v as v -- a comment with :v", v=value)
    assert rewritten is True
    assert statement.sql == f"select {bound_sql} as v -- a comment with :v"  # the comment's :v is no placeholder
    assert wire(statement.parameters) == sent


@pytest.mark.parametrize("sql", ["select :'abc'", "select :$$abc$$", "select :e'abc'"])
def test_a_quoted_word_after_a_colon_is_no_placeholder(sql):
    """sqlglot's token for a quoted word holds the word without its quotes: read as a name, ``:'abc'`` was taken for
    the placeholder ``abc`` and a typed value replaced the string (the diff review). It is a syntax error, as before."""
    with pytest.raises(SqlRejected, match="could not be parsed"):
        tree(sql)


def test_a_placeholder_named_as_a_keyword_is_bound_in_place():
    """``:from`` is a colon and the keyword FROM to sqlglot, which refused the statement (found by the query API
    review); the Data API binds it as the parameter ``from``."""
    statement, _ = bound("select * from t where d >= :from and d < :to", **{"from": 1, "to": "x"})
    assert statement.sql == "select * from t where d >= CAST(:from AS BIGINT) and d < :to"
    assert wire(statement.parameters) == {"from": "1", "to": "x"}


def test_every_use_of_a_placeholder_is_rewritten_and_strings_beside_typed_values_stay_untyped():
    statement, _ = bound("select :n + 1 as a, :n as b, :s as c where :flag", n=7, s="text", flag=True)
    assert statement.sql == (
        "select CAST(:n AS BIGINT) + 1 as a, CAST(:n AS BIGINT) as b, :s as c where CAST(:flag AS BOOLEAN)"
    )
    assert wire(statement.parameters) == {"n": "7", "s": "text", "flag": "true"}


def test_a_placeholder_without_a_value_and_a_value_without_a_placeholder_are_named():
    with pytest.raises(InvalidParameters) as raised:
        bound("select :a, :b", a="1", c="3")
    assert raised.value.details == {"field": "parameters", "unbound": ["b"], "unused": ["c"]}
    assert ":b" in raised.value.message and "c" in raised.value.message
    with pytest.raises(InvalidParameters) as raised:
        bound("select ':a' as not_a_placeholder", a="1")
    assert raised.value.details["unused"] == ["a"]


@pytest.mark.parametrize("names", [("a", "a"), ("a", "A")])
def test_a_name_given_twice_is_refused(names):
    statement, parsed = tree("select :a")
    with pytest.raises(InvalidParameters) as raised:
        bind(statement, parsed, [TypedParameter(name=name, value="1") for name in names], max_total_bytes=LIMIT)
    assert raised.value.details == {"field": "parameters", "parameter": names[1]}


def test_placeholders_whose_names_differ_only_in_case_are_refused_for_what_they_are():
    """`select :min, :MIN` was answered "no value for :MIN", and the value then sent, "given twice (names ignore
    case)": no request could run it, and neither answer said why."""
    with pytest.raises(InvalidParameters) as raised:
        bound("select :min as a, :MIN as b", min=1)
    assert raised.value.details == {"field": "sql", "placeholders": ["min", "MIN"]}
    assert "differ only in case" in raised.value.message
    with pytest.raises(InvalidParameters, match="differ only in case"):
        bound("select :min as a, :MIN as b", min=1, MIN=2)
    assert wire(bound("select :min as a, :min as b", min="1")[0].parameters) == {"min": "1"}  # one name, used twice


@pytest.mark.parametrize("sql", ["select ?", "select $1"])
def test_positional_placeholders_are_refused(sql):
    with pytest.raises(InvalidParameters):
        bound(sql)


def test_explain_takes_strings_only():
    statement, rewritten = bound("explain select * from t where a = :a", a="1")
    assert (statement.sql, rewritten) == ("explain select * from t where a = :a", False)
    with pytest.raises(InvalidParameters) as raised:
        bound("explain select * from t where a = :a", a=1)
    assert raised.value.details["parameter"] == "a"


def test_one_value_over_the_limit_is_413_naming_it():
    bound("select :big", big="é" * (MAX_VALUE_BYTES // 2))  # 65,534 bytes: fits
    with pytest.raises(PayloadTooLarge) as raised:
        bound("select :big", big="x" * (MAX_VALUE_BYTES + 1))
    assert raised.value.details == {"field": "parameters", "parameter": "big", "limit": MAX_VALUE_BYTES}


def test_sizes_are_checked_before_the_parameters_are_matched():
    with pytest.raises(PayloadTooLarge) as raised:
        bound("select :a", a="x" * 60_000, b="y" * 60_000, c="z" * 60_000, d="!" * 60_000)  # b, c, d unused: 413
    assert raised.value.details == {"field": "parameters", "limit": LIMIT}


def test_an_integer_wider_than_the_warehouse_is_refused():
    bound("select :n", n=10**37)
    with pytest.raises(InvalidParameters) as raised:
        bound("select :n", n=10**38)
    assert raised.value.details["parameter"] == "n"


def test_a_string_holding_nul_is_refused_naming_it():
    bound("select :s", s="a\u0001b")  # other control characters are strings like any other
    with pytest.raises(InvalidParameters, match="NUL") as raised:
        bound("select :s, :t", s="ok", t="a\x00b")
    assert raised.value.details["parameter"] == "t"


@pytest.mark.parametrize(
    "raw",
    [
        {"name": "1bad", "value": "x"},
        {"name": "a-b", "value": "x"},
        {"name": "a", "value": {"nested": 1}},
        {"name": "a", "value": [1]},
        {"name": "a"},  # null must be said
        {"name": "a", "value": "x", "type": "int"},
    ],
)
def test_the_request_model_refuses_what_is_not_a_parameter(raw):
    with pytest.raises(ValidationError):
        TypedParameter.model_validate(raw)


def test_json_types_survive_validation():
    values = [TypedParameter.model_validate({"name": "v", "value": v}).value for v in (True, 1, 1.5, "1", None)]
    assert [type(v) for v in values] == [bool, int, float, str, type(None)]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select 'it''s' as s, a::text as t from x where :v", "select 'it''s' as s, a::text as t from x where CAST("),
        ("select 'two\nlines' as s where :v", "select 'two\nlines' as s where CAST("),
        ("select :v::int as n", "select CAST(:v AS BIGINT)::int as n"),
        # functions sqlglot would translate on the way (to others that answer differently on Redshift) stay as written
        ("select nvl(a, :v) from x", "select nvl(a, CAST(:v AS BIGINT)) from x"),
        ("select add_months(d, 1) from t where id = :v", "select add_months(d, 1) from t where id = CAST("),
        ("select date_part('second', ts) as s from t where id = :v", "select date_part('second', ts) as s from t"),
        ("select now() as t, :v as n", "select now() as t, CAST(:v AS BIGINT) as n"),
    ],
)
def test_a_rewritten_statement_keeps_everything_but_its_placeholders_as_written(sql, expected):
    statement, rewritten = bound(sql, v=1)
    assert rewritten
    assert statement.sql.startswith(expected)
    # what runs passes the guard again (a backslashed quote, say, would not)
    tree(statement.sql)


def test_where_tokens_and_tree_disagree_the_statement_is_generated_from_the_tree():
    """An array slice a[1:v] has a ':' before a name that is no placeholder: the statement is generated again."""
    statement, rewritten = bound("select arr[1:v] from t where x = :v", v=1)
    assert rewritten
    assert statement.sql == "SELECT arr[1:v] FROM t WHERE x = CAST(:v AS BIGINT)"


@pytest.mark.parametrize(
    ("sql", "values", "expected"),
    [
        ("select * from t limit:n", {"n": 5}, "select * from t limit CAST(:n AS BIGINT)"),
        ("select * from t where not:flag", {"flag": True}, "select * from t where not CAST(:flag AS BOOLEAN)"),
        ("select distinct:x from t", {"x": 1}, "select distinct CAST(:x AS BIGINT) from t"),
        ("select * from t where a = 1 or:x", {"x": None}, "select * from t where a = 1 or NULL"),
        ("select case when a then:x else:y end from t", {"x": 1, "y": None}, None),
        ("select * from t where a between:lo and:hi", {"lo": 1, "hi": 9}, None),
        ("select (:x)+1, :x", {"x": 1}, "select (CAST(:x AS BIGINT))+1, CAST(:x AS BIGINT)"),  # no space needed
    ],
)
def test_a_typed_value_written_straight_after_a_keyword_stays_apart_from_it(sql, values, expected):
    """Found by the parameters review: a placeholder right after a keyword (``limit:n``, ``not:flag``) runs as written
    with a string value, but typed, its CAST or NULL was glued to the keyword (``limitCAST(...)``, ``orNULL``): a
    job failed in the warehouse, or a 400 quoted text the tenant never wrote."""
    from spectra.sql_guard import check_sql

    sql_sent = bound(sql, **values)[0].sql
    check_sql(sql_sent, max_bytes=100_000)  # as submit_query checks a rewritten statement
    if expected is not None:
        assert sql_sent == expected
    for keyword in ("limitCAST", "notCAST", "distinctCAST", "orNULL", "thenCAST", "elseNULL", "betweenCAST"):
        assert keyword not in sql_sent


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("select datediff(day, :a, :b)", {"a": "2024-01-01", "b": "2024-01-10"}),
        ("select decode(:x, 1, 'one')", {"x": "1"}),
        ("select nvl2(:x, 1, 2)", {"x": "1"}),
        ("select CAST(:n AS BIGINT), datediff(day, current_date, current_date)", {"n": "1"}),
        ("select a$b$ from t where b = :x", {"x": "v"}),  # a$b$ is a name, not a dollar quote
        ("select * from t limit:x", {"x": "5"}),
        ("select datediff(day, :from, :to)", {"from": "2024-01-01", "to": "2024-01-10"}),  # keywords as names
    ],
)
def test_the_local_warehouse_binds_every_parameter_it_is_given(sql, names):
    """Found by the parameters review: the emulator translates Redshift's functions with sqlglot, whose PostgreSQL
    writes ``:x`` as ``%(x)s``, so a statement using DATEDIFF, DECODE or NVL2 lost every parameter (a syntax error at
    '%' on make run); ``a$b$`` was read as a dollar quote that swallowed the rest; ``limit:x`` became ``limit$1``."""
    import re

    from local.redshift_data.params import bind_parameters
    from local.redshift_data.redshift_sql import translate_sql

    query, values = bind_parameters(translate_sql(sql), names)
    assert len(values) == len(re.findall(r":\w", sql)) and "%(" not in query, query
    assert not re.search(r"\w\$1|\w%s", query), query
