"""The Data API operations: validate a request, act on the store / runner / catalog, shape the response.

Identity rules (documented choices where AWS depends on IAM, which the emulator does not have):
- ``DbUser``: the statement runs logged in as that PostgreSQL role (it must exist and have LOGIN, as on Redshift).
- ``SecretArn``: username and password come from the secret (JSON ``username``/``password``) in Secrets Manager at
  ``aws_endpoint_url``; the password is passed to PostgreSQL (the embedded server trusts local connections, so it is
  only enforced when ``database_url`` points at a server that checks passwords).
- neither: the admin user. On AWS this is the IAM identity's own database user (``IAM:<name>``); locally the caller is
  the admin, which keeps the local stack usable without provisioning users.
- An unknown user is not rejected by ExecuteStatement: the statement FAILS with PostgreSQL's message
  (``role "x" does not exist``), as a Redshift statement fails when it cannot log in. Catalog calls, which answer
  synchronously, raise DatabaseConnectionException instead.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg

from . import catalog
from .config import EmulatorConfig
from .engine import Engine
from .errors import (
    ActiveStatementsExceededException,
    DatabaseConnectionException,
    ValidationException,
)
from .executor import StatementRunner
from .outage import Outage
from .params import bind_parameters
from .quotas import RateLimits
from .requests import (
    BatchExecuteStatementRequest,
    DescribeTableRequest,
    ExecuteStatementRequest,
    ListDatabasesRequest,
    ListSchemasRequest,
    ListStatementsRequest,
    ListTablesRequest,
    ResultRequest,
    StatementIdRequest,
    _Catalog,
    _Execute,
    _Target,
    parse,
)
from .sessions import Session, SessionRegistry
from .statements import (
    ACTIVE,
    FINISHED,
    PICKED,
    SUBMITTED,
    TERMINAL,
    Identity,
    Statement,
    StatementStore,
    decode_token,
    encode_token,
)

log = logging.getLogger(__name__)


class DataApiService:
    def __init__(
        self,
        config: EmulatorConfig,
        engine: Engine,
        store: StatementStore,
        sessions: SessionRegistry,
        runner: StatementRunner,
        secrets_client_factory: Callable[[], Any],
    ) -> None:
        self._config = config
        self._engine = engine
        self._store = store
        self._sessions = sessions
        self._runner = runner
        self._secrets_client_factory = secrets_client_factory
        self._secrets_client: Any = None
        self.rate_limits = RateLimits(config.rate_limits)
        self.outage: Outage | None = None  # the warehouse taken away, for fault tests (server.py sets it)
        self.operations: dict[str, Callable[[dict, str], Any]] = {
            "ExecuteStatement": self.execute_statement,
            "BatchExecuteStatement": self.batch_execute_statement,
            "DescribeStatement": self.describe_statement,
            "ListStatements": self.list_statements,
            "CancelStatement": self.cancel_statement,
            "GetStatementResult": self.get_statement_result,
            "GetStatementResultV2": self.get_statement_result_v2,
            "ListDatabases": self.list_databases,
            "ListSchemas": self.list_schemas,
            "ListTables": self.list_tables,
            "DescribeTable": self.describe_table,
            "ListSessions": self.list_sessions,
        }

    # -- running statements -----------------------------------------------------------------------------------------

    def execute_statement(self, body: dict, caller: str) -> dict:
        request = parse(ExecuteStatementRequest, body)
        self._check_sql_size(request.Sql)
        self._check_parameters(request, [request.Sql])
        statement = self._new_statement(request, caller, sql=request.Sql)
        return self._submit(request, statement)

    def batch_execute_statement(self, body: dict, caller: str) -> dict:
        request = parse(BatchExecuteStatementRequest, body)
        if len(request.Sqls) > self._config.max_batch_statements:
            raise ValidationException(
                f"Sqls has {len(request.Sqls)} statements; a batch can have at most "
                f"{self._config.max_batch_statements}."
            )
        for sql in request.Sqls:
            self._check_sql_size(sql)
        self._check_parameters(request, request.Sqls)
        statement = self._new_statement(request, caller, sql="")
        statement.is_batch = True
        statement.children = [
            Statement(
                id=f"{statement.id}:{n}", sql=sql, identity=statement.identity, result_format=request.ResultFormat
            )
            for n, sql in enumerate(request.Sqls, start=1)
        ]
        return self._submit(request, statement)

    def _new_statement(self, request: _Execute, caller: str, sql: str) -> Statement:
        return Statement(
            id=self._store.new_id(),
            sql=sql,
            identity=Identity(user="", database=""),  # resolved in _submit (unless a ClientToken repeats)
            parameters=[p.model_dump() for p in request.Parameters] if request.Parameters else None,
            statement_name=request.StatementName,
            with_event=request.WithEvent,
            client_token=request.ClientToken,
            result_format=request.ResultFormat,
            caller=caller,
        )

    def _submit(self, request: _Execute, statement: Statement) -> dict:
        earlier = self._store.find_by_token(request.ClientToken)
        if earlier is not None:  # idempotent retry: same answer, never a second run
            return self._execute_response(earlier)
        if self._store.active_count() >= self._config.max_active_statements:
            raise ActiveStatementsExceededException(
                f"There are already {self._config.max_active_statements} active statements. Wait for some to finish."
            )
        session: Session | None = None
        if request.SessionId:
            self._check_session_request(request)
            session = self._sessions.acquire(request.SessionId, statement.id, request.SessionKeepAliveSeconds)
            statement.identity = session.identity
        else:
            statement.identity = self._resolve_identity(request, need_database=True)
            if request.SessionKeepAliveSeconds:
                session = self._sessions.open(statement.identity, request.SessionKeepAliveSeconds, statement.id)
        for child in statement.children:
            child.identity = statement.identity
        statement.session_id = session.id if session else None
        registered = self._store.add(statement)
        if registered is not statement:  # lost a race against the same ClientToken
            if session is not None:
                self._sessions.release_without_use(session)
            return self._execute_response(registered)
        self._runner.submit(statement, session)
        if request.WaitTimeSeconds:
            statement.wait(request.WaitTimeSeconds)
            response = self._execute_response(statement)
            response.update(
                Status=statement.status, RedshiftPid=statement.redshift_pid, HasResultSet=statement.has_result_set
            )
            return response
        return self._execute_response(statement)

    def _execute_response(self, statement: Statement) -> dict:
        ident = statement.identity
        response: dict[str, Any] = {"Id": statement.id, "CreatedAt": statement.created_at, "Database": ident.database}
        optional = {
            "ClusterIdentifier": ident.cluster_identifier,
            "WorkgroupName": ident.workgroup_name,
            "DbUser": ident.db_user,
            "SecretArn": ident.secret_arn,
            "SessionId": statement.session_id,
        }
        response.update({k: v for k, v in optional.items() if v is not None})
        return response

    def _check_sql_size(self, sql: str) -> None:
        size = len(sql.encode("utf-8"))
        if size > self._config.max_statement_bytes:
            raise ValidationException(
                f"Cannot process query string larger than {self._config.max_statement_bytes // 1024}kB "
                f"(this one is {size} bytes). Split it, or load data with COPY from S3."
            )

    @staticmethod
    def _check_parameters(request: _Execute, sqls: list[str]) -> None:
        """Reject a statement that uses a parameter it was not given now, not later as a FAILED statement."""
        if request.Parameters:
            values = {p.name: p.value for p in request.Parameters}
            for sql in sqls:
                bind_parameters(sql, values)

    @staticmethod
    def _check_session_request(request: _Execute) -> None:
        """A statement in a session names neither its target nor its identity: the session carries both, and AWS
        refuses ``ClusterIdentifier``/``WorkgroupName``, ``Database`` and ``DbUser``/``SecretArn`` beside
        ``SessionId`` (exactly one of the cluster, the workgroup or the session; boto3 callers such as Airflow's
        Redshift Data hook enforce the same). Refusing them, rather than checking they match, keeps a caller from
        believing it chose who the statement runs as."""
        given = [
            name
            for name in ("ClusterIdentifier", "WorkgroupName", "Database", "DbUser", "SecretArn")
            if getattr(request, name) is not None
        ]
        if given:
            raise ValidationException(
                f"{', '.join(given)} cannot be used with SessionId: session {request.SessionId} already has its "
                "connection and database user. Omit the connection parameters when you pass SessionId."
            )

    def _resolve_identity(self, request: _Target, need_database: bool) -> Identity:
        if bool(request.ClusterIdentifier) == bool(request.WorkgroupName):
            raise ValidationException("Specify exactly one of ClusterIdentifier or WorkgroupName.")
        if request.DbUser and request.SecretArn:
            raise ValidationException("Specify either DbUser or SecretArn, not both.")
        database = request.Database
        if not database:
            if need_database:
                raise ValidationException("Database is required: name the database the statement runs in.")
            database = self._config.default_database
        ident = Identity(
            user=self._config.admin_user,
            database=database,
            db_user=request.DbUser,
            secret_arn=request.SecretArn,
            cluster_identifier=request.ClusterIdentifier,
            workgroup_name=request.WorkgroupName,
        )
        if request.DbUser:
            ident.user = request.DbUser
        elif request.SecretArn:
            ident.user, ident.password = self._read_secret(request.SecretArn)
        return ident

    def _read_secret(self, secret_arn: str) -> tuple[str, str | None]:
        if self._secrets_client is None:
            self._secrets_client = self._secrets_client_factory()
        try:
            value = self._secrets_client.get_secret_value(SecretId=secret_arn)["SecretString"]
            secret = json.loads(value)
            return str(secret["username"]), secret.get("password")
        except (KeyError, TypeError, ValueError):
            raise ValidationException(
                f"Secret {secret_arn} must be a JSON SecretString with 'username' and 'password'."
            ) from None
        except Exception as exc:
            raise ValidationException(f"Could not read secret {secret_arn} from Secrets Manager: {exc}") from None

    # -- statement status -------------------------------------------------------------------------------------------

    def describe_statement(self, body: dict, caller: str) -> dict:
        request = parse(StatementIdRequest, body)
        statement = self._store.get(request.Id)
        statement.wait(request.WaitTimeSeconds)
        if ":" in request.Id:  # a batch's sub-statement: its own status, with the batch's connection details
            parent = self._store.get(request.Id.split(":")[0]).describe()
            shared = ("Database", "ClusterIdentifier", "WorkgroupName", "DbUser", "SecretArn", "SessionId")
            return {
                **{k: parent[k] for k in shared if k in parent},
                **statement.describe_sub(),
                "RedshiftPid": parent["RedshiftPid"],
                "ResultFormat": statement.result_format,
            }
        return statement.describe()

    def list_statements(self, body: dict, caller: str) -> dict:
        request = parse(ListStatementsRequest, body)
        if request.ClusterIdentifier and request.WorkgroupName:  # "then WorkgroupName can't be specified" (the model)
            raise ValidationException("Specify at most one of ClusterIdentifier or WorkgroupName.")
        # "By default, only finished statements are shown" (botocore's model of ListStatements): without Status
        # only FINISHED ones; ALL lists every status.
        status = None if request.Status == "ALL" else request.Status or FINISHED

        def matches(s: Statement) -> bool:
            ident = s.identity
            return (
                (status is None or s.status == status)
                and (request.StatementName is None or (s.statement_name or "").startswith(request.StatementName))
                and (request.RoleLevel or s.caller == caller)
                and (request.Database is None or ident.database == request.Database)
                and (request.ClusterIdentifier is None or ident.cluster_identifier == request.ClusterIdentifier)
                and (request.WorkgroupName is None or ident.workgroup_name == request.WorkgroupName)
            )

        statements, token = self._store.page(token=request.NextToken, limit=request.MaxResults or 100, matches=matches)
        response: dict[str, Any] = {"Statements": [s.summary() for s in statements]}
        if token:
            response["NextToken"] = token
        return response

    def cancel_statement(self, body: dict, caller: str) -> dict:
        request = parse(StatementIdRequest, body)
        statement = self._store.get(request.Id.split(":")[0])
        if statement.status in TERMINAL:
            raise ValidationException(f"Could not cancel a query that is already in {statement.status} state.")
        self._runner.cancel(statement)
        if statement.status in (SUBMITTED, PICKED):
            # not started yet (read after the cancel was asked): the worker checks the request once it has started
            # the statement and ends it ABORTED before running anything, so the cancel has taken effect. Waited for,
            # it would answer false after 10 s with every worker busy, and the executor would take that for a
            # statement that had run to its end
            return {"Status": True}
        deadline = time.monotonic() + 10  # AWS answers once the cancel took effect; so do we
        resend_at = time.monotonic() + 0.1
        while statement.status in ACTIVE and time.monotonic() < deadline:
            if time.monotonic() >= resend_at:
                # A cancel that reached the backend before the query did is lost: PostgreSQL cancels only what is
                # running. Ask again until the statement ends (a finished statement has no connection to cancel).
                self._runner.cancel(statement)
                resend_at += 0.1
            time.sleep(0.005)
        return {"Status": statement.status not in ACTIVE}

    # -- results ----------------------------------------------------------------------------------------------------

    def get_statement_result(self, body: dict, caller: str) -> str:
        request = parse(ResultRequest, body)
        result, page_index = self._result_of(request, expected_format="JSON")
        page = result.read_page(page_index)
        return self._result_body(result, page_index, '"Records":[' + page + "]")

    def get_statement_result_v2(self, body: dict, caller: str) -> str:
        request = parse(ResultRequest, body)
        result, page_index = self._result_of(request, expected_format="CSV")
        page = result.read_page(page_index)
        records = '"Records":[{"CSVRecords":' + json.dumps(page) + "}]" if page else '"Records":[]'
        return self._result_body(result, page_index, records + ',"ResultFormat":"CSV"')

    def _result_of(self, request: ResultRequest, expected_format: str):
        statement = self._store.get(request.Id)
        statement.wait(request.WaitTimeSeconds)
        if statement.is_batch:
            raise ValidationException(
                f"{request.Id} is a batch: fetch the result of a sub-statement, e.g. {request.Id}:1."
            )
        if statement.status != FINISHED or statement.result is None:
            raise ValidationException(
                f"Query does not have result. Statement {request.Id} is {statement.status}"
                + ("" if statement.status != FINISHED else " and returned no result set")
                + ". Check its status with DescribeStatement."
            )
        if statement.result_format != expected_format:
            call = "GetStatementResultV2" if statement.result_format == "CSV" else "GetStatementResult"
            raise ValidationException(
                f"Statement {request.Id} ran with ResultFormat {statement.result_format}: fetch it with {call}."
            )
        page_index = decode_token(request.NextToken, "page") if request.NextToken else 0
        return statement.result, page_index

    @staticmethod
    def _result_body(result, page_index: int, records: str) -> str:
        columns = json.dumps([c.metadata() for c in result.columns])
        body = "{" + records + ',"ColumnMetadata":' + columns + ',"TotalNumRows":' + str(result.total_rows)
        if page_index + 1 < len(result.pages):
            body += ',"NextToken":' + json.dumps(encode_token(page=page_index + 1))
        return body + "}"

    # -- catalog ----------------------------------------------------------------------------------------------------

    def list_databases(self, body: dict, caller: str) -> dict:
        request = parse(ListDatabasesRequest, body)
        return self._paged(request, "Databases", self._catalog(request, catalog.list_databases))

    def list_schemas(self, body: dict, caller: str) -> dict:
        request = parse(ListSchemasRequest, body)
        names = self._catalog(request, lambda conn: catalog.list_schemas(conn, request.SchemaPattern))
        return self._paged(request, "Schemas", names)

    def list_tables(self, body: dict, caller: str) -> dict:
        request = parse(ListTablesRequest, body)
        tables = self._catalog(
            request, lambda conn: catalog.list_tables(conn, request.SchemaPattern, request.TablePattern)
        )
        return self._paged(request, "Tables", tables)

    def describe_table(self, body: dict, caller: str) -> dict:
        request = parse(DescribeTableRequest, body)
        columns = self._catalog(request, lambda conn: catalog.describe_table(conn, request.Schema, request.Table))
        response = self._paged(request, "ColumnList", columns)
        if request.Table:
            response["TableName"] = request.Table
        return response

    def list_sessions(self, body: dict, caller: str) -> dict:
        """ListSessions (2026): only reachable by clients whose botocore knows it."""
        return {"Sessions": self._sessions.describe_all()}

    def _catalog(self, request: _Catalog, query: Callable[[psycopg.Connection], list]) -> list:
        ident = self._resolve_identity(request, need_database=False)
        database = request.Database or ident.database
        try:
            conn = self._engine.connect(ident.user, database, ident.password)
        except psycopg.OperationalError as exc:
            raise DatabaseConnectionException(
                f"Could not connect to database {database!r} as {ident.user!r}: {str(exc).strip()}"
            ) from None
        with conn:
            try:
                return query(conn)
            except psycopg.Error as exc:
                raise ValidationException(f"ERROR: {exc.diag.message_primary or exc}") from None

    @staticmethod
    def _paged(request: _Catalog, key: str, items: list) -> dict:
        start = decode_token(request.NextToken, "offset") if request.NextToken else 0
        limit = request.MaxResults or 1000
        page = items[start : start + limit]
        response: dict[str, Any] = {key: page}
        if start + limit < len(items):
            response["NextToken"] = encode_token(offset=start + limit)
        return response
