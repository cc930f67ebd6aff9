"""Statement records and the in-memory store that owns them.

A ``Statement`` is what DescribeStatement shows. A batch is a parent statement with one child per SQL (ids
``<id>:1``, ``<id>:2`` ...); a plain ExecuteStatement is a parent with no children. The store indexes statements by
id and by ClientToken (the same token always returns the same statement and never runs it twice), pages
ListStatements with a stable cursor, and forgets statements (and their spooled results) once their TTL has passed.

An expired statement is not unknown: AWS answers a DescribeStatement of one with ValidationException "Could not
retrieve the query result as it has expired after <epoch seconds>." (seen by pulumi/pulumi-aws#2055; the Terraform
provider's redshiftdata ``FindStatementByID`` matches ValidationException + "expired" for it), not
ResourceNotFoundException. The store keeps a tombstone (id and expiry time) for another TTL to answer so.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import ResourceNotFoundException, ValidationException
from .results import SpooledResult

SUBMITTED, PICKED, STARTED, FINISHED, FAILED, ABORTED = (
    "SUBMITTED",
    "PICKED",
    "STARTED",
    "FINISHED",
    "FAILED",
    "ABORTED",
)
TERMINAL = frozenset({FINISHED, FAILED, ABORTED})
ACTIVE = frozenset({SUBMITTED, PICKED, STARTED})
STATUSES = frozenset({SUBMITTED, PICKED, STARTED, FINISHED, FAILED, ABORTED})

_query_ids = itertools.count(1001)


@dataclass
class Identity:
    """Who the statement runs as and where: the connection is opened as ``user`` on ``database``."""

    user: str
    database: str
    password: str | None = None
    db_user: str | None = None  # as given in the request (DescribeStatement echoes it)
    secret_arn: str | None = None
    cluster_identifier: str | None = None
    workgroup_name: str | None = None


@dataclass
class Statement:
    id: str
    sql: str
    identity: Identity
    parameters: list[dict[str, str]] | None = None
    statement_name: str | None = None
    with_event: bool = False
    client_token: str | None = None
    result_format: str = "JSON"
    session_id: str | None = None
    caller: str = ""
    sequence: int = 0
    status: str = SUBMITTED
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    started_ns: int | None = None
    duration_ns: int = -1
    redshift_pid: int = 0
    redshift_query_id: int = 0
    result_rows: int = -1
    result_size: int = -1
    has_result_set: bool = False
    result: SpooledResult | None = None
    children: list[Statement] = field(default_factory=list)
    is_batch: bool = False
    expires_at: float | None = None
    cancel_requested: bool = False
    interrupted: tuple[str, str | None] | None = None  # (status, error) a reboot ended it with (outage.py)
    event_suppressed: bool = False  # ended by a reboot that sends no completion event
    connection: Any = field(default=None, repr=False)  # the psycopg connection while STARTED (for CancelStatement)
    done: threading.Event = field(default_factory=threading.Event, repr=False)  # set once terminal (long polling)

    def wait(self, seconds: int | None) -> None:
        """Long polling (WaitTimeSeconds): block until the statement is terminal or the time is up."""
        if seconds:
            self.done.wait(seconds)

    def set_status(self, status: str) -> None:
        self.status = status
        self.updated_at = time.time()

    def start_clock(self) -> None:
        self.started_ns = time.monotonic_ns()
        if not self.is_batch:  # a batch reports RedshiftQueryId 0: each of its statements has its own
            self.redshift_query_id = next(_query_ids)

    def stop_clock(self) -> None:
        if self.started_ns is not None:
            self.duration_ns = time.monotonic_ns() - self.started_ns

    @property
    def query_strings(self) -> list[str]:
        return [child.sql for child in self.children] if self.is_batch else [self.sql]

    def describe(self) -> dict[str, Any]:
        ident = self.identity
        data: dict[str, Any] = {
            "Id": self.id,
            "Status": self.status,
            "CreatedAt": self.created_at,
            "UpdatedAt": self.updated_at,
            "Duration": self.duration_ns,
            "HasResultSet": self.has_result_set,
            "RedshiftPid": self.redshift_pid,
            "RedshiftQueryId": self.redshift_query_id,
            "ResultRows": self.result_rows,
            "ResultSize": self.result_size,
            "ResultFormat": self.result_format,
            "Database": ident.database,
        }
        optional = {
            "Error": self.error,
            "DbUser": ident.db_user,
            "SecretArn": ident.secret_arn,
            "ClusterIdentifier": ident.cluster_identifier,
            "WorkgroupName": ident.workgroup_name,
            "QueryParameters": self.parameters,
            "SessionId": self.session_id,
        }
        data.update({k: v for k, v in optional.items() if v is not None})
        if self.is_batch:
            # As AWS describes a batch (Management Guide, "Calling the Data API", describe-statement after
            # batch-execute-statement): no QueryString of its own, RedshiftQueryId 0, ResultRows/ResultSize the sums
            # of its statements', HasResultSet true "if any substatement returns a result set" (botocore's model).
            data["SubStatements"] = [child.describe_sub() for child in self.children]
        else:
            data["QueryString"] = self.sql
        return data

    def describe_sub(self) -> dict[str, Any]:
        data = {
            "Id": self.id,
            "Status": self.status,
            "CreatedAt": self.created_at,
            "UpdatedAt": self.updated_at,
            "Duration": self.duration_ns,
            "QueryString": self.sql,
            "ResultRows": self.result_rows,
            "ResultSize": self.result_size,
            "RedshiftQueryId": self.redshift_query_id,
            "HasResultSet": self.has_result_set,
        }
        if self.error is not None:
            data["Error"] = self.error
        return data

    def summary(self) -> dict[str, Any]:
        """One ListStatements entry (StatementData)."""
        data: dict[str, Any] = {
            "Id": self.id,
            "Status": self.status,
            "CreatedAt": self.created_at,
            "UpdatedAt": self.updated_at,
            "IsBatchStatement": self.is_batch,
            "ResultFormat": self.result_format,
        }
        if self.is_batch:
            data["QueryStrings"] = self.query_strings
        else:
            data["QueryString"] = self.sql
        optional = {
            "StatementName": self.statement_name,
            "SecretArn": self.identity.secret_arn,
            "QueryParameters": self.parameters,
            "SessionId": self.session_id,
        }
        data.update({k: v for k, v in optional.items() if v is not None})
        return data


class StatementStore:
    """Thread-safe registry of statements; the HTTP threads read it, the workers update it."""

    def __init__(self, result_ttl_seconds: int) -> None:
        self._ttl = result_ttl_seconds
        self._lock = threading.Lock()
        self._statements: dict[str, Statement] = {}
        self._by_token: dict[str, str] = {}
        self._tombstones: dict[str, float] = {}  # expired statement id -> when it expired
        self._sequence = itertools.count(1)

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def add(self, statement: Statement) -> Statement:
        """Register ``statement``; with a ClientToken already seen, return the earlier statement instead."""
        with self._lock:
            if statement.client_token is not None:
                existing_id = self._by_token.get(statement.client_token)
                if existing_id is not None and existing_id in self._statements:
                    return self._statements[existing_id]
                self._by_token[statement.client_token] = statement.id
            statement.sequence = next(self._sequence)
            self._statements[statement.id] = statement
            return statement

    def find_by_token(self, client_token: str | None) -> Statement | None:
        if client_token is None:
            return None
        with self._lock:
            existing_id = self._by_token.get(client_token)
            return self._statements.get(existing_id) if existing_id else None

    def discard(self, statement: Statement) -> None:
        """Forget a statement that never got going (e.g. its submission failed after registration)."""
        with self._lock:
            self._statements.pop(statement.id, None)
            if statement.client_token and self._by_token.get(statement.client_token) == statement.id:
                del self._by_token[statement.client_token]

    def get(self, statement_id: str) -> Statement:
        """The statement (or batch child, ``<id>:<n>``) with this id, or ResourceNotFoundException."""
        parent_id, _, child = statement_id.partition(":")
        with self._lock:
            statement = self._statements.get(parent_id)
            expired_at = self._tombstones.get(parent_id)
        if statement is None and expired_at is not None:
            raise ValidationException(f"Could not retrieve the query result as it has expired after {int(expired_at)}.")
        if statement is None:
            raise ResourceNotFoundException(f"Query {statement_id} does not exist or has expired.", statement_id)
        if not child:
            return statement
        index = int(child) if child.isdigit() else 0
        if not statement.is_batch or not 1 <= index <= len(statement.children):
            raise ResourceNotFoundException(f"Query {statement_id} does not exist or has expired.", statement_id)
        return statement.children[index - 1]

    def active_count(self) -> int:
        with self._lock:
            return sum(1 for s in self._statements.values() if s.status in ACTIVE)

    def page(self, *, token: str | None, limit: int, matches) -> tuple[list[Statement], str | None]:
        """Newest first; the token is the sequence number of the last statement returned, so it stays stable."""
        before = decode_token(token, "seq") if token else None
        with self._lock:
            candidates = sorted(self._statements.values(), key=lambda s: s.sequence, reverse=True)
        selected: list[Statement] = []
        for statement in candidates:
            if before is not None and statement.sequence >= before:
                continue
            if not matches(statement):
                continue
            if len(selected) == limit:
                return selected, encode_token(seq=selected[-1].sequence)
            selected.append(statement)
        return selected, None

    def expired(self, now: float) -> Iterator[Statement]:
        """Forget the statements past their TTL (a tombstone answers for each for another TTL), yielding them."""
        with self._lock:
            gone = [s for s in self._statements.values() if s.expires_at is not None and s.expires_at <= now]
            for statement in gone:
                del self._statements[statement.id]
                self._tombstones[statement.id] = statement.expires_at or now
                if statement.client_token and self._by_token.get(statement.client_token) == statement.id:
                    del self._by_token[statement.client_token]
            for statement_id in [i for i, at in self._tombstones.items() if at + self._ttl <= now]:
                del self._tombstones[statement_id]
        yield from gone

    def expire_now(self, statement_id: str) -> bool:
        """Make a terminal statement's TTL run out now (the next sweep forgets it). False when there is no such
        statement or it has not ended."""
        with self._lock:
            statement = self._statements.get(statement_id)
            if statement is None or statement.expires_at is None:
                return False
            statement.expires_at = min(statement.expires_at, time.time())
            return True

    def all(self) -> list[Statement]:
        with self._lock:
            return list(self._statements.values())

    def expire_after(self, statement: Statement) -> None:
        statement.expires_at = time.time() + self._ttl


def encode_token(**values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode()


def decode_token(token: str, key: str) -> int:
    """Read ``key`` from a NextToken this server issued; anything else is a ValidationException."""
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))[key]
        if not isinstance(value, int) or value < 0:
            raise ValueError(value)
        return value
    except (ValueError, KeyError, TypeError, binascii.Error, json.JSONDecodeError):
        raise ValidationException("The NextToken is invalid. Use a NextToken returned by a previous call.") from None
