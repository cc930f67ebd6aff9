"""What the local runner says of an invocation past its function's Timeout, which it cannot stop (a thread): the
session stack's teardown check (tests/fixtures/stack.py, ``overran_timeouts``) fails a test run that passed through
one, since Lambda would have stopped it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from local.runner.functions import FunctionConfig, LocalFunction
from tests.fixtures.stack import overran_timeouts

pytestmark = pytest.mark.integration


def _function(timeout: float) -> LocalFunction:
    return LocalFunction(
        FunctionConfig(
            logical_id="Sleepy",
            name="spectra-test-sleepy",
            arn="arn:aws:lambda:us-east-1:123456789012:function:spectra-test-sleepy",
            handler="handlers.basic.sleepy",
            code_root=Path(__file__).parent,
            runtime="python3.12",
            timeout_seconds=timeout,
            memory_mb=128,
            environment={},
            events={},
        ),
        keep_invocations=10,
    )


def test_an_overrun_is_reported_however_many_invocations_came_after_it():
    """The check read the invocation log, which keeps the latest invocations only: an overrun early in a session
    whose API function answers thousands of requests was forgotten by the end (local runner review)."""
    function = _function(timeout=0.05)
    function.invoke({"sleep": 0.1})
    for _ in range(20):
        function.invoke({"sleep": 0})
    [overrun] = overran_timeouts(SimpleNamespace(functions={"Sleepy": function}))
    assert overrun.startswith("Sleepy ") and overrun.endswith(" s > 0.05 s")


def test_an_invocation_still_running_past_its_timeout_is_reported():
    function = _function(timeout=0.05)
    running = threading.Thread(target=function.invoke, args=({"sleep": 1.0},))
    running.start()
    try:
        time.sleep(0.3)
        assert len(overran_timeouts(SimpleNamespace(functions={"Sleepy": function}))) == 1
    finally:
        running.join()
    assert len(overran_timeouts(SimpleNamespace(functions={"Sleepy": function}))) == 1  # once ended, once listed


def test_an_invocation_running_past_its_timeout_is_reported_however_many_came_after_it():
    """Still-running ones were looked for in the trimmed log: a hung invocation followed by more than the log keeps
    passed the check (diff review)."""
    function = _function(timeout=0.05)
    running = threading.Thread(target=function.invoke, args=({"sleep": 1.0},))
    running.start()
    try:
        for _ in range(20):
            function.invoke({"sleep": 0})
        time.sleep(0.1)
        assert len(overran_timeouts(SimpleNamespace(functions={"Sleepy": function}))) == 1
    finally:
        running.join()
