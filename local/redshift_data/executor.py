"""Runs statements on a bounded worker pool: SUBMITTED → PICKED → STARTED → FINISHED | FAILED | ABORTED.

Connections: a statement outside a session opens its own connection as its user, runs, and closes it (a connection
to a local PostgreSQL over a unix socket costs a few milliseconds, and a fresh connection can never leak session
state, SET commands or temporary tables between tenants). A session statement uses the session's connection.

Atomicity: a statement, or all statements of a batch, run in one transaction, so a failure mid-way leaves no partial
writes. Statements PostgreSQL refuses inside a transaction block (CREATE DATABASE, VACUUM) are retried on their own.

Every SQL first goes through ``redshift_sql.run_redshift_statement`` (COPY from S3, UNLOAD to S3) and
``redshift_sql.translate_sql`` (GETDATE, NVL, ...), then to PostgreSQL with its parameters bound.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from .config import EmulatorConfig
from .engine import Engine
from .events import EventPublisher
from .params import bind_parameters
from .results import ResultTooLarge, ResultWriter, columns_from_cursor, configure_text_loading, enrich_columns
from .sessions import Session, SessionRegistry
from .statements import ABORTED, FAILED, FINISHED, PICKED, STARTED, Statement, StatementStore
from .streaming import StreamingCursor

try:  # the Redshift-only statements (COPY/UNLOAD with S3, GETDATE, NVL...); without them SQL goes to PostgreSQL as is
    from .redshift_sql import RedshiftSqlError, install_system_tables, run_redshift_statement, translate_sql
except ImportError:  # pragma: no cover - depends on the checkout

    class RedshiftSqlError(Exception):  # type: ignore[no-redef]
        pass

    def run_redshift_statement(sql: str, conn: Any, s3_client: Any) -> Any:
        return None

    def translate_sql(sql: str) -> str:
        return sql

    def install_system_tables(conn: Any) -> None:
        return None


log = logging.getLogger(__name__)


def prepare_database(engine: Engine) -> None:
    """Redshift's system tables the Redshift-only statements write to (``stl_load_errors``), in the default database."""
    with engine.connect(engine.admin_user, engine.default_database) as conn:
        install_system_tables(conn)


class Cancelled(Exception):
    """CancelStatement arrived while the statement ran; raised to roll its transaction back."""


def _cancel_backend(statement: Statement, doing: str) -> None:
    """A cancel request to the backend running ``statement``, if it runs (its worker then ends it as asked)."""
    conn = statement.connection
    if conn is not None:
        try:
            conn.cancel_safe(timeout=5)
        except Exception:
            log.warning("%s %s failed", doing, statement.id, exc_info=True)


class StatementRunner:
    def __init__(
        self,
        config: EmulatorConfig,
        engine: Engine,
        store: StatementStore,
        sessions: SessionRegistry,
        events: EventPublisher,
        s3_client_factory: Callable[[], Any],
        spool_dir: str,
    ) -> None:
        self._config = config
        self._engine = engine
        self._store = store
        self._sessions = sessions
        self._events = events
        self._s3_client_factory = s3_client_factory
        self._s3_client: Any = None
        self._spool_dir = spool_dir
        self._pool = ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="redshift-data-worker")

    def submit(self, statement: Statement, session: Session | None) -> None:
        self._pool.submit(self._run_safely, statement, session)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def interrupt(self, statement: Statement, status: str, error: str | None, *, with_event: bool) -> None:
        """End a statement as a reboot does (outage.py): ``status`` with ``error``, whatever it was doing, and its
        completion event only ``with_event``. Not a cancel: nobody asked for it."""
        statement.interrupted = (status, error)
        statement.event_suppressed = not with_event
        _cancel_backend(statement, "interrupting")

    def cancel(self, statement: Statement) -> None:
        """Ask a running statement to stop: a cancel request to its backend, then the worker marks it ABORTED."""
        statement.cancel_requested = True
        _cancel_backend(statement, "cancel request for")

    @property
    def s3_client(self) -> Any:
        if self._s3_client is None:
            self._s3_client = self._s3_client_factory()
        return self._s3_client

    # -- the worker -------------------------------------------------------------------------------------------------

    def _run_safely(self, statement: Statement, session: Session | None) -> None:
        try:
            self._run(statement, session)
        except Exception as exc:  # a bug here must still end the statement, or callers poll forever
            log.exception("statement %s crashed the worker", statement.id)
            self._finish(statement, FAILED, f"Internal error in the Data API emulator: {exc}")
        finally:
            statement.connection = None
            if session is not None:
                self._sessions.release(session)
            self._store.expire_after(statement)
            for unit in (*statement.children, statement):
                unit.done.set()
            if statement.with_event and not statement.event_suppressed:
                self._events.publish(statement)

    def _run(self, statement: Statement, session: Session | None) -> None:
        if statement.interrupted:  # a reboot before it started (outage.py)
            self._finish(statement, *statement.interrupted)
            return
        if statement.cancel_requested:
            self._finish(statement, ABORTED, None)
            return
        statement.set_status(PICKED)
        try:
            conn = self._connection_for(statement, session)
        except psycopg.Error as exc:
            self._finish(statement, FAILED, _message(exc))
            return
        try:
            statement.connection = conn
            statement.redshift_pid = conn.info.backend_pid
            statement.start_clock()
            statement.set_status(STARTED)
            if statement.interrupted:
                self._finish(statement, *statement.interrupted)
                return
            if statement.cancel_requested:
                self._finish(statement, ABORTED, None)
                return
            self._execute_all(statement, conn)
        finally:
            statement.connection = None
            if session is None:
                conn.close()

    def _connection_for(self, statement: Statement, session: Session | None) -> psycopg.Connection:
        ident = statement.identity
        if session is None:
            return self._engine.connect(ident.user, ident.database, ident.password)
        if session.connection is None or session.connection.closed:
            session.connection = self._engine.connect(ident.user, ident.database, ident.password)
        return session.connection

    def _execute_all(self, statement: Statement, conn: psycopg.Connection) -> None:
        units = statement.children if statement.is_batch else [statement]
        params = {p["name"]: p["value"] for p in statement.parameters or []}
        current: Statement | None = None
        try:
            try:
                with conn.transaction():
                    for unit in units:
                        current = unit
                        self._execute_unit(statement, unit, conn, params)
            except pg_errors.ActiveSqlTransaction:
                # e.g. CREATE DATABASE / VACUUM: PostgreSQL runs these only outside a transaction block
                if statement.is_batch:
                    raise
                current = statement
                self._execute_unit(statement, statement, conn, params)
        except (Cancelled, pg_errors.QueryCanceled) as exc:
            if statement.interrupted:  # a reboot (outage.py): its status and message, whatever was asked
                self._fail_units(units, current, *statement.interrupted)
                self._finish(statement, *statement.interrupted)
            elif statement.cancel_requested:
                self._fail_units(units, current, ABORTED, None)
                self._finish(statement, ABORTED, None)
            else:  # statement_timeout or an administrator's cancel: a failure like any other
                self._fail_units(units, current, FAILED, _message(exc))
                self._finish(statement, FAILED, _message(exc))
            return
        except (psycopg.Error, ResultTooLarge, RedshiftSqlError) as exc:  # the user's error, not the emulator's
            message = _message(exc)
            self._fail_units(units, current, FAILED, message)
            self._finish(statement, FAILED, message)
            return
        finally:
            if current is not None and statement.is_batch:
                statement.stop_clock()
        if statement.is_batch:  # a batch answers for its statements: their counts summed, any result set
            statement.result_rows = sum(max(u.result_rows, 0) for u in units)
            statement.result_size = sum(max(u.result_size, 0) for u in units)
            statement.has_result_set = any(u.has_result_set for u in units)
        self._finish(statement, FINISHED, None)

    def _execute_unit(self, statement: Statement, unit: Statement, conn: psycopg.Connection, params: dict) -> None:
        if unit is not statement:
            unit.start_clock()
            unit.set_status(STARTED)
        writer: ResultWriter | None = None
        try:
            outcome = run_redshift_statement(unit.sql, conn, self.s3_client)
            if outcome is not None:
                unit.result_rows = int(outcome.rows_affected)
                unit.result_size = 0
            else:
                sql = translate_sql(unit.sql)
                query, values = bind_parameters(sql, params) if params else (sql, None)
                writer = self._run_sql(unit, conn, query, values, statement.result_format)
            if statement.cancel_requested or statement.interrupted:
                raise Cancelled()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer is not None:
            enrich_columns(conn, writer.result.columns)  # after the stream: the connection is free again
            unit.result = writer.close()
            unit.has_result_set = True
            unit.result_rows = unit.result.total_rows
            unit.result_size = unit.result.size_bytes
        if unit is not statement:
            unit.stop_clock()
            unit.set_status(FINISHED)

    def _run_sql(
        self, unit: Statement, conn: psycopg.Connection, query: str, values: list[str] | None, result_format: str
    ) -> ResultWriter | None:
        """Stream the statement's rows in chunks into a spooled result; a command just reports its row count."""
        cur = StreamingCursor(conn)
        configure_text_loading(cur, everything=result_format == "CSV")
        chunk = self._config.fetch_batch_rows
        writer: ResultWriter | None = None
        batch: list[Any] = []
        try:
            for row in cur.stream(query, values, size=chunk):
                if writer is None:
                    writer = self._writer(unit, cur, result_format)
                batch.append(row)
                if len(batch) >= chunk:
                    writer.write_rows(batch)
                    batch = []
            if cur.description is None:  # a command: no result set
                unit.result_rows = max(cur.command_rows, 0)
                unit.result_size = 0
                return None
            if writer is None:  # an empty result still has columns
                writer = self._writer(unit, cur, result_format)
            writer.write_rows(batch)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        return writer

    def _writer(self, unit: Statement, cur: psycopg.Cursor, result_format: str) -> ResultWriter:
        cfg = self._config
        return ResultWriter(
            os.path.join(self._spool_dir, unit.id.replace(":", "_") + ".result"),
            result_format,
            columns_from_cursor(cur),
            page_max_bytes=cfg.page_max_bytes,
            page_max_rows=cfg.page_max_rows,
            max_result_bytes=cfg.max_result_bytes,
            max_row_bytes=cfg.max_row_bytes,
        )

    def _fail_units(self, units: list[Statement], current: Statement | None, status: str, error: str | None) -> None:
        """Batch bookkeeping: the failing statement carries the error, the ones after it never ran (ABORTED)."""
        if len(units) == 1:
            return
        reached = False
        for unit in units:
            if unit is current:
                reached = True
                unit.stop_clock()
                unit.error = error
                unit.set_status(status)
            elif reached:
                unit.set_status(ABORTED)

    def _finish(self, statement: Statement, status: str, error: str | None) -> None:
        statement.stop_clock()
        statement.error = error
        statement.set_status(status)


def _message(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        diag = exc.diag
        text = f"ERROR: {diag.message_primary}"
        if diag.message_detail:
            text += f"\n  Detail: {diag.message_detail}"
        if diag.message_hint:
            text += f"\n  Hint: {diag.message_hint}"
        return text
    return str(exc).strip() or type(exc).__name__
