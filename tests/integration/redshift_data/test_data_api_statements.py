"""ExecuteStatement / BatchExecuteStatement / DescribeStatement / ListStatements through boto3, end to end."""

from __future__ import annotations

import boto3
import pytest

from tests.fixtures.redshift import CLUSTER, DATABASE, wait_for_statement

pytestmark = pytest.mark.integration


def test_select_returns_typed_records_and_redshift_column_metadata(api, redshift_data):
    described = api.run(
        "SELECT 7::int4 AS i, 9000000000::int8 AS big, 1.5::float8 AS f, 12.34::numeric(10,2) AS n, true AS b,"
        " 'hé'::varchar(20) AS s, NULL::int AS z, '\\x0102'::bytea AS raw, '2024-01-02 03:04:05'::timestamp AS ts"
    )
    assert described["HasResultSet"] is True
    assert described["ResultRows"] == 1
    assert described["ResultSize"] > 0
    assert described["Duration"] > 0
    assert described["RedshiftPid"] > 0 and described["RedshiftQueryId"] > 0

    result = redshift_data.get_statement_result(Id=described["Id"])
    assert result["TotalNumRows"] == 1
    assert "NextToken" not in result
    assert result["Records"] == [
        [
            {"longValue": 7},
            {"longValue": 9000000000},
            {"doubleValue": 1.5},
            {"stringValue": "12.34"},
            {"booleanValue": True},
            {"stringValue": "hé"},
            {"isNull": True},
            {"blobValue": b"\x01\x02"},
            {"stringValue": "2024-01-02 03:04:05"},
        ]
    ]
    meta = {c["name"]: c for c in result["ColumnMetadata"]}
    assert [c["typeName"] for c in result["ColumnMetadata"]] == [
        "int4", "int8", "float8", "numeric", "bool", "varchar", "int4", "bytea", "timestamp",
    ]  # fmt: skip
    assert (meta["n"]["precision"], meta["n"]["scale"]) == (10, 2)
    assert meta["s"]["precision"] == 20
    assert (meta["ts"]["precision"], meta["ts"]["scale"]) == (29, 6)  # as the guide's get-statement-result shows
    assert meta["i"]["isSigned"] is True


def test_column_metadata_names_the_source_table_and_nullability(api, redshift_data, name):
    api.run(f"CREATE TABLE {name} (id int NOT NULL, note varchar(50))")
    described = api.run(f"SELECT id, note FROM {name}")
    columns = redshift_data.get_statement_result(Id=described["Id"])["ColumnMetadata"]
    assert [(c["tableName"], c["schemaName"], c["nullable"]) for c in columns] == [
        (name, "public", 0),
        (name, "public", 1),
    ]


def test_dml_reports_rows_affected_and_no_result_set(api, redshift_data, name):
    api.run(f"CREATE TABLE {name} (id int)")
    described = api.run(f"INSERT INTO {name} SELECT generate_series(1, 25)")
    assert described["HasResultSet"] is False
    assert described["ResultRows"] == 25
    with pytest.raises(redshift_data.exceptions.ValidationException, match="does not have result"):
        redshift_data.get_statement_result(Id=described["Id"])


def test_named_parameters_are_bound_and_typed_by_the_engine(api, name):
    api.run(f"CREATE TABLE {name} (id int, label varchar(60), price numeric(8,2))")
    api.run(
        f"INSERT INTO {name} VALUES (:id, :label, :price)",
        Parameters=[
            {"name": "id", "value": "3"},
            {"name": "label", "value": "it's 100% ok; DROP TABLE x --"},
            {"name": "price", "value": "9.50"},
        ],
    )
    rows = api.rows(
        f"SELECT id + 1, label, price FROM {name} WHERE id = :id AND label LIKE '%%ok%%' AND '::x' <> ':id'",
        Parameters=[{"name": "id", "value": "3"}],
    )
    assert rows == [[4, "it's 100% ok; DROP TABLE x --", "9.50"]]


def test_a_parameter_used_but_not_given_is_a_validation_error(redshift_data):
    with pytest.raises(redshift_data.exceptions.ValidationException, match=":missing"):
        redshift_data.execute_statement(
            Sql="SELECT :given, :missing",
            Database=DATABASE,
            ClusterIdentifier=CLUSTER,
            Parameters=[{"name": "given", "value": "1"}],
        )


def test_sql_error_fails_the_statement_with_the_database_message(api):
    described = api.run("SELECT * FROM no_such_table_anywhere", expect="FAILED")
    assert 'relation "no_such_table_anywhere" does not exist' in described["Error"]
    assert described["ResultRows"] == -1


def test_quoted_names_are_folded_to_lower_case_as_redshift_folds_them(api, name):
    """Redshift: "ASCII letters in standard and delimited identifiers are case-insensitive and are folded to lowercase
    in the database" ("Names and identifiers"); PostgreSQL keeps a quoted name's case, so a column "Email" came back
    Email here and email on Redshift, and "T" and t were two tables (found by the Data API review)."""
    described = api.run('SELECT 1 AS "Email", 2 AS "Ünï", 3 AS "x"')
    metadata = api.client.get_statement_result(Id=described["Id"])["ColumnMetadata"]
    assert [c["name"] for c in metadata] == ["email", "Ünï", "x"]  # ASCII letters only
    api.run(f'CREATE TABLE "{name.upper()}" ("Id" int)')
    api.run(f"INSERT INTO {name} (id) VALUES (7)")
    assert api.rows(f'SELECT "ID" FROM "{name.upper()}" WHERE \'"Q"\' = \'"Q"\'') == [[7]]  # strings keep theirs


def test_failure_midway_leaves_no_partial_writes(api, name):
    api.run(f"CREATE TABLE {name} (id int PRIMARY KEY)")
    api.run(f"INSERT INTO {name} VALUES (1), (2), (2)", expect="FAILED")
    assert api.rows(f"SELECT count(*) FROM {name}") == [[0]]


def test_statements_postgres_refuses_in_a_transaction_still_run(api, name):
    api.run(f"CREATE TABLE {name} (id int)")
    api.run(f"VACUUM {name}")


def test_statement_over_100kb_is_rejected(redshift_data):
    sql = "SELECT '" + "x" * (100 * 1024) + "'"
    with pytest.raises(redshift_data.exceptions.ValidationException, match="larger than 100kB"):
        redshift_data.execute_statement(Sql=sql, Database=DATABASE, ClusterIdentifier=CLUSTER)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({}, "exactly one of ClusterIdentifier or WorkgroupName"),
        ({"ClusterIdentifier": CLUSTER, "WorkgroupName": "wg-one"}, "exactly one of ClusterIdentifier"),
        ({"ClusterIdentifier": CLUSTER, "Database": None}, "Database is required"),
        ({"ClusterIdentifier": CLUSTER, "DbUser": "a", "SecretArn": "arn:x"}, "either DbUser or SecretArn"),
        # the service model's patterns, which botocore leaves to the service (found by the Data API review)
        ({"ClusterIdentifier": "Spectra_Local"}, "ClusterIdentifier"),
        ({"WorkgroupName": "WG_1"}, "WorkgroupName"),
    ],
)
def test_connection_parameters_are_validated(redshift_data, target, message):
    kwargs = {"Database": DATABASE, **target}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    with pytest.raises(redshift_data.exceptions.ValidationException, match=message):
        redshift_data.execute_statement(Sql="SELECT 1", **kwargs)


def test_workgroup_name_is_accepted_and_echoed(redshift_data):
    response = redshift_data.execute_statement(Sql="SELECT 1", Database=DATABASE, WorkgroupName="spectra-wg")
    assert response["WorkgroupName"] == "spectra-wg"
    described = wait_for_statement(redshift_data, response["Id"])
    assert described["Status"] == "FINISHED"
    assert described["WorkgroupName"] == "spectra-wg"


@pytest.mark.parametrize(
    "target",
    [{"ClusterIdentifier": "Bad_Id"}, {"WorkgroupName": "Bad_WG"}, {"ClusterIdentifier": "c1", "WorkgroupName": "wg1"}],
)
def test_list_statements_checks_its_cluster_and_workgroup_as_execute_statement_does(redshift_data, target):
    """The service model gives ListStatements ExecuteStatement's patterns, and one of the two at most; the emulator
    listed nothing for any of these (found by the emulator review)."""
    with pytest.raises(redshift_data.exceptions.ValidationException):
        redshift_data.list_statements(**target)


def test_unknown_statement_id_is_resource_not_found(redshift_data):
    missing = "00000000-0000-0000-0000-000000000000"
    for call in (redshift_data.describe_statement, redshift_data.get_statement_result, redshift_data.cancel_statement):
        with pytest.raises(redshift_data.exceptions.ResourceNotFoundException) as caught:
            call(Id=missing)
        assert caught.value.response["ResourceId"] == missing


def test_a_statement_past_its_retention_is_a_validation_error_saying_it_expired(api, redshift_data, redshift_emulator):
    """AWS keeps results 24 hours; after that DescribeStatement answers ValidationException "Could not retrieve the
    query result as it has expired after <epoch>." (pulumi/pulumi-aws#2055), not ResourceNotFoundException."""
    described = api.run("SELECT 1")
    assert redshift_emulator.expire_statement(described["Id"])
    for call in (redshift_data.describe_statement, redshift_data.get_statement_result):
        with pytest.raises(redshift_data.exceptions.ValidationException, match=r"has expired after \d+"):
            call(Id=described["Id"])


def test_the_runner_reads_an_expired_result_as_not_found_and_a_missing_one_as_rejected(
    api, redshift_data, redshift_emulator
):
    """What the bulk results function gives up on (a load's answers past 24 hours) must be NotFound from the real
    adapter, not only from the fake: it was StatementRejected, and the give-up waited 20 hours instead."""
    from spectra.errors import NotFound, StatementRejected
    from spectra.warehouse import StatementRunner

    runner = StatementRunner(redshift_data, database=DATABASE, cluster_id=CLUSTER)
    expired = api.run("SELECT 1")["Id"]
    assert redshift_emulator.expire_statement(expired)
    with pytest.raises(NotFound, match="expired"):
        runner.csv_result(expired)
    with pytest.raises(StatementRejected):  # a statement without a result set is still refused as such
        runner.csv_result(api.run("CREATE TEMP TABLE rv_none (a int)")["Id"])


def test_the_runner_tells_when_a_statement_was_made(api, redshift_data):
    """Completion records a statement made longer ago than any executor runs on a job still QUEUED (its executor
    died before recording it): the time comes from DescribeStatement's CreatedAt, timezone-aware."""
    from datetime import UTC, datetime, timedelta

    from spectra.warehouse import StatementRunner

    runner = StatementRunner(redshift_data, database=DATABASE, cluster_id=CLUSTER)
    before = datetime.now(UTC)
    made = runner.describe(api.run("SELECT 1")["Id"]).created_at
    assert made is not None and made.tzinfo is not None
    assert before - timedelta(seconds=5) <= made <= datetime.now(UTC) + timedelta(seconds=5)


def test_client_token_returns_the_same_statement_and_runs_it_once(api, redshift_data, name):
    api.run(f"CREATE TABLE {name} (id int)")
    token = f"token-{name}"
    first = redshift_data.execute_statement(
        Sql=f"INSERT INTO {name} VALUES (1)", Database=DATABASE, ClusterIdentifier=CLUSTER, ClientToken=token
    )
    second = redshift_data.execute_statement(
        Sql=f"INSERT INTO {name} VALUES (1)", Database=DATABASE, ClusterIdentifier=CLUSTER, ClientToken=token
    )
    assert first["Id"] == second["Id"]
    wait_for_statement(redshift_data, first["Id"])
    third = redshift_data.execute_statement(
        Sql=f"INSERT INTO {name} VALUES (1)", Database=DATABASE, ClusterIdentifier=CLUSTER, ClientToken=token
    )
    assert third["Id"] == first["Id"]
    assert api.rows(f"SELECT count(*) FROM {name}") == [[1]]


def test_batch_runs_in_order_in_one_transaction_with_sub_statements(api, redshift_data, name):
    response = redshift_data.batch_execute_statement(
        Sqls=[
            f"CREATE TABLE {name} (id int, label text)",
            f"INSERT INTO {name} VALUES (1, 'a'), (2, 'b')",
            f"SELECT id, label FROM {name} ORDER BY id",
        ],
        Database=DATABASE,
        ClusterIdentifier=CLUSTER,
        StatementName=name,
    )
    described = wait_for_statement(redshift_data, response["Id"])
    assert described["Status"] == "FINISHED"
    subs = described["SubStatements"]
    # the batch itself, as AWS's guide shows one: a result set if any statement has one, the statements' counts
    # summed, RedshiftQueryId 0 and no QueryString (each statement has its own)
    assert described["HasResultSet"] is True
    assert described["ResultRows"] == sum(max(s["ResultRows"], 0) for s in subs) == 2 + 2
    assert described["ResultSize"] == sum(max(s["ResultSize"], 0) for s in subs) > 0
    assert (described["RedshiftQueryId"], "QueryString" in described) == (0, False)
    assert [s["Id"] for s in subs] == [f"{response['Id']}:{n}" for n in (1, 2, 3)]
    assert [s["Status"] for s in subs] == ["FINISHED"] * 3
    assert [s["HasResultSet"] for s in subs] == [False, False, True]
    assert subs[1]["ResultRows"] == 2
    sub = redshift_data.describe_statement(Id=subs[2]["Id"])
    assert (sub["Id"], sub["Status"], sub["ResultRows"], sub["Database"]) == (subs[2]["Id"], "FINISHED", 2, DATABASE)
    result = redshift_data.get_statement_result(Id=subs[2]["Id"])
    assert result["Records"] == [[{"longValue": 1}, {"stringValue": "a"}], [{"longValue": 2}, {"stringValue": "b"}]]
    with pytest.raises(redshift_data.exceptions.ValidationException):
        redshift_data.get_statement_result(Id=response["Id"])


def test_batch_failure_rolls_back_every_statement(api, redshift_data, name):
    api.run(f"CREATE TABLE {name} (id int PRIMARY KEY)")
    response = redshift_data.batch_execute_statement(
        Sqls=[f"INSERT INTO {name} VALUES (1)", f"INSERT INTO {name} VALUES (1)", f"INSERT INTO {name} VALUES (3)"],
        Database=DATABASE,
        ClusterIdentifier=CLUSTER,
    )
    described = wait_for_statement(redshift_data, response["Id"])
    assert described["Status"] == "FAILED"
    assert "duplicate key" in described["Error"]
    assert [s["Status"] for s in described["SubStatements"]] == ["FINISHED", "FAILED", "ABORTED"]
    assert "duplicate key" in described["SubStatements"][1]["Error"]
    assert api.rows(f"SELECT count(*) FROM {name}") == [[0]]


def test_batch_of_more_than_40_statements_is_rejected(redshift_data):
    with pytest.raises(redshift_data.exceptions.ValidationException, match="at most 40"):
        redshift_data.batch_execute_statement(Sqls=["SELECT 1"] * 41, Database=DATABASE, ClusterIdentifier=CLUSTER)


def test_list_statements_filters_by_name_prefix_and_status_and_pages(api, redshift_data, name):
    for n in range(3):
        api.run("SELECT 1", StatementName=f"{name}-ok-{n}")
    api.run("SELECT broken", StatementName=f"{name}-bad", expect="FAILED")

    listed = redshift_data.list_statements(StatementName=name, Status="ALL")["Statements"]
    assert sorted(s["StatementName"] for s in listed) == [f"{name}-bad", *(f"{name}-ok-{n}" for n in range(3))]
    assert listed[0]["StatementName"] == f"{name}-bad"  # newest first
    # "By default, only finished statements are shown" (botocore's model): without Status, no FAILED one
    by_default = redshift_data.list_statements(StatementName=name)["Statements"]
    assert sorted(s["StatementName"] for s in by_default) == [f"{name}-ok-{n}" for n in range(3)]
    failed = redshift_data.list_statements(StatementName=name, Status="FAILED")["Statements"]
    assert [s["StatementName"] for s in failed] == [f"{name}-bad"]

    seen, token = [], None
    while True:
        page = redshift_data.list_statements(
            StatementName=f"{name}-ok", MaxResults=2, **({"NextToken": token} if token else {})
        )
        seen += [s["Id"] for s in page["Statements"]]
        assert len(page["Statements"]) <= 2
        token = page.get("NextToken")
        if not token:
            break
    assert len(seen) == len(set(seen)) == 3


def test_list_statements_with_a_forged_token_is_a_validation_error(redshift_data):
    with pytest.raises(redshift_data.exceptions.ValidationException, match="NextToken"):
        redshift_data.list_statements(NextToken="not-a-token")


def test_list_statements_role_level_false_shows_only_the_callers_statements(redshift_emulator, api, name):
    other = boto3.client(
        "redshift-data",
        endpoint_url=redshift_emulator.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="OTHERCALLER",
        aws_secret_access_key="testing",
    )
    mine = api.run("SELECT 1", StatementName=f"{name}-mine")
    theirs = wait_for_statement(
        other,
        other.execute_statement(
            Sql="SELECT 1", Database=DATABASE, ClusterIdentifier=CLUSTER, StatementName=f"{name}-theirs"
        )["Id"],
    )
    everyone = {s["Id"] for s in api.client.list_statements(StatementName=name)["Statements"]}
    assert everyone == {mine["Id"], theirs["Id"]}
    only_theirs = other.list_statements(StatementName=name, RoleLevel=False)["Statements"]
    assert [s["Id"] for s in only_theirs] == [theirs["Id"]]


def test_the_runner_finds_a_statement_by_its_whole_name_only(api, redshift_data, name):
    """StatementRunner.find, the executor's way to an attempt's unrecorded statement: the Data API lists names by
    prefix; the runner answers only the statement named exactly so, across pages, or None."""
    from spectra.warehouse import StatementRunner

    runner = StatementRunner(redshift_data, database=DATABASE, cluster_id=CLUSTER)
    wanted = api.run("SELECT 1", StatementName=name)["Id"]
    for n in range(101):  # more than a page of longer names sharing the prefix
        redshift_data.execute_statement(
            Sql="SELECT 1", Database=DATABASE, ClusterIdentifier=CLUSTER, StatementName=f"{name}{n}"
        )
    assert runner.find(name) == wanted
    assert runner.find(f"{name}-never") is None


def test_the_runner_reports_who_a_statement_runs_as_and_a_repeated_token_answers_the_first(api, redshift_data, name):
    """What spectra.sessions checks before pooling a session: a repeated ClientToken answers the first attempt's
    statement, its session and its user, whatever the repeat asked for (a tenant moved to another user meanwhile)."""
    from spectra.warehouse import DatabaseIdentity, StatementRunner

    old, new = f"{name}_old", f"{name}_new"
    api.run(f"CREATE USER {old}")
    api.run(f"CREATE USER {new}")
    runner = StatementRunner(redshift_data, database=DATABASE, cluster_id=CLUSTER)
    asked = {"name": name, "client_token": f"token-{name}", "keep_alive_seconds": 60}
    first = runner.start("SELECT 1", identity=DatabaseIdentity(db_user=old), **asked)
    repeat = runner.start("SELECT 1", identity=DatabaseIdentity(db_user=new), **asked)
    assert first.identity == DatabaseIdentity(db_user=old) and first.session_id
    assert (repeat.statement_id, repeat.session_id, repeat.identity) == (
        first.statement_id,
        first.session_id,
        first.identity,
    )


@pytest.mark.parametrize(
    ("sql", "parameters", "expected"),
    [
        ("SELECT datediff(day, :d, '2024-01-10'::date)", [{"name": "d", "value": "2024-01-01"}], [[9]]),
        ("SELECT decode(:x, '1', 'one', 'other')", [{"name": "x", "value": "1"}], [["one"]]),
        (  # how Spectra sends a typed integer (a CAST) beside a function the emulator translates
            "SELECT CAST(:n AS BIGINT) + datediff(day, '2024-01-01'::date, '2024-01-10'::date)",
            [{"name": "n", "value": "1"}],
            [[10]],
        ),
        ("SELECT g FROM generate_series(1, 10) AS g ORDER BY g LIMIT:n", [{"name": "n", "value": "2"}], [[1], [2]]),
        # tested for NULL only, a parameter sent as text has no type PostgreSQL can tell (found by the diff review)
        ("SELECT nvl2(:x, 'set', 'unset')", [{"name": "x", "value": "a"}], [["set"]]),
        ("SELECT decode(:x, NULL, 'null', 'other')", [{"name": "x", "value": "a"}], [["other"]]),
    ],
)
def test_parameters_survive_the_emulators_translation(api, sql, parameters, expected):
    """Found by the parameters review: a statement using DATEDIFF, DATEADD, DECODE, NVL2 or CHARINDEX lost every
    parameter in the emulator's translation (sqlglot wrote :x as %(x)s), and LIMIT:n became LIMIT$1."""
    assert api.rows(sql, Parameters=parameters) == expected
