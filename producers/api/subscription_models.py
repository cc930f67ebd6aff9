"""Request and response bodies of the subscription routes (webhooks per tenant) and of a query's callback."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from events import SUBSCRIBABLE_EVENT_TYPES
from spectra.notify.models import (
    FILTER_FIELDS,
    DeliveryState,
    DisabledReason,
    Subscription,
    SubscriptionKind,
    SubscriptionStatus,
)
from spectra.notify.service import MAX_FILTER_VALUE_LENGTH, MAX_FILTER_VALUES

_SUBSCRIPTION_ID = "sub_4fJ2kQ9xWc1mZ7rT"
_URL = "https://hooks.example.com/spectra"
_WHEN = "2026-07-01T12:00:00Z"


#: the closed set of event types the service checks (spectra.notify.service), published so a client binds an enum
_EVENT_TYPES = {"items": {"type": "string", "enum": list(SUBSCRIBABLE_EVENT_TYPES)}}


def _filter_bounds(schema: dict) -> None:
    """The filter's object branch with the fields and bounds the service checks (spectra.notify.service)."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "object":
            branch["propertyNames"] = {"enum": list(FILTER_FIELDS)}
            branch["additionalProperties"] = {
                "type": "array",
                "items": {"type": "string", "maxLength": MAX_FILTER_VALUE_LENGTH},
                "minItems": 1,
                "maxItems": MAX_FILTER_VALUES,
            }


class CreateSubscription(BaseModel):
    """A webhook for the caller's events."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2048,
        description="Where deliveries are POSTed: an https:// URL whose host resolves to public addresses only.",
        examples=[_URL],
    )
    events: list[str] = Field(
        min_length=1,
        max_length=10,
        description="Event types (detail-types), each named once or more (repeats are kept once).",
        examples=[["Job Completed", "Job Failed"]],
        json_schema_extra=_EVENT_TYPES,
    )
    filter: dict[str, list[str]] | None = Field(
        default=None,
        description="Only events whose detail fields hold one of the listed values, e.g. "
        '{"status": ["FAILED"]} or {"operation": ["upsert"], "object": ["contacts"]}. Fields: status, state, '
        "operation, object, source, format, reason. Each listed event type must be able to pass it (a 400 names a "
        "type whose detail lacks a field, or holds none of its values: status is a query job's, state a bulk job's).",
        examples=[{"format": ["csv"]}],
        json_schema_extra=_filter_bounds,
    )


class SubscriptionView(BaseModel):
    """A webhook subscription (or a query's callback) and how its deliveries went."""

    id: str = Field(description="The subscription's id.", examples=[_SUBSCRIPTION_ID])
    url: str = Field(description="Where deliveries are POSTed.", examples=[_URL])
    events: list[str] = Field(
        description="The event types delivered.",
        examples=[["Job Completed", "Job Failed"]],
        json_schema_extra=_EVENT_TYPES,
    )
    filter: dict[str, list[str]] = Field(
        description="Detail fields an event must match (empty: every event of the types).",
        examples=[{"format": ["csv"]}],
    )
    kind: SubscriptionKind = Field(description="webhook (standing) or callback (one query's).", examples=["webhook"])
    job_id: str | None = Field(default=None, description="The query of a callback.", examples=[None])
    status: SubscriptionStatus = Field(description="active, or disabled (nothing is delivered).", examples=["active"])
    created_at: datetime = Field(description="When it was created.", examples=[_WHEN])
    disabled_at: datetime | None = Field(default=None, description="When it was disabled.", examples=[None])
    disabled_reason: DisabledReason | None = Field(default=None, description="Why it was disabled.", examples=[None])
    disabled_message: str | None = Field(
        default=None, description="The last failure before it was disabled.", examples=[None]
    )
    delivery: DeliveryState = Field(
        description="Counts and the last attempt's outcome.",
        examples=[{"last_status": 200, "consecutive_failures": 0, "delivered": 12, "failed_attempts": 1}],
    )
    secret: str | None = Field(
        default=None,
        description="The signing secret (whsec_...): in the answer to POST only, and to a repeat of that POST with"
        " the same Idempotency-Key (a client whose answer was lost has no other way to learn it); never in a GET or a"
        " list.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )

    @classmethod
    def of(cls, subscription: Subscription, *, with_secret: bool = False) -> SubscriptionView:
        return cls(
            id=subscription.subscription_id,
            url=subscription.url,
            events=subscription.events,
            filter=subscription.filter,
            kind=subscription.kind,
            job_id=subscription.job_id,
            status=subscription.status,
            created_at=subscription.created_at,
            disabled_at=subscription.disabled_at,
            disabled_reason=subscription.disabled_reason,
            disabled_message=subscription.disabled_message,
            delivery=subscription.delivery,
            secret=subscription.secret if with_secret else None,
        )


class SubscriptionList(BaseModel):
    """One page of the caller's subscriptions."""

    subscriptions: list[SubscriptionView] = Field(description="The subscriptions of this page.", examples=[[]])
    next_token: str | None = Field(
        default=None, description="Pass it back for the next page; null after the last.", examples=[None]
    )


class CallbackView(BaseModel):
    """The callback of a query submitted with ``callback_url``: its deliveries are signed with ``secret`` (shown in
    this answer, and again to a repeat of the request with the same Idempotency-Key, never elsewhere), and
    ``GET /v1/subscriptions/{subscription_id}`` shows how they went."""

    subscription_id: str = Field(
        description="The callback's subscription id (cbk_ and the job id).", examples=["cbk_j_9Qe3rWm0pX8sKc2bT5vYhA"]
    )
    url: str = Field(description="Where the job's end is POSTed.", examples=[_URL])
    secret: str = Field(
        description="The signing secret (whsec_...), shown in this answer (and to a repeat of the request with the "
        "same Idempotency-Key) only.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )
