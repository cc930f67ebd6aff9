"""Tenants and their API keys.

A tenant is a name plus a database identity: ``db_user`` for a provisioned cluster, ``secret_arn`` for Redshift
Serverless. Row-level security in the warehouse keys off that identity; the application only picks it.

API keys are 256-bit random tokens shown once at issue time. The table stores only their SHA-256: a slow password
hash buys nothing against keys with that much entropy, and a single hash keeps the authorizer to one lookup.

Table layout (``TenantsTable``, key ``pk``): ``tenant#<id>`` holds the tenant, ``key#<sha256 hex>`` one key,
``identity#<db_user:name | secret:arn>`` the tenant a database identity was given to (see below).

Keys die with their tenant, twice over. Each tenant record carries a ``generation``, a random id drawn when the tenant
is created, and each key records the generation it was issued under: a key counts only while its tenant has that
generation, so a tenant deleted and created again under the same id does not bring its old keys back. And the tenant
record lists its keys' hashes (``key_hashes``), so :meth:`TenantDirectory.delete_tenant` deletes them too.

A database identity serves one tenant, ever. What a tenant may see in the warehouse is its identity's: row-level
security and owned schemas key off the database user (or the secret's), and they outlive the tenant record. A tenant
created again under a deleted one's user (the natural choice: ``tenant_<id>``) would read every row and table its
predecessor left, and two live tenants given one user would read each other's. So the directory records which tenant
each identity was given to (``identity#...``, written in the same transaction as the tenant record, or as the change
that moves a tenant to it) and keeps that record when the tenant is deleted: an identity another tenant, or an earlier
generation of the same id, had is refused (:class:`~spectra.errors.Conflict`). A tenant moved back to an identity it had
itself keeps it. Give a new tenant a new user or secret; drop the old ones with their rows and schemas.
Identities of tenants created before this record existed are claimed by :meth:`TenantDirectory.claim_identities`,
run once after upgrading.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from pydantic import BaseModel, ConfigDict, Field, model_validator

from spectra.errors import Conflict, NotFound, SpectraError, Unauthorized
from spectra.jobs import utcnow
from spectra.notify.store import KEPT_AFTER_TENANT_DELETED, SubscriptionStore
from spectra.slots import SLOTS_PREFIX
from spectra.sql_layout import fold_name

#: The tenants table's item of each tenant's one-call queries waiting (spectra/waits.py), deleted with the tenant.
WAITS_PREFIX = "waits#"

KEY_PREFIX = "spk_"
#: Reads and conditional deletes a tenant's delete makes before it gives up on a record that keeps changing
DELETE_ATTEMPTS = 3
#: Reads and conditional writes a tenant's update makes before it gives up on a record that keeps changing
UPDATE_ATTEMPTS = 3
_ser, _de = TypeSerializer(), TypeDeserializer()

TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# A schema a tenant owns, as Redshift stores an unquoted name (lower case); no commas, so a list fits one string.
SCHEMA_NAME_PATTERN = r"^[a-z_][a-z0-9_$]{0,126}$"
SchemaName = Annotated[str, Field(pattern=SCHEMA_NAME_PATTERN)]


class Tenant(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    db_user: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_$]{0,126}$")
    secret_arn: str | None = None
    active: bool = True
    created_at: datetime
    #: when an inactive tenant was last made active again (None: never deactivated and reactivated, or before this
    #: was recorded): a file dropped before it is not loaded as the tenant's (spectra.bulk.drops._own_since)
    activated_at: datetime | None = None
    #: The tenant's share (spectra/share.py): its usage-plan tier (request rate and quota, template.yaml's
    #: UsagePlans), the API Gateway key value the authorizer returns as ``usageIdentifierKey``, its own cap on
    #: running statements (None: the service's TENANT_MAX_RUNNING_STATEMENTS) and on one-call queries waiting at
    #: once (None: the service's TENANT_MAX_WAITS; spectra/waits.py).
    tier: str = Field(default="standard", pattern=r"^[a-z][a-z0-9-]{0,31}$")
    usage_key: str | None = None
    # (bounded where they are set, ``tenants create/update``: a bound here would refuse records stored before it)
    max_running_statements: int | None = Field(default=None, ge=0)
    max_waits: int | None = Field(default=None, ge=1)
    #: drawn anew each time the tenant id is created; keys and jobs are bound to it. None on records made before it.
    generation: str | None = None
    # The query API is read-only unless this is set; then DML and DDL may change objects in owned_schemas only
    # (spectra.sql_guard). The warehouse must agree: the tenant's user owns (or has CREATE on) those schemas.
    allow_writes: bool = False
    owned_schemas: list[SchemaName] = []

    @classmethod
    def new(
        cls,
        tenant_id: str,
        *,
        db_user: str | None = None,
        secret_arn: str | None = None,
        allow_writes: bool = False,
        owned_schemas: list[str] | None = None,
        **share: Any,
    ) -> Tenant:
        """A tenant about to be created, with a generation of its own. ``share``: its ``tier``, ``usage_key``,
        ``max_running_statements`` and ``max_waits``."""
        return cls(
            tenant_id=tenant_id,
            db_user=db_user,
            secret_arn=secret_arn,
            created_at=utcnow(),
            generation=secrets.token_hex(8),
            allow_writes=allow_writes,
            owned_schemas=owned_schemas or [],
            **share,
        )

    @model_validator(mode="after")
    def _one_identity(self) -> Tenant:
        if not (self.db_user or self.secret_arn):
            raise ValueError("a tenant needs a db_user or a secret_arn")
        return self


#: What :meth:`TenantDirectory.update_tenant` may change: not the id, the generation, the keys or the creation time.
CHANGEABLE_TENANT_FIELDS = frozenset(
    {
        "db_user",
        "secret_arn",
        "tier",
        "usage_key",
        "max_running_statements",
        "max_waits",
        "allow_writes",
        "owned_schemas",
    }
)


class KeyInfo(BaseModel):
    """One API key as :meth:`TenantDirectory.list_keys` shows it: enough to tell keys apart, nothing to use one."""

    key_hash: str
    hint: str
    created_at: str


class _Stale(SpectraError):
    """The tenant record was no longer as an update read it (the update reads it again)."""


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class TenantDirectory:
    def __init__(self, client, table_name: str, subscriptions_table: str | None = None) -> None:
        """``subscriptions_table``: the webhook subscriptions' (stack output ``SubscriptionsTableName``), whose
        subscriptions of a deleted tenant :meth:`delete_tenant` gives an end; without it they stay for ever."""
        self._db = client
        self._table = table_name
        self._subscriptions_table = subscriptions_table

    @staticmethod
    def refuse_system_schemas(schemas: list[str] | None) -> None:
        """A ``pg_...`` schema is the system's (``pg_temp`` the session's temporary one), never a tenant's: the SQL
        guard refuses writes into one whatever the record says, so a record listing one is an operator's mistake,
        said here rather than at the tenant's first write."""
        system = [s for s in schemas or [] if s.startswith("pg_")]
        if system:
            raise ValueError(f"owned_schemas names system schemas, which no tenant may own: {', '.join(system)}")

    def create_tenant(self, tenant_id: str, **attributes: Any) -> Tenant:
        """A new tenant; ``attributes`` are :meth:`Tenant.new`'s (identity, write flag, owned schemas, and its share:
        ``tier``, ``usage_key``, ``max_running_statements``, ``max_waits``). Conflict when the id exists, or when its
        database identity was another tenant's (or an earlier tenant's of this id): see the module's docstring."""
        self.refuse_system_schemas(attributes.get("owned_schemas"))
        tenant = Tenant.new(tenant_id, **attributes)
        item = {"pk": f"tenant#{tenant_id}", **tenant.model_dump(mode="json", exclude_none=True)}
        put = {
            "Put": {
                "TableName": self._table,
                "Item": {k: _ser.serialize(v) for k, v in item.items()},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        claims = self._claims(tenant)
        self._write_claiming(put, claims, refused=Conflict(f"tenant {tenant_id!r} already exists"))
        return tenant

    def _claims(self, tenant: Tenant, *, only: set[str] | None = None) -> list[tuple[str, dict]]:
        """The identity records giving the tenant's database identities (``only``: these fields' of them) to it,
        each written only where no record exists or it already names this tenant and generation."""
        claims = []
        for field_name, kind in _IDENTITY_KINDS.items():
            value = getattr(tenant, field_name)
            if value and (only is None or field_name in only):
                pk = _identity_pk(field_name, value)
                record = {"pk": pk, "tenant_id": tenant.tenant_id, "claimed_at": utcnow().isoformat()}
                if tenant.generation:
                    record["generation"] = tenant.generation
                put = {
                    "TableName": self._table,
                    "Item": {k: _ser.serialize(v) for k, v in record.items()},
                    "ExpressionAttributeValues": {":t": _ser.serialize(tenant.tenant_id)},
                }
                if tenant.generation:
                    put["ConditionExpression"] = "attribute_not_exists(pk) OR (tenant_id = :t AND generation = :g)"
                    put["ExpressionAttributeValues"][":g"] = _ser.serialize(tenant.generation)
                else:  # a tenant from before generations: its own records have none
                    put["ConditionExpression"] = (
                        "attribute_not_exists(pk) OR (tenant_id = :t AND attribute_not_exists(generation))"
                    )
                claims.append((f"{kind} {value}", {"Put": put}))
        return claims

    def _write_claiming(self, first: dict, claims: list[tuple[str, dict]], *, refused: SpectraError) -> None:
        """``first`` (the tenant's own write) and ``claims`` in one transaction; ``refused`` when ``first``'s condition
        failed, else a Conflict naming the identity's holder."""
        try:
            self._db.transact_write_items(TransactItems=[first, *(claim for _, claim in claims)])
        except self._db.exceptions.TransactionCanceledException as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise refused from exc
            for (identity, claim), reason in zip(claims, reasons[1:], strict=False):
                if reason == "ConditionalCheckFailed":
                    holder = (self._get(claim["Put"]["Item"]["pk"]["S"]) or {}).get("tenant_id", "?")
                    raise Conflict(
                        f"the database identity {identity} was given to tenant {holder!r} (a tenant of that id may have"
                        " been deleted since): what a tenant sees in the warehouse is its identity's, rows and schemas"
                        " included, so each tenant needs one that no tenant had; create a new user or secret",
                        details={"identity": identity, "tenant_id": holder},
                    ) from exc
            raise

    def identity_holder(self, field_name: str, value: str) -> str | None:
        """The tenant a database identity (``field_name``: ``db_user`` or ``secret_arn``) was given to, if any: a
        tenant deleted since included, as :meth:`create_tenant` refuses it to any other (provisioning tooling asks
        before it makes the user, rather than leave one behind)."""
        return (self._get(_identity_pk(field_name, value)) or {}).get("tenant_id")

    def claim_identities(self) -> dict[str, list[str]]:
        """Record the database identities of tenants created before identity records existed (an upgrade's one-off
        step, run before tenants are deleted or moved to other identities; README, "A database identity serves one
        tenant, ever"): without it, such a tenant's user could be given to a new tenant, which would read its rows
        and schemas. Each identity is claimed on its own, so one held by another
        tenant does not leave the tenant's other unclaimed. Returns, by tenant id, each identity another tenant holds:
        two tenants already share it, and the record names the holder, so give the tenant named by the key a new user
        or secret (the holder keeps the record; moving the holder instead would leave the record naming it, and free
        to move back onto the user the other still runs as). Safe to run again."""
        refused: dict[str, list[str]] = {}
        for tenant in self.list_tenants():
            for identity, claim in self._claims(tenant):
                try:
                    self._db.put_item(**claim["Put"])
                except self._db.exceptions.ConditionalCheckFailedException:
                    holder = (self._get(claim["Put"]["Item"]["pk"]["S"]) or {}).get("tenant_id", "?")
                    refused.setdefault(tenant.tenant_id, []).append(f"{identity} is held by tenant {holder!r}")
        return refused

    def list_tenants(self) -> list[Tenant]:
        """Every tenant, by id: a scan of the table (its keys, slots and identity records read and passed over), for
        operators' tools, never a request's path."""
        pages = self._db.get_paginator("scan").paginate(
            TableName=self._table,
            FilterExpression="begins_with(pk, :tenant)",
            ExpressionAttributeValues={":tenant": {"S": "tenant#"}},
            ConsistentRead=True,
        )
        tenants = [Tenant.model_validate(_plain(item)) for page in pages for item in page.get("Items", [])]
        return sorted(tenants, key=lambda tenant: tenant.tenant_id)

    def issue_key(self, tenant_id: str) -> str:
        """Create an API key for the tenant and return it in clear text (the only time it exists in clear).

        The key is bound to the tenant's current generation and listed on the tenant record; NotFound for a tenant
        that does not exist (a key for it would wait, dormant, for someone to create that id)."""
        tenant = self.get(tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id!r} not found")
        api_key = KEY_PREFIX + secrets.token_urlsafe(32)
        key_hash = hash_api_key(api_key)
        item = {
            "pk": f"key#{key_hash}",
            "tenant_id": tenant_id,
            "key_hint": api_key[: len(KEY_PREFIX) + 4],
            "created_at": utcnow().isoformat(),
        }
        if tenant.generation:
            item["generation"] = tenant.generation
        # The tenant record lists the key first: a key whose listing failed is never written, so delete_tenant
        # cannot miss one. The condition keeps a tenant deleted meanwhile from being brought back as a bare listing,
        # and one created again meanwhile from listing a key of its predecessor's generation, which it would refuse.
        if tenant.generation:
            condition, values = "generation = :g", {":g": {"S": tenant.generation}}
        else:
            condition, values = "attribute_exists(pk) AND attribute_not_exists(generation)", {}
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"tenant#{tenant_id}"}},
                UpdateExpression="ADD key_hashes :k",
                ConditionExpression=condition,
                ExpressionAttributeValues={":k": {"SS": [key_hash]}, **values},
            )
        except self._db.exceptions.ConditionalCheckFailedException as exc:
            raise NotFound(f"tenant {tenant_id!r} not found (deleted or created again meanwhile)") from exc
        self._db.put_item(TableName=self._table, Item={k: _ser.serialize(v) for k, v in item.items()})
        return api_key

    def revoke_key(self, api_key: str) -> None:
        self._revoke(hash_api_key(api_key))

    def list_keys(self, tenant_id: str) -> list[KeyInfo]:
        """The tenant's keys as an operator can tell them apart (never the keys themselves, which exist in clear only
        when issued): each one's hash, hint (its first characters) and issue time, oldest first. NotFound for an
        unknown tenant."""
        tenant = self._get(f"tenant#{tenant_id}")
        if tenant is None:
            raise NotFound(f"tenant {tenant_id!r} not found")
        keys = []
        for key_hash in sorted(tenant.get("key_hashes", ())):
            item = self._get(f"key#{key_hash}")
            if item is not None and item.get("tenant_id") == tenant_id:
                keys.append(KeyInfo(key_hash=key_hash, hint=item.get("key_hint", ""), created_at=item["created_at"]))
        return sorted(keys, key=lambda key: key.created_at)

    def revoke_key_hash(self, tenant_id: str, key_hash: str) -> bool:
        """Revoke the key with this hash (as :meth:`list_keys` shows it), for a key nobody has in clear any more.
        Only the tenant's own: False when it has no such key."""
        return self._revoke(key_hash, tenant_id=tenant_id)

    def _revoke(self, key_hash: str, *, tenant_id: str | None = None) -> bool:
        delete: dict[str, Any] = {"TableName": self._table, "Key": {"pk": {"S": f"key#{key_hash}"}}}
        if tenant_id is not None:
            delete |= {
                "ConditionExpression": "tenant_id = :t",
                "ExpressionAttributeValues": {":t": {"S": tenant_id}},
            }
        try:
            response = self._db.delete_item(**delete, ReturnValues="ALL_OLD")
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        tenant_id = response.get("Attributes", {}).get("tenant_id", {}).get("S")
        if not tenant_id:
            return False
        # the tenant may be gone already, and its listing with it
        with contextlib.suppress(self._db.exceptions.ConditionalCheckFailedException):
            self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"tenant#{tenant_id}"}},
                UpdateExpression="DELETE key_hashes :k",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":k": {"SS": [key_hash]}},
            )
        return True

    def update_tenant(self, tenant_id: str, **changes: Any) -> Tenant:
        """Change what the tenant may do and where it runs: ``db_user``, ``secret_arn``, ``tier``, ``usage_key``,
        ``max_running_statements``, ``max_waits``, ``allow_writes``, ``owned_schemas`` (None removes an optional one).
        The record is validated as a whole first, and written only if it is still the same tenant (its generation), so
        its keys (bound to the generation) and their listing stay as they are. NotFound for an unknown tenant.

        The write is also conditional on the identity fields it leaves alone being as read: the whole record was
        validated with them (a tenant needs a user or a secret), and two changes at once, one taking the secret away
        and the other the user, each valid against the record both read, would leave a record nothing could read (the
        authorizer's every answer for the tenant a 500). A change refused so is made again on the record as it is now.

        Changes reach the API within the authorizer's cache time and the executor within ``TENANT_CACHE_SECONDS``;
        a write queued before a grant shrank is checked again when it starts (spectra/identity.py)."""
        unknown = set(changes) - CHANGEABLE_TENANT_FIELDS
        if unknown:
            raise ValueError(f"not a tenant field that can be changed: {', '.join(sorted(unknown))}")
        self.refuse_system_schemas(changes.get("owned_schemas"))
        for _ in range(UPDATE_ATTEMPTS):
            current = self.get(tenant_id)
            if current is None:
                raise NotFound(f"tenant {tenant_id!r} not found")
            updated = self._update_once(current, changes)
            if updated is not None:
                return updated
            now = self._get(f"tenant#{tenant_id}")
            if now is None or now.get("generation") != current.generation:
                raise NotFound(f"tenant {tenant_id!r} not found (deleted or created again meanwhile)")
        raise Conflict(f"tenant {tenant_id!r} kept changing while it was being updated; update it again")

    def _update_once(self, current: Tenant, changes: dict[str, Any]) -> Tenant | None:
        """``changes`` written over ``current``, validated as a whole; None when the record is no longer as read."""
        tenant_id = current.tenant_id
        updated = Tenant.model_validate({**current.model_dump(), **changes})
        values = updated.model_dump(mode="json", include=set(changes))
        sets = [name for name, value in values.items() if value is not None]
        removes = [name for name, value in values.items() if value is None]
        expression = " ".join(
            part
            for part in (
                "SET " + ", ".join(f"#{n} = :{n}" for n in sets) if sets else "",
                "REMOVE " + ", ".join(f"#{n}" for n in removes) if removes else "",
            )
            if part
        )
        if not expression:
            return current
        names = {f"#{n}": n for n in values}
        bound = {f":{n}": _ser.serialize(values[n]) for n in sets}
        if current.generation:  # still the same tenant: not deleted, nor deleted and created again
            conditions = ["generation = :g"]
            bound[":g"] = _ser.serialize(current.generation)
        else:
            conditions = ["attribute_exists(pk) AND attribute_not_exists(generation)"]
        for field_name in _IDENTITY_KINDS:  # the identities the record was validated with and this leaves alone
            if field_name in sets:
                continue
            names[f"#{field_name}"] = field_name
            if field_name not in removes and (value := getattr(current, field_name)) is not None:
                conditions.append(f"#{field_name} = :was_{field_name}")
                bound[f":was_{field_name}"] = _ser.serialize(value)
            elif field_name not in removes:
                conditions.append(f"attribute_not_exists(#{field_name})")
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"pk": {"S": f"tenant#{tenant_id}"}},
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ConditionExpression": " AND ".join(conditions),
        }
        if bound:
            request["ExpressionAttributeValues"] = bound
        moved = {f for f in ("db_user", "secret_arn") if f in changes and getattr(updated, f) != getattr(current, f)}
        claims = self._claims(updated, only=moved)
        if claims:  # moved to another identity: it must be one no other tenant had, claimed with the change
            try:
                self._write_claiming({"Update": request}, claims, refused=_Stale("changed since it was read"))
            except _Stale:
                return None
            return updated
        try:
            self._db.update_item(**request)
        except self._db.exceptions.ConditionalCheckFailedException:
            return None
        return updated

    def set_active(self, tenant_id: str, active: bool) -> Tenant:
        """Deactivate (or reactivate) a tenant: its keys and tokens are refused and its queued jobs fail
        ``tenant_inactive`` instead of starting. NotFound for an unknown tenant.

        Made active again, it records when (``activated_at``): a file dropped before then, while it was inactive
        (through a drop URL a leaked key was given) or before it was deactivated, is not loaded when its event comes
        late (an S3 event's retry, a redrive from the dead-letter queue), and a job queued before then does not start
        (spectra.identity.before_reactivation). A tenant already active keeps its time."""
        if active:
            reactivated = self._activity(
                tenant_id,
                "SET active = :a, activated_at = :now",
                "attribute_exists(pk) AND active = :inactive",
                {":a": {"BOOL": True}, ":inactive": {"BOOL": False}, ":now": {"S": utcnow().isoformat()}},
            )
            if reactivated is not None:
                return reactivated  # else active already, or no such tenant: told apart below
        updated = self._activity(tenant_id, "SET active = :a", "attribute_exists(pk)", {":a": {"BOOL": active}})
        if updated is None:
            raise NotFound(f"tenant {tenant_id!r} not found")
        return updated

    def _activity(self, tenant_id: str, expression: str, condition: str, values: dict) -> Tenant | None:
        """The tenant record after one conditional update of its ``active`` flag; None when the condition failed."""
        try:
            response = self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"tenant#{tenant_id}"}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return None
        return Tenant.model_validate(_plain(response["Attributes"]))

    def delete_tenant(self, tenant_id: str) -> bool:
        """Delete the tenant and every key it was issued, its running slots and session pool, and its wait leases (a
        tenant created again under the id starts with none of them), and give its webhook subscriptions an end. False
        when there was no such tenant. The records of the database identities it had stay: no later tenant may have
        them (the module's docstring).

        Its subscriptions are not deleted: the jobs it left queued or running still end, and their events still go to
        them, retries included. Each gets an ``expires_at``, :data:`~spectra.notify.store.KEPT_AFTER_TENANT_DELETED`
        (37 days) from now, past the last delivery that can need it, and the subscriptions table's TTL removes it,
        signing secret and all; without an end, they would stay for ever, seen by nobody. That runs on every call, a
        tenant found deleted already included, so running the delete again finishes one cut short
        (:meth:`end_deleted_subscriptions`).
        """
        deleted = self._delete(tenant_id)
        if self._subscriptions_table:
            self.end_deleted_subscriptions(tenant_id)
        return deleted

    def end_deleted_subscriptions(self, tenant_id: str) -> int:
        """Give an end to the webhook subscriptions under ``tenant_id`` that belong to no tenant now (made by a tenant
        since deleted), as :meth:`delete_tenant` does, and nothing else; how many were given one. Each write is
        conditional on its generation being no tenant's, so a tenant created again under the id keeps its own, and a
        predecessor's from before generations (none recorded) ends whenever the id's tenant now has one.

        For ids deleted by a version whose ``delete_tenant`` left subscriptions for ever (README "Upgrading"): running
        ``delete_tenant`` again for them would delete a tenant created again under the id since; this touches no
        tenant."""
        if not self._subscriptions_table:
            raise ValueError(
                "this TenantDirectory was made without the subscriptions table's name (its third argument)"
            )

        def still_gone(generation: str | None) -> dict:
            check: dict[str, Any] = {"TableName": self._table, "Key": {"pk": {"S": f"tenant#{tenant_id}"}}}
            if generation is None:  # a tenant from before generations: every tenant made since has one
                check["ConditionExpression"] = "attribute_not_exists(pk) OR attribute_exists(generation)"
            else:
                check["ConditionExpression"] = "attribute_not_exists(pk) OR generation <> :g"
                check["ExpressionAttributeValues"] = {":g": {"S": generation}}
            return {"ConditionCheck": check}

        store = SubscriptionStore(self._db, self._subscriptions_table)
        return store.expire_standing(tenant_id, at=utcnow() + KEPT_AFTER_TENANT_DELETED, still_gone=still_gone)

    def _delete(self, tenant_id: str) -> bool:
        """The tenant record, its keys, slots and wait leases (:meth:`delete_tenant`).

        The tenant record, its slots item and its waits item go in one transaction, conditional on the generation and
        the keys just read (a key issued meanwhile is read again, and deleted): a delete cut short cannot leave a slots
        item for a tenant created again to inherit (its predecessor's holders taking its running cap), and cannot
        delete the slots of a tenant created again meanwhile. The keys go after: from the record's delete they
        authenticate nobody (a key needs its tenant, of its generation), so a failure while deleting them leaves only
        dead items behind, and running the delete again answers False."""
        for _ in range(DELETE_ATTEMPTS):
            old = self._get(f"tenant#{tenant_id}")
            if old is None:
                return False
            # conditional on what was read: the generation, and the keys (one issued meanwhile is deleted too)
            conditions, values = [], {}
            if old.get("generation"):
                conditions.append("generation = :g")
                values[":g"] = _ser.serialize(old["generation"])
            else:  # a tenant from before generations
                conditions.append("attribute_exists(pk) AND attribute_not_exists(generation)")
            if old.get("key_hashes"):
                conditions.append("key_hashes = :k")
                values[":k"] = _ser.serialize(set(old["key_hashes"]))
            else:
                conditions.append("attribute_not_exists(key_hashes)")
            record: dict[str, Any] = {
                "TableName": self._table,
                "Key": {"pk": {"S": f"tenant#{tenant_id}"}},
                "ConditionExpression": " AND ".join(conditions),
                **({"ExpressionAttributeValues": values} if values else {}),
            }
            # Its statements still running end as usual: their releases find no slot to give back, and do nothing.
            slots = {"TableName": self._table, "Key": {"pk": {"S": SLOTS_PREFIX + tenant_id}}}
            waits = {"TableName": self._table, "Key": {"pk": {"S": WAITS_PREFIX + tenant_id}}}
            try:
                self._db.transact_write_items(TransactItems=[{"Delete": record}, {"Delete": slots}, {"Delete": waits}])
            except self._db.exceptions.TransactionCanceledException as exc:
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    continue  # deleted, or deleted and created again, since the read: read it again
                raise
            for key_hash in old.get("key_hashes", ()):
                self._db.delete_item(TableName=self._table, Key={"pk": {"S": f"key#{key_hash}"}})
            return True
        raise Conflict(f"tenant {tenant_id!r} kept changing while it was being deleted; delete it again")

    def current_check(self, tenant_id: str, generation: str | None) -> dict:
        """A ``TransactWriteItems`` ConditionCheck holding while the tenant's record is the one of ``generation`` (not
        deleted, nor deleted and created again; a tenant from before generations: its record is there, still without
        one). Written with what a request makes that must not outlive the tenant (a standing subscription,
        :meth:`~spectra.notify.store.SubscriptionStore.create`): made after the record's delete, it would miss the end
        :meth:`delete_tenant` gives the tenant's things, and the caller's key may still pass the authorizer's cached
        answer then."""
        check: dict[str, Any] = {"TableName": self._table, "Key": {"pk": {"S": f"tenant#{tenant_id}"}}}
        if generation is None:
            check["ConditionExpression"] = "attribute_exists(pk) AND attribute_not_exists(generation)"
        else:
            check["ConditionExpression"] = "generation = :g"
            check["ExpressionAttributeValues"] = {":g": {"S": generation}}
        return {"ConditionCheck": check}

    def get(self, tenant_id: str) -> Tenant | None:
        item = self._get(f"tenant#{tenant_id}")
        return Tenant.model_validate(item) if item else None

    def authenticate(self, api_key: str) -> Tenant:
        """The active tenant owning ``api_key``; Unauthorized for anything else, with no hint of which part failed.

        A token that no issued key can be (another prefix, too long, not ASCII) is refused before the table is read;
        one holding a lone surrogate could not even be hashed (a 5xx from the authorizer, where a bad key is a 401)."""
        if not api_key.startswith(KEY_PREFIX) or len(api_key) > 256 or not api_key.isascii():
            raise Unauthorized("invalid API key")
        key = self._get(f"key#{hash_api_key(api_key)}")
        tenant = self.get(key["tenant_id"]) if key else None
        # A key issued to an earlier tenant of the same id (deleted, then created again) is not this tenant's key.
        if tenant is None or not tenant.active or key.get("generation") != tenant.generation:
            raise Unauthorized("invalid API key")
        return tenant

    def _get(self, pk: str) -> dict | None:
        response = self._db.get_item(TableName=self._table, Key={"pk": {"S": pk}}, ConsistentRead=True)
        item = response.get("Item")
        return _plain(item) if item else None


#: A Secrets Manager ARN's last part: the secret's name, and the six characters Secrets Manager adds to it, which a
#: partial ARN (as the Data API takes it too) leaves out.
_SECRET_SUFFIX = re.compile(r"-[A-Za-z0-9]{6}$")


#: A tenant record's identity fields, and the kind their identity records are named by (``identity#<kind>:...``)
_IDENTITY_KINDS = {"db_user": "db_user", "secret_arn": "secret"}


def _identity_pk(field_name: str, value: str) -> str:
    return f"identity#{_IDENTITY_KINDS[field_name]}:{identity_key(field_name, value)}"


def identity_key(field_name: str, value: str) -> str:
    """A database identity as one spelling: a user's name with its ASCII letters in lower case, as Redshift folds
    names (``tenant_ABC`` is ``tenant_abc``); a secret's ARN without the suffix a partial ARN leaves out. (Two secrets
    holding one user's credentials are one identity that this cannot see.)"""
    if field_name == "db_user":
        return fold_name(value)
    return _SECRET_SUFFIX.sub("", value)


def _plain(item: dict) -> dict:
    """A DynamoDB item as plain values, without its key (string sets become sets)."""
    return {k: _de.deserialize(v) for k, v in item.items() if k != "pk"}


def same_generation(current: str | None, made_under: str | None) -> bool:
    """Whether what a tenant made under generation ``made_under`` (a job, a bulk job, a subscription) belongs to its
    tenant as it is now (generation ``current``): a tenant deleted and created again under the same id is another
    tenant, and sees, replays and is notified through none of its predecessor's. Where either is unknown (made before
    generations existed, or a tenant since deleted) the item stays with its tenant id."""
    return made_under is None or current is None or made_under == current


class Caller(BaseModel):
    """The authenticated tenant behind a request, as the authorizer vouched for it."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    db_user: str | None = None
    secret_arn: str | None = None
    #: the tenant's generation (see the module's docstring): its jobs run only while the tenant still has it
    generation: str | None = None
    allow_writes: bool = False
    owned_schemas: tuple[str, ...] = ()

    @classmethod
    def of(cls, tenant: Tenant) -> Caller:
        return cls(
            tenant_id=tenant.tenant_id,
            db_user=tenant.db_user,
            secret_arn=tenant.secret_arn,
            generation=tenant.generation,
            allow_writes=tenant.allow_writes,
            owned_schemas=tuple(tenant.owned_schemas),
        )

    def authorizer_context(self) -> dict[str, str]:
        """What the authorizer hands API Gateway (string values only; absent identities are left out)."""
        context = {k: v for k, v in self.model_dump(exclude={"allow_writes", "owned_schemas"}).items() if v}
        if self.allow_writes:
            context["allow_writes"] = "true"
        if self.owned_schemas:
            context["owned_schemas"] = ",".join(self.owned_schemas)
        return context

    def keyed_id(self, prefix: str, idempotency_key: str) -> str:
        """The id of what this caller makes with ``idempotency_key`` (a subscription, a bulk job): the tenant's as it
        is now (a tenant deleted and created again under the same id does not find its predecessor's), and as long
        as the random ids beside it (``prefix`` and 128 bits, URL-safe)."""
        key = f"{self.tenant_id}\0{self.generation or ''}\0{idempotency_key}".encode()
        return prefix + base64.urlsafe_b64encode(hashlib.sha256(key).digest()[:16]).decode().rstrip("=")

    @classmethod
    def from_authorizer_context(cls, context: Mapping[str, Any] | None) -> Caller:
        """The caller :meth:`authorizer_context` described, as API Gateway hands it to the API (with keys of its own,
        such as ``principalId``, that are not ours). The write flag travels as ``"true"``, the owned schemas as one
        comma-separated string.

        A context our authorizer cannot have set (none, no tenant, a value that is not a string) reached the API some
        other way (the function invoked directly, an integration without the authorizer): Unauthorized, as a request
        without a key is, rather than a 500."""
        fields = {k: v for k, v in (context or {}).items() if k in cls.model_fields}
        if not fields.get("tenant_id") or not all(isinstance(value, str) for value in fields.values()):
            raise Unauthorized("the request carries no caller identity")
        fields["allow_writes"] = fields.get("allow_writes") == "true"
        fields["owned_schemas"] = tuple(s for s in (fields.get("owned_schemas") or "").split(",") if s)
        return cls.model_validate(fields)
