"""Least privilege that works: every AWS call a function makes in a real run is allowed by its policy in template.yaml.

IAM is not enforced locally (moto and the emulator accept anything), so a missing permission would only show on
AWS. This test runs the pipeline through its paths (complete, fail, refuse, cancel running and queued jobs, results,
listing, the reconciler finishing a lost-event job and re-queueing a lost message, webhook subscriptions with a retry,
a disabled subscription and a query callback, the SNS topic), records each boto3 call with the
function that made it, checks that each function made at least the calls the scenario is meant to exercise, and
checks every call's IAM action against the actions that function's policy grants. Resources are not compared;
cfn-lint and review cover those, with one exception: an S3 read the code expects may find nothing (a sidecar, a file
deleted before its job ran) answers 404 only to a role that may list the bucket; without s3:ListBucket on it, S3
answers 403 AccessDenied, which the code rightly takes for a real failure. So each read answered 404 here needs
s3:ListBucket on that very bucket. Not exercised here: the executor's tenant lookup for Serverless secrets.
"""

from __future__ import annotations

import contextvars
import json
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from events import BulkResultsRequested, JobQueuedMessage, JobStatus
from spectra.bulk.models import BulkState
from spectra.jobs import QueryParameter, utcnow
from spectra.ports import get_ports
from spectra.reconciliation import reconcile
from spectra.warehouse import DatabaseIdentity
from tests.fixtures.bulk import csv_bytes
from tests.fixtures.stack import record_job, wait_until

pytestmark = pytest.mark.e2e

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
_current_function: contextvars.ContextVar[str | None] = contextvars.ContextVar("function", default=None)

# boto3 operations authorised by an IAM action of another name
_ACTION_OF = {
    "redshift-data:GetStatementResultV2": "redshift-data:GetStatementResult",
    "s3:CreateMultipartUpload": "s3:PutObject",
    "s3:UploadPart": "s3:PutObject",
    "s3:CompleteMultipartUpload": "s3:PutObject",
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "s3:HeadObject": "s3:GetObject",
    "s3:ListObjectsV2": "s3:ListBucket",
}
_PREFIX = {"redshift-data": "redshift-data", "dynamodb": "dynamodb", "sqs": "sqs", "s3": "s3", "events": "events"}
#: TransactWriteItems is authorised item by item, by the action each item performs
_TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


def granted_actions() -> dict[str, set[str]]:
    """Each function's allowed actions, with both branches of every Fn::If (a superset is what we check against)."""
    body, _ = decode(str(TEMPLATE))

    def statements(node: Any):
        if isinstance(node, dict) and "Fn::If" in node:
            for branch in node["Fn::If"][1:]:
                yield from statements(branch)
        elif isinstance(node, dict) and "Action" in node:
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from statements(item)

    granted = {}
    for name, resource in body["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        actions: set[str] = set()
        for policy in resource["Properties"].get("Policies", []):
            for statement in statements(policy.get("Statement", [])):
                if statement.get("Effect") == "Allow":
                    value = statement["Action"]
                    actions.update(value if isinstance(value, list) else [value])
        granted[name] = actions
    return granted


def listable_buckets() -> dict[str, set[str]]:
    """Each function's buckets (logical ids) on which its policy grants s3:ListBucket."""
    body, _ = decode(str(TEMPLATE))
    listable: dict[str, set[str]] = defaultdict(set)
    for name, resource in body["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy.get("Statement", []):
                actions = statement.get("Action")
                if statement.get("Effect") != "Allow" or "s3:ListBucket" not in (actions or []):
                    continue
                resources = (
                    statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                )
                listable[name].update(r["Fn::GetAtt"][0] for r in resources if "Fn::GetAtt" in r)
    return listable


class RecordedCalls(defaultdict):
    """function → the IAM actions of its calls; ``not_found``: function → the buckets (logical ids) where one of its
    object reads was answered 404."""

    def __init__(self) -> None:
        super().__init__(set)
        self.not_found: dict[str, set[str]] = defaultdict(set)


@pytest.fixture
def recorded_calls(spectra_stack):
    """(function, action) for every AWS call made inside a function invocation while the test runs."""
    calls = RecordedCalls()
    buckets = {
        spectra_stack.physical_id(name): name
        for name, resource in decode(str(TEMPLATE))[0]["Resources"].items()
        if resource["Type"] == "AWS::S3::Bucket"
    }
    originals = {}
    for name, function in spectra_stack.functions.items():
        originals[name] = function.invoke

        def invoke(event, _original=function.invoke, _name=name):
            token = _current_function.set(_name)
            try:
                return _original(event)
            finally:
                _current_function.reset(token)

        function.invoke = invoke

    def record(model, params, **_):
        function = _current_function.get()
        if function is None:
            return
        service = model.service_model.service_name
        action = f"{_PREFIX.get(service, service)}:{model.name}"
        if action == "dynamodb:TransactWriteItems":
            items = json.loads(params["body"])["TransactItems"]
            calls[function].update(_TRANSACT_ACTIONS[kind] for item in items for kind in item)
        else:
            calls[function].add(_ACTION_OF.get(action, action))

    def remember_bucket(params, context, **_):
        context["iam_bucket"] = params.get("Bucket")

    def record_not_found(http_response, model, context, **_):
        function = _current_function.get()
        if function is not None and model.name in ("GetObject", "HeadObject") and http_response.status_code == 404:
            calls.not_found[function].add(buckets.get(context.get("iam_bucket") or "", "?"))

    clients = get_ports().clients
    for client in clients:
        client.meta.events.register("before-call", record, unique_id="iam-recorder")
        client.meta.events.register("before-parameter-build.s3", remember_bucket, unique_id="iam-bucket")
        client.meta.events.register("after-call.s3", record_not_found, unique_id="iam-recorder-404")
    yield calls
    for client in clients:
        client.meta.events.unregister("before-call", unique_id="iam-recorder")
        client.meta.events.unregister("before-parameter-build.s3", unique_id="iam-bucket")
        client.meta.events.unregister("after-call.s3", unique_id="iam-recorder-404")
    for name, invoke in originals.items():
        spectra_stack.functions[name].invoke = invoke


def test_every_call_is_granted(recorded_calls, new_tenant, spectra_stack, redshift_data, webhook_receiver):
    client = new_tenant()  # a fresh key: the authorizer really runs (no cached answer)
    # notifications: subscriptions through the API (create, list, get, delete), one webhook failing once (a retry),
    # one answering 410 (disabled, "Subscription Disabled" published), and a query's callback
    flaky, gone, dropped = (
        client.request("POST", "/v1/subscriptions", json={"url": webhook_receiver.url(path), "events": [kind]}).json()
        for path, kind in (("/iam/flaky", "Job Completed"), ("/iam/gone", "Job Failed"), ("/iam/x", "Job Failed"))
    )
    webhook_receiver.answer("/iam/flaky", 500)
    webhook_receiver.default("/iam/gone", 410)
    client.request("GET", "/v1/subscriptions").raise_for_status()
    client.request("GET", f"/v1/subscriptions/{flaky['id']}").raise_for_status()
    assert client.request("DELETE", f"/v1/subscriptions/{dropped['id']}").status_code == 204
    ok = client.submit(
        "select g from generate_series(1, 3) as g", format="csv", callback_url=webhook_receiver.url("/iam/callback")
    )["job_id"]
    bad = client.submit("select * from no_such_table_for_iam")["job_id"]
    exported = client.submit("select g from generate_series(1, 3) as g", format="parquet", delivery="export")["job_id"]
    slow = client.submit("select pg_sleep(30)")["job_id"]
    for job_id in (ok, bad, exported):
        client.wait(job_id)
    client.request("GET", f"/v1/jobs/{ok}/results").raise_for_status()
    client.request("GET", "/v1/jobs").raise_for_status()
    # a query answered in one call (the API reads the job until it ends, then its result), and the docs page
    waited = client.request("POST", "/v1/queries", json={"sql": "select 1 as one", "wait_timeout": 25})
    assert waited.status_code == 200 and waited.json()["results"]["rows"] == [[1]], waited.text
    assert client.request("GET", "/v1/docs").status_code == 200
    # a page token signed and checked (the key comes from Secrets Manager once per process, so the call is recorded
    # only when no earlier test in this process listed a second page; when it is, it must be granted like any other)
    token = client.request("GET", "/v1/jobs", params={"limit": 1}).json()["next_token"]
    client.request("GET", "/v1/jobs", params={"limit": 1, "next_token": token}).raise_for_status()
    client.wait(slow, statuses=("SUBMITTED",))
    wait_until(
        lambda: redshift_data.list_statements(StatementName=slow, RoleLevel=False, Status="ALL")["Statements"],
        30,
        "the slow statement to start",
    )
    assert client.request("DELETE", f"/v1/jobs/{slow}").status_code in (200, 202)
    client.wait(slow)
    # the executor's failure path: the Data API refuses a statement whose parameter is missing (the API refuses
    # such a request itself, so the job is recorded and queued past it)
    ports = get_ports()
    refused = record_job(
        ports, client.tenant_id, "select :x as x, :missing as y", parameters=[QueryParameter(name="x", value="1")]
    )
    ports.queue.send(JobQueuedMessage(job_id=refused.job_id, tenant_id=client.tenant_id))
    assert client.wait(refused.job_id)["error"]["code"] == "statement_rejected"
    # the API's own terminal write: cancelling a job that is still queued
    queued = record_job(ports, client.tenant_id, "select 1")
    assert client.request("DELETE", f"/v1/jobs/{queued.job_id}").json()["status"] == "CANCELLED"
    # the reconciler's paths, through its handler and its domain function on a clock two hours ahead:
    # a finished statement whose event was lost (describe, result, S3, event) and a job whose message was lost
    spectra_stack.invoke("ReconcilerFunction", {"source": "aws.events", "detail-type": "Scheduled Event"})
    lost_event = record_job(ports, client.tenant_id, "select 7 as lucky")
    ports.jobs.transition(lost_event.job_id, JobStatus.SUBMITTED, submitted_at=utcnow())
    statement_id = ports.warehouse.execute(
        lost_event.sql,
        identity=DatabaseIdentity(db_user="awsuser"),
        name=lost_event.job_id,
        client_token=lost_event.job_id,
        with_event=False,
    )
    # delivered as files, so the reconciler's path writes to S3 (a small inline result would not)
    ports.jobs.update(lost_event.job_id, [JobStatus.SUBMITTED], statement_id=statement_id, delivery="s3")
    wait_until(lambda: ports.warehouse.describe(statement_id).status == "FINISHED", 30, "the lost-event statement")
    lost_message = record_job(ports, client.tenant_id, "select 8")
    token = _current_function.set("ReconcilerFunction")
    try:
        reconcile(ports, now=utcnow() + timedelta(minutes=10))
    finally:
        _current_function.reset(token)
    assert ports.jobs.get(lost_event.job_id).status is JobStatus.COMPLETED
    client.wait(lost_message.job_id)
    webhook_receiver.wait_for("/iam/flaky", 2)
    webhook_receiver.wait_for("/iam/callback", 1)
    wait_until(
        lambda: ports.notify.subscriptions.get(client.tenant_id, gone["id"]).disabled_event_published,
        30,
        "the 410 subscription disabled and announced",
    )

    assert_granted(
        recorded_calls,
        {
            "AuthorizerFunction": {"dynamodb:GetItem"},
            "ApiFunction": {
                "dynamodb:PutItem",
                "dynamodb:Query",
                "sqs:SendMessage",
                "redshift-data:CancelStatement",
                "events:PutEvents",
                "dynamodb:DeleteItem",
            },
            "NotifierFunction": {"dynamodb:Query", "dynamodb:GetItem", "sqs:SendMessage", "sns:Publish"},
            "WebhookDeliveryFunction": {
                "dynamodb:GetItem",
                "dynamodb:UpdateItem",
                "sqs:SendMessage",
                "events:PutEvents",
            },
            "ExecutorFunction": {"redshift-data:ExecuteStatement", "dynamodb:UpdateItem", "events:PutEvents"},
            "CompletionFunction": {
                "redshift-data:DescribeStatement",
                "redshift-data:GetStatementResult",
                "s3:GetObject",  # an export's UNLOAD manifest
                "s3:PutObject",
                "events:PutEvents",
            },
            "ReconcilerFunction": {
                "dynamodb:Query",
                "redshift-data:DescribeStatement",
                "redshift-data:GetStatementResult",
                "s3:PutObject",
                "events:PutEvents",
                "sqs:SendMessage",
            },
        },
    )


def assert_granted(recorded_calls: dict[str, set[str]], expected_minimum: dict[str, set[str]]) -> None:
    """Every recorded call is granted by its function's policy, and the scenario made at least the expected ones."""
    unexercised = {f: sorted(a - recorded_calls[f]) for f, a in expected_minimum.items() if a - recorded_calls[f]}
    assert not unexercised, f"the scenario no longer exercises: {unexercised}"
    granted = granted_actions()
    missing = {
        function: sorted(actions - granted[function])
        for function, actions in recorded_calls.items()
        if actions - granted[function]
    }
    assert not missing, f"calls the template does not allow: {missing}"
    listable = listable_buckets()
    unlisted = {
        function: sorted(buckets - listable[function])
        for function, buckets in recorded_calls.not_found.items()
        if buckets - listable[function]
    }
    assert not unlisted, f"reads answered 404 locally, 403 on AWS without s3:ListBucket on the bucket: {unlisted}"


def test_every_bulk_call_is_granted(recorded_calls, bulk_tenant, spectra_stack):
    """Both bulk doors, a refused file, result files, an abort, and the results consumer's own work."""
    client = bulk_tenant()
    header = ["email", "name", "city", "score"]
    dropped = client.dropped_job(client.drop(csv_bytes([header, ["ann@x", "Ann", "Oslo", "1"]])))
    refused = client.dropped_job(client.drop(b"", "empty.csv"))  # refused by the executor's header check
    nested = f"{client.tenant_id}/{client.table}/deeper/x.csv"  # refused at the door by the drop function
    client.s3.put_object(Bucket=client.ingest_bucket, Key=nested, Body=csv_bytes([header]))
    assert (dropped["state"], refused["state"], client.dropped_job(nested)["state"]) == (
        "JobComplete",
        "Failed",
        "Failed",
    )
    # a file deleted before its notification was handled: no object, no sidecar (reads answered 404), and a job
    # the executor fails for its missing file
    gone = f"{client.tenant_id}/{client.table}/gone.csv"
    notification = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": client.ingest_bucket},
                    "object": {"key": gone, "size": 9, "eTag": "0" * 32, "sequencer": "01"},
                },
            }
        ]
    }
    spectra_stack.invoke("S3DropFunction", {"Records": [sqs_record(json.dumps(notification))]})
    assert client.dropped_job(gone)["error"]["code"] == "file_not_found"
    job = client.create("upsert", externalIdFieldName="email")
    client.upload(job["id"], csv_bytes([header, ["bob@x", "Bob", "Rome", "2"]]))
    client.close(job["id"])
    assert client.wait(job["id"])["state"] == "JobComplete"
    for kind in ("successfulResults", "failedResults", "unprocessedrecords"):
        client.results(job["id"], kind)
    client.api.request("GET", "/v1/bulk/jobs").raise_for_status()
    assert client.api.request("POST", f"/v1/bulk/jobs/{client.create()['id']}/uploads", json={}).ok
    assert client.api.request("POST", "/v1/bulk/uploads", json={"object": client.table}).ok
    queued = client.create("insert")
    client.upload(queued["id"], csv_bytes([header, ["cid@x", "Cid", "Lima", "3"]]))
    client.close(queued["id"], "Aborted")
    # the bulk results consumer: write the result files a large job owes (here: owed again on purpose)
    ports = get_ports()
    ports.bulk.jobs.update(job["id"], [BulkState.JOB_COMPLETE], results_ready=False)
    message = BulkResultsRequested(job_id=job["id"], tenant_id=client.tenant_id).model_dump_json()
    spectra_stack.invoke("BulkResultsFunction", {"Records": [sqs_record(message)]})
    assert ports.bulk.jobs.get(job["id"]).results_ready

    assert_granted(
        recorded_calls,
        {
            "S3DropFunction": {"dynamodb:PutItem", "s3:GetObject", "sqs:SendMessage", "events:PutEvents"},
            "ApiFunction": {"s3:PutObject", "s3:ListBucket", "s3:GetObject", "sqs:SendMessage", "dynamodb:Query"},
            "ExecutorFunction": {
                "redshift-data:DescribeTable",
                "redshift-data:BatchExecuteStatement",
                "s3:GetObject",
                "s3:PutObject",
            },
            "CompletionFunction": {"redshift-data:GetStatementResult", "s3:PutObject", "s3:PutObjectTagging"},
            "BulkResultsFunction": {"redshift-data:DescribeStatement", "s3:GetObject", "s3:PutObject"},
        },
    )


def sqs_record(body: str) -> dict:
    """One SQS record as Lambda's event source hands it to a function."""
    return {
        "messageId": "iam-test-1",
        "receiptHandle": "iam-test-1",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "0",
            "SenderId": "test",
            "ApproximateFirstReceiveTimestamp": "0",
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bulk-results",
        "awsRegion": "us-east-1",
    }
