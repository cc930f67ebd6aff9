"""One scenario suite, two warehouses: the in-memory :class:`FakeWarehouse` the unit tier uses and the real
:class:`~spectra.warehouse.StatementRunner` on the Data API emulator (a real PostgreSQL behind boto3).

The fake's outcomes are scripted (a test says how a statement ends), so what is checked here is what the fake decides
for itself: how a statement looks while it runs and once it ended, a repeated ClientToken, a statement without a
result set, cancels, unknown ids, sessions, a batch that fails part-way, the catalog and the lookup by name. If a
scenario passes on the emulator and fails on the fake, the fake has drifted and the unit tests built on it prove less
than they claim.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from spectra.errors import NotFound, StatementRejected
from spectra.warehouse import Column, DatabaseIdentity, Started, StatementRunner
from tests.fixtures.redshift import CLUSTER, DATABASE, DataApi, wait_for_statement
from tests.unit.fakes import FakeWarehouse

pytestmark = pytest.mark.integration

ENDED = {"FINISHED", "FAILED", "ABORTED"}


@dataclass
class Warehouse:
    """The port under test and how a scenario's statements end on it: the emulator runs them, the fake is told."""

    runner: Any
    identity: DatabaseIdentity
    fake: FakeWarehouse | None = None
    api: DataApi | None = None

    def settle(self, statement_id: str, *, finish: dict | None = None, error: str | None = None) -> None:
        """Wait for the statement to end (emulator), or end it as the scenario says the engine would (fake):
        ``finish`` as :meth:`FakeWarehouse.finish`'s arguments, ``error`` to fail it."""
        if self.fake is None:
            wait_for_statement(self.api.client, statement_id)
        elif error is not None:
            self.fake.fail(statement_id, error)
        else:
            self.fake.finish(statement_id, **(finish or {}))

    def run(self, sql: str, **outcome) -> str:
        statement_id = self.runner.execute(
            sql, identity=self.identity, name=_name(), client_token=str(uuid.uuid4()), with_event=False
        )
        self.settle(statement_id, **outcome)
        return statement_id

    def eventually(self, statement_id: str, status: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while (found := self.runner.describe(statement_id).status) != status:
            assert time.monotonic() < deadline, f"{statement_id} still {found}, wanted {status}"
            time.sleep(0.05)


def _name() -> str:
    return "contract_" + uuid.uuid4().hex[:12]


@pytest.fixture(params=["fake", "emulator"])
def warehouse(request) -> Warehouse:
    if request.param == "fake":
        fake = FakeWarehouse()
        return Warehouse(runner=fake, identity=DatabaseIdentity(db_user="awsuser"), fake=fake)
    client = request.getfixturevalue("redshift_data")
    runner = StatementRunner(client, database=DATABASE, cluster_id=CLUSTER)
    return Warehouse(runner=runner, identity=DatabaseIdentity(db_user="awsuser"), api=DataApi(client))


# -- one statement ---------------------------------------------------------------------------------------------------


def test_a_finished_query_has_its_rows_columns_and_pages(warehouse):
    statement_id = warehouse.run(
        "SELECT n AS a FROM (VALUES (1), (2)) AS v(n) ORDER BY n",
        finish={"columns": [Column("a", "int4")], "pages": ["1\n2\n"], "rows": 2},
    )
    info = warehouse.runner.describe(statement_id)
    assert (info.statement_id, info.status, info.error) == (statement_id, "FINISHED", None)
    assert info.has_result_set and info.result_rows == 2
    assert isinstance(info.created_at, datetime) and info.created_at.tzinfo is not None
    result = warehouse.runner.open_result(statement_id)
    assert [column.name for column in result.columns] == ["a"]
    assert result.total_rows == 2
    assert "".join(result.pages) == "1\n2\n"


def test_a_statement_without_a_result_set_refuses_its_result(warehouse):
    table = _name()
    statement_id = warehouse.run(f"CREATE TABLE {table} (a int)", finish={})
    info = warehouse.runner.describe(statement_id)
    assert info.status == "FINISHED" and not info.has_result_set
    with pytest.raises((StatementRejected, NotFound)):
        warehouse.runner.open_result(statement_id)


def test_a_write_counts_the_rows_it_touched(warehouse):
    table = _name()
    warehouse.run(f"CREATE TABLE {table} (a int)", finish={})
    statement_id = warehouse.run(f"INSERT INTO {table} VALUES (1), (2), (3)", finish={"rows": 3})
    info = warehouse.runner.describe(statement_id)
    assert (info.status, info.result_rows, info.has_result_set) == ("FINISHED", 3, False)


def test_a_failed_statement_says_why(warehouse):
    error = 'ERROR: relation "nowhere" does not exist'
    statement_id = warehouse.run("SELECT * FROM nowhere", error=error)
    info = warehouse.runner.describe(statement_id)
    assert info.status == "FAILED"
    assert 'relation "nowhere" does not exist' in info.error
    with pytest.raises((StatementRejected, NotFound)):
        warehouse.runner.open_result(statement_id)


def test_a_running_statement_has_no_rows_yet_and_refuses_its_result(warehouse):
    statement_id = warehouse.runner.execute(
        "SELECT pg_sleep(5)", identity=warehouse.identity, name=_name(), client_token=str(uuid.uuid4())
    )
    info = warehouse.runner.describe(statement_id)
    assert info.status not in ENDED
    assert info.result_rows is None or info.result_rows == -1
    with pytest.raises((StatementRejected, NotFound)):
        warehouse.runner.open_result(statement_id)
    assert warehouse.runner.cancel(statement_id) is True
    warehouse.eventually(statement_id, "ABORTED")


# -- ClientToken -----------------------------------------------------------------------------------------------------


def test_a_repeated_client_token_answers_the_first_statement(warehouse):
    token, name = str(uuid.uuid4()), _name()
    first = warehouse.runner.execute("SELECT 1", identity=warehouse.identity, name=name, client_token=token)
    again = warehouse.runner.execute("SELECT 1", identity=warehouse.identity, name=name, client_token=token)
    assert again == first
    other = warehouse.runner.execute("SELECT 1", identity=warehouse.identity, name=name, client_token=str(uuid.uuid4()))
    assert other != first


# -- cancels and unknown ids -----------------------------------------------------------------------------------------


def test_an_ended_statement_is_not_cancelled(warehouse):
    statement_id = warehouse.run("SELECT 1", finish={"columns": [Column("?column?", "int4")], "pages": ["1\n"]})
    assert warehouse.runner.cancel(statement_id) is False
    assert warehouse.runner.describe(statement_id).status == "FINISHED"


def test_an_unknown_statement_is_not_found_and_not_cancelled(warehouse):
    unknown = str(uuid.uuid4())
    with pytest.raises(NotFound):
        warehouse.runner.describe(unknown)
    with pytest.raises(NotFound):
        warehouse.runner.open_result(unknown)
    assert warehouse.runner.cancel(unknown) is False


# -- sessions --------------------------------------------------------------------------------------------------------


def _start(warehouse: Warehouse, sql: str, **session) -> Started:
    """A statement started in a session: ``keep_alive_seconds`` opens one, ``session_id`` names one."""
    identity = session.pop("identity", warehouse.identity)
    return warehouse.runner.start(sql, identity=identity, name=_name(), client_token=str(uuid.uuid4()), **session)


def test_a_session_runs_one_statement_at_a_time_as_the_identity_that_opened_it(warehouse):
    opened = _start(warehouse, "SELECT pg_sleep(2)", keep_alive_seconds=60)
    assert opened.session_id
    assert opened.identity == warehouse.identity  # the answer names the user the request named
    with pytest.raises(StatementRejected):
        _start(warehouse, "SELECT 2", session_id=opened.session_id)
    warehouse.settle(opened.statement_id, finish={"columns": [Column("pg_sleep", "void")], "pages": ["\n"]})
    someone_else = DatabaseIdentity(db_user="someone_else")
    second = _start(warehouse, "SELECT 2", identity=someone_else, session_id=opened.session_id)
    assert second.session_id == opened.session_id
    # the session's identity, not the request's: the fake's answer names none (as AWS's request named none), the
    # emulator's names the session's user; spectra.sessions._runs_as takes either as it must
    assert second.identity in (None, warehouse.identity)


def test_an_unknown_session_is_refused(warehouse):
    with pytest.raises(StatementRejected):
        _start(warehouse, "SELECT 1", session_id=str(uuid.uuid4()))


# -- batches ---------------------------------------------------------------------------------------------------------


def test_a_batch_failing_part_way_says_which_statement_failed_and_ran_none_after_it(warehouse):
    table = _name()
    sqls = [f"CREATE TABLE {table} (a int)", f"INSERT INTO {table} VALUES (1)", "SELECT * FROM nowhere", "SELECT 1"]
    statement_id = warehouse.runner.execute_batch(
        sqls, identity=warehouse.identity, name=_name(), client_token=str(uuid.uuid4()), with_event=False
    )
    if warehouse.fake is not None:
        warehouse.fake.fail_batch(statement_id, 'ERROR: relation "nowhere" does not exist', at=2)
    else:
        wait_for_statement(warehouse.api.client, statement_id)
    info = warehouse.runner.describe(statement_id)
    assert info.status == "FAILED" and "nowhere" in info.error
    assert [sub.statement_id for sub in info.sub_statements] == [f"{statement_id}:{n}" for n in range(1, 5)]
    assert [sub.status for sub in info.sub_statements] == ["FINISHED", "FINISHED", "FAILED", "ABORTED"]
    assert "nowhere" in info.sub_statements[2].error


def test_a_repeated_batch_token_answers_the_first_batch(warehouse):
    token, name = str(uuid.uuid4()), _name()
    sqls = ["SELECT 1", "SELECT 2"]
    first = warehouse.runner.execute_batch(sqls, identity=warehouse.identity, name=name, client_token=token)
    assert warehouse.runner.execute_batch(sqls, identity=warehouse.identity, name=name, client_token=token) == first


# -- catalog and lookup by name --------------------------------------------------------------------------------------


def test_describe_table_lists_the_tables_own_columns_and_none_for_an_unknown_table(warehouse):
    table = _name()
    if warehouse.fake is not None:
        warehouse.fake.add_table("public", table, ["id", "note"], required=["id"], types={"id": "int4"})
    else:
        warehouse.run(f"CREATE TABLE {table} (id int NOT NULL, note varchar(20))")
        warehouse.run(f"CREATE TABLE {table}_x (other int)")  # a name the target's is a pattern of must not join in
    columns = warehouse.runner.describe_table("public", table, identity=warehouse.identity)
    assert [(c["name"], c["typeName"], c["nullable"]) for c in columns] == [("id", "int4", 0), ("note", "varchar", 1)]
    assert warehouse.runner.describe_table("public", _name(), identity=warehouse.identity) is None


def test_find_answers_the_latest_statement_of_exactly_that_name(warehouse):
    name = _name()
    assert warehouse.runner.find(name) is None

    def start(sql: str, under: str) -> str:
        return warehouse.runner.execute(sql, identity=warehouse.identity, name=under, client_token=str(uuid.uuid4()))

    first = start("SELECT 1", name)
    latest = start("SELECT 2", name)
    start("SELECT 3", name + "x")  # the Data API matches names by prefix: this one is not the name's
    assert first != latest
    assert warehouse.runner.find(name) == latest
