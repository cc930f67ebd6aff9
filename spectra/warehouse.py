"""The Redshift port: statements through the Redshift Data API.

One class, :class:`StatementRunner`, speaks to the ``redshift-data`` client it is given. Throttling and capacity
errors become :class:`~spectra.errors.Throttled` (the caller retries later); everything else the service refuses
becomes :class:`~spectra.errors.StatementRejected` with the service's message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError

from spectra.errors import NotFound, StatementRejected, Throttled, without_aws_internals

_THROTTLING = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "ActiveStatementsExceededException",
    "ActiveSessionsExceededException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalServerException",
    # environmental errors the Data API reports before the statement runs: worth another try, not a failed job
    "ExecuteStatementException",
    # ... the same for a batch (botocore's model: "An SQL statement encountered an environmental error while running",
    # HTTP 500, as ExecuteStatementException): a bulk load meeting it failed its job where a query job waited
    "BatchExecuteStatementException",
    "DatabaseConnectionException",
    # "The Amazon Redshift Data API operation failed due to timeout" (botocore's model: CancelStatement and the catalog
    # calls, DescribeTable among them): taken for a refusal, a DELETE answered 500 for a cancel worth asking again
    # (429 with Retry-After now) and a bulk load failed on its DescribeTable
    "QueryTimeoutException",
}
#: A ValidationException that says the warehouse is away, not that the request is wrong: a cluster paused, rebooting,
#: resizing or failing over, a Serverless workgroup unavailable, answer ExecuteStatement and the catalog calls with it
#: for minutes ("Cluster <id> is not available ..."; AWS does not document the wording, so the words are matched
#: loosely). Taken for a refusal, it failed every job started meanwhile at once as ``statement_rejected``, as if its
#: SQL were at fault; it is passing trouble, retried as throttling is (tests/faults/test_outage.py). A session that
#: is gone names neither cluster nor workgroup, and stays a refusal (the job runs without it).
_WAREHOUSE_AWAY = re.compile(
    r"\b(cluster|workgroup)\b.*\b(not available|unavailable|paused|pausing|resuming|rebooting|resizing|modifying)\b",
    re.IGNORECASE | re.DOTALL,
)
#: Where a listed statement without a CreatedAt sorts: before any other
_NO_TIME = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DatabaseIdentity:
    """Who a statement runs as: a database user (provisioned cluster) or a secret (Serverless)."""

    db_user: str | None = None
    secret_arn: str | None = None


@dataclass(frozen=True)
class Started:
    """A statement the Data API accepted, the session it runs in (None: outside any session) and who it runs as, as
    the answer reports it (None: the answer does not say). A repeated ClientToken answers an earlier attempt's
    statement, which may run in another session or as an identity the tenant has since left."""

    statement_id: str
    session_id: str | None = None
    identity: DatabaseIdentity | None = None


@dataclass(frozen=True)
class SubStatement:
    statement_id: str
    status: str
    error: str | None = None
    result_rows: int | None = None
    has_result_set: bool = False


@dataclass(frozen=True)
class StatementInfo:
    statement_id: str
    status: str
    error: str | None = None
    result_rows: int | None = None
    result_size: int | None = None
    has_result_set: bool = False
    duration_ns: int | None = None
    sub_statements: list[SubStatement] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    created_at: datetime | None = None  # when ExecuteStatement made it (timezone-aware)


@dataclass(frozen=True)
class Column:
    name: str
    type_name: str
    precision: int | None = None
    scale: int | None = None

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type_name}


@dataclass(frozen=True)
class CsvResult:
    """A finished statement's CSV result as its first page told it: columns, the row count, and the pages."""

    columns: list[Column]
    total_rows: int | None
    pages: Iterator[str] = field(repr=False)


def _same_name(reported: str | None, asked: str) -> bool:
    """Whether a catalog answer's name is the one asked for (an answer that names none is taken as it)."""
    return reported is None or reported.lower() == asked.lower()


def _created_at(statement: dict[str, Any]) -> datetime:
    """A listed statement's CreatedAt, to order statements by. botocore parses the Data API's epoch seconds into
    datetimes of the machine's local zone: compared as strings, those of the hour after a fall-back change sort before
    those of the hour before it. One without a time sorts first."""
    created = statement.get("CreatedAt")
    if not isinstance(created, datetime):
        return _NO_TIME
    return created if created.tzinfo is not None else created.replace(tzinfo=UTC)


def _call(fn, **kwargs):
    try:
        return fn(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        # told to tenants (a statement the Data API refused fails its job with it): an AccessDenied names ARNs
        message = without_aws_internals(exc.response.get("Error", {}).get("Message", str(exc)))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        away = code == "ValidationException" and _WAREHOUSE_AWAY.search(message) is not None
        if code in _THROTTLING or status == 429 or away:
            raise Throttled(f"Redshift Data API: {code}: {message}", details={"aws_error": code}) from exc
        if code == "ResourceNotFoundException":
            raise NotFound(message) from exc
        raise StatementRejected(message, details={"aws_error": code}) from exc


def _result_page(client, **request) -> dict:
    """One GetStatementResultV2 page. AWS answers a result past its retention with ValidationException "... has
    expired after <epoch>." (the emulator too): :class:`NotFound`, so a caller tells it from a statement that has no
    result set (also a ValidationException), which stays :class:`StatementRejected`."""
    try:
        return _call(client.get_statement_result_v2, **request)
    except StatementRejected as exc:
        if (exc.details or {}).get("aws_error") == "ValidationException" and "expired" in exc.message:
            raise NotFound(exc.message, details=exc.details) from exc
        raise


class StatementRunner:
    def __init__(
        self,
        client,
        *,
        database: str,
        cluster_id: str | None = None,
        workgroup: str | None = None,
        quick_client=None,
    ) -> None:
        """``quick_client``: the same API with one try and short timeouts, for calls a request must answer within a
        few seconds (``cancel(quick=True)``); ``client`` when not given."""
        if bool(cluster_id) == bool(workgroup):
            raise ValueError("give exactly one of cluster_id or workgroup")
        self._client = client
        self._quick = quick_client or client
        self._target = {"ClusterIdentifier": cluster_id} if cluster_id else {"WorkgroupName": workgroup}
        self._database = database

    def execute(
        self,
        sql: str,
        *,
        identity: DatabaseIdentity,
        name: str,
        client_token: str,
        parameters: list[dict[str, str]] | None = None,
        result_format: str = "CSV",
        with_event: bool = True,
    ) -> str:
        """Start a statement and return its id. ``client_token`` makes a repeated call return the same statement."""
        return self.start(
            sql,
            identity=identity,
            name=name,
            client_token=client_token,
            parameters=parameters,
            result_format=result_format,
            with_event=with_event,
        ).statement_id

    def start(
        self,
        sql: str,
        *,
        identity: DatabaseIdentity,
        name: str,
        client_token: str,
        parameters: list[dict[str, str]] | None = None,
        result_format: str = "CSV",
        with_event: bool = True,
        session_id: str | None = None,
        keep_alive_seconds: int | None = None,
    ) -> Started:
        """:meth:`execute`, in a session: ``session_id`` runs the statement in that kept-alive session (which
        carries the cluster, the database and the identity: AWS refuses them beside it, so ``identity`` is not sent);
        ``keep_alive_seconds`` opens a new session as ``identity`` and keeps it that long after the statement ends.
        A session that is gone or busy is refused as :class:`~spectra.errors.StatementRejected`."""
        request: dict[str, Any] = {
            "Sql": sql,
            "StatementName": name,
            "ClientToken": client_token,
            "WithEvent": with_event,
            "ResultFormat": result_format,
        }
        if session_id:
            request["SessionId"] = session_id
        else:
            request.update(self._target, Database=self._database, **self._identity(identity))
            if keep_alive_seconds:
                request["SessionKeepAliveSeconds"] = keep_alive_seconds
        if parameters:
            request["Parameters"] = parameters
        response = _call(self._client.execute_statement, **request)
        reported = DatabaseIdentity(db_user=response.get("DbUser"), secret_arn=response.get("SecretArn"))
        return Started(
            statement_id=response["Id"],
            session_id=response.get("SessionId"),
            identity=reported if reported != DatabaseIdentity() else None,
        )

    def execute_batch(
        self, sqls: list[str], *, identity: DatabaseIdentity, name: str, client_token: str, with_event: bool = True
    ) -> str:
        """Start several statements as one transaction (BatchExecuteStatement); each sub-statement's answer is read
        with its own id (``<id>:<n>``, in :attr:`StatementInfo.sub_statements`)."""
        request: dict[str, Any] = {
            **self._target,
            "Database": self._database,
            "Sqls": sqls,
            "StatementName": name,
            "ClientToken": client_token,
            "WithEvent": with_event,
            "ResultFormat": "CSV",
        }
        request.update(self._identity(identity))
        return _call(self._client.batch_execute_statement, **request)["Id"]

    def describe_table(self, schema: str, table: str, *, identity: DatabaseIdentity) -> list[dict[str, Any]] | None:
        """The table's columns as the identity sees them (DescribeTable), or None when it sees no such table. Only
        the columns of that very table: the API speaks of "matching tables", and a name with ``_`` may be taken for
        a pattern (as ListTables takes it), which would add another table's columns to the target's."""
        request: dict[str, Any] = {**self._target, "Database": self._database, "Schema": schema, "Table": table}
        request.update(self._identity(identity))
        columns: list[dict[str, Any]] = []
        while True:
            response = _call(self._client.describe_table, **request)
            columns.extend(
                column
                for column in response.get("ColumnList", [])
                if _same_name(column.get("tableName"), table) and _same_name(column.get("schemaName"), schema)
            )
            if not response.get("NextToken"):
                break
            request["NextToken"] = response["NextToken"]
        return columns or None

    @staticmethod
    def _identity(identity: DatabaseIdentity) -> dict[str, str]:
        if identity.secret_arn:
            return {"SecretArn": identity.secret_arn}
        if identity.db_user:
            return {"DbUser": identity.db_user}
        return {}

    def describe(self, statement_id: str) -> StatementInfo:
        """The statement as DescribeStatement tells it. :class:`~spectra.errors.NotFound` when the Data API no longer
        keeps it: unknown (ResourceNotFoundException) or past its 24-hour retention, which AWS answers with
        ValidationException "Could not retrieve the query result as it has expired after <epoch>." (seen in
        pulumi/pulumi-aws#2055). The only input here is an id the Data API issued, so a ValidationException can only
        be that; taken for a rejected statement, it left the job SUBMITTED and the reconciler erring on it for ever."""
        try:
            response = _call(self._client.describe_statement, Id=statement_id)
        except StatementRejected as exc:
            if (exc.details or {}).get("aws_error") != "ValidationException":
                raise
            raise NotFound(exc.message, details=exc.details) from exc
        return StatementInfo(
            statement_id=response["Id"],
            status=response["Status"],
            error=response.get("Error"),
            result_rows=response.get("ResultRows"),
            result_size=response.get("ResultSize"),
            has_result_set=bool(response.get("HasResultSet")),
            duration_ns=response.get("Duration"),
            sub_statements=[
                SubStatement(
                    statement_id=sub["Id"],
                    status=sub.get("Status", ""),
                    error=sub.get("Error"),
                    result_rows=sub.get("ResultRows"),
                    has_result_set=bool(sub.get("HasResultSet")),
                )
                for sub in response.get("SubStatements", [])
            ],
            raw=response,
            created_at=_aware(response.get("CreatedAt")),
        )

    def find(self, name: str) -> str | None:
        """The id of the latest statement this role started under ``name`` (ListStatements), or None: for an attempt
        that died between starting its statement and recording it. The Data API matches names by prefix; the name
        must match whole here."""
        request: dict[str, Any] = {"StatementName": name, "Status": "ALL", "MaxResults": 100}
        found: list[dict[str, Any]] = []
        while True:
            response = _call(self._client.list_statements, **request)
            found += [s for s in response.get("Statements", []) if s.get("StatementName") == name]
            if not response.get("NextToken"):
                break
            request["NextToken"] = response["NextToken"]
        latest = max(found, key=_created_at, default=None)
        return latest["Id"] if latest else None

    def cancel(self, statement_id: str, *, quick: bool = False) -> bool:
        """Ask the warehouse to stop the statement. False when it had already ended (the Data API answers
        ValidationException) or is no longer known (results expire after 24 hours); anything else, access denied
        included, is raised, not taken for "already ended". ``quick``: one try with short timeouts (a request
        waiting on it has seconds left)."""
        client = self._quick if quick else self._client
        try:
            return bool(_call(client.cancel_statement, Id=statement_id).get("Status"))
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            if not quick:  # after retries, the last attempt's error says nothing of the earlier ones
                raise
            # the quick client's one attempt made no connection: surely not sent, as a refusal to try again
            # by its kind alone: botocore's text names the endpoint, and a one-call query's answer carries this (its
            # cause stays chained, for the logs)
            raise Throttled(
                f"Redshift Data API unreachable ({type(exc).__name__})", details={"aws_error": "Unreachable"}
            ) from exc
        except NotFound:
            return False
        except StatementRejected as exc:
            if (exc.details or {}).get("aws_error") == "ValidationException":
                return False
            raise

    def csv_result(self, statement_id: str) -> tuple[list[Column], Iterator[str]]:
        """Column metadata and an iterator of CSV pages (GetStatementResultV2), fetched lazily, one page at a time."""
        opened = self.open_result(statement_id)
        return opened.columns, opened.pages

    def open_result(self, statement_id: str) -> CsvResult:
        """The result's first page asked for (GetStatementResultV2): its columns and row count at once, the pages
        (that one first) as they are read. A statement without a result set is :class:`StatementRejected`; a result
        past the Data API's 24 hours is :class:`~spectra.errors.NotFound`, as :meth:`describe` answers it."""
        first = _result_page(self._client, Id=statement_id)
        columns = [
            Column(
                name=meta.get("name") or meta.get("label") or f"column_{i}",
                type_name=meta.get("typeName", "varchar"),
                precision=meta.get("precision"),
                scale=meta.get("scale"),
            )
            for i, meta in enumerate(first.get("ColumnMetadata", []), start=1)
        ]

        def pages() -> Iterator[str]:
            response = first
            while True:
                for record in response.get("Records", []):
                    if record.get("CSVRecords"):
                        yield record["CSVRecords"]
                token = response.get("NextToken")
                if not token:
                    return
                response = _result_page(self._client, Id=statement_id, NextToken=token)

        return CsvResult(columns=columns, total_rows=first.get("TotalNumRows"), pages=pages())


def _aware(moment: Any) -> datetime | None:
    """A time the Data API gave (botocore parses it, with its zone), or None when it gave none."""
    if not isinstance(moment, datetime):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
