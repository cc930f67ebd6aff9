"""The subscription store port: tenants' webhook subscriptions (and per-query callbacks) in DynamoDB.

Table layout (template.yaml ``SubscriptionsTable``, a table of its own: its items change on every delivery, and
they are read per event, not per request as tenant records are):

* key (``tenant_id``, ``subscription_id``): a tenant's subscriptions are one partition, so the notifier reads them
  with one Query per event and another tenant's subscription is simply not found (404, never 403).
* ``sub_...`` ids are standing subscriptions; ``cbk_<job id>`` is the callback of one query, found by a GetItem on
  its job id and expiring through the ``expires_at`` TTL: gone to every reader from then
  (:func:`spectra.dynamo.expired`), not only once the TTL deletes it days later.
* Delivery state (``last_status``, ``last_error``, ``consecutive_failures``...) lives on the item, updated with
  atomic counters, so concurrent deliveries to one subscription do not lose counts.
* A deleted tenant's standing subscriptions get an ``expires_at`` too, :data:`KEPT_AFTER_TENANT_DELETED` after the
  delete (:meth:`spectra.tenants.TenantDirectory.delete_tenant`): the TTL then removes them, signing secrets and all
  (:meth:`SubscriptionStore.get` finds them gone from then too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from pydantic import TypeAdapter

from spectra import job_store
from spectra.bulk import store as bulk_store
from spectra.dynamo import PASSING_REASONS, expired, from_item, json_ready, plain, to_item, unexpired
from spectra.errors import Conflict, TenantGone, Unavailable
from spectra.jobs import utcnow
from spectra.notify.models import (
    SUBSCRIPTION_PREFIX,
    DeliveryState,
    DisabledReason,
    Subscription,
    SubscriptionStatus,
)
from spectra.settings import WEBHOOK_MAX_ATTEMPTS_MOST, WEBHOOK_RETRY_MAX_DELAY_SECONDS

_DELIVERY_FIELDS = tuple(DeliveryState.model_fields)
#: Writes of one deleted tenant's subscription's ``expires_at`` against deliveries writing its state at the same time,
#: and of a new subscription against writes of its tenant's record
_TRANSACT_TRIES = 4

#: How long a deleted tenant's standing subscriptions stay before the table's TTL removes them, their signing secrets
#: with them. Not at once: the jobs it left queued or running still end, and their events still go to its own
#: subscriptions, retries included (README, "Keys die with their tenant"). Not for ever either: nobody sees them (a
#: tenant made again under the id is another generation) and each holds a secret. No job outlives its record
#: (``JOB_TTL``, 30 days from its creation, query and bulk jobs alike; the longest a job can actually take, a bulk job
#: left Open until its batches expire and then loaded, is about half that), so none of the tenant's ends later than
#: that after the delete; the delivery of its end is then tried at most WebhookMaxAttempts' most times, each wait at
#: most the retry cap (6 days at the template's most); and a day for the queues' own redeliveries and hops. A delivery
#: redriven from the delivery queue's DLQ after that finds its subscription gone, and is dropped.
KEPT_AFTER_TENANT_DELETED = (
    max(job_store.JOB_TTL, bulk_store.JOB_TTL)
    + (WEBHOOK_MAX_ATTEMPTS_MOST - 1) * timedelta(seconds=WEBHOOK_RETRY_MAX_DELAY_SECONDS)
    + timedelta(days=1)
)
_DATETIME = TypeAdapter(datetime)


@dataclass(frozen=True)
class SubscriptionPage:
    subscriptions: list[Subscription]
    resume_after: str | None  # the last id of this page when there may be more


def _to_subscription(item: dict[str, Any]) -> Subscription:
    values = plain(from_item(item))
    values.pop("expires_at", None)
    values.pop("answered", None)  # SubscriptionStore.answer's mark, for the store only
    delivery = {name: values.pop(name) for name in _DELIVERY_FIELDS if name in values}
    return Subscription.model_validate({**values, "delivery": delivery})


class SubscriptionStore:
    def __init__(self, client, table_name: str) -> None:
        self._db = client
        self._table = table_name

    def _key(self, tenant_id: str, subscription_id: str) -> dict[str, Any]:
        return to_item({"tenant_id": tenant_id, "subscription_id": subscription_id})

    # -- create, read, delete -------------------------------------------------------------------------------------

    def create(
        self, subscription: Subscription, *, expires_at: datetime | None = None, tenant_check: dict | None = None
    ) -> Subscription:
        """Store a new subscription; Conflict when its id exists.

        ``tenant_check``: a ``TransactWriteItems`` ConditionCheck on the tenant's record
        (:meth:`spectra.tenants.TenantDirectory.current_check`), written in one transaction with it: when the tenant
        was deleted (or deleted and created again) first, nothing is stored and :class:`TenantGone` is raised. A
        standing subscription stored after :meth:`~spectra.tenants.TenantDirectory.delete_tenant` gave the tenant's
        others their end would stay for ever, signing secret and all, and API Gateway lets a deleted tenant's key
        through for as long as it caches the authorizer's answer. Each delete ends every subscription stored before its
        record's delete, which this transaction is ordered against."""
        values = subscription.model_dump(mode="json", exclude={"delivery"})
        values.update(subscription.delivery.model_dump(mode="json"))
        if expires_at is not None:
            values["expires_at"] = int(expires_at.timestamp())
        put = {
            "TableName": self._table,
            "Item": to_item(values),
            "ConditionExpression": "attribute_not_exists(subscription_id)",
        }
        exists = Conflict(f"subscription {subscription.subscription_id} already exists")
        if tenant_check is not None:
            self._create_checked(put, tenant_check, exists=exists)
            return subscription
        try:
            self._db.put_item(**put)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise exists from None
            raise
        return subscription

    def _create_checked(self, put: dict, tenant_check: dict, *, exists: Conflict) -> None:
        for _ in range(_TRANSACT_TRIES):
            try:
                self._db.transact_write_items(TransactItems=[tenant_check, {"Put": put}])
                return
            except self._db.exceptions.TransactionCanceledException as exc:
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if reasons[:1] == ["ConditionalCheckFailed"]:
                    raise TenantGone("the tenant was deleted; its API keys no longer authenticate") from None
                if reasons[1:2] == ["ConditionalCheckFailed"]:
                    raise exists from None
                if not PASSING_REASONS.intersection(reasons):
                    raise
                # the tenant record was being written at that moment (changed, or deleted), or a table throttled the
                # transaction: try again, then answer it as passing trouble (503), not a 500
        raise Unavailable("the tenant's record kept changing, or DynamoDB throttled, while the subscription was made")

    def get(self, tenant_id: str, subscription_id: str) -> Subscription | None:
        """The subscription, or None; a callback past its expiry too (7 days): its GET, the notifier's lookup for a
        job's event and a queued delivery's all find it gone, as they would once the TTL has deleted it."""
        response = self._db.get_item(
            TableName=self._table, Key=self._key(tenant_id, subscription_id), ConsistentRead=True
        )
        item = response.get("Item")
        if not item or expired(plain(from_item(item)), utcnow()):
            return None
        return _to_subscription(item)

    def delete(self, tenant_id: str, subscription_id: str) -> bool:
        response = self._db.delete_item(
            TableName=self._table, Key=self._key(tenant_id, subscription_id), ReturnValues="ALL_OLD"
        )
        return bool(response.get("Attributes"))

    def answer(self, tenant_id: str, subscription_id: str) -> Subscription | None:
        """The subscription, marked as answered to a repeat of the request that made it (the same Idempotency-Key),
        so that request no longer :meth:`withdraw` s it; None when it is gone."""
        return self._update(tenant_id, subscription_id, "SET answered = :true", {":true": True})

    def withdraw(self, tenant_id: str, subscription_id: str) -> bool:
        """Delete a subscription just made, unless it was :meth:`answer` ed to a repeat meanwhile (False: it stays,
        a client has it). True when it is gone."""
        try:
            self._db.delete_item(
                TableName=self._table,
                Key=self._key(tenant_id, subscription_id),
                ConditionExpression="attribute_not_exists(answered)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def list_for_tenant(
        self, tenant_id: str, *, limit: int, after: str | None = None, consistent: bool = False
    ) -> SubscriptionPage:
        """The tenant's standing subscriptions (callbacks are not listed) in id order, after the id ``after``.
        ``resume_after`` is where the next page starts (None: this was the last); the API hands it out signed.

        One past its ``expires_at`` is left out, as :meth:`get` finds it gone: a deleted tenant's, whose deliveries can
        no longer need it. A tenant created again under the id sees those its predecessor made before subscriptions
        recorded their generation (``tenant_generation`` absent: :func:`~spectra.tenants.same_generation` keeps
        them with the id); shown, one past its end would count against its limit while its GET answers 404, until
        the TTL deletes it. A page may come back short, as a filtered Query does."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "tenant_id = :t AND begins_with(subscription_id, :p)",
            "ExpressionAttributeValues": to_item({":t": tenant_id, ":p": SUBSCRIPTION_PREFIX}),
            "Limit": limit,
            "ConsistentRead": consistent,
        }
        if after:
            query["ExclusiveStartKey"] = self._key(tenant_id, after)  # always in the caller's own partition
        response = self._db.query(**unexpired(query, utcnow()))
        start_key = response.get("LastEvaluatedKey")
        return SubscriptionPage(
            subscriptions=[_to_subscription(item) for item in response.get("Items", [])],
            resume_after=from_item(start_key)["subscription_id"] if start_key else None,
        )

    def webhooks_for_tenant(self, tenant_id: str, *, consistent: bool = False) -> list[Subscription]:
        """Every standing subscription of the tenant (bounded by the per-tenant limit the API enforces);
        ``consistent`` reads include every write that succeeded before the call."""
        found: list[Subscription] = []
        token = None
        while True:
            page = self.list_for_tenant(tenant_id, limit=100, after=token, consistent=consistent)
            found.extend(page.subscriptions)
            token = page.resume_after
            if not token:
                return found

    def expire_standing(self, tenant_id: str, *, at: datetime, still_gone: Callable[[str | None], dict]) -> int:
        """Give each of the tenant's standing subscriptions without an ``expires_at`` this one (callbacks have their
        own): a deleted tenant's, which the TTL removes then. Each is written in one transaction with the check
        ``still_gone(its tenant_generation)`` (a ``TransactWriteItems`` entry: that generation is no tenant's now), so a
        tenant made again under the id meanwhile keeps its own. Returns how many were given one; reads them a page at
        a time (a tenant's deleted generations may have left any number), one write each."""
        pages = self._db.get_paginator("query").paginate(
            TableName=self._table,
            KeyConditionExpression="tenant_id = :t AND begins_with(subscription_id, :p)",
            FilterExpression="attribute_not_exists(expires_at)",
            ProjectionExpression="subscription_id, tenant_generation",
            ExpressionAttributeValues=to_item({":t": tenant_id, ":p": SUBSCRIPTION_PREFIX}),
            ConsistentRead=True,
        )
        stamped = 0
        for page in pages:
            for item in page.get("Items", []):
                found = from_item(item)
                stamped += self._expire_one(
                    tenant_id, found["subscription_id"], found.get("tenant_generation"), at, still_gone
                )
        return stamped

    def _expire_one(
        self, tenant_id: str, subscription_id: str, generation: str | None, at: datetime, still_gone
    ) -> bool:
        if generation is None:
            condition, values = "attribute_not_exists(tenant_generation)", {}
        else:
            condition, values = "tenant_generation = :g", {":g": generation}
        update = {
            "TableName": self._table,
            "Key": self._key(tenant_id, subscription_id),
            "UpdateExpression": "SET expires_at = :at",
            "ConditionExpression": "attribute_exists(subscription_id) AND attribute_not_exists(expires_at) AND "
            + condition,
            "ExpressionAttributeValues": to_item({":at": int(at.timestamp()), **values}),
        }
        for _ in range(_TRANSACT_TRIES):
            try:
                self._db.transact_write_items(TransactItems=[still_gone(generation), {"Update": update}])
                return True
            except self._db.exceptions.TransactionCanceledException as exc:
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if "ConditionalCheckFailed" in reasons:
                    return False  # its generation is a tenant's again, or it is gone or stamped already
                if not PASSING_REASONS.intersection(reasons):
                    raise
                # a delivery was writing its state at that moment, or a table throttled: try again
        raise Conflict(
            f"subscription {subscription_id} kept changing while its tenant was deleted; delete the tenant again"
        )

    # -- delivery state -------------------------------------------------------------------------------------------

    def record_success(
        self, tenant_id: str, subscription_id: str, *, status: int, at: datetime, made_at: datetime | None = None
    ) -> Subscription | None:
        """``made_at``, as in each of the delivery state's writes: only the subscription made then (one deleted and
        made again under its Idempotency-Key's id is another, which an attempt for the old one must not touch)."""
        return self._update(
            tenant_id,
            subscription_id,
            "SET last_status = :status, last_attempt_at = :at, last_success_at = :at, consecutive_failures = :zero "
            "ADD delivered :one REMOVE last_error, failing_since",  # why and since when attempts failed: this did not
            {":status": status, ":at": json_ready(at), ":zero": 0, ":one": 1},
            made_at=made_at,
        )

    def record_failure(
        self,
        tenant_id: str,
        subscription_id: str,
        *,
        status: int | None,
        error: str,
        at: datetime,
        made_at: datetime | None = None,
        run_gap: timedelta | None = None,
    ) -> Subscription | None:
        """Count a failed attempt; the returned subscription carries the new ``consecutive_failures``.

        ``run_gap``: a failure whose subscription saw no attempt for longer than this starts a new run of failures
        (the count at 1, ``failing_since`` now) rather than adding to the old one. Nothing else resets a run but a
        success, so without it an endpoint that came back after an outage, with no event to prove it for a day, would
        be disabled by the first failed attempt after that, with no retry."""
        values: dict[str, Any] = {":error": error, ":at": json_ready(at), ":one": 1}
        if status is not None:
            values[":status"] = status
        if run_gap is None:
            return self._update(tenant_id, subscription_id, _failure(status, new_run=False), values, made_at=made_at)
        values[":recent"] = json_ready(at - run_gap)  # ISO 8601 in UTC: compared as strings, in time order
        recent = "(attribute_not_exists(last_attempt_at) OR last_attempt_at >= :recent)"
        # Two conditional writes: an attempt written between them (another delivery) refuses both, and that is no
        # reason to read the subscription as gone (the delivery would be dropped, never retried),
        # so they are tried again; the second round's first write finds that attempt recent.
        for _ in range(3):
            added = self._update(
                tenant_id, subscription_id, _failure(status, new_run=False), values, condition=recent, made_at=made_at
            )
            if added is not None:
                return added
            restarted = self._update(
                tenant_id,
                subscription_id,
                _failure(status, new_run=True),
                values,
                condition="last_attempt_at < :recent",
                made_at=made_at,
            )
            if restarted is not None:
                return restarted
        return None  # gone, or made again under its id since the attempt read it

    def disable(
        self,
        tenant_id: str,
        subscription_id: str,
        *,
        reason: DisabledReason,
        message: str,
        at: datetime,
        failures_at_least: int | None = None,
        made_at: datetime | None = None,
    ) -> Subscription | None:
        """Active → disabled; None when it was not active (another delivery disabled it first, or it is gone), or
        when ``failures_at_least`` is given and ``consecutive_failures`` is below it now: a delivery that succeeded
        since the failure that counted up to the threshold reset the count, and the endpoint works again."""
        values: dict[str, Any] = {
            ":disabled": SubscriptionStatus.DISABLED.value,
            ":at": json_ready(at),
            ":reason": reason.value,
            ":message": message,
            ":active": SubscriptionStatus.ACTIVE.value,
        }
        condition = "#status = :active"
        if failures_at_least is not None:
            condition += " AND consecutive_failures >= :threshold"
            values[":threshold"] = failures_at_least
        return self._update(
            tenant_id,
            subscription_id,
            "SET #status = :disabled, disabled_at = :at, disabled_reason = :reason, disabled_message = :message",
            values,
            condition=condition,
            made_at=made_at,
        )

    def mark_disabled_event_published(
        self, tenant_id: str, subscription_id: str, *, made_at: datetime | None = None
    ) -> Subscription | None:
        """``made_at``: only the subscription whose disabling was announced. One deleted and made again under its
        Idempotency-Key's id meanwhile is another, not disabled yet: marked, its own disabling would go unannounced."""
        return self._update(
            tenant_id, subscription_id, "SET disabled_event_published = :yes", {":yes": True}, made_at=made_at
        )

    def _update(
        self,
        tenant_id: str,
        subscription_id: str,
        expression: str,
        values: dict[str, Any],
        *,
        condition: str | None = None,
        made_at: datetime | None = None,
    ) -> Subscription | None:
        names = {"#status": "status"} if "#status" in expression else {}
        full_condition = "attribute_exists(subscription_id)" + (f" AND {condition}" if condition else "")
        if made_at is not None:  # as the subscription was written (pydantic's JSON form of the datetime)
            full_condition += " AND created_at = :made"
            values = {**values, ":made": _DATETIME.dump_python(made_at, mode="json")}
        try:
            response = self._db.update_item(
                TableName=self._table,
                Key=self._key(tenant_id, subscription_id),
                UpdateExpression=expression,
                ConditionExpression=full_condition,
                ExpressionAttributeValues=to_item(values),
                ReturnValues="ALL_NEW",
                **({"ExpressionAttributeNames": names} if names else {}),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return _to_subscription(response["Attributes"])


def _failure(status: int | None, *, new_run: bool) -> str:
    """The update counting a failed attempt (:meth:`SubscriptionStore.record_failure`): added to the run of failures
    it belongs to, or starting a new one."""
    sets = ["last_error = :error", "last_attempt_at = :at"] + ([] if status is None else ["last_status = :status"])
    if new_run:
        sets += ["failing_since = :at", "consecutive_failures = :one"]
        adds = ["failed_attempts :one"]
    else:
        sets += ["failing_since = if_not_exists(failing_since, :at)"]
        adds = ["consecutive_failures :one", "failed_attempts :one"]
    return f"SET {', '.join(sets)} ADD {', '.join(adds)}" + (" REMOVE last_status" if status is None else "")
