"""The PostgreSQL behind the emulator: start it (or adopt one), bootstrap it, hand out connections per user.

By default an embedded PostgreSQL 16 from the ``pgserver`` wheel runs on a unix socket in a data folder; given a URL,
an existing server is used instead. Either way the engine makes sure Redshift's defaults exist: database ``dev`` and a
SUPERUSER ``awsuser``, so tests can create schemas, users and row-level security policies through the Data API itself.

Statements run on connections opened *as* the statement's database user (``user=<DbUser>`` in the conninfo), never
through ``SET ROLE``: row-level security applies and nothing in the SQL can switch back to a privileged role.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

log = logging.getLogger(__name__)

APPLICATION_NAME = "redshift-data-emulator"
CONNECT_TIMEOUT_SECONDS = 5


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

    def stop(self) -> None:
        if self._server is not None:
            try:
                self._server.cleanup()
            except Exception:  # stopping is best effort: the process may already be gone
                log.exception("stopping the embedded PostgreSQL failed")
            self._server = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None


def start_engine(database_url: str | None, data_dir: str | None, admin_user: str, default_database: str) -> Engine:
    """Start (or adopt) PostgreSQL and create the admin role and the default database if they are missing."""
    if database_url:
        params = conninfo_to_dict(database_url)
        bootstrap = make_conninfo(**params)
        base = {k: v for k, v in params.items() if k not in ("user", "dbname", "password")}
        engine = Engine(base=base, admin_user=admin_user, default_database=default_database)
    else:
        import pgserver  # heavy import (binaries wheel): only when embedding

        temp_dir = None
        if data_dir is None:
            temp_dir = data_dir = tempfile.mkdtemp(prefix="redshift-data-pg-")
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
        _bootstrap(bootstrap, admin_user, default_database)
    except Exception:
        engine.stop()
        raise
    return engine


def _bootstrap(conninfo: str, admin_user: str, database: str) -> None:
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (admin_user,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} SUPERUSER LOGIN").format(sql.Identifier(admin_user)))
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(admin_user))
            )
