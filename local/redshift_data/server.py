"""The HTTP face of the emulator (AWS JSON 1.1) and its lifecycle: ``start_emulator`` → ``Emulator.stop``.

botocore sends ``POST /`` with ``X-Amz-Target: RedshiftData.<Operation>`` and a JSON body. Responses are JSON; errors
are ``{"__type": ..., "message": ...}`` with status 400 (client errors) or 500 (faults), which botocore turns into
the modelled exception classes. Any unexpected exception becomes an InternalServerException: the server keeps
serving.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from ..loopback import local_callers_only
from .config import EmulatorConfig
from .engine import CONNECTION_HEADROOM, Engine, start_engine
from .errors import DataApiError, InternalServerException, SerializationException, UnknownOperationException
from .events import EventPublisher
from .executor import StatementRunner, prepare_database
from .outage import Outage
from .quotas import RateLimits
from .service import DataApiService
from .sessions import SessionRegistry
from .statements import StatementStore

log = logging.getLogger(__name__)

TARGET_PREFIX = "RedshiftData."
CONTENT_TYPE = "application/x-amz-json-1.1"
_ACCESS_KEY = re.compile(r"Credential=([^/,\s]+)/")
HOUSEKEEPING_INTERVAL_SECONDS = 0.25


class _RequestHandler(WSGIRequestHandler):
    """No access log: one line per DescribeStatement poll drowns everything else the local stack prints."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def make_app(service: DataApiService, account_id: str):
    """The WSGI application: one POST endpoint dispatching on X-Amz-Target."""

    def app(environ, start_response):
        request = Request(environ)
        request_id = str(uuid.uuid4())
        try:
            body = _dispatch(service, request, account_id)
            response = Response(body, status=200, content_type=CONTENT_TYPE)
        except DataApiError as exc:
            response = Response(json.dumps(exc.body()), status=exc.status, content_type=CONTENT_TYPE)
        except Exception as exc:
            log.exception("unexpected error in %s", request.headers.get("X-Amz-Target"))
            error = InternalServerException(f"The Data API emulator failed: {exc}")
            response = Response(json.dumps(error.body()), status=error.status, content_type=CONTENT_TYPE)
        response.headers["x-amzn-RequestId"] = request_id
        return response(environ, start_response)

    return app


def _dispatch(service: DataApiService, request: Request, account_id: str) -> str:
    target = request.headers.get("X-Amz-Target", "")
    operation = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else ""
    handler = service.operations.get(operation)
    if request.method != "POST" or handler is None:
        raise UnknownOperationException(
            f"Unknown operation {target!r}: send POST / with X-Amz-Target RedshiftData.<Operation>, one of "
            + ", ".join(sorted(service.operations))
        )
    raw = request.get_data(cache=False)
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise SerializationException(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise SerializationException("The request body must be a JSON object.")
    match = _ACCESS_KEY.search(request.headers.get("Authorization", ""))
    caller = f"arn:aws:iam::{account_id}:user/{match.group(1) if match else 'anonymous'}"
    service.rate_limits.admit(operation)
    if service.outage is not None:
        service.outage.admit(operation, body)
    result = handler(body, caller)
    return result if isinstance(result, str) else json.dumps(result)


@dataclass
class Emulator:
    """A running emulator. ``endpoint_url`` is for boto3; ``admin_database_url`` lets tests peek with psycopg."""

    endpoint_url: str
    admin_database_url: str
    config: EmulatorConfig
    _server: BaseWSGIServer = field(repr=False)
    _engine: Engine = field(repr=False)
    _runner: StatementRunner = field(repr=False)
    _sessions: SessionRegistry = field(repr=False)
    _store: StatementStore = field(repr=False)
    _spool_dir: str = field(repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    #: the request-rate quotas in force (``rate_limits.throttled`` counts refusals per operation)
    rate_limits: RateLimits = field(default_factory=lambda: RateLimits(None), repr=False)
    #: the completion events (``events.drop_rate`` may be changed while running; ``events.dropped`` lists them)
    events: EventPublisher | None = field(default=None, repr=False)
    #: the warehouse taken away and given back (``outage.begin()``, ``outage.reboot()``, ``outage.end()``: outage.py)
    outage: Outage | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._runner.shutdown()
        self._sessions.close_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self._engine.stop()
        shutil.rmtree(self._spool_dir, ignore_errors=True)

    def end_session(self, session_id: str) -> bool:
        """End an idle session as if its keep-alive had run out: later statements naming it are refused "not
        available", as AWS refuses a reclaimed session. For tests of what callers do then."""
        return self._sessions.expire(session_id)

    def expire_statement(self, statement_id: str) -> bool:
        """Let a terminal statement's result retention run out now, as 24 hours would: DescribeStatement and the
        result calls then answer ValidationException "... has expired after ...", as AWS does. For tests of what
        callers do with a statement the Data API no longer keeps. False when there is no such ended statement."""
        if not self._store.expire_now(statement_id):
            return False
        _forget_expired(self, time.time())
        return True

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_emulator(config: EmulatorConfig | None = None) -> Emulator:
    """Start PostgreSQL (or adopt one), the worker pool and the HTTP server; return once requests are served."""
    config = config or EmulatorConfig()
    # Every session holds a connection for its keep-alive, and every worker one while its statement runs: PostgreSQL
    # must hold them all, or statements fail "too many clients" where AWS runs them.
    needed = config.max_active_sessions + config.max_workers + CONNECTION_HEADROOM
    engine = start_engine(
        config.database_url, config.data_dir, config.admin_user, config.default_database, connections=needed
    )
    spool_dir = tempfile.mkdtemp(prefix="redshift-data-results-")
    try:
        prepare_database(engine)
        store = StatementStore(config.result_ttl_seconds)
        sessions = SessionRegistry(_session_quota(config, engine.connection_capacity()))
        events = EventPublisher(
            _aws_client("events", config),
            region=config.region,
            account_id=config.account_id,
            drop_rate=config.event_drop_rate,
        )
        runner = StatementRunner(config, engine, store, sessions, events, lambda: _aws_client("s3", config), spool_dir)
        service = DataApiService(config, engine, store, sessions, runner, lambda: _aws_client("secretsmanager", config))
        service.outage = Outage(store, sessions, runner)
        server = make_server(
            "127.0.0.1",
            config.port,
            local_callers_only(make_app(service, config.account_id)),
            threaded=True,
            request_handler=_RequestHandler,
        )
    except Exception:
        engine.stop()
        shutil.rmtree(spool_dir, ignore_errors=True)
        raise
    emulator = Emulator(
        endpoint_url=f"http://127.0.0.1:{server.server_port}",
        admin_database_url=engine.admin_conninfo,
        config=config,
        _server=server,
        _engine=engine,
        _runner=runner,
        _sessions=sessions,
        _store=store,
        _spool_dir=spool_dir,
        rate_limits=service.rate_limits,
        events=events,
        outage=service.outage,
    )
    serve = threading.Thread(target=server.serve_forever, name="redshift-data-http", daemon=True)
    housekeeping = threading.Thread(
        target=_housekeeping, args=(emulator,), name="redshift-data-housekeeping", daemon=True
    )
    emulator._threads = [serve, housekeeping]
    serve.start()
    housekeeping.start()
    return emulator


def _session_quota(config: EmulatorConfig, capacity: int) -> int:
    """The active sessions the emulator allows: the configured quota, lowered to what the server's connections can
    hold beside the workers' (an adopted server with fewer connections than the quota needs). Past it, callers get
    ActiveSessionsExceededException, as AWS answers past its quota, instead of statements failing to connect."""
    fits = capacity - config.max_workers - CONNECTION_HEADROOM
    if fits < config.max_active_sessions:
        log.warning(
            "PostgreSQL allows %d connections: at most %d active sessions instead of %d",
            capacity,
            max(fits, 0),
            config.max_active_sessions,
        )
    return max(0, min(config.max_active_sessions, fits))


def _housekeeping(emulator: Emulator) -> None:
    """Close expired sessions and forget expired statements (with their spooled results)."""
    while not emulator._stopping.wait(HOUSEKEEPING_INTERVAL_SECONDS):
        try:
            now = time.time()
            emulator._sessions.reap(now)
            _forget_expired(emulator, now)
        except Exception:
            log.exception("housekeeping failed")


def _forget_expired(emulator: Emulator, now: float) -> None:
    for statement in emulator._store.expired(now):
        for unit in [statement, *statement.children]:
            if unit.result is not None:
                unit.result.delete()


def _aws_client(service: str, config: EmulatorConfig) -> Any:
    kwargs: dict[str, Any] = {"region_name": config.region}
    if config.aws_endpoint_url:
        kwargs["endpoint_url"] = config.aws_endpoint_url
    return boto3.client(service, **kwargs)
