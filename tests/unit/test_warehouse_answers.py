"""How the Redshift port reads the Data API's modelled errors, as a real ``redshift-data`` client raises them (the
answers given with botocore's Stubber: the local emulator never sends these, and AWS does not say when it does).

Which errors each operation may answer, their HTTP status and their text come from botocore's service model
(``data/redshift-data/2019-12-20/service-2.json``) and AWS's Smithy model of the service (aws/api-models-aws).
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from spectra.errors import NotFound, StatementRejected, Throttled
from spectra.warehouse import DatabaseIdentity, StatementRunner

pytestmark = pytest.mark.unit

IDENTITY = DatabaseIdentity(db_user="tenant_acme")
STATEMENT_ID = "d9b6c0c9-0747-4bf4-b142-e8883122f766"


@pytest.fixture
def data_api():
    client = boto3.client("redshift-data", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield StatementRunner(client, database="dev", cluster_id="c1"), stubber
        stubber.assert_no_pending_responses()


CALLS = {
    "execute_statement": lambda runner: runner.execute("select 1", identity=IDENTITY, name="j_1", client_token="j_1"),
    "batch_execute_statement": lambda runner: runner.execute_batch(
        ["select 1"], identity=IDENTITY, name="j_1", client_token="j_1"
    ),
    "cancel_statement": lambda runner: runner.cancel(STATEMENT_ID),
    "describe_table": lambda runner: runner.describe_table("public", "accounts", identity=IDENTITY),
}


@pytest.mark.parametrize(
    ("operation", "code", "status"),
    [
        ("execute_statement", "ExecuteStatementException", 500),
        # "An SQL statement encountered an environmental error while running." (500, as ExecuteStatementException):
        # a bulk load's BatchExecuteStatement meeting it failed the job (statement_rejected) instead of retrying
        ("batch_execute_statement", "BatchExecuteStatementException", 500),
        # "The Amazon Redshift Data API operation failed due to timeout." (400), modelled for CancelStatement and
        # the catalog calls: a DELETE answered 500 for it, and a bulk load failed on its DescribeTable
        ("cancel_statement", "QueryTimeoutException", 400),
        ("describe_table", "QueryTimeoutException", 400),
        ("cancel_statement", "DatabaseConnectionException", 500),
    ],
)
def test_environmental_errors_and_timeouts_are_passing_trouble(data_api, operation, code, status):
    runner, stubber = data_api
    stubber.add_client_error(operation, service_error_code=code, service_message="try again", http_status_code=status)
    with pytest.raises(Throttled) as caught:
        CALLS[operation](runner)
    assert caught.value.details == {"aws_error": code}


@pytest.mark.parametrize("operation", ["execute_statement", "batch_execute_statement", "describe_table"])
@pytest.mark.parametrize(
    "message",
    [
        "Cluster c1 is not available: its status is rebooting. Try again once it is available.",
        "Redshift Serverless workgroup wg1 is unavailable.",
        "Cannot process the request: the cluster is paused.",
        "The cluster or workgroup of session 5a1f is not available: its status is resizing.",
    ],
)
def test_a_warehouse_that_is_away_is_passing_trouble(data_api, operation, message):
    """A cluster paused, rebooting, resizing or failing over (a workgroup unavailable) refuses new statements and the
    catalog calls with ValidationException for minutes (its wording undocumented): the job waits for it, as for
    throttling, instead of failing at once as ``statement_rejected`` (tests/faults/test_outage.py)."""
    runner, stubber = data_api
    stubber.add_client_error(operation, "ValidationException", message, 400)
    with pytest.raises(Throttled) as caught:
        CALLS[operation](runner)
    assert caught.value.details == {"aws_error": "ValidationException"}


@pytest.mark.parametrize(
    "message",
    [
        "Session 5a1f is not available: it does not exist, has expired or was closed.",  # runs without the session
        "ClusterIdentifier and WorkgroupName cannot both be given.",
        "Cannot process query string larger than 100kB",
    ],
)
def test_other_validation_errors_stay_refusals(data_api, message):
    runner, stubber = data_api
    stubber.add_client_error("execute_statement", "ValidationException", message, 400)
    with pytest.raises(StatementRejected):
        CALLS["execute_statement"](runner)


def test_cancel_of_an_ended_or_unknown_statement_is_false_and_other_refusals_raise(data_api):
    """AWS refuses a cancel of an ended statement with ValidationException ("Could not cancel a query that is
    already in FINISHED state", "... in ABORTED state with ID: <id>": aws/aws-sdk-js-v3#3056, Grafana's Redshift
    data source matches the FINISHED text) and an unknown one with ResourceNotFoundException."""
    runner, stubber = data_api
    ended = f"Could not cancel a query that is already in FINISHED state with ID: {STATEMENT_ID}"
    stubber.add_client_error("cancel_statement", "ValidationException", ended, 400)
    stubber.add_client_error("cancel_statement", "ResourceNotFoundException", "Query does not exist.", 404)
    stubber.add_client_error("cancel_statement", "AccessDeniedException", "denied", 400)
    stubber.add_response("cancel_statement", {"Status": True}, {"Id": STATEMENT_ID})
    assert runner.cancel(STATEMENT_ID) is False
    assert runner.cancel(STATEMENT_ID) is False
    with pytest.raises(StatementRejected):
        runner.cancel(STATEMENT_ID)
    assert runner.cancel(STATEMENT_ID) is True


def test_an_unknown_statement_is_not_found_whatever_its_status(data_api):
    """ResourceNotFoundException is HTTP 404 in AWS's model (400 from the emulator): the port reads the code only."""
    runner, stubber = data_api
    stubber.add_client_error("describe_statement", "ResourceNotFoundException", "Query does not exist.", 404)
    with pytest.raises(NotFound):
        runner.describe(STATEMENT_ID)


def raised_by(operation: str, code: str, status: int) -> Exception:
    """What the port raises when a real client gets ``code`` from ``operation`` (to script it into a fake port)."""
    client = boto3.client("redshift-data", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        stubber.add_client_error(
            operation, service_error_code=code, service_message="try again", http_status_code=status
        )
        try:
            CALLS[operation](StatementRunner(client, database="dev", cluster_id="c1"))
        except Exception as exc:
            return exc
    raise AssertionError(f"{operation} answered {code} raised nothing")
