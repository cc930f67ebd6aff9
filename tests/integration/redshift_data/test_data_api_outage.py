"""The emulator's outage switch (``emulator.outage``, local/redshift_data/outage.py), which the fault suite flips to
take the warehouse away: new statements and catalog calls refused as a cluster that is not available refuses them,
the service's own records still answered, and a reboot ending what ran, with or without its event."""

from __future__ import annotations

import pytest

from local.redshift_data import EmulatorConfig, start_emulator
from tests.fixtures.redshift import CLUSTER, DATABASE, DataApi, redshift_data_client, wait_for_statement
from tests.integration.redshift_data.conftest import receive_events

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def emulator(local_aws):
    """An emulator of this module's own: a reboot ends every statement and session of the emulator it hits."""
    emulator = start_emulator(EmulatorConfig(aws_endpoint_url=local_aws.endpoint_url, region=local_aws.region))
    yield emulator
    emulator.stop()


@pytest.fixture
def client(emulator):
    return redshift_data_client(emulator.endpoint_url, retries=0)


@pytest.mark.parametrize("code", ["ValidationException", "InternalServerException", "DatabaseConnectionException"])
def test_an_unavailable_cluster_refuses_statements_and_answers_from_its_records(emulator, client, code):
    api = DataApi(client)
    done = api.run("SELECT 1 AS one")
    emulator.outage.begin(code=code, state="paused")
    try:
        refusal = getattr(client.exceptions, code)
        with pytest.raises(refusal, match=f"Cluster {CLUSTER} is not available: its status is paused"):
            api.submit("SELECT 2")
        with pytest.raises(refusal, match="Workgroup wg1 is not available"):
            client.execute_statement(WorkgroupName="wg1", Database=DATABASE, Sql="SELECT 2")
        with pytest.raises(refusal):
            client.batch_execute_statement(ClusterIdentifier=CLUSTER, Database=DATABASE, Sqls=["SELECT 2"])
        with pytest.raises(refusal):
            client.list_schemas(ClusterIdentifier=CLUSTER, Database=DATABASE)
        # what the Data API keeps itself is still answered
        assert client.describe_statement(Id=done["Id"])["Status"] == "FINISHED"
        assert client.get_statement_result(Id=done["Id"])["TotalNumRows"] == 1
        assert done["Id"] in {s["Id"] for s in client.list_statements(Status="ALL")["Statements"]}
    finally:
        emulator.outage.end()
    assert emulator.outage.refused["ExecuteStatement"] >= 2
    api.run("SELECT 3")  # served again


def test_a_reboot_ends_running_statements_and_sessions(emulator, client, event_queue, name):
    sqs, queue_url = event_queue
    api = DataApi(client)
    opened = client.execute_statement(
        ClusterIdentifier=CLUSTER, Database=DATABASE, Sql="SELECT 1", SessionKeepAliveSeconds=600
    )
    wait_for_statement(client, opened["Id"])
    loud = api.submit("SELECT pg_sleep(60)", WithEvent=True, StatementName=f"{name}-loud")
    wait_for_statement(client, loud, states={"STARTED"})
    assert emulator.outage.reboot() == [loud]
    failed = client.describe_statement(Id=loud)
    assert failed["Status"] == "FAILED" and "rebooted" in failed["Error"]
    events = receive_events(sqs, queue_url, until=lambda got: any(e["detail"]["statementId"] == loud for e in got))
    assert [e["detail"]["state"] for e in events if e["detail"]["statementId"] == loud] == ["FAILED"]
    # a session does not outlive the reboot
    with pytest.raises(client.exceptions.ValidationException, match="not available"):
        client.execute_statement(Sql="SELECT 1", SessionId=opened["SessionId"])

    quiet = api.submit("SELECT pg_sleep(60)", WithEvent=True, StatementName=f"{name}-quiet")
    wait_for_statement(client, quiet, states={"STARTED"})
    assert emulator.outage.reboot(status="ABORTED", with_events=False) == [quiet]
    assert client.describe_statement(Id=quiet)["Status"] == "ABORTED"
    late = api.run("SELECT 1", WithEvent=True, StatementName=f"{name}-after")  # its event comes after quiet's would
    events = receive_events(
        sqs, queue_url, until=lambda got: any(e["detail"]["statementId"] == late["Id"] for e in got)
    )
    assert quiet not in {e["detail"]["statementId"] for e in events}
