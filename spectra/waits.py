"""Each tenant's share of the API's waits: how many one-call queries (``POST /v1/queries`` with ``wait_timeout``) of
one tenant may be waiting for their jobs at once.

A one-call query holds an API execution environment for its whole wait (25 s at most), whether its job runs or
waits for a slot, and the account's Lambda concurrency is shared by every function and tenant: without a cap, one
tenant sending them at its plan's rate (Standard: 50 a second) would hold over a thousand environments, and every
other tenant's requests, and the pipeline's own functions, would wait or be throttled. So a request that would
wait takes a *lease* first, and gives it back when it answers; a tenant holding ``TENANT_MAX_WAITS`` leases (template
parameter ``TenantMaxWaits``, default 20; a tenant record's ``max_waits`` overrides it) is answered 429
``too_many_waits`` with ``Retry-After`` before any job is made: nothing is queued that the client does not know of,
and the same request, sent again later or without ``wait_timeout``, is served. Waiting past the tenant's running cap
(5 by default) buys nothing anyway: those jobs wait in line for a slot.

A lease carries its own end (the end of the function's time, which ends the request): one whose request died without
giving it back (the environment was killed, the write failed) stops counting then (:data:`CLOCK_MARGIN_SECONDS` later,
since another host's clock judges it), and the next take that needs its room prunes it.
The leases live in one DynamoDB item per tenant (``waits#<tenant>`` in the tenants table, map ``leases``: lease id →
epoch seconds when it ends), taken by one conditional write (two when ended leases are pruned, or when the item is
made), and given back by one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

from boto3.dynamodb.types import TypeDeserializer

from spectra.errors import TooManyWaits
from spectra.share import CAP_CACHE_SECONDS
from spectra.tenant_cache import tenant_record
from spectra.tenants import WAITS_PREFIX

if TYPE_CHECKING:
    from spectra.ports import Ports

logger = logging.getLogger(__name__)

_de = TypeDeserializer()

#: Tries of one take against concurrent writers pruning the same expired leases or making the item.
_TAKE_TRIES = 4
#: Ended leases one write removes at most (each is named in its expressions).
_PRUNE_AT_MOST = 50
#: A lease's end is read on the holder's clock, and judged on the clock of the API environment that next takes one,
#: which may run seconds ahead: a lease counts until this long after its end, so a wait still running is never pruned
#: (two waits where the cap allows one). A lease whose environment died costs its tenant a wait for this long more.
CLOCK_MARGIN_SECONDS = 10.0


class WaitLeases:
    """The port: per tenant, the waits in progress, in one DynamoDB item (``pk = waits#<tenant>``). ``client`` is a
    low-level boto3 DynamoDB client, ``table_name`` the tenants table."""

    def __init__(self, client, table_name: str) -> None:
        self._db = client
        self._table = table_name

    @staticmethod
    def _key(tenant_id: str) -> dict:
        return {"pk": {"S": WAITS_PREFIX + tenant_id}}

    def take(self, tenant_id: str, lease_id: str, *, limit: int, until: float, now: float | None = None) -> bool:
        """Take a lease ending at ``until`` if the tenant holds fewer than ``limit`` that have not ended (or holds
        this one already: a write whose answer was lost and was sent again). Leases that ended by ``now`` (less
        :data:`CLOCK_MARGIN_SECONDS`: their ends are other hosts' clocks') do not count and are removed by the write
        that needs their room."""
        if limit < 1:
            return False
        moment = now if now is not None else time.time()
        ended: list[str] = []
        for _ in range(_TAKE_TRIES):
            names = {"#me": lease_id} | {f"#x{n}": lease for n, lease in enumerate(ended)}
            removes = "".join(f", leases.#x{n}" for n in range(len(ended)))
            # the ended leases must all still be there, so the room they make is theirs to take
            still_there = "".join(f" AND attribute_exists(leases.#x{n})" for n in range(len(ended)))
            try:
                self._db.update_item(
                    TableName=self._table,
                    Key=self._key(tenant_id),
                    UpdateExpression="SET leases.#me = :until" + (f" REMOVE {removes[2:]}" if ended else ""),
                    ConditionExpression="attribute_exists(leases) AND (attribute_exists(leases.#me) OR "
                    f"(size(leases) < :room{still_there}))",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={
                        ":until": {"N": repr(until)},
                        ":room": {"N": str(limit + len(ended))},
                    },
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return True
            except self._db.exceptions.ConditionalCheckFailedException as exc:
                item = exc.response.get("Item")
            if not item or "leases" not in item:
                if self._create(tenant_id, lease_id, until):
                    return True
                continue  # another request made it first
            leases = _leases(item)
            if lease_id in leases:
                return True
            ended = [lease for lease, ends in leases.items() if ends <= moment - CLOCK_MARGIN_SECONDS]
            if len(leases) - len(ended) >= limit:
                return False
            # A write names each lease it prunes, and DynamoDB's expressions stop at 4 KB and 300 operators: a write
            # past them would fail every wait of the tenant for good. Past _PRUNE_AT_MOST (a tenant whose cap was
            # lowered, with leases of killed environments piled up under the old one), writes of their own remove
            # the rest first, so the take's own write counts exactly the ended leases it names.
            while len(ended) > _PRUNE_AT_MOST:
                self._remove(tenant_id, ended[:_PRUNE_AT_MOST])
                ended = ended[_PRUNE_AT_MOST:]
        logger.warning(
            "tenant %s: its wait leases kept changing under %d tries; refusing this wait", tenant_id, _TAKE_TRIES
        )
        return False

    def _remove(self, tenant_id: str, leases: list[str]) -> None:
        """Remove these leases (one not there is nothing to remove, and neither is a tenant's item deleted with it
        meanwhile: a take goes on and makes it again)."""
        with suppress(self._db.exceptions.ConditionalCheckFailedException):
            self._db.update_item(
                TableName=self._table,
                Key=self._key(tenant_id),
                UpdateExpression="REMOVE " + ", ".join(f"leases.#x{n}" for n in range(len(leases))),
                ConditionExpression="attribute_exists(leases)",
                ExpressionAttributeNames={f"#x{n}": lease for n, lease in enumerate(leases)},
            )

    def _create(self, tenant_id: str, lease_id: str, until: float) -> bool:
        """The tenant's first wait: the item, with this lease. False when another request made the item first."""
        leases = {lease_id: {"N": repr(until)}}
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(tenant_id),
                UpdateExpression="SET leases = :leases",
                ConditionExpression="attribute_not_exists(leases)",
                ExpressionAttributeValues={":leases": {"M": leases}},
            )
            return True
        except self._db.exceptions.ConditionalCheckFailedException:
            return False

    def give_back(self, tenant_id: str, lease_id: str) -> None:
        """End the lease (nothing happens when it is not held)."""
        self._remove(tenant_id, [lease_id])

    def held(self, tenant_id: str) -> dict[str, float]:
        """Every lease on record, ended ones included: lease id → when it ends."""
        response = self._db.get_item(TableName=self._table, Key=self._key(tenant_id), ConsistentRead=True)
        return _leases(response.get("Item", {}))


def _leases(item: dict) -> dict[str, float]:
    return {lease: float(_de.deserialize(value)) for lease, value in item.get("leases", {}).get("M", {}).items()}


def wait_cap(ports: Ports, tenant_id: str) -> int:
    """The tenant's cap on waits: its own ``max_waits``, else the service's ``TENANT_MAX_WAITS``."""
    tenant = tenant_record(ports.tenants, tenant_id, max_age=CAP_CACHE_SECONDS)
    own = tenant.max_waits if tenant is not None else None
    return own if own is not None else ports.settings.tenant_max_waits


@contextmanager
def waiting_room(ports: Ports, tenant_id: str, *, seconds: float, clock=time.time) -> Iterator[None]:
    """Hold one of the tenant's wait leases for a request that can run ``seconds`` more (its end is then); raise
    :class:`~spectra.errors.TooManyWaits` when the tenant holds all of them. The lease is given back when the block
    ends, however it ends; a give-back that fails is logged and left to end on its own."""
    limit = wait_cap(ports, tenant_id)
    lease_id = uuid.uuid4().hex
    now = clock()
    if not ports.waits.take(tenant_id, lease_id, limit=limit, until=now + seconds, now=now):
        raise TooManyWaits(
            f"the tenant has {limit} one-call queries waiting already, its most at once: send this one again "
            "after a pause, or without wait_timeout (then follow the job's links)",
            details={"max_waits": limit},
        )
    try:
        yield
    finally:
        try:
            ports.waits.give_back(tenant_id, lease_id)
        except Exception:
            logger.warning("tenant %s: a wait lease was not given back; it ends on its own", tenant_id, exc_info=True)
