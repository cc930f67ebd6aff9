"""Sessions: one connection reused across statements, one statement at a time, closed after its keep-alive."""

from __future__ import annotations

import os
import time

import pytest
from botocore.exceptions import ClientError

from tests.fixtures.redshift import CLUSTER, DATABASE, wait_for_statement
from tests.fixtures.stack import wait_until

pytestmark = pytest.mark.integration


def test_a_session_keeps_its_connection_between_statements(api, redshift_data, name):
    first = redshift_data.execute_statement(
        Sql=f"CREATE TEMP TABLE {name} AS SELECT 42 AS answer",
        Database=DATABASE,
        ClusterIdentifier=CLUSTER,
        SessionKeepAliveSeconds=60,
    )
    session_id = first["SessionId"]
    first_described = wait_for_statement(redshift_data, first["Id"])
    assert first_described["Status"] == "FINISHED" and first_described["SessionId"] == session_id

    second = redshift_data.execute_statement(Sql=f"SELECT answer FROM {name}", SessionId=session_id)
    assert second["SessionId"] == session_id
    described = wait_for_statement(redshift_data, second["Id"])
    assert described["Status"] == "FINISHED", described
    assert described["RedshiftPid"] == first_described["RedshiftPid"]  # the same backend: the same connection
    assert redshift_data.get_statement_result(Id=second["Id"])["Records"] == [[{"longValue": 42}]]

    # a temporary table is private to its session
    api.run(f"SELECT * FROM {name}", expect="FAILED")


def test_a_busy_session_rejects_a_second_statement(redshift_data):
    first = redshift_data.execute_statement(
        Sql="SELECT pg_sleep(1.5)", Database=DATABASE, ClusterIdentifier=CLUSTER, SessionKeepAliveSeconds=60
    )
    with pytest.raises(redshift_data.exceptions.ValidationException, match="busy"):
        redshift_data.execute_statement(Sql="SELECT 1", SessionId=first["SessionId"])
    wait_for_statement(redshift_data, first["Id"])
    after = redshift_data.execute_statement(Sql="SELECT 1", SessionId=first["SessionId"])
    assert wait_for_statement(redshift_data, after["Id"])["Status"] == "FINISHED"


def test_a_session_expires_after_its_keep_alive(redshift_data):
    first = redshift_data.execute_statement(
        Sql="SELECT 1", Database=DATABASE, ClusterIdentifier=CLUSTER, SessionKeepAliveSeconds=1
    )
    wait_for_statement(redshift_data, first["Id"])
    deadline = time.monotonic() + 10
    while True:
        try:
            statement = redshift_data.execute_statement(Sql="SELECT 1", SessionId=first["SessionId"])
        except redshift_data.exceptions.ValidationException as exc:
            assert "expired" in str(exc)
            break
        wait_for_statement(redshift_data, statement["Id"])  # still alive: its keep-alive restarts; stop using it
        assert time.monotonic() < deadline, "the session never expired"
        time.sleep(1.2)


@pytest.mark.parametrize(
    "connection",
    [
        {"Database": DATABASE},
        {"Database": "postgres"},
        {"ClusterIdentifier": CLUSTER},
        {"DbUser": "awsuser"},
        {"SecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:spectra/tenants/x-AbCdEf"},
        {"ClusterIdentifier": CLUSTER, "Database": DATABASE, "DbUser": "awsuser"},
    ],
)
def test_a_session_statement_takes_no_target_and_no_identity(redshift_data, connection):
    """As AWS: with SessionId the session carries the cluster, database and user; naming any of them is refused,
    even when it matches, and the session stays usable."""
    first = redshift_data.execute_statement(
        Sql="SELECT 1", Database=DATABASE, ClusterIdentifier=CLUSTER, SessionKeepAliveSeconds=30
    )
    wait_for_statement(redshift_data, first["Id"])
    with pytest.raises(redshift_data.exceptions.ValidationException, match="cannot be used with SessionId"):
        redshift_data.execute_statement(Sql="SELECT 1", SessionId=first["SessionId"], **connection)
    after = redshift_data.execute_statement(Sql="SELECT 1", SessionId=first["SessionId"])
    assert wait_for_statement(redshift_data, after["Id"])["Status"] == "FINISHED"


def test_a_session_runs_as_the_user_that_opened_it(redshift_data, api, name):
    """The identity of a session is fixed when it opens: later statements run as that user whatever they say."""
    user = f"tenant_{name}"
    api.run(f'CREATE USER "{user}"')
    first = redshift_data.execute_statement(
        Sql="SELECT current_user", Database=DATABASE, ClusterIdentifier=CLUSTER, DbUser=user, SessionKeepAliveSeconds=30
    )
    assert wait_for_statement(redshift_data, first["Id"])["DbUser"] == user
    second = redshift_data.execute_statement(Sql="SELECT current_user", SessionId=first["SessionId"])
    described = wait_for_statement(redshift_data, second["Id"])
    assert described["DbUser"] == user
    assert redshift_data.get_statement_result(Id=second["Id"])["Records"] == [[{"stringValue": user}]]


def test_unknown_session_is_rejected(redshift_data):
    with pytest.raises(redshift_data.exceptions.ValidationException, match="not available"):
        redshift_data.execute_statement(Sql="SELECT 1", SessionId="00000000-0000-0000-0000-000000000000")


def test_an_ended_session_is_refused_like_an_expired_one(redshift_data, redshift_emulator):
    first = redshift_data.execute_statement(
        Sql="SELECT 1", Database=DATABASE, ClusterIdentifier=CLUSTER, SessionKeepAliveSeconds=600
    )
    wait_for_statement(redshift_data, first["Id"])
    assert redshift_emulator.end_session(first["SessionId"])
    with pytest.raises(redshift_data.exceptions.ValidationException, match="not available"):
        redshift_data.execute_statement(Sql="SELECT 1", SessionId=first["SessionId"])


def test_more_sessions_than_postgresqls_default_connections_all_run(redshift_data, redshift_emulator, api, name):
    """Each kept-alive session holds a connection. A full test run keeps about a hundred open at once (every tenant's
    sessions live for their keep-alive), which PostgreSQL's default of 100 connections, 97 of them for ordinary
    users, could not hold: a new session's statement then FAILED "too many clients", the emulator closed the
    session, and the next statement naming it was refused. The emulator's server holds its whole session quota."""
    user = f"tenant_{name}"
    api.run(f'CREATE USER "{user}"')
    opened = [
        redshift_data.execute_statement(
            Sql="SELECT 1", Database=DATABASE, ClusterIdentifier=CLUSTER, DbUser=user, SessionKeepAliveSeconds=60
        )
        for _ in range(110)
    ]
    try:
        failed = [d for s in opened if (d := wait_for_statement(redshift_data, s["Id"]))["Status"] != "FINISHED"]
        assert not failed, failed[0]
        # every session kept its connection: each runs its next statement
        again = redshift_data.execute_statement(Sql="SELECT 2", SessionId=opened[0]["SessionId"])
        assert wait_for_statement(redshift_data, again["Id"])["Status"] == "FINISHED"
    finally:
        for statement in opened:  # give the connections back now rather than in a minute
            wait_for_statement(redshift_data, statement["Id"])
            redshift_emulator.end_session(statement["SessionId"])


def test_a_session_is_closed_24_hours_after_it_opened(api, redshift_emulator):
    """SessionKeepAliveSeconds: "The maximum time a session can keep alive is 24 hours. After 24 hours, the session is
    forced closed": a session used within every keep-alive lived for ever here (found by the Data API review)."""
    first = api.client.execute_statement(
        Sql="select 1", ClusterIdentifier=CLUSTER, Database=DATABASE, SessionKeepAliveSeconds=600
    )
    wait_for_statement(api.client, first["Id"])
    session = redshift_emulator._sessions._sessions[first["SessionId"]]
    session.created_at = time.time() - 86400 - 60  # opened 24 h 1 min ago, used all along
    with pytest.raises(ClientError) as refused:
        api.client.execute_statement(Sql="select 2", SessionId=first["SessionId"])
    assert refused.value.response["Error"]["Code"] == "ValidationException"


def test_a_session_whose_backend_ended_while_it_idled_is_refused_like_an_ended_one(redshift_data, api):
    """An administrator's pg_terminate_backend of an idle session's connection (routine for idle connections): the
    next statement naming the session failed with 'terminating connection due to administrator command', where an
    ended session is refused 'not available' at once, which the service answers by running the statement without it
    (the sessions review)."""
    first = redshift_data.execute_statement(
        Sql="SELECT 1", Database=DATABASE, ClusterIdentifier=CLUSTER, SessionKeepAliveSeconds=600
    )
    pid = wait_for_statement(redshift_data, first["Id"])["RedshiftPid"]
    assert os.path.exists(f"/proc/{pid}")  # the backend is a process of this machine's, to wait for below
    api.run(f"SELECT pg_terminate_backend({pid})")
    # the backend ends a moment after the call returns, and its socket with it: waited for as its process being gone
    # (the emulator's PostgreSQL runs on this machine), not for a fixed second a loaded machine may outlast
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 10, f"backend {pid} to end")
    with pytest.raises(redshift_data.exceptions.ValidationException, match="not available"):
        redshift_data.execute_statement(Sql="SELECT 1", SessionId=first["SessionId"])
