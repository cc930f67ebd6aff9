"""The thread life cycle shared by the runner's event sources (SQS pollers, schedules)."""

from __future__ import annotations

import threading


class BackgroundWorker:
    """A named daemon thread running ``_run`` until :meth:`stop`; ``_run`` watches ``self._stop``."""

    def __init__(self, thread_name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    def _run(self) -> None:  # pragma: no cover - every worker overrides it
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
