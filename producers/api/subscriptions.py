"""Webhook subscriptions per tenant (/v1/subscriptions). Every route is one call into ``spectra.notify.service``; the
app (producers/api/app.py) includes this router and maps errors in one place."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from producers.api.links import api_path
from producers.api.models import ErrorResponse, IdempotencyKey, response_links
from producers.api.subscription_models import CreateSubscription, SubscriptionList, SubscriptionView
from spectra.notify import service
from spectra.ports import Budget, get_ports
from spectra.tenants import Caller
from spectra.tokens import MAX_TOKEN_CHARS

router = Router()

_ERROR = {"content": {"application/json": {"model": ErrorResponse}}}
_INVALID = {400: {"description": "Invalid request: fields, page token or subscription id", **_ERROR}}
_NOT_FOUND = {404: {"description": "No such subscription for this tenant", **_ERROR}}
_LOCATION = {"Location": {"description": "The subscription's URL", "schema": {"type": "string"}}}
SubscriptionId = Annotated[str, Path(min_length=1, max_length=128)]


def _ok(description: str, model) -> dict:
    return {"description": description, "content": {"application/json": {"model": model}}}


def _caller() -> Caller:
    return Caller.from_authorizer_context(router.current_event.request_context.authorizer or {})


@router.post(
    "/v1/subscriptions",
    status_code=201,
    responses={
        201: {
            **_ok("Created; the answer holds the signing secret, shown once", SubscriptionView),
            "headers": _LOCATION,
            "links": response_links(
                "subscription_id",
                "id",
                {
                    "GetSubscription": "get_subscription_v1_subscriptions__subscription_id__get",
                    "DeleteSubscription": "delete_subscription_v1_subscriptions__subscription_id__delete",
                },
            ),
        },
        200: {
            **_ok("The subscription this Idempotency-Key already created, its secret included", SubscriptionView),
            "headers": _LOCATION,  # sent with the repeat's answer too
        },
        400: {"description": "Invalid request, or a URL webhooks may not be sent to (url_refused)", **_ERROR},
        409: {
            "description": "The tenant has as many subscriptions as it may, or the Idempotency-Key was used for a "
            "different request",
            **_ERROR,
        },
    },
    tags=["subscriptions"],
    summary="Subscribe a webhook",
    description="POST the caller's job events of the listed types (optionally filtered on their detail fields) to "
    "`url`, signed by the Standard Webhooks convention with the secret in this answer.",
)
def create_subscription(
    request: Annotated[CreateSubscription, Body()],
    idempotency_key: IdempotencyKey = None,
) -> Response[SubscriptionView]:
    subscription, created = service.create_subscription(
        get_ports(Budget.CLIENT),
        _caller(),
        url=request.url,
        events=request.events,
        filter_=request.filter,
        idempotency_key=idempotency_key,
    )
    return Response(
        status_code=HTTPStatus.CREATED if created else HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=SubscriptionView.of(subscription, with_secret=True),
        headers={"Location": api_path(f"/v1/subscriptions/{subscription.subscription_id}")},
    )


@router.get(
    "/v1/subscriptions",
    responses={200: _ok("One page of the caller's subscriptions", SubscriptionList), **_INVALID},
    tags=["subscriptions"],
    summary="List webhook subscriptions",
    description="The caller's webhook subscriptions; follow `next_token` until it is null.",
)
def list_subscriptions(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(min_length=1, max_length=MAX_TOKEN_CHARS)] = None,
) -> SubscriptionList:
    page = service.list_subscriptions(get_ports(Budget.CLIENT), _caller(), limit=limit, next_token=next_token)
    return SubscriptionList(
        subscriptions=[SubscriptionView.of(s) for s in page.subscriptions], next_token=page.next_token
    )


@router.get(
    "/v1/subscriptions/<subscription_id>",
    responses={200: _ok("The subscription and how its deliveries went", SubscriptionView), **_INVALID, **_NOT_FOUND},
    tags=["subscriptions"],
    summary="Get a webhook subscription",
    description="The subscription, whether it is enabled, and its last deliveries' outcome.",
)
def get_subscription(subscription_id: SubscriptionId) -> SubscriptionView:
    return SubscriptionView.of(service.get_subscription(get_ports(Budget.CLIENT), _caller(), subscription_id))


@router.delete(
    "/v1/subscriptions/<subscription_id>",
    status_code=204,
    responses={204: {"description": "Deleted; nothing more is delivered to it"}, **_INVALID, **_NOT_FOUND},
    tags=["subscriptions"],
    summary="Unsubscribe a webhook",
    description="Deliveries already queued for it are dropped.",
)
def delete_subscription(subscription_id: SubscriptionId) -> Response[None]:
    service.delete_subscription(get_ports(Budget.CLIENT), _caller(), subscription_id)
    return Response(status_code=HTTPStatus.NO_CONTENT, content_type=content_types.APPLICATION_JSON, body=None)
