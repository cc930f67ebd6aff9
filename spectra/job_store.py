"""The job store port: jobs in DynamoDB, every state change a conditional write.

Table layout (declared in template.yaml as ``JobsTable``):

* key ``job_id``; one item per job.
* GSI ``by-tenant`` (``tenant_id``, ``created_key`` = ``<created_at ISO>#<job_id>``): a tenant's jobs, newest first.
* Idempotency records share the table under ``job_id = "idem#<tenant>#<sha256(key)>"``. They carry neither
  ``tenant_id`` nor ``created_key``, so the GSI never sees them, and they expire through the ``expires_at`` TTL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from events import JobStatus
from spectra.errors import Conflict, InvalidRequest
from spectra.jobs import Job, sources_of, utcnow

TENANT_INDEX = "by-tenant"
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


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_token: str | None


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
            }
        )
        if not job.idempotency_key:
            self._db.put_item(TableName=self._table, Item=job_item, ConditionExpression="attribute_not_exists(job_id)")
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
        self, tenant_id: str, *, limit: int, status: JobStatus | None = None, next_token: str | None = None
    ) -> JobPage:
        """The tenant's jobs, newest first. The status filter is applied while paging, so pages are still full."""
        start_key = self._decode_token(next_token, tenant_id) if next_token else None
        jobs: list[Job] = []
        while len(jobs) < limit:
            query: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": TENANT_INDEX,
                "KeyConditionExpression": "tenant_id = :t",
                "ExpressionAttributeValues": _to_item({":t": tenant_id}),
                "ScanIndexForward": False,
                "Limit": limit - len(jobs),
            }
            if status is not None:
                query["FilterExpression"] = "#s = :s"
                query["ExpressionAttributeNames"] = {"#s": "status"}
                query["ExpressionAttributeValues"].update(_to_item({":s": status.value}))
            if start_key:
                query["ExclusiveStartKey"] = start_key
            response = self._db.query(**query)
            jobs.extend(_job_from_item(item) for item in response.get("Items", []))
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                break
        return JobPage(jobs=jobs, next_token=self._encode_token(start_key) if start_key else None)

    @staticmethod
    def _encode_token(key: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(_from_item(key)).encode()).decode().rstrip("=")

    @staticmethod
    def _decode_token(token: str, tenant_id: str) -> dict[str, Any]:
        try:
            padded = token + "=" * (-len(token) % 4)
            key = json.loads(base64.urlsafe_b64decode(padded))
            if not isinstance(key, dict) or set(key) != {"job_id", "tenant_id", "created_key"}:
                raise ValueError("unexpected token shape")
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidRequest("next_token is not valid") from exc
        if key["tenant_id"] != tenant_id:
            raise InvalidRequest("next_token is not valid")
        return _to_item(key)

    # -- change ---------------------------------------------------------------------------------------------------

    def transition(self, job_id: str, to: JobStatus, **changes: Any) -> Job | None:
        """Move a job to ``to`` if its current state allows it; return the new job, or None when the move is illegal.

        The condition is evaluated by DynamoDB, so of two racing deliveries of one message exactly one wins.
        """
        return self._update(job_id, sources_of(to), {"status": to.value, **changes})

    def update(self, job_id: str, expected: Iterable[JobStatus], **changes: Any) -> Job | None:
        """Change attributes without a state change, if the job is still in one of ``expected``."""
        return self._update(job_id, frozenset(expected), changes)

    def _update(self, job_id: str, allowed: frozenset[JobStatus], changes: dict[str, Any]) -> Job | None:
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
                ConditionExpression=f"attribute_exists(job_id) AND #status IN ({', '.join(states)})",
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
