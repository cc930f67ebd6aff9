"""The job store port: jobs in DynamoDB, every state change a conditional write.

Table layout (declared in template.yaml as ``JobsTable``):

* key ``job_id``; one item per job.
* GSI ``by-tenant`` (``tenant_id``, ``created_key`` = ``<created_at ISO>#<job_id>``): a tenant's jobs, newest first.
* Idempotency records share the table under ``job_id = "idem#<tenant>#<sha256(key)>"``. They carry neither
  ``tenant_id`` nor ``created_key``, so the GSI never sees them, and they expire through the ``expires_at`` TTL.
* Sparse GSI ``pending`` (``pending_shard``, ``pending_since``), keys only: the jobs that still owe the world
  something (a statement to start, a result to collect, an event to publish). The store sets both attributes when a
  job is created and on every state change, and removes them once the job is terminal *and* its event is published
  (:meth:`JobStore.mark_published`), so a failed PutEvents after the terminal write is still found by the reconciler.
  Finished jobs leave the index, which therefore stays as small as the work in flight and is read with a Query,
  never a Scan. ``pending_since`` is when the job last showed progress or was last looked at by the reconciler
  (:meth:`JobStore.mark_checked` moves it forward), so the oldest entries are always the ones most overdue.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from events import JobStatus
from spectra.dynamo import (
    PENDING_INDEX,
    TENANT_INDEX,
    ListPosition,
    PendingJob,
    PendingPage,
    StateTable,
    expired,
    from_item,
    index_time,
    json_ready,
    newest_first,
    passing_refusal,
    plain,
    shard_of,
    to_item,
)
from spectra.errors import Conflict, Unavailable
from spectra.jobs import Job, sources_of, utcnow
from spectra.slots import SlotRelease, SlotsSeen

__all__ = [
    "PENDING_INDEX",
    "Finished",
    "JobPage",
    "JobStore",
    "ListPosition",
    "PendingJob",
    "PendingPage",
    "index_time",
    "request_fingerprint",
]

#: Partitions of the pending index. One is enough: a GSI partition takes 1,000 writes a second and a job costs four
#: index writes over its life (created, submitted, terminal, published), while the Data API admits a few dozen
#: ExecuteStatement calls a second per account. Raising it later is safe (the reconciler queries every shard below
#: the new count); lowering it would orphan the jobs in the dropped shards until they finish.
PENDING_SHARDS = 1
JOB_TTL = timedelta(days=30)
IDEMPOTENCY_TTL = timedelta(hours=24)


def request_fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Finished:
    """What :meth:`JobStore.finish` did: the job as written, or None with, when only the slot's release was refused,
    what the refused release saw."""

    job: Job | None
    slots: SlotsSeen | None = None


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    resume_after: ListPosition | None  # None: this was the last page


def pending_shard(job_id: str) -> str:
    """A stable shard for the job, so its index entry stays in one partition for its whole life."""
    return shard_of(job_id, PENDING_SHARDS)


class JobStore:
    """Jobs in one DynamoDB table. ``client`` is a boto3 DynamoDB client (low-level, so the wire format is explicit)."""

    def __init__(self, client, table_name: str) -> None:
        self._db = client
        self._table = table_name
        self._states = StateTable(client, table_name, key="job_id", pending_shards=PENDING_SHARDS)

    # -- create ---------------------------------------------------------------------------------------------------

    def create(self, job: Job, *, fingerprint: str | None = None) -> tuple[Job, bool]:
        """Record a new job. With an idempotency key, a repeat returns ``(existing job, False)``.

        The job and its idempotency record are written in one transaction, so two racing requests with the same key
        create exactly one job. Reusing a key for a different request is a 409, as payment APIs do.
        """
        now = utcnow()
        job_item = to_item(
            {
                **job.model_dump(mode="json"),
                "created_key": f"{job.created_at.isoformat()}#{job.job_id}",
                "expires_at": int((now + JOB_TTL).timestamp()),
                **self._states.pending(job.job_id, job.created_at),
            }
        )
        if not job.idempotency_key:
            try:
                self._db.put_item(
                    TableName=self._table, Item=job_item, ConditionExpression="attribute_not_exists(job_id)"
                )
            except ClientError as exc:
                # The id is 128 random bits: an existing item is our own write, landed by an SDK retry whose first
                # response was lost.
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
            return job, True

        idem_id = self._idempotency_id(job.tenant_id, job.tenant_generation, job.idempotency_key)
        idem_item = to_item(
            {
                "job_id": idem_id,
                "target_job_id": job.job_id,
                "fingerprint": fingerprint,
                "expires_at": int((now + IDEMPOTENCY_TTL).timestamp()),
            }
        )
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": idem_item,
                            # DynamoDB's TTL removes an expired record within days, not at once: a key is the
                            # request's for 24 hours, then free again, as the README says
                            "ConditionExpression": "attribute_not_exists(job_id) OR expires_at < :now",
                            "ExpressionAttributeValues": {":now": {"N": str(int(now.timestamp()))}},
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": job_item,
                            "ConditionExpression": "attribute_not_exists(job_id)",
                        }
                    },
                ]
            )
            return job, True
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            if passing_refusal(exc.response):  # throttled or in conflict, tried again to the budget: not the key
                raise Unavailable("DynamoDB throttled the job's write, or another write held it; retry it") from None
        record = self._idempotency_record(idem_id, now)
        if record is None:
            # expired between our write and read, or our write lost to another for an expired key: ask for a retry
            raise Conflict("idempotency record changed during the request; retry it")
        return self._original(job, record, fingerprint), False

    def withdraw(self, job_id: str) -> None:
        """Delete a keyless job whose :meth:`create` raised, if it landed: an attempt the SDK sent again may have
        written it before the last attempt's error. Left QUEUED, the reconciler would queue it while the client, told to
        retry, makes another job: the query would run twice. Only while still QUEUED without a statement (nothing was
        queued for it, so nothing else has it); a missing item is fine."""
        try:
            self._db.delete_item(
                TableName=self._table,
                Key=to_item({"job_id": job_id}),
                ConditionExpression="#s = :queued AND attribute_not_exists(statement_id)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=to_item({":queued": JobStatus.QUEUED.value}),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def repeat_of(self, job: Job, *, fingerprint: str | None = None) -> Job | None:
        """The job an earlier request with ``job``'s idempotency key made, as :meth:`create` would answer it, but
        writing nothing: None when the key is free (never used, or its day is over). A Conflict when the key was
        used for another request."""
        if not job.idempotency_key:
            return None
        idem_id = self._idempotency_id(job.tenant_id, job.tenant_generation, job.idempotency_key)
        record = self._idempotency_record(idem_id, utcnow())
        return self._original(job, record, fingerprint) if record is not None else None

    def _idempotency_record(self, idem_id: str, now: datetime) -> dict[str, Any] | None:
        existing = self._db.get_item(TableName=self._table, Key=to_item({"job_id": idem_id}), ConsistentRead=True)
        record = from_item(existing.get("Item", {}))
        return record if record and record.get("expires_at", 0) >= int(now.timestamp()) else None

    def _original(self, job: Job, record: dict[str, Any], fingerprint: str | None) -> Job:
        if fingerprint and record.get("fingerprint") not in (None, fingerprint):
            raise Conflict(
                "Idempotency-Key was already used for a different request",
                details={"idempotency_key": job.idempotency_key, "job_id": record["target_job_id"]},
            )
        original = self.get(record["target_job_id"])
        if original is None:
            raise Conflict("idempotency record points to a job that no longer exists")
        return original

    @staticmethod
    def _idempotency_id(tenant_id: str, generation: str | None, key: str) -> str:
        """Keys are the tenant's as it is now: a tenant deleted and created again under the same id does not get its
        predecessor's job back for the same key (``generation``, see :mod:`spectra.tenants`)."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"idem#{tenant_id}#{generation}#{digest}" if generation else f"idem#{tenant_id}#{digest}"

    # -- read -----------------------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        """The job, for the pipeline's own use: past its record's life too, until the TTL deletes it
        (:func:`spectra.dynamo.expired`)."""
        item = self._item(job_id)
        return Job.model_validate(item) if item else None

    def _item(self, job_id: str) -> dict[str, Any] | None:
        if job_id.startswith("idem#"):
            return None
        response = self._db.get_item(TableName=self._table, Key=to_item({"job_id": job_id}), ConsistentRead=True)
        item = response.get("Item")
        return plain(from_item(item)) if item else None

    def get_for_tenant(self, tenant_id: str, job_id: str) -> Job | None:
        """A tenant's own job, or None: another tenant's job is indistinguishable from a missing one, and so is one
        past its record's life (``JOB_TTL``, the README's 30 days), which DynamoDB's TTL deletes days later."""
        item = self._item(job_id)
        if item is None or item.get("tenant_id") != tenant_id or expired(item, utcnow()):
            return None
        return Job.model_validate(item)

    def list_for_tenant(
        self, tenant_id: str, *, limit: int, status: JobStatus | None = None, after: ListPosition | None = None
    ) -> JobPage:
        """The tenant's jobs, newest first, starting after ``after``, those past their record's life left out (as
        :meth:`get_for_tenant` leaves them).

        The status filter is applied while paging (:func:`~spectra.dynamo.newest_first`): a filter that matches few
        of many jobs returns a short page (even an empty one) with a ``resume_after``, instead of reading the tenant's
        whole history in one API call: callers follow it until it is None.
        """
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": TENANT_INDEX,
            "KeyConditionExpression": "tenant_id = :t",
            "ExpressionAttributeValues": to_item({":t": tenant_id}),
            "ScanIndexForward": False,
        }
        if status is not None:
            query["FilterExpression"] = "#s = :s"
            query["ExpressionAttributeNames"] = {"#s": "status"}
            query["ExpressionAttributeValues"].update(to_item({":s": status.value}))
        jobs, start_key = newest_first(
            self._db,
            query,
            limit=limit,
            start_key=after.start_key(tenant_id) if after else None,
            filtered=status is not None,
            now_fn=utcnow,
            parse=Job.model_validate,
        )
        return JobPage(jobs=jobs, resume_after=ListPosition.of_key(start_key) if start_key else None)

    # -- change ---------------------------------------------------------------------------------------------------

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
        """Move a job to ``to`` if its current state allows it; return the new job, or None when the move is illegal.

        ``expected`` narrows the legal sources to the state(s) the caller saw: cancelling a job seen QUEUED must not
        succeed once the executor has moved it to SUBMITTED and started its statement. The condition is evaluated by
        DynamoDB, so of two racing writers exactly one wins. The job stays in the pending index, with
        ``pending_since`` reset to now, until :meth:`mark_published`. ``unstarted``: only while the job has no
        statement yet (giving up on a job must not race an executor that is recording the one it just started).
        ``announced``: the job's terminal event is already out, so this write also marks it published (and takes the
        job out of the pending index): :meth:`mark_published` folded into the transition.
        """
        allowed = sources_of(to) if expected is None else sources_of(to) & frozenset(expected)
        published = {"event_published": True, **StateTable.NOT_PENDING}
        owed = published if announced else self._states.pending(job_id, utcnow())
        changes = {**owed, "status": to.value, **changes}
        return self._update(job_id, allowed, changes, unstarted=unstarted)

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
        """:meth:`transition` from the state the caller saw (``job.status``) and ``release``, the job's running slot
        given back (:meth:`spectra.slots.RunningSlots.releasing`), in one transaction: both or neither.

        A transaction returns no item, so the job answered is the caller's view with the changes applied. Refused:
        ``Finished(None)`` when the job had moved (nothing to do), ``Finished(None, slots=...)`` when only the release
        was (the job is not written either; see :class:`~spectra.slots.SlotsSeen`)."""
        now = utcnow()
        allowed = sources_of(to) & frozenset({job.status})
        published = {"event_published": True, **StateTable.NOT_PENDING}
        owed = published if announced else self._states.pending(job.job_id, now)
        written = {**owed, "status": to.value, **changes}
        request = self._states.update_request(
            job.job_id,
            [state.value for state in allowed],
            written,
            absent=["statement_id"] if unstarted else (),
            updated_at=now,
        )
        if request is None:
            return Finished(None)
        try:
            self._db.transact_write_items(TransactItems=[{"Update": request}, {"Update": release.write}])
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "ValidationException":  # a slots item made before sessions were pooled (no map to set in)
                return Finished(None, slots=SlotsSeen(known=False))
            if code != "TransactionCanceledException":
                raise
            reasons = [reason.get("Code") for reason in exc.response.get("CancellationReasons") or []]
            if reasons[:1] == ["ConditionalCheckFailed"]:
                return Finished(None)
            if reasons[1:2] == ["ConditionalCheckFailed"]:
                item = (exc.response.get("CancellationReasons") or [{}, {}])[1].get("Item")
                return Finished(None, slots=SlotsSeen.of_item(item, job.job_id))
            return Finished(None, slots=SlotsSeen(known=False))  # a conflicting transaction, or reasons not given
        state = {k: v for k, v in written.items() if k in Job.model_fields}
        after = {**job.model_dump(mode="json"), **{k: json_ready(v) for k, v in state.items()}}
        return Finished(Job.model_validate({**after, "updated_at": now.isoformat()}))

    def update(self, job_id: str, expected: Iterable[JobStatus], **changes: Any) -> Job | None:
        """Change attributes without a state change, if the job is still in one of ``expected``."""
        return self._update(job_id, frozenset(expected), changes)

    def count_result_attempt(self, job_id: str) -> Job | None:
        """One more attempt at the job's result (``result_attempts`` + 1), while it is SUBMITTED: counted in DynamoDB,
        so copies of its status event (and the reconciler) racing each other each count. The job as it now is, or
        None once it is no longer SUBMITTED."""
        item = self._states.increment(job_id, [JobStatus.SUBMITTED.value], "result_attempts", updated_at=utcnow())
        return Job.model_validate(item) if item is not None else None

    def mark_published(self, job_id: str, status: JobStatus) -> Job | None:
        """Record that the job's terminal event is out; the job leaves the pending index, nothing is owed any more."""
        return self._update(job_id, frozenset({status}), {"event_published": True, **StateTable.NOT_PENDING})

    def mark_checked(self, job_id: str, status: JobStatus, at: datetime) -> Job | None:
        """The reconciler looked at the job and left it as it is: move it to the back of the pending index.

        Conditional on ``status``, so a job that finished meanwhile is not put back into the index.
        """
        return self._update(job_id, frozenset({status}), {**self._states.pending(job_id, at), "last_checked_at": at})

    # -- the pending index ----------------------------------------------------------------------------------------

    def pending_before(self, cutoff: datetime, *, limit: int) -> PendingPage:
        """Up to ``limit`` pending jobs quiet since before ``cutoff``, the longest-quiet first within each shard.

        The index is eventually consistent and keys-only: callers read each job with :meth:`get` (a consistent read)
        before acting on it, and must expect a job that has just finished.
        """
        return self._states.pending_before(cutoff, limit=limit)

    def _update(
        self, job_id: str, allowed: frozenset[JobStatus], changes: dict[str, Any], *, unstarted: bool = False
    ) -> Job | None:
        item = self._states.update(
            job_id,
            [state.value for state in allowed],
            changes,
            absent=["statement_id"] if unstarted else (),
            updated_at=utcnow(),
        )
        return Job.model_validate(item) if item is not None else None
