"""Request and response bodies of the subscription routes (webhooks per tenant) and of a query's callback."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from spectra.notify.models import DeliveryState, DisabledReason, Subscription, SubscriptionKind, SubscriptionStatus


class CreateSubscription(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2048,
        description="Where deliveries are POSTed: an https:// URL whose host resolves to public addresses only.",
    )
    events: list[str] = Field(
        min_length=1,
        max_length=10,
        description='Event types (detail-types), e.g. "Job Completed", "Job Failed", "Bulk Job Completed", '
        '"Subscription Disabled".',
    )
    filter: dict[str, list[str]] | None = Field(
        default=None,
        description="Only events whose detail fields hold one of the listed values, e.g. "
        '{"status": ["FAILED"]} or {"operation": ["upsert"], "object": ["contacts"]}. Fields: status, state, '
        "operation, object, source, format, reason.",
    )


class SubscriptionView(BaseModel):
    id: str
    url: str
    events: list[str]
    filter: dict[str, list[str]]
    kind: SubscriptionKind
    job_id: str | None = None
    status: SubscriptionStatus
    created_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: DisabledReason | None = None
    disabled_message: str | None = None
    delivery: DeliveryState
    secret: str | None = Field(
        default=None, description="The signing secret (whsec_...): in the answer to POST only, never again."
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
    subscriptions: list[SubscriptionView]
    next_token: str | None = None


class CallbackView(BaseModel):
    """The callback of a query submitted with ``callback_url``: its deliveries are signed with ``secret`` (shown in
    this answer only), and ``GET /v1/subscriptions/{subscription_id}`` shows how they went."""

    subscription_id: str
    url: str
    secret: str
