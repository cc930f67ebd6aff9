"""Tenants and their API keys.

A tenant is a name plus a database identity: ``db_user`` for a provisioned cluster, ``secret_arn`` for Redshift
Serverless. Row-level security in the warehouse keys off that identity; the application only picks it.

API keys are 256-bit random tokens shown once at issue time. The table stores only their SHA-256: a slow password
hash buys nothing against keys with that much entropy, and a single hash keeps the authorizer to one lookup.

Table layout (``TenantsTable``, key ``pk``): ``tenant#<id>`` holds the tenant, ``key#<sha256 hex>`` one key.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from pydantic import BaseModel, ConfigDict, Field, model_validator

from spectra.errors import Conflict, Unauthorized
from spectra.jobs import utcnow

KEY_PREFIX = "spk_"
_ser, _de = TypeSerializer(), TypeDeserializer()

TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class Tenant(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    db_user: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_$]{0,126}$")
    secret_arn: str | None = None
    active: bool = True
    created_at: datetime
    #: The tenant's share (spectra/share.py): its usage-plan tier (request rate and quota, template.yaml's
    #: UsagePlans), the API Gateway key value the authorizer returns as ``usageIdentifierKey``, and its own cap on
    #: running statements (None: the service's TENANT_MAX_RUNNING_STATEMENTS).
    tier: str = Field(default="standard", pattern=r"^[a-z][a-z0-9-]{0,31}$")
    usage_key: str | None = None
    max_running_statements: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_identity(self) -> Tenant:
        if not (self.db_user or self.secret_arn):
            raise ValueError("a tenant needs a db_user or a secret_arn")
        return self


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class TenantDirectory:
    def __init__(self, client, table_name: str) -> None:
        self._db = client
        self._table = table_name

    def create_tenant(
        self, tenant_id: str, *, db_user: str | None = None, secret_arn: str | None = None, **share: Any
    ) -> Tenant:
        """``share``: the tenant's ``tier``, ``usage_key`` and ``max_running_statements`` (see :class:`Tenant`)."""
        tenant = Tenant(tenant_id=tenant_id, db_user=db_user, secret_arn=secret_arn, created_at=utcnow(), **share)
        item = {"pk": f"tenant#{tenant_id}", **tenant.model_dump(mode="json", exclude_none=True)}
        try:
            self._db.put_item(
                TableName=self._table,
                Item={k: _ser.serialize(v) for k, v in item.items()},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except self._db.exceptions.ConditionalCheckFailedException as exc:
            raise Conflict(f"tenant {tenant_id!r} already exists") from exc
        return tenant

    def issue_key(self, tenant_id: str) -> str:
        """Create an API key for the tenant and return it in clear text (the only time it exists in clear)."""
        api_key = KEY_PREFIX + secrets.token_urlsafe(32)
        item = {
            "pk": f"key#{hash_api_key(api_key)}",
            "tenant_id": tenant_id,
            "key_hint": api_key[: len(KEY_PREFIX) + 4],
            "created_at": utcnow().isoformat(),
        }
        self._db.put_item(TableName=self._table, Item={k: _ser.serialize(v) for k, v in item.items()})
        return api_key

    def revoke_key(self, api_key: str) -> None:
        self._db.delete_item(TableName=self._table, Key={"pk": {"S": f"key#{hash_api_key(api_key)}"}})

    def get(self, tenant_id: str) -> Tenant | None:
        item = self._get(f"tenant#{tenant_id}")
        return Tenant.model_validate(item) if item else None

    def authenticate(self, api_key: str) -> Tenant:
        """The active tenant owning ``api_key``; Unauthorized for anything else, with no hint of which part failed."""
        if not api_key.startswith(KEY_PREFIX) or len(api_key) > 256:
            raise Unauthorized("invalid API key")
        key = self._get(f"key#{hash_api_key(api_key)}")
        tenant = self.get(key["tenant_id"]) if key else None
        if tenant is None or not tenant.active:
            raise Unauthorized("invalid API key")
        return tenant

    def _get(self, pk: str) -> dict | None:
        response = self._db.get_item(TableName=self._table, Key={"pk": {"S": pk}}, ConsistentRead=True)
        item = response.get("Item")
        return {k: _de.deserialize(v) for k, v in item.items() if k != "pk"} if item else None


class Caller(BaseModel):
    """The authenticated tenant behind a request, as the authorizer vouched for it."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    db_user: str | None = None
    secret_arn: str | None = None

    @classmethod
    def of(cls, tenant: Tenant) -> Caller:
        return cls(tenant_id=tenant.tenant_id, db_user=tenant.db_user, secret_arn=tenant.secret_arn)

    def authorizer_context(self) -> dict[str, str]:
        """What the authorizer hands API Gateway (string values only; absent identities are left out)."""
        return {k: v for k, v in self.model_dump().items() if v}
