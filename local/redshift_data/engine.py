"""The PostgreSQL behind the emulator: start it (or adopt one), bootstrap it, hand out connections per user.

By default an embedded PostgreSQL 16 from the ``pgserver`` wheel runs on a unix socket in a data folder; given a URL,
an existing server is used instead. Either way the engine makes sure Redshift's defaults exist: database ``dev`` and a
SUPERUSER ``awsuser``, so tests can create schemas, users and row-level security policies through the Data API itself.

Statements run on connections opened *as* the statement's database user (``user=<DbUser>`` in the conninfo), never
through ``SET ROLE``: row-level security applies and nothing in the SQL can switch back to a privileged role.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

log = logging.getLogger(__name__)

APPLICATION_NAME = "redshift-data-emulator"
CONNECT_TIMEOUT_SECONDS = 5
#: Connections beyond the sessions' and the workers' that callers may hold at once: catalog calls (each connects for
#: its answer, on a request thread) and tests or tools peeking as the admin.
CONNECTION_HEADROOM = 40
#: The connections PostgreSQL keeps for superusers (and, from version 16, for pg_use_reserved_connections).
#: An embedded server's memory for bulk work, instead of PostgreSQL's defaults sized for a small shared host (4 MB
#: work_mem, 8 MB temp_buffers, 128 MB shared_buffers). With those, a bulk job's hash joins and aggregates over a
#: staging table of millions of rows spill to temporary files and the staging table itself is evicted to disk page by
#: page; Redshift's nodes do that work in memory. The values are ceilings, taken only by a query that needs them
#: (temp_buffers per session, as its temporary tables grow), and they apply to every statement alike, the benchmarks'
#: baseline ``COPY FROM STDIN`` included. Reloadable settings first; the restart-only ones after.
BULK_SETTINGS = {"work_mem": "256MB", "maintenance_work_mem": "256MB", "temp_buffers": "1GB"}
BULK_RESTART_SETTINGS = {"shared_buffers": "512MB", "wal_buffers": "32MB"}
#: Redshift's defaults where PostgreSQL's differ: initdb takes the machine's time zone, so on a machine that is not
#: on UTC a timestamp without an offset was read into TIMESTAMPTZ as local time and printed with the machine's offset;
#: Redshift's ``timezone`` defaults to UTC (a tenant's ``ALTER USER ... SET timezone`` still overrides it).
REDSHIFT_SETTINGS = {"TimeZone": "UTC"}
_RESERVED = (
    "(current_setting('superuser_reserved_connections')::int"
    " + coalesce(current_setting('reserved_connections', true), '0')::int)"
)


@dataclass
class Engine:
    """Connection factory for one PostgreSQL server; ``base`` holds host/port/options shared by every connection."""

    base: dict[str, Any]
    admin_user: str
    default_database: str
    _server: Any = field(default=None, repr=False)  # pgserver.PostgresServer when embedded
    _temp_dir: str | None = field(default=None, repr=False)

    def conninfo(self, user: str, database: str, password: str | None = None) -> str:
        params = {**self.base, "user": user, "dbname": database}
        if password is not None:
            params["password"] = password
        return make_conninfo(**params)

    @property
    def admin_conninfo(self) -> str:
        return self.conninfo(self.admin_user, self.default_database)

    def connect(self, user: str, database: str, password: str | None = None) -> psycopg.Connection:
        """Open an autocommit connection logged in as ``user``; callers open transactions explicitly."""
        return psycopg.connect(
            self.conninfo(user, database, password),
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=APPLICATION_NAME,
        )

    def connection_capacity(self) -> int:
        """How many connections ordinary (not superuser) roles may hold at once: what tenants' statements and
        sessions can use."""
        with self.connect(self.admin_user, self.default_database) as conn:
            row = conn.execute(f"SELECT current_setting('max_connections')::int - {_RESERVED}").fetchone()
        return int(row[0]) if row else 0

    def stop(self) -> None:
        if self._server is not None:
            if self._temp_dir is not None:
                _stop_immediately(self._server)  # the data is thrown away: no shutdown checkpoint needed
            try:
                self._server.cleanup()
            except Exception:  # stopping is best effort: the process may already be gone
                log.exception("stopping the embedded PostgreSQL failed")
            self._server = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None


def start_engine(
    database_url: str | None,
    data_dir: str | None,
    admin_user: str,
    default_database: str,
    *,
    connections: int = 0,
) -> Engine:
    """Start (or adopt) PostgreSQL and create the admin role and the default database if they are missing.

    ``connections``: how many connections ordinary roles must be able to hold at once. An embedded server is given
    that many (PostgreSQL's default of 100 is far below the 500 sessions the Data API allows, and each kept-alive
    session holds a connection: past it, statements would fail "too many clients" where AWS runs them). An adopted
    server is left as it is; :meth:`Engine.connection_capacity` tells what it allows."""
    if database_url:
        params = conninfo_to_dict(database_url)
        bootstrap = make_conninfo(**params)
        base = {k: v for k, v in params.items() if k not in ("user", "dbname", "password")}
        engine = Engine(base=base, admin_user=admin_user, default_database=default_database)
    else:
        pgserver = _pgserver()
        temp_dir = None
        if data_dir is None:
            temp_dir = data_dir = tempfile.mkdtemp(prefix="redshift-data-pg-", dir=_memory_backed_temp_root())
        server = pgserver.get_server(data_dir, cleanup_mode="stop")
        params = conninfo_to_dict(server.get_uri("postgres"))
        bootstrap = make_conninfo(**params)
        base = {k: v for k, v in params.items() if k not in ("user", "dbname", "password")}
        engine = Engine(
            base=base,
            admin_user=admin_user,
            default_database=default_database,
            _server=server,
            _temp_dir=temp_dir,
        )
    try:
        restart = _bootstrap(
            bootstrap,
            admin_user,
            default_database,
            disposable=engine._temp_dir is not None,
            connections=connections if engine._server is not None else 0,
            tune=engine._server is not None,
        )
        if restart:
            _restart(engine)
    except Exception:
        engine.stop()
        raise
    return engine


def _pgserver() -> Any:
    """The ``pgserver`` module, imported only when embedding (a wheel of binaries). Importing it asks platformdirs for
    the user's runtime folder (for its lock file), which warns where ``XDG_RUNTIME_DIR`` is unset (CI, containers, a
    root shell) before it falls back to ``/tmp/runtime-<uid>``: that folder serves, so ``make run`` does not open
    with the warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pgserver
    return pgserver


def _restart(engine: Engine) -> None:
    """Stop the embedded server and start it again on the same data folder (``max_connections`` is read only when
    the server starts)."""
    pgserver = _pgserver()
    pgdata = str(engine._server.pgdata)
    engine._server.cleanup()
    engine._server = pgserver.get_server(pgdata, cleanup_mode="stop")
    params = conninfo_to_dict(engine._server.get_uri("postgres"))
    engine.base = {k: v for k, v in params.items() if k not in ("user", "dbname", "password")}


def _memory_backed_temp_root() -> str | None:
    """/dev/shm when it is usable: initdb and deleting a data folder (about 1,300 files) take milliseconds on tmpfs
    and seconds on some container overlay filesystems. None = the platform's default temp folder."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def _stop_immediately(server: Any) -> None:
    """SIGQUIT to the postmaster: PostgreSQL's "immediate" shutdown, for a data folder about to be deleted.

    Waiting for ``postmaster.pid`` to vanish (not for the process) matters in containers whose init does not reap
    orphans: the postmaster lingers as a zombie, and pgserver's own stop would wait on it for seconds.
    """
    pid_file = os.path.join(str(server.pgdata), "postmaster.pid")
    try:
        os.kill(server.get_pid(), signal.SIGQUIT)
        deadline = time.monotonic() + 5
        while os.path.exists(pid_file) and time.monotonic() < deadline:
            time.sleep(0.01)
    except (ProcessLookupError, TypeError, ValueError):
        return  # already gone: let pgserver's cleanup run as usual
    except Exception:
        log.warning("immediate stop of the embedded PostgreSQL failed", exc_info=True)
        return
    if not os.path.exists(pid_file):
        server.cleanup_mode = None  # stopped already: pgserver only has to drop its handle


#: PostgreSQL functions Redshift does not have, through which a statement the SQL guard reads as a plain query could
#: leave state in a kept-alive session or write: ``ts_stat``, ``ts_rewrite`` and the ``*_to_xml`` family run SQL
#: given as a string (``set_config`` hidden in a literal), session-level advisory locks and ``setseed`` outlive the
#: statement, large objects and ``pg_logical_emit_message`` (a message in the write-ahead log, kept even when the
#: statement rolls back) are committed writes, and an UPDATE of ``pg_settings`` (through a view a writer tenant
#: may create) is ``set_config``. Tenants are not superusers, so revoked from PUBLIC they are refused, as on Redshift;
#: the emulator's own calls (transaction-level advisory locks, ``set_config``) stay.
CLOSE_POSTGRES_ONLY_DOORS = r"""
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'pg_catalog' AND (
            p.proname IN ('ts_stat', 'ts_rewrite', 'setseed', 'pg_advisory_lock', 'pg_advisory_lock_shared',
                          'pg_try_advisory_lock', 'pg_try_advisory_lock_shared', 'loread', 'lowrite',
                          'pg_logical_emit_message')
            OR p.proname LIKE 'lo\_%' OR p.proname LIKE '%\_to\_xml%')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;
REVOKE UPDATE ON pg_catalog.pg_settings FROM PUBLIC;
"""


def _bootstrap(
    conninfo: str, admin_user: str, database: str, *, disposable: bool, connections: int = 0, tune: bool = False
) -> bool:
    """Make the admin role and the default database; True when a setting just changed needs a restart.

    ``tune``: an embedded server, given :data:`REDSHIFT_SETTINGS` and :data:`BULK_SETTINGS` (an adopted server keeps
    its administrator's)."""
    restart = False
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
        if disposable:
            # A throw-away data folder needs no crash safety: skipping fsync makes DDL and commits much cheaper.
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                conn.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting)))
        if tune:
            for setting, value in {**REDSHIFT_SETTINGS, **BULK_SETTINGS, **BULK_RESTART_SETTINGS}.items():
                conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(setting), sql.Literal(value)))
            restart = any(_setting_differs(conn, name, value) for name, value in BULK_RESTART_SETTINGS.items())
        if disposable or tune:
            conn.execute("SELECT pg_reload_conf()")
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (admin_user,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} SUPERUSER LOGIN").format(sql.Identifier(admin_user)))
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(admin_user))
            )
        if tune:  # every database a request may name; template1 too: CREATE DATABASE copies it
            for (dbname,) in conn.execute("SELECT datname FROM pg_database WHERE datallowconn").fetchall():
                with psycopg.connect(make_conninfo(conninfo, dbname=dbname), autocommit=True) as db:
                    db.execute(CLOSE_POSTGRES_ONLY_DOORS)
        if connections:
            row = conn.execute(f"SELECT current_setting('max_connections')::int, {_RESERVED}").fetchone()
            current, reserved = (int(row[0]), int(row[1])) if row else (0, 0)
            wanted = connections + reserved
            if current < wanted:
                conn.execute(sql.SQL("ALTER SYSTEM SET max_connections = {}").format(sql.Literal(wanted)))
                restart = True
    return restart


def _setting_differs(conn: psycopg.Connection, name: str, value: str) -> bool:
    """Whether the running server's ``name`` is not ``value`` (compared in the setting's own unit)."""
    row = conn.execute(
        "SELECT setting::bigint * CASE WHEN unit ~ '^[0-9]' THEN pg_size_bytes(unit)"
        " ELSE pg_size_bytes('1' || unit) END <> pg_size_bytes(%s)"
        " FROM pg_settings WHERE name = %s",
        (value, name),
    ).fetchone()
    return bool(row and row[0])
