"""WaitTimeSeconds (long polling, 2026): the installed botocore predates it, so these tests speak raw JSON 1.1."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.fixtures.redshift import CLUSTER, DATABASE

pytestmark = pytest.mark.integration


def call(endpoint_url: str, operation: str, body: dict) -> dict:
    request = urllib.request.Request(
        endpoint_url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"RedshiftData.{operation}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=40) as response:
        return json.loads(response.read())


def test_execute_statement_waits_for_completion(redshift_emulator):
    response = call(
        redshift_emulator.endpoint_url,
        "ExecuteStatement",
        {"Sql": "SELECT pg_sleep(0.3), 1", "Database": DATABASE, "ClusterIdentifier": CLUSTER, "WaitTimeSeconds": 10},
    )
    assert response["Status"] == "FINISHED" and response["HasResultSet"] is True


def test_describe_statement_returns_in_progress_status_when_the_wait_ends_first(redshift_emulator):
    submitted = call(
        redshift_emulator.endpoint_url,
        "ExecuteStatement",
        {"Sql": "SELECT pg_sleep(3)", "Database": DATABASE, "ClusterIdentifier": CLUSTER},
    )
    began = time.monotonic()
    described = call(redshift_emulator.endpoint_url, "DescribeStatement", {"Id": submitted["Id"], "WaitTimeSeconds": 1})
    assert 0.9 < time.monotonic() - began < 2.5
    assert described["Status"] in {"SUBMITTED", "PICKED", "STARTED"}
    result = call(redshift_emulator.endpoint_url, "GetStatementResult", {"Id": submitted["Id"], "WaitTimeSeconds": 10})
    assert result["TotalNumRows"] == 1
