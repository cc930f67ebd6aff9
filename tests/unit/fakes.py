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
import ipaddress
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel

from events import JobQueuedMessage, JobStatus, ProjectEvent, StatementState, StatementStatusChange, WebhookDelivery
from spectra.errors import Conflict, InvalidRequest, NotFound, StatementRejected, Throttled
from spectra.job_store import JobPage, PendingJob, PendingPage
from spectra.jobs import Job, sources_of, utcnow
from spectra.notify.models import SUBSCRIPTION_PREFIX, DisabledReason, Subscription, SubscriptionStatus
from spectra.notify.store import SubscriptionPage
from spectra.notify.transport import HttpOutcome
from spectra.notify.urls import UrlPolicy, UrlRefused
from spectra.ports import NotifyPorts, Ports
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
        self._failures: list[Exception] = []

    def fail_next(self, exc: Exception | None = None) -> None:
        self._failures.append(exc or _client_error("AWS.SimpleQueueService.NonExistentQueue", "gone", "SendMessage"))

    def send(self, message: JobQueuedMessage) -> str:
        if self._failures:
            raise self._failures.pop(0)
        self.messages.append(message)
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


# -- notifications ---------------------------------------------------------------------------------------------------


class FakeSubscriptionStore:
    """:class:`spectra.notify.store.SubscriptionStore` in a dict; kept honest by
    ``tests/integration/pipeline/test_subscription_store_contract.py``."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Subscription] = {}
        self.expiry: dict[tuple[str, str], datetime] = {}

    def create(self, subscription: Subscription, *, expires_at: datetime | None = None) -> Subscription:
        key = (subscription.tenant_id, subscription.subscription_id)
        if key in self.items:
            raise Conflict(f"subscription {subscription.subscription_id} already exists")
        self.items[key] = subscription
        if expires_at is not None:
            self.expiry[key] = expires_at
        return subscription

    def get(self, tenant_id: str, subscription_id: str) -> Subscription | None:
        return self.items.get((tenant_id, subscription_id))

    def delete(self, tenant_id: str, subscription_id: str) -> bool:
        return self.items.pop((tenant_id, subscription_id), None) is not None

    def _standing(self, tenant_id: str) -> list[Subscription]:
        return sorted(
            (s for (t, i), s in self.items.items() if t == tenant_id and i.startswith(SUBSCRIPTION_PREFIX)),
            key=lambda s: s.subscription_id,
        )

    def list_for_tenant(self, tenant_id: str, *, limit: int, next_token: str | None = None) -> SubscriptionPage:
        standing = self._standing(tenant_id)
        start = 0
        if next_token:
            try:
                tenant, after = json.loads(base64.urlsafe_b64decode(next_token + "=" * (-len(next_token) % 4)))
            except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
                raise InvalidRequest("next_token is not valid") from exc
            if tenant != tenant_id:
                raise InvalidRequest("next_token is not valid")
            start = next((n for n, s in enumerate(standing) if s.subscription_id > after), len(standing))
        page = standing[start : start + limit]
        more = start + limit < len(standing)
        token = None
        if more:
            token = base64.urlsafe_b64encode(json.dumps([tenant_id, page[-1].subscription_id]).encode()).decode()
        return SubscriptionPage(subscriptions=page, next_token=token)

    def webhooks_for_tenant(self, tenant_id: str) -> list[Subscription]:
        return self._standing(tenant_id)

    def count_for_tenant(self, tenant_id: str) -> int:
        return len(self._standing(tenant_id))

    def _change(self, tenant_id: str, subscription_id: str, **changes: Any) -> Subscription | None:
        key = (tenant_id, subscription_id)
        current = self.items.get(key)
        if current is None:
            return None
        delivery = changes.pop("delivery", {})
        updated = current.model_copy(
            update={**changes, "delivery": current.delivery.model_copy(update=delivery)}, deep=True
        )
        self.items[key] = Subscription.model_validate(updated.model_dump())
        return self.items[key]

    def record_success(self, tenant_id: str, subscription_id: str, *, status: int, at: datetime) -> Subscription | None:
        current = self.get(tenant_id, subscription_id)
        delivered = current.delivery.delivered + 1 if current else 0
        return self._change(
            tenant_id,
            subscription_id,
            delivery={
                "last_status": status,
                "last_attempt_at": at,
                "last_success_at": at,
                "consecutive_failures": 0,
                "delivered": delivered,
            },
        )

    def record_failure(
        self, tenant_id: str, subscription_id: str, *, status: int | None, error: str, at: datetime
    ) -> Subscription | None:
        current = self.get(tenant_id, subscription_id)
        if current is None:
            return None
        return self._change(
            tenant_id,
            subscription_id,
            delivery={
                "last_status": status,
                "last_error": error,
                "last_attempt_at": at,
                "consecutive_failures": current.delivery.consecutive_failures + 1,
                "failed_attempts": current.delivery.failed_attempts + 1,
            },
        )

    def disable(
        self, tenant_id: str, subscription_id: str, *, reason: DisabledReason, message: str, at: datetime
    ) -> Subscription | None:
        current = self.get(tenant_id, subscription_id)
        if current is None or current.status is not SubscriptionStatus.ACTIVE:
            return None
        return self._change(
            tenant_id,
            subscription_id,
            status=SubscriptionStatus.DISABLED,
            disabled_at=at,
            disabled_reason=reason,
            disabled_message=message,
        )

    def mark_disabled_event_published(self, tenant_id: str, subscription_id: str) -> Subscription | None:
        return self._change(tenant_id, subscription_id, disabled_event_published=True)


@dataclass(frozen=True)
class QueuedDelivery:
    delivery: WebhookDelivery
    delay_seconds: int


class FakeDeliveryQueue:
    """:class:`spectra.notify.channels.DeliveryQueue`: what was queued (with its delay) and what was dead-lettered."""

    def __init__(self) -> None:
        self.queued: list[QueuedDelivery] = []
        self.dead_letters: list[WebhookDelivery] = []

    def send(self, deliveries: list[WebhookDelivery]) -> None:
        self.queued.extend(QueuedDelivery(d, 0) for d in deliveries)

    def retry(self, delivery: WebhookDelivery, delay_seconds: int) -> None:
        self.queued.append(QueuedDelivery(delivery, max(0, min(900, delay_seconds))))

    def dead_letter(self, delivery: WebhookDelivery) -> None:
        self.dead_letters.append(delivery)

    def take(self) -> list[QueuedDelivery]:
        taken, self.queued = self.queued, []
        return taken


class FakeTopic:
    """:class:`spectra.notify.channels.EventTopic`: the events published, in order."""

    def __init__(self) -> None:
        self.published: list[ProjectEvent] = []

    def publish(self, event: ProjectEvent) -> str:
        self.published.append(event)
        return f"sns-{len(self.published)}"


@dataclass(frozen=True)
class Post:
    url: str
    body: bytes
    headers: dict[str, str]


class FakeTransport:
    """:class:`spectra.notify.transport.WebhookTransport` with scripted answers (``answer``; 200 when the script is
    empty) and the requests it was asked to make. It checks the URL with the real policy first, as the real one
    does, so SSRF refusals behave the same."""

    def __init__(self, policy: UrlPolicy) -> None:
        self.policy = policy
        self.posts: list[Post] = []
        self._script: list[HttpOutcome] = []

    def answer(self, *outcomes: HttpOutcome) -> None:
        self._script.extend(outcomes)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> HttpOutcome:
        try:
            self.policy.endpoint(url)
        except UrlRefused as exc:
            return HttpOutcome(None, f"refused: {exc.message}")
        self.posts.append(Post(url, body, dict(headers)))
        return self._script.pop(0) if self._script else HttpOutcome(200)


def fake_resolver(table: dict[str, list[str]]):
    """A DNS of fixed answers: literal addresses resolve to themselves, unknown names fail as getaddrinfo does."""

    def resolve(host: str, port: int) -> list[str]:
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            pass
        if host not in table:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return list(table[host])

    return resolve


#: the names the notify unit tests resolve
TEST_DNS = {
    "hooks.acme.example": ["52.94.236.248"],
    "hooks.globex.example": ["34.120.55.7", "2600:1f18:4000::7"],
    "internal.example": ["10.0.0.12"],
    "mixed.example": ["52.94.236.249", "192.168.1.4"],
    "metadata.example": ["169.254.169.254"],
    "localhost": ["127.0.0.1", "::1"],
}


def make_notify(*, allow_loopback: bool = False, dns: dict[str, list[str]] | None = None) -> NotifyPorts:
    """:class:`~spectra.ports.NotifyPorts` of fakes, with the real URL policy on a fixed DNS."""
    policy = UrlPolicy(allow_loopback=allow_loopback, resolver=fake_resolver(dns or TEST_DNS))
    return NotifyPorts(
        subscriptions=FakeSubscriptionStore(),
        urls=policy,
        transport=FakeTransport(policy),
        deliveries=FakeDeliveryQueue(),
        topic=FakeTopic(),
    )


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
    }
    ports.update(overrides)
    return Ports(**ports)
