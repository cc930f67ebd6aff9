"""Webhook subscriptions: what a tenant subscribed to, where deliveries go, and how the last ones went."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

from events import (
    BULK_EVENT_DETAIL_TYPES,
    JOB_EVENT_DETAIL_TYPES,
    SUBSCRIPTION_DISABLED,
    BulkJobEventDetail,
    JobEventDetail,
    ProjectEvent,
    SubscriptionDisabledDetail,
    WebhookDelivery,
)
from spectra.bulk.models import BulkOperation, JobSource, split_object

#: Standing subscriptions and per-query callbacks share the table; the id prefix tells them apart.
SUBSCRIPTION_PREFIX = "sub_"
CALLBACK_PREFIX = "cbk_"

#: The detail fields a filter may test, each against a list of accepted values (EventBridge's habit): ``status`` of
#: query jobs, ``state``, ``operation``, ``object`` and ``source`` (api | s3) of bulk jobs, ``format`` of query jobs,
#: ``reason`` of "Subscription Disabled".
FILTER_FIELDS = ("status", "state", "operation", "object", "source", "format", "reason")


def _values(annotation: Any) -> tuple[str, ...] | None:
    """The values a detail field of this type can hold (a ``Literal``'s or an enum's), or None: any string."""
    if get_origin(annotation) is Literal:
        return tuple(str(getattr(value, "value", value)) for value in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return tuple(str(member.value) for member in annotation)
    return None


def _filterable(model: type[BaseModel], **one_value: str) -> dict[str, tuple[str, ...] | None]:
    held = model.model_fields
    fields = {name: _values(held[name].annotation) for name in FILTER_FIELDS if name in held}
    return fields | {name: (value,) for name, value in one_value.items()}


#: Per detail-type, the filter fields its detail holds and the values each can take (None: any string; ``status`` and
#: ``state`` are one value per type). A filter on a field a listed type lacks, or without a value it can hold, would
#: keep every event of that type from the subscription, which then never hears of them: such a filter is refused.
FILTERABLE: dict[str, dict[str, tuple[str, ...] | None]] = {
    **{kind: _filterable(JobEventDetail, status=status.value) for status, kind in JOB_EVENT_DETAIL_TYPES.items()},
    # a bulk event's operation and source are plain strings in the published contract, but hold these values only
    **{
        kind: _filterable(BulkJobEventDetail, state=state)
        | {"operation": _values(BulkOperation), "source": _values(JobSource)}
        for state, kind in BULK_EVENT_DETAIL_TYPES.items()
    },
    SUBSCRIPTION_DISABLED: _filterable(SubscriptionDisabledDetail),
}

#: What a per-query callback receives: the end of its job.
CALLBACK_EVENT_TYPES = tuple(JOB_EVENT_DETAIL_TYPES.values())


class SubscriptionStatus(StrEnum):
    """Whether deliveries are made (active) or stopped (disabled)."""

    ACTIVE = "active"
    DISABLED = "disabled"


class SubscriptionKind(StrEnum):
    """A standing webhook subscription, or the callback of one query."""

    WEBHOOK = "webhook"  # POST /v1/subscriptions: standing, for every matching event of the tenant
    CALLBACK = "callback"  # callback_url of one query: the end of that job only


class DisabledReason(StrEnum):
    """Why a subscription was disabled: too many failed deliveries in a row, or the endpoint answered 410 Gone."""

    CONSECUTIVE_FAILURES = "consecutive_failures"
    GONE = "gone"  # the endpoint answered 410 Gone: it asked us to stop


class DeliveryState(BaseModel):
    """How deliveries to a subscription went. ``last_status`` is the HTTP status of the last attempt (None when
    there was no answer: timeout, refused connection, an address the SSRF rules refuse)."""

    model_config = ConfigDict(frozen=True)

    last_status: int | None = Field(
        default=None, description="The HTTP status the last attempt got (null: no answer).", examples=[200]
    )
    last_error: str | None = Field(
        default=None, description="Why the last attempt failed, if it did.", examples=["timed out after 10 s"]
    )
    last_attempt_at: datetime | None = Field(
        default=None, description="When the last attempt was made.", examples=["2026-07-01T12:00:01Z"]
    )
    last_success_at: datetime | None = Field(
        default=None, description="When a delivery last succeeded.", examples=["2026-07-01T12:00:01Z"]
    )
    consecutive_failures: int = Field(default=0, description="Failed attempts since the last success.", examples=[0])
    failing_since: datetime | None = Field(
        default=None,
        description="When the failed attempts in a row began (null: the last attempt succeeded, or none was made).",
        examples=[None],
    )
    delivered: int = Field(default=0, description="Deliveries that succeeded.", examples=[12])
    failed_attempts: int = Field(default=0, description="Attempts that failed, in all.", examples=[1])


class Subscription(BaseModel):
    model_config = ConfigDict(frozen=True)

    subscription_id: str
    tenant_id: str
    #: the tenant's generation when it subscribed (spectra/tenants.py): a tenant deleted and created again under the
    #: same id is another tenant, and its predecessor's subscriptions neither see nor receive its events
    tenant_generation: str | None = None
    url: str
    events: list[str]
    filter: dict[str, list[str]] = Field(default_factory=dict)
    #: the Standard Webhooks signing secret (``whsec_`` + base64); shown to the tenant once, when created
    secret: str
    kind: SubscriptionKind = SubscriptionKind.WEBHOOK
    #: the job of a callback
    job_id: str | None = None
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    created_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: DisabledReason | None = None
    disabled_message: str | None = None
    disabled_event_published: bool = False
    delivery: DeliveryState = Field(default_factory=DeliveryState)

    def accepts(self, event_type: str, detail: dict[str, Any]) -> bool:
        """Whether an event of ``event_type`` with ``detail`` goes to this subscription (it is active, asked for
        the type, and every filtered field holds one of the accepted values)."""
        if self.status is not SubscriptionStatus.ACTIVE or event_type not in self.events:
            return False
        if self.kind is SubscriptionKind.CALLBACK and detail.get("job_id") != self.job_id:
            return False
        for field, accepted in self.filter.items():
            value = detail.get(field)
            if value is None:
                return False
            if field == "object" and table_name(str(value)) in {table_name(name) for name in accepted}:
                continue
            if str(value) not in accepted:
                return False
        return True


def table_name(name: str) -> str:
    """A bulk job's ``object`` as the table it names (``schema.table``, folded as the warehouse folds unquoted
    names), so that an ``object`` filter of ``contacts`` takes the jobs made as ``Contacts`` or ``public.contacts``:
    the API keeps the name as the tenant typed it, the S3 drop lower-cased, and all three load one table. A name
    that is no table name is itself."""
    return ".".join(split_object(name)) if is_table_name(name) else name


def is_table_name(name: str) -> bool:
    try:
        split_object(name)
    except ValueError:
        return False
    return True


def new_subscription_id() -> str:
    return SUBSCRIPTION_PREFIX + secrets.token_urlsafe(16)


def callback_id(job_id: str) -> str:
    """A query's callback is found from its job id alone: no index, one GetItem per job event."""
    return CALLBACK_PREFIX + job_id


def event_key(event: ProjectEvent) -> str:
    """What identifies the event itself rather than one copy of it: its resource (the job or subscription id; each
    has one event of a type) when it names one, else EventBridge's id. A job whose event was published twice (a
    retry after a lost answer) therefore gets one ``webhook-id``. A subscription can be disabled more than once: one
    deleted and made again under its Idempotency-Key's id is the same id, so its disabling's time is part of the key
    (every copy of one disabling carries the same ``disabled_at``). So can a bulk job's id end more than once: a
    keyed job's id is its key's, and the key used again 30 days on makes a new job under it (README), whose "Bulk
    Job Completed" would otherwise have the first job's ``webhook-id``, and receivers deduplicating by it would drop
    it: its making's time is part of the key (every copy of one job's event carries its ``created_at``)."""
    if not event.resources:
        return event.id
    if event.detail_type == SUBSCRIPTION_DISABLED:
        again = event.detail.get("disabled_at")
    elif event.detail_type in _BULK_TYPES:
        again = event.detail.get("created_at")
    else:
        again = None  # a query job's id is never used again
    return f"{event.resources[0]}|{again}" if again else event.resources[0]


_BULK_TYPES = frozenset(BULK_EVENT_DETAIL_TYPES.values())


def webhook_id(subscription_id: str, event_type: str, key: str) -> str:
    """The ``webhook-id`` of one event for one subscription: the same for every attempt and every copy."""
    digest = hashlib.sha256(f"{subscription_id}|{event_type}|{key}".encode()).digest()
    return "msg_" + base64.b32encode(digest).decode().rstrip("=")[:26]


def webhook_payload(event: ProjectEvent) -> str:
    """The body POSTed, in the Standard Webhooks shape: ``type``, ``timestamp`` and the event's detail as ``data``."""
    body = {"type": event.detail_type, "timestamp": event.time.isoformat().replace("+00:00", "Z"), "data": event.detail}
    return json.dumps(body, separators=(",", ":"), default=str)


def delivery_for(subscription: Subscription, event: ProjectEvent) -> WebhookDelivery:
    return WebhookDelivery(
        webhook_id=webhook_id(subscription.subscription_id, event.detail_type, event_key(event)),
        tenant_id=subscription.tenant_id,
        subscription_id=subscription.subscription_id,
        event_type=event.detail_type,
        payload=webhook_payload(event),
        subscription_created_at=subscription.created_at,
    )
