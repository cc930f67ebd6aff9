"""Least privilege that works: every AWS call a function makes in a real run is allowed by its policy in template.yaml.

IAM is not enforced locally (moto and the emulator accept anything), so a missing permission would only show on AWS.
This test runs the pipeline through its paths (complete, fail, refuse, cancel running and queued jobs, a cancel too late
for a finished statement, results, listing, the reconciler finishing a lost-event job and re-queueing a lost message, a
job waiting at its tenant's cap and sent on by the completion of the one before it, webhook subscriptions with a retry,
a disabled subscription and a query callback, the SNS topic), records each boto3 call with the function that made it,
checks that each function made at least the calls the scenario is meant to exercise, and checks every call against that
function's policy as IAM would: its action, the resource it touches (the table or index, the queue, the bucket and key,
the bus, the topic, the secret, the cluster; presigned URLs count as calls of the function that signs them) and the
statement's ``dynamodb:LeadingKeys`` condition, with the template resolved as the local stack resolved it (a provisioned
cluster). A call the Data API makes on the caller's behalf is checked too: ``redshift:GetClusterCredentials`` for the
``DbUser`` of a statement, and so is the right S3 asks for when a read finds no object: a read the code expects may find
nothing (a sidecar, a file deleted before its job ran) answers 404 only to a role that may list the bucket (without
``s3:ListBucket`` on it, S3 answers 403 AccessDenied, which the code rightly takes for a real failure), so each read
answered 404 here counts as a ListBucket of its bucket. Not exercised here: the Serverless branch (tenants' secrets,
workgroup ARNs).
"""

from __future__ import annotations

import contextvars
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from events import BulkJobQueuedMessage, BulkResultsRequested, JobQueuedMessage, JobStatus
from local.demo import add_tenant
from spectra.bulk.files import outcome_prefix
from spectra.bulk.models import BulkState
from spectra.jobs import QueryParameter, utcnow
from spectra.ports import Budget, get_ports
from spectra.reconciliation import reconcile
from spectra.warehouse import DatabaseIdentity
from tests.fixtures.bulk import csv_bytes
from tests.fixtures.stack import ApiClient, record_job, wait_until

pytestmark = pytest.mark.e2e

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
#: TransactWriteItems is authorised item by item, by the action each item performs
_TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
#: Data API operations that take a cluster (or workgroup) as their resource; the others take none ("*")
_ON_CLUSTER = {"ExecuteStatement", "BatchExecuteStatement", "DescribeTable", "ListTables", "ListSchemas"}


@dataclass(frozen=True)
class Call:
    """One authorisation IAM makes: an action on a resource ARN, with the partition keys a DynamoDB item call names
    (``dynamodb:LeadingKeys``; None where this test does not know them)."""

    action: str
    resource: str
    leading_keys: tuple[str, ...] | None = None


class CallRecorder:
    """Turns boto3 requests (their API parameters, before they are serialised) into the :class:`Call` s IAM
    authorises, knowing the local stack's region, account and tables' partition keys."""

    def __init__(self, stack) -> None:
        resolver = stack.template.resolver
        self.region, self.account = resolver.region, resolver.account_id
        self.cluster = resolver.parameters["RedshiftClusterId"]
        self.hash_keys = {
            resource.physical_id: next(
                k["AttributeName"] for k in resource.properties["KeySchema"] if k["KeyType"] == "HASH"
            )
            for resource in stack.resources.values()
            if resource.resource_type == "AWS::DynamoDB::Table"
        }

    def calls(self, service: str, operation: str, params: dict) -> list[Call]:
        action = f"{service}:{operation}"
        action = _ACTION_OF.get(action, action)
        if service == "dynamodb":
            return self._dynamodb(operation, action, params)
        if service == "sqs":
            name = params["QueueUrl"].rstrip("/").rsplit("/", 1)[-1]
            return [Call(action, f"arn:aws:sqs:{self.region}:{self.account}:{name}")]
        if service == "s3":
            bucket = f"arn:aws:s3:::{params['Bucket']}"
            return [Call(action, bucket if action == "s3:ListBucket" else f"{bucket}/{params['Key']}")]
        if service == "events":
            return [Call(action, self._bus(entry.get("EventBusName", "default"))) for entry in params["Entries"]]
        if service == "sns":
            return [Call(action, params.get("TopicArn") or params["TargetArn"])]
        if service == "secretsmanager":
            return [Call(action, params["SecretId"])]
        if service == "redshift-data":
            return self._redshift_data(operation, action, params)
        return [Call(action, "*")]

    def _table(self, name: str, index: str | None = None) -> str:
        table = f"arn:aws:dynamodb:{self.region}:{self.account}:table/{name}"
        return f"{table}/index/{index}" if index else table

    def _dynamodb(self, operation: str, action: str, params: dict) -> list[Call]:
        if operation == "TransactWriteItems":
            return [
                self._item_call(_TRANSACT_ACTIONS[kind], request)
                for item in params["TransactItems"]
                for kind, request in item.items()
            ]
        if operation in ("GetItem", "PutItem", "UpdateItem", "DeleteItem"):
            return [self._item_call(action, params)]
        return [Call(action, self._table(params["TableName"], params.get("IndexName")))]

    def _item_call(self, action: str, request: dict) -> Call:
        table = request["TableName"]
        key = (request.get("Key") or request.get("Item"))[self.hash_keys[table]]
        return Call(action, self._table(table), (next(iter(key.values())),))

    def _bus(self, name: str) -> str:
        return name if name.startswith("arn:") else f"arn:aws:events:{self.region}:{self.account}:event-bus/{name}"

    def _redshift_data(self, operation: str, action: str, params: dict) -> list[Call]:
        calls = []
        # a statement in a kept-alive session names the session alone; it runs on the session's cluster, the stack's
        cluster = params.get("ClusterIdentifier") or (self.cluster if params.get("SessionId") else None)
        if operation in _ON_CLUSTER and cluster:
            calls.append(Call(action, f"arn:aws:redshift:{self.region}:{self.account}:cluster:{cluster}"))
        elif operation in _ON_CLUSTER:
            calls.append(Call(action, f"arn:aws:redshift-serverless:{self.region}:{self.account}:workgroup/?"))
        else:
            calls.append(Call(action, "*"))
        if params.get("DbUser"):  # the Data API asks for the user's credentials as the caller
            prefix = f"arn:aws:redshift:{self.region}:{self.account}"
            calls.append(Call("redshift:GetClusterCredentials", f"{prefix}:dbuser:{cluster}/{params['DbUser']}"))
            calls.append(Call("redshift:GetClusterCredentials", f"{prefix}:dbname:{cluster}/{params['Database']}"))
        if params.get("SecretArn"):
            calls.append(Call("secretsmanager:GetSecretValue", params["SecretArn"]))
        return calls


def granted_statements(stack) -> dict[str, list[dict]]:
    """Each function's Allow statements, resolved as the local stack resolved the template (its parameters and
    conditions; a Fn::If branch not taken is gone)."""
    granted = {}
    for name, resource in stack.template.body["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        statements = []
        for policy in resource["Properties"].get("Policies", []):
            assert "Statement" in policy, f"{name}: only inline policy statements are checked here, not {policy}"
            statements.extend(s for s in stack.template.resolver.resolve(policy["Statement"]) if s["Effect"] == "Allow")
        granted[name] = statements
    return granted


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _like(pattern: str, value: str) -> bool:
    """IAM's wildcards: ``*`` any run of characters (``/`` and ``:`` included), ``?`` one character."""
    return (
        re.fullmatch(".*".join(".".join(map(re.escape, p.split("?"))) for p in pattern.split("*")), value) is not None
    )


def _condition_holds(condition: dict, call: Call) -> bool:
    for operator, keys in condition.items():
        for key, values in keys.items():
            if (operator, key) != ("ForAllValues:StringLike", "dynamodb:LeadingKeys"):
                raise AssertionError(f"this test cannot evaluate the condition {operator} {key}: teach it")
            if call.leading_keys is None:
                return False
            if not all(any(_like(v, k) for v in _as_list(values)) for k in call.leading_keys):
                return False
    return True


def is_granted(statements: list[dict], call: Call) -> bool:
    return any(
        any(_like(action, call.action) for action in _as_list(statement["Action"]))
        and any(_like(resource, call.resource) for resource in _as_list(statement["Resource"]))
        and _condition_holds(statement.get("Condition", {}), call)
        for statement in statements
    )


@dataclass
class Recorded:
    """What the functions did while a test ran: each function's actions, and the calls behind them."""

    calls: dict[str, set[Call]] = field(default_factory=lambda: defaultdict(set))

    def actions(self, function: str) -> set[str]:
        return {call.action for call in self.calls.get(function, ())}


@pytest.fixture
def recorded_calls(spectra_stack) -> Iterator[Recorded]:
    """Every AWS call made inside a function invocation while the test runs, by function."""
    recorded = Recorded()
    recorder = CallRecorder(spectra_stack)
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

    def record(params, model, context, **_):
        function = _current_function.get()
        if function is None:
            return
        context["iam_bucket"] = params.get("Bucket")
        try:
            calls = recorder.calls(model.service_model.service_name, model.name, params)
        except (KeyError, TypeError, StopIteration):  # a call this recorder cannot place: shown, never raised into
            calls = [Call(f"{model.service_model.service_name}:{model.name}", f"<unplaced {sorted(params)}>")]
        recorded.calls[function].update(calls)

    def record_not_found(http_response, model, context, **_):
        function = _current_function.get()
        if function is not None and model.name in ("GetObject", "HeadObject") and http_response.status_code == 404:
            recorded.calls[function].add(Call("s3:ListBucket", f"arn:aws:s3:::{context.get('iam_bucket')}"))

    clients = [client for budget in Budget for client in get_ports(budget).clients]  # the API's and the pipeline's
    for client in clients:
        client.meta.events.register("before-parameter-build", record, unique_id="iam-recorder")
        client.meta.events.register("after-call.s3", record_not_found, unique_id="iam-recorder-404")
    yield recorded
    for client in clients:
        client.meta.events.unregister("before-parameter-build", unique_id="iam-recorder")
        client.meta.events.unregister("after-call.s3", unique_id="iam-recorder-404")
    for name, invoke in originals.items():
        spectra_stack.functions[name].invoke = invoke


def test_every_call_is_granted(recorded_calls, new_tenant, spectra_stack, redshift_data, webhook_receiver):
    client = new_tenant()  # a fresh key: the authorizer really runs (no cached answer)
    # notifications: subscriptions through the API (create, list, get, delete); one webhook, for the one parquet job,
    # failing twice (the notifier's first attempt, then the delivery function's retry, which queues the next) and then
    # answering 410 (the delivery function disables it, "Subscription Disabled" published); one answering 410 at once
    # (the notifier disables and announces it); and a query's callback
    subscriptions = (
        ("/iam/flaky", "Job Completed", {"format": ["parquet"]}),
        ("/iam/gone", "Job Failed", None),
        ("/iam/x", "Job Failed", None),
    )
    flaky, gone, dropped = (
        client.request(
            "POST",
            "/v1/subscriptions",
            json={"url": webhook_receiver.url(path), "events": [kind], **({"filter": only} if only else {})},
        ).json()
        for path, kind, only in subscriptions
    )
    webhook_receiver.answer("/iam/flaky", 500, 500)
    webhook_receiver.default("/iam/flaky", 410)
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
    # a cancel too late: the Data API refuses to stop a finished statement, and the API asks how it ended (409)
    assert client.request("DELETE", f"/v1/jobs/{lost_event.job_id}").status_code == 409
    lost_message = record_job(ports, client.tenant_id, "select 8")
    token = _current_function.set("ReconcilerFunction")
    try:
        reconcile(ports, now=utcnow() + timedelta(minutes=10))
    finally:
        _current_function.reset(token)
    assert ports.jobs.get(lost_event.job_id).status is JobStatus.COMPLETED
    client.wait(lost_message.job_id)
    webhook_receiver.wait_for("/iam/flaky", 3)
    webhook_receiver.wait_for("/iam/callback", 1)
    for subscription in (gone, flaky):
        wait_until(
            lambda s=subscription: ports.notify.subscriptions.get(client.tenant_id, s["id"]).disabled_event_published,
            30,
            f"the 410 subscription {subscription['id']} disabled and announced",
        )

    assert_granted(
        recorded_calls,
        spectra_stack,
        {
            "AuthorizerFunction": {"dynamodb:GetItem"},
            "ApiFunction": {
                "dynamodb:PutItem",
                "dynamodb:Query",
                "sqs:SendMessage",
                "redshift-data:CancelStatement",
                "redshift-data:DescribeStatement",
                "events:PutEvents",
                "dynamodb:DeleteItem",
            },
            "NotifierFunction": {
                "dynamodb:Query",
                "dynamodb:GetItem",
                "dynamodb:UpdateItem",
                "sqs:SendMessage",
                "sns:Publish",
                "events:PutEvents",
            },
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


def assert_granted(recorded: Recorded, stack, expected_minimum: dict[str, set[str]]) -> None:
    """Every recorded call is granted by its function's policy, and the scenario made at least the expected ones."""
    unexercised = {f: sorted(a - recorded.actions(f)) for f, a in expected_minimum.items() if a - recorded.actions(f)}
    assert not unexercised, f"the scenario no longer exercises: {unexercised}"
    granted = granted_statements(stack)
    refused = {
        function: sorted(
            (c.action, c.resource, *(c.leading_keys or ())) for c in calls if not is_granted(granted[function], c)
        )
        for function, calls in recorded.calls.items()
    }
    refused = {function: calls for function, calls in refused.items() if calls}
    assert not refused, f"calls the template does not allow: {json.dumps(refused, indent=1)}"


def test_a_job_waiting_at_its_tenants_cap_is_sent_on_with_granted_calls(recorded_calls, spectra_stack, warehouse):
    """A tenant that may run one statement: the second job waits on the list, and the completion of the first takes
    it off and sends its message to the jobs queue (spectra.share.finish_releasing)."""
    tenant_id = "t" + uuid.uuid4().hex[:12]
    key = add_tenant(warehouse, get_ports().tenants, tenant_id, db_user=f"tenant_{tenant_id}", max_running_statements=1)
    client = ApiClient(spectra_stack.api_url, key, tenant_id, f"tenant_{tenant_id}")
    first = client.submit("select pg_sleep(2) as slept")["job_id"]
    client.wait(first, statuses=("SUBMITTED",))
    second = client.submit("select 2 as second")["job_id"]
    wait_until(lambda: second in get_ports().slots.waiting(tenant_id), 20, "the second job on the waiting list")
    assert client.wait(first)["status"] == "COMPLETED"
    assert client.wait(second)["status"] == "COMPLETED"
    assert_granted(recorded_calls, spectra_stack, {"CompletionFunction": {"sqs:SendMessage", "dynamodb:UpdateItem"}})


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
    # a sidecar put after its file's job ran: the drop function looks the job up in the tenant's listing and reports
    late = dropped["objectKey"].removesuffix(".csv") + ".json"
    client.s3.put_object(
        Bucket=client.ingest_bucket, Key=late, Body=b'{"operation": "delete", "externalIdFieldName": "email"}'
    )
    assert client.dropped_job(late)["error"]["code"] == "late_sidecar"
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
        spectra_stack,
        {
            "S3DropFunction": {
                "dynamodb:PutItem",
                "dynamodb:Query",
                "s3:GetObject",
                "sqs:SendMessage",
                "events:PutEvents",
            },
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


def test_reads_of_gone_results_bucket_files_are_granted_their_404(recorded_calls, bulk_tenant, spectra_stack):
    """The results bucket holds files the code reads expecting a 404 when they are gone: an uploaded batch deleted
    before the executor reads it (the job fails ``file_not_found``), an outcome manifest gone before the result files
    are written (they are given up). On AWS each 404 needs ``s3:ListBucket`` on the results bucket (a 403 would be
    retried into the dead-letter queue instead)."""
    client = bulk_tenant()
    header = ["email", "name", "city", "score"]
    ports = get_ports()
    bulk = ports.bulk
    upserted = client.create("upsert", externalIdFieldName="email")
    client.upload(upserted["id"], csv_bytes([header, ["ann@x", "Ann", "Oslo", "1"]]))
    client.close(upserted["id"])
    assert client.wait(upserted["id"])["state"] == "JobComplete"
    done = bulk.jobs.get(upserted["id"])
    assert done.plan is not None and done.plan.outcome_url is not None
    bulk.files.client.delete_object(Bucket=bulk.files.results_bucket, Key=f"{outcome_prefix(done)}manifest")
    bulk.jobs.update(upserted["id"], [BulkState.JOB_COMPLETE], results_ready=False)  # owed again, on purpose
    message = BulkResultsRequested(job_id=upserted["id"], tenant_id=client.tenant_id).model_dump_json()
    spectra_stack.invoke("BulkResultsFunction", {"Records": [sqs_record(message)]})
    assert bulk.jobs.get(upserted["id"]).results_unavailable

    inserted = client.create("insert")
    client.upload(inserted["id"], csv_bytes([header, ["bob@x", "Bob", "Rome", "2"]]))
    open_job = bulk.jobs.get(inserted["id"])
    files = bulk.files.uploaded_batches(open_job)
    for source in files:  # gone before the executor reads it
        bulk.files.client.delete_object(Bucket=source.bucket, Key=source.key)
    assert bulk.jobs.close(open_job, files=files, queued_at=utcnow()) is not None
    queued = BulkJobQueuedMessage(job_id=inserted["id"], tenant_id=client.tenant_id).model_dump_json()
    spectra_stack.invoke("ExecutorFunction", {"Records": [sqs_record(queued)]})
    failed = wait_until(lambda: (j := bulk.jobs.get(inserted["id"])).state.is_terminal and j, 30, "the job to fail")
    assert failed.error is not None and failed.error.code == "file_not_found", failed.error

    assert_granted(
        recorded_calls,
        spectra_stack,
        {"BulkResultsFunction": {"s3:GetObject", "s3:ListBucket"}, "ExecutorFunction": {"s3:ListBucket"}},
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
