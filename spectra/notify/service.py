"""Subscriptions as the API sees them: create (the secret is shown once), list, get, delete; and the callback of one
query, recorded before its job so no completion can outrun it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

from events import SUBSCRIBABLE_EVENT_TYPES
from spectra.errors import Conflict, InvalidRequest, InvalidToken, NotFound, echoed
from spectra.jobs import utcnow
from spectra.notify.models import (
    CALLBACK_EVENT_TYPES,
    FILTER_FIELDS,
    FILTERABLE,
    SUBSCRIPTION_PREFIX,
    Subscription,
    SubscriptionKind,
    callback_id,
    is_table_name,
    new_subscription_id,
)
from spectra.notify.signing import new_secret
from spectra.ports import NotifyPorts, Ports
from spectra.tenants import Caller, same_generation

MAX_FILTER_VALUES = 20
#: The filter is stored on the subscription's item, which DynamoDB caps at 400 KB, while the API takes a 1 MiB body:
#: these bounds keep it a small part of the item (and a 400, not a failed write). A value is compared with a detail
#: field (a status, a format, a bulk job's ``schema.table``: at most 255 characters), so 256 is room enough.
MAX_FILTER_VALUE_LENGTH = 256
MAX_FILTER_BYTES = 16 * 1024  # the whole filter, as JSON
#: An error names the first ``MAX_NAMES_ECHOED`` of what it refused (spectra.errors.echoed). A 1 MiB body of bad
#: names would otherwise come back whole in the answer and the logs.
MAX_NAMES_ECHOED = 10


def _names(values: list[str]) -> list[str]:
    return echoed(values, most=MAX_NAMES_ECHOED)


def notify_ports(ports: Ports) -> NotifyPorts:
    if ports.notify is None:
        raise RuntimeError("this function has no notification resources (SUBSCRIPTIONS_TABLE is not set)")
    return ports.notify


def _check_events(events: list[str]) -> list[str]:
    unknown = [e for e in events if e not in SUBSCRIBABLE_EVENT_TYPES]
    if unknown or not events:
        raise InvalidRequest(
            "events must list one or more of the project's event types",
            details={"unknown": _names(unknown), "allowed": list(SUBSCRIBABLE_EVENT_TYPES)},
        )
    return list(dict.fromkeys(events))


def _check_filter(filter_: dict[str, list[str]] | None) -> dict[str, list[str]]:
    filter_ = filter_ or {}
    unknown = sorted(set(filter_) - set(FILTER_FIELDS))
    if unknown:
        raise InvalidRequest(
            "filter may test only these fields", details={"unknown": _names(unknown), "allowed": list(FILTER_FIELDS)}
        )
    for field, values in filter_.items():
        if not values or len(values) > MAX_FILTER_VALUES:
            raise InvalidRequest(f"filter.{field} must list 1 to {MAX_FILTER_VALUES} accepted values")
        if any(len(value) > MAX_FILTER_VALUE_LENGTH for value in values):
            raise InvalidRequest(
                f"filter.{field} values must be at most {MAX_FILTER_VALUE_LENGTH} characters",
                details={"field": field, "max_length": MAX_FILTER_VALUE_LENGTH},
            )
    size = len(json.dumps(filter_).encode())
    if size > MAX_FILTER_BYTES:
        raise InvalidRequest(
            f"filter is {size} bytes as JSON; at most {MAX_FILTER_BYTES} are kept",
            details={"size": size, "max_size": MAX_FILTER_BYTES},
        )
    return {field: list(dict.fromkeys(values)) for field, values in filter_.items()}


def _check_filter_lets_through(filter_: dict[str, list[str]], event_type: str) -> None:
    """A 400 when ``filter_`` would keep every ``event_type`` event from the subscription: a field its detail lacks
    (``status`` on a bulk job, whose end is its ``state``), or no value the field can hold there (``completed`` for
    ``COMPLETED``). Stored, it would be answered 201, and the tenant would never hear of those events."""
    filterable = FILTERABLE[event_type]
    for field, values in filter_.items():
        if field not in filterable:
            raise InvalidRequest(
                f"filter.{field} is not a field of {event_type} events, so none would be delivered "
                "(subscribe to them without it, or in a subscription of their own)",
                details={"field": field, "event_type": event_type, "fields": list(filterable)},
            )
        held = filterable[field]
        if held is not None and not set(values) & set(held):
            raise InvalidRequest(
                f"filter.{field} lists no value a {event_type} event holds, so none would be delivered",
                details={"field": field, "event_type": event_type, "values": list(held)},
            )


def _check_table_names(filter_: dict[str, list[str]]) -> None:
    """A 400 for an ``object`` value that is no table name: it compares as the warehouse folds table names
    (:func:`spectra.notify.models.table_name`), so no bulk job's object could match it."""
    if odd := [value for value in filter_.get("object", []) if not is_table_name(value)]:
        raise InvalidRequest(
            "filter.object values are table names (table or schema.table, compared as the warehouse folds them),"
            " so no bulk job's object could match these",
            details={"field": "object", "values": _names(odd)},
        )


def create_subscription(
    ports: Ports,
    caller: Caller,
    *,
    url: str,
    events: list[str],
    filter_: dict[str, list[str]] | None = None,
    idempotency_key: str | None = None,
) -> tuple[Subscription, bool]:
    """A new active subscription, and True; its ``secret`` is returned here and never again, but to a repeat.

    ``idempotency_key`` names the subscription (:meth:`~spectra.tenants.Caller.keyed_id`): while it exists, the same
    key with the same ``url``, ``events`` and ``filter`` answers it, secret included, and False (a client whose first
    answer was lost has no other way to learn the secret); with anything else, a 409. The repeat is answered before
    the URL's check and the limit's, as a query's is (a receiver's name that stopped resolving, or a tenant at its
    limit, or a filter refused since, would otherwise hide the subscription the first request made). Once it is
    deleted, the key makes a new one. A tenant deleted since the authorizer vouched for the caller stores nothing:
    :class:`~spectra.errors.TenantGone`, the 401 its key gets from then on."""
    notify = notify_ports(ports)
    events = _check_events(events)
    filter_ = _check_filter(filter_)
    subscription_id = (
        new_subscription_id() if idempotency_key is None else caller.keyed_id(SUBSCRIPTION_PREFIX, idempotency_key)
    )
    limit = ports.settings.webhook_max_subscriptions
    if idempotency_key is not None and (first := notify.subscriptions.get(caller.tenant_id, subscription_id)):
        return _repeat(notify, caller, first, idempotency_key, limit, url=url, events=events, filter_=filter_), False
    for event_type in events:  # after the repeat's answer: a subscription stored before this check keeps its key
        _check_filter_lets_through(filter_, event_type)
    _check_table_names(filter_)  # the same
    notify.urls.endpoint(url)  # UrlRefused (400) for anything but https on a public address
    if _standing(notify, caller) >= limit:
        raise Conflict(f"a tenant may have {limit} subscriptions; delete one first", details={"limit": limit})
    subscription = Subscription(
        subscription_id=subscription_id,
        tenant_id=caller.tenant_id,
        tenant_generation=caller.generation,
        url=url,
        events=events,
        filter=filter_,
        secret=new_secret(),
        created_at=utcnow(),
    )
    # stored only while the caller's tenant is still this generation's: a deleted tenant's key passes the cached
    # authorizer for a while, and delete_tenant ends only the subscriptions stored before it (TenantGone, 401)
    tenant_check = ports.tenants.current_check(caller.tenant_id, caller.generation)
    try:
        notify.subscriptions.create(subscription, tenant_check=tenant_check)
    except Conflict:
        if idempotency_key is None:
            raise
        # a request with the same key made it meanwhile
        first = notify.subscriptions.get(caller.tenant_id, subscription_id)
        if first is None:  # and it is gone again (over the limit, or deleted): this request made nothing
            raise Conflict(_CHANGED_MEANWHILE) from None
        return _repeat(notify, caller, first, idempotency_key, limit, url=url, events=events, filter_=filter_), False
    # Requests at once all pass the check above before any of them is stored: count again, consistently, now that
    # this one is. Over the limit, this one goes (the others that saw it too go as well: their clients retry), so a
    # subscription once confirmed to its client is never taken back and the limit holds. Unless a repeat of this
    # request (its Idempotency-Key) was answered it meanwhile: that client has it, so it stays, and this request is
    # answered it too. The repeat marks it only when its own count, made after this one's put, found room for it,
    # so the limit holds then too (_repeat).
    if _standing(notify, caller, consistent=True) > limit and notify.subscriptions.withdraw(
        caller.tenant_id, subscription.subscription_id
    ):
        raise Conflict(f"a tenant may have {limit} subscriptions; delete one first", details={"limit": limit})
    return subscription, True


_CHANGED_MEANWHILE = "a request with this Idempotency-Key changed the subscription meanwhile; retry it"


#: Past this age a subscription's creating request has ended (the API function's Timeout in template.yaml, 30 s, with
#: a margin): nothing withdraws it any more, and a repeat answers it as it is.
CREATOR_DONE_AFTER = timedelta(seconds=60)


def _repeat(
    notify: NotifyPorts,
    caller: Caller,
    first: Subscription,
    idempotency_key: str,
    limit: int,
    *,
    url: str,
    events: list[str],
    filter_: dict[str, list[str]],
) -> Subscription:
    """``first``, which the request with the same key made, when this request is the same one. While that request may
    still withdraw it (over the limit), it is marked as answered first, so it never is once a client holds it; and
    only if a consistent count, made after its put, finds room for it, else this request is told to retry: repeats
    answered whatever the count would keep every subscription of a burst of hedged creates, the tenant over its limit
    by as many. If it was withdrawn already, this request is told to retry (and then makes it
    anew)."""
    if (first.url, first.events, first.filter) != (url, events, filter_):
        raise Conflict(
            "Idempotency-Key was already used for a different request",
            details={"idempotency_key": idempotency_key, "subscription_id": first.subscription_id},
        )
    if utcnow() - first.created_at > CREATOR_DONE_AFTER:
        return first
    if _standing(notify, caller, consistent=True) > limit:
        raise Conflict(_CHANGED_MEANWHILE)  # its creator withdraws it, or a request of its tenant's burst does
    answered = notify.subscriptions.answer(first.tenant_id, first.subscription_id)
    if answered is None:
        raise Conflict(_CHANGED_MEANWHILE)
    return answered


def _standing(notify, caller: Caller, *, consistent: bool = False) -> int:
    """How many subscriptions the caller has; a predecessor's (the tenant id deleted and created again) are not the
    caller's and do not count."""
    standing = notify.subscriptions.webhooks_for_tenant(caller.tenant_id, consistent=consistent)
    return sum(same_generation(caller.generation, s.tenant_generation) for s in standing)


@dataclass(frozen=True)
class SubscriptionListing:
    subscriptions: list[Subscription]
    next_token: str | None


def list_subscriptions(ports: Ports, caller: Caller, *, limit: int, next_token: str | None) -> SubscriptionListing:
    """One page of the caller's subscriptions. ``next_token`` is signed for this tenant and page size (as the jobs
    listing's, spectra/tokens.py): any other token is refused before the store is asked anything."""
    listing = {"listing": "subscriptions", "tenant": caller.tenant_id, "limit": limit}
    after = None
    if next_token is not None:
        payload = ports.page_tokens.decode(next_token, bound_to=listing)
        after = payload.get("subscription_id") if set(payload) == {"subscription_id"} else None
        if not (isinstance(after, str) and after.startswith(SUBSCRIPTION_PREFIX) and len(after) <= 128):
            raise InvalidToken("next_token is not valid for this listing; start again without it")
    page = notify_ports(ports).subscriptions.list_for_tenant(caller.tenant_id, limit=limit, after=after)
    token = None
    if page.resume_after:
        token = ports.page_tokens.encode({"subscription_id": page.resume_after}, bound_to=listing)
    # not a predecessor's (the tenant id deleted and created again)
    mine = [s for s in page.subscriptions if same_generation(caller.generation, s.tenant_generation)]
    return SubscriptionListing(subscriptions=mine, next_token=token)


def get_subscription(ports: Ports, caller: Caller, subscription_id: str) -> Subscription:
    found = notify_ports(ports).subscriptions.get(caller.tenant_id, subscription_id)
    if found is None or not same_generation(caller.generation, found.tenant_generation):
        raise NotFound(f"subscription {subscription_id} not found")
    return found


def delete_subscription(ports: Ports, caller: Caller, subscription_id: str) -> None:
    get_subscription(ports, caller, subscription_id)  # the caller's own (its tenant's, this generation's), or 404
    if not notify_ports(ports).subscriptions.delete(caller.tenant_id, subscription_id):
        raise NotFound(f"subscription {subscription_id} not found")


# -- per-query callbacks ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Callback:
    """A query's ``callback_url`` with the secret its deliveries will be signed with (drawn now, so the API can
    return it with the job). Its URL is checked (:func:`check_callback`) when a job is made with it."""

    url: str
    secret: str


def new_callback(url: str) -> Callback:
    return Callback(url=url, secret=new_secret())


def check_callback(ports: Ports, callback: Callback) -> None:
    """Refuse (:class:`UrlRefused`) a callback whose URL a subscription could not have, its name resolved now."""
    notify_ports(ports).urls.endpoint(callback.url)


#: The Data API runs a statement for at most 24 hours, and keeps it, its result with it, 24 hours: a query job whose
#: result could not be collected by then is ended by the reconciler (``statement_lost``), its results given up.
DATA_API_HOURS = timedelta(hours=24)


def callback_life(settings) -> timedelta:
    """How long a query's callback is kept: at least ``callback_ttl_seconds``, and past the last delivery its job's
    end can need. A job ends at the latest ``pending_max_age_seconds`` after it was made (queued that long, it is
    given up) plus its statement's 24 hours plus the 24 its result is kept (:data:`DATA_API_HOURS`); then its end is
    tried ``webhook_max_attempts`` times, each wait at most the retry cap; and a day for the queues' redeliveries and
    hops. At the template's most (50 attempts, 3 h cap) that is 9 days and 4 hours: the 7 days alone would drop the last
    retries, ``SubscriptionStore.get`` reading the callback as gone from its expiry."""
    longest_job = timedelta(seconds=settings.pending_max_age_seconds) + 2 * DATA_API_HOURS
    retries = (settings.webhook_max_attempts - 1) * timedelta(seconds=settings.webhook_retry_max_delay_seconds)
    return max(timedelta(seconds=settings.callback_ttl_seconds), longest_job + retries + timedelta(days=1))


def register_callback(ports: Ports, callback: Callback, *, caller: Caller, job_id: str) -> Subscription:
    """Record the callback of ``job_id`` (before the job exists, so its end cannot outrun it), under the caller's
    generation like any subscription: a tenant id deleted and created again neither reads its predecessor's callbacks
    nor hears of them (a "Subscription Disabled" event goes to the generation it names)."""
    subscription = Subscription(
        subscription_id=callback_id(job_id),
        tenant_id=caller.tenant_id,
        tenant_generation=caller.generation,
        url=callback.url,
        events=list(CALLBACK_EVENT_TYPES),
        secret=callback.secret,
        kind=SubscriptionKind.CALLBACK,
        job_id=job_id,
        created_at=utcnow(),
    )
    expires_at = subscription.created_at + callback_life(ports.settings)
    return notify_ports(ports).subscriptions.create(subscription, expires_at=expires_at)


def job_callback(ports: Ports, *, tenant_id: str, job_id: str) -> Subscription | None:
    """The callback recorded with ``job_id``, if it has one (and it has not expired): what an idempotent repeat of
    the request that made the job answers, so a client whose first answer was lost still learns its secret."""
    found = notify_ports(ports).subscriptions.get(tenant_id, callback_id(job_id))
    return found if found is not None and found.kind is SubscriptionKind.CALLBACK else None


def discard_callback(ports: Ports, *, tenant_id: str, job_id: str) -> None:
    """The callback of a job id that was never used (the request was an idempotent repeat of an earlier one)."""
    notify_ports(ports).subscriptions.delete(tenant_id, callback_id(job_id))
