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
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from events import JobStatus
from spectra.errors import Conflict, InvalidToken
from spectra.jobs import Job, sources_of, utcnow

TENANT_INDEX = "by-tenant"
LIST_MAX_READS = 10  # index pages one list request may read
LIST_FILTERED_READ = 100  # items evaluated per read when a status filter is applied
PENDING_INDEX = "pending"
#: Partitions of the pending index. One is enough: a GSI partition takes 1,000 writes a second and a job costs four
#: index writes over its life (created, submitted, terminal, published), while the Data API admits a few dozen
#: ExecuteStatement calls a second per account. Raising it later is safe (the reconciler queries every shard below
#: the new count); lowering it would orphan the jobs in the dropped shards until they finish.
PENDING_SHARDS = 1
JOB_TTL = timedelta(days=30)
IDEMPOTENCY_TTL = timedelta(hours=24)

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def _plain(value: Any) -> Any:
    """DynamoDB returns numbers as Decimal; the models want ints."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "as_integer_ratio") and not isinstance(value, bool | int | float):
        return int(value) if value == int(value) else float(value)
    return value


def _job_from_item(item: dict[str, Any]) -> Job:
    return Job.model_validate(_plain(_from_item(item)))


def request_fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


_JOB_ID = re.compile(r"j_[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class ListPosition:
    """Where a tenant's listing resumes: the last index entry looked at. Page tokens carry it (signed, see
    ``spectra/tokens.py``); the tenant is never part of it, the store takes that from the caller."""

    created_key: str
    job_id: str

    def payload(self) -> dict[str, str]:
        return {"created_key": self.created_key, "job_id": self.job_id}

    @classmethod
    def from_payload(cls, payload: Any) -> ListPosition:
        """Checks the type and shape of every part; a position we would never have written is a bad token."""
        if not isinstance(payload, dict) or set(payload) != {"created_key", "job_id"}:
            raise InvalidToken("next_token is not valid for this listing")
        created_key, job_id = payload["created_key"], payload["job_id"]
        if not (isinstance(job_id, str) and isinstance(created_key, str) and _JOB_ID.fullmatch(job_id)):
            raise InvalidToken("next_token is not valid for this listing")
        created, _, key_job = created_key.partition("#")
        try:
            datetime.fromisoformat(created)
        except ValueError:
            raise InvalidToken("next_token is not valid for this listing") from None
        if key_job != job_id or len(created) > 40:
            raise InvalidToken("next_token is not valid for this listing")
        return cls(created_key=created_key, job_id=job_id)


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    resume_after: ListPosition | None  # None: this was the last page


@dataclass(frozen=True)
class PendingJob:
    """An entry of the pending index: which job, and since when nobody has seen it move."""

    job_id: str
    pending_since: datetime


@dataclass(frozen=True)
class PendingPage:
    jobs: list[PendingJob]
    more: bool  # entries past the cutoff were left for the next call


def pending_shard(job_id: str) -> str:
    """A stable shard for the job, so its index entry stays in one partition for its whole life."""
    return str(int(hashlib.sha256(job_id.encode()).hexdigest()[:8], 16) % PENDING_SHARDS)


def index_time(moment: datetime) -> str:
    """A fixed-width UTC timestamp: ISO strings of one width sort as the times they name (``isoformat`` drops zero
    microseconds and keeps the offset, so its strings would not)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_index_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _pending(job_id: str, since: datetime) -> dict[str, str]:
    return {"pending_shard": pending_shard(job_id), "pending_since": index_time(since)}


#: Passing these as None to ``_update`` removes the job from the pending index.
_NOT_PENDING: dict[str, None] = {"pending_shard": None, "pending_since": None}


class JobStore:
    """Jobs in one DynamoDB table. ``client`` is a boto3 DynamoDB client (low-level, so the wire format is explicit)."""

    def __init__(self, client, table_name: str) -> None:
        self._db = client
        self._table = table_name

    # -- create ---------------------------------------------------------------------------------------------------

    def create(self, job: Job, *, fingerprint: str | None = None) -> tuple[Job, bool]:
        """Record a new job. With an idempotency key, a repeat returns ``(existing job, False)``.

        The job and its idempotency record are written in one transaction, so two racing requests with the same key
        create exactly one job. Reusing a key for a different request is a 409, as payment APIs do.
        """
        now = utcnow()
        job_item = _to_item(
            {
                **job.model_dump(mode="json"),
                "created_key": f"{job.created_at.isoformat()}#{job.job_id}",
                "expires_at": int((now + JOB_TTL).timestamp()),
                **_pending(job.job_id, job.created_at),
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

        idem_id = self._idempotency_id(job.tenant_id, job.idempotency_key)
        idem_item = _to_item(
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
                            "ConditionExpression": "attribute_not_exists(job_id)",
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
        existing = self._db.get_item(TableName=self._table, Key=_to_item({"job_id": idem_id}), ConsistentRead=True)
        record = _from_item(existing.get("Item", {}))
        if not record:  # the record expired between our write and read: extremely unlikely, safe to ask for a retry
            raise Conflict("idempotency record changed during the request; retry it")
        if fingerprint and record.get("fingerprint") not in (None, fingerprint):
            raise Conflict(
                "Idempotency-Key was already used for a different request",
                details={"idempotency_key": job.idempotency_key, "job_id": record["target_job_id"]},
            )
        original = self.get(record["target_job_id"])
        if original is None:
            raise Conflict("idempotency record points to a job that no longer exists")
        return original, False

    @staticmethod
    def _idempotency_id(tenant_id: str, key: str) -> str:
        return f"idem#{tenant_id}#{hashlib.sha256(key.encode()).hexdigest()}"

    # -- read -----------------------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        if job_id.startswith("idem#"):
            return None
        response = self._db.get_item(TableName=self._table, Key=_to_item({"job_id": job_id}), ConsistentRead=True)
        item = response.get("Item")
        return _job_from_item(item) if item else None

    def get_for_tenant(self, tenant_id: str, job_id: str) -> Job | None:
        """A tenant's own job, or None: another tenant's job is indistinguishable from a missing one."""
        job = self.get(job_id)
        return job if job is not None and job.tenant_id == tenant_id else None

    def list_for_tenant(
        self, tenant_id: str, *, limit: int, status: JobStatus | None = None, after: ListPosition | None = None
    ) -> JobPage:
        """The tenant's jobs, newest first, starting after ``after``.

        The status filter is applied while paging. Each request reads at most ``LIST_MAX_READS`` index pages, so a
        filter that matches few of many jobs returns a short page (even an empty one) with a ``resume_after``,
        instead of reading the tenant's whole history in one API call: callers follow it until it is None.
        """
        start_key = self._start_key(tenant_id, after) if after else None
        jobs: list[Job] = []
        for _ in range(LIST_MAX_READS):
            wanted = limit - len(jobs)
            query: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": TENANT_INDEX,
                "KeyConditionExpression": "tenant_id = :t",
                "ExpressionAttributeValues": _to_item({":t": tenant_id}),
                "ScanIndexForward": False,
                # filtered reads evaluate more items per call; the surplus is cut below, at an exact position
                "Limit": wanted if status is None else max(wanted, LIST_FILTERED_READ),
            }
            if status is not None:
                query["FilterExpression"] = "#s = :s"
                query["ExpressionAttributeNames"] = {"#s": "status"}
                query["ExpressionAttributeValues"].update(_to_item({":s": status.value}))
            if start_key:
                query["ExclusiveStartKey"] = start_key
            response = self._db.query(**query)
            items = response.get("Items", [])
            if len(items) > wanted:
                items = items[:wanted]
                start_key = {name: items[-1][name] for name in ("job_id", "tenant_id", "created_key")}
                jobs.extend(_job_from_item(item) for item in items)
                break
            jobs.extend(_job_from_item(item) for item in items)
            start_key = response.get("LastEvaluatedKey")
            if not start_key or len(jobs) >= limit:
                break
        return JobPage(jobs=jobs, resume_after=self._position(start_key) if start_key else None)

    @staticmethod
    def _start_key(tenant_id: str, after: ListPosition) -> dict[str, Any]:
        # the tenant comes from the caller, never from the token: a position only ever moves within one's own jobs
        return _to_item({"job_id": after.job_id, "tenant_id": tenant_id, "created_key": after.created_key})

    @staticmethod
    def _position(key: dict[str, Any]) -> ListPosition:
        plain = _from_item(key)
        return ListPosition(created_key=plain["created_key"], job_id=plain["job_id"])

    # -- change ---------------------------------------------------------------------------------------------------

    def transition(
        self,
        job_id: str,
        to: JobStatus,
        *,
        expected: Iterable[JobStatus] | None = None,
        unstarted: bool = False,
        **changes: Any,
    ) -> Job | None:
        """Move a job to ``to`` if its current state allows it; return the new job, or None when the move is illegal.

        ``expected`` narrows the legal sources to the state(s) the caller saw: cancelling a job seen QUEUED must not
        succeed once the executor has moved it to SUBMITTED and started its statement. The condition is evaluated by
        DynamoDB, so of two racing writers exactly one wins. The job stays in the pending index, with
        ``pending_since`` reset to now, until :meth:`mark_published`. ``unstarted``: only while the job has no
        statement yet (giving up on a job must not race an executor that is recording the one it just started).
        """
        allowed = sources_of(to) if expected is None else sources_of(to) & frozenset(expected)
        changes = {**_pending(job_id, utcnow()), "status": to.value, **changes}
        return self._update(job_id, allowed, changes, unstarted=unstarted)

    def update(self, job_id: str, expected: Iterable[JobStatus], **changes: Any) -> Job | None:
        """Change attributes without a state change, if the job is still in one of ``expected``."""
        return self._update(job_id, frozenset(expected), changes)

    def mark_published(self, job_id: str, status: JobStatus) -> Job | None:
        """Record that the job's terminal event is out; the job leaves the pending index, nothing is owed any more."""
        return self._update(job_id, frozenset({status}), {"event_published": True, **_NOT_PENDING})

    def mark_checked(self, job_id: str, status: JobStatus, at: datetime) -> Job | None:
        """The reconciler looked at the job and left it as it is: move it to the back of the pending index.

        Conditional on ``status``, so a job that finished meanwhile is not put back into the index.
        """
        return self._update(job_id, frozenset({status}), {**_pending(job_id, at), "last_checked_at": at})

    # -- the pending index ----------------------------------------------------------------------------------------

    def pending_before(self, cutoff: datetime, *, limit: int) -> PendingPage:
        """Up to ``limit`` pending jobs quiet since before ``cutoff``, the longest-quiet first within each shard.

        The index is eventually consistent and keys-only: callers read each job with :meth:`get` (a consistent read)
        before acting on it, and must expect a job that has just finished.
        """
        found: list[PendingJob] = []
        more = False
        per_shard = -(-limit // PENDING_SHARDS)  # ceil: every shard gets its share of the batch
        for shard in map(str, range(PENDING_SHARDS)):
            wanted = min(per_shard, limit - len(found))
            if wanted <= 0:
                more = True  # the batch is full before this shard was read
                break
            start_key: dict[str, Any] | None = None
            while wanted > 0:
                query: dict[str, Any] = {
                    "TableName": self._table,
                    "IndexName": PENDING_INDEX,
                    "KeyConditionExpression": "pending_shard = :shard AND pending_since < :cutoff",
                    "ExpressionAttributeValues": _to_item({":shard": shard, ":cutoff": index_time(cutoff)}),
                    "Limit": wanted,
                }
                if start_key:
                    query["ExclusiveStartKey"] = start_key
                response = self._db.query(**query)
                items = [_from_item(item) for item in response.get("Items", [])]
                found.extend(PendingJob(item["job_id"], _parse_index_time(item["pending_since"])) for item in items)
                wanted -= len(items)
                start_key = response.get("LastEvaluatedKey")
                if not start_key:
                    break
            # A page that stopped at the limit says "maybe more" (DynamoDB cannot tell without reading on).
            more = more or start_key is not None
        return PendingPage(jobs=found, more=more)

    def _update(
        self, job_id: str, allowed: frozenset[JobStatus], changes: dict[str, Any], *, unstarted: bool = False
    ) -> Job | None:
        if not allowed:
            return None
        changes = {**changes, "updated_at": utcnow().isoformat()}
        names = {f"#a{i}": name for i, name in enumerate(changes)}
        values = {f":v{i}": _json_ready(value) for i, value in enumerate(changes.values())}
        states = {f":s{i}": state.value for i, state in enumerate(sorted(allowed))}
        set_parts = [f"#a{i} = :v{i}" for i, value in enumerate(values.values()) if value is not None]
        remove_parts = [f"#a{i}" for i, value in enumerate(values.values()) if value is None]
        expression = ("SET " + ", ".join(set_parts)) if set_parts else ""
        if remove_parts:
            expression += " REMOVE " + ", ".join(remove_parts)
        try:
            response = self._db.update_item(
                TableName=self._table,
                Key=_to_item({"job_id": job_id}),
                UpdateExpression=expression.strip(),
                ConditionExpression=f"attribute_exists(job_id) AND #status IN ({', '.join(states)})"
                + (" AND attribute_not_exists(statement_id)" if unstarted else ""),
                ExpressionAttributeNames={**names, "#status": "status"},
                ExpressionAttributeValues=_to_item({**{k: v for k, v in values.items() if v is not None}, **states}),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return _job_from_item(response["Attributes"])


def _json_ready(value: Any) -> Any:
    """Models and datetimes become the same JSON-shaped values ``create`` stores."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "value") and isinstance(getattr(value, "value", None), str):
        return value.value
    return value
