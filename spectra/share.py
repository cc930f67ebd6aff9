"""A tenant's share of the warehouse: a cap on the statements it runs at once, and the statement timeout.

**The running cap.** Each tenant may have at most ``cap`` jobs running (SUBMITTED) at once: the tenant's own
``max_running_statements``, else ``TENANT_MAX_RUNNING_STATEMENTS``. The executor takes a *slot* before it starts a
statement (:func:`take_slot`); a job over the cap is not failed and not started: it stays QUEUED, and its message is
sent again with a delay (a fresh message, so waiting never counts towards the queue's ``maxReceiveCount`` and never
ends in the DLQ). One tenant flooding the service therefore holds at most ``cap`` of the warehouse's slots (and of the
account's Data API active-statement quota), and the others' jobs start beside it.

Slots are one item per tenant (:class:`RunningSlots`, ``slots#<tenant>`` in the tenants table): a map of the job ids
holding a slot to when each was taken or last verified. Taking one is a single conditional write (``size(holders) <
cap``, or the job already holds one, so a redelivered message takes nothing twice). A job gives its slot back when it
ends, whichever way: every terminal transition of a query job goes through ``lifecycle.finish_job``, which calls
:func:`release_slot`. And because a function can die between a job's end and that release (or between taking a slot
and starting the statement), slots are also *recomputed from the job store*: when a tenant is at its cap, holders
not verified for ``SLOT_LEASE_SECONDS`` are looked up, and those whose job has ended, vanished or is still QUEUED
(its executor died before starting it; its message comes back and takes a slot again) are freed. A running holder is
re-stamped, so each is looked up at most once per lease. Nothing leaks for longer than a lease.

The slots API is deliberately small (``acquire`` / ``release`` by tenant and job id, :func:`take_slot`,
:func:`release_slot`) so bulk jobs can share the same cap.

**The statement timeout** is the warehouse's own: ``ALTER USER <tenant user> SET statement_timeout TO <ms>`` when a
tenant is provisioned (``local/demo.py``'s ``add_tenant`` does it; README, "Per-tenant share", for production). The
database cancels a statement that runs longer, and :func:`failure_code` turns its message into the job error code
``statement_timeout``.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from events import JobQueuedMessage, JobStatus
from spectra.jobs import utcnow

if TYPE_CHECKING:
    from spectra.ports import Ports

logger = logging.getLogger(__name__)
_de = TypeDeserializer()

SLOTS_PREFIX = "slots#"

#: What the warehouse says when it cancels a statement for running past ``statement_timeout``: PostgreSQL (and the
#: local emulator) "canceling statement due to statement timeout"; Redshift words it "Query (N) cancelled on user's
#: request". A job cancelled through the API never gets here: the Data API reports those statements ABORTED.
_TIMEOUT_MARKERS = ("statement timeout", "statement_timeout", "cancelled on user's request")


class RunningSlots:
    """The port: per tenant, the jobs holding a running slot, in one DynamoDB item (``pk = slots#<tenant>``).

    ``holders`` maps job id → epoch seconds when the slot was taken or last verified. ``client`` is a low-level
    boto3 DynamoDB client, ``table_name`` the tenants table.
    """

    def __init__(self, client, table_name: str) -> None:
        self._db = client
        self._table = table_name

    @staticmethod
    def _key(tenant_id: str) -> dict:
        return {"pk": {"S": SLOTS_PREFIX + tenant_id}}

    def acquire(self, tenant_id: str, job_id: str, *, limit: int, now: float | None = None) -> bool:
        """Take a slot for the job if the tenant holds fewer than ``limit`` (or the job holds one already: then it
        is re-stamped). False when the tenant is at its cap."""
        stamp = {"N": repr(now if now is not None else time.time())}
        for _ in range(3):  # the item is created on first use; a racing creator makes us try again
            try:
                self._db.update_item(
                    TableName=self._table,
                    Key=self._key(tenant_id),
                    UpdateExpression="SET holders.#job = :now",
                    # (attribute_exists first: size() of a missing map is an error on some DynamoDB emulators)
                    ConditionExpression="attribute_exists(holders.#job)"
                    " OR (attribute_exists(holders) AND size(holders) < :limit)",
                    ExpressionAttributeNames={"#job": job_id},
                    ExpressionAttributeValues={":now": stamp, ":limit": {"N": str(limit)}},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return True
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise
                if exc.response.get("Item"):
                    return False  # at the cap
            if self._create(tenant_id, job_id, stamp, limit):  # no item yet: the tenant's first slot
                return True
        return False

    def _create(self, tenant_id: str, job_id: str, stamp: dict, limit: int) -> bool:
        if limit < 1:
            return False
        try:
            self._db.put_item(
                TableName=self._table,
                Item={**self._key(tenant_id), "holders": {"M": {job_id: stamp}}},
                ConditionExpression="attribute_not_exists(pk)",
            )
            return True
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            return False

    def release(self, tenant_id: str, job_id: str) -> None:
        """Give the job's slot back; nothing happens if it holds none."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(tenant_id),
                UpdateExpression="REMOVE holders.#job",
                ConditionExpression="attribute_exists(holders.#job)",
                ExpressionAttributeNames={"#job": job_id},
            )
        except ClientError as exc:
            if _code(exc) not in ("ConditionalCheckFailedException", "ValidationException"):
                raise

    def holders(self, tenant_id: str) -> dict[str, float]:
        """Job id → when its slot was taken or last verified (epoch seconds)."""
        response = self._db.get_item(TableName=self._table, Key=self._key(tenant_id), ConsistentRead=True)
        item = response.get("Item") or {}
        return {job: float(_de.deserialize(value)) for job, value in item.get("holders", {}).get("M", {}).items()}

    def evict(self, tenant_id: str, job_id: str, *, stamp: float) -> bool:
        """Free the job's slot if nobody re-stamped it since ``stamp`` was read."""
        return self._if_stamp(tenant_id, job_id, stamp, "REMOVE holders.#job", {})

    def restamp(self, tenant_id: str, job_id: str, *, stamp: float, now: float) -> bool:
        """Mark the holder verified at ``now`` (if nobody else did since ``stamp`` was read)."""
        return self._if_stamp(tenant_id, job_id, stamp, "SET holders.#job = :now", {":now": {"N": repr(now)}})

    def _if_stamp(self, tenant_id: str, job_id: str, stamp: float, update: str, values: dict) -> bool:
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(tenant_id),
                UpdateExpression=update,
                ConditionExpression="holders.#job = :stamp",
                ExpressionAttributeNames={"#job": job_id},
                ExpressionAttributeValues={":stamp": {"N": repr(stamp)}, **values},
            )
            return True
        except ClientError as exc:
            if _code(exc) not in ("ConditionalCheckFailedException", "ValidationException"):
                raise
            return False


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


# -- the domain ------------------------------------------------------------------------------------------------------


def running_cap(ports: Ports, tenant_id: str) -> int:
    """The tenant's cap: its own ``max_running_statements``, else the service default."""
    tenant = ports.tenants.get(tenant_id)
    own = tenant.max_running_statements if tenant is not None else None
    return own if own is not None else ports.settings.tenant_max_running_statements


def take_slot(ports: Ports, message: JobQueuedMessage) -> bool:
    """True: the job holds one of its tenant's running slots and may start. False: the tenant is at its cap; the job
    stays QUEUED and its message has been sent again with a delay (nothing else to do with this one)."""
    cap = running_cap(ports, message.tenant_id)
    if ports.slots.acquire(message.tenant_id, message.job_id, limit=cap):
        return True
    if reclaim_slots(ports, message.tenant_id) and ports.slots.acquire(message.tenant_id, message.job_id, limit=cap):
        return True
    _wait_queued(ports, message)
    return False


def release_slot(ports: Ports, tenant_id: str, job_id: str) -> None:
    ports.slots.release(tenant_id, job_id)


def reclaim_slots(ports: Ports, tenant_id: str, *, now: float | None = None) -> int:
    """Free the slots of holders that cannot be running any more, judged by the job store; how many were freed.

    Only holders not verified for ``slot_lease_seconds`` are looked up, and a running one is re-stamped, so a tenant
    at its cap costs one job read per running statement per lease, not per waiting message.
    """
    now = now if now is not None else time.time()
    lease = ports.settings.slot_lease_seconds
    freed = 0
    for job_id, stamp in ports.slots.holders(tenant_id).items():
        if now - stamp < lease:
            continue
        job = ports.jobs.get(job_id)
        if job is not None and job.status is JobStatus.SUBMITTED:
            ports.slots.restamp(tenant_id, job_id, stamp=stamp, now=now)
            continue
        # Ended (its release was lost), gone, or QUEUED a lease after taking the slot (the executor died before
        # starting it: its message returns and takes a slot again).
        if ports.slots.evict(tenant_id, job_id, stamp=stamp):
            logger.warning("freed the running slot of job %s of tenant %s (%s)", job_id, tenant_id, _state(job))
            freed += 1
    return freed


def _state(job) -> str:
    return job.status.value if job is not None else "no such job"


def _wait_queued(ports: Ports, message: JobQueuedMessage) -> None:
    """Send the job's message again after a jittered delay, and move the job to the back of the pending index so the
    reconciler does not queue a second message for a job that is only waiting its turn."""
    waiting = ports.jobs.mark_checked(message.job_id, JobStatus.QUEUED, utcnow())
    if waiting is None:
        job = ports.jobs.get(message.job_id)
        if job is None or job.status.is_terminal:
            return  # cancelled (or gone) while it waited: nothing left to start
    base = ports.settings.tenant_wait_seconds
    delay = random.randint(max(1, base // 2), base + base // 2)  # spread the retries, or they come back in a herd
    ports.queue.send(message, delay_seconds=delay)
    logger.info("tenant %s is at its running cap; job %s waits %d s", message.tenant_id, message.job_id, delay)


def failure_code(error: str | None) -> str:
    """The job error code for a statement the warehouse failed: ``statement_timeout`` when the tenant's statement
    timeout cancelled it, ``statement_failed`` otherwise."""
    text = (error or "").lower()
    return "statement_timeout" if any(marker in text for marker in _TIMEOUT_MARKERS) else "statement_failed"
