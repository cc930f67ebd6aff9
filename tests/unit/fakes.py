"""In-memory fakes of the ports, honouring the same contracts as the real adapters.

The job store fake is kept honest by ``tests/integration/pipeline/test_port_contracts.py``, which runs one scenario
suite against it and against the real :class:`~spectra.job_store.JobStore` on DynamoDB (moto); the bulk job store fake
likewise by ``tests/integration/pipeline/test_bulk_store_contract.py``. The result sink and the bulk file port are
not faked at all: :func:`make_ports` wires the real :class:`~spectra.results.ResultSink` and
:class:`~spectra.bulk.files.BulkFiles` to :class:`FakeS3`.

Beyond the port methods, each fake has a few test-only helpers (scripting a failure, reading what was recorded);
they are plain attributes and methods whose names do not clash with the port's.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import ipaddress
import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError
from pydantic import BaseModel

from events import (
    ErrorInfo,
    JobQueuedMessage,
    JobStatus,
    ProjectEvent,
    StatementState,
    StatementStatusChange,
    WebhookDelivery,
)
from spectra.bulk.files import BulkFiles, results_key
from spectra.bulk.models import BulkJob, BulkOperation, BulkState, JobSource, KeyedBatch, bulk_sources_of
from spectra.bulk.store import JOB_TTL as BULK_JOB_TTL
from spectra.bulk.store import BulkJobPage, position_of
from spectra.dynamo import ListPosition, expired, to_item
from spectra.errors import Conflict, NotFound, StatementRejected, TenantGone, Throttled
from spectra.job_store import IDEMPOTENCY_TTL, JOB_TTL, Finished, JobPage, PendingJob, PendingPage
from spectra.jobs import Job, new_job_id, sources_of, utcnow
from spectra.notify.models import SUBSCRIPTION_PREFIX, DisabledReason, Subscription, SubscriptionStatus
from spectra.notify.store import SubscriptionPage
from spectra.notify.transport import HttpOutcome
from spectra.notify.urls import UrlPolicy, UrlRefused
from spectra.ports import BulkPorts, NotifyPorts, Ports
from spectra.publisher import PublishFailed
from spectra.results import ResultSink
from spectra.settings import Settings
from spectra.slots import Claim, PooledSession, SlotRelease, SlotsSeen
from spectra.tenants import CHANGEABLE_TENANT_FIELDS, Caller, Tenant, TenantDirectory, identity_key
from spectra.tokens import PageTokens
from spectra.waits import CLOCK_MARGIN_SECONDS
from spectra.warehouse import Column, CsvResult, DatabaseIdentity, Started, StatementInfo, SubStatement


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


#: DynamoDB's item size limit, which a fake store refuses past as UpdateItem does ("Item size to update has exceeded
#: the maximum allowed size", a ValidationException; moto too)
ITEM_MAX_BYTES = 400 * 1024


def item_size(item: dict[str, Any]) -> int:
    """A DynamoDB item's size (its typed JSON, as the low-level client sends it) as DynamoDB counts it: attribute
    names and values, lists and maps 3 bytes and 1 per element."""

    def size(value: dict) -> int:
        ((kind, inner),) = value.items()
        if kind == "S":
            return len(inner.encode("utf-8", "surrogateescape"))
        if kind == "N":
            return len(inner.lstrip("-").replace(".", "")) // 2 + 2
        if kind in ("BOOL", "NULL"):
            return 1
        if kind == "L":
            return 3 + sum(1 + size(e) for e in inner)
        if kind == "M":
            return 3 + sum(1 + len(k.encode()) + size(e) for k, e in inner.items())
        return sum(len(str(e)) for e in inner)  # sets: near enough

    return sum(len(name.encode()) + size(v) for name, v in item.items())


def dynamodb_size(values: dict[str, Any]) -> int:
    """:func:`item_size` of an item given as plain values (a store's document)."""
    document = json.loads(json.dumps(values), parse_float=Decimal)  # DynamoDB's numbers are decimals
    return item_size(to_item(document))


def _changed(item: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored item with ``changes`` applied as the real stores' UpdateItem applies them."""
    updated = copy.deepcopy(item)
    for name, value in {**changes, "updated_at": utcnow()}.items():
        stored = _json_ready(value)
        if stored is None:
            updated.pop(name, None)  # the real store REMOVEs attributes set to None
        else:
            updated[name] = stored
    return updated


# -- the job store --------------------------------------------------------------------------------------------------


class FakeJobStore:
    """:class:`spectra.job_store.JobStore` in a dict.

    Jobs are kept as the JSON documents the real store writes and validated on every read, so a change that would not
    survive DynamoDB (a model where a dict is expected, a None that removes an attribute) behaves the same here. As
    DynamoDB's TTL, the fake keeps a job past its ``expires_at`` (it deletes nothing); the store's readers decide.
    """

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._idempotency: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self._pending: dict[str, datetime] = {}  # the sparse ``pending`` index: job id → pending_since
        self.list_calls = 0  # listings that reached the store (a refused page token must not make one)
        self.transactions = 0  # finish() calls: terminal writes made together with a slot's release

    # -- create

    def create(self, job: Job, *, fingerprint: str | None = None) -> tuple[Job, bool]:
        if job.job_id in self._items and not job.idempotency_key:
            return job, True  # as the real store: a repeated write of the same id is an SDK retry that landed
        if job.job_id in self._items:
            raise _client_error("ConditionalCheckFailedException", "The conditional request failed", "PutItem")
        if job.idempotency_key:
            original = self.repeat_of(job, fingerprint=fingerprint)
            if original is not None:
                return original, False
            self._idempotency[(job.tenant_id, job.tenant_generation, job.idempotency_key)] = {
                "target_job_id": job.job_id,
                "fingerprint": fingerprint,
                "expires_at": utcnow() + IDEMPOTENCY_TTL,
            }
        self._items[job.job_id] = {
            **job.model_dump(mode="json", exclude_none=True),
            "created_key": f"{job.created_at.isoformat()}#{job.job_id}",
            "expires_at": int((utcnow() + JOB_TTL).timestamp()),
        }
        self._pending[job.job_id] = job.created_at
        return job, True

    def withdraw(self, job_id: str) -> None:
        item = self._items.get(job_id)
        if item is not None and item["status"] == JobStatus.QUEUED.value and "statement_id" not in item:
            del self._items[job_id]
            self._pending.pop(job_id, None)

    def repeat_of(self, job: Job, *, fingerprint: str | None = None) -> Job | None:
        record = self._idempotency.get((job.tenant_id, job.tenant_generation, job.idempotency_key or ""))
        if not job.idempotency_key or record is None or record["expires_at"] < utcnow():
            return None
        if fingerprint and record["fingerprint"] not in (None, fingerprint):
            raise Conflict(
                "Idempotency-Key was already used for a different request",
                details={"idempotency_key": job.idempotency_key, "job_id": record["target_job_id"]},
            )
        original = self.get(record["target_job_id"] or "")
        if original is None:
            raise Conflict("idempotency record points to a job that no longer exists")
        return original

    # -- read

    def get(self, job_id: str) -> Job | None:
        item = self._items.get(job_id)
        return Job.model_validate(copy.deepcopy(item)) if item else None

    def get_for_tenant(self, tenant_id: str, job_id: str) -> Job | None:
        item = self._items.get(job_id)
        if item is None or item["tenant_id"] != tenant_id or expired(item, utcnow()):
            return None
        return self.get(job_id)

    def list_for_tenant(
        self, tenant_id: str, *, limit: int, status: JobStatus | None = None, after: ListPosition | None = None
    ) -> JobPage:
        """Newest first; like a DynamoDB Query with a filter, a position marks the last item *looked at*."""
        self.list_calls += 1
        now = utcnow()
        ordered = sorted(
            (item for item in self._items.values() if item["tenant_id"] == tenant_id),
            key=lambda item: item["created_key"],
            reverse=True,
        )
        if after is not None:
            ordered = [item for item in ordered if item["created_key"] < after.created_key]
        jobs: list[Job] = []
        for index, item in enumerate(ordered):
            if (status is None or item["status"] == status.value) and not expired(item, now):
                jobs.append(Job.model_validate(copy.deepcopy(item)))
            if len(jobs) == limit:
                more = index + 1 < len(ordered)
                position = ListPosition(created_key=item["created_key"], job_id=item["job_id"])
                return JobPage(jobs=jobs, resume_after=position if more else None)
        return JobPage(jobs=jobs, resume_after=None)

    # -- change

    def transition(
        self,
        job_id: str,
        to: JobStatus,
        *,
        expected: Iterable[JobStatus] | None = None,
        unstarted: bool = False,
        announced: bool = False,
        **changes: Any,
    ) -> Job | None:
        allowed = sources_of(to) if expected is None else sources_of(to) & frozenset(expected)
        if unstarted and self._items.get(job_id, {}).get("statement_id"):
            return None
        if announced:
            job = self._update(job_id, allowed, {"status": to, "event_published": True, **changes})
            if job is not None:
                self._pending.pop(job_id, None)
            return job
        return self._update(job_id, allowed, {"status": to, **changes}, pending_since=utcnow())

    def finish(
        self,
        job: Job,
        to: JobStatus,
        *,
        release: SlotRelease,
        unstarted: bool = False,
        announced: bool = False,
        **changes: Any,
    ) -> Finished:
        """The transition and the slot's release, both or neither (``release`` made by :class:`FakeRunningSlots`)."""
        self.transactions += 1
        item = self._items.get(job.job_id)
        if item is None or JobStatus(item["status"]) is not job.status or job.status not in sources_of(to):
            return Finished(None)
        if unstarted and item.get("statement_id"):
            return Finished(None)
        refused = release.write.refusal()
        if refused is not None:
            return Finished(None, slots=refused)
        written = self.transition(
            job.job_id, to, expected={job.status}, unstarted=unstarted, announced=announced, **changes
        )
        release.write.apply()
        return Finished(written)

    def update(self, job_id: str, expected: Iterable[JobStatus], **changes: Any) -> Job | None:
        return self._update(job_id, frozenset(expected), changes)

    def count_result_attempt(self, job_id: str) -> Job | None:
        attempts = self._items.get(job_id, {}).get("result_attempts", 0)
        return self._update(job_id, frozenset({JobStatus.SUBMITTED}), {"result_attempts": attempts + 1})

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
        updated = _changed(item, changes)
        job = Job.model_validate(copy.deepcopy(updated))  # refuse what the real store could not read back
        self._items[job_id] = updated
        if pending_since is not None:
            self._pending[job_id] = pending_since
        return job

    # -- test helpers

    def pending_since(self, job_id: str) -> datetime | None:
        """Where the job sits in the pending index (None: not in it)."""
        return self._pending.get(job_id)


# -- the bulk job store ---------------------------------------------------------------------------------------------


class FakeBulkJobStore:
    """:class:`spectra.bulk.store.BulkJobStore` in a dict, kept honest by
    ``tests/integration/pipeline/test_bulk_store_contract.py``.

    As :class:`FakeJobStore`, jobs are the JSON documents the real store writes, validated on every read. The pending
    index follows the real one exactly: a job enters it when created past ``Open`` and on every transition, moves to
    the back on ``mark_checked``, and leaves it once both its event is published and its result files are written.
    Page tokens are the real store's (the same encoding, the same refusals). As DynamoDB's TTL, the fake keeps a job
    past its ``expires_at`` (it deletes nothing); the store's readers decide.
    """

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._pending: dict[str, datetime] = {}  # the sparse ``pending`` index: job id -> pending_since
        self._dies_recording = 0  # ``die_recording_statement``

    def create(self, job: BulkJob) -> tuple[BulkJob, bool]:
        now = utcnow()
        if job.job_id in self._items and not expired(self._items[job.job_id], now):
            return self.get(job.job_id), False  # type: ignore[return-value]
        self._pending.pop(job.job_id, None)  # an expired job's entry goes with the item the put replaces
        document = {k: v for k, v in job.model_dump(mode="json").items() if v is not None}  # None: no attribute
        self._items[job.job_id] = {
            **document,
            "created_key": position_of(job).created_key,
            "expires_at": int((now + BULK_JOB_TTL).timestamp()),
        }
        if job.state is not BulkState.OPEN:
            self._pending[job.job_id] = job.created_at
        return job, True

    def get(self, job_id: str) -> BulkJob | None:
        item = self._items.get(job_id)
        return BulkJob.model_validate(copy.deepcopy(item)) if item else None

    def get_for_tenant(self, tenant_id: str, job_id: str) -> BulkJob | None:
        item = self._items.get(job_id)
        if item is None or item["tenant_id"] != tenant_id or expired(item, utcnow()):
            return None
        return self.get(job_id)

    def list_for_tenant(
        self,
        tenant_id: str,
        *,
        limit: int,
        state: BulkState | None = None,
        operation: BulkOperation | None = None,
        ingest_only: bool = False,
        source: JobSource | None = None,
        after: ListPosition | None = None,
    ) -> BulkJobPage:
        """Newest first; as a DynamoDB Query with a filter, a position marks the last item *looked at*."""
        now = utcnow()
        ordered = sorted(
            (item for item in self._items.values() if item["tenant_id"] == tenant_id),
            key=lambda item: item["created_key"],
            reverse=True,
        )
        if after is not None:
            ordered = [item for item in ordered if item["created_key"] < after.created_key]
        jobs: list[BulkJob] = []
        for index, item in enumerate(ordered):
            job = BulkJob.model_validate(copy.deepcopy(item))
            if (
                (state is None or job.shown_state is state)
                and (operation is None or item["operation"] == operation.value)
                and not (ingest_only and item["operation"] == BulkOperation.QUERY.value)
                and (source is None or job.source is source)
                and not expired(item, now)
            ):
                jobs.append(job)
            if len(jobs) == limit:
                more = index + 1 < len(ordered)
                position = ListPosition(created_key=item["created_key"], job_id=item["job_id"])
                return BulkJobPage(jobs=jobs, resume_after=position if more else None)
        return BulkJobPage(jobs=jobs, resume_after=None)

    def transition(
        self,
        job_id: str,
        to: BulkState,
        *,
        expected: Iterable[BulkState] | None = None,
        unstarted: bool = False,
        uploads: BulkJob | None = None,
        plan_seen: Any = False,
        **changes: Any,
    ) -> BulkJob | None:
        allowed = bulk_sources_of(to) if expected is None else bulk_sources_of(to) & frozenset(expected)
        if unstarted and self._items.get(job_id, {}).get("statement_id"):
            return None
        if uploads is not None and not self._batches_were(job_id, uploads):
            return None
        if plan_seen is not False:
            stored = (self._items.get(job_id, {}).get("plan") or {}).get("planned_at")
            seen = plan_seen.model_dump(mode="json").get("planned_at") if plan_seen is not None else None
            if stored != seen:
                return None
        return self._update(job_id, allowed, {"state": to, **changes}, pending_since=utcnow())

    def update(self, job_id: str, expected: Iterable[BulkState], **changes: Any) -> BulkJob | None:
        if "statement_id" in changes and self._dies_recording:
            self._dies_recording -= 1
            raise RuntimeError("the executor died before recording its statement")
        return self._update(job_id, frozenset(expected), changes)

    def record_plan(self, job_id: str, plan) -> BulkJob | None:
        item = self._items.get(job_id, {})
        if item.get("abort_requested_at") or item.get("statement_id"):
            return None
        return self._update(job_id, frozenset({BulkState.IN_PROGRESS}), {"plan": plan})

    def count_upload(
        self, job_id: str, *, limit: int | None = None, keyed: tuple[str, KeyedBatch] | None = None
    ) -> BulkJob | None:
        if keyed is None:
            return self._count(job_id, "uploads", limit)
        item = self._items.get(job_id, {})
        name, batch = keyed
        count = item.get("uploads", 0)
        if name in item.get("keyed_batches", {}) or (limit is not None and count >= limit):
            return None
        batches = {**item.get("keyed_batches", {}), name: batch.model_dump(mode="json")}
        return self._update(job_id, frozenset({BulkState.OPEN}), {"uploads": count + 1, "keyed_batches": batches})

    def record_keyed_batch(self, job_id: str, name: str, batch: KeyedBatch) -> None:
        item = self._items.get(job_id)
        if item is not None and name not in item.get("keyed_batches", {}):
            batches = {**item.get("keyed_batches", {}), name: batch.model_dump(mode="json")}
            self._update(job_id, frozenset(BulkState), {"keyed_batches": batches})

    def count_result_attempt(self, job_id: str) -> BulkJob | None:
        return self._count(job_id, "result_attempts", None, state=BulkState.IN_PROGRESS)

    def _count(
        self, job_id: str, counter: str, limit: int | None, *, state: BulkState = BulkState.OPEN
    ) -> BulkJob | None:
        count = self._items.get(job_id, {}).get(counter, 0)
        if limit is not None and count >= limit:
            return None
        return self._update(job_id, frozenset({state}), {counter: count + 1})

    def close(self, job: BulkJob, **changes: Any) -> BulkJob | None:
        if not self._batches_were(job.job_id, job):
            return None
        changes = {"state": BulkState.UPLOAD_COMPLETE, **changes}
        return self._update(job.job_id, frozenset({BulkState.OPEN}), changes, pending_since=utcnow())

    def withdraw(self, job_id: str, key: str) -> BulkJob | None:
        withdrawn = [*self._items.get(job_id, {}).get("withdrawn_batches", []), key]
        return self._update(job_id, frozenset({BulkState.OPEN}), {"withdrawn_batches": withdrawn})

    def _batches_were(self, job_id: str, seen: BulkJob) -> bool:
        item = self._items.get(job_id, {})
        return (item.get("uploads", 0), len(item.get("withdrawn_batches", []))) == (
            seen.uploads,
            len(seen.withdrawn_batches),
        )

    def mark_published(self, job_id: str, state: BulkState) -> BulkJob | None:
        job = self._update(job_id, frozenset({state}), {"event_published": True})
        if job is not None and job.results_ready:
            self._pending.pop(job_id, None)
        return job

    def mark_results_ready(
        self,
        job_id: str,
        state: BulkState,
        *,
        attempt: str | None = None,
        error: ErrorInfo | None = None,
        leased: BulkJob | None = None,
    ) -> BulkJob | None:
        if leased is not None and not self._owed_as_read(leased):
            return None
        changes: dict[str, Any] = {"results_ready": True}
        if attempt is not None:
            changes["results_attempt"] = attempt
        if error is not None:
            changes["error"] = error
        return self._settled(self._update(job_id, frozenset({state}), changes))

    def give_up_results(self, job: BulkJob, *, why: str, error: ErrorInfo | None = None) -> BulkJob | None:
        if not self._owed_as_read(job):
            return None
        changes: dict[str, Any] = {"results_ready": True, "results_unavailable": why}
        if error is not None:
            changes["error"] = error
        return self._settled(self._update(job.job_id, frozenset({job.state}), changes))

    def _settled(self, job: BulkJob | None) -> BulkJob | None:
        if job is not None and job.event_published:
            self._pending.pop(job.job_id, None)
        return job

    def _owed_as_read(self, job: BulkJob) -> bool:
        """The store's condition of the same name: result files still owed, their lease as ``job`` was read."""
        item = self._items.get(job.job_id, {})
        return not item.get("results_ready") and item.get("results_writer_until") == job.results_writer_until

    def mark_checked(self, job_id: str, state: BulkState, at: datetime) -> BulkJob | None:
        return self._update(job_id, frozenset({state}), {"last_checked_at": at}, pending_since=at)

    def lease_results(self, job: BulkJob, *, until: int) -> BulkJob | None:
        if not self._owed_as_read(job):
            return None
        item = self._items.get(job.job_id, {})
        changes: dict[str, Any] = {"results_writer_until": until}
        if job.results_writer_until is not None:
            changes["results_writers_lost"] = item.get("results_writers_lost", 0) + 1
        return self._update(job.job_id, frozenset({job.state}), changes)

    def release_results(self, job: BulkJob) -> None:
        item = self._items.get(job.job_id, {})
        if job.results_writer_until is not None and item.get("results_writer_until") == job.results_writer_until:
            self._update(job.job_id, frozenset({job.state}), {"results_writer_until": None})

    def pending_before(self, cutoff: datetime, *, limit: int) -> PendingPage:
        due = sorted((since, job_id) for job_id, since in self._pending.items() if since < cutoff)
        return PendingPage(jobs=[PendingJob(job_id, since) for since, job_id in due[:limit]], more=len(due) > limit)

    def _update(
        self, job_id: str, allowed: frozenset[BulkState], changes: dict[str, Any], pending_since: datetime | None = None
    ) -> BulkJob | None:
        item = self._items.get(job_id)
        if item is None or BulkState(item["state"]) not in allowed:
            return None  # the real store's ConditionalCheckFailedException
        updated = _changed(item, changes)
        job = BulkJob.model_validate(copy.deepcopy(updated))  # refuse what the real store could not read back
        if dynamodb_size(updated) > ITEM_MAX_BYTES:
            raise _client_error(
                "ValidationException", "Item size to update has exceeded the maximum allowed size", "UpdateItem"
            )
        self._items[job_id] = updated
        if pending_since is not None:
            self._pending[job_id] = pending_since
        return job

    # -- test helpers

    def pending_since(self, job_id: str) -> datetime | None:
        """Where the job sits in the pending index (None: not in it)."""
        return self._pending.get(job_id)

    def die_recording_statement(self) -> None:
        """The next write of a statement id raises, as an executor that dies between starting its statement and
        recording it: the statement runs on (and may commit), the job stays ``InProgress`` without it."""
        self._dies_recording += 1


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
    reported: DatabaseIdentity | None = None  # who ExecuteStatement's answer says it runs as
    status: str = "SUBMITTED"
    error: str | None = None
    columns: list[Column] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)
    result_rows: int | None = None
    has_result_set: bool = False
    children: list[str] = field(default_factory=list)  # a batch's sub-statements (``<id>:<n>``, from 1)
    session_id: str | None = None
    created_at: datetime = field(default_factory=utcnow)  # DescribeStatement's CreatedAt


@dataclass
class FakeSession:
    """A Data API session: opened as ``identity``, running at most one statement; ``ended`` once its keep-alive ran
    out (``FakeWarehouse.end_session``)."""

    session_id: str
    identity: DatabaseIdentity
    keep_alive_seconds: int
    ended: bool = False


class FakeWarehouse:
    """:class:`spectra.warehouse.StatementRunner` over an in-memory Data API.

    ``execute`` honours ``ClientToken`` (a repeat returns the first statement, as the Data API does). Outcomes are
    scripted: ``throttle_next`` / ``reject_next`` make the next call of a method raise, and ``finish`` / ``fail`` /
    ``abort`` move a statement to a terminal state.
    """

    def __init__(self) -> None:
        self.statements: dict[str, FakeStatement] = {}
        self.calls: list[tuple[str, str]] = []  # (method, statement id or token): what reached the "service"
        self.quick_cancels: list[str] = []  # statements cancel(quick=True) was asked for
        self._by_token: dict[str, str] = {}
        self._scripted: dict[str, list[Exception]] = {}
        self._ids = itertools.count(1)
        self.tables: dict[tuple[str, str], list[dict[str, Any]]] = {}  # what DescribeTable answers (``add_table``)
        self.sessions: dict[str, FakeSession] = {}
        self.max_sessions: int | None = None  # ActiveSessionsExceededException past this many open sessions
        # the answer to the result of a statement without a result set: ValidationException here and in the emulator;
        # which code AWS sends is not documented (its text is "Query does not have result. Please check query status
        # with DescribeStatement."), so callers must cope with ResourceNotFoundException (NotFound) too
        self.no_result_set_answer: type[StatementRejected | NotFound] = StatementRejected

    # -- scripting

    def throttle_next(self, method: str = "execute", times: int = 1, aws_error: str = "ThrottlingException") -> None:
        for _ in range(times):
            self._script(
                method, Throttled(f"Redshift Data API: {aws_error}: Rate exceeded", details={"aws_error": aws_error})
            )

    def reject_next(self, message: str, method: str = "execute", aws_error: str = "ValidationException") -> None:
        self._script(method, StatementRejected(message, details={"aws_error": aws_error}))

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
        return self.start(
            sql, identity=identity, name=name, client_token=client_token, parameters=parameters
        ).statement_id

    def start(
        self,
        sql: str,
        *,
        identity: DatabaseIdentity,
        name: str,
        client_token: str,
        parameters: list[dict[str, str]] | None = None,
        result_format: str = "CSV",
        with_event: bool = True,
        session_id: str | None = None,
        keep_alive_seconds: int | None = None,
    ) -> Started:
        """As the Data API: a session that ended or runs a statement is refused (ValidationException); a statement
        in a session runs as the session's identity, whatever ``identity`` says."""
        self._enter("execute", client_token)
        existing = self._by_token.get(client_token)
        if existing is not None:
            if self.statements[existing].sql != sql:
                raise StatementRejected("ClientToken was already used for a different request")
            earlier = self.statements[existing]
            return Started(existing, earlier.session_id, earlier.reported)
        session = None
        if session_id is not None:
            session = self.sessions.get(session_id)
            if session is None or session.ended:
                raise StatementRejected(
                    f"Session {session_id} is not available", details={"aws_error": "ValidationException"}
                )
            if self.busy(session_id):
                raise StatementRejected(f"Session {session_id} is busy", details={"aws_error": "ValidationException"})
            identity = session.identity
        elif keep_alive_seconds:
            if self.max_sessions is not None and sum(not s.ended for s in self.sessions.values()) >= self.max_sessions:
                code = "ActiveSessionsExceededException"
                raise Throttled(f"Redshift Data API: {code}: too many sessions", details={"aws_error": code})
            session = FakeSession(str(uuid.uuid4()), identity, keep_alive_seconds)
            self.sessions[session.session_id] = session
        statement_id = f"00000000-0000-4000-8000-{next(self._ids):012d}"
        self.statements[statement_id] = FakeStatement(
            statement_id, sql, name, client_token, identity, list(parameters or [])
        )
        self.statements[statement_id].session_id = session.session_id if session else None
        self._by_token[client_token] = statement_id
        # AWS's answer names the user or secret the request named: none for a statement in a session
        self.statements[statement_id].reported = None if session_id is not None else identity
        return Started(statement_id, session.session_id if session else None, self.statements[statement_id].reported)

    def busy(self, session_id: str) -> bool:
        """A statement of the session is still running."""
        return any(s.session_id == session_id and s.status in _RUNNING for s in self.statements.values())

    def end_session(self, session_id: str) -> None:
        """The session's keep-alive ran out."""
        self.sessions[session_id].ended = True

    def session_of(self, statement_id: str) -> str | None:
        return self.statements[statement_id].session_id

    def describe(self, statement_id: str) -> StatementInfo:
        self._enter("describe", statement_id)
        statement = self._statement(statement_id)
        return StatementInfo(
            statement_id=statement_id,
            status=statement.status,
            error=statement.error,
            result_rows=statement.result_rows if statement.status == "FINISHED" else None,
            has_result_set=statement.has_result_set,
            sub_statements=[self._sub_statement(child) for child in statement.children],
            created_at=statement.created_at,
        )

    def find(self, name: str) -> str | None:
        self._enter("find", name)
        found = [statement_id for statement_id, statement in self.statements.items() if statement.name == name]
        return found[-1] if found else None

    def cancel(self, statement_id: str, *, quick: bool = False) -> bool:
        self._enter("cancel", statement_id)
        if quick:
            self.quick_cancels.append(statement_id)
        if statement_id not in self.statements:
            return False  # the runner's answer for a statement the Data API no longer keeps (NotFound)
        statement = self._statement(statement_id)
        if statement.status not in _RUNNING:
            return False  # the Data API refuses to cancel a finished statement; the runner turns that into False
        statement.status = "ABORTED"
        return True

    def csv_result(self, statement_id: str) -> tuple[list[Column], Iterator[str]]:
        opened = self.open_result(statement_id)
        return opened.columns, opened.pages

    def open_result(self, statement_id: str) -> CsvResult:
        """GetStatementResultV2's first page: a statement without a result set is refused, as the Data API does."""
        self._enter("csv_result", statement_id)
        statement = self._statement(statement_id)
        if statement.status != "FINISHED" or not statement.has_result_set:
            code = (
                "ValidationException" if self.no_result_set_answer is StatementRejected else "ResourceNotFoundException"
            )
            raise self.no_result_set_answer(
                "Query does not have result. Please check query status with DescribeStatement.",
                details={"aws_error": code},
            )
        return CsvResult(list(statement.columns), statement.result_rows, iter(list(statement.pages)))

    def _statement(self, statement_id: str) -> FakeStatement:
        statement = self.statements.get(statement_id)
        if statement is None:
            raise NotFound(f"Query {statement_id} does not exist")
        return statement

    # -- batches and tables (bulk jobs)

    def execute_batch(
        self, sqls: list[str], *, identity: DatabaseIdentity, name: str, client_token: str, with_event: bool = True
    ) -> str:
        self._enter("execute_batch", client_token)
        existing = self._by_token.get(client_token)
        if existing is not None:
            if self.batch_sqls(existing) != sqls:
                raise StatementRejected("ClientToken was already used for a different request")
            return existing
        statement_id = f"00000000-0000-4000-8000-{next(self._ids):012d}"
        batch = FakeStatement(statement_id, "; ".join(sqls), name, client_token, identity, [])
        for n, sql in enumerate(sqls, start=1):
            child = FakeStatement(f"{statement_id}:{n}", sql, name, client_token, identity, [])
            self.statements[child.statement_id] = child
            batch.children.append(child.statement_id)
        self.statements[statement_id] = batch
        self._by_token[client_token] = statement_id
        return statement_id

    def describe_table(self, schema: str, table: str, *, identity: DatabaseIdentity) -> list[dict[str, Any]] | None:
        self._enter("describe_table", f"{schema}.{table}")
        return copy.deepcopy(self.tables.get((schema, table))) or None

    def add_table(
        self,
        schema: str,
        table: str,
        columns: list[str],
        *,
        required: Iterable[str] = (),
        types: dict[str, str] | None = None,
    ) -> None:
        """A table DescribeTable shows (as the emulator's ColumnList): ``required`` columns are NOT NULL, no default;
        columns are varchar unless ``types`` names their typeName."""
        self.tables[(schema, table)] = [
            {
                "name": name,
                "typeName": (types or {}).get(name, "varchar"),
                "nullable": 0 if name in set(required) else 1,
            }
            for name in columns
        ]

    def batch_sqls(self, statement_id: str) -> list[str]:
        return [self.statements[child].sql for child in self.statements[statement_id].children]

    def finish_batch(self, statement_id: str, answers: dict[int, int | list[list[str]]]) -> StatementStatusChange:
        """FINISHED, every sub-statement too. ``answers`` by sub-statement index (from 0, as a plan counts them): an
        int is the rows a COPY or DML statement touched, a list the rows of a SELECT (served as CSV pages); the others
        touched nothing."""
        batch = self.statements[statement_id]
        last_copy = 0
        for index, child_id in enumerate(batch.children):
            sql = self.statements[child_id].sql
            if sql.startswith("COPY "):
                last_copy = answers.get(index, 0)
            # pg_last_copy_count(): what the COPY before it loaded, unless the test says otherwise
            answer = answers.get(index, [[str(last_copy)]] if sql == "SELECT pg_last_copy_count()" else 0)
            if isinstance(answer, list):
                page = io.StringIO()
                csv.writer(page, lineterminator="\n").writerows(answer)
                width = max((len(row) for row in answer), default=1)
                self.finish(
                    child_id,
                    columns=[Column(f"c{i}", "varchar") for i in range(width)],
                    pages=[page.getvalue()] if answer else [],
                    rows=len(answer),
                )
            else:
                self.finish(child_id, rows=answer)
        total = sum(self.statements[child].result_rows or 0 for child in batch.children)
        return self.finish(statement_id, rows=total)

    def fail_batch(self, statement_id: str, error: str, *, at: int) -> StatementStatusChange:
        """FAILED at sub-statement ``at`` (from 0): those before it finished, those after it never ran (ABORTED)."""
        batch = self.statements[statement_id]
        for index, child_id in enumerate(batch.children):
            if index < at:
                self.finish(child_id, rows=0)
            elif index == at:
                self.fail(child_id, error)
            else:
                self.abort(child_id)
        return self.fail(statement_id, error)

    def _sub_statement(self, statement_id: str) -> SubStatement:
        child = self.statements[statement_id]
        return SubStatement(
            statement_id=statement_id,
            status=child.status,
            error=child.error,
            result_rows=child.result_rows if child.status == "FINISHED" else None,
            has_result_set=child.has_result_set,
        )


# -- queue, events, tenants, S3 -------------------------------------------------------------------------------------


#: Failures of a send that leave its outcome unknown (the SDK retries an attempt whose answer was lost and raises only
#: the last attempt's error): an error answer and a read that timed out. By name, for ``pytest.mark.parametrize``.
AMBIGUOUS_SEND_FAILURES = {
    "error-answer": ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessage"),
    "timeout": ReadTimeoutError(endpoint_url="https://sqs.eu-west-1.amazonaws.com/"),
}


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
        if not 0 <= delay_seconds <= 900:  # SQS refuses it (InvalidParameterValue); moto does not check
            raise _client_error("InvalidParameterValue", f"DelaySeconds {delay_seconds} is not 0-900", "SendMessage")
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
    tests need (``create_tenant``, ``set_active``, ``update_tenant``, ``delete_tenant``)."""

    def __init__(self) -> None:
        self.tenants: dict[str, Tenant] = {}
        self.identities: dict[str, tuple[str, str | None]] = {}  # identity → (tenant id, generation), kept on delete
        # the tenant's slots and waits items, which the real delete removes in its transaction (set by make_ports)
        self.slots: FakeRunningSlots | None = None
        self.waits: FakeWaitLeases | None = None

    def create_tenant(self, tenant_id: str, **attributes: Any) -> Tenant:
        TenantDirectory.refuse_system_schemas(attributes.get("owned_schemas"))
        if tenant_id in self.tenants:
            raise Conflict(f"tenant {tenant_id!r} already exists")
        tenant = Tenant.new(tenant_id, **attributes)
        self._claim(tenant)
        self.tenants[tenant_id] = tenant
        return tenant

    def backdate(self, tenant_id: str, created_at: datetime) -> None:
        """The tenant's record as if created at ``created_at``: for tests whose jobs are older than the test, as a
        job made before its tenant's record was a predecessor's (spectra.identity)."""
        self.tenants[tenant_id] = self.tenants[tenant_id].model_copy(update={"created_at": created_at})

    def _claim(self, tenant: Tenant) -> None:
        """A database identity serves one tenant, ever (spectra.tenants.TenantDirectory)."""
        owner = (tenant.tenant_id, tenant.generation)
        named = (("db_user", "db_user", tenant.db_user), ("secret", "secret_arn", tenant.secret_arn))
        wanted = [f"{kind}:{identity_key(field, value)}" for kind, field, value in named if value]
        for identity in wanted:
            if self.identities.get(identity, owner) != owner:
                raise Conflict(f"the database identity {identity} was given to tenant {self.identities[identity][0]!r}")
        self.identities.update(dict.fromkeys(wanted, owner))

    def identity_holder(self, field_name: str, value: str) -> str | None:
        kind = "secret" if field_name == "secret_arn" else "db_user"
        return self.identities.get(f"{kind}:{identity_key(field_name, value)}", (None, None))[0]

    def set_active(self, tenant_id: str, active: bool) -> Tenant:
        if tenant_id not in self.tenants:
            raise NotFound(f"tenant {tenant_id!r} not found")
        current = self.tenants[tenant_id]
        reactivated = {"activated_at": utcnow()} if active and not current.active else {}
        self.tenants[tenant_id] = current.model_copy(update={"active": active, **reactivated})
        return self.tenants[tenant_id]

    def update_tenant(self, tenant_id: str, **changes: Any) -> Tenant:
        if unknown := set(changes) - CHANGEABLE_TENANT_FIELDS:  # as the real directory refuses them
            raise ValueError(f"not a tenant field that can be changed: {', '.join(sorted(unknown))}")
        TenantDirectory.refuse_system_schemas(changes.get("owned_schemas"))
        if tenant_id not in self.tenants:
            raise NotFound(f"tenant {tenant_id!r} not found")
        updated = Tenant.model_validate({**self.tenants[tenant_id].model_dump(), **changes})
        self._claim(updated)
        self.tenants[tenant_id] = updated
        return updated

    def delete_tenant(self, tenant_id: str) -> bool:
        if self.tenants.pop(tenant_id, None) is None:
            return False
        for items in (
            *((self.slots.slots, self.slots.waiters, self.slots.pools) if self.slots else ()),
            *((self.waits.leases,) if self.waits else ()),
        ):
            items.pop(tenant_id, None)  # its slots and waits items go in the same transaction as its record
        return True

    def get(self, tenant_id: str) -> Tenant | None:
        return self.tenants.get(tenant_id)

    def current_check(self, tenant_id: str, generation: str | None) -> Callable[[], bool]:
        """The real one is a ConditionCheck for a transaction; the fake stores evaluate this instead, when they write
        (:meth:`FakeSubscriptionStore.create`): the tenant's record is still the one of ``generation``."""

        def holds() -> bool:
            tenant = self.tenants.get(tenant_id)
            return tenant is not None and tenant.generation == generation

        return holds


class FakeWaitLeases:
    """:class:`spectra.waits.WaitLeases` in a dict: tenant → {lease id: when it ends}. Kept honest by the contract
    suite in ``tests/integration/pipeline/test_wait_leases_contract.py``."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, float]] = {}

    def take(self, tenant_id: str, lease_id: str, *, limit: int, until: float, now: float | None = None) -> bool:
        moment = now if now is not None else time.time()
        leases = self.leases.setdefault(tenant_id, {})
        if lease_id in leases:
            leases[lease_id] = until
            return True
        live = {lease: ends for lease, ends in leases.items() if ends > moment - CLOCK_MARGIN_SECONDS}
        if len(live) >= limit:
            return False
        self.leases[tenant_id] = {**live, lease_id: until}
        return True

    def give_back(self, tenant_id: str, lease_id: str) -> None:
        self.leases.get(tenant_id, {}).pop(lease_id, None)

    def held(self, tenant_id: str) -> dict[str, float]:
        return dict(self.leases.get(tenant_id, {}))


class FakeRunningSlots:
    """:class:`spectra.slots.RunningSlots` in dicts: tenant → {job id: stamp} for holders and for waiters, tenant →
    {session id: PooledSession} for the session pools. Kept honest by the contract suite in
    ``tests/integration/pipeline/test_slots_contract.py``."""

    def __init__(self) -> None:
        self.slots: dict[str, dict[str, float]] = {}
        self.waiters: dict[str, dict[str, float]] = {}
        self.pools: dict[str, dict[str, PooledSession]] = {}
        self.fail_park: bool | str = False  # make park raise, as DynamoDB does for an item past its size limit
        self.writes = 0  # claims, releases and drops that reached the "table"
        self.line_reads = 0  # reads of a tenant's whole line (the reconciler's, once per tenant and run)

    def acquire(self, tenant_id: str, job_id: str, *, limit: int, now: float | None = None) -> bool:
        return self.claim(tenant_id, job_id, limit=limit, now=now).taken

    def claim(
        self,
        tenant_id: str,
        job_id: str,
        *,
        limit: int,
        now: float | None = None,
        lease: PooledSession | None = None,
        prune: tuple[str, ...] = (),
    ) -> Claim:
        self.writes += 1
        moment = now if now is not None else time.time()
        exists = tenant_id in self.slots
        holders = self.slots.get(tenant_id, {})
        pool = self.pools.get(tenant_id, {})
        slot_free = job_id in holders or (len(holders) < limit if exists else limit >= 1)
        if lease is not None:
            current = pool.get(lease.session_id)
            session_ok = current is not None and current.identity == lease.identity and current.until > moment
            session_ok = session_ok and current.job_id in (None, job_id)
            if not session_ok or not slot_free:
                return Claim(
                    taken=False,
                    holders=dict(holders),
                    sessions=dict(pool),
                    session_refused=slot_free,
                )
        if not slot_free:
            self.slots.setdefault(tenant_id, {})  # a paused tenant's first claim makes its (empty) item too
            return Claim(taken=False, holders=dict(holders), sessions=dict(pool))
        holders = self.slots.setdefault(tenant_id, {})
        pool = self.pools.setdefault(tenant_id, {})
        holders[job_id] = moment
        self.waiters.setdefault(tenant_id, {}).pop(job_id, None)
        for session_id in prune:
            if lease is None or session_id != lease.session_id:
                pool.pop(session_id, None)
        leased = None
        if lease is not None:
            leased = pool[lease.session_id] = replace(pool[lease.session_id], job_id=job_id)
        waiting = dict(self.waiters.get(tenant_id, {}))
        return Claim(taken=True, session=leased, holders=dict(holders), sessions=dict(pool), waiting=waiting)

    def release(self, tenant_id: str, job_id: str, *, session: PooledSession | None = None) -> dict[str, float]:
        self.writes += 1
        if self.slots.get(tenant_id, {}).pop(job_id, None) is None:
            if self.unpark(tenant_id, job_id):  # an ended job leaves the waiting list: a second write, as the real one
                self.writes += 1
            return {}
        if session is not None:
            self.pools.setdefault(tenant_id, {})[session.session_id] = session
        return dict(self.waiters.get(tenant_id, {}))

    def releasing(
        self, tenant_id: str, job_id: str, *, session: PooledSession | None = None, waiter: str | None = None
    ) -> SlotRelease:
        return SlotRelease(
            tenant_id,
            job_id,
            session=session,
            waiter=waiter,
            write=_FakeRelease(self, tenant_id, job_id, session, waiter),
        )

    def drop_session(self, tenant_id: str, session_id: str, *, job_id: str) -> bool:
        self.writes += 1
        current = self.pools.get(tenant_id, {}).get(session_id)
        if current is None or current.job_id not in (None, job_id):
            return False
        del self.pools[tenant_id][session_id]
        return True

    def unlease(self, tenant_id: str, session: PooledSession, *, job_id: str) -> bool:
        self.writes += 1
        current = self.pools.get(tenant_id, {}).get(session.session_id)
        if current is None or current.job_id != job_id:
            return False
        self.pools[tenant_id][session.session_id] = session
        return True

    def return_session(self, tenant_id: str, session: PooledSession, *, job_id: str) -> bool:
        self.writes += 1
        pool = self.pools.get(tenant_id)
        current = pool.get(session.session_id) if pool is not None else None
        if pool is None or (current is not None and current.job_id != job_id):
            return False
        pool[session.session_id] = session
        return True

    def sessions(self, tenant_id: str) -> dict[str, PooledSession]:
        return dict(self.pools.get(tenant_id, {}))

    def park(self, tenant_id: str, job_id: str, *, limit: int, now: float | None = None) -> bool:
        if self.fail_park:  # True: the item's size limit; or the error code to raise
            code = self.fail_park if isinstance(self.fail_park, str) else "ValidationException"
            raise _client_error(code, "Item size has exceeded the maximum allowed size", "UpdateItem")
        if tenant_id not in self.slots or len(self.slots[tenant_id]) < limit or job_id in self.slots[tenant_id]:
            return False
        self.waiters.setdefault(tenant_id, {}).setdefault(job_id, now if now is not None else time.time())
        return True

    def unpark(self, tenant_id: str, job_id: str) -> bool:
        return self.waiters.get(tenant_id, {}).pop(job_id, None) is not None

    def holders(self, tenant_id: str) -> dict[str, float]:
        return dict(self.slots.get(tenant_id, {}))

    def waiting(self, tenant_id: str) -> dict[str, float]:
        return dict(self.waiters.get(tenant_id, {}))

    def line(self, tenant_id: str) -> tuple[dict[str, float], dict[str, float]]:
        self.line_reads += 1
        return self.holders(tenant_id), self.waiting(tenant_id)

    def evict(self, tenant_id: str, job_id: str, *, stamp: float, session_id: str | None = None) -> bool:
        holders = self.slots.get(tenant_id, {})
        if holders.get(job_id) != stamp:
            return False
        del holders[job_id]
        if session_id is not None:
            self.pools.get(tenant_id, {}).pop(session_id, None)
        return True

    def restamp(self, tenant_id: str, job_id: str, *, stamp: float, now: float) -> bool:
        holders = self.slots.get(tenant_id, {})
        if holders.get(job_id) != stamp:
            return False
        holders[job_id] = now
        return True


@dataclass
class _FakeRelease:
    """The fake's :attr:`SlotRelease.write`: the conditions DynamoDB checks, and the change, apart."""

    slots: FakeRunningSlots
    tenant_id: str
    job_id: str
    session: PooledSession | None
    waiter: str | None

    def refusal(self) -> SlotsSeen | None:
        holders = self.slots.slots.get(self.tenant_id, {})
        waiting = self.slots.waiters.get(self.tenant_id, {})
        holding = self.job_id in holders
        waiters_ok = self.waiter in waiting if self.waiter is not None else not waiting
        if holding and waiters_ok:
            return None
        return SlotsSeen(holding=holding, waiting=dict(waiting)) if self.tenant_id in self.slots.slots else SlotsSeen()

    def apply(self) -> None:
        self.slots.writes += 1
        del self.slots.slots[self.tenant_id][self.job_id]
        if self.waiter is not None:
            del self.slots.waiters[self.tenant_id][self.waiter]
        if self.session is not None:
            self.slots.pools.setdefault(self.tenant_id, {})[self.session.session_id] = self.session


class _Body:
    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)

    def read(self, amount: int | None = None) -> bytes:
        return self._stream.read(amount)

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> _Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeS3:
    """The S3 client calls the real :class:`~spectra.results.ResultSink` makes for results under its multipart
    threshold, and those :class:`~spectra.bulk.files.BulkFiles` makes (ranged GETs, HEAD, listing, tagging). A larger
    object would reach for ``create_multipart_upload`` and fail loudly: keep unit results small.
    """

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.object_tags: dict[tuple[str, str], dict[str, str]] = {}
        self.requests: list[tuple[str, str]] = []  # (operation, key); presigning is local and is not recorded

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str | None = None, **extra: Any) -> dict:
        self.requests.append(("PutObject", Key))
        metadata = {k.lower(): v for k, v in (extra.get("Metadata") or {}).items()}  # S3 answers x-amz-meta-* lowered
        written = datetime.now(UTC).replace(microsecond=0)  # S3 keeps whole seconds
        self.objects[(Bucket, Key)] = {
            "Body": bytes(Body),
            "ContentType": ContentType,
            "Metadata": metadata,
            "LastModified": written,
        }
        return {"ETag": '"' + hashlib.md5(bytes(Body)).hexdigest() + '"'}

    def get_object(
        self, *, Bucket: str, Key: str, Range: str | None = None, IfMatch: str | None = None, **_: Any
    ) -> dict:
        self.requests.append(("GetObject", Key))
        stored = self.objects.get((Bucket, Key))
        if stored is None:
            raise _client_error("NoSuchKey", "The specified key does not exist.", "GetObject")
        body = stored["Body"]
        if IfMatch is not None and IfMatch.strip('"') != hashlib.md5(body).hexdigest():
            raise _client_error(
                "PreconditionFailed", "At least one of the pre-conditions you specified did not hold", "GetObject"
            )
        if Range is not None:  # "bytes=<first>-[<last>]", as S3 reads it; a first byte past the end is refused
            first, _, last = Range.removeprefix("bytes=").partition("-")
            if int(first) >= len(body):
                raise _client_error("InvalidRange", "The requested range is not satisfiable", "GetObject")
            body = body[int(first) : int(last) + 1 if last else None]
        return {
            "Body": _Body(body),
            "ContentType": stored["ContentType"],
            "ContentLength": len(body),
            "LastModified": stored.get("LastModified"),
        }

    def generate_presigned_url(self, ClientMethod: str, Params: dict | None = None, ExpiresIn: int = 3600, **_):
        params = Params or {}
        return f"https://{params['Bucket']}.s3.fake/{params['Key']}?op={ClientMethod}&X-Amz-Expires={ExpiresIn}"

    def head_object(self, *, Bucket: str, Key: str, **_: Any) -> dict:
        self.requests.append(("HeadObject", Key))
        stored = self.objects.get((Bucket, Key))
        if stored is None:
            raise _client_error("404", "Not Found", "HeadObject")  # HEAD has no body: botocore sees only the status
        return {
            "ContentLength": len(stored["Body"]),
            "ContentType": stored["ContentType"],
            "ETag": '"' + hashlib.md5(stored["Body"]).hexdigest() + '"',
            "Metadata": dict(stored.get("Metadata") or {}),
            "LastModified": stored.get("LastModified"),
        }

    def delete_object(self, *, Bucket: str, Key: str, **_: Any) -> dict:
        self.requests.append(("DeleteObject", Key))
        self.objects.pop((Bucket, Key), None)
        self.object_tags.pop((Bucket, Key), None)
        return {}

    def put_object_tagging(self, *, Bucket: str, Key: str, Tagging: dict, **_: Any) -> dict:
        self.requests.append(("PutObjectTagging", Key))
        if (Bucket, Key) not in self.objects:
            raise _client_error("NoSuchKey", "The specified key does not exist.", "PutObjectTagging")
        self.object_tags[(Bucket, Key)] = {tag["Key"]: tag["Value"] for tag in Tagging["TagSet"]}  # replaces the set
        return {}

    def get_object_tagging(self, *, Bucket: str, Key: str, **_: Any) -> dict:
        self.requests.append(("GetObjectTagging", Key))
        if (Bucket, Key) not in self.objects:
            raise _client_error("NoSuchKey", "The specified key does not exist.", "GetObjectTagging")
        return {"TagSet": [{"Key": k, "Value": v} for k, v in self.object_tags.get((Bucket, Key), {}).items()]}

    def get_paginator(self, operation: str) -> _ListObjectsPaginator:
        if operation != "list_objects_v2":
            raise NotImplementedError(f"FakeS3 has no paginator for {operation}")
        return _ListObjectsPaginator(self)

    def body(self, bucket: str, key: str) -> bytes:
        return self.objects[(bucket, key)]["Body"]

    def tags(self, bucket: str, key: str) -> dict[str, str]:
        return dict(self.object_tags.get((bucket, key), {}))

    def keys(self, bucket: str) -> list[str]:
        return sorted(key for b, key in self.objects if b == bucket)


class _ListObjectsPaginator:
    """``list_objects_v2`` pages, as S3 gives them: keys in UTF-8 binary order, ``page_size`` at a time."""

    def __init__(self, s3: FakeS3, page_size: int = 1000) -> None:
        self._s3, self._page_size = s3, page_size

    def paginate(self, *, Bucket: str, Prefix: str = "", **_: Any) -> Iterator[dict]:
        keys = sorted((key for b, key in self._s3.objects if b == Bucket and key.startswith(Prefix)), key=str.encode)
        for start in range(0, max(len(keys), 1), self._page_size):
            self._s3.requests.append(("ListObjectsV2", Prefix))
            chunk = keys[start : start + self._page_size]
            page: dict[str, Any] = {"KeyCount": len(chunk)}
            if chunk:  # S3 leaves Contents out of an empty listing
                page["Contents"] = [
                    {
                        "Key": key,
                        "Size": len(self._s3.body(Bucket, key)),
                        "ETag": '"' + hashlib.md5(self._s3.body(Bucket, key)).hexdigest() + '"',
                        "LastModified": self._s3.objects[(Bucket, key)]["LastModified"],
                    }
                    for key in chunk
                ]
            yield page


# -- notifications ---------------------------------------------------------------------------------------------------


class FakeSubscriptionStore:
    """:class:`spectra.notify.store.SubscriptionStore` in a dict; kept honest by
    ``tests/integration/pipeline/test_subscription_store_contract.py``."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Subscription] = {}
        self.expiry: dict[tuple[str, str], datetime] = {}
        self.answered: set[tuple[str, str]] = set()  # SubscriptionStore.answer's marks

    def create(
        self,
        subscription: Subscription,
        *,
        expires_at: datetime | None = None,
        tenant_check: Callable[[], bool] | None = None,
    ) -> Subscription:
        key = (subscription.tenant_id, subscription.subscription_id)
        if tenant_check is not None and not tenant_check():  # FakeTenants.current_check
            raise TenantGone("the tenant was deleted; its API keys no longer authenticate")
        if key in self.items:
            raise Conflict(f"subscription {subscription.subscription_id} already exists")
        self.items[key] = subscription
        if expires_at is not None:
            self.expiry[key] = expires_at
        return subscription

    def get(self, tenant_id: str, subscription_id: str) -> Subscription | None:
        """As the real store's: a callback past its expiry is gone, although kept (as DynamoDB's TTL keeps it)."""
        expires_at = self.expiry.get((tenant_id, subscription_id))
        if expires_at is not None and expired({"expires_at": int(expires_at.timestamp())}, utcnow()):
            return None
        return self.items.get((tenant_id, subscription_id))

    def delete(self, tenant_id: str, subscription_id: str) -> bool:
        self.answered.discard((tenant_id, subscription_id))
        return self.items.pop((tenant_id, subscription_id), None) is not None

    def answer(self, tenant_id: str, subscription_id: str) -> Subscription | None:
        found = self.items.get((tenant_id, subscription_id))
        if found is not None:
            self.answered.add((tenant_id, subscription_id))
        return found

    def withdraw(self, tenant_id: str, subscription_id: str) -> bool:
        if (tenant_id, subscription_id) in self.answered:
            return False
        self.items.pop((tenant_id, subscription_id), None)
        return True

    def _standing(self, tenant_id: str) -> list[Subscription]:
        """The tenant's standing subscriptions in id order, expired ones included, as the table holds them."""
        return sorted(
            # a copy: requests at once add and withdraw subscriptions while one counts (the burst test's threads)
            (s for (t, i), s in list(self.items.items()) if t == tenant_id and i.startswith(SUBSCRIPTION_PREFIX)),
            key=lambda s: s.subscription_id,
        )

    def list_for_tenant(
        self, tenant_id: str, *, limit: int, after: str | None = None, consistent: bool = False
    ) -> SubscriptionPage:
        """As the real store's Query with a filter: ``limit`` items are looked at, and those past their expiry (a
        deleted tenant's) are left out of the page, which can so come back short, or empty with a position."""
        standing = [s for s in self._standing(tenant_id) if after is None or s.subscription_id > after]
        looked_at = standing[:limit]
        return SubscriptionPage(
            subscriptions=[s for s in looked_at if self.get(tenant_id, s.subscription_id) is not None],
            resume_after=looked_at[-1].subscription_id if len(standing) > limit else None,
        )

    def webhooks_for_tenant(self, tenant_id: str, *, consistent: bool = False) -> list[Subscription]:
        return [s for s in self._standing(tenant_id) if self.get(tenant_id, s.subscription_id) is not None]

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

    def record_success(
        self, tenant_id: str, subscription_id: str, *, status: int, at: datetime, made_at: datetime | None = None
    ) -> Subscription | None:
        current = self.get(tenant_id, subscription_id)
        if current is not None and made_at is not None and current.created_at != made_at:
            return None
        delivered = current.delivery.delivered + 1 if current else 0
        return self._change(
            tenant_id,
            subscription_id,
            delivery={
                "last_status": status,
                "last_error": None,
                "last_attempt_at": at,
                "last_success_at": at,
                "consecutive_failures": 0,
                "failing_since": None,
                "delivered": delivered,
            },
        )

    def record_failure(
        self,
        tenant_id: str,
        subscription_id: str,
        *,
        status: int | None,
        error: str,
        at: datetime,
        made_at: datetime | None = None,
        run_gap: timedelta | None = None,
    ) -> Subscription | None:
        current = self.get(tenant_id, subscription_id)
        if current is None or (made_at is not None and current.created_at != made_at):
            return None
        last = current.delivery.last_attempt_at
        new_run = run_gap is not None and last is not None and last < at - run_gap
        return self._change(
            tenant_id,
            subscription_id,
            delivery={
                "last_status": status,
                "last_error": error,
                "last_attempt_at": at,
                "consecutive_failures": 1 if new_run else current.delivery.consecutive_failures + 1,
                "failing_since": at if new_run else current.delivery.failing_since or at,
                "failed_attempts": current.delivery.failed_attempts + 1,
            },
        )

    def disable(
        self,
        tenant_id: str,
        subscription_id: str,
        *,
        reason: DisabledReason,
        message: str,
        at: datetime,
        failures_at_least: int | None = None,
        made_at: datetime | None = None,
    ) -> Subscription | None:
        current = self.get(tenant_id, subscription_id)
        if current is None or current.status is not SubscriptionStatus.ACTIVE:
            return None
        if made_at is not None and current.created_at != made_at:
            return None
        if failures_at_least is not None and current.delivery.consecutive_failures < failures_at_least:
            return None
        return self._change(
            tenant_id,
            subscription_id,
            status=SubscriptionStatus.DISABLED,
            disabled_at=at,
            disabled_reason=reason,
            disabled_message=message,
        )

    def mark_disabled_event_published(
        self, tenant_id: str, subscription_id: str, *, made_at: datetime | None = None
    ) -> Subscription | None:
        current = self.get(tenant_id, subscription_id)
        if current is not None and made_at is not None and current.created_at != made_at:
            return None
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


class CountingReads:
    """A store or directory wrapped to count its ``get`` calls (``reads``); everything else goes to it unchanged."""

    def __init__(self, inner) -> None:
        self.inner, self.reads = inner, 0

    def get(self, key: str):
        self.reads += 1
        return self.inner.get(key)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


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
    "loopback.example": ["127.0.0.1", "::1"],
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
INGEST_BUCKET = "spectra-ingest-test"
UNIT_TEST_TOKEN_KEY = b"unit tests sign page tokens with this 48-byte key"


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
        bulk_jobs_table="bulk-jobs-test",
        ingest_bucket=INGEST_BUCKET,
        bulk_results_queue_url="https://sqs.us-east-1.amazonaws.com/000000000000/bulk-results-test",
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


def with_tenants(ports: Ports, *callers: Caller) -> Ports:
    """``ports`` whose tenant directory holds the record of each caller's tenant, of the caller's generation (none:
    a tenant from before generations): what a subscription's create checks it still is (FakeTenants.current_check)."""
    for caller in callers:
        record = Tenant(
            tenant_id=caller.tenant_id,
            db_user=caller.db_user,
            secret_arn=caller.secret_arn,
            created_at=utcnow(),
            generation=caller.generation,
        )
        ports.tenants.tenants[caller.tenant_id] = record
    return ports


def make_ports(*, settings: Settings | None = None, s3: FakeS3 | None = None, **overrides: Any) -> Ports:
    """:class:`~spectra.ports.Ports` of fakes (the real ResultSink and BulkFiles on one :class:`FakeS3`); any port can
    be replaced."""
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
        "page_tokens": PageTokens(UNIT_TEST_TOKEN_KEY),
        "bulk": BulkPorts(
            jobs=FakeBulkJobStore(),
            files=BulkFiles(s3, results_bucket=settings.results_bucket, ingest_bucket=settings.ingest_bucket),
            results_queue=FakeQueue(),
        ),
        "slots": FakeRunningSlots(),
        "waits": FakeWaitLeases(),
    }
    ports.update(overrides)
    if isinstance(ports["tenants"], FakeTenants):  # its delete takes the tenant's slots and waits items with it
        ports["tenants"].slots, ports["tenants"].waits = ports["slots"], ports["waits"]
    return Ports(**ports)


def result_file(ports, job_id: str, kind: str) -> bytes:
    """The result file of ``kind`` (successful, failed, unprocessed) that the job's routes serve: the one of the
    attempt its record names (``results_attempt``)."""
    job = ports.bulk.jobs.get(job_id)
    assert job is not None and job.results_ready, (job_id, job)
    return ports.bulk.files.client.body(ports.settings.results_bucket, results_key(job, kind))


def acme_ports() -> Ports:
    """Ports of fakes with one active tenant, ``acme``, running as ``tenant_acme``: where most handler tests start."""
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    return ports


def queued_job(ports: Ports) -> Job:
    """A query job of tenant acme (``select 1``), QUEUED in the job store."""
    now = utcnow()
    job = Job(
        job_id=new_job_id(), tenant_id="acme", db_user="tenant_acme", sql="select 1", created_at=now, updated_at=now
    )
    ports.jobs.create(job)
    return job


def serving(monkeypatch, handler: Any, ports: Ports) -> Iterator[Ports]:
    """``ports`` behind a function's handler module (its ``get_ports``, whatever budget it asks for), for a fixture to
    yield. The module's metrics, which Powertools keeps on the class, are cleared after the test, so a count it made
    never reaches another test's handler."""
    monkeypatch.setattr(handler, "get_ports", lambda *budget: ports)
    yield ports
    handler.metrics.clear_metrics()


def metrics_counted(handler: Any) -> dict[str, tuple[float, str]]:
    """What a handler module's metrics hold now: each metric's total and its unit."""
    return {name: (sum(metric["Value"]), metric["Unit"]) for name, metric in handler.metrics.metric_set.items()}
