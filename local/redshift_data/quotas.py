"""The Data API's request-rate quotas: a token bucket per operation, refused with ThrottlingException when empty.

AWS meters each Data API operation per account and Region (Amazon Redshift Management Guide, "Quotas for Amazon
Redshift Data API"); a call over its rate gets ``ThrottlingException`` (HTTP 400, "Rate exceeded"), which botocore's
retry modes treat as throttling. The emulator does not meter by default (a test suite on one laptop makes calls far
faster than one account would, and should not spend its time in backoff); ``EmulatorConfig.rate_limits`` turns it on,
with :data:`DATA_API_RATE_QUOTAS` for AWS's own default values or any rates a test wants to drive code into its
throttling path with. The active-statement quota (``max_active_statements``) is separate and always enforced.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from .errors import ThrottlingException

#: Requests per second per operation: the default quotas AWS documents (adjustable per account).
DATA_API_RATE_QUOTAS: dict[str, float] = {
    "ExecuteStatement": 30,
    "BatchExecuteStatement": 20,
    "CancelStatement": 30,
    "DescribeStatement": 100,
    "GetStatementResult": 20,
    "GetStatementResultV2": 20,
    "DescribeTable": 3,
    "ListDatabases": 3,
    "ListSchemas": 3,
    "ListStatements": 3,
    "ListTables": 3,
    "ListSessions": 3,
}


class RateLimits:
    """One token bucket per metered operation, each holding a second's worth of requests (AWS's burst is not
    documented; one second of the rate is the conservative reading)."""

    def __init__(self, rates: Mapping[str, float] | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._rates = {operation: float(rate) for operation, rate in (rates or {}).items() if rate and rate > 0}
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._buckets = {operation: (max(1.0, rate), now) for operation, rate in self._rates.items()}
        self.throttled: dict[str, int] = {}  # refusals per operation, for tests and benchmarks

    def set_rate(self, operation: str, rate: float | None) -> None:
        """Meter ``operation`` at ``rate`` requests per second from now on (``None``: stop metering it)."""
        with self._lock:
            if rate is None or rate <= 0:
                self._rates.pop(operation, None)
                self._buckets.pop(operation, None)
            else:
                self._rates[operation] = float(rate)
                self._buckets[operation] = (max(1.0, float(rate)), self._clock())

    def admit(self, operation: str) -> None:
        """Take one request of ``operation``; :class:`ThrottlingException` when its bucket is empty."""
        rate = self._rates.get(operation)
        if rate is None:
            return
        with self._lock:
            tokens, updated = self._buckets[operation]
            now = self._clock()
            tokens = min(max(1.0, rate), tokens + (now - updated) * rate)
            if tokens < 1:
                self._buckets[operation] = (tokens, now)
                self.throttled[operation] = self.throttled.get(operation, 0) + 1
                raise ThrottlingException(f"Rate exceeded for {operation} ({rate:g} requests per second)")
            self._buckets[operation] = (tokens - 1, now)
