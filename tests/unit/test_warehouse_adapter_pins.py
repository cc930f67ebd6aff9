"""Redshift port behaviour no test held before, found by a second mutation testing sample of spectra/warehouse.py: a
runner needs exactly one of a cluster and a workgroup, a statement in a session is sent with the session only (and a
new session as the tenant, kept alive the seconds asked), DescribeStatement's answer is read field by field (a time
without a zone taken as UTC, none as None), ListStatements is read page by page for the latest statement of the whole
name, a quick cancel goes to the quick client, and a result is read page by page, a page past retention not found.

The answers are given to a real ``redshift-data`` client with botocore's Stubber, as in test_warehouse_pins.py: the
Stubber also checks each request the port sends, parameter by parameter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from spectra.errors import NotFound, StatementRejected, Throttled
from spectra.warehouse import DatabaseIdentity, StatementRunner, SubStatement

pytestmark = pytest.mark.unit

STATEMENT_ID = "d9b6c0c9-0747-4bf4-b142-e8883122f766"
SESSION_ID = "5a5a1c2e-7a4e-4a7e-9f3b-0c6f0e1d2b3a"
ACME = DatabaseIdentity(db_user="tenant_acme")


def _client():
    return boto3.client("redshift-data", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


@pytest.fixture
def data_api():
    client = _client()
    with Stubber(client) as stubber:
        yield StatementRunner(client, database="dev", cluster_id="c1"), stubber
        stubber.assert_no_pending_responses()


def _on_the_cluster(**more) -> dict:
    """The ExecuteStatement request of select 1 for job j_1 as tenant_acme on cluster c1, outside any session."""
    return {
        "ClusterIdentifier": "c1",
        "Database": "dev",
        "DbUser": "tenant_acme",
        "Sql": "select 1",
        "StatementName": "j_1",
        "ClientToken": "j_1",
        "WithEvent": True,
        "ResultFormat": "CSV",
        **more,
    }


def test_a_runner_needs_exactly_one_of_a_cluster_and_a_workgroup():
    """A runner given both a cluster and a workgroup, or neither, is refused; one of them is taken."""
    with pytest.raises(ValueError, match="exactly one"):
        StatementRunner(_client(), database="dev", cluster_id="c1", workgroup="wg1")
    with pytest.raises(ValueError, match="exactly one"):
        StatementRunner(_client(), database="dev")
    StatementRunner(_client(), database="dev", cluster_id="c1")
    StatementRunner(_client(), database="dev", workgroup="wg1")


def test_a_statement_in_a_session_is_sent_with_the_session_only(data_api):
    """A statement run in a kept-alive session names the session and neither cluster, database nor user (AWS refuses
    them beside it); the session it ran in is read back, and an answer naming no user says no identity."""
    runner, stubber = data_api
    stubber.add_response(
        "execute_statement",
        {"Id": STATEMENT_ID, "SessionId": SESSION_ID},
        {
            "Sql": "select 1",
            "StatementName": "j_1",
            "ClientToken": "j_1",
            "WithEvent": True,
            "ResultFormat": "CSV",
            "SessionId": SESSION_ID,
        },
    )
    started = runner.start(
        "select 1", identity=ACME, name="j_1", client_token="j_1", session_id=SESSION_ID, keep_alive_seconds=300
    )
    assert started.statement_id == STATEMENT_ID
    assert started.session_id == SESSION_ID
    assert started.identity is None


def test_a_new_session_is_opened_as_the_tenant_and_kept_alive_the_seconds_asked(data_api):
    """keep_alive_seconds opens a session on the cluster as the tenant's user, kept that long; the answer's user is
    who the statement runs as. Without it no session is asked for (and an answer without a session says None)."""
    runner, stubber = data_api
    asked = _on_the_cluster()
    stubber.add_response(
        "execute_statement",
        {"Id": STATEMENT_ID, "SessionId": SESSION_ID, "DbUser": "tenant_acme"},
        {**asked, "SessionKeepAliveSeconds": 300},
    )
    stubber.add_response("execute_statement", {"Id": "s2"}, asked)
    started = runner.start("select 1", identity=ACME, name="j_1", client_token="j_1", keep_alive_seconds=300)
    assert started.session_id == SESSION_ID
    assert started.identity == DatabaseIdentity(db_user="tenant_acme")
    plain = runner.start("select 1", identity=ACME, name="j_1", client_token="j_1")
    assert (plain.statement_id, plain.session_id, plain.identity) == ("s2", None, None)


def test_a_statement_is_described_field_by_field(data_api):
    """DescribeStatement's status, error, rows, bytes, duration and sub-statements are told as the answer gives them
    (a sub-statement without a status has ''); a time without a zone is taken as UTC."""
    runner, stubber = data_api
    stubber.add_response(
        "describe_statement",
        {
            "Id": STATEMENT_ID,
            "Status": "FAILED",
            "Error": "ERROR: division by zero",
            "ResultRows": 7,
            "ResultSize": 123,
            "HasResultSet": True,
            "Duration": 4500,
            "CreatedAt": datetime(2026, 3, 1, 12, 30),
            "SubStatements": [
                {"Id": f"{STATEMENT_ID}:1", "Status": "FINISHED", "ResultRows": 2, "HasResultSet": True},
                {"Id": f"{STATEMENT_ID}:2", "Error": "ERROR: division by zero"},
            ],
        },
        {"Id": STATEMENT_ID},
    )
    info = runner.describe(STATEMENT_ID)
    assert (info.statement_id, info.status, info.error) == (STATEMENT_ID, "FAILED", "ERROR: division by zero")
    assert (info.result_rows, info.result_size, info.has_result_set, info.duration_ns) == (7, 123, True, 4500)
    assert info.created_at == datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    assert info.sub_statements == [
        SubStatement(f"{STATEMENT_ID}:1", "FINISHED", result_rows=2, has_result_set=True),
        SubStatement(f"{STATEMENT_ID}:2", "", error="ERROR: division by zero"),
    ]
    assert info.raw["Duration"] == 4500


def test_a_statement_described_without_a_time_or_result_says_none(data_api):
    """An answer without CreatedAt, rows or a result set says created_at None, no rows and no result set, not an
    error; a time in another zone keeps its zone."""
    runner, stubber = data_api
    stubber.add_response("describe_statement", {"Id": STATEMENT_ID, "Status": "SUBMITTED"}, {"Id": STATEMENT_ID})
    info = runner.describe(STATEMENT_ID)
    assert (info.created_at, info.result_rows, info.has_result_set, info.sub_statements) == (None, None, False, [])
    paris = timezone(timedelta(hours=1))
    stubber.add_response(
        "describe_statement",
        {"Id": STATEMENT_ID, "Status": "STARTED", "CreatedAt": datetime(2026, 3, 1, 13, 30, tzinfo=paris)},
        {"Id": STATEMENT_ID},
    )
    assert runner.describe(STATEMENT_ID).created_at.utcoffset() == timedelta(hours=1)


def test_the_latest_statement_of_the_whole_name_is_found_across_pages(data_api):
    """ListStatements is asked for 100 statements of every status under the name, page after page with the token the
    page before gave; a longer name sharing the prefix is left out, the latest by CreatedAt wins (a time without a zone
    taken as UTC), one without a time counts as the earliest."""
    runner, stubber = data_api
    asked = {"StatementName": "j_1", "Status": "ALL", "MaxResults": 100}
    first = [
        {"Id": "s1", "StatementName": "j_1", "CreatedAt": datetime(2026, 3, 1, 12, 0, tzinfo=UTC)},
        {"Id": "s3", "StatementName": "j_10", "CreatedAt": datetime(2026, 3, 1, 14, 0, tzinfo=UTC)},
    ]
    second = [
        {"Id": "s2", "StatementName": "j_1", "CreatedAt": datetime(2026, 3, 1, 13, 0)},
        {"Id": "s0", "StatementName": "j_1"},
    ]
    stubber.add_response("list_statements", {"Statements": first, "NextToken": "p2"}, asked)
    stubber.add_response("list_statements", {"Statements": second}, {**asked, "NextToken": "p2"})
    assert runner.find("j_1") == "s2"
    stubber.add_response("list_statements", {"Statements": [{"Id": "s0", "StatementName": "j_1"}]}, asked)
    assert runner.find("j_1") == "s0"
    stubber.add_response("list_statements", {"Statements": first[1:]}, asked)
    assert runner.find("j_1") is None


def test_a_quick_cancel_asks_the_quick_client_and_others_the_standard_one():
    """cancel(quick=True) goes through the quick client (one try, short timeouts), any other cancel through the
    standard one; a runner given no quick client cancels quickly through the standard one."""
    client, quick = _client(), _client()
    with Stubber(client) as standard_stub, Stubber(quick) as quick_stub:
        runner = StatementRunner(client, database="dev", cluster_id="c1", quick_client=quick)
        quick_stub.add_response("cancel_statement", {"Status": True}, {"Id": "s1"})
        standard_stub.add_response("cancel_statement", {"Status": True}, {"Id": "s2"})
        assert runner.cancel("s1", quick=True) is True
        assert runner.cancel("s2") is True
        standard_stub.add_response("cancel_statement", {"Status": False}, {"Id": "s3"})
        assert StatementRunner(client, database="dev", cluster_id="c1").cancel("s3", quick=True) is False
        quick_stub.assert_no_pending_responses()
        standard_stub.assert_no_pending_responses()


def _unreachable():
    """A real client with one try whose CancelStatement never reaches the service (as botocore raises it when no
    connection is made)."""
    client = boto3.client(
        "redshift-data",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}),
    )

    def refuse(**_):
        raise EndpointConnectionError(endpoint_url="https://redshift-data.us-east-1.amazonaws.com")

    client.meta.events.register("before-send.redshift-data.CancelStatement", refuse)
    return client


def test_a_quick_cancel_that_reaches_nothing_is_passing_trouble_and_a_standard_one_raises():
    """A quick cancel whose one try made no connection is Throttled by its kind, not naming the endpoint; a standard
    cancel's connection error, left after its retries, is raised as it is."""
    runner = StatementRunner(_unreachable(), database="dev", cluster_id="c1", quick_client=_unreachable())
    with pytest.raises(Throttled) as caught:
        runner.cancel("s1", quick=True)
    assert caught.value.message == "Redshift Data API unreachable (EndpointConnectionError)"
    assert caught.value.details == {"aws_error": "Unreachable"}
    with pytest.raises(EndpointConnectionError):
        runner.cancel("s1")


def test_a_result_is_read_page_by_page_skipping_empty_records(data_api):
    """The pages after the first are asked for with the token the page before gave, one at a time as they are read;
    a record without CSV text gives no page."""
    runner, stubber = data_api
    stubber.add_response(
        "get_statement_result_v2",
        {
            "ColumnMetadata": [{"name": "id", "typeName": "int4"}],
            "Records": [{"CSVRecords": "1\n"}, {"CSVRecords": ""}],
            "TotalNumRows": 3,
            "ResultFormat": "CSV",
            "NextToken": "p2",
        },
        {"Id": STATEMENT_ID},
    )
    opened = runner.open_result(STATEMENT_ID)
    assert opened.total_rows == 3
    pages = iter(opened.pages)
    assert next(pages) == "1\n"
    stubber.add_response(
        "get_statement_result_v2",
        {"Records": [{"CSVRecords": "2\n3\n"}], "TotalNumRows": 3, "ResultFormat": "CSV"},
        {"Id": STATEMENT_ID, "NextToken": "p2"},
    )
    assert list(pages) == ["2\n3\n"]


def test_a_result_page_past_retention_is_not_found_and_a_statement_without_one_is_rejected(data_api):
    """A later page AWS answers "... has expired after <epoch>." is NotFound, as the first one would be; a statement
    that has no result set (another ValidationException) stays StatementRejected."""
    runner, stubber = data_api
    stubber.add_response(
        "get_statement_result_v2",
        {"Records": [{"CSVRecords": "1\n"}], "ResultFormat": "CSV", "NextToken": "p2"},
        {"Id": STATEMENT_ID},
    )
    expired = "Could not retrieve the query result as it has expired after 1700000000."
    stubber.add_client_error("get_statement_result_v2", "ValidationException", expired, 400)
    columns, pages = runner.csv_result(STATEMENT_ID)
    assert columns == []
    assert next(pages) == "1\n"
    with pytest.raises(NotFound) as caught:
        next(pages)
    assert caught.value.details == {"aws_error": "ValidationException"}
    stubber.add_client_error("get_statement_result_v2", "ValidationException", "Query does not have result.", 400)
    with pytest.raises(StatementRejected):
        runner.open_result(STATEMENT_ID)


def test_passing_trouble_says_which_code_and_message_the_data_api_gave(data_api):
    """A throttled call is told as "Redshift Data API: <code>: <message>"."""
    runner, stubber = data_api
    stubber.add_client_error("describe_statement", "ThrottlingException", "Rate exceeded", 400)
    with pytest.raises(Throttled) as caught:
        runner.describe(STATEMENT_ID)
    assert caught.value.message == "Redshift Data API: ThrottlingException: Rate exceeded"


def test_execute_sends_the_result_format_and_event_choice_it_is_given(data_api):
    """execute passes on what it is told: a JSON result format and no completion event are sent as asked, not the
    defaults (CSV, an event)."""
    runner, stubber = data_api
    stubber.add_response(
        "execute_statement",
        {"Id": STATEMENT_ID},
        _on_the_cluster(WithEvent=False, ResultFormat="JSON"),
    )
    statement = runner.execute(
        "select 1", identity=ACME, name="j_1", client_token="j_1", result_format="JSON", with_event=False
    )
    assert statement == STATEMENT_ID
