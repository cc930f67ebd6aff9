"""Schedules: ``Schedule``/``ScheduleV2`` function events and scheduled ``AWS::Events::Rule`` s with SQS targets.

A timer thread per schedule fires the event EventBridge would send. ``rate(...)`` is honoured exactly; ``cron(...)``
is approximated by the interval between its firings (``*/5`` minutes → every 5 minutes, a fixed minute with ``*`` hours
→ hourly, otherwise daily), because the local stack cares that the job runs repeatedly, not at which wall-clock
minute. ``schedule_interval_seconds`` overrides every interval so tests and demos need not wait minutes. The first
firing happens one interval after start, as with a new rule in AWS.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from local.runner.template import TemplateError
from local.runner.worker import BackgroundWorker

log = logging.getLogger(__name__)

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def interval_seconds(expression: str) -> float:
    """Seconds between firings of a ``rate(...)`` or ``cron(...)`` expression (cron: approximate, see module doc)."""
    expression = expression.strip()
    rate = _RATE.match(expression)
    if rate:
        return int(rate.group(1)) * _UNIT_SECONDS[rate.group(2).rstrip("s")]
    if expression.startswith("cron(") and expression.endswith(")"):
        fields = expression[5:-1].split()
        if len(fields) != 6:
            raise TemplateError(f"schedule {expression!r}: cron needs six fields")
        minutes, hours = fields[0], fields[1]
        step = re.match(r"^(?:\*|\d+)/(\d+)$", minutes)
        if step:
            return int(step.group(1)) * 60
        if minutes == "*":
            return 60
        step = re.match(r"^(?:\*|\d+)/(\d+)$", hours)
        if step:
            return int(step.group(1)) * 3600
        if hours == "*":
            return 3600
        return 86400
    raise TemplateError(f"schedule expression {expression!r} is not rate(...) or cron(...)")


def scheduled_event(*, rule_arn: str, account_id: str, region: str) -> dict[str, Any]:
    """The event EventBridge Scheduler / a scheduled rule delivers."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class Schedule(BackgroundWorker):
    """A daemon thread calling ``fire(event)`` every ``interval`` seconds until stopped."""

    def __init__(
        self,
        *,
        name: str,
        interval: float,
        fire: Callable[[Any], Any],
        rule_arn: str,
        account_id: str,
        region: str,
        custom_input: str | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self._fire = fire
        self.rule_arn = rule_arn
        self.account_id = account_id
        self.region = region
        self.custom_input = custom_input
        self.fired = 0
        super().__init__(f"schedule-{name}")

    def event(self) -> Any:
        if self.custom_input is not None:
            return json.loads(self.custom_input)
        return scheduled_event(rule_arn=self.rule_arn, account_id=self.account_id, region=self.region)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.fired += 1
            try:
                self._fire(self.event())
            except Exception:
                # An asynchronous invocation: Lambda would retry twice, then drop it. Locally, log and carry on.
                log.exception("schedule %s: invocation failed", self.name)
