"""Request shapes of the Data API operations, validated the way the service validates them.

Field names are the wire names (PascalCase) so a model is the request body; limits come from botocore's service
model for ``redshift-data``. Unknown members are ignored, so newer clients (WaitTimeSeconds, ...) keep working.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from .errors import ValidationException

UUID_PATTERN = r"^[a-z0-9]{8}(-[a-z0-9]{4}){3}-[a-z0-9]{12}(:\d{0,2})?$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SqlParameter(_Request):
    name: str = Field(pattern=r"^[0-9a-zA-Z_]+$")
    value: str = Field(min_length=1)


#: The service model's patterns (ClusterIdentifierString, WorkgroupNameString), which the service checks and botocore
#: does not: a cluster id like Spectra_Local worked here and failed every statement on AWS.
CLUSTER_PATTERN = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
WORKGROUP_PATTERN = (
    r"^([a-z0-9-]{3,63}|arn:aws(-[a-z]+)*:redshift-serverless:[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d:\d{12}:"
    r"workgroup/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)


class _Target(_Request):
    ClusterIdentifier: str | None = Field(default=None, min_length=1, max_length=63, pattern=CLUSTER_PATTERN)
    WorkgroupName: str | None = Field(default=None, min_length=3, max_length=128, pattern=WORKGROUP_PATTERN)
    Database: str | None = None
    DbUser: str | None = None
    SecretArn: str | None = None


class _Execute(_Target):
    StatementName: str | None = Field(default=None, max_length=2048)
    WithEvent: bool = False
    Parameters: list[SqlParameter] | None = Field(default=None, min_length=1)
    ClientToken: str | None = Field(default=None, min_length=1, max_length=64)
    ResultFormat: Literal["JSON", "CSV"] = "JSON"
    SessionKeepAliveSeconds: int | None = Field(default=None, ge=0, le=86400)
    SessionId: str | None = Field(default=None, pattern=UUID_PATTERN)
    WaitTimeSeconds: int | None = Field(default=None, ge=0, le=30)  # long polling (2026); absent from older clients


class ExecuteStatementRequest(_Execute):
    Sql: str = Field(min_length=1)


class BatchExecuteStatementRequest(_Execute):
    Sqls: list[str] = Field(min_length=1)


class StatementIdRequest(_Request):
    Id: str = Field(pattern=UUID_PATTERN)
    WaitTimeSeconds: int | None = Field(default=None, ge=0, le=30)


class ResultRequest(StatementIdRequest):
    NextToken: str | None = None


class ListStatementsRequest(_Request):
    NextToken: str | None = None
    MaxResults: int | None = Field(default=None, ge=0, le=100)
    StatementName: str | None = Field(default=None, max_length=2048)
    Status: Literal["SUBMITTED", "PICKED", "STARTED", "FINISHED", "ABORTED", "FAILED", "ALL"] | None = None
    RoleLevel: bool = True
    Database: str | None = None
    # as ExecuteStatement's (the same patterns in the service model): a cluster id no call takes lists nothing on AWS
    ClusterIdentifier: str | None = Field(default=None, min_length=1, max_length=63, pattern=CLUSTER_PATTERN)
    WorkgroupName: str | None = Field(default=None, min_length=3, max_length=128, pattern=WORKGROUP_PATTERN)


class _Catalog(_Target):
    NextToken: str | None = None
    MaxResults: int | None = Field(default=None, ge=0, le=1000)
    ConnectedDatabase: str | None = None


class ListDatabasesRequest(_Catalog):
    pass


class ListSchemasRequest(_Catalog):
    SchemaPattern: str | None = None


class ListTablesRequest(_Catalog):
    SchemaPattern: str | None = None
    TablePattern: str | None = None


class DescribeTableRequest(_Catalog):
    Schema: str | None = None
    Table: str | None = None


def parse(model: type[_Request], body: dict) -> _Request:
    """Validate ``body`` into ``model``; a violation becomes the ValidationException AWS would send."""
    try:
        return model.model_validate(body)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'request'}: {err['msg']}" for err in exc.errors()
        )
        raise ValidationException(f"{len(exc.errors())} validation error(s) detected: {problems}") from None
