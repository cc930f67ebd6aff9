"""API Gateway usage plans: per-API-key request rate (token bucket) and quota, as API Gateway meters them.

A method with ``ApiKeyRequired`` needs an API key: from the ``X-API-Key`` header (``ApiKeySourceType: HEADER``) or from
the Lambda authorizer's ``usageIdentifierKey`` (``AUTHORIZER``). The key must exist, be enabled and belong to a usage
plan that covers the API's stage, otherwise API Gateway answers 403 (``INVALID_API_KEY``). Each (plan, key) then has:

- a token bucket of ``Throttle.BurstLimit`` tokens refilled at ``Throttle.RateLimit`` a second: an empty bucket is 429
  (``THROTTLED``);
- a quota of ``Quota.Limit`` requests per ``DAY`` / ``WEEK`` / ``MONTH`` (UTC; weeks start on Monday, shifted by
  ``Offset`` days or, for a month, ``Offset`` days into it): a spent quota is 429 (``QUOTA_EXCEEDED``) until the next
  period.

Plans, keys and their associations are read from moto's API Gateway, where the runner created the template's
``AWS::ApiGateway::UsagePlan`` resources and tenant provisioning created the keys (``spectra.share.UsagePlans``):
the same calls as on AWS. Lookups are cached for a few seconds, so a key moved to another plan is metered by its new
plan shortly after. Counters live in this process and start empty with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

LOOKUP_TTL_SECONDS = 5.0

INVALID_API_KEY = "INVALID_API_KEY"
THROTTLED = "THROTTLED"
QUOTA_EXCEEDED = "QUOTA_EXCEEDED"


@dataclass
class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` a second; each request takes one."""

    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate=rate, burst=burst, tokens=burst, updated=now)

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def period_start(period: str, offset: int, moment: datetime) -> datetime:
    """The start of the quota period holding ``moment`` (UTC)."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "DAY":
        return day
    if period == "WEEK":
        start = day - timedelta(days=(day.weekday() - offset) % 7)
        return start
    if period == "MONTH":
        start = day.replace(day=1) + timedelta(days=offset)
        if start > day:  # before this month's offset: the period began in the previous month
            previous = (day.replace(day=1) - timedelta(days=1)).replace(day=1)
            start = previous + timedelta(days=offset)
        return start
    raise ValueError(f"unknown quota period {period!r}")


@dataclass
class Quota:
    limit: int
    period: str
    offset: int = 0
    used: int = 0
    window: datetime | None = None

    def take(self, moment: datetime) -> bool:
        window = period_start(self.period, self.offset, moment)
        if window != self.window:
            self.window, self.used = window, 0
        if self.used >= self.limit:
            return False
        self.used += 1
        return True


@dataclass
class _Meter:
    bucket: TokenBucket | None
    quota: Quota | None


@dataclass
class UsageMeter:
    """Meters requests of API keys against the usage plans in ``apigateway`` (a boto3 client on moto)."""

    apigateway: Any
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _keys: dict[str, tuple[str, bool]] = field(default_factory=dict)  # value → (key id, enabled)
    _misses: dict[str, float] = field(default_factory=dict)  # unknown key value → when it was last looked up
    _plans: dict[str, tuple[float, list[dict[str, Any]]]] = field(default_factory=dict)  # key id → (loaded, plans)
    _meters: dict[tuple[str, str], tuple[tuple, _Meter]] = field(default_factory=dict)  # (plan, key) → limits, meter

    def check(self, key_value: str | None, api_id: str, stage: str) -> str | None:
        """None when the request may go on; otherwise the gateway response type that refuses it."""
        if not key_value:
            return INVALID_API_KEY
        key = self._key(key_value)
        if key is None or not key[1]:
            return INVALID_API_KEY
        plan = next((p for p in self._plans_of(key[0]) if _covers(p, api_id, stage)), None)
        if plan is None:
            return INVALID_API_KEY
        limits = _limits(plan)
        with self._lock:
            known = self._meters.get((plan["id"], key[0]))
            if known is None or known[0] != limits:  # new, or the plan's limits were changed: start afresh
                known = self._meters[(plan["id"], key[0])] = (limits, self._new_meter(plan))
            meter = known[1]
            if meter.bucket is not None and not meter.bucket.take(self.clock()):
                return THROTTLED
            if meter.quota is not None and not meter.quota.take(self.wall_clock()):
                return QUOTA_EXCEEDED
        return None

    def _new_meter(self, plan: dict[str, Any]) -> _Meter:
        throttle, quota = plan.get("throttle") or {}, plan.get("quota") or {}
        bucket = None
        if throttle.get("rateLimit") is not None or throttle.get("burstLimit") is not None:
            rate = float(throttle.get("rateLimit", 0))
            burst = float(throttle.get("burstLimit", max(1.0, rate)))
            bucket = TokenBucket.full(rate, burst, self.clock())
        limits = Quota(int(quota["limit"]), quota["period"], int(quota.get("offset", 0))) if quota else None
        return _Meter(bucket, limits)

    def _key(self, value: str) -> tuple[str, bool] | None:
        with self._lock:
            found = self._keys.get(value)
            # reload on a miss (a key made since), but not again within a second for the same unknown value
            if found is None and self.clock() - self._misses.get(value, float("-inf")) >= 1.0:
                self._keys = {
                    key["value"]: (key["id"], bool(key.get("enabled", False)))
                    for page in self.apigateway.get_paginator("get_api_keys").paginate(includeValues=True)
                    for key in page.get("items", [])
                    if key.get("value")
                }
                found = self._keys.get(value)
                if found is None:
                    if len(self._misses) > 10_000:
                        self._misses.clear()
                    self._misses[value] = self.clock()
            return found

    def _plans_of(self, key_id: str) -> list[dict[str, Any]]:
        with self._lock:
            cached = self._plans.get(key_id)
            if cached is not None and self.clock() - cached[0] < LOOKUP_TTL_SECONDS:
                return cached[1]
        plans = [
            plan
            for page in self.apigateway.get_paginator("get_usage_plans").paginate(keyId=key_id)
            for plan in page.get("items", [])
        ]
        with self._lock:
            self._plans[key_id] = (self.clock(), plans)
        return plans


def _covers(plan: dict[str, Any], api_id: str, stage: str) -> bool:
    return any(s.get("apiId") == api_id and s.get("stage") == stage for s in plan.get("apiStages") or [])


def _limits(plan: dict[str, Any]) -> tuple:
    throttle, quota = plan.get("throttle") or {}, plan.get("quota") or {}
    return (
        throttle.get("rateLimit"),
        throttle.get("burstLimit"),
        quota.get("limit"),
        quota.get("period"),
        quota.get("offset"),
    )
