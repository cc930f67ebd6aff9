"""``python -m local --functions-only`` with no stack to attach to says so in one line and exits 2, instead of a
traceback whose last line only said it (found by a README walk)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from local.aws import start_moto
from local.pipeline import provision_pipeline

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def functions_only(state: Path, aws_url: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "local", "--functions-only", "--state", str(state), "--aws", aws_url]
    command += ["--redshift", "http://127.0.0.1:9"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_no_state_file_is_one_line_saying_to_start_the_stack(tmp_path):
    missing = tmp_path / "state.json"
    run = functions_only(missing, "http://127.0.0.1:9")
    assert run.returncode == 2
    assert run.stderr.strip() == (
        f"python -m local --functions-only: no stack state at {missing}: start the stack first (python -m local), "
        "or pass --state"
    )


def test_a_stack_whose_moto_is_gone_is_one_line_naming_the_endpoint(unique_name, tmp_path):
    """The stack is provisioned in a moto of the test's own, then stopped: the session's moto keeps no stray stack
    (its rule on the default bus would copy every completion event into a queue nobody reads). The endpoint named
    gone is a port held bound but not listening: the stopped moto's own port was taken meanwhile by another worker's
    server (a test's throttling Data API), which answered, and both tests failed."""
    state = tmp_path / "state.json"
    own = start_moto()
    try:
        provision_pipeline(own, state, stack_name=unique_name)
    finally:
        own.stop()
    with socket.socket() as held:  # refuses connections, and no other worker can take it meanwhile
        held.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{held.getsockname()[1]}"
        run = functions_only(state, gone)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip() == (
        f'python -m local --functions-only: Could not connect to the endpoint URL: "{gone}/"'
        " (is the stack's moto running there?)"
    )
