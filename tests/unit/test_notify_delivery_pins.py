"""Webhook delivery behaviour no test held before (found by mutation testing spectra/notify/delivery.py): a delivery
within SQS's second of its time is sent, not delayed again; a function without a delivery queue refuses before any
POST; a batch of one, two or ten records is sent, all at once; a disable another delivery made first, or a delete just
before the disable, ends the attempt without a retry; a subscription made again under its key mid-attempt keeps none
of the old one's success or 410; a disable is announced once, and a lost announcement after three minutes; the
success status kept as the receiver gave it; where a run of failures ends; the one-second backoff floor; and the
failed attempt's log line."""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
from datetime import timedelta

import pytest

from spectra.notify import service
from spectra.notify.delivery import Outcome, backoff_seconds, deliver, prepare, send_all
from spectra.notify.fanout import plan
from spectra.notify.models import SubscriptionStatus
from spectra.notify.transport import HttpOutcome
from tests.unit.test_notify import (
    ACME,
    HOOK,
    T0,
    disabled_with_its_event_lost,
    ports_with_notify,
    queued_delivery,
    sample_event,
    subscribe,
)
from tests.unit.test_notify_delivery_batch import Context, handler, queued  # noqa: F401  (handler: the fixture)

pytestmark = pytest.mark.unit


def test_a_delivery_a_second_or_less_before_its_time_is_sent_now():
    """SQS's delays are whole seconds and approximate: a retry that comes back up to a second early is POSTed, not
    queued again for a second more."""
    ports = ports_with_notify()
    _, delivery = queued_delivery(ports)
    for early in (timedelta(milliseconds=300), timedelta(seconds=1)):
        due = delivery.model_copy(update={"attempt": 2, "not_before": T0 + early})
        assert deliver(ports, due, now=T0) is Outcome.DELIVERED
    assert len(ports.notify.transport.posts) == 2 and ports.notify.deliveries.take() == []


def test_a_delivery_more_than_a_second_early_waits_the_rest_rounded_up():
    ports = ports_with_notify()
    _, delivery = queued_delivery(ports)
    early = delivery.model_copy(update={"attempt": 2, "not_before": T0 + timedelta(seconds=1, milliseconds=200)})
    assert deliver(ports, early, now=T0) is Outcome.WAITING
    (hop,) = ports.notify.deliveries.take()
    assert (hop.delay_seconds, hop.delivery) == (2, early)
    assert ports.notify.transport.posts == []


def test_a_function_without_a_delivery_queue_refuses_before_posting():
    """Without the queue no retry could be queued: the message fails before its POST (its queue retries it) rather
    than after one that the record's redelivery would send again."""
    ports = ports_with_notify()
    _, delivery = queued_delivery(ports)
    ports = dataclasses.replace(ports, notify=dataclasses.replace(ports.notify, deliveries=None))
    with pytest.raises(RuntimeError, match="WEBHOOK_DELIVERY_QUEUE_URL"):
        deliver(ports, delivery, now=T0)
    assert ports.notify.transport.posts == []


def test_a_failure_whose_disable_another_delivery_made_first_ends_disabled_without_a_retry():
    """Two deliveries to a dying endpoint reach the threshold together; the other one's disable lands first (and it
    announces it). This attempt is over: no retry queued for a disabled subscription, no second event."""
    ports = ports_with_notify(webhook_disable_after_failures=1, webhook_disable_after_seconds=0)
    sub, delivery = queued_delivery(ports)
    store = ports.notify.subscriptions
    real_disable = store.disable

    def disabled_first_by_another_delivery(*args, **kwargs):
        real_disable(*args, **kwargs)  # the other delivery's disable
        return real_disable(*args, **kwargs)

    store.disable = disabled_first_by_another_delivery
    ports.notify.transport.answer(HttpOutcome(503, "HTTP 503"))
    assert deliver(ports, delivery, now=T0) is Outcome.DISABLED
    assert store.get("acme", sub.subscription_id).status is SubscriptionStatus.DISABLED
    assert ports.notify.deliveries.take() == [] and ports.notify.deliveries.dead_letters == []
    assert ports.events.events == []  # the delivery that disabled it says so, not this one


def test_a_batch_of_one_record_is_delivered(handler, monkeypatch):  # noqa: F811
    """The delivery queue's batch can hold a single record (a quiet hour's one event): it is POSTed and settled as
    any batch's, not failed for want of its POST's answer."""
    ports = ports_with_notify()
    (record,) = queued(ports, [(ACME, "https://hooks.acme.example/a")])
    monkeypatch.setattr(handler, "get_ports", lambda: ports)
    assert handler.lambda_handler({"Records": [record]}, Context()) == {"batchItemFailures": []}
    (post,) = ports.notify.transport.posts
    assert post.url == "https://hooks.acme.example/a"
    assert [s.delivery.delivered for s in ports.notify.subscriptions.items.values()] == [1]


def test_a_gone_answer_leaves_a_subscription_made_again_before_the_disable_alone():
    """The tenant deletes the subscription and makes it again under its Idempotency-Key between the old URL's 410
    being recorded and the disable: the disable is of the subscription the attempt was made for, so the new one
    stays active and no "Subscription Disabled" is said of it."""
    ports = ports_with_notify()
    old, _ = service.create_subscription(ports, ACME, url=HOOK + "/old", events=["Job Completed"], idempotency_key="k")
    (delivery,) = plan(ports, sample_event()).deliveries
    store = ports.notify.subscriptions
    real_disable = store.disable

    def disable_after_the_tenant_moved(*args, **kwargs):
        service.delete_subscription(ports, ACME, old.subscription_id)
        service.create_subscription(ports, ACME, url=HOOK + "/new", events=["Job Completed"], idempotency_key="k")
        return real_disable(*args, **kwargs)

    store.disable = disable_after_the_tenant_moved
    ports.notify.transport.answer(HttpOutcome(410, "HTTP 410 Gone"))
    deliver(ports, delivery, now=T0)
    new = store.get("acme", old.subscription_id)
    assert (new.url, new.status) == (HOOK + "/new", SubscriptionStatus.ACTIVE)
    assert ports.events.types().count("Subscription Disabled") == 0


def test_a_subscription_deleted_before_the_disable_ends_the_attempt_without_a_retry():
    """The tenant deletes the subscription between the attempt's failure being recorded and its disable: nothing is
    left to disable or retry, and the attempt ends there rather than failing its record (whose redelivery would POST
    again)."""
    ports = ports_with_notify(webhook_disable_after_failures=1, webhook_disable_after_seconds=0)
    sub, delivery = queued_delivery(ports)
    store = ports.notify.subscriptions
    real_disable = store.disable

    def disable_after_the_delete(*args, **kwargs):
        service.delete_subscription(ports, ACME, sub.subscription_id)
        return real_disable(*args, **kwargs)

    store.disable = disable_after_the_delete
    ports.notify.transport.answer(HttpOutcome(503, "HTTP 503"))
    assert deliver(ports, delivery, now=T0) in (Outcome.DISABLED, Outcome.DROPPED)
    assert ports.notify.deliveries.take() == [] and ports.notify.deliveries.dead_letters == []
    assert ports.events.events == [] and len(ports.notify.transport.posts) == 1


def test_a_disable_already_announced_is_not_announced_again_by_later_deliveries():
    """Deliveries still queued for a disabled subscription are dropped; once its "Subscription Disabled" went out,
    the ones that meet it later (past the disabling attempt's own window) say nothing more. The one event says why."""
    ports = ports_with_notify()
    sub, delivery = queued_delivery(ports)
    ports.notify.transport.answer(HttpOutcome(410, "HTTP 410 Gone"))
    assert deliver(ports, delivery, now=T0) is Outcome.DISABLED
    for later in (timedelta(minutes=5), timedelta(hours=3)):
        assert deliver(ports, delivery, now=T0 + later) is Outcome.DROPPED
    assert ports.events.types() == ["Subscription Disabled"] and len(ports.notify.transport.posts) == 1
    (event,) = ports.events.events  # it says why, as the tenant's subscription record does
    assert "410 Gone" in event.detail.message
    assert "410 Gone" in ports.notify.subscriptions.get("acme", sub.subscription_id).disabled_message


def test_a_lost_disabled_event_is_left_to_its_attempt_for_three_minutes_then_announced():
    """The attempt that disabled the subscription has its invocation (120 s) and a minute for the clocks to say so:
    a delivery meeting the disable before then says nothing; from three minutes on it publishes the lost event."""
    ports = ports_with_notify()
    _, delivery = disabled_with_its_event_lost(ports)
    assert deliver(ports, delivery, now=T0 + timedelta(seconds=179)) is Outcome.DROPPED
    assert ports.events.types() == []
    assert deliver(ports, delivery, now=T0 + timedelta(seconds=180)) is Outcome.DROPPED
    assert ports.events.types() == ["Subscription Disabled"]


def test_the_delivery_state_keeps_the_success_status_the_receiver_gave():
    """A receiver answering 204 No Content (or 202) succeeded, and its subscription's delivery state says 204."""
    ports = ports_with_notify()
    sub, delivery = queued_delivery(ports)
    ports.notify.transport.answer(HttpOutcome(204))
    assert deliver(ports, delivery, now=T0) is Outcome.DELIVERED
    assert ports.notify.subscriptions.get("acme", sub.subscription_id).delivery.last_status == 204


def test_a_spell_just_over_two_of_the_longest_waits_ends_a_run_of_failures():
    """README: a run of failures in a row ends at a spell with no attempt longer than two of the retries' longest
    waits (2 x 3 h by default). A failure that long after the last adds to the run; a second more starts a new one."""
    ports = ports_with_notify()
    sub, delivery = queued_delivery(ports)
    gap = timedelta(seconds=2 * ports.settings.webhook_retry_max_delay_seconds)
    ports.notify.transport.answer(*[HttpOutcome(503)] * 3)
    for at in (T0, T0 + gap):
        deliver(ports, delivery, now=at)
    assert ports.notify.subscriptions.get("acme", sub.subscription_id).delivery.consecutive_failures == 2
    later = T0 + 2 * gap + timedelta(seconds=1)
    deliver(ports, delivery, now=later)
    state = ports.notify.subscriptions.get("acme", sub.subscription_id).delivery
    assert (state.consecutive_failures, state.failing_since) == (1, later)


@pytest.mark.parametrize("size", [2, 10])
def test_the_posts_of_a_batch_are_all_in_flight_at_once(size):
    """The delivery queue's batch is up to ten records (template.yaml): two or ten, all the POSTs go out together, so
    none waits behind another tenant's receiver that times out. Each POST here waits until all are under way."""
    ports = ports_with_notify()
    for n in range(size):
        subscribe(ports, url=f"https://hooks.acme.example/{n}")
    attempts = [prepare(ports, d, now=T0) for d in plan(ports, sample_event()).deliveries]
    all_under_way = threading.Barrier(size, timeout=30)
    post = ports.notify.transport.post

    def post_once_all_are_under_way(url, body, headers):
        try:
            all_under_way.wait()
        except threading.BrokenBarrierError:
            return HttpOutcome(None, "the POSTs of the batch were not in flight at once")
        return post(url, body, headers)

    ports.notify.transport.post = post_once_all_are_under_way
    assert [(a.status, a.error) for a in send_all(ports, attempts)] == [(200, None)] * size
    assert sorted(p.url for p in ports.notify.transport.posts) == sorted(a.url for a in attempts)


def test_a_success_leaves_a_subscription_made_again_during_the_post_alone():
    """The tenant deletes the subscription and makes it again under its Idempotency-Key while a POST to the old URL
    is in flight: the old URL's success is not the new subscription's (its delivery state shows none)."""
    ports = ports_with_notify()
    old, _ = service.create_subscription(ports, ACME, url=HOOK + "/old", events=["Job Completed"], idempotency_key="k")
    (delivery,) = plan(ports, sample_event()).deliveries
    post = ports.notify.transport.post

    def post_while_the_tenant_moves(url, body, headers):
        answer = post(url, body, headers)
        service.delete_subscription(ports, ACME, old.subscription_id)
        service.create_subscription(ports, ACME, url=HOOK + "/new", events=["Job Completed"], idempotency_key="k")
        return answer

    ports.notify.transport.post = post_while_the_tenant_moves
    deliver(ports, delivery, now=T0)
    new = ports.notify.subscriptions.get("acme", old.subscription_id)
    assert new.url == HOOK + "/new"
    assert (new.delivery.delivered, new.delivery.last_status, new.delivery.last_success_at) == (0, None, None)


def test_a_one_second_step_waits_one_second():
    """Half the step plus up to the other half, rounded up to whole seconds (SQS's unit): a base of 1 s waits 1 s
    after the first failure, whatever the jitter draws."""
    assert {backoff_seconds(1, base=1, factor=3, cap=60, rng=random.Random(seed)) for seed in range(20)} == {1}


def test_a_day_of_failures_fewer_than_the_threshold_does_not_disable():
    """Both conditions hold before a disable: failing for the window (a day) and the threshold's failures in a row.
    Six failures over a day, with a threshold of ten, leave the subscription active and the delivery retried."""
    ports = ports_with_notify(webhook_disable_after_failures=10)
    sub, delivery = queued_delivery(ports)
    ports.notify.transport.answer(*[HttpOutcome(503)] * 6)
    outcomes = [deliver(ports, delivery, now=T0 + timedelta(hours=h)) for h in (0, 5, 10, 15, 20, 25)]
    assert outcomes == [Outcome.RETRY_SCHEDULED] * 6
    assert ports.notify.subscriptions.get("acme", sub.subscription_id).status is SubscriptionStatus.ACTIVE


def test_a_failed_attempt_is_logged_with_its_delivery_attempt_and_error(caplog):
    """The operator's trace of a failing receiver: one warning per failed attempt naming the delivery, the
    subscription, the attempt's number and the error."""
    ports = ports_with_notify()
    sub, delivery = queued_delivery(ports)
    ports.notify.transport.answer(HttpOutcome(500, "HTTP 500 Internal Server Error"))
    with caplog.at_level(logging.WARNING, logger="spectra.notify.delivery"):
        deliver(ports, delivery.model_copy(update={"attempt": 4}), now=T0)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "spectra.notify.delivery"]
    for part in (delivery.webhook_id, sub.subscription_id, "attempt 4", "HTTP 500 Internal Server Error"):
        assert part in line
