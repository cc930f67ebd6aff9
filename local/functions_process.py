"""``python -m local --functions-only`` as a child process: started, killed (SIGKILL, as a crash would) and started
again against the same moto, emulator and stack state. The fault tests and the burst benchmark run the functions
this way, apart from the process that holds moto and the emulator, as Lambda runs apart from the services.

The child's output (the functions' JSON log lines and, with ``SPECTRA_FUNCTION_METRICS=1``, their embedded-metric
lines) goes to ``log_path``, appended across restarts, so a test can read every line of a job's trip afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY = "Spectra functions are running:"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FunctionsProcess:
    def __init__(
        self,
        *,
        aws_url: str,
        redshift_url: str,
        aws_services: Mapping[str, str] | None = None,
        state_file: str | Path,
        log_path: str | Path,
        environment: Mapping[str, str] | None = None,
        api_port: int | None = None,
        schedule_interval: float | None = None,
        receive_visibility: int | None = 5,
    ) -> None:
        self.api_port = api_port or free_port()  # the same port after every restart: clients keep their URL
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.log_path = Path(log_path)
        self._command = [
            sys.executable,
            "-m",
            "local",
            "--functions-only",
            "--aws",
            aws_url,
            "--redshift",
            redshift_url,
            "--state",
            str(state_file),
            "--api-port",
            str(self.api_port),
        ]
        for service, url in (aws_services or {}).items():
            self._command += ["--aws-service", f"{service}={url}"]
        if schedule_interval is not None:
            self._command += ["--schedule-interval", str(schedule_interval)]
        if receive_visibility is not None:
            self._command += ["--receive-visibility", str(receive_visibility)]
        self._environment = {**os.environ, **(environment or {})}
        self._process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 90) -> None:
        """Start the child and return once it serves (its ready line is in the log); fail after ``timeout`` s."""
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("the functions process is already running")
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                self._command, cwd=ROOT, env=self._environment, stdout=log, stderr=subprocess.STDOUT
            )
        finally:
            log.close()  # the child holds its own descriptor
        self.starts += 1
        deadline = time.monotonic() + timeout
        while READY not in self._read_from(offset):
            if self._process.poll() is not None:
                raise RuntimeError(f"the functions process exited with {self._process.returncode}:\n{self._tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the functions process was not ready within {timeout}s:\n{self._tail()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed, whatever was in flight is abandoned mid-way."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(30)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, as ``make run``'s Ctrl-C; SIGKILL if it does not stop within ``timeout``."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    @property
    def pid(self) -> int | None:
        """The running child's process id (None before the first start)."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def lines(self) -> list[str]:
        """Every line the child (all its starts) wrote so far."""
        return self._read_from(0).splitlines()

    def _read_from(self, offset: int) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace")

    def _tail(self, lines: int = 40) -> str:
        return "\n".join(self.lines()[-lines:])

    def __enter__(self) -> FunctionsProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
