"""One job's trip through the local stack, read back from the functions' own output: every log line that concerns
the job carries its ``job_id`` and ``tenant_id``, from the executor, the completion consumer, the notifier (the first
attempt, which the receiver fails) and the webhook delivery function (the retry) alike, and the metrics the dashboard
plots for that trip are emitted (CloudWatch embedded-metric lines, as Powertools prints them on Lambda)."""

from __future__ import annotations

import json

import pytest

from tests.faults.conftest import log_records
from tests.fixtures.stack import wait_until
from tests.fixtures.webhooks import WebhookReceiver

pytestmark = pytest.mark.faults

#: one line per function on the trip, each logged while handling this job
EXPECTED = {
    "statement started": "the executor",
    "job completed": "the completion consumer (the domain's line)",
    "status event handled": "the completion consumer",
    "event fanned out": "the notifier",
    "webhook delivery attempt": "the webhook delivery function (the retry of the first attempt, which failed)",
}
#: what the dashboard plots that one completed job with a webhook makes the functions emit
TRIP_METRICS = {
    "JobsSubmitted",
    "StatementsStarted",
    "JobsCompleted",
    "WebhookRetryScheduled",
    "WebhookDelivered",
    "TopicMessagesPublished",
    "JobQueuedMs",
    "JobRunningMs",
    "JobTotalMs",
}


@pytest.mark.timeout(120)
def test_every_line_of_a_jobs_trip_names_the_job_and_its_tenant(functions_running, fault_tenant):
    stack = functions_running
    tenant = fault_tenant()
    receiver = WebhookReceiver()
    try:
        receiver.answer("/trip", 500)  # the notifier's first attempt fails: the delivery function retries it
        tenant.subscribe(receiver.url("/trip"))
        job_id = tenant.submit("select 42 as answer")
        first, retry = receiver.wait_for("/trip", 2, timeout=60)
        assert json.loads(retry.body)["data"]["job_id"] == job_id
        assert (first.status, retry.status, first.headers["webhook-id"]) == (500, 200, retry.headers["webhook-id"])
    finally:
        receiver.close()

    def lines() -> list[dict]:
        return [r for r in log_records(stack) if "_aws" not in r and job_id in json.dumps(r)]

    trip = wait_until(
        lambda: (found := lines()) and {r["message"] for r in found} >= set(EXPECTED) and found,
        30,
        "the trip's lines from every function",
    )
    unkeyed = [r for r in trip if r.get("job_id") != job_id or r.get("tenant_id") != tenant.tenant_id]
    assert unkeyed == [], unkeyed
    assert all(r.get("service") == "spectra" for r in trip)

    def emitted() -> set[str]:
        return {
            metric["Name"]
            for record in log_records(stack)
            if "_aws" in record
            for directive in record["_aws"]["CloudWatchMetrics"]
            for metric in directive["Metrics"]
        }

    # A handler prints its metrics as it returns, after its last line (the webhook delivery's after the receiver had
    # its answer): waited for like the lines.
    try:
        wait_until(lambda: emitted() >= TRIP_METRICS, 30, "the trip's metrics")
    except AssertionError:
        raise AssertionError(f"never emitted: {sorted(TRIP_METRICS - emitted())}") from None
