"""Database identity: DbUser logs in as that role (RLS applies), SecretArn reads the user from Secrets Manager."""

from __future__ import annotations

import json

import pytest

from spectra.share import statement_timeout_sql
from tests.fixtures.redshift import CLUSTER, DATABASE, wait_for_statement

pytestmark = pytest.mark.integration


@pytest.fixture
def rls_table(api, name):
    """A table with one row per tenant user and a policy that shows each user only its own rows."""
    alice, bob = f"{name}_alice", f"{name}_bob"
    table = f"{name}_orders"
    for statement in (
        f"CREATE USER {alice}",
        f"CREATE USER {bob}",
        f"CREATE TABLE {table} (owner text, amount int)",
        f"INSERT INTO {table} VALUES ('{alice}', 1), ('{alice}', 2), ('{bob}', 30)",
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"CREATE POLICY own_rows ON {table} USING (owner = current_user)",
        f"GRANT SELECT ON {table} TO {alice}, {bob}",
    ):
        api.run(statement)
    return table, alice, bob


def test_each_db_user_sees_only_its_rows_under_row_level_security(api, rls_table):
    table, alice, bob = rls_table
    assert api.rows(f"SELECT owner, amount FROM {table} ORDER BY amount", DbUser=alice) == [[alice, 1], [alice, 2]]
    assert api.rows(f"SELECT owner, amount FROM {table} ORDER BY amount", DbUser=bob) == [[bob, 30]]
    assert api.rows(f"SELECT count(*) FROM {table}") == [[3]]  # the admin (superuser) sees everything


def test_a_db_user_cannot_switch_back_to_a_privileged_role(api, rls_table):
    _, alice, _ = rls_table
    described = api.run("SET ROLE awsuser", DbUser=alice, expect="FAILED")
    assert "permission denied" in described["Error"]
    described = api.run("SET SESSION AUTHORIZATION awsuser", DbUser=alice, expect="FAILED")
    assert "permission denied" in described["Error"]
    assert api.rows("SELECT current_user, session_user", DbUser=alice) == [[alice, alice]]


def test_an_unknown_db_user_fails_the_statement(api, name):
    described = api.run("SELECT 1", DbUser=f"{name}_nobody", expect="FAILED")
    assert f'"{name}_nobody" does not exist' in described["Error"]


def test_secret_arn_runs_as_the_user_in_the_secret(api, local_aws, name):
    user = f"{name}_svc"
    api.run(f"CREATE USER {user} PASSWORD 'Sup3r-secret'")
    secrets = local_aws.client("secretsmanager")
    arn = secrets.create_secret(
        Name=f"redshift/{name}", SecretString=json.dumps({"username": user, "password": "Sup3r-secret"})
    )["ARN"]
    described = api.run("SELECT current_user", SecretArn=arn, WorkgroupName="spectra-wg")
    assert described["SecretArn"] == arn
    assert api.client.get_statement_result(Id=described["Id"])["Records"] == [[{"stringValue": user}]]


def test_an_unknown_secret_is_a_validation_error(redshift_data):
    with pytest.raises(redshift_data.exceptions.ValidationException, match="secret"):
        redshift_data.execute_statement(
            Sql="SELECT 1",
            Database=DATABASE,
            ClusterIdentifier=CLUSTER,
            SecretArn="arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf",
        )


def test_statements_run_without_db_user_or_secret_run_as_the_admin(api):
    assert api.rows("SELECT current_user") == [["awsuser"]]
    described = wait_for_statement(api.client, api.submit("SELECT 1"))
    assert "DbUser" not in described


def test_settings_of_the_db_user_apply_to_its_statements(api, name):
    """A per-user statement_timeout (how each tenant's is set, spectra.share.statement_timeout_sql) holds for the
    statements the emulator runs as that user, and not for anyone else's."""
    user = f"{name}_slow"
    api.run(f"CREATE USER {user}")
    api.run(statement_timeout_sql(user, 200))
    assert api.rows("SHOW statement_timeout", DbUser=user) == [["200ms"]]
    failed = api.run("SELECT pg_sleep(5)", expect="FAILED", DbUser=user)
    assert "canceling statement due to statement timeout" in failed["Error"]
    assert api.rows("SELECT 1 FROM pg_sleep(0.3)") == [[1]]  # the admin has no such limit
