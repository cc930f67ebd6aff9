"""One event of the project's bus → one delivery per matching subscription of its tenant, and the SNS topic.

Each delivery's first attempt is made here, with the subscription just read: signed, POSTed, and settled as the
delivery function settles any attempt (spectra/notify/delivery.py: the subscription's delivery state, and for a
failed attempt its retry through the delivery queue, the DLQ or the disable). The delivery queue carries the retries
only, so a delivery that succeeds at once costs no queue hop and no second read of its subscription. The notifier
sends a batch's POSTs side by side (:func:`plan` for each event, then every attempt at once, then :func:`finish` for
each), as the delivery function does.

A batch makes at most :data:`~spectra.notify.delivery.MAX_POSTS_AT_ONCE` first attempts (one round of POSTs, about
one attempt's 10 s however many receivers time out); a batch with more (a tenant's 25 subscriptions, say) queues the
rest on the delivery queue as first attempts (``Outcome.QUEUED``), for the delivery function.

A disabled subscription the notifier meets whose disable was not announced in time (the invocation that disabled it
died, or its publish failed) is announced then, as the delivery function does (``DISABLE_ANNOUNCED_WITHIN``): a
disable the notifier made queues no retry that would find it later.

Safe to repeat: a redelivered event makes its first attempts again with the same ``webhook-id`` (receivers
deduplicate) and publishes to SNS again (SNS is at-least-once anyway). The attempts are settled, a failed one's retry
queued, before the SNS publish, so a failed publish retries the whole event and loses nothing.

The subscriptions are read without a consistent read, as before: one deleted or disabled within about a second
before the event may still get its attempt (a retry reads its subscription again, and drops it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from events import JOB_EVENT_DETAIL_TYPES, TERMINAL_JOB_EVENT_TYPES, ProjectEvent, WebhookDelivery
from spectra.jobs import utcnow
from spectra.notify.delivery import (
    MAX_POSTS_AT_ONCE,
    Attempt,
    Outcome,
    announce_if_overdue,
    send_all,
    settle,
    signed_attempt,
)
from spectra.notify.models import Subscription, SubscriptionStatus, callback_id, delivery_for
from spectra.notify.service import notify_ports
from spectra.notify.transport import HttpOutcome
from spectra.ports import Ports
from spectra.tenant_cache import tenant_record
from spectra.tenants import same_generation

logger = logging.getLogger(__name__)


#: How long this process trusts what it read of a tenant's generation (spectra/tenant_cache.py).
GENERATION_CACHE_SECONDS = 30.0


def _of_current_tenant(ports: Ports, tenant_id: str, subscriptions: list[Subscription]) -> list[Subscription]:
    """The subscriptions made by the tenant as it is now: a tenant deleted and created again under the same id is
    another tenant, and its predecessor's subscriptions get none of its events (within GENERATION_CACHE_SECONDS of
    the re-creation, for a process that read the tenant just before). A tenant that is gone keeps its own."""
    if not any(s.tenant_generation for s in subscriptions):
        return subscriptions
    tenant = tenant_record(ports.tenants, tenant_id, max_age=GENERATION_CACHE_SECONDS)
    current = tenant.generation if tenant is not None else None
    return [s for s in subscriptions if same_generation(current, s.tenant_generation)]


def _of_event_generation(ports: Ports, event: ProjectEvent, subscriptions: list[Subscription]) -> list[Subscription]:
    """The subscriptions that hear of ``event``: those of the tenant generation that made its job (or subscription),
    named in the event's ``tenant_generation``. A job that outlives its tenant (queued or running when the tenant was
    deleted, and ending once it was created again) is the predecessor's, and its event reaches none of the
    successor's subscriptions; a predecessor's subscription still hears of its own jobs, as a tenant that is gone
    keeps its own. An event without a generation (published before events carried it, or of a job made before
    generations existed) goes to the tenant's current generation's (:func:`_of_current_tenant`)."""
    generation = event.detail.get("tenant_generation")
    if not isinstance(generation, str) or not generation:
        return _of_current_tenant(ports, event.detail["tenant_id"], subscriptions)
    return [s for s in subscriptions if same_generation(generation, s.tenant_generation)]


@dataclass(frozen=True)
class Plan:
    """What one event is owed: a delivery per matching subscription, each with its first attempt (signed, not sent),
    and whether it goes to the SNS topic."""

    event: ProjectEvent
    deliveries: list[WebhookDelivery]
    attempts: list[Attempt]
    publish: bool


@dataclass(frozen=True)
class FanOut:
    deliveries: list[WebhookDelivery]
    #: each delivery's first attempt, in the order of ``deliveries``
    outcomes: list[Outcome]
    published_to_topic: bool


def plan(ports: Ports, event: ProjectEvent, *, now: datetime | None = None) -> Plan:
    """The subscriptions ``event`` goes to, read now, and their first attempts, signed at ``now``."""
    notify = notify_ports(ports)
    tenant_id = event.detail.get("tenant_id")
    deliveries: list[WebhookDelivery] = []
    attempts: list[Attempt] = []
    if isinstance(tenant_id, str) and tenant_id:
        subscriptions = _of_event_generation(ports, event, notify.subscriptions.webhooks_for_tenant(tenant_id))
        job_id = event.detail.get("job_id")
        if event.detail_type in JOB_EVENT_DETAIL_TYPES.values() and isinstance(job_id, str):
            callback = notify.subscriptions.get(tenant_id, callback_id(job_id))
            if callback is not None:
                subscriptions.append(callback)
        now = now or utcnow()
        for subscription in subscriptions:
            if subscription.status is SubscriptionStatus.DISABLED:
                announce_if_overdue(ports, subscription, now)
        matching = [s for s in subscriptions if s.accepts(event.detail_type, event.detail)]
        deliveries = [delivery_for(s, event) for s in matching]
        attempts = [signed_attempt(d, s, now) for d, s in zip(deliveries, matching, strict=True)]
    else:
        logger.warning("event %s (%s) names no tenant; no webhooks", event.id, event.detail_type)
    if deliveries and notify.deliveries is None:
        raise RuntimeError("this function has no delivery queue (WEBHOOK_DELIVERY_QUEUE_URL is not set)")
    publish = event.detail_type in TERMINAL_JOB_EVENT_TYPES and notify.topic is not None
    return Plan(event=event, deliveries=deliveries, attempts=attempts, publish=publish)


def finish(ports: Ports, planned: Plan, answers: Sequence[HttpOutcome | None]) -> FanOut:
    """Settle each first attempt with its POST's answer (``answers``, in the order of ``planned.attempts``; None for
    an attempt not made, which is queued for the delivery function instead), then publish the event to the SNS
    topic."""
    outcomes = [
        _queued(ports, attempt) if answer is None else settle(ports, attempt, answer)
        for attempt, answer in zip(planned.attempts, answers, strict=True)
    ]
    if planned.publish:
        notify_ports(ports).topic.publish(planned.event)
    return FanOut(deliveries=planned.deliveries, outcomes=outcomes, published_to_topic=planned.publish)


def _queued(ports: Ports, attempt: Attempt) -> Outcome:
    notify_ports(ports).deliveries.retry(attempt.message, 0)  # a first attempt, due now
    return Outcome.QUEUED


def send_first_attempts(ports: Ports, attempts: Sequence[Attempt]) -> list[HttpOutcome | None]:
    """The POSTs of the first :data:`MAX_POSTS_AT_ONCE` of ``attempts`` side by side (one round, so receivers that
    time out hold the caller for one attempt's 10 s however many there are), their answers in order, and None for
    each attempt past that many, which :func:`finish` queues for the delivery function."""
    made = list(attempts[:MAX_POSTS_AT_ONCE])
    return [*send_all(ports, made), *[None] * (len(attempts) - len(made))]


def fan_out(ports: Ports, event: ProjectEvent) -> FanOut:
    """One event alone: :func:`plan`, its POSTs side by side, :func:`finish`."""
    planned = plan(ports, event)
    return finish(ports, planned, send_first_attempts(ports, planned.attempts))
