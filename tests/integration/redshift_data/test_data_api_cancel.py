"""CancelStatement really stops the query in PostgreSQL; the statement ends ABORTED."""

from __future__ import annotations

import time

import pytest

from tests.fixtures.redshift import wait_for_statement

pytestmark = pytest.mark.integration


def test_cancel_stops_a_running_pg_sleep(api, redshift_data, name):
    statement_id = api.submit("SELECT pg_sleep(30)", StatementName=name)
    wait_for_statement(redshift_data, statement_id, states={"STARTED"})
    began = time.monotonic()
    assert redshift_data.cancel_statement(Id=statement_id)["Status"] is True
    described = wait_for_statement(redshift_data, statement_id, timeout=5)
    assert described["Status"] == "ABORTED"
    assert time.monotonic() - began < 5, "the query kept running after CancelStatement"
    assert api.rows(
        "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'"
    ) == [[0]]


def test_cancel_rolls_back_what_the_statement_wrote(api, redshift_data, name):
    api.run(f"CREATE TABLE {name} (id int)")
    statement_id = api.submit(f"INSERT INTO {name} SELECT g FROM generate_series(1, 10) g, pg_sleep(30) s")
    wait_for_statement(redshift_data, statement_id, states={"STARTED"})
    redshift_data.cancel_statement(Id=statement_id)
    assert wait_for_statement(redshift_data, statement_id)["Status"] == "ABORTED"
    assert api.rows(f"SELECT count(*) FROM {name}") == [[0]]


def test_a_cancel_of_a_statement_waiting_for_a_worker_answers_at_once_and_nothing_runs(api, redshift_data, name):
    """Every worker busy: the cancel waited 10 s for the statement to end, then answered false, and the executor took
    that for a statement that had run to its end (found by the emulator review). It is ABORTED without running."""
    sleepers = [api.submit("SELECT pg_sleep(30)") for _ in range(8)]  # the emulator's 8 workers
    for sleeper in sleepers:
        wait_for_statement(redshift_data, sleeper, states={"STARTED"})
    waiting = api.submit(f"CREATE TABLE {name} (id int)")
    try:
        assert redshift_data.describe_statement(Id=waiting)["Status"] == "SUBMITTED"
        began = time.monotonic()
        assert redshift_data.cancel_statement(Id=waiting)["Status"] is True
        assert time.monotonic() - began < 2
    finally:
        for sleeper in sleepers:
            redshift_data.cancel_statement(Id=sleeper)
    assert wait_for_statement(redshift_data, waiting)["Status"] == "ABORTED"
    assert api.rows(f"SELECT to_regclass('{name}') IS NULL") == [[True]]


def test_cancel_of_a_finished_statement_is_a_validation_error(api, redshift_data):
    described = api.run("SELECT 1")
    with pytest.raises(redshift_data.exceptions.ValidationException, match="FINISHED"):
        redshift_data.cancel_statement(Id=described["Id"])
