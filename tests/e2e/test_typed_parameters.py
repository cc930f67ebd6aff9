"""Typed, named parameters through the whole stack: each JSON type reaches the warehouse as its SQL type (NULL as
SQL NULL), and parameters that do not match the SQL are refused before a job exists."""

from __future__ import annotations

import pytest

from spectra.parameters import MAX_VALUE_BYTES
from tests.e2e.test_api_contract import error_of

pytestmark = pytest.mark.e2e


def run(client, sql: str, **values) -> dict:
    parameters = [{"name": name, "value": value} for name, value in values.items()]
    response = client.request("POST", "/v1/queries", json={"sql": sql, "parameters": parameters, "wait_timeout": 25})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "COMPLETED", body
    return body["results"]


def test_each_type_reaches_the_warehouse_as_its_sql_type(new_tenant):
    client = new_tenant()
    results = run(
        client,
        "select :s as s, :i as i, :f as f, :b as b, :n as n, :e as e, :big as big, "
        "pg_typeof(:i)::text as ti, pg_typeof(:f)::text as tf, pg_typeof(:b)::text as tb, :n is null as n_is_null",
        s="O'Reilly -- not a comment :s",
        i=-(2**63),
        f=2.5,
        b=True,
        n=None,
        e="",
        big=2**63,
    )
    assert results["rows"] == [
        [
            "O'Reilly -- not a comment :s",
            -(2**63),
            2.5,
            True,
            None,
            "",
            str(2**63),  # numeric(38,0): exact, as a string
            "bigint",
            "double precision",
            "boolean",
            True,
        ]
    ]


@pytest.fixture
def orders(new_tenant, warehouse):
    client = new_tenant()
    table = f"orders_{client.tenant_id}"
    warehouse.run(
        f"CREATE TABLE {table} (id int, item varchar(32), amount numeric(10,2), shipped boolean)",
        f"INSERT INTO {table} VALUES (1, 'anvil', 120.00, true), (2, 'rocket skates', 349.99, false), "
        "(3, NULL, 0.50, NULL)",
        f'GRANT SELECT ON {table} TO "{client.db_user}"',
    )
    return client, table


def test_typed_values_compare_with_columns_and_null_matches_with_is_not_distinct_from(orders):
    client, table = orders
    query = f"select id from {table} where amount > :min and shipped = :flag order by id"
    assert run(client, query, min=100, flag=False)["rows"] == [[2]]
    assert run(client, query, min=0.25, flag=True)["rows"] == [[1]]
    assert run(client, f"select id from {table} where item = :item", item="anvil")["rows"] == [[1]]
    # NULL is SQL NULL: never equal to anything, matched by IS NOT DISTINCT FROM
    assert run(client, f"select id from {table} where item = :item", item=None)["rows"] == []
    assert run(client, f"select id from {table} where item is not distinct from :item", item=None)["rows"] == [[3]]


@pytest.mark.parametrize(("low", "high"), [(1, 2), ("1", "2")])  # typed (rewritten) and as sent (strings)
def test_a_placeholder_may_be_named_as_a_keyword(orders, low, high):
    """``:from`` and ``:to``, the usual names of a range, as the Data API binds them: the guard read ``:from`` as a
    colon and the keyword FROM, and refused the statement as a syntax error (found by the query API review). The
    emulator's translation of DATEDIFF read it so too."""
    client, table = orders
    query = f"select id, datediff(day, '2024-01-01', '2024-01-03') as d from {table}"
    query += " where id >= :from and id <= :to and :select = 1 order by id"
    assert run(client, query, **{"from": low, "to": high, "select": 1})["rows"] == [[1, 2], [2, 2]]


def test_placeholders_are_read_from_the_sql_not_from_its_strings_comments_or_casts(new_tenant):
    client = new_tenant()
    results = run(client, "select ':x' as s, '5'::int + :n as v -- :y is a comment\n", n=1)
    assert results["rows"] == [[":x", 6]]


@pytest.mark.parametrize(
    ("sql", "parameters", "details"),
    [
        ("select :a, :b", [{"name": "a", "value": 1}], {"unbound": ["b"], "unused": []}),
        ("select :a", [{"name": "a", "value": 1}, {"name": "c", "value": 1}], {"unbound": [], "unused": ["c"]}),
        ("select ':a'", [{"name": "a", "value": "x"}], {"unbound": [], "unused": ["a"]}),
        ("select :a", [], {"unbound": ["a"], "unused": []}),
        ("select :a", [{"name": "a", "value": 1}, {"name": "a", "value": 2}], {"parameter": "a"}),
        ("select :a", [{"name": "a", "value": 1}, {"name": "A", "value": 2}], {"parameter": "A"}),
        ("select :a", [{"name": "a", "value": "x\u0000y"}], {"parameter": "a"}),  # a job FAILED at the warehouse
    ],
)
def test_parameters_that_do_not_fit_the_sql_are_400_naming_them(new_tenant, sql, parameters, details):
    client = new_tenant()
    response = client.request("POST", "/v1/queries", json={"sql": sql, "parameters": parameters})
    error = error_of(response, 400)
    assert error["code"] == "invalid_parameters"
    assert error["details"] == {"field": "parameters", **details}
    assert client.request("GET", "/v1/jobs").json()["jobs"] == []  # refused before a job existed


@pytest.mark.parametrize(
    ("parameter", "loc"),
    [
        ({"name": "1bad", "value": 1}, ["body", "parameters", 0, "name"]),
        ({"name": "a-b", "value": 1}, ["body", "parameters", 0, "name"]),
        ({"name": "a", "value": {"x": 1}}, ["body", "parameters", 0, "value"]),
        ({"name": "a", "value": [1]}, ["body", "parameters", 0, "value"]),
        ({"name": "a"}, ["body", "parameters", 0, "value"]),
    ],
)
def test_malformed_parameters_are_400_naming_the_field(new_tenant, parameter, loc):
    client = new_tenant()
    response = client.request("POST", "/v1/queries", json={"sql": "select :a", "parameters": [parameter]})
    error = error_of(response, 400)
    assert error["code"] == "invalid_request"
    assert loc in [detail["loc"][: len(loc)] for detail in error["details"]]


def test_one_value_over_the_limit_is_413_naming_it(new_tenant):
    client = new_tenant()
    parameters = [{"name": "big", "value": "x" * (MAX_VALUE_BYTES + 1)}]
    error = error_of(client.request("POST", "/v1/queries", json={"sql": "select :big", "parameters": parameters}), 413)
    assert error["code"] == "payload_too_large"
    assert error["details"] == {"field": "parameters", "parameter": "big", "limit": MAX_VALUE_BYTES}


def test_a_typed_value_leaves_the_rest_of_the_statement_as_written(new_tenant):
    """Binding an integer rewrites its placeholder only: date_part stays a double and now() a timestamptz, where
    generating the statement again from its tree ran EXTRACT (numeric here) and GETDATE() (cut to seconds)."""
    client = new_tenant()
    sql = "select :n as n, date_part('second', timestamp '2024-01-01 10:00:05.5') as s, now() as t -- :n"
    as_string, as_integer = run(client, sql, n="1"), run(client, sql, n=1)
    assert [c["type"] for c in as_integer["columns"]][1:] == [c["type"] for c in as_string["columns"]][1:]
    assert as_integer["rows"][0][:2] == [1, 5.5]
