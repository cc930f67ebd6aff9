"""Data API sessions: one database connection kept open between statements for its keep-alive time.

A session runs one statement at a time; a second statement while it is busy is rejected (ValidationException, as
AWS does), and so is a session id that is unknown, expired or closed. The keep-alive clock restarts when a statement
finishes; the reaper closes idle sessions whose time is up, together with their connection (so temporary tables and
session settings go with it, as on Redshift).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg

from .errors import ActiveSessionsExceededException, ValidationException
from .statements import Identity

log = logging.getLogger(__name__)

#: "The maximum time a session can keep alive is 24 hours. After 24 hours, the session is forced closed" (the Data
#: API's SessionKeepAliveSeconds): counted from its opening, however busy it was kept. (A statement still running then
#: is not terminated here; it ends as it would.)
MAX_SESSION_SECONDS = 24 * 3600


@dataclass
class Session:
    id: str
    identity: Identity
    keep_alive_seconds: int
    created_at: float = field(default_factory=time.time)
    expires_at: float = 0.0
    busy_with: str | None = None  # statement id while a statement runs
    closed: bool = False
    connection: Any = field(default=None, repr=False)  # opened lazily by the first statement's worker

    def close(self) -> None:
        self.closed = True
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:
                log.warning("closing the connection of session %s failed", self.id, exc_info=True)
            self.connection = None


def _alive(connection) -> bool:
    """Whether an idle session's connection still reaches its backend: one ended while the session idled (an
    administrator's pg_terminate_backend, a restart) is otherwise seen only when next used, and the statement naming
    the session fails with the connection's error. Read without blocking (libpq's
    PQconsumeInput), it is told now, and the session is refused "not available" as an ended one is."""
    if connection is None:  # opened by its first statement's worker
        return True
    if connection.closed:
        return False
    try:
        # twice: the first read takes the backend's last word (its FATAL error), the second finds the socket closed
        connection.pgconn.consume_input()
        connection.pgconn.consume_input()
    except psycopg.OperationalError:
        return False
    return connection.pgconn.status == psycopg.pq.ConnStatus.OK


class SessionRegistry:
    def __init__(self, max_sessions: int) -> None:
        self._max = max_sessions
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def open(self, identity: Identity, keep_alive_seconds: int, statement_id: str) -> Session:
        """A new session, already busy with ``statement_id``."""
        with self._lock:
            if sum(1 for s in self._sessions.values() if not s.closed) >= self._max:
                raise ActiveSessionsExceededException(
                    f"The maximum number of active sessions ({self._max}) is reached. Reuse a session or wait for "
                    "idle sessions to expire."
                )
            session = Session(id=str(uuid.uuid4()), identity=identity, keep_alive_seconds=keep_alive_seconds)
            session.busy_with = statement_id
            self._sessions[session.id] = session
            return session

    def acquire(self, session_id: str, statement_id: str, keep_alive_seconds: int | None) -> Session:
        """Mark an existing session busy with ``statement_id``; reject it when unknown, closed or busy."""
        with self._lock:
            session = self._sessions.get(session_id)
            now = time.time()
            idle_out = session is not None and session.busy_with is None and session.expires_at <= now
            too_old = session is not None and session.created_at + MAX_SESSION_SECONDS <= now
            dead = session is not None and session.busy_with is None and not _alive(session.connection)
            if dead:
                session.close()
            if session is None or session.closed or idle_out or too_old:
                raise ValidationException(
                    f"Session {session_id} is not available: it does not exist, has expired or was closed. "
                    "Start a new session with SessionKeepAliveSeconds."
                )
            if session.busy_with is not None:
                raise ValidationException(
                    f"Session {session_id} is busy running statement {session.busy_with}. A session runs one "
                    "statement at a time: wait until it finishes, or use another session."
                )
            session.busy_with = statement_id
            if keep_alive_seconds is not None:
                session.keep_alive_seconds = keep_alive_seconds
            return session

    def release(self, session: Session) -> None:
        """The statement ended: the keep-alive clock starts again (or the session closes if its connection died)."""
        with self._lock:
            session.busy_with = None
            session.expires_at = min(time.time() + session.keep_alive_seconds, session.created_at + MAX_SESSION_SECONDS)
            if (
                session.closed
                or session.connection is None
                or session.connection.closed
                or session.keep_alive_seconds <= 0
            ):
                session.close()

    def reap(self, now: float) -> None:
        with self._lock:
            idle = [s for s in self._sessions.values() if not s.closed and s.busy_with is None and s.expires_at <= now]
            for session in idle:
                session.closed = True
            # keep closed sessions around briefly so a late caller gets "expired", then forget them
            for sid in [sid for sid, s in self._sessions.items() if s.closed and s.expires_at + 3600 < now]:
                del self._sessions[sid]
        for session in idle:
            log.info("session %s expired", session.id)
            session.close()

    def expire(self, session_id: str) -> bool:
        """End an idle session now, as its keep-alive running out would (tests use it instead of waiting). False when
        there is no such open session, or it is running a statement."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or session.closed or session.busy_with is not None:
                return False
            session.closed = True
            session.expires_at = min(session.expires_at, time.time())
        log.info("session %s ended on request", session.id)
        session.close()
        return True

    def end_all(self) -> None:
        """End every session now, as a reboot does (outage.py): idle ones close at once, busy ones when their
        statement ends. Later statements naming one are refused "not available"."""
        now = time.time()
        with self._lock:
            ending = [s for s in self._sessions.values() if not s.closed]
            for session in ending:
                session.closed = True
                session.expires_at = min(session.expires_at, now) if session.expires_at else now
        for session in ending:
            if session.busy_with is None:
                session.close()
        log.info("%d sessions ended by a reboot", len(ending))

    def close_all(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()

    def release_without_use(self, session: Session) -> None:
        """Undo ``acquire``/``open`` for a statement that was rejected before it could run."""
        with self._lock:
            session.busy_with = None
            never_used = session.connection is None and session.expires_at == 0.0
        if never_used:
            session.close()

    def describe_all(self) -> list[dict[str, Any]]:
        with self._lock:
            sessions = list(self._sessions.values())
        described = []
        for s in sessions:
            status = "CLOSED" if s.closed else ("BUSY" if s.busy_with else "AVAILABLE")
            data: dict[str, Any] = {"SessionId": s.id, "Status": status, "CreatedAt": s.created_at}
            optional = {
                "Database": s.identity.database,
                "ClusterIdentifier": s.identity.cluster_identifier,
                "WorkgroupName": s.identity.workgroup_name,
                "CurrentStatementId": s.busy_with,
            }
            data.update({k: v for k, v in optional.items() if v is not None})
            described.append(data)
        return described
