"""ListDatabases, ListSchemas, ListTables, DescribeTable: the catalog as the Data API shows it."""

from __future__ import annotations

import pytest

from tests.fixtures.redshift import CLUSTER, DATABASE, redshift_data_client

pytestmark = pytest.mark.integration

TARGET = {"ClusterIdentifier": CLUSTER, "Database": DATABASE}


@pytest.fixture
def schema(api, name):
    api.run(f"CREATE SCHEMA {name}")
    api.run(
        f"CREATE TABLE {name}.orders (id int NOT NULL, label varchar(40) DEFAULT 'none', price numeric(12,3),"
        " created timestamp)"
    )
    api.run(f"CREATE VIEW {name}.big_orders AS SELECT * FROM {name}.orders WHERE price > 100")
    for n in range(5):
        api.run(f"CREATE TABLE {name}.extra_{n} (x int)")
    return name


def test_list_databases_includes_dev(redshift_data):
    assert "dev" in redshift_data.list_databases(**TARGET)["Databases"]


def test_list_schemas_with_a_pattern(redshift_data, schema):
    assert redshift_data.list_schemas(SchemaPattern=f"{schema}%", **TARGET)["Schemas"] == [schema]
    assert "public" in redshift_data.list_schemas(**TARGET)["Schemas"]


def test_list_tables_reports_types_and_pages(redshift_data, schema):
    tables = redshift_data.list_tables(SchemaPattern=schema, **TARGET)["Tables"]
    kinds = {t["name"]: t["type"] for t in tables}
    assert kinds["orders"] == "TABLE" and kinds["big_orders"] == "VIEW"
    assert all(t["schema"] == schema for t in tables)
    assert [
        t["name"] for t in redshift_data.list_tables(SchemaPattern=schema, TablePattern="extra%", **TARGET)["Tables"]
    ] == [f"extra_{n}" for n in range(5)]

    names, token = [], None
    while True:
        page = redshift_data.list_tables(
            SchemaPattern=schema, MaxResults=3, **TARGET, **({"NextToken": token} if token else {})
        )
        assert len(page["Tables"]) <= 3
        names += [t["name"] for t in page["Tables"]]
        token = page.get("NextToken")
        if not token:
            break
    assert sorted(names) == sorted(kinds)


def test_describe_table_returns_redshift_column_metadata(redshift_data, schema):
    described = redshift_data.describe_table(Schema=schema, Table="orders", **TARGET)
    assert described["TableName"] == "orders"
    columns = {c["name"]: c for c in described["ColumnList"]}
    assert list(columns) == ["id", "label", "price", "created"]
    assert columns["id"]["typeName"] == "int4" and columns["id"]["nullable"] == 0
    assert columns["label"]["typeName"] == "varchar" and columns["label"]["length"] == 40
    assert columns["label"]["columnDefault"].startswith("'none'")
    assert (columns["price"]["precision"], columns["price"]["scale"]) == (12, 3)
    assert columns["created"]["typeName"] == "timestamp" and columns["created"]["nullable"] == 1


def test_catalog_calls_as_an_unknown_user_fail_to_connect(redshift_emulator, name):
    client = redshift_data_client(redshift_emulator.endpoint_url, retries=0)
    with pytest.raises(client.exceptions.DatabaseConnectionException, match=f"{name}_ghost"):
        client.list_schemas(DbUser=f"{name}_ghost", **TARGET)
