"""moto for the local stack fails at once on a port another process took between the probe and the bind (two
``make run`` started together): moto's own start waited for ever, and the process ignored Ctrl-C."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def test_moto_on_a_taken_port_fails_at_once_saying_so():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code = f"from local.aws import start_moto; start_moto({port})"
        run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert f"moto could not serve on 127.0.0.1:{port} (is the port taken?)" in run.stderr
