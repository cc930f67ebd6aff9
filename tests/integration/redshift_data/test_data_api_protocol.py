"""The wire protocol's failure modes: bad requests get AWS's error types and the server keeps serving."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from local.redshift_data import EmulatorConfig, start_emulator
from tests.fixtures.redshift import CLUSTER, DATABASE, DataApi, redshift_data_client, wait_for_statement

pytestmark = pytest.mark.integration


def post(endpoint_url: str, target: str | None, body: bytes) -> tuple[int, dict]:
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if target:
        headers["X-Amz-Target"] = target
    request = urllib.request.Request(endpoint_url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize(
    ("target", "body", "error_type"),
    [
        ("RedshiftData.DescribeStatement", b"{not json", "SerializationException"),
        ("RedshiftData.DescribeStatement", b"[1, 2]", "SerializationException"),
        ("RedshiftData.DropEverything", b"{}", "UnknownOperationException"),
        (None, b"{}", "UnknownOperationException"),
        ("RedshiftData.DescribeStatement", b'{"Id": "not-a-uuid"}', "ValidationException"),
        ("RedshiftData.ExecuteStatement", b'{"Database": "dev"}', "ValidationException"),
        ("RedshiftData.ListStatements", b'{"MaxResults": 1000}', "ValidationException"),
        ("RedshiftData.ExecuteStatement", b'{"Sql": "select 1", "ResultFormat": "XML"}', "ValidationException"),
    ],
)
def test_bad_requests_get_aws_error_types(redshift_emulator, redshift_data, target, body, error_type):
    status, payload = post(redshift_emulator.endpoint_url, target, body)
    assert status == 400
    assert payload["__type"] == error_type
    assert payload["message"]
    # ... and the server keeps serving
    assert redshift_data.list_statements(MaxResults=1)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_execute_response_has_the_modelled_shape(redshift_data):
    response = redshift_data.execute_statement(
        Sql="SELECT 1", Database=DATABASE, ClusterIdentifier=CLUSTER, DbUser="awsuser"
    )
    assert {"Id", "CreatedAt", "ClusterIdentifier", "Database", "DbUser"} <= set(response)
    assert response["CreatedAt"].year >= 2024
    described = wait_for_statement(redshift_data, response["Id"])
    assert described["CreatedAt"] <= described["UpdatedAt"]


def test_a_dead_engine_fails_statements_and_catalog_calls_but_not_the_server(tmp_path):
    emulator = start_emulator(EmulatorConfig(data_dir=str(tmp_path / "pg")))
    try:
        client = redshift_data_client(emulator.endpoint_url, retries=0)
        emulator._engine.stop()  # PostgreSQL goes away under the running emulator
        described = DataApi(client).run("SELECT 1", expect="FAILED")
        assert "connection" in described["Error"].lower()
        with pytest.raises(client.exceptions.DatabaseConnectionException):
            client.list_databases(ClusterIdentifier=CLUSTER, Database=DATABASE)
        assert client.describe_statement(Id=described["Id"])["Status"] == "FAILED"
    finally:
        emulator.stop()
