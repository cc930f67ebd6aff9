"""The delivery function on the local stack with a batch of real SQS records: two tenants' deliveries in one batch,
one tenant's receiver hanging, the other's delivery not waiting for it.

The records come from a queue of the test's own, received in one call, and the stack's function is invoked with
them: through the whole pipeline two tenants' deliveries would reach the stack's pollers at different moments and go
into different batches (each poller long-polls and takes what is there), so the case could not be made on purpose.
"""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from events import WebhookDelivery
from tests.e2e.test_webhooks import subscribe, subscription

pytestmark = pytest.mark.integration


def delivery(client, created: dict) -> WebhookDelivery:
    """A delivery of a job event to the subscription ``created`` (the API's answer), as the notifier queues it."""
    data = {"version": "1", "job_id": "j_" + uuid.uuid4().hex[:22], "tenant_id": client.tenant_id}
    return WebhookDelivery(
        webhook_id="msg_" + uuid.uuid4().hex[:26],
        tenant_id=client.tenant_id,
        subscription_id=created["id"],
        event_type="Job Completed",
        payload=json.dumps({"type": "Job Completed", "timestamp": "2026-11-22T10:14:27Z", "data": data}),
    )


def one_batch(stack, sqs, deliveries: list[WebhookDelivery]) -> dict:
    """The deliveries sent to a queue of the test's own and received back in one call, as the event Lambda makes."""
    url = sqs.create_queue(QueueName=f"delivery-batch-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    try:
        entries = [{"Id": str(n), "MessageBody": d.model_dump_json()} for n, d in enumerate(deliveries)]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"]
        )["Messages"]
    finally:
        sqs.delete_queue(QueueUrl=url)
    assert len(messages) == len(deliveries)
    (poller, *_) = [p for p in stack.pollers if p.name.startswith("WebhookDeliveryFunction.")]
    by_body = {m["Body"]: m for m in messages}
    return {"Records": [poller.record(by_body[e["MessageBody"]]) for e in entries]}  # in the order sent


def test_a_hanging_receiver_does_not_hold_another_tenants_delivery_of_the_same_batch(
    spectra_stack, local_aws, new_tenant, webhook_receiver
):
    """Found by the hostile-tenant review: the deliveries of a batch were sent one after another, so a tenant whose
    receivers never answer held the others' deliveries behind it, 10 s each (the attempt's deadline). The slow
    tenant's delivery is first in the batch; the other's arrives while the first is still waiting for its answer."""
    slow, prompt = new_tenant(), new_tenant()
    hanging = subscribe(slow, webhook_receiver.url("/slow"), events=["Job Completed"])
    answering = subscribe(prompt, webhook_receiver.url("/prompt"), events=["Job Completed"])
    webhook_receiver.hang("/slow")
    event = one_batch(spectra_stack, local_aws.client("sqs"), [delivery(slow, hanging), delivery(prompt, answering)])
    answers = []
    invocation = threading.Thread(
        target=lambda: answers.append(spectra_stack.invoke("WebhookDeliveryFunction", event)), daemon=True
    )
    invocation.start()
    try:
        webhook_receiver.wait_for("/slow", 1)
        webhook_receiver.wait_for("/prompt", 1)
        # one after another, the second POST went out only once the first had given up (its 10 s deadline)
        assert webhook_receiver.held("/slow") == 1
    finally:
        webhook_receiver.release("/slow")
        invocation.join(60)
    assert answers == [{"batchItemFailures": []}]
    for client, created in ((slow, hanging), (prompt, answering)):  # each settled: its delivery state written
        state = subscription(client, created["id"])["delivery"]
        assert (state["delivered"], state["last_status"]) == (1, 200)
