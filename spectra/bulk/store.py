"""The bulk job store: bulk jobs in their own DynamoDB table, every state change a conditional write.

Table layout (template.yaml ``BulkJobsTable``): key ``job_id``; GSI ``by-tenant`` (``tenant_id``, ``created_key`` =
``<created_at ISO>#<job_id>``) for a tenant's jobs, newest first; the sparse keys-only GSI ``pending``
(:mod:`spectra.dynamo`) holding the jobs the service owes something (a load to start or collect, an event to publish,
result files to write). An ``Open`` job waits for its tenant, not for us, so it is not pending.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from events import ErrorInfo
from spectra.bulk.models import BulkJob, BulkOperation, BulkState, JobSource, KeyedBatch, LoadPlan, bulk_sources_of
from spectra.dynamo import (
    EXPIRES_AT,
    FREE_OR_EXPIRED,
    TENANT_INDEX,
    ListPosition,
    PendingPage,
    StateTable,
    expired,
    expiry_values,
    json_ready,
    newest_first,
    to_item,
)
from spectra.jobs import utcnow

JOB_TTL = timedelta(days=30)


@dataclass(frozen=True)
class BulkJobPage:
    jobs: list[BulkJob]
    resume_after: ListPosition | None  # None: this was the last page


def position_of(job: BulkJob) -> ListPosition:
    """Where ``job`` sits in its tenant's listing (its ``by-tenant`` index key): a page cut short resumes after it."""
    return ListPosition(created_key=f"{job.created_at.isoformat()}#{job.job_id}", job_id=job.job_id)


def _job(item: dict[str, Any]) -> BulkJob:
    return BulkJob.model_validate(item)


def _shown_state_filter(state: BulkState, values: dict[str, Any], names: dict[str, str]) -> str:
    """A filter on the state the API shows (:attr:`BulkJob.shown_state`), adding its names and values. Result files
    given up count as ready (``mark_results_ready`` sets ``results_ready`` with ``results_unavailable``)."""
    values[":state"] = state.value
    names["#state"] = "state"
    if state not in (BulkState.IN_PROGRESS, BulkState.JOB_COMPLETE):
        return "#state = :state"
    values.update({":complete": BulkState.JOB_COMPLETE.value, ":query": BulkOperation.QUERY.value, ":ready": False})
    names.update({"#op": "operation", "#ready": "results_ready"})
    pending = "(#state = :complete AND #op <> :query AND #ready = :ready)"
    if state is BulkState.IN_PROGRESS:
        return f"(#state = :state OR {pending})"
    return f"(#state = :state AND NOT {pending})"


def _owed_as_read(request: dict[str, Any] | None, job: BulkJob) -> dict[str, Any]:
    """``request`` (an update of ``job``) made conditional on its result files being still owed and their writer's
    lease being as ``job`` was read: none, or the same one."""
    assert request is not None  # a state is allowed
    names, values = request["ExpressionAttributeNames"], request["ExpressionAttributeValues"]
    names.update({"#ready": "results_ready", "#lease": "results_writer_until"})
    values[":false"] = {"BOOL": False}
    request["ConditionExpression"] += " AND #ready = :false"
    if job.results_writer_until is None:
        request["ConditionExpression"] += " AND attribute_not_exists(#lease)"
    else:
        request["ConditionExpression"] += " AND #lease = :lease"
        values[":lease"] = {"N": str(job.results_writer_until)}
    return request


def _plan_was(request: dict[str, Any], plan: LoadPlan | None) -> dict[str, Any]:
    """``request`` made conditional on the job's plan being ``plan`` as far as its ``planned_at`` tells (none, or one
    without it, when None): another attempt's plan written since it was read refuses the write."""
    planned = json_ready(plan).get("planned_at") if plan is not None else None
    request["ExpressionAttributeNames"].update({"#plan": "plan", "#planned_at": "planned_at"})
    if planned is None:
        request["ConditionExpression"] += " AND attribute_not_exists(#plan.#planned_at)"
    else:
        request["ConditionExpression"] += " AND #plan.#planned_at = :planned_at"
        request["ExpressionAttributeValues"][":planned_at"] = {"S": planned}
    return request


def _uploads_were(request: dict[str, Any], uploads: int, withdrawn: int = 0) -> dict[str, Any]:
    """``request`` made conditional on the job having counted ``uploads`` batches and withdrawn ``withdrawn``."""
    names, values = request["ExpressionAttributeNames"], request["ExpressionAttributeValues"]
    names.update({"#uploads": "uploads", "#withdrawn": "withdrawn_batches"})
    if not (uploads and withdrawn):
        values[":zero"] = {"N": "0"}
    if uploads:
        request["ConditionExpression"] += " AND #uploads = :uploads"
        values[":uploads"] = {"N": str(uploads)}
    else:
        request["ConditionExpression"] += " AND (attribute_not_exists(#uploads) OR #uploads = :zero)"
    if withdrawn:
        request["ConditionExpression"] += " AND size(#withdrawn) = :withdrawn"
        values[":withdrawn"] = {"N": str(withdrawn)}
    else:
        request["ConditionExpression"] += " AND (attribute_not_exists(#withdrawn) OR size(#withdrawn) = :zero)"
    return request


class BulkJobStore:
    def __init__(self, client, table_name: str) -> None:
        self._db = client
        self._table = table_name
        self._states = StateTable(client, table_name, key="job_id", state_attribute="state")

    def create(self, job: BulkJob) -> tuple[BulkJob, bool]:
        """Record a new job; ``(existing, False)`` when one with this id exists (a repeated S3 event, a create
        repeated with its Idempotency-Key). One past its record's life (``JOB_TTL``), which DynamoDB's TTL deletes
        days later, is replaced: an Idempotency-Key names its job for 30 days (README), so the key of a nightly
        load used again a month on makes that night's job, not answer last month's as its own."""
        now = utcnow()
        item = {
            **job.model_dump(mode="json"),
            "created_key": position_of(job).created_key,
            EXPIRES_AT: int((now + JOB_TTL).timestamp()),
        }
        if job.state is not BulkState.OPEN:
            item.update(self._states.pending(job.job_id, job.created_at))
        try:
            self._db.put_item(
                TableName=self._table,
                Item=to_item(item),
                ConditionExpression=FREE_OR_EXPIRED,
                ExpressionAttributeNames={"#key": "job_id", "#expires_at": EXPIRES_AT},
                ExpressionAttributeValues=expiry_values(now),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            existing = self.get(job.job_id)
            if existing is None:  # cannot happen (jobs are never deleted before their TTL); say so rather than guess
                raise
            return existing, False
        return job, True

    def get(self, job_id: str) -> BulkJob | None:
        """The job, for the pipeline's own use: past its record's life too, until the TTL deletes it
        (:func:`spectra.dynamo.expired`)."""
        item = self._states.get(job_id)
        return _job(item) if item else None

    def get_for_tenant(self, tenant_id: str, job_id: str) -> BulkJob | None:
        """The tenant's own job, or None: another tenant's, and one past its record's life (30 days), are not found."""
        item = self._states.get(job_id)
        if item is None or item.get("tenant_id") != tenant_id or expired(item, utcnow()):
            return None
        return _job(item)

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
        """The tenant's bulk jobs, newest first, filtered while paging (:func:`~spectra.dynamo.newest_first`: a rare
        filter gives short pages with a position rather than reading the whole history at once).
        ``state`` is the state the API shows (:attr:`BulkJob.shown_state`: a JobComplete ingest job whose result
        files are still owed is InProgress). ``ingest_only`` leaves query jobs out, ``source`` keeps one door's jobs,
        and jobs past their record's life are left out always (as :meth:`get_for_tenant` leaves them). The tenant
        comes from the caller, never from the position."""
        start_key = after.start_key(tenant_id) if after else None
        filters, values, names = [], {":t": tenant_id}, {}
        if state is not None:
            filters.append(_shown_state_filter(state, values, names))
        if operation is not None:
            filters.append("#op = :op")
            values[":op"] = operation.value
            names["#op"] = "operation"
        if ingest_only:
            filters.append("#op <> :query")
            values[":query"] = BulkOperation.QUERY.value
            names["#op"] = "operation"
        if source is not None:
            filters.append("#src = :src")
            values[":src"] = source.value
            names["#src"] = "source"
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": TENANT_INDEX,
            "KeyConditionExpression": "tenant_id = :t",
            "ExpressionAttributeValues": to_item(values),
            "ScanIndexForward": False,
        }
        if filters:
            query["FilterExpression"] = " AND ".join(filters)
            query["ExpressionAttributeNames"] = names
        jobs, start_key = newest_first(
            self._db, query, limit=limit, start_key=start_key, filtered=bool(filters), now_fn=utcnow, parse=_job
        )
        return BulkJobPage(jobs=jobs, resume_after=ListPosition.of_key(start_key) if start_key else None)

    def transition(
        self,
        job_id: str,
        to: BulkState,
        *,
        expected: Iterable[BulkState] | None = None,
        unstarted: bool = False,
        uploads: BulkJob | None = None,
        plan_seen: LoadPlan | bool | None = False,
        **changes: Any,
    ) -> BulkJob | None:
        """Move to ``to`` from a state that allows it (narrowed to ``expected``); None when the move is refused.
        ``unstarted``: only while no statement is recorded. ``uploads`` (the job as read before its batches were
        listed): only while the job has counted and withdrawn as many batches as then (:meth:`count_upload`,
        :meth:`withdraw`), as :meth:`close` does. ``plan_seen`` (a plan, or None for none): only while the job's plan
        is still that one (:func:`_plan_was`); False: whatever it is. The job is (re)entered in the pending index."""
        allowed = bulk_sources_of(to) if expected is None else bulk_sources_of(to) & frozenset(expected)
        changes = {**self._states.pending(job_id, utcnow()), "state": to.value, **changes}
        return self._update(job_id, allowed, changes, unstarted=unstarted, uploads=uploads, plan_seen=plan_seen)

    def update(self, job_id: str, expected: Iterable[BulkState], **changes: Any) -> BulkJob | None:
        return self._update(job_id, frozenset(expected), changes)

    def record_plan(self, job_id: str, plan: LoadPlan) -> BulkJob | None:
        """The executor's last look before it starts the load: the plan written while the job is ``InProgress``
        with no abort asked and no statement recorded; None otherwise (nothing written: an abort never overwrites
        the plan, and its ``planned_at``, of another attempt that may be starting the load)."""
        return self._update(
            job_id, frozenset({BulkState.IN_PROGRESS}), {"plan": plan}, absent=("abort_requested_at", "statement_id")
        )

    def count_upload(
        self, job_id: str, *, limit: int | None = None, keyed: tuple[str, KeyedBatch] | None = None
    ) -> BulkJob | None:
        """One more batch stored, or upload URL issued, for the job (``uploads`` + 1), while it is ``Open`` (and, given
        ``limit``, has fewer than that); None once it is not (or has them). ``keyed``: the batch's key name and record,
        written with the count and only while the name is not in ``keyed_batches`` (None when it is): a repeat under
        the same ``Idempotency-Key`` is counted once however the two requests interleave."""
        if keyed is None:
            item = self._states.increment(job_id, [BulkState.OPEN.value], "uploads", below=limit, updated_at=utcnow())
            return _job(item) if item is not None else None
        name, batch = keyed
        request = self._states.update_request(job_id, [BulkState.OPEN.value], {}, updated_at=utcnow())
        assert request is not None  # a state is allowed
        names, values = request["ExpressionAttributeNames"], request["ExpressionAttributeValues"]
        names.update({"#keyed": "keyed_batches", "#name": name, "#uploads": "uploads"})
        values.update(to_item({":batch": batch.model_dump(mode="json"), ":one": 1}))
        request["UpdateExpression"] += ", #keyed.#name = :batch ADD #uploads :one"
        request["ConditionExpression"] += " AND attribute_not_exists(#keyed.#name)"
        if limit is not None:
            request["ConditionExpression"] += " AND (attribute_not_exists(#uploads) OR #uploads < :below)"
            values.update(to_item({":below": limit}))
        return self._into_keyed_map(job_id, lambda: self._conditional(request))

    def record_keyed_batch(self, job_id: str, name: str, batch: KeyedBatch) -> None:
        """Record a batch under its key ``name`` whatever the job's state, unless the name is recorded already: a
        keyed batch the job's close listed before its count was refused (:meth:`count_upload` writes only while
        ``Open``) is part of the job, and a repeat of its request must find it (else the repeat is answered 409 'not
        Open' for a batch the job loads)."""
        request = {
            "TableName": self._table,
            "Key": to_item({"job_id": job_id}),
            "UpdateExpression": "SET #keyed.#name = :batch",
            "ConditionExpression": "attribute_exists(job_id) AND attribute_not_exists(#keyed.#name)",
            "ExpressionAttributeNames": {"#keyed": "keyed_batches", "#name": name},
            "ExpressionAttributeValues": to_item({":batch": batch.model_dump(mode="json")}),
        }

        def record() -> None:
            try:
                self._db.update_item(**request)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise

        self._into_keyed_map(job_id, record)

    def _into_keyed_map(self, job_id: str, write: Callable[[], Any]) -> Any:
        """``write`` (a write into ``keyed_batches``), for a job recorded before keyed batches were too: it has no
        map, so a path into it is invalid (ValidationException); it is given an empty one first."""
        try:
            return write()
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ValidationException":
                raise
        try:
            self._db.update_item(
                TableName=self._table,
                Key=to_item({"job_id": job_id}),
                UpdateExpression="SET #keyed = :empty",
                ConditionExpression="attribute_exists(job_id) AND attribute_not_exists(#keyed)",
                ExpressionAttributeNames={"#keyed": "keyed_batches"},
                ExpressionAttributeValues={":empty": {"M": {}}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
        return write()

    def count_result_attempt(self, job_id: str) -> BulkJob | None:
        """One more failed attempt at the outcome of the job's statement, while it is ``InProgress`` (counted in
        DynamoDB, so racing copies of its event each count); None once it is not."""
        item = self._states.increment(job_id, [BulkState.IN_PROGRESS.value], "result_attempts", updated_at=utcnow())
        return _job(item) if item is not None else None

    def close(self, job: BulkJob, **changes: Any) -> BulkJob | None:
        """``Open`` → ``UploadComplete`` with ``changes`` (the batches found), only if no batch was counted since
        ``job`` was read (:meth:`count_upload`): a batch stored meanwhile may be missing from what was found."""
        request = self._states.update_request(
            job.job_id,
            [BulkState.OPEN.value],
            {**self._states.pending(job.job_id, utcnow()), "state": BulkState.UPLOAD_COMPLETE.value, **changes},
            updated_at=utcnow(),
        )
        assert request is not None  # a state is allowed
        return self._conditional(_uploads_were(request, job.uploads, len(job.withdrawn_batches)))

    def withdraw(self, job_id: str, key: str) -> BulkJob | None:
        """Record a stored batch as taken back (``withdrawn_batches``) while the job is ``Open``: the job as written;
        None once it is not (a close or an abort may have listed the batch). A close that read the job before this
        write is refused by its condition, and lists again without the batch."""
        request = self._states.update_request(job_id, [BulkState.OPEN.value], {}, updated_at=utcnow())
        assert request is not None  # a state is allowed
        request["ExpressionAttributeNames"]["#withdrawn"] = "withdrawn_batches"
        request["ExpressionAttributeValues"].update(to_item({":key": [key], ":none": []}))
        request["UpdateExpression"] += ", #withdrawn = list_append(if_not_exists(#withdrawn, :none), :key)"
        return self._conditional(request)

    def _conditional(self, request: dict[str, Any]) -> BulkJob | None:
        item = self._states.apply(request)
        return _job(item) if item is not None else None

    def mark_published(self, job_id: str, state: BulkState) -> BulkJob | None:
        """The terminal event is out. The job leaves the pending index unless result files are still owed."""
        job = self._update(job_id, frozenset({state}), {"event_published": True})
        if job is not None and job.results_ready:
            job = self._update(job_id, frozenset({state}), dict(StateTable.NOT_PENDING))
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
        """Result files are written, under ``attempt`` (``results_attempt``: the routes serve those; ``error``: what
        they fall short of). The job leaves the pending index unless its event is still owed. ``leased``: the job as
        its writer leased it, whose lease must still be the job's (else None): a writer whose lease ran out and was
        taken over does not point the routes at its own files, whole as they are."""
        changes: dict[str, Any] = {"results_ready": True}
        if attempt is not None:
            changes["results_attempt"] = attempt
        if error is not None:
            changes["error"] = error
        if leased is None:
            return self._settled(self._update(job_id, frozenset({state}), changes))
        request = self._states.update_request(job_id, [state.value], changes, updated_at=utcnow())
        return self._settled(self._conditional(_owed_as_read(request, leased)))

    def give_up_results(self, job: BulkJob, *, why: str, error: ErrorInfo | None = None) -> BulkJob | None:
        """Result files given up (``why``; ``error``: the job's, if it has none yet), unless written meanwhile or their
        lease changed since ``job`` was read: a writer that took them in between writes them, and giving them up under
        it would leave the routes answering 410 for files that exist. The job leaves the pending index unless its event
        is still owed."""
        changes: dict[str, Any] = {"results_ready": True, "results_unavailable": why}
        if error is not None:
            changes["error"] = error
        request = self._states.update_request(job.job_id, [job.state.value], changes, updated_at=utcnow())
        return self._settled(self._conditional(_owed_as_read(request, job)))

    def _settled(self, job: BulkJob | None) -> BulkJob | None:
        if job is not None and job.event_published:
            job = self._update(job.job_id, frozenset({job.state}), dict(StateTable.NOT_PENDING))
        return job

    def lease_results(self, job: BulkJob, *, until: int) -> BulkJob | None:
        """Hold the job's owed result files for one writer until ``until`` (epoch seconds), if they are still owed and
        the lease is as ``job`` was read: none, or one that expired (taken over, and its writer counted in
        ``results_writers_lost``). None when refused: written meanwhile, or another writer took them first."""
        # updated_at marks the lease as this writer's own: a retry whose first attempt took it is refused by it
        request = self._states.update_request(
            job.job_id, [job.state.value], {"results_writer_until": until}, updated_at=utcnow()
        )
        request = _owed_as_read(request, job)
        if job.results_writer_until is not None:
            request["ExpressionAttributeNames"]["#lost"] = "results_writers_lost"
            request["ExpressionAttributeValues"][":one"] = {"N": "1"}
            request["UpdateExpression"] += " ADD #lost :one"
        return self._conditional(request)

    def release_results(self, job: BulkJob) -> None:
        """Give back the lease ``job`` holds (:meth:`lease_results`), unless another writer has taken it since."""
        if job.results_writer_until is None:
            return
        request = self._states.update_request(job.job_id, [job.state.value], {"results_writer_until": None})
        assert request is not None  # a state is allowed
        request["ConditionExpression"] += " AND #a0 = :old"
        request["ExpressionAttributeValues"][":old"] = {"N": str(job.results_writer_until)}
        self._conditional(request)

    def mark_checked(self, job_id: str, state: BulkState, at: datetime) -> BulkJob | None:
        return self._update(job_id, frozenset({state}), {**self._states.pending(job_id, at), "last_checked_at": at})

    def pending_before(self, cutoff: datetime, *, limit: int) -> PendingPage:
        return self._states.pending_before(cutoff, limit=limit)

    def _update(
        self,
        job_id: str,
        allowed: frozenset[BulkState],
        changes: dict[str, Any],
        *,
        unstarted: bool = False,
        uploads: BulkJob | None = None,
        absent: Iterable[str] = (),
        plan_seen: LoadPlan | bool | None = False,
    ) -> BulkJob | None:
        request = self._states.update_request(
            job_id,
            [state.value for state in allowed],
            changes,
            absent=[*absent, *(["statement_id"] if unstarted and "statement_id" not in absent else [])],
            updated_at=utcnow(),
        )
        if request is None:
            return None
        if uploads is not None:
            request = _uploads_were(request, uploads.uploads, len(uploads.withdrawn_batches))
        if plan_seen is not False:
            request = _plan_was(request, plan_seen if isinstance(plan_seen, LoadPlan) else None)
        return self._conditional(request)
