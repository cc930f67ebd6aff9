"""Unit tests run with the network off: any socket connection fails the test loudly. They also start from the state
of a fresh process, whatever a local stack started by another tier's test earlier in the run left in this one."""

import os
import socket
import sys

import pytest
from aws_lambda_powertools import Metrics

#: The process environment when pytest collected the unit tests, before any fixture ran. A local stack started by an
#: integration or e2e test earlier in the same run exports its endpoints and its functions' variables (``JWKS_URL``,
#: ``JOBS_TABLE``...) into ``os.environ`` until the run ends, and a unit test reading its settings from a few variables
#: of its own would read those too (a JWKS URL it never set). pytest keeps ``PYTEST_*`` up to date itself.
_ENVIRONMENT_AT_START = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("unit tests must not touch the network; move this test to tests/integration")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(autouse=True)
def _state_at_start(monkeypatch):
    for name in set(os.environ) - set(_ENVIRONMENT_AT_START):
        if not name.startswith("PYTEST_"):
            monkeypatch.delenv(name)
    for name, value in _ENVIRONMENT_AT_START.items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)
    # Powertools keeps Metrics' metrics on the class: one set per process, or per thread once a local stack has run
    # (local/runner/functions.py). A stack's function invoked on this thread, metrics off, never flushes it, so it may
    # still hold its metrics, and a handler called here would flush them (without the namespace their environment
    # gave them: SchemaValidationError).
    Metrics().clear_metrics()
    # A function's module imported before a local stack made those dicts per thread keeps the dicts it found, which
    # the line above no longer reaches; a test that called its router (no flush) left its counts there, and the next
    # test to call its lambda_handler flushed them without a namespace. Cleared through each module's own Metrics.
    for name, module in list(sys.modules.items()):
        metrics = getattr(module, "metrics", None) if name.startswith(("producers.", "consumers.")) else None
        if isinstance(metrics, Metrics):
            metrics.clear_metrics()
