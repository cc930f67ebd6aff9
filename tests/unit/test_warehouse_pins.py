"""Redshift port behaviour no test held before (found by mutation testing spectra/warehouse.py): every throttling and
capacity code the Data API answers is passing trouble, a Serverless tenant's statements and a tenant's batches run as
that tenant, who a statement runs as is read back from its answer, an expired statement is not found, and a result's
columns keep their names (or are named by their place) as the first page tells them.

The answers are given to a real ``redshift-data`` client with botocore's Stubber, as in test_warehouse_answers.py: the
Stubber also checks each request the port sends, parameter by parameter.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from spectra.errors import NotFound, StatementRejected, Throttled
from spectra.warehouse import Column, DatabaseIdentity, StatementRunner

pytestmark = pytest.mark.unit

STATEMENT_ID = "d9b6c0c9-0747-4bf4-b142-e8883122f766"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:globex-AbCdEf"


def _client():
    return boto3.client("redshift-data", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def _execute_request(sql: str, **more) -> dict:
    """The ExecuteStatement request of a statement of job j_1 run as tenant_acme on cluster c1, as the port sends it."""
    return {
        "ClusterIdentifier": "c1",
        "Database": "dev",
        "DbUser": "tenant_acme",
        "Sql": sql,
        "StatementName": "j_1",
        "ClientToken": "j_1",
        "WithEvent": True,
        "ResultFormat": "CSV",
        **more,
    }


def _stubbed(**target):
    """A runner on a real client whose answers the test gives, every one of them used by the test's end."""
    client = _client()
    with Stubber(client) as stubber:
        yield StatementRunner(client, database="dev", **target), stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def data_api():
    yield from _stubbed(cluster_id="c1")


@pytest.fixture
def serverless():
    yield from _stubbed(workgroup="wg1")


@pytest.mark.parametrize(
    "code",
    [
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "ActiveStatementsExceededException",
        "ActiveSessionsExceededException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "InternalServerException",
        "ExecuteStatementException",
        "BatchExecuteStatementException",
        "DatabaseConnectionException",
        "QueryTimeoutException",
    ],
)
def test_every_throttling_or_capacity_code_is_passing_trouble(data_api, code):
    """A statement refused for throttling, too many statements or sessions at once, or a service fault is retried
    later (Throttled naming the code), not failed as statement_rejected."""
    runner, stubber = data_api
    stubber.add_client_error("execute_statement", code, "slow down", 400)
    with pytest.raises(Throttled) as caught:
        runner.execute("select 1", identity=DatabaseIdentity(db_user="tenant_acme"), name="j_1", client_token="j_1")
    assert caught.value.details == {"aws_error": code}


def test_any_refusal_answered_429_is_passing_trouble(data_api):
    """An HTTP 429 is throttling whatever code it carries."""
    runner, stubber = data_api
    stubber.add_client_error("execute_statement", "SomethingNew", "slow down", 429)
    with pytest.raises(Throttled):
        runner.execute("select 1", identity=DatabaseIdentity(db_user="tenant_acme"), name="j_1", client_token="j_1")


def test_a_serverless_tenants_statement_and_batch_run_as_its_secret(serverless):
    """A tenant known by a secret (Serverless) runs its statements and batches with that SecretArn in its workgroup;
    the answer's SecretArn is read back as who the statement runs as."""
    runner, stubber = serverless
    identity = DatabaseIdentity(secret_arn=SECRET)
    common = {"WorkgroupName": "wg1", "Database": "dev", "SecretArn": SECRET, "ClientToken": "j_1"}
    stubber.add_response(
        "execute_statement",
        {"Id": STATEMENT_ID, "SecretArn": SECRET, "WorkgroupName": "wg1", "Database": "dev"},
        {**common, "Sql": "select 1", "StatementName": "j_1", "WithEvent": True, "ResultFormat": "CSV"},
    )
    stubber.add_response(
        "batch_execute_statement",
        {"Id": "b1"},
        {**common, "Sqls": ["select 1", "select 2"], "StatementName": "j_1", "WithEvent": True, "ResultFormat": "CSV"},
    )
    started = runner.start("select 1", identity=identity, name="j_1", client_token="j_1")
    assert started.statement_id == STATEMENT_ID
    assert started.identity == DatabaseIdentity(secret_arn=SECRET)
    assert runner.execute_batch(["select 1", "select 2"], identity=identity, name="j_1", client_token="j_1") == "b1"


def test_a_statement_runs_as_the_tenants_database_user_and_asks_for_its_completion_event(data_api):
    """A provisioned tenant's statement runs as its database user on the cluster, and asks the Data API for the
    completion event the pipeline waits on unless told not to."""
    runner, stubber = data_api
    stubber.add_response(
        "execute_statement",
        {"Id": STATEMENT_ID},
        _execute_request("select 1"),
    )
    assert runner.execute(
        "select 1", identity=DatabaseIdentity(db_user="tenant_acme"), name="j_1", client_token="j_1"
    ) == (STATEMENT_ID)


def test_a_batch_runs_as_the_tenants_database_user(data_api):
    """A bulk load's batch runs as the tenant's database user, not as the function's own role."""
    runner, stubber = data_api
    stubber.add_response(
        "batch_execute_statement",
        {"Id": "b1"},
        {
            "ClusterIdentifier": "c1",
            "Database": "dev",
            "DbUser": "tenant_acme",
            "Sqls": ["select 1"],
            "StatementName": "j_1",
            "ClientToken": "j_1",
            "WithEvent": False,
            "ResultFormat": "CSV",
        },
    )
    batch = runner.execute_batch(
        ["select 1"], identity=DatabaseIdentity(db_user="tenant_acme"), name="j_1", client_token="j_1", with_event=False
    )
    assert batch == "b1"


def test_a_statement_past_its_retention_is_not_found_and_other_refusals_raise(data_api):
    """DescribeStatement answers a statement past its 24 hours with ValidationException: NotFound, so the job is not
    left SUBMITTED; access denied stays a refusal."""
    runner, stubber = data_api
    expired = "Could not retrieve the query result as it has expired after 1700000000."
    stubber.add_client_error("describe_statement", "ValidationException", expired, 400)
    stubber.add_client_error("describe_statement", "AccessDeniedException", "denied", 400)
    with pytest.raises(NotFound) as caught:
        runner.describe(STATEMENT_ID)
    assert caught.value.details == {"aws_error": "ValidationException"}
    with pytest.raises(StatementRejected):
        runner.describe(STATEMENT_ID)


def test_result_columns_are_named_by_name_then_label_then_their_place(data_api):
    """A column the answer names keeps its name, one with only a label takes the label, one with neither is named
    column_<n> counting from 1; a column without a type is varchar."""
    runner, stubber = data_api
    stubber.add_response(
        "get_statement_result_v2",
        {
            "ColumnMetadata": [
                {"name": "id", "typeName": "int4"},
                {"label": "total", "typeName": "numeric", "precision": 12, "scale": 2},
                {},
            ],
            "Records": [{"CSVRecords": "1,2.50,x\n"}],
            "TotalNumRows": 1,
            "ResultFormat": "CSV",
        },
        {"Id": STATEMENT_ID},
    )
    opened = runner.open_result(STATEMENT_ID)
    assert opened.columns == [
        Column("id", "int4"),
        Column("total", "numeric", precision=12, scale=2),
        Column("column_3", "varchar"),
    ]
    assert opened.total_rows == 1
    assert list(opened.pages) == ["1,2.50,x\n"]


def test_a_tables_columns_are_read_from_every_page_of_describe_table(data_api):
    """DescribeTable's later pages are asked for with the token the page before gave, and their columns kept; the
    columns of other tables the answer lists (a name with _ taken as a pattern) are left out, names compared without
    case."""
    runner, stubber = data_api
    asked = {"ClusterIdentifier": "c1", "Database": "dev", "DbUser": "tenant_acme", "Schema": "public", "Table": "a_b"}
    first = [
        {"name": "id", "tableName": "A_B", "schemaName": "PUBLIC"},
        {"name": "other", "tableName": "axb", "schemaName": "public"},
    ]
    stubber.add_response("describe_table", {"ColumnList": first, "NextToken": "p2"}, asked)
    second = [{"name": "total", "tableName": "a_b", "schemaName": "public"}]
    stubber.add_response("describe_table", {"ColumnList": second}, {**asked, "NextToken": "p2"})
    columns = runner.describe_table("public", "a_b", identity=DatabaseIdentity(db_user="tenant_acme"))
    assert [column["name"] for column in columns] == ["id", "total"]


def test_a_parameterized_statement_is_sent_with_its_parameters(data_api):
    """The named parameters of a query job go with its statement, to be bound by the warehouse."""
    runner, stubber = data_api
    parameters = [{"name": "region", "value": "emea"}]
    stubber.add_response(
        "execute_statement",
        {"Id": STATEMENT_ID},
        _execute_request("select * from sales where region = :region", Parameters=parameters),
    )
    started = runner.execute(
        "select * from sales where region = :region",
        identity=DatabaseIdentity(db_user="tenant_acme"),
        name="j_1",
        client_token="j_1",
        parameters=parameters,
    )
    assert started == STATEMENT_ID


def test_a_refused_statement_carries_the_services_own_message(data_api):
    """A statement the Data API refuses fails its job with the service's message as it is, not botocore's wrapping
    of it ("An error occurred (...) when calling ...")."""
    runner, stubber = data_api
    stubber.add_client_error(
        "execute_statement", "ValidationException", "Cannot process query string larger than 100kB"
    )
    with pytest.raises(StatementRejected) as caught:
        runner.execute("select 1", identity=DatabaseIdentity(db_user="tenant_acme"), name="j_1", client_token="j_1")
    assert caught.value.message == "Cannot process query string larger than 100kB"
    assert caught.value.details == {"aws_error": "ValidationException"}
