"""The warehouse taken away, for fault tests: a cluster paused, rebooted, resized or failing over, or a Serverless
workgroup unavailable.

While :meth:`Outage.begin` is in force, the calls that need the warehouse itself (ExecuteStatement,
BatchExecuteStatement and the catalog calls) are refused as the Data API refuses them while a cluster is not
available: ValidationException by default ("... is not available"), or InternalServerException or
DatabaseConnectionException, whichever a test asks for. They are refused every time, so botocore's retries end and
the caller gets the error. The calls the Data API answers from its own records (DescribeStatement, ListStatements,
the result calls, CancelStatement, ListSessions) go on working. AWS does not document the wording of these refusals;
the message names the cluster or workgroup and says it is not available, with its state.

:meth:`Outage.reboot` ends what a reboot ends: every statement not yet ended (running or waiting to run) ends FAILED
with a message saying so, or ABORTED, with its completion event or without one (AWS's events are best effort), and
every session is closed (a reboot drops their connections: a later statement naming one is refused "not available").
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .errors import DataApiError, DatabaseConnectionException, InternalServerException, ValidationException
from .executor import StatementRunner
from .sessions import SessionRegistry
from .statements import ABORTED, ACTIVE, FAILED, StatementStore

#: The operations a cluster that is not available refuses: those that run SQL on it or read its catalog.
NEEDS_WAREHOUSE = frozenset(
    {"ExecuteStatement", "BatchExecuteStatement", "ListDatabases", "ListSchemas", "ListTables", "DescribeTable"}
)
REFUSALS: dict[str, type[DataApiError]] = {
    "ValidationException": ValidationException,
    "InternalServerException": InternalServerException,
    "DatabaseConnectionException": DatabaseConnectionException,
}
#: The error of a statement a reboot ended as FAILED (Redshift's own wording is not documented)
REBOOT_ERROR = "ERROR: Query terminated: the cluster was rebooted while the statement ran."


class Outage:
    def __init__(self, store: StatementStore, sessions: SessionRegistry, runner: StatementRunner) -> None:
        self._store = store
        self._sessions = sessions
        self._runner = runner
        self._lock = threading.Lock()
        self._refusal: tuple[type[DataApiError], str] | None = None
        #: calls refused per operation while unavailable, and the statements reboots ended (for tests)
        self.refused: dict[str, int] = {}
        self.interrupted: list[str] = []

    @property
    def unavailable(self) -> bool:
        return self._refusal is not None

    def begin(self, *, code: str = "ValidationException", state: str = "rebooting") -> None:
        """From now on, refuse the calls that need the warehouse with ``code``, naming its ``state``."""
        with self._lock:
            self._refusal = (REFUSALS[code], state)

    def end(self) -> None:
        """The warehouse is back: every call is served again."""
        with self._lock:
            self._refusal = None

    def admit(self, operation: str, body: dict[str, Any]) -> None:
        """Raise the refusal for ``operation`` while the warehouse is unavailable and the call needs it."""
        refusal = self._refusal
        if refusal is None or operation not in NEEDS_WAREHOUSE:
            return
        error, state = refusal
        with self._lock:
            self.refused[operation] = self.refused.get(operation, 0) + 1
        if body.get("WorkgroupName"):
            target = f"Workgroup {body['WorkgroupName']}"
        elif body.get("ClusterIdentifier"):
            target = f"Cluster {body['ClusterIdentifier']}"
        else:  # a statement in a session names neither: the session carries its cluster or workgroup
            target = f"The cluster or workgroup of session {body.get('SessionId', '')}"
        raise error(f"{target} is not available: its status is {state}. Try again once it is available.")

    def reboot(self, *, status: str = FAILED, with_events: bool = True, timeout: float = 30) -> list[str]:
        """End every statement not yet ended, as a reboot does (``status`` FAILED or ABORTED; ``with_events=False``:
        no completion event for them), and close every session. Returns the ids of the statements it ended, once
        they have (each within ``timeout`` seconds)."""
        if status not in (FAILED, ABORTED):
            raise ValueError("a reboot ends statements FAILED or ABORTED")
        error = REBOOT_ERROR if status == FAILED else None
        ending = [s for s in self._store.all() if s.status in ACTIVE]
        for statement in ending:
            self._runner.interrupt(statement, status, error, with_event=with_events)
        self._sessions.end_all()
        deadline = time.monotonic() + timeout
        for statement in ending:
            # an interrupt that reached the backend before its query did is lost: PostgreSQL cancels only what runs
            while not statement.done.wait(0.1) and time.monotonic() < deadline:
                self._runner.interrupt(statement, status, error, with_event=with_events)
        ended = [s.id for s in ending]
        self.interrupted += ended
        return ended
