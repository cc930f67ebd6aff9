"""The notifier's batch on fakes, through its ``lambda_handler``: every event is read first, then every first attempt
of the batch is POSTed at once, then each event settles its own attempts and is published (consumers/notifier/app.py).
Each POST's answer must land on the record whose delivery it was, and a record that cannot be read or planned fails
alone."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from consumers.notifier import app as notifier
from spectra.notify.delivery import DISABLE_ANNOUNCED_WITHIN, Outcome, deliver
from spectra.notify.fanout import fan_out, plan
from spectra.notify.models import SubscriptionStatus
from spectra.notify.transport import HttpOutcome
from spectra.publisher import PublishFailed
from tests.unit.test_consumers_time_left import Invocation
from tests.unit.test_notify import ACME, GLOBEX, ports_with_notify, sample_event, subscribe

pytestmark = pytest.mark.unit

JOBS = {"acme": ("j_Qm9ZcW1uT3pLd0xZb3FXcA", "j_Qm9ZcW1uT3pLd0xZb3FXcB"), "globex": ("j_Qm9ZcW1uT3pLd0xZb3FXcC",)}


def event_records() -> list[dict]:
    """One SQS record per job of ``JOBS``, its tenant's "Job Completed" event, in that order."""
    return [
        {
            "messageId": f"m-{job_id}",
            "body": sample_event(tenant_id=tenant, job_id=job_id).model_dump_json(by_alias=True),
            "eventSource": "aws:sqs",
        }
        for tenant, jobs in JOBS.items()
        for job_id in jobs
    ]


@pytest.fixture
def ports(monkeypatch):
    ports = ports_with_notify()
    subscribe(ports, caller=ACME, url="https://hooks.acme.example/in")
    subscribe(ports, caller=GLOBEX, url="https://52.94.236.5/in")
    monkeypatch.setattr(notifier, "get_ports", lambda: ports)
    monkeypatch.setattr(notifier.metrics, "namespace", "RedshiftSpectra")  # the template's Globals
    return ports


def test_the_first_attempts_of_a_batch_are_in_flight_at_once_and_each_answer_is_its_own_records(ports, monkeypatch):
    """Three events of two tenants: the three POSTs wait until all are under way (sent one after another, the first
    would wait alone and the barrier break), and the one answered 500 (the first record's, by its body) is the one
    whose retry is queued: the answers are not mixed up between the records."""
    all_under_way = threading.Barrier(3, timeout=30)
    transport = ports.notify.transport
    post = transport.post

    def post_once_all_are_under_way(url, body, headers):
        try:
            all_under_way.wait()
        except threading.BrokenBarrierError:
            return HttpOutcome(None, "the POSTs of the batch were not in flight at once")
        if json.loads(body)["data"]["job_id"] == JOBS["acme"][0]:
            return HttpOutcome(500)
        return post(url, body, headers)

    monkeypatch.setattr(transport, "post", post_once_all_are_under_way)

    answer = notifier.lambda_handler({"Records": event_records()}, Invocation(60.0))

    assert answer == {"batchItemFailures": []}
    delivered = sorted(json.loads(p.body)["data"]["job_id"] for p in transport.posts)
    assert delivered == [JOBS["acme"][1], JOBS["globex"][0]]
    (retry,) = ports.notify.deliveries.take()
    assert json.loads(retry.delivery.payload)["data"]["job_id"] == JOBS["acme"][0] and retry.delivery.attempt == 2
    assert sorted(e.detail["job_id"] for e in ports.notify.topic.published) == sorted(
        j for js in JOBS.values() for j in js
    )
    states = {s.tenant_id: s.delivery for s in ports.notify.subscriptions.items.values()}
    assert (states["acme"].delivered, states["acme"].failed_attempts, states["globex"].delivered) == (1, 1, 1)


def test_a_record_that_cannot_be_read_or_planned_fails_alone_and_sends_nothing(ports, monkeypatch):
    """An unreadable event, and one whose subscriptions cannot be read (DynamoDB refusing), are the batch's failures:
    neither POSTs nor publishes anything. The third event is delivered and published."""
    unreadable, unplanned, fine = event_records()
    unreadable["body"] = '{"not": "an event"}'
    store = ports.notify.subscriptions
    webhooks_for_tenant = store.webhooks_for_tenant

    def refused_for_globex(tenant_id, **kwargs):
        if tenant_id == "globex":
            raise RuntimeError("DynamoDB refused the read")
        return webhooks_for_tenant(tenant_id, **kwargs)

    monkeypatch.setattr(store, "webhooks_for_tenant", refused_for_globex)
    records = [unreadable, fine, unplanned]
    unplanned["body"] = sample_event(tenant_id="globex", job_id=JOBS["globex"][0]).model_dump_json(by_alias=True)
    fine["body"] = sample_event(tenant_id="acme", job_id=JOBS["acme"][1]).model_dump_json(by_alias=True)

    answer = notifier.lambda_handler({"Records": records}, Invocation(60.0))

    assert answer == {
        "batchItemFailures": [{"itemIdentifier": unreadable["messageId"]}, {"itemIdentifier": unplanned["messageId"]}]
    }
    (post,) = ports.notify.transport.posts
    assert json.loads(post.body)["data"]["job_id"] == JOBS["acme"][1]
    assert [e.detail["job_id"] for e in ports.notify.topic.published] == [JOBS["acme"][1]]


def test_a_batch_makes_ten_first_attempts_and_queues_the_rest_for_the_delivery_function(ports):
    """A tenant's 25 subscriptions answering slowly would hold the batch for three rounds of POSTs (ten at a time,
    10 s each) and more for every event beside it, past the Timeout, and the whole batch would come back to be sent
    again (found by review). One round is made; the other first attempts go on the delivery queue, due now, and the
    delivery function delivers them as any other."""
    for n in range(11):  # with the fixture's, 12 subscriptions of acme
        subscribe(ports, caller=ACME, url=f"https://hooks.acme.example/s{n}")
    acme_a, _, _ = event_records()

    assert notifier.lambda_handler({"Records": [acme_a]}, Invocation(60.0)) == {"batchItemFailures": []}

    assert len(ports.notify.transport.posts) == 10
    queued = ports.notify.deliveries.take()
    assert [(q.delivery.attempt, q.delay_seconds) for q in queued] == [(1, 0), (1, 0)]
    posted = {p.headers["webhook-id"] for p in ports.notify.transport.posts}
    assert posted.isdisjoint(q.delivery.webhook_id for q in queued)
    for q in queued:
        assert deliver(ports, q.delivery) is Outcome.DELIVERED
    assert len({p.headers["webhook-id"] for p in ports.notify.transport.posts}) == 12
    assert len(ports.notify.topic.published) == 1


def test_a_disable_the_notifier_could_not_announce_is_announced_by_a_later_event(ports):
    """The notifier's first attempt met a 410 and disabled the subscription, but "Subscription Disabled" failed to
    publish (or the invocation died): no retry was queued that would meet the disable later, and the redelivered
    event no longer goes to a disabled subscription, so nothing announced it (found by review). The notifier planning
    an event of the tenant once DISABLE_ANNOUNCED_WITHIN has passed announces it, once."""
    ports.notify.transport.answer(HttpOutcome(410))
    ports.events.fail_next()
    event = sample_event(tenant_id="acme", job_id=JOBS["acme"][0])
    with pytest.raises(PublishFailed):
        fan_out(ports, event)
    (gone,) = [s for s in ports.notify.subscriptions.items.values() if s.tenant_id == "acme"]
    assert gone.status is SubscriptionStatus.DISABLED and not gone.disabled_event_published

    plan(ports, event, now=gone.disabled_at + DISABLE_ANNOUNCED_WITHIN - timedelta(seconds=1))
    assert ports.events.events == []  # still the disabling attempt's to announce
    plan(ports, event, now=gone.disabled_at + DISABLE_ANNOUNCED_WITHIN)
    plan(ports, event, now=gone.disabled_at + DISABLE_ANNOUNCED_WITHIN)
    (announced,) = ports.events.events
    assert (announced.detail_type, announced.detail.subscription_id) == ("Subscription Disabled", gone.subscription_id)
