"""Quotas and partial event loss, on emulators that share the session's PostgreSQL (no second server)."""

from __future__ import annotations

import pytest

from local.redshift_data import EmulatorConfig, start_emulator
from tests.fixtures.redshift import CLUSTER, DATABASE, DataApi, redshift_data_client, wait_for_statement
from tests.integration.redshift_data.conftest import receive_events

pytestmark = pytest.mark.integration


@pytest.fixture
def emulator_with(redshift_emulator, local_aws):
    started = []

    def start(**config):
        emulator = start_emulator(
            EmulatorConfig(
                database_url=redshift_emulator.admin_database_url, aws_endpoint_url=local_aws.endpoint_url, **config
            )
        )
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


def test_active_statements_over_the_quota_are_refused_with_the_modelled_error(emulator_with):
    client = redshift_data_client(emulator_with(max_active_statements=1).endpoint_url)
    target = {"ClusterIdentifier": CLUSTER, "Database": DATABASE}
    busy = client.execute_statement(Sql="select pg_sleep(30)", **target)["Id"]
    try:
        with pytest.raises(client.exceptions.ActiveStatementsExceededException, match="active statements"):
            client.execute_statement(Sql="select 1", **target)
    finally:
        client.cancel_statement(Id=busy)
    assert wait_for_statement(client, busy)["Status"] == "ABORTED"
    # the slot is free again
    assert wait_for_statement(client, client.execute_statement(Sql="select 1", **target)["Id"])["Status"] == "FINISHED"


def test_a_drop_rate_between_zero_and_one_drops_some_events_and_keeps_others(emulator_with, event_queue, name):
    sqs, queue_url = event_queue
    api = DataApi(redshift_data_client(emulator_with(event_drop_rate=0.5).endpoint_url))
    ids = {api.run("SELECT 1", WithEvent=True, StatementName=f"{name}-{i}")["Id"] for i in range(24)}
    # every statement has ended; wait until the delivered events stop growing (bounded), then count
    events = receive_events(sqs, queue_url, until=lambda evs: len(evs) >= len(ids), timeout=2)
    delivered = {e["detail"]["statementId"] for e in events} & ids
    # 24 coin flips: all heads or all tails has a probability of 1 in 8 million
    assert 0 < len(delivered) < len(ids), len(delivered)


def test_sessions_over_the_quota_are_refused_with_the_modelled_error(emulator_with):
    client = redshift_data_client(emulator_with(max_active_sessions=1).endpoint_url)
    target = {"ClusterIdentifier": CLUSTER, "Database": DATABASE}
    first = client.execute_statement(Sql="select 1", SessionKeepAliveSeconds=60, **target)
    assert wait_for_statement(client, first["Id"])["Status"] == "FINISHED"
    with pytest.raises(client.exceptions.ActiveSessionsExceededException, match="active sessions"):
        client.execute_statement(Sql="select 1", SessionKeepAliveSeconds=60, **target)
    # a statement outside a session still runs, and so does one in the open session
    for request in (target, {"SessionId": first["SessionId"]}):
        assert wait_for_statement(client, client.execute_statement(Sql="select 1", **request)["Id"])["Status"] == (
            "FINISHED"
        )


def test_an_adopted_server_with_too_few_connections_lowers_the_session_quota(emulator_with, caplog):
    """A session the emulator accepts always gets its connection: past what the server can hold, callers get
    ActiveSessionsExceededException (as past AWS's quota), never a statement failing "too many clients"."""
    with caplog.at_level("WARNING", logger="local.redshift_data.server"):
        emulator_with(max_active_sessions=100_000)
    assert any("active sessions instead of 100000" in r.getMessage() for r in caplog.records), caplog.text
