"""Reconciler function behaviour no test held before (found by mutation testing consumers/reconciler/app.py): the
sweep's deadline is the invocation's remaining time less 20 s, never before now, and a result it collects lasts the
remaining time less the domain's 10 s margin; what it counts and answers is the sweep's summary."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from consumers.reconciler import app as reconciler
from spectra import deadline
from spectra.reconciliation import ReconcileSummary

pytestmark = pytest.mark.unit


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "reconciler", 512, "r1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:reconciler"

    def __init__(self, millis: int):
        self.millis = millis

    def get_remaining_time_in_millis(self):
        return self.millis


@pytest.fixture
def swept(monkeypatch):
    """The sweeps the handler ran, each as (its deadline, the time a result could last), with the clock stopped."""
    runs = []

    def reconcile(ports, deadline):
        runs.append((deadline, deadline_module_left()))
        return ReconcileSummary(completed=2, requeued=1)

    deadline_module_left = deadline.left
    monkeypatch.setattr(reconciler, "time", SimpleNamespace(monotonic=lambda: 1000.0))
    monkeypatch.setattr(deadline, "_clock", lambda: 1000.0)
    monkeypatch.setattr(reconciler, "reconcile", reconcile)
    monkeypatch.setattr(reconciler, "get_ports", lambda: None)
    monkeypatch.setattr(reconciler.metrics, "namespace", "RedshiftSpectra")  # the template's Globals
    yield runs
    reconciler.metrics.clear_metrics()


def test_the_sweep_stops_starting_jobs_20_seconds_before_the_timeout(swept):
    reconciler.lambda_handler({}, Context(60_000))
    assert swept == [(1040.0, 50.0)]


def test_with_less_than_20_seconds_left_the_sweep_is_due_at_once(swept):
    reconciler.lambda_handler({}, Context(15_000))
    assert swept == [(1000.0, 5.0)]


def test_the_answer_and_the_metrics_are_the_sweeps_summary(swept, capsys):
    answer = reconciler.lambda_handler({}, Context(60_000))
    assert (answer["completed"], answer["requeued"], answer["expired"], answer["errors"]) == (2, 1, 0, 0)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    emitted = {name: line[name] for line in lines for name in ("ReconciledJobs", "RequeuedJobs", "ExpiredJobs")}
    assert emitted == {"ReconciledJobs": [2.0], "RequeuedJobs": [1.0], "ExpiredJobs": [0.0]}
