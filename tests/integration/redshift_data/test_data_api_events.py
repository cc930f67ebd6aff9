"""WithEvent=True: "Redshift Data Statement Status Change" reaches an SQS queue through an EventBridge rule."""

from __future__ import annotations

import time

import pytest

from local.redshift_data import EmulatorConfig, start_emulator
from tests.fixtures.redshift import DataApi, redshift_data_client
from tests.integration.redshift_data.conftest import receive_events

pytestmark = pytest.mark.integration


def test_completion_events_arrive_in_sqs_for_finished_and_failed(api, event_queue, name):
    sqs, queue_url = event_queue
    finished = api.run("SELECT generate_series(1, 3)", WithEvent=True, StatementName=f"{name}-ok")
    failed = api.run("SELECT nope", WithEvent=True, StatementName=f"{name}-bad", expect="FAILED")
    quiet = api.run("SELECT 1", StatementName=f"{name}-quiet")  # no WithEvent: no event

    def both(events):
        return {finished["Id"], failed["Id"]} <= {e["detail"]["statementId"] for e in events}

    events = receive_events(sqs, queue_url, until=both)
    by_id = {e["detail"]["statementId"]: e for e in events}
    assert both(events), events
    ok = by_id[finished["Id"]]
    assert ok["source"] == "aws.redshift-data"
    assert ok["detail-type"] == "Redshift Data Statement Status Change"
    assert ok["resources"] == ["arn:aws:redshift:us-east-1:123456789012:cluster:spectra-local"]
    assert set(ok["detail"]) == {
        "principal",
        "statementName",
        "statementId",
        "redshiftQueryId",
        "state",
        "rows",
        "expireAt",
    }
    assert ok["detail"]["state"] == "FINISHED"
    assert ok["detail"]["rows"] == 3
    assert ok["detail"]["statementName"] == f"{name}-ok"
    assert ok["detail"]["redshiftQueryId"] == finished["RedshiftQueryId"]
    assert ok["detail"]["expireAt"] > time.time() + 3600
    assert ok["detail"]["principal"].startswith("arn:aws:iam::123456789012:")
    assert by_id[failed["Id"]]["detail"]["state"] == "FAILED"
    assert quiet["Id"] not in by_id


def test_an_event_names_a_workgroup_given_by_its_arn_as_that_arn(api, event_queue, name):
    """WorkgroupName may be the workgroup's ARN: the event's resource was that ARN inside another (the emulator
    review)."""
    sqs, queue_url = event_queue
    arn = "arn:aws:redshift-serverless:us-east-1:123456789012:workgroup/1a2b3c4d-1a2b-1a2b-1a2b-1a2b3c4d5e6f"
    done = api.run("SELECT 1", WithEvent=True, StatementName=name, WorkgroupName=arn)
    events = receive_events(sqs, queue_url, until=lambda got: done["Id"] in {e["detail"]["statementId"] for e in got})
    (event,) = [e for e in events if e["detail"]["statementId"] == done["Id"]]
    assert event["resources"] == [arn]


def test_event_drop_rate_one_drops_every_event(redshift_emulator, local_aws, event_queue, api, name):
    sqs, queue_url = event_queue
    # A second emulator on the same PostgreSQL (cheap: no second server) that drops every completion event.
    dropping = start_emulator(
        EmulatorConfig(
            database_url=redshift_emulator.admin_database_url,
            aws_endpoint_url=local_aws.endpoint_url,
            event_drop_rate=1.0,
        )
    )
    try:
        dropped = DataApi(redshift_data_client(dropping.endpoint_url)).run(
            "SELECT 1", WithEvent=True, StatementName=f"{name}-dropped"
        )
    finally:
        dropping.stop()
    control = api.run("SELECT 1", WithEvent=True, StatementName=f"{name}-control")
    events = receive_events(
        sqs, queue_url, until=lambda evs: control["Id"] in {e["detail"]["statementId"] for e in evs}
    )
    ids = {e["detail"]["statementId"] for e in events}
    assert control["Id"] in ids
    assert dropped["Id"] not in ids
