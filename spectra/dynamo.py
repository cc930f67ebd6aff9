"""DynamoDB plumbing shared by the stores (query jobs, bulk jobs): the wire format, sortable index times, the
conditional state change every transition is, and the sparse ``pending`` index the reconciler reads.

A store that keeps state machines in a table owns a :class:`StateTable`: its items have a key attribute, a state
attribute, and, while they owe the world something, ``pending_shard`` / ``pending_since`` (a keys-only GSI). Every
change is an ``UpdateItem`` conditional on the item existing and being in one of the states the caller allows, so of
two racing writers exactly one wins and a late or duplicate message is a no-op.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from spectra.errors import InvalidToken
from spectra.tokens import PageTokens

PENDING_INDEX = "pending"
#: The index a store lists a tenant's jobs by, newest first: ``tenant_id``, then ``created_key``
#: (``<created_at ISO>#<job_id>``).
TENANT_INDEX = "by-tenant"
#: Index reads one listing request makes at most (:func:`newest_first`).
LIST_MAX_READS = 10
#: Items a read of a filtered listing evaluates at least (:func:`newest_first`).
LIST_FILTERED_READ = 100
#: The attribute each table's TTL reads (template.yaml ``TimeToLiveSpecification``): epoch seconds.
EXPIRES_AT = "expires_at"

T = TypeVar("T")

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


#: Why DynamoDB cancels a transaction that another try may pass: another transaction at work on one of its items, or
#: throttling. With no ConditionalCheckFailed among them, nothing refused it.
PASSING_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)


def passing_refusal(error: dict[str, Any]) -> bool:
    """Whether a DynamoDB error (a ClientError's ``response``) refused a write that wrote nothing and may pass when
    tried again: a single-item write that met a transaction writing the same item (TransactionConflictException), or
    a transaction cancelled for nothing but :data:`PASSING_REASONS`."""
    code = error.get("Error", {}).get("Code")
    if code == "TransactionConflictException":
        return True
    reasons = {reason.get("Code") for reason in error.get("CancellationReasons") or []} - {"None", None}
    return code == "TransactionCanceledException" and bool(reasons) and reasons <= PASSING_REASONS


def retry_passing_refusals(client) -> None:
    """Have a DynamoDB client try a :func:`passing_refusal` again, within its own retry budget (its
    ``total_max_attempts``) and with jittered backoff, as botocore's standard mode tries throttling: it tries neither.
    A job's or a tenant's slots item is written alone (a cancel, a claim, a park) and in transactions (a job's end
    with its slot's release), and DynamoDB refuses the single write that meets the transaction: not tried again, a
    DELETE at the moment its job ends answers 500, and a claim that meets another job's end sends its message round
    again."""
    most = client.meta.config.retries.get("total_max_attempts", 1)

    def needs_retry(*, attempts: int, response: tuple | None = None, **_: Any) -> float | None:
        if response is None or attempts >= most or not passing_refusal(response[1]):
            return None  # botocore's own handler, registered first, has answered for everything else
        return random.uniform(0, min(1.0, 0.05 * 2**attempts))

    client.meta.events.register("needs-retry.dynamodb", needs_retry)


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """Plain values to DynamoDB's wire format; None means "no attribute"."""
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def plain(value: Any) -> Any:
    """DynamoDB returns numbers as Decimal; the models want ints (or floats where there is a fraction)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if hasattr(value, "as_integer_ratio") and not isinstance(value, bool | int | float):
        return int(value) if value == int(value) else float(value)
    return value


def json_ready(value: Any) -> Any:
    """Models, datetimes and enums become the JSON-shaped values items are written with."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [json_ready(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "value") and isinstance(getattr(value, "value", None), str):
        return value.value
    return value


def index_time(moment: datetime) -> str:
    """A fixed-width UTC timestamp: ISO strings of one width sort as the times they name (``isoformat`` drops zero
    microseconds and keeps the offset, so its strings would not)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_index_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def expired(values: Mapping[str, Any], now: datetime) -> bool:
    """Whether an item (plain values) is past its ``expires_at`` (one without it never expires).

    DynamoDB's TTL deletes an expired item "typically within a few days", and GetItem, Query and Scan return it until
    then. So whatever answers a client, or lets a client's key name something again, takes it as gone from the second
    it expires, as :func:`unexpired` and :data:`FREE_OR_EXPIRED` do in DynamoDB itself. The pipeline's own reads (the
    reconciler, the completion consumer) still see it, as they see any item the TTL has not deleted: a record lives
    longer than any work it owes (tests/unit/test_template.py), and cutting that work short helps no one."""
    expires_at = values.get(EXPIRES_AT)
    return expires_at is not None and int(expires_at) < int(now.timestamp())


def unexpired(query: dict[str, Any], now: datetime) -> dict[str, Any]:
    """``query`` (a Query's parameters, values in the wire format) also filtering out the items :func:`expired` at
    ``now``. A filter applies after ``Limit``: a page of a listing may come back short, as any filtered one does. A
    filter already there is conditions joined by AND (an OR in parentheses of its own): DynamoDB refuses redundant
    parentheses, so it is not wrapped again."""
    kept = "attribute_not_exists(#expires_at) OR #expires_at >= :expires_now"
    existing = query.get("FilterExpression")
    query["FilterExpression"] = f"{existing} AND ({kept})" if existing else kept
    query["ExpressionAttributeNames"] = {**query.get("ExpressionAttributeNames", {}), "#expires_at": EXPIRES_AT}
    query["ExpressionAttributeValues"] = {**query.get("ExpressionAttributeValues", {}), **expiry_values(now)}
    return query


#: The condition of a put that makes an item under a key that is free: never used, or its record :func:`expired` (and
#: not deleted yet). With :func:`expiry_values`.
FREE_OR_EXPIRED = "attribute_not_exists(#key) OR #expires_at < :expires_now"


def expiry_values(now: datetime) -> dict[str, Any]:
    """The ``:expires_now`` of :func:`unexpired` and :data:`FREE_OR_EXPIRED`, in the wire format."""
    return {":expires_now": {"N": str(int(now.timestamp()))}}


def shard_of(item_id: str, shards: int) -> str:
    """A stable shard for the item, so its index entry stays in one partition for its whole life."""
    return str(int(hashlib.sha256(item_id.encode()).hexdigest()[:8], 16) % shards)


_ITEM_ID = re.compile(r"[a-z]_[A-Za-z0-9_-]{1,64}")  # job ids (j_...) and bulk job ids (b_...)
_REFUSED = "next_token is not valid for this listing; start again without it"


@dataclass(frozen=True)
class ListPosition:
    """Where a tenant's listing of a ``by-tenant`` index resumes: the last entry looked at. Page tokens carry it,
    signed (``spectra/tokens.py``); the tenant is never part of it, the store takes that from the caller."""

    created_key: str
    job_id: str

    def payload(self) -> dict[str, str]:
        return {"created_key": self.created_key, "job_id": self.job_id}

    @classmethod
    def from_payload(cls, payload: Any) -> ListPosition:
        """Checks the type and shape of every part; a position we would never have written is a bad token."""
        if not isinstance(payload, dict) or set(payload) != {"created_key", "job_id"}:
            raise InvalidToken(_REFUSED)
        created_key, job_id = payload["created_key"], payload["job_id"]
        if not (isinstance(job_id, str) and isinstance(created_key, str) and _ITEM_ID.fullmatch(job_id)):
            raise InvalidToken(_REFUSED)
        created, _, key_job = created_key.partition("#")
        if key_job != job_id or len(created) > 40:
            raise InvalidToken(_REFUSED)
        try:
            datetime.fromisoformat(created)
        except ValueError:
            raise InvalidToken(_REFUSED) from None
        return cls(created_key=created_key, job_id=job_id)

    @classmethod
    def from_token(cls, tokens: PageTokens, token: str | None, listing: Mapping[str, Any]) -> ListPosition | None:
        """The position a page token signed for ``listing`` holds (None: no token, the first page)."""
        return None if token is None else cls.from_payload(tokens.decode(token, bound_to=listing))

    def token(self, tokens: PageTokens, listing: Mapping[str, Any]) -> str:
        return tokens.encode(self.payload(), bound_to=listing)

    def start_key(self, tenant_id: str) -> dict[str, Any]:
        """The index's ExclusiveStartKey, in the caller's own partition: a position never moves across tenants."""
        return to_item({"job_id": self.job_id, "tenant_id": tenant_id, "created_key": self.created_key})

    @classmethod
    def of_key(cls, key: dict[str, Any]) -> ListPosition:
        """The position of an index key (a LastEvaluatedKey, or the key of the last item kept)."""
        values = from_item(key)
        return cls(created_key=values["created_key"], job_id=values["job_id"])


def newest_first(
    db,
    base_query: dict[str, Any],
    *,
    limit: int,
    start_key: dict[str, Any] | None,
    filtered: bool,
    now_fn: Callable[[], datetime],
    parse: Callable[[dict[str, Any]], T],
) -> tuple[list[T], dict[str, Any] | None]:
    """Up to ``limit`` items of a tenant's listing, each made by ``parse`` from its plain values, and the key to
    resume after (None: the listing is done). ``base_query`` is a newest-first Query of the :data:`TENANT_INDEX` (its
    filter, if ``filtered``), without ``Limit`` or ``ExclusiveStartKey``; ``start_key`` is where the listing resumes.

    A filter applies while paging, and a request reads at most :data:`LIST_MAX_READS` index pages: a filter that
    matches few of many items gives a short page (even an empty one) with a key to resume after, rather than reading
    the tenant's whole history in one API call. Every read leaves out the items :func:`expired` at ``now_fn()``, read
    afresh for it."""
    found: list[T] = []
    for _ in range(LIST_MAX_READS):
        wanted = limit - len(found)
        # filtered reads evaluate more items per call; the surplus is cut below, at an exact position. A query of its
        # own for each read: unexpired() changes the one it is given
        query = {**base_query, "Limit": wanted if not filtered else max(wanted, LIST_FILTERED_READ)}
        if start_key:
            query["ExclusiveStartKey"] = start_key
        response = db.query(**unexpired(query, now_fn()))
        items = response.get("Items", [])
        if len(items) > wanted:
            items = items[:wanted]
            start_key = {name: items[-1][name] for name in ("job_id", "tenant_id", "created_key")}
            found.extend(parse(plain(from_item(item))) for item in items)
            break
        found.extend(parse(plain(from_item(item))) for item in items)
        start_key = response.get("LastEvaluatedKey")
        if not start_key or len(found) >= limit:
            break
    return found, start_key


@dataclass(frozen=True)
class PendingJob:
    """An entry of a pending index: which job, and since when nobody has seen it move."""

    job_id: str
    pending_since: datetime


@dataclass(frozen=True)
class PendingPage:
    jobs: list[PendingJob]
    more: bool  # entries past the cutoff were left for the next call


_SETS = re.compile(r"(#a\d+) = (:v\d+)")
_REMOVES = re.compile(r"REMOVE ((?:#\w+(?:, )?)+)")


def _own_write(request: dict[str, Any], item: dict[str, Any]) -> bool:
    """Whether the item that refused ``request`` already holds everything the request writes, ``updated_at`` (a time
    to the microsecond, which no other writer sends) included: the request itself was applied by an attempt whose
    answer was lost, and botocore's retry of it (a read timeout, a reset connection, a 500) is what the condition
    refused. Taken for someone else's write, a job's own ending would skip what it owes (its slot's release, its
    event, its result files: a slot held until reclaimed, an event left to the reconciler) and a client's own cancel
    or ``UploadComplete`` would be answered as another's."""
    names, values = request["ExpressionAttributeNames"], request["ExpressionAttributeValues"]
    expression = request["UpdateExpression"]
    sets = _SETS.findall(expression)
    if not any(names[name] == "updated_at" for name, _ in sets):
        return False
    removes = _REMOVES.search(expression)
    removed = re.findall(r"#\w+", removes.group(1)) if removes else []
    return all(item.get(names[name]) == values[value] for name, value in sets) and all(
        names.get(name, name) not in item for name in removed
    )


class StateTable:
    """One table of state machines: conditional updates and the pending index, whatever the model."""

    def __init__(
        self, client, table_name: str, *, key: str, state_attribute: str = "status", pending_shards: int = 1
    ) -> None:
        self.client = client
        self.name = table_name
        self.key = key
        self.state_attribute = state_attribute
        self.pending_shards = pending_shards

    def pending(self, item_id: str, since: datetime) -> dict[str, str]:
        """The attributes that put an item into the pending index (or move it to the back)."""
        return {"pending_shard": shard_of(item_id, self.pending_shards), "pending_since": index_time(since)}

    #: Passing these as None to :meth:`update` removes the item from the pending index.
    NOT_PENDING: dict[str, None] = {"pending_shard": None, "pending_since": None}

    def get(self, item_id: str) -> dict[str, Any] | None:
        response = self.client.get_item(TableName=self.name, Key=to_item({self.key: item_id}), ConsistentRead=True)
        item = response.get("Item")
        return plain(from_item(item)) if item else None

    def update(
        self,
        item_id: str,
        allowed: Iterable[str],
        changes: dict[str, Any],
        *,
        absent: Iterable[str] = (),
        updated_at: datetime | None = None,
    ) -> dict[str, Any] | None:
        """Apply ``changes`` (None removes an attribute) if the item exists, its state is one of ``allowed`` and none
        of the ``absent`` attributes is set. Returns the new item, or None when the condition failed."""
        request = self.update_request(item_id, allowed, changes, absent=absent, updated_at=updated_at)
        return self.apply(request) if request is not None else None

    def apply(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """Send an :meth:`update_request` (a caller may have added to it): the new item, None when its condition
        failed, unless what refused it was this very write (:func:`_own_write`): then the item as it wrote it."""
        try:
            response = self.client.update_item(
                **request, ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD"
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                item = exc.response.get("Item")
                return plain(from_item(item)) if item and _own_write(request, item) else None
            raise
        return plain(from_item(response["Attributes"]))

    def increment(
        self,
        item_id: str,
        allowed: Iterable[str],
        counter: str,
        *,
        below: int | None = None,
        updated_at: datetime | None = None,
    ) -> dict[str, Any] | None:
        """Add one to ``counter`` if the item exists and its state is one of ``allowed`` (and, given ``below``, the
        counter is under it), in DynamoDB itself (``ADD``), so that writers racing each other each count. The new item,
        or None when the condition failed."""
        request = self.update_request(item_id, allowed, {}, updated_at=updated_at)
        if request is None:
            return None
        request["UpdateExpression"] = f"{request['UpdateExpression']} ADD #counter :one".strip()
        request["ExpressionAttributeNames"]["#counter"] = counter
        request["ExpressionAttributeValues"][":one"] = {"N": "1"}
        if below is not None:
            request["ConditionExpression"] += " AND (attribute_not_exists(#counter) OR #counter < :below)"
            request["ExpressionAttributeValues"][":below"] = {"N": str(below)}
        return self.apply(request)

    def update_request(
        self,
        item_id: str,
        allowed: Iterable[str],
        changes: dict[str, Any],
        *,
        absent: Iterable[str] = (),
        updated_at: datetime | None = None,
    ) -> dict[str, Any] | None:
        """The conditional UpdateItem of :meth:`update` as request parameters (also what a ``TransactWriteItems``
        ``Update`` takes); None when no state is allowed (nothing can be written)."""
        allowed = sorted(allowed)
        if not allowed:
            return None
        if updated_at is not None:
            changes = {**changes, "updated_at": updated_at.isoformat()}
        names = {f"#a{i}": name for i, name in enumerate(changes)}
        values = {f":v{i}": json_ready(value) for i, value in enumerate(changes.values())}
        states = {f":s{i}": state for i, state in enumerate(allowed)}
        set_parts = [f"#a{i} = :v{i}" for i, value in enumerate(values.values()) if value is not None]
        remove_parts = [f"#a{i}" for i, value in enumerate(values.values()) if value is None]
        expression = ("SET " + ", ".join(set_parts)) if set_parts else ""
        if remove_parts:
            expression += " REMOVE " + ", ".join(remove_parts)
        condition = f"attribute_exists(#key) AND #state IN ({', '.join(states)})"
        absent_names = {f"#n{i}": name for i, name in enumerate(absent)}
        condition += "".join(f" AND attribute_not_exists({alias})" for alias in absent_names)
        return {
            "TableName": self.name,
            "Key": to_item({self.key: item_id}),
            "UpdateExpression": expression.strip(),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {**names, **absent_names, "#key": self.key, "#state": self.state_attribute},
            "ExpressionAttributeValues": to_item({**{k: v for k, v in values.items() if v is not None}, **states}),
        }

    def pending_before(self, cutoff: datetime, *, limit: int) -> PendingPage:
        """Up to ``limit`` pending items quiet since before ``cutoff``, the longest-quiet first within each shard.

        The index is eventually consistent and keys-only: callers read each item (a consistent read) before acting
        on it, and must expect one that has just finished.
        """
        found: list[PendingJob] = []
        more = False
        per_shard = -(-limit // self.pending_shards)  # ceil: every shard gets its share of the batch
        for shard in map(str, range(self.pending_shards)):
            wanted = min(per_shard, limit - len(found))
            if wanted <= 0:
                more = True  # the batch is full before this shard was read
                break
            start_key: dict[str, Any] | None = None
            while wanted > 0:
                query: dict[str, Any] = {
                    "TableName": self.name,
                    "IndexName": PENDING_INDEX,
                    "KeyConditionExpression": "pending_shard = :shard AND pending_since < :cutoff",
                    "ExpressionAttributeValues": to_item({":shard": shard, ":cutoff": index_time(cutoff)}),
                    "Limit": wanted,
                }
                if start_key:
                    query["ExclusiveStartKey"] = start_key
                response = self.client.query(**query)
                items = [from_item(item) for item in response.get("Items", [])]
                found.extend(PendingJob(item[self.key], parse_index_time(item["pending_since"])) for item in items)
                wanted -= len(items)
                start_key = response.get("LastEvaluatedKey")
                if not start_key:
                    break
            # A page that stopped at the limit says "maybe more" (DynamoDB cannot tell without reading on).
            more = more or start_key is not None
        return PendingPage(jobs=found, more=more)
