"""Completion fan-out on the whole local stack: HTTP in, job, event on the bus, the notifier, signed webhooks to a
receiver on 127.0.0.1 (verified with the Standard Webhooks library), retries, disabling, SNS with filter policies.

The session stack retries webhooks after about 1, 2, 4, 8 s and disables a subscription after 4 failures in a row
(tests/fixtures/stack.py WEBHOOK_TEST_PARAMETERS), so every test here is bounded in seconds.
"""

from __future__ import annotations

import itertools
import json
import uuid

import pytest
from standardwebhooks import Webhook

from spectra.ports import get_ports
from tests.fixtures.stack import wait_until

pytestmark = pytest.mark.e2e


def subscribe(client, url: str, events=("Job Completed", "Job Failed"), **body) -> dict:
    response = client.request("POST", "/v1/subscriptions", json={"url": url, "events": list(events), **body})
    assert response.status_code == 201, response.text
    return response.json()


def subscription(client, subscription_id: str) -> dict:
    response = client.request("GET", f"/v1/subscriptions/{subscription_id}")
    assert response.status_code == 200, response.text
    return response.json()


def test_a_completed_job_is_delivered_signed(new_tenant, webhook_receiver):
    client = new_tenant()
    created = subscribe(client, webhook_receiver.url("/hooks/done"))
    assert created["secret"].startswith("whsec_") and created["status"] == "active"
    job = client.submit("select 6 * 7 as answer")
    (request,) = webhook_receiver.wait_for("/hooks/done", 1)
    payload = Webhook(created["secret"]).verify(request.body, request.headers)
    assert payload["type"] == "Job Completed"
    assert payload["data"]["job_id"] == job["job_id"] and payload["data"]["tenant_id"] == client.tenant_id
    assert payload["data"]["row_count"] == 1
    # the generation that made the job, as the API stamped it: the notifier tells no re-created tenant of it
    generation = get_ports().tenants.get(client.tenant_id).generation
    assert generation and payload["data"]["tenant_generation"] == generation
    assert request.headers["webhook-id"].startswith("msg_")
    state = wait_until(
        lambda: (s := subscription(client, created["id"]))["delivery"]["delivered"] == 1 and s, 10, "delivery state"
    )
    assert state["delivery"]["last_status"] == 200 and state["delivery"]["consecutive_failures"] == 0
    assert "secret" not in state or state["secret"] is None  # shown once, at creation


def test_a_receiver_failing_its_first_deliveries_gets_the_event_once_it_recovers(new_tenant, webhook_receiver):
    client = new_tenant()
    created = subscribe(client, webhook_receiver.url("/hooks/flaky"), events=["Job Failed"])
    webhook_receiver.answer("/hooks/flaky", 500, 503, 500)
    job = client.submit("select * from no_such_table_for_webhooks")
    attempts = webhook_receiver.wait_for("/hooks/flaky", 4, timeout=40)
    assert [a.status for a in attempts] == [500, 503, 500, 200]
    assert len({a.headers["webhook-id"] for a in attempts}) == 1  # one event, one id, every attempt
    assert len({a.body for a in attempts}) == 1
    for attempt in attempts:  # each attempt is signed afresh, and each signature verifies
        assert Webhook(created["secret"]).verify(attempt.body, attempt.headers)["data"]["job_id"] == job["job_id"]
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    assert all(gap >= 0.4 for gap in gaps), gaps  # backed off, not hammered
    state = wait_until(
        lambda: (s := subscription(client, created["id"]))["delivery"]["delivered"] == 1 and s, 10, "delivery state"
    )["delivery"]
    assert (state["consecutive_failures"], state["failed_attempts"], state["last_status"]) == (0, 3, 200)
    assert state["last_error"] is None  # it tells why the last attempt failed, and the last one succeeded


def test_410_disables_the_subscription_and_an_event_says_so(new_tenant, webhook_receiver):
    client = new_tenant()
    watcher = subscribe(client, webhook_receiver.url("/hooks/watch"), events=["Subscription Disabled"])
    gone = subscribe(client, webhook_receiver.url("/hooks/gone"), events=["Job Completed"])
    webhook_receiver.default("/hooks/gone", 410)
    client.submit("select 1")
    (notice,) = webhook_receiver.wait_for("/hooks/watch", 1)
    event = Webhook(watcher["secret"]).verify(notice.body, notice.headers)
    assert event["type"] == "Subscription Disabled"
    assert event["data"]["subscription_id"] == gone["id"] and event["data"]["reason"] == "gone"
    assert event["data"]["last_status"] == 410
    state = subscription(client, gone["id"])
    assert state["status"] == "disabled" and state["disabled_reason"] == "gone"
    # a disabled subscription gets nothing more: the next job reaches a fresh subscription, not the disabled one
    subscribe(client, webhook_receiver.url("/hooks/after"), events=["Job Completed"])
    later = client.submit("select 2")["job_id"]
    (after,) = webhook_receiver.wait_for("/hooks/after", 1)
    assert json.loads(after.body)["data"]["job_id"] == later
    assert len(webhook_receiver.requests("/hooks/gone")) == 1


def test_a_subscription_failing_in_a_row_is_disabled(new_tenant, webhook_receiver):
    client = new_tenant()
    failing = subscribe(client, webhook_receiver.url("/hooks/down"), events=["Job Completed"])
    webhook_receiver.default("/hooks/down", 500)
    client.submit("select 1")
    state = wait_until(
        lambda: (s := subscription(client, failing["id"]))["status"] == "disabled" and s, 40, "the subscription off"
    )
    assert state["disabled_reason"] == "consecutive_failures"
    assert state["delivery"]["consecutive_failures"] == 4 and state["delivery"]["last_status"] == 500
    assert len(webhook_receiver.requests("/hooks/down")) == 4


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.8/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:192.168.1.1]/hook",
        "https://100.64.1.1/hook",
        "ftp://example.com/hook",
    ],
)
def test_a_url_reaching_inside_is_refused_at_creation(new_tenant, url):
    client = new_tenant()
    response = client.request("POST", "/v1/subscriptions", json={"url": url, "events": ["Job Completed"]})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "url_refused"
    assert client.request("GET", "/v1/subscriptions").json()["subscriptions"] == []


def test_bad_subscription_requests_are_400(new_tenant, webhook_receiver):
    client = new_tenant()
    # ~840 KB of filter: within the API's 1 MiB body, beyond DynamoDB's 400 KB item (it used to be a 500)
    fields = ("status", "state", "operation", "object", "source", "format")
    huge_filter = {field: ["x" * 7000 + str(i) for i in range(20)] for field in fields}
    for body in (
        {"url": webhook_receiver.url("/x"), "events": ["Job Exploded"]},
        {"url": webhook_receiver.url("/x"), "events": []},
        {"url": webhook_receiver.url("/x"), "events": ["Job Completed"], "filter": {"sql": ["x"]}},
        {"url": webhook_receiver.url("/x"), "events": ["Job Completed"], "filter": huge_filter},
        {"url": webhook_receiver.url("/h\u00e4ndler"), "events": ["Job Completed"]},  # could never be sent
        {"events": ["Job Completed"]},
    ):
        response = client.request("POST", "/v1/subscriptions", json=body)
        assert response.status_code == 400, (body, response.text[:300])
        assert set(response.json()["error"]) == {"code", "message", "details"}
    assert client.request("GET", "/v1/subscriptions").json()["subscriptions"] == []


def test_subscriptions_are_isolated_between_tenants(new_tenant, webhook_receiver):
    acme, globex = new_tenant(), new_tenant()
    mine = subscribe(acme, webhook_receiver.url("/hooks/acme"))
    assert globex.request("GET", f"/v1/subscriptions/{mine['id']}").status_code == 404
    assert globex.request("DELETE", f"/v1/subscriptions/{mine['id']}").status_code == 404
    assert globex.request("GET", "/v1/subscriptions").json()["subscriptions"] == []
    listed = acme.request("GET", "/v1/subscriptions").json()["subscriptions"]
    assert [s["id"] for s in listed] == [mine["id"]] and listed[0]["secret"] is None
    # globex's job never reaches acme's endpoint: once it has reached globex's own, it has been fanned out
    subscribe(globex, webhook_receiver.url("/hooks/globex"))
    globex_job = globex.submit("select 1")["job_id"]
    (delivered,) = webhook_receiver.wait_for("/hooks/globex", 1)
    assert json.loads(delivered.body)["data"]["job_id"] == globex_job
    acme_job = acme.submit("select 1")["job_id"]
    webhook_receiver.wait_for("/hooks/acme", 1)
    assert [json.loads(r.body)["data"]["job_id"] for r in webhook_receiver.requests("/hooks/acme")] == [acme_job]
    assert acme.request("DELETE", f"/v1/subscriptions/{mine['id']}").status_code == 204
    assert acme.request("GET", f"/v1/subscriptions/{mine['id']}").status_code == 404


def test_a_repeated_request_answers_its_callback_secret_again(new_tenant, webhook_receiver):
    """The first answer lost, the client repeats the request with its Idempotency-Key: it gets the same job and the
    secret that job's callback is signed with (it has no other way to learn it), not a second callback."""
    client = new_tenant()
    body = {"sql": "select 'once' as x", "callback_url": webhook_receiver.url("/again")}
    headers = {"Idempotency-Key": "callback-" + client.tenant_id}
    first = client.request("POST", "/v1/queries", json=body, headers=headers).json()
    repeat = client.request("POST", "/v1/queries", json=body, headers=headers)
    assert repeat.status_code in (200, 202), repeat.text
    assert repeat.json()["job_id"] == first["job_id"]
    assert repeat.json()["callback"] == first["callback"] and first["callback"]["secret"].startswith("whsec_")
    (request,) = webhook_receiver.wait_for("/again", 1)
    payload = Webhook(first["callback"]["secret"]).verify(request.body, request.headers)
    assert payload["data"]["job_id"] == first["job_id"]


def test_a_repeated_subscribe_answers_the_same_subscription_and_its_secret(new_tenant, webhook_receiver):
    """A retried POST /v1/subscriptions with its Idempotency-Key makes no second subscription (two would deliver
    every event twice): it answers 200 with the first, secret included; the same key with another body is a 409."""
    client = new_tenant()
    body = {"url": webhook_receiver.url("/once"), "events": ["Job Completed"]}
    headers = {"Idempotency-Key": "subscribe-" + client.tenant_id}
    first = client.request("POST", "/v1/subscriptions", json=body, headers=headers)
    repeat = client.request("POST", "/v1/subscriptions", json=body, headers=headers)
    assert (first.status_code, repeat.status_code) == (201, 200), repeat.text
    assert repeat.json() == first.json() and first.json()["secret"].startswith("whsec_")
    assert repeat.headers["Location"] == first.headers["Location"]
    other = client.request("POST", "/v1/subscriptions", json={**body, "events": ["Job Failed"]}, headers=headers)
    assert other.status_code == 409 and other.json()["error"]["details"]["subscription_id"] == first.json()["id"]
    listed = client.request("GET", "/v1/subscriptions").json()["subscriptions"]
    assert [s["id"] for s in listed] == [first.json()["id"]]
    job = client.submit("select 1")["job_id"]
    (delivered,) = webhook_receiver.wait_for("/once", 1)
    assert Webhook(first.json()["secret"]).verify(delivered.body, delivered.headers)["data"]["job_id"] == job


def test_a_query_callback_gets_its_job_signed_with_its_own_secret(new_tenant, webhook_receiver):
    client = new_tenant()
    response = client.request(
        "POST", "/v1/queries", json={"sql": "select 'called back' as x", "callback_url": webhook_receiver.url("/cb")}
    )
    assert response.status_code == 202, response.text
    job = response.json()
    callback = job["callback"]
    assert callback["secret"].startswith("whsec_") and callback["url"] == webhook_receiver.url("/cb")
    (request,) = webhook_receiver.wait_for("/cb", 1)
    payload = Webhook(callback["secret"]).verify(request.body, request.headers)
    assert (payload["type"], payload["data"]["job_id"]) == ("Job Completed", job["job_id"])
    state = wait_until(
        lambda: (s := subscription(client, callback["subscription_id"]))["delivery"]["delivered"] and s, 10, "state"
    )
    assert state["kind"] == "callback" and state["job_id"] == job["job_id"]
    assert client.job(job["job_id"]).get("callback") is None  # the secret is in the submission's answer only
    refused = client.request(
        "POST", "/v1/queries", json={"sql": "select 1", "callback_url": "https://169.254.169.254/latest"}
    )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "url_refused"


def test_sns_filter_policies_deliver_only_the_matching_tenants_events(new_tenant, spectra_stack, local_aws):
    acme, globex = new_tenant(), new_tenant()
    sns, sqs = local_aws.client("sns"), local_aws.client("sqs")
    topic = spectra_stack.physical_id("JobEventsTopic")
    queues = {}
    for name, policy in (("all", None), ("acme", {"tenant_id": [acme.tenant_id]})):
        url = sqs.create_queue(QueueName=f"sns-{name}-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes = {"RawMessageDelivery": "true"}
        if policy:
            attributes["FilterPolicy"] = json.dumps(policy)
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes=attributes, ReturnSubscriptionArn=True)
        queues[name] = url

    acme_job = acme.submit("select 1")["job_id"]
    globex_job = globex.submit("select 1")["job_id"]
    seen: dict[str, list[dict]] = {"all": [], "acme": []}

    def drain(name: str) -> list[dict]:
        for message in sqs.receive_message(QueueUrl=queues[name], MaxNumberOfMessages=10).get("Messages", []):
            seen[name].append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queues[name], ReceiptHandle=message["ReceiptHandle"])
        return seen[name]

    wait_until(
        lambda: {e["detail"]["job_id"] for e in drain("all")} >= {acme_job, globex_job}, 30, "both jobs on the topic"
    )
    # SNS fans each message out to every subscription at once: once the unfiltered queue has globex's, the filtered
    # one has had its chance
    wait_until(lambda: acme_job in {e["detail"]["job_id"] for e in drain("acme")}, 10, "acme's job, filtered")
    drain("acme")
    assert {e["detail"]["tenant_id"] for e in seen["acme"]} == {acme.tenant_id}
    assert globex_job not in {e["detail"]["job_id"] for e in seen["acme"]}
    event = next(e for e in seen["all"] if e["detail"]["job_id"] == acme_job)
    assert event["detail-type"] == "Job Completed" and event["resources"] == [acme_job]


def test_bulk_job_events_reach_webhooks_through_their_filter(bulk_tenant, webhook_receiver):
    client = bulk_tenant()
    created = subscribe(
        client.api, webhook_receiver.url("/hooks/bulk"), events=["Bulk Job Aborted"], filter={"operation": ["upsert"]}
    )
    other = client.create("insert")
    wanted = client.create("upsert", externalIdFieldName="email")
    client.close(other["id"], "Aborted")
    client.close(wanted["id"], "Aborted")
    (request,) = webhook_receiver.wait_for("/hooks/bulk", 1)
    payload = Webhook(created["secret"]).verify(request.body, request.headers)
    assert (payload["type"], payload["data"]["job_id"], payload["data"]["state"]) == (
        "Bulk Job Aborted",
        wanted["id"],
        "Aborted",
    )
    # the insert's event was published first and matched nothing
    assert [json.loads(r.body)["data"]["job_id"] for r in webhook_receiver.requests("/hooks/bulk")] == [wanted["id"]]
