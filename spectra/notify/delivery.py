"""One webhook delivery attempt, and what follows it: the next attempt later, the DLQ, or disabling the subscription.

Retries go through the delivery queue as new messages, delayed by exponential backoff with jitter (attempt ``n``
waits ``base * factor**(n-1)`` seconds, capped, of which a random half), so they start within seconds and spread
over hours. SQS delays a message 15 minutes at most: a longer wait is taken in hops, each message carrying its
``not_before``. Every attempt of one event carries the same ``webhook-id`` and body and a fresh timestamp and
signature. After ``webhook_max_attempts`` the delivery goes to the dead-letter queue, with its last error.

Each attempt updates the subscription's delivery state. A subscription that failed ``webhook_disable_after_failures``
attempts in a row over at least ``webhook_disable_after_seconds`` (a day, by default: a receiver down for minutes while
a burst of jobs ends fails that many attempts at once, and needs its retries, not to be switched off), or whose endpoint
answered 410 Gone, is disabled and a "Subscription Disabled" event says so; deliveries still queued for it are dropped
when their turn comes. The disable is conditional on the failures in a row still standing when it is written, so a
concurrent delivery that succeeded in between (and reset the count) keeps the subscription active; the failed attempt is
then retried as any other.

A run of failures in a row ends at a success, or at a spell longer than :func:`run_gap` with no attempt at all (two
of the retries' longest waits: one delivery's attempts are never that far apart). A failure after such a spell starts
a new run, so an endpoint that came back after an outage, with no event to show it for a day, is not disabled by the
first failed attempt after that. The price: an endpoint gone for good whose subscription matches an event less often
than that is never disabled; each event's delivery is retried and then dead-lettered, as any other.

An attempt is three steps, so the delivery function can send a batch's POSTs side by side (:func:`send_all`) while
everything else stays in its handler's thread: :func:`prepare` (is it due, is its subscription still there and active,
the signed request), :func:`send` (the POST alone) and :func:`settle` (the subscription's delivery state, and the next
attempt, the DLQ or the disable). :func:`deliver` is the three for one message.
"""

from __future__ import annotations

import contextvars
import logging
import math
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from events import SUBSCRIPTION_DISABLED, SubscriptionDisabledDetail, WebhookDelivery
from spectra.jobs import utcnow
from spectra.notify.models import DisabledReason, Subscription, SubscriptionStatus
from spectra.notify.service import notify_ports
from spectra.notify.signing import signed_headers
from spectra.notify.transport import HttpOutcome
from spectra.notify.urls import origin, origins_only
from spectra.ports import Ports
from spectra.settings import Settings

logger = logging.getLogger(__name__)

#: SQS's delays are whole seconds and approximate: a message this close to its time is delivered, not delayed again.
_EARLY_TOLERANCE = timedelta(seconds=1)
#: The most POSTs :func:`send_all` has in flight at once: a whole batch of the delivery queue (BatchSize 10, SQS's
#: most without a batching window). A larger batch would send ten at a time.
MAX_POSTS_AT_ONCE = 10
#: How long a disable is left for the attempt that made it to announce. That attempt publishes the event within its
#: invocation (WebhookDeliveryFunction's Timeout in template.yaml, 120 s, or the notifier's, 60 s, from before the
#: disable's ``disabled_at``), so a delivery meeting the disable earlier, in another invocation, would only say it a
#: second time; a minute more for the hosts' clocks. The attempt's record, if it died first, comes back after its
#: queue's visibility timeout (720 s for a delivery, 360 s for the notifier's event), past this, and announces it
#: then (as does any delivery meeting the subscription from then on, and the notifier planning any later event of
#: its tenant: spectra/notify/fanout.py).
DISABLE_ANNOUNCED_WITHIN = timedelta(seconds=180)


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY_SCHEDULED = "retry_scheduled"
    WAITING = "waiting"  # not due yet: queued again for the rest of its delay
    DEAD_LETTERED = "dead_lettered"
    DISABLED = "disabled"  # this attempt disabled the subscription
    DROPPED = "dropped"  # the subscription is gone or disabled
    QUEUED = "queued"  # a first attempt the notifier did not make (its batch had more): on the delivery queue


def run_gap(settings: Settings) -> timedelta:
    """How long a spell with no attempt at all ends a run of failures in a row (module docstring)."""
    return timedelta(seconds=2 * settings.webhook_retry_max_delay_seconds)


def backoff_seconds(attempt: int, *, base: float, factor: float, cap: float, rng: random.Random | None = None) -> int:
    """The wait after failed attempt ``attempt`` (1-based): half the exponential step, plus up to the other half at
    random, so many deliveries failing together do not come back together. A step past the float range is the cap:
    the template bounds neither WebhookRetryFactor nor WebhookRetryBaseSeconds from above, and a factor over about
    two million would raise an OverflowError by the 50th attempt (WebhookMaxAttempts' most), so the retry would never
    be queued and the message would come back to POST again until its queue's DLQ."""
    try:
        step = min(cap, base * factor ** (attempt - 1))
    except OverflowError:
        step = cap
    return max(1, math.ceil(step / 2 + (rng or random).uniform(0, step / 2)))


@dataclass(frozen=True)
class Attempt:
    """A delivery ready to POST (:func:`prepare`): the signed request, the subscription it was signed for and the
    time it was made at (every write of :func:`settle` is to that very subscription, at that time)."""

    message: WebhookDelivery
    subscription: Subscription
    url: str
    body: bytes
    headers: dict[str, str]
    now: datetime
    #: the context (log keys, spectra/logs.py) it was prepared in: a line the transport writes, sent from another
    #: thread, names its delivery as the handler's own lines do
    context: contextvars.Context = field(default_factory=contextvars.copy_context, compare=False, repr=False)


def deliver(ports: Ports, message: WebhookDelivery, *, now: datetime | None = None) -> Outcome:
    """One attempt of one message: :func:`prepare`, :func:`send`, :func:`settle`."""
    prepared = prepare(ports, message, now=now)
    if isinstance(prepared, Outcome):
        return prepared
    return settle(ports, prepared, send(ports, prepared))


def prepare(ports: Ports, message: WebhookDelivery, *, now: datetime | None = None) -> Outcome | Attempt:
    """The attempt to send, signed, or the outcome that needs none: a delivery not due yet (queued again for the rest
    of its wait) or one whose subscription is gone or disabled (dropped)."""
    notify = notify_ports(ports)
    if notify.deliveries is None:
        raise RuntimeError("this function has no delivery queue (WEBHOOK_DELIVERY_QUEUE_URL is not set)")
    now = now or utcnow()
    if message.not_before is not None and message.not_before - now > _EARLY_TOLERANCE:
        notify.deliveries.retry(message, math.ceil((message.not_before - now).total_seconds()))
        return Outcome.WAITING
    subscription = notify.subscriptions.get(message.tenant_id, message.subscription_id)
    made_again = subscription is not None and message.subscription_created_at not in (None, subscription.created_at)
    if subscription is None or made_again:
        # made again: deleted and made anew under its Idempotency-Key's id; the delivery was the one deleted's
        logger.info("subscription %s is gone; dropping delivery %s", message.subscription_id, message.webhook_id)
        return Outcome.DROPPED
    if subscription.status is SubscriptionStatus.DISABLED:
        announce_if_overdue(ports, subscription, now)
        logger.info("subscription %s is disabled; dropping delivery %s", message.subscription_id, message.webhook_id)
        return Outcome.DROPPED
    return signed_attempt(message, subscription, now)


def signed_attempt(message: WebhookDelivery, subscription: Subscription, now: datetime) -> Attempt:
    """The attempt of ``message`` to ``subscription`` (as read just now), signed with its secret at ``now``."""
    headers = signed_headers(subscription.secret, message.webhook_id, message.payload, now)
    return Attempt(message, subscription, subscription.url, message.payload.encode(), headers, now)


def send(ports: Ports, attempt: Attempt) -> HttpOutcome:
    """The POST and nothing else: no store, no queue, no metric, so it may run in any thread. It never raises
    (:meth:`spectra.notify.transport.WebhookTransport.post`)."""
    return attempt.context.copy().run(notify_ports(ports).transport.post, attempt.url, attempt.body, attempt.headers)


def send_all(ports: Ports, attempts: Sequence[Attempt]) -> list[HttpOutcome]:
    """The POSTs of a batch side by side (at most :data:`MAX_POSTS_AT_ONCE` at once), their answers in the order of
    ``attempts``. One after another, one tenant's receivers that time out (10 s each) would hold every delivery queued
    behind them in the batch, other tenants' too, by up to ten deadlines, and again on each retry; side by side a batch
    takes about its slowest POST.

    Only the POSTs go to threads: they are what waits, and they touch nothing but the network. Reading and writing
    the subscriptions, queueing the next attempts, the metrics and the function's own log lines stay in the
    handler's thread (:func:`prepare`, :func:`settle`): Powertools keeps an invocation's metrics and log keys per
    process on Lambda but per thread on the local stack (local/runner/functions.py), and handling whole records in
    threads would lose them there. The threads end with the call, so none outlives the invocation. A transport that
    raised, against its contract, would raise here once the others are done, failing the whole batch."""
    if len(attempts) <= 1:
        return [send(ports, attempt) for attempt in attempts]
    with ThreadPoolExecutor(max_workers=min(len(attempts), MAX_POSTS_AT_ONCE), thread_name_prefix="webhook") as pool:
        return list(pool.map(lambda attempt: send(ports, attempt), attempts))


def settle(ports: Ports, attempt: Attempt, result: HttpOutcome) -> Outcome:
    """What follows the POST's answer: the subscription's delivery state, then the next attempt later, the DLQ or
    disabling the subscription. The POST went out whatever happens here: a settle that raises fails the record, and
    its retry sends the delivery again (same ``webhook-id``; at least once)."""
    notify = notify_ports(ports)
    settings = ports.settings
    message, now = attempt.message, attempt.now
    # Every write after the attempt is to the subscription it was made for: one deleted while the attempt ran and
    # made again under its Idempotency-Key's id is another (an old URL's 410 would disable the new one)
    made_at = attempt.subscription.created_at
    if result.ok:
        notify.subscriptions.record_success(
            message.tenant_id, message.subscription_id, status=result.status or 200, at=now, made_at=made_at
        )
        return Outcome.DELIVERED

    error = result.error or f"HTTP {result.status}"
    logger.warning(
        "delivery %s to %s failed (attempt %d): %s",
        message.webhook_id,
        message.subscription_id,
        message.attempt,
        origins_only(error),
    )
    updated = notify.subscriptions.record_failure(
        message.tenant_id,
        message.subscription_id,
        status=result.status,
        error=error,
        at=now,
        made_at=made_at,
        run_gap=run_gap(settings),
    )
    if updated is None:
        return Outcome.DROPPED  # deleted (and perhaps made again under its key's id) while we were delivering
    failures = updated.delivery.consecutive_failures
    if result.gone:
        _disable(ports, updated, DisabledReason.GONE, "the endpoint answered 410 Gone", now)
        return Outcome.DISABLED
    threshold = settings.webhook_disable_after_failures
    failing_for = now - (updated.delivery.failing_since or now)
    if failures >= threshold and failing_for.total_seconds() >= settings.webhook_disable_after_seconds:
        disabled = _disable(
            ports,
            updated,
            DisabledReason.CONSECUTIVE_FAILURES,
            f"{failures} deliveries in a row failed; the last: {error}",
            now,
            failures_at_least=threshold,
        )
        if disabled or _stopped(ports, updated):
            return Outcome.DISABLED
        # a delivery that succeeded since this failure reset the count: the endpoint works, so retry as usual
    failed = message.model_copy(update={"last_error": error})
    if message.attempt >= settings.webhook_max_attempts:
        notify.deliveries.dead_letter(failed)
        return Outcome.DEAD_LETTERED
    delay = backoff_seconds(
        message.attempt,
        base=settings.webhook_retry_base_seconds,
        factor=settings.webhook_retry_factor,
        cap=settings.webhook_retry_max_delay_seconds,
    )
    notify.deliveries.retry(
        failed.model_copy(update={"attempt": message.attempt + 1, "not_before": now + timedelta(seconds=delay)}),
        delay,
    )
    return Outcome.RETRY_SCHEDULED


def _disable(
    ports: Ports,
    subscription: Subscription,
    reason: DisabledReason,
    message: str,
    now: datetime,
    *,
    failures_at_least: int | None = None,
) -> bool:
    """Whether this attempt disabled the subscription. With ``failures_at_least`` only while that many failures in a
    row still stand: the count read back from the failure can be stale by the time of the write."""
    notify = notify_ports(ports)
    disabled = notify.subscriptions.disable(
        subscription.tenant_id,
        subscription.subscription_id,
        reason=reason,
        message=message,
        at=now,
        failures_at_least=failures_at_least,
        made_at=subscription.created_at,  # that very subscription, not one made again under its id meanwhile
    )
    if disabled is None:  # another delivery disabled it first (and announces it), it was deleted, or it recovered
        return False
    logger.warning("subscription %s disabled: %s", subscription.subscription_id, origins_only(message))
    announce_disabled(ports, disabled)
    return True


def _stopped(ports: Ports, subscription: Subscription) -> bool:
    """Whether the subscription is disabled or gone (after a disable this attempt did not make)."""
    current = notify_ports(ports).subscriptions.get(subscription.tenant_id, subscription.subscription_id)
    return current is None or current.status is SubscriptionStatus.DISABLED


def announce_if_overdue(ports: Ports, subscription: Subscription, now: datetime) -> None:
    """Announce a disable the attempt that made it had :data:`DISABLE_ANNOUNCED_WITHIN` to announce, in case it did
    not (it died before the event, or the publish failed); once announced, nothing more."""
    if subscription.disabled_at is not None and now - subscription.disabled_at >= DISABLE_ANNOUNCED_WITHIN:
        announce_disabled(ports, subscription)


def announce_disabled(ports: Ports, subscription: Subscription) -> None:
    """Publish "Subscription Disabled" once: marked on the subscription after the publish, so a publish that failed
    is made again by this message's retry, or the next delivery that meets the disabled subscription once the
    attempt that disabled it is over (:data:`DISABLE_ANNOUNCED_WITHIN`; while it runs, it announces the disable
    itself, and a delivery meeting it then would say it a second time)."""
    if subscription.disabled_event_published or subscription.disabled_at is None:
        return
    detail = SubscriptionDisabledDetail(
        subscription_id=subscription.subscription_id,
        tenant_id=subscription.tenant_id,
        tenant_generation=subscription.tenant_generation,
        url=origin(subscription.url),  # the bus reaches other accounts' rules: no token in the path or query
        reason=(subscription.disabled_reason or DisabledReason.CONSECUTIVE_FAILURES).value,
        message=origins_only(subscription.disabled_message or ""),  # a redirect's target, say: its path too
        consecutive_failures=subscription.delivery.consecutive_failures,
        last_status=subscription.delivery.last_status,
        disabled_at=subscription.disabled_at,
    )
    ports.events.publish(SUBSCRIPTION_DISABLED, detail, resources=[subscription.subscription_id])
    store = notify_ports(ports).subscriptions
    # that very subscription: one made again under its id meanwhile has its own disabling to announce
    store.mark_disabled_event_published(
        subscription.tenant_id, subscription.subscription_id, made_at=subscription.created_at
    )
