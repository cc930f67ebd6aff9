"""What the local runner says of an invocation past its function's Timeout, which it cannot stop (a thread): the
session stack's teardown check (tests/fixtures/stack.py, ``overran_timeouts``) fails a test run that passed through
one, since Lambda would have stopped it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from local.runner.functions import FunctionConfig, LocalFunction, TaskTimedOut
from tests.fixtures.stack import overran_timeouts, wait_until

pytestmark = pytest.mark.integration


def _function(timeout: float, handler: str = "handlers.basic.sleepy", concurrency: int | None = None) -> LocalFunction:
    return LocalFunction(
        FunctionConfig(
            logical_id="Sleepy",
            name="spectra-test-sleepy",
            arn="arn:aws:lambda:us-east-1:123456789012:function:spectra-test-sleepy",
            handler=handler,
            code_root=Path(__file__).parent,
            runtime="python3.12",
            timeout_seconds=timeout,
            memory_mb=128,
            environment={},
            events={},
            reserved_concurrency=concurrency,
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


def _overruns(function: LocalFunction) -> int:
    return len(overran_timeouts(SimpleNamespace(functions={"Sleepy": function})))


def test_an_invocation_still_running_past_its_timeout_is_reported():
    function = _function(timeout=0.05)
    running = threading.Thread(target=function.invoke, args=({"sleep": 3.0},))
    running.start()
    try:  # polled, not slept: a loaded machine may be slow to start the invocation (test-quality review)
        wait_until(lambda: _overruns(function) == 1, 2.5, "the running invocation to be reported")
        assert running.is_alive()  # reported while it still ran
    finally:
        running.join()
    assert len(overran_timeouts(SimpleNamespace(functions={"Sleepy": function}))) == 1  # once ended, once listed


def test_an_invocation_running_past_its_timeout_is_reported_however_many_came_after_it():
    """Still-running ones were looked for in the trimmed log: a hung invocation followed by more than the log keeps
    passed the check (diff review)."""
    function = _function(timeout=0.05)
    running = threading.Thread(target=function.invoke, args=({"sleep": 3.0},))
    running.start()
    try:
        for _ in range(20):
            function.invoke({"sleep": 0})
        wait_until(lambda: _overruns(function) == 1, 2.5, "the running invocation to be reported")
        assert running.is_alive()
    finally:
        running.join()


def test_a_bounded_invocation_past_its_timeout_is_a_task_timed_out_and_the_handler_runs_on():
    function = _function(timeout=0.3)
    with pytest.raises(TaskTimedOut) as timed_out:
        function.invoke_bounded({"sleep": 1.0})
    assert not timed_out.value.callers_limit
    with pytest.raises(TaskTimedOut) as callers:
        function.invoke_bounded({"sleep": 1.0}, seconds=0.1)  # the caller's limit, shorter than the Timeout
    assert callers.value.callers_limit
    assert function.invoke_bounded({"sleep": 0}) == {"slept": 0}


def test_a_handlers_own_timeout_error_is_its_error_not_a_timeout():
    """TimeoutError is socket.timeout and concurrent.futures' too: the first version read the handler's own as the
    wait running out, and the gateway answered 504 "Endpoint request timed out" for a function that failed at once
    (the review of the bounded invocation)."""
    function = _function(timeout=3, handler="handlers.basic.raises_timeout_error")
    with pytest.raises(TimeoutError, match="socket read") as raised:
        function.invoke_bounded({}, seconds=29)
    assert not isinstance(raised.value, TaskTimedOut)


def test_a_wait_for_an_environment_is_not_counted_against_the_timeout():
    """Lambda starts a synchronous call's handler at once; locally it may wait for an environment first. Counted,
    the second of two calls at concurrency 1 timed out although its handler ran well inside its Timeout."""
    function = _function(timeout=2.0, concurrency=1)
    with ThreadPoolExecutor(2) as pool:  # the second waits 1.2 s for the first's environment, then runs 1.2 s
        answers = list(pool.map(lambda _: function.invoke_bounded({"sleep": 1.2}), range(2)))
    assert answers == [{"slept": 1.2}, {"slept": 1.2}]
    assert function.overran() == []
