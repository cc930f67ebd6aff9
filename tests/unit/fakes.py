"""In-memory fakes of the ports, honouring the same contracts as the real adapters.

The job store fake is kept honest by ``tests/integration/pipeline/test_port_contracts.py``, which runs one scenario
suite against it and against the real :class:`~spectra.job_store.JobStore` on DynamoDB (moto). The result sink is not
faked at all: :func:`make_ports` wires the real :class:`~spectra.results.ResultSink` to :class:`FakeS3`.

Beyond the port methods, each fake has a few test-only helpers (scripting a failure, reading what was recorded);
they are plain attributes and methods whose names do not clash with the port's.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import io
import itertools
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel

from events import JobQueuedMessage, JobStatus, StatementState, StatementStatusChange
from spectra.errors import Conflict, InvalidRequest, NotFound, StatementRejected, Throttled
from spectra.job_store import JobPage, PendingJob, PendingPage
from spectra.jobs import Job, sources_of, utcnow
from spectra.ports import Ports
from spectra.publisher import PublishFailed
from spectra.results import ResultSink
from spectra.settings import Settings
from spectra.tenants import Tenant
from spectra.warehouse import Column, DatabaseIdentity, StatementInfo


def _client_error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def _json_ready(value: Any) -> Any:
    """What DynamoDB would hold for ``value`` after the real store serialised it (models and times as JSON)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, list | dict):
        return json.loads(json.dumps(value, default=_json_ready))
    return value


# -- the job store --------------------------------------------------------------------------------------------------


class FakeJobStore:
    """:class:`spectra.job_store.JobStore` in a dict.

    Jobs are kept as the JSON documents the real store writes and validated on every read, so a change that would not
    survive DynamoDB (a model where a dict is expected, a None that removes an attribute) behaves the same here.
    """

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._idempotency: dict[tuple[str, str], dict[str, str | None]] = {}
        self._pending: dict[str, datetime] = {}  # the sparse ``pending`` index: job id → pending_since

    # -- create

    def create(self, job: Job, *, fingerprint: str | None = None) -> tuple[Job, bool]:
        if job.job_id in self._items and not job.idempotency_key:
            return job, True  # as the real store: a repeated write of the same id is an SDK retry that landed
        if job.job_id in self._items:
            raise _client_error("ConditionalCheckFailedException", "The conditional request failed", "PutItem")
        if job.idempotency_key:
            record = self._idempotency.get((job.tenant_id, job.idempotency_key))
            if record is not None:
                if fingerprint and record["fingerprint"] not in (None, fingerprint):
                    raise Conflict(
                        "Idempotency-Key was already used for a different request",
                        details={"idempotency_key": job.idempotency_key, "job_id": record["target_job_id"]},
                    )
                original = self.get(record["target_job_id"] or "")
                if original is None:
                    raise Conflict("idempotency record points to a job that no longer exists")
                return original, False
            self._idempotency[(job.tenant_id, job.idempotency_key)] = {
                "target_job_id": job.job_id,
                "fingerprint": fingerprint,
            }
        self._items[job.job_id] = {
            **job.model_dump(mode="json", exclude_none=True),
            "created_key": f"{job.created_at.isoformat()}#{job.job_id}",
        }
        self._pending[job.job_id] = job.created_at
        return job, True

    # -- read

    def get(self, job_id: str) -> Job | None:
        item = self._items.get(job_id)
        return Job.model_validate(copy.deepcopy(item)) if item else None

    def get_for_tenant(self, tenant_id: str, job_id: str) -> Job | None:
        job = self.get(job_id)
        return job if job is not None and job.tenant_id == tenant_id else None

    def list_for_tenant(
        self, tenant_id: str, *, limit: int, status: JobStatus | None = None, next_token: str | None = None
    ) -> JobPage:
        """Newest first; like a DynamoDB Query with a filter, a token marks the last item *looked at*."""
        after = self._decode_token(next_token, tenant_id) if next_token else None
        ordered = sorted(
            (item for item in self._items.values() if item["tenant_id"] == tenant_id),
            key=lambda item: item["created_key"],
            reverse=True,
        )
        if after is not None:
            ordered = [item for item in ordered if item["created_key"] < after]
        jobs: list[Job] = []
        last_seen: dict[str, Any] | None = None
        for index, item in enumerate(ordered):
            last_seen = item
            if status is None or item["status"] == status.value:
                jobs.append(Job.model_validate(copy.deepcopy(item)))
            if len(jobs) == limit:
                more = index + 1 < len(ordered)
                return JobPage(jobs=jobs, next_token=self._encode_token(last_seen) if more else None)
        return JobPage(jobs=jobs, next_token=None)

    @staticmethod
    def _encode_token(item: dict[str, Any]) -> str:
        key = {"job_id": item["job_id"], "tenant_id": item["tenant_id"], "created_key": item["created_key"]}
        return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")

    @staticmethod
    def _decode_token(token: str, tenant_id: str) -> str:
        try:
            key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            if not isinstance(key, dict) or set(key) != {"job_id", "tenant_id", "created_key"}:
                raise ValueError("unexpected token shape")
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidRequest("next_token is not valid") from exc
        if key["tenant_id"] != tenant_id:
            raise InvalidRequest("next_token is not valid")
        return key["created_key"]

    # -- change

    def transition(
        self,
        job_id: str,
        to: JobStatus,
        *,
        expected: Iterable[JobStatus] | None = None,
        unstarted: bool = False,
        **changes: Any,
    ) -> Job | None:
        allowed = sources_of(to) if expected is None else sources_of(to) & frozenset(expected)
        if unstarted and self._items.get(job_id, {}).get("statement_id"):
            return None
        return self._update(job_id, allowed, {"status": to, **changes}, pending_since=utcnow())

    def update(self, job_id: str, expected: Iterable[JobStatus], **changes: Any) -> Job | None:
        return self._update(job_id, frozenset(expected), changes)

    def mark_published(self, job_id: str, status: JobStatus) -> Job | None:
        job = self._update(job_id, frozenset({status}), {"event_published": True})
        if job is not None:
            self._pending.pop(job_id, None)
        return job

    def mark_checked(self, job_id: str, status: JobStatus, at: datetime) -> Job | None:
        return self._update(job_id, frozenset({status}), {}, pending_since=at)

    def pending_before(self, cutoff: datetime, *, limit: int) -> PendingPage:
        due = sorted((since, job_id) for job_id, since in self._pending.items() if since < cutoff)
        return PendingPage(
            jobs=[PendingJob(job_id, since) for since, job_id in due[:limit]],
            more=len(due) > limit,
        )

    def _update(
        self, job_id: str, allowed: frozenset[JobStatus], changes: dict[str, Any], pending_since: datetime | None = None
    ) -> Job | None:
        item = self._items.get(job_id)
        if item is None or JobStatus(item["status"]) not in allowed:
            return None  # the real store's ConditionalCheckFailedException
        updated = copy.deepcopy(item)
        for name, value in {**changes, "updated_at": utcnow()}.items():
            stored = _json_ready(value)
            if stored is None:
                updated.pop(name, None)  # the real store REMOVEs attributes set to None
            else:
                updated[name] = stored
        job = Job.model_validate(copy.deepcopy(updated))  # refuse what the real store could not read back
        self._items[job_id] = updated
        if pending_since is not None:
            self._pending[job_id] = pending_since
        return job

    # -- test helpers

    def pending_since(self, job_id: str) -> datetime | None:
        """Where the job sits in the pending index (None: not in it)."""
        return self._pending.get(job_id)


# -- the warehouse --------------------------------------------------------------------------------------------------

_RUNNING = {"SUBMITTED", "PICKED", "STARTED"}


@dataclass
class FakeStatement:
    statement_id: str
    sql: str
    name: str
    client_token: str
    identity: DatabaseIdentity
    parameters: list[dict[str, str]]
    status: str = "SUBMITTED"
    error: str | None = None
    columns: list[Column] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)
    result_rows: int | None = None
    has_result_set: bool = False


class FakeWarehouse:
    """:class:`spectra.warehouse.StatementRunner` over an in-memory Data API.

    ``execute`` honours ``ClientToken`` (a repeat returns the first statement, as the Data API does). Outcomes are
    scripted: ``throttle_next`` / ``reject_next`` make the next call of a method raise, and ``finish`` / ``fail`` /
    ``abort`` move a statement to a terminal state.
    """

    def __init__(self) -> None:
        self.statements: dict[str, FakeStatement] = {}
        self.calls: list[tuple[str, str]] = []  # (method, statement id or token): what reached the "service"
        self._by_token: dict[str, str] = {}
        self._scripted: dict[str, list[Exception]] = {}
        self._ids = itertools.count(1)

    # -- scripting

    def throttle_next(self, method: str = "execute", times: int = 1) -> None:
        for _ in range(times):
            self._script(method, Throttled("Redshift Data API: ThrottlingException: Rate exceeded"))

    def reject_next(self, message: str, method: str = "execute") -> None:
        self._script(method, StatementRejected(message, details={"aws_error": "ValidationException"}))

    def _script(self, method: str, exc: Exception) -> None:
        self._scripted.setdefault(method, []).append(exc)

    def _enter(self, method: str, subject: str) -> None:
        scripted = self._scripted.get(method)
        if scripted:
            raise scripted.pop(0)
        self.calls.append((method, subject))

    def finish(
        self, statement_id: str, *, columns: list[Column] | None = None, pages: list[str] | None = None, rows=None
    ) -> StatementStatusChange:
        """FINISHED. With ``columns`` the statement has a result set (``pages`` of CSV); without, ``rows`` affected."""
        statement = self.statements[statement_id]
        statement.status = "FINISHED"
        statement.has_result_set = columns is not None
        statement.columns = list(columns or [])
        statement.pages = list(pages or [])
        statement.result_rows = rows
        return self.status_change(statement_id)

    def fail(self, statement_id: str, error: str) -> StatementStatusChange:
        self.statements[statement_id].status, self.statements[statement_id].error = "FAILED", error
        return self.status_change(statement_id)

    def abort(self, statement_id: str) -> StatementStatusChange:
        self.statements[statement_id].status = "ABORTED"
        return self.status_change(statement_id)

    def status_change(self, statement_id: str) -> StatementStatusChange:
        """The ``detail`` of the status-change event the Data API would send for the statement now."""
        statement = self.statements[statement_id]
        return StatementStatusChange(
            statementId=statement_id,
            statementName=statement.name,
            state=StatementState(statement.status),
            rows=statement.result_rows,
        )

    def executed(self) -> list[str]:
        """Statement ids of the ``execute`` calls that reached the service (repeats by ClientToken included)."""
        return [subject for method, subject in self.calls if method == "execute"]

    # -- the port

    def execute(
        self,
        sql: str,
        *,
        identity: DatabaseIdentity,
        name: str,
        client_token: str,
        parameters: list[dict[str, str]] | None = None,
        result_format: str = "CSV",
        with_event: bool = True,
    ) -> str:
        self._enter("execute", client_token)
        existing = self._by_token.get(client_token)
        if existing is not None:
            if self.statements[existing].sql != sql:
                raise StatementRejected("ClientToken was already used for a different request")
            return existing
        statement_id = f"00000000-0000-4000-8000-{next(self._ids):012d}"
        self.statements[statement_id] = FakeStatement(
            statement_id, sql, name, client_token, identity, list(parameters or [])
        )
        self._by_token[client_token] = statement_id
        return statement_id

    def describe(self, statement_id: str) -> StatementInfo:
        self._enter("describe", statement_id)
        statement = self._statement(statement_id)
        return StatementInfo(
            statement_id=statement_id,
            status=statement.status,
            error=statement.error,
            result_rows=statement.result_rows if statement.status == "FINISHED" else None,
            has_result_set=statement.has_result_set,
        )

    def cancel(self, statement_id: str) -> bool:
        self._enter("cancel", statement_id)
        statement = self._statement(statement_id)
        if statement.status not in _RUNNING:
            return False  # the Data API refuses to cancel a finished statement; the runner turns that into False
        statement.status = "ABORTED"
        return True

    def csv_result(self, statement_id: str) -> tuple[list[Column], Iterator[str]]:
        self._enter("csv_result", statement_id)
        statement = self._statement(statement_id)
        if statement.status != "FINISHED" or not statement.has_result_set:
            raise StatementRejected(f"statement {statement_id} has no result set")
        return list(statement.columns), iter(list(statement.pages))

    def _statement(self, statement_id: str) -> FakeStatement:
        statement = self.statements.get(statement_id)
        if statement is None:
            raise NotFound(f"Query {statement_id} does not exist")
        return statement


# -- queue, events, tenants, S3 -------------------------------------------------------------------------------------


class FakeQueue:
    """:class:`spectra.job_queue.JobQueue`: messages in a list; ``fail_next`` makes the next send raise."""

    def __init__(self) -> None:
        self.messages: list[JobQueuedMessage] = []
        self.delays: list[int] = []  # DelaySeconds of each message, in order
        self._failures: list[Exception] = []

    def fail_next(self, exc: Exception | None = None) -> None:
        self._failures.append(exc or _client_error("AWS.SimpleQueueService.NonExistentQueue", "gone", "SendMessage"))

    def send(self, message: JobQueuedMessage, *, delay_seconds: int = 0) -> str:
        if self._failures:
            raise self._failures.pop(0)
        self.messages.append(message)
        self.delays.append(delay_seconds)
        return f"msg-{len(self.messages)}"


@dataclass(frozen=True)
class PublishedEvent:
    detail_type: str
    detail: BaseModel
    resources: list[str]


class FakePublisher:
    """:class:`spectra.publisher.EventPublisher`: events in a list; ``fail_next`` makes the next publish fail."""

    def __init__(self) -> None:
        self.events: list[PublishedEvent] = []
        self._failures = 0

    def fail_next(self, times: int = 1) -> None:
        self._failures += times

    def publish(self, detail_type: str, detail: BaseModel, *, resources: list[str] | None = None) -> str:
        if self._failures:
            self._failures -= 1
            raise PublishFailed(f"{detail_type}: InternalFailure: fake failure")
        self.events.append(PublishedEvent(detail_type, detail, list(resources or [])))
        return f"event-{len(self.events)}"

    def types(self) -> list[str]:
        return [event.detail_type for event in self.events]


class FakeTenants:
    """The part of :class:`spectra.tenants.TenantDirectory` the domain reads (``get``), plus the administration the
    tests need (``create_tenant``, ``set_active``, ``delete_tenant``)."""

    def __init__(self) -> None:
        self.tenants: dict[str, Tenant] = {}

    def create_tenant(self, tenant_id: str, **attributes: Any) -> Tenant:
        if tenant_id in self.tenants:
            raise Conflict(f"tenant {tenant_id!r} already exists")
        tenant = Tenant.new(tenant_id, **attributes)
        self.tenants[tenant_id] = tenant
        return tenant

    def set_active(self, tenant_id: str, active: bool) -> Tenant:
        if tenant_id not in self.tenants:
            raise NotFound(f"tenant {tenant_id!r} not found")
        self.tenants[tenant_id] = self.tenants[tenant_id].model_copy(update={"active": active})
        return self.tenants[tenant_id]

    def delete_tenant(self, tenant_id: str) -> bool:
        return self.tenants.pop(tenant_id, None) is not None

    def get(self, tenant_id: str) -> Tenant | None:
        return self.tenants.get(tenant_id)


class FakeRunningSlots:
    """:class:`spectra.share.RunningSlots` in dicts: tenant → {job id: stamp} for holders and for waiters. Kept
    honest by the contract suite in ``tests/integration/pipeline/test_slots_contract.py``."""

    def __init__(self) -> None:
        self.slots: dict[str, dict[str, float]] = {}
        self.waiters: dict[str, dict[str, float]] = {}
        self.fail_park = False  # make park raise, as DynamoDB does for an item past its size limit

    def acquire(self, tenant_id: str, job_id: str, *, limit: int, now: float | None = None) -> bool:
        return self.acquire_or_holders(tenant_id, job_id, limit=limit, now=now) is None

    def acquire_or_holders(
        self, tenant_id: str, job_id: str, *, limit: int, now: float | None = None
    ) -> dict[str, float] | None:
        holders = self.slots.get(tenant_id, {})
        if job_id not in holders and len(holders) >= limit:
            return dict(holders)
        self.slots.setdefault(tenant_id, {})[job_id] = now if now is not None else time.time()
        self.waiters.setdefault(tenant_id, {}).pop(job_id, None)
        return None

    def release(self, tenant_id: str, job_id: str) -> dict[str, float]:
        if self.slots.get(tenant_id, {}).pop(job_id, None) is None:
            return {}
        return dict(self.waiters.get(tenant_id, {}))

    def park(self, tenant_id: str, job_id: str, *, limit: int, now: float | None = None) -> bool:
        if self.fail_park:
            raise _client_error("ValidationException", "Item size has exceeded the maximum allowed size", "UpdateItem")
        if tenant_id not in self.slots or len(self.slots[tenant_id]) < limit:
            return False
        self.waiters.setdefault(tenant_id, {}).setdefault(job_id, now if now is not None else time.time())
        return True

    def unpark(self, tenant_id: str, job_id: str) -> bool:
        return self.waiters.get(tenant_id, {}).pop(job_id, None) is not None

    def holders(self, tenant_id: str) -> dict[str, float]:
        return dict(self.slots.get(tenant_id, {}))

    def waiting(self, tenant_id: str) -> dict[str, float]:
        return dict(self.waiters.get(tenant_id, {}))

    def evict(self, tenant_id: str, job_id: str, *, stamp: float) -> bool:
        holders = self.slots.get(tenant_id, {})
        if holders.get(job_id) != stamp:
            return False
        del holders[job_id]
        return True

    def restamp(self, tenant_id: str, job_id: str, *, stamp: float, now: float) -> bool:
        holders = self.slots.get(tenant_id, {})
        if holders.get(job_id) != stamp:
            return False
        holders[job_id] = now
        return True


class _Body:
    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)

    def read(self, amount: int | None = None) -> bytes:
        return self._stream.read(amount)


class FakeS3:
    """The three S3 client calls the real :class:`~spectra.results.ResultSink` makes for results under its multipart
    threshold. A larger result would reach for ``create_multipart_upload`` and fail loudly: keep unit results small.
    """

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []  # (operation, key); presigning is local and is not recorded

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str | None = None, **_: Any) -> dict:
        self.requests.append(("PutObject", Key))
        self.objects[(Bucket, Key)] = {"Body": bytes(Body), "ContentType": ContentType}
        return {"ETag": '"' + hashlib.md5(bytes(Body)).hexdigest() + '"'}

    def get_object(self, *, Bucket: str, Key: str, **_: Any) -> dict:
        self.requests.append(("GetObject", Key))
        stored = self.objects.get((Bucket, Key))
        if stored is None:
            raise _client_error("NoSuchKey", "The specified key does not exist.", "GetObject")
        return {
            "Body": _Body(stored["Body"]),
            "ContentType": stored["ContentType"],
            "ContentLength": len(stored["Body"]),
        }

    def generate_presigned_url(self, ClientMethod: str, Params: dict | None = None, ExpiresIn: int = 3600, **_):
        params = Params or {}
        return f"https://{params['Bucket']}.s3.fake/{params['Key']}?op={ClientMethod}&X-Amz-Expires={ExpiresIn}"

    def body(self, bucket: str, key: str) -> bytes:
        return self.objects[(bucket, key)]["Body"]

    def keys(self, bucket: str) -> list[str]:
        return sorted(key for b, key in self.objects if b == bucket)


# -- wiring ---------------------------------------------------------------------------------------------------------

RESULTS_BUCKET = "spectra-results-test"


def make_settings(**overrides: Any) -> Settings:
    """Settings from explicit values only: every field is given, so variables another test exported cannot leak in."""
    values: dict[str, Any] = {
        name: info.get_default(call_default_factory=True)
        for name, info in Settings.model_fields.items()
        if not info.is_required()
    }
    values.update(
        jobs_table="jobs-test",
        tenants_table="tenants-test",
        jobs_queue_url="https://sqs.us-east-1.amazonaws.com/000000000000/jobs-test",
        results_bucket=RESULTS_BUCKET,
        event_bus_name="spectra-test",
        redshift_cluster_id="spectra-test",
        redshift_workgroup=None,
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


def make_ports(*, settings: Settings | None = None, s3: FakeS3 | None = None, **overrides: Any) -> Ports:
    """:class:`~spectra.ports.Ports` of fakes (the real ResultSink on a :class:`FakeS3`); any port can be replaced."""
    settings = settings or make_settings()
    s3 = s3 or FakeS3()
    ports: dict[str, Any] = {
        "settings": settings,
        "jobs": FakeJobStore(),
        "tenants": FakeTenants(),
        "queue": FakeQueue(),
        "warehouse": FakeWarehouse(),
        "results": ResultSink(
            s3,
            settings.results_bucket,
            part_max_rows=settings.result_part_max_rows,
            inline_max_rows=settings.inline_max_rows,
            inline_max_bytes=settings.inline_max_bytes,
        ),
        "events": FakePublisher(),
        "slots": FakeRunningSlots(),
    }
    ports.update(overrides)
    return Ports(**ports)
