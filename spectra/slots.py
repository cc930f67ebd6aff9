"""The port behind each tenant's share of the warehouse: one DynamoDB item per tenant (``slots#<tenant>`` in the
tenants table) holding its running slots, its waiting list and its pool of Data API sessions.

Slots and sessions share the item on purpose: a statement takes its slot and leases a session in **one** conditional
write, and gives both back in one (the domain is :mod:`spectra.share` for slots, :mod:`spectra.sessions` for
sessions). Kept apart, a session would cost every job two more DynamoDB calls.

The item (every map keyed by id):

* ``holders``: job id → epoch seconds when its slot was taken or last verified;
* ``waiting``: job id → its place in line for a slot (a time the caller gives: :func:`spectra.share._in_line_since`);
* ``sessions``: Data API session id → ``{"who": identity, "until": epoch seconds, "job": job id, "opened": epoch
  seconds}``. ``who`` is the database identity the session was opened as (:func:`spectra.sessions.identity_key`),
  ``until`` when its keep-alive is expected to end (an estimate on the early side, never past the session's last
  hours: :data:`spectra.sessions.RETIRE_AFTER_SECONDS`), ``job`` the job leasing it, absent while it is idle,
  ``opened`` when it was opened.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

_de = TypeDeserializer()

SLOTS_PREFIX = "slots#"


@dataclass(frozen=True)
class PooledSession:
    """One Data API session in a tenant's pool."""

    session_id: str
    identity: str  # who it runs as (spectra.sessions.identity_key); a session never changes identity
    until: float  # epoch seconds: when its keep-alive is expected to end
    job_id: str | None = None  # the job leasing it; None while idle
    #: epoch seconds when it was opened (a little before, on the early side); None for one pooled before this was kept
    opened: float | None = None

    def as_item(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"who": {"S": self.identity}, "until": {"N": repr(float(self.until))}}
        if self.job_id:
            entry["job"] = {"S": self.job_id}
        if self.opened is not None:
            entry["opened"] = {"N": repr(float(self.opened))}
        return {"M": entry}


@dataclass(frozen=True)
class Claim:
    """What :meth:`RunningSlots.claim` did.

    ``taken``: the job holds a slot. ``session``: the session leased with it (None when none was asked for, or the one
    asked for was not available: then ``taken`` is False too and nothing was written). ``holders`` and ``sessions``:
    the item as the write saw it (after it when it succeeded, before it when it was refused), for the next choice."""

    taken: bool
    session: PooledSession | None = None
    holders: dict[str, float] = field(default_factory=dict)
    sessions: dict[str, PooledSession] = field(default_factory=dict)
    session_refused: bool = False
    waiting: dict[str, float] = field(default_factory=dict)  # the waiting list as a taken claim left it


@dataclass(frozen=True)
class SlotRelease:
    """A slot given back in the same write as its job's terminal state (:meth:`spectra.job_store.JobStore.finish`):
    the job's slot, ``session`` back to the pool, and with ``waiter`` that job taken off the waiting list (its
    message is then owed to it). The write is refused, with nothing written, unless the job still holds its slot
    and the waiting list is empty (or, with ``waiter``, still holds it): a release that frees a slot somebody waits
    for must say whom it woke. ``write`` is what the slots port that made it needs to apply it (for DynamoDB, the
    ``Update`` of a ``TransactWriteItems``)."""

    tenant_id: str
    job_id: str
    session: PooledSession | None = None
    waiter: str | None = None
    write: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class SlotsSeen:
    """Why a :class:`SlotRelease` was refused, as the refused write saw the tenant's item: whether the job still
    held its slot, and who waited. ``known`` False: the write was refused for a reason it could not tell (a
    transaction conflict, an item made before sessions were pooled): write the two apart."""

    holding: bool = False
    waiting: dict[str, float] = field(default_factory=dict)
    known: bool = True

    @classmethod
    def of_item(cls, item: dict | None, job_id: str) -> SlotsSeen:
        if not item:
            return cls(holding=False)
        return cls(holding=job_id in _holders(item), waiting=_holders(item, "waiting"))


class RunningSlots:
    """The port: per tenant, the jobs holding a running slot and its sessions, in one DynamoDB item
    (``pk = slots#<tenant>``). ``client`` is a low-level boto3 DynamoDB client, ``table_name`` the tenants table."""

    def __init__(self, client, table_name: str) -> None:
        self._db = client
        self._table = table_name

    @staticmethod
    def _key(tenant_id: str) -> dict:
        return {"pk": {"S": SLOTS_PREFIX + tenant_id}}

    def acquire(self, tenant_id: str, job_id: str, *, limit: int, now: float | None = None) -> bool:
        """Take a slot for the job if the tenant holds fewer than ``limit`` (or the job holds one already: then it
        is re-stamped). False when the tenant is at its cap."""
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
        """Take a slot for the job and, with ``lease``, that session, in one conditional write.

        The session must be in the pool, of ``lease.identity``, alive past ``now`` and idle (or already this job's):
        two executors never lease the same session. When only the session part fails, nothing is written and the
        answer says so (``session_refused``), with the pool as it is, to choose again. ``prune``: idle sessions long
        expired, removed in the same write. The answer carries the item as the write saw it either way."""
        moment = now if now is not None else time.time()
        names = {"#job": job_id}
        values: dict[str, Any] = {":now": {"N": repr(moment)}, ":limit": {"N": str(limit)}}
        sets = ["holders.#job = :now"]
        # (attribute_exists first: size() of a missing map is an error on some DynamoDB emulators)
        condition = "(attribute_exists(holders.#job) OR (attribute_exists(holders) AND size(holders) < :limit))"
        if lease is not None:
            names.update({"#s": lease.session_id, "#who": "who", "#until": "until", "#lease": "job"})
            values.update({":jobid": {"S": job_id}, ":who": {"S": lease.identity}})
            sets.append("sessions.#s.#lease = :jobid")
            condition += (
                " AND sessions.#s.#who = :who AND sessions.#s.#until > :now"
                " AND (attribute_not_exists(sessions.#s.#lease) OR sessions.#s.#lease = :jobid)"
            )
        removes = ["waiting.#job"]
        for n, session_id in enumerate(s for s in prune if lease is None or s != lease.session_id):
            names[f"#p{n}"] = session_id
            removes.append(f"sessions.#p{n}")
        for _ in range(3):  # the item is created on first use; a racing creator makes us try again
            try:
                response = self._db.update_item(
                    TableName=self._table,
                    Key=self._key(tenant_id),
                    UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                item = response.get("Attributes", {})
                pool = _sessions(item)
                return Claim(
                    taken=True,
                    session=pool.get(lease.session_id) if lease else None,
                    holders=_holders(item),
                    sessions=pool,
                    waiting=_holders(item, "waiting"),
                )
            except ClientError as exc:
                if item_too_large(exc):
                    # The waiting list filled the item to DynamoDB's 400 KB, and a slot entry does not fit: refused
                    # like a full cap, so the job goes the way of a list that cannot take it (share.retry_later),
                    # not round a crash loop to the DLQ.
                    return Claim(taken=False, holders=self.holders(tenant_id))
                if _code(exc) != "ConditionalCheckFailedException":
                    raise
                item = exc.response.get("Item")
                if item:
                    holders = _holders(item)
                    slot_free = "holders" in item and (job_id in holders or len(holders) < limit)
                    # the slot was there for the taking: only the session was not
                    return Claim(
                        taken=False,
                        holders=holders,
                        sessions=_sessions(item),
                        session_refused=slot_free and lease is not None,
                    )
            if lease is not None:  # no item yet, so no pool: the session asked for cannot be there
                return Claim(taken=False, session_refused=limit >= 1)
            if self._create(tenant_id, job_id, {"N": repr(moment)}, limit):  # no item yet: the tenant's first slot
                return Claim(taken=True, holders={job_id: moment})
        holders = self.holders(tenant_id)
        return Claim(taken=job_id in holders, holders=holders)

    def _create(self, tenant_id: str, job_id: str, stamp: dict, limit: int) -> bool:
        # A paused tenant (limit 0) gets its item all the same, with no holder: its waiting list lives there, and
        # without it the tenant's jobs could not wait but would be retried every few seconds until they expired.
        try:
            self._db.put_item(
                TableName=self._table,
                Item={
                    **self._key(tenant_id),
                    "holders": {"M": {job_id: stamp} if limit >= 1 else {}},
                    "waiting": {"M": {}},
                    "sessions": {"M": {}},
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
            return limit >= 1
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            return False

    def release(self, tenant_id: str, job_id: str, *, session: PooledSession | None = None) -> dict[str, float]:
        """Give the job's slot back, and with ``session`` put that session in the pool as given (idle, with its new
        expiry), in the same write; if the job holds no slot (its slot was reclaimed, and with it the lease; or it
        ended while it waited for one), it leaves the waiting list instead, where an ended job's place would stay
        for good on a tenant that frees no slot. Returns the jobs waiting for a slot (job id → since when) if a slot
        was freed, else nothing."""
        names = {"#job": job_id}
        update, values = "REMOVE holders.#job", {}
        if session is not None:
            names["#s"] = session.session_id
            update, values = f"SET sessions.#s = :entry {update}", {":entry": session.as_item()}
        for attempt in range(3):
            try:
                response = self._db.update_item(
                    TableName=self._table,
                    Key=self._key(tenant_id),
                    UpdateExpression=update,
                    ConditionExpression="attribute_exists(holders.#job)",
                    ExpressionAttributeNames=names,
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    **({"ExpressionAttributeValues": values} if values else {}),
                )
                return _holders(response.get("Attributes") or {}, "waiting")
            except ClientError as exc:
                if item_too_large(exc) and session is not None:
                    # the session's entry does not fit beside a waiting list at DynamoDB's 400 KB: the slot goes
                    # back without it (the session is not pooled again, and idles out), so the next job is woken
                    names, update, values = {"#job": job_id}, "REMOVE holders.#job", {}
                    continue
                if _code(exc) == "ValidationException" and session is not None and attempt == 0:
                    self._add_pool(tenant_id)  # an item made before sessions were pooled: give it the map
                    continue
                if _code(exc) not in ("ConditionalCheckFailedException", "ValidationException"):
                    raise
                if job_id in _holders(exc.response.get("Item") or {}, "waiting"):
                    self.unpark(tenant_id, job_id)  # a second write only for a job that did wait
                return {}
        return {}

    def releasing(
        self, tenant_id: str, job_id: str, *, session: PooledSession | None = None, waiter: str | None = None
    ) -> SlotRelease:
        """:meth:`release` as one item of a transaction with the job's terminal write (see :class:`SlotRelease`)."""
        names = {"#job": job_id}
        values: dict[str, Any] = {}
        removes, sets = ["holders.#job"], []
        if session is not None:
            names["#s"] = session.session_id
            values[":entry"] = session.as_item()
            sets.append("sessions.#s = :entry")
        if waiter is None:
            condition = "attribute_exists(holders.#job) AND (attribute_not_exists(waiting) OR size(waiting) = :none)"
            values[":none"] = {"N": "0"}
        else:
            names["#w"] = waiter
            removes.append("waiting.#w")
            condition = "attribute_exists(holders.#job) AND attribute_exists(waiting.#w)"
        update = (f"SET {', '.join(sets)} " if sets else "") + f"REMOVE {', '.join(removes)}"
        write = {
            "TableName": self._table,
            "Key": self._key(tenant_id),
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            **({"ExpressionAttributeValues": values} if values else {}),
        }
        return SlotRelease(tenant_id, job_id, session=session, waiter=waiter, write=write)

    def _add_pool(self, tenant_id: str) -> None:
        self._db.update_item(
            TableName=self._table,
            Key=self._key(tenant_id),
            UpdateExpression="SET sessions = if_not_exists(sessions, :empty)",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":empty": {"M": {}}},
        )

    def drop_session(self, tenant_id: str, session_id: str, *, job_id: str) -> bool:
        """Take a session out of the pool (it expired or failed), if it is idle or leased by ``job_id``."""
        return self._pool_write(
            tenant_id,
            "REMOVE sessions.#s",
            "attribute_exists(sessions.#s) AND (attribute_not_exists(sessions.#s.#lease) OR sessions.#s.#lease = :job)",
            session_id,
            {":job": {"S": job_id}},
        )

    def unlease(self, tenant_id: str, session: PooledSession, *, job_id: str) -> bool:
        """Put a session leased by ``job_id`` back in the pool as given (idle), the job keeping its slot: a lease the
        job took with a slot it already held and never used. False when the job does not lease that session."""
        return self._pool_write(
            tenant_id,
            "SET sessions.#s = :entry",
            "sessions.#s.#lease = :job",
            session.session_id,
            {":entry": session.as_item(), ":job": {"S": job_id}},
        )

    def return_session(self, tenant_id: str, session: PooledSession, *, job_id: str) -> bool:
        """Put a session back in the pool as given (idle) whether or not the job still holds its slot: one that is
        not in the pool (opened for the job) or that ``job_id`` leases. For a job that ended while its statement
        started, whose ending freed the slot knowing nothing of the session. False when another job leases it, or
        the tenant has no pool (or no room beside a waiting list at DynamoDB's item size)."""
        return self._pool_write(
            tenant_id,
            "SET sessions.#s = :entry",
            "attribute_exists(sessions) AND (attribute_not_exists(sessions.#s) OR sessions.#s.#lease = :job)",
            session.session_id,
            {":entry": session.as_item(), ":job": {"S": job_id}},
        )

    def _pool_write(self, tenant_id: str, update: str, condition: str, session_id: str, values: dict) -> bool:
        """One conditional write to a session of the tenant's pool; False when its condition (or the item's shape or
        size) refuses it."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(tenant_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#s": session_id, "#lease": "job"},
                ExpressionAttributeValues=values,
            )
            return True
        except ClientError as exc:
            if _code(exc) not in ("ConditionalCheckFailedException", "ValidationException"):
                raise
            return False

    def sessions(self, tenant_id: str) -> dict[str, PooledSession]:
        """The tenant's session pool (a consistent read)."""
        response = self._db.get_item(TableName=self._table, Key=self._key(tenant_id), ConsistentRead=True)
        return _sessions(response.get("Item") or {})

    def park(self, tenant_id: str, job_id: str, *, limit: int, now: float | None = None) -> bool:
        """Put the job on the tenant's waiting list, only while the tenant is still at its cap (so a slot freed in
        between cannot be missed: False, take it) and the job holds no slot itself (False: its claim finds it). A job
        already waiting keeps its place."""
        stamp = {"N": repr(now if now is not None else time.time())}
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(tenant_id),
                UpdateExpression="SET waiting.#job = if_not_exists(waiting.#job, :now)",
                ConditionExpression=(
                    "attribute_exists(waiting) AND size(holders) >= :limit AND attribute_not_exists(holders.#job)"
                ),
                ExpressionAttributeNames={"#job": job_id},
                ExpressionAttributeValues={":now": stamp, ":limit": {"N": str(limit)}},
            )
            return True
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise  # a waiting list past DynamoDB's item size included: the caller falls back to a delayed retry
            return False

    def unpark(self, tenant_id: str, job_id: str) -> bool:
        """Take the job off the waiting list; True for the one caller that did (and so owes it a message)."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(tenant_id),
                UpdateExpression="REMOVE waiting.#job",
                ConditionExpression="attribute_exists(waiting.#job)",
                ExpressionAttributeNames={"#job": job_id},
            )
            return True
        except ClientError as exc:
            if _code(exc) not in ("ConditionalCheckFailedException", "ValidationException"):
                raise
            return False

    def waiting(self, tenant_id: str) -> dict[str, float]:
        """Job id → its place in line for a slot (the time it parked with: the lowest is woken first)."""
        response = self._db.get_item(TableName=self._table, Key=self._key(tenant_id), ConsistentRead=True)
        return _holders(response.get("Item") or {}, "waiting")

    def holders(self, tenant_id: str) -> dict[str, float]:
        """Job id → when its slot was taken or last verified (epoch seconds)."""
        response = self._db.get_item(TableName=self._table, Key=self._key(tenant_id), ConsistentRead=True)
        return _holders(response.get("Item") or {})

    def line(self, tenant_id: str) -> tuple[dict[str, float], dict[str, float]]:
        """:meth:`holders` and :meth:`waiting` in one read."""
        response = self._db.get_item(TableName=self._table, Key=self._key(tenant_id), ConsistentRead=True)
        item = response.get("Item") or {}
        return _holders(item), _holders(item, "waiting")

    def evict(self, tenant_id: str, job_id: str, *, stamp: float, session_id: str | None = None) -> bool:
        """Free the job's slot if nobody re-stamped it since ``stamp`` was read, and forget ``session_id``, the
        session it leased: whatever became of it, only the dead holder knew (a session expires on its own)."""
        if session_id is None:
            return self._if_stamp(tenant_id, job_id, stamp, "REMOVE holders.#job", {})
        return self._if_stamp(tenant_id, job_id, stamp, "REMOVE holders.#job, sessions.#s", {}, {"#s": session_id})

    def restamp(self, tenant_id: str, job_id: str, *, stamp: float, now: float) -> bool:
        """Mark the holder verified at ``now`` (if nobody else did since ``stamp`` was read)."""
        return self._if_stamp(tenant_id, job_id, stamp, "SET holders.#job = :now", {":now": {"N": repr(now)}})

    def _if_stamp(
        self, tenant_id: str, job_id: str, stamp: float, update: str, values: dict, names: dict | None = None
    ) -> bool:
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(tenant_id),
                UpdateExpression=update,
                ConditionExpression="holders.#job = :stamp",
                ExpressionAttributeNames={"#job": job_id, **(names or {})},
                ExpressionAttributeValues={":stamp": {"N": repr(stamp)}, **values},
            )
            return True
        except ClientError as exc:
            if _code(exc) not in ("ConditionalCheckFailedException", "ValidationException"):
                raise
            return False


def _holders(item: dict, attribute: str = "holders") -> dict[str, float]:
    return {job: float(_de.deserialize(value)) for job, value in item.get(attribute, {}).get("M", {}).items()}


def _sessions(item: dict) -> dict[str, PooledSession]:
    pool = {}
    for session_id, value in item.get("sessions", {}).get("M", {}).items():
        entry = value.get("M", {})
        pool[session_id] = PooledSession(
            session_id=session_id,
            identity=entry.get("who", {}).get("S", ""),
            until=float(entry.get("until", {}).get("N", "0")),
            job_id=entry.get("job", {}).get("S"),
            opened=float(entry["opened"]["N"]) if "N" in entry.get("opened", {}) else None,
        )
    return pool


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def item_too_large(exc: ClientError) -> bool:
    """DynamoDB refused a write that would take the item past 400 KB ("Item size has exceeded the maximum allowed
    size", or "Item size to update has exceeded ..."), not some other ValidationException."""
    message = exc.response.get("Error", {}).get("Message", "").lower()
    return _code(exc) == "ValidationException" and "item size" in message
