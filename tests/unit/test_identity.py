"""Identity enforced in code (spectra.identity): a statement starts only as a live tenant's own identity."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from events import JobQueuedMessage, JobStatus, ResultFormat
from spectra import lifecycle
from spectra.identity import TenantIdentities, is_tenant_db_user, is_tenant_secret
from spectra.jobs import Job, new_job_id, utcnow
from spectra.lifecycle import execute_job
from spectra.queries import submit_query
from spectra.tenants import Caller
from spectra.warehouse import DatabaseIdentity
from tests.unit.fakes import CountingReads, make_ports, make_settings

pytestmark = pytest.mark.unit

SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:spectra/tenants/acme-AbCdEf"


def serverless_ports():
    return make_ports(settings=make_settings(redshift_cluster_id=None, redshift_workgroup="wg"))


def run(
    ports,
    tenant_id: str = "acme",
    *,
    db_user: str = "tenant_acme",
    sql: str = "select 1",
    generation: str | None = None,
    write_grant: list[str] | None = None,
    created_at: datetime | None = None,
) -> Job:
    """Queue a job for ``tenant_id`` and hand its message to the executor; the job as the store has it after."""
    now = created_at or utcnow()
    job = Job(
        job_id=new_job_id(),
        tenant_id=tenant_id,
        db_user=db_user,
        sql=sql,
        created_at=now,
        updated_at=now,
        tenant_generation=generation,
        write_grant=write_grant,
    )
    ports.jobs.create(job)
    # the API's own message (the job in it), its first delivery: any other message also asks the Data API (as the
    # service) for a statement an earlier attempt may have started under the job's name, to stop it
    # (spectra.lifecycle._end_unstarted)
    execute_job(ports, lifecycle.queued_message(job), first_delivery=True)
    return ports.jobs.get(job.job_id)


def assert_refused(ports, job: Job, code: str) -> None:
    assert job.status is JobStatus.FAILED
    assert job.error.code == code, job.error
    assert ports.warehouse.calls == []  # nothing reached the warehouse
    assert ports.events.types() == ["Job Failed"]


# -- the admin, or any user outside the prefix, is never used ---------------------------------------------------------


@pytest.mark.parametrize("db_user", ["awsuser", "admin", "tenant_", "TENANT_acme", "Tenant_acme", "xtenant_acme"])
def test_a_tenant_record_naming_a_user_outside_the_prefix_never_runs_as_it(db_user):
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user=db_user)
    job = run(ports, db_user=db_user)
    assert_refused(ports, job, "identity_refused")
    assert db_user not in job.error.message  # the tenant is told no more than that its identity was refused


@pytest.mark.parametrize(
    "secret_arn",
    [
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:redshift-admin-AbCdEf",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:spectra/tenants/",  # the prefix alone names nothing
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:spectra/tenantsX-AbCdEf",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:other/spectra/tenants/acme-AbCdEf",
        "arn:aws:ssm:eu-west-1:123456789012:parameter:spectra/tenants/acme",
        "spectra/tenants/acme",  # a name, not an ARN
        "arn:aws:secretsmanager:eu-west-1:123456789012:secrets:spectra/tenants/acme-AbCdEf",
    ],
)
def test_on_serverless_a_secret_outside_the_prefix_is_refused(secret_arn):
    ports = serverless_ports()
    ports.tenants.create_tenant("acme", secret_arn=secret_arn)
    assert_refused(ports, run(ports, db_user=""), "identity_refused")


def test_on_serverless_a_secret_under_the_prefix_is_used():
    ports = serverless_ports()
    ports.tenants.create_tenant("acme", secret_arn=SECRET)
    job = run(ports, db_user="")
    assert job.status is JobStatus.SUBMITTED
    assert ports.warehouse.statements[job.statement_id].identity == DatabaseIdentity(secret_arn=SECRET)


def test_the_identity_comes_from_the_tenant_record_not_from_the_job():
    """The job's db_user is what the tenant had at submission, for the record; only the tenant record counts."""
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    job = run(ports, db_user="awsuser")
    assert job.status is JobStatus.SUBMITTED
    assert ports.warehouse.statements[job.statement_id].identity == DatabaseIdentity(db_user="tenant_acme")


@pytest.mark.parametrize(
    ("serverless", "identity", "code"),
    [
        (False, {"secret_arn": SECRET}, "no_identity"),  # a cluster takes users; the executor may not read secrets
        (True, {"db_user": "tenant_acme"}, "no_identity"),  # Serverless takes secrets
    ],
)
def test_a_tenant_without_the_kind_of_identity_the_warehouse_takes_fails(serverless, identity, code):
    ports = serverless_ports() if serverless else make_ports()
    ports.tenants.create_tenant("acme", **identity)
    assert_refused(ports, run(ports, db_user=identity.get("db_user", "")), code)


def test_prefixes_follow_the_settings():
    ports = make_ports(settings=make_settings(tenant_db_user_prefix="svc_"))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.tenants.create_tenant("globex", db_user="svc_globex")
    assert_refused(ports, run(ports), "identity_refused")
    assert run(ports, "globex", db_user="svc_globex").status is JobStatus.SUBMITTED


@pytest.mark.parametrize("field", ["tenant_db_user_prefix", "tenant_secret_prefix"])
def test_an_empty_prefix_is_not_a_setting(field):
    """An empty prefix would make every user a tenant user, the admin included."""
    with pytest.raises(ValidationError):
        make_settings(**{field: ""})


def test_the_prefix_checks():
    assert is_tenant_db_user("tenant_acme", "tenant_")
    assert not is_tenant_db_user("tenant_acme", "")
    assert is_tenant_secret(SECRET, "spectra/tenants/")
    assert not is_tenant_secret(SECRET, "")


# -- inactive, deleted and re-created tenants -------------------------------------------------------------------------


def test_a_job_of_a_deactivated_tenant_is_not_started():
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.tenants.set_active("acme", False)
    assert_refused(ports, run(ports), "tenant_inactive")


def test_a_job_of_a_deleted_tenant_is_not_started():
    ports = make_ports()
    tenant = ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.tenants.delete_tenant("acme")
    assert_refused(ports, run(ports, generation=tenant.generation), "tenant_inactive")


def test_a_job_queued_by_a_tenant_that_was_deleted_and_created_again_is_not_started():
    ports = make_ports()
    old = ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.tenants.delete_tenant("acme")
    new = ports.tenants.create_tenant("acme", db_user="tenant_acme_2")  # not its predecessor's user (tenants.py)
    assert old.generation != new.generation
    assert_refused(ports, run(ports, generation=old.generation), "tenant_inactive")
    assert run(ports, db_user="tenant_acme_2", generation=new.generation).status is JobStatus.SUBMITTED


def test_a_job_from_before_generations_does_not_pass_to_a_tenant_created_again():
    """A tenant created before tenants had generations makes jobs that record none: one older than its tenant's
    record was made for a predecessor of the same id (found by mutation testing: it ran as the new tenant's database
    user). One made since runs."""
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.tenants.delete_tenant("acme")
    ports.tenants.create_tenant("acme", db_user="tenant_acme_2")
    assert_refused(ports, run(ports, created_at=utcnow() - timedelta(hours=1)), "tenant_inactive")
    assert run(ports, db_user="tenant_acme_2").status is JobStatus.SUBMITTED


def test_a_reactivated_tenant_runs_jobs_again():
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.tenants.set_active("acme", False)
    ports.tenants.set_active("acme", True)
    assert run(ports).status is JobStatus.SUBMITTED


def test_a_job_queued_before_its_tenant_was_deactivated_and_made_active_again_is_not_started():
    """How an operator stops a leaked key's work (README, "Tenancy and security"): a job the key queued that waited
    (in its tenant's line) through the deactivation ran once the tenant was active again (the lifecycle review)."""
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    queued_before = utcnow() - timedelta(minutes=2)  # past the clocks' leeway
    ports.tenants.backdate("acme", queued_before - timedelta(days=1))
    ports.tenants.set_active("acme", False)
    ports.tenants.set_active("acme", True)
    refused = run(ports, created_at=queued_before)
    assert_refused(ports, refused, "tenant_inactive")
    assert "made active again" in refused.error.message
    assert run(ports).status is JobStatus.SUBMITTED  # queued since


def test_a_tenant_record_is_trusted_for_a_few_seconds_and_never_to_refuse():
    ports = make_ports(settings=make_settings(tenant_cache_seconds=60))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    counting = CountingReads(ports.tenants)
    ports = replace(ports, tenants=counting)
    assert [run(ports).status for _ in range(3)] == [JobStatus.SUBMITTED] * 3
    assert counting.reads == 1  # one read served the cap and the identity of all three jobs

    counting.inner.set_active("acme", False)
    assert run(ports).status is JobStatus.SUBMITTED  # within the cache: documented, as the authorizer's cache
    counting.inner.set_active("acme", True)
    refused = replace(ports, settings=make_settings(tenant_cache_seconds=0))
    counting.inner.set_active("acme", False)
    assert run(refused).error.code == "tenant_inactive"
    counting.inner.set_active("acme", True)
    reads = counting.reads
    assert run(ports).status is JobStatus.SUBMITTED  # the refusal was read afresh, and so is the comeback
    assert counting.reads == reads + 1


# -- a write grant that shrank while the job waited ------------------------------------------------------------------


def writer_job(ports, sql: str) -> Job:
    """A job submitted by a tenant that may write into ``acme_work`` and ``acme_stage``."""
    tenant = ports.tenants.create_tenant(
        "acme", db_user="tenant_acme", allow_writes=True, owned_schemas=["acme_stage", "acme_work"]
    )
    job, _ = submit_query(ports, Caller.of(tenant), sql=sql, parameters=[], fmt=ResultFormat.JSON)
    return job


def start_after_grant(ports, job: Job, **grant) -> Job:
    ports.tenants.update_tenant("acme", **grant)
    execute_job(ports, lifecycle.queued_message(job), first_delivery=True)  # the API's message
    return ports.jobs.get(job.job_id)


@pytest.mark.parametrize(
    "grant",
    [{"allow_writes": False}, {"owned_schemas": ["acme_stage"]}],
    ids=["write flag taken away", "schema given up"],
)
def test_a_write_queued_before_the_grant_shrank_does_not_run(grant):
    ports = make_ports(settings=make_settings(tenant_cache_seconds=0))
    job = start_after_grant(ports, writer_job(ports, "delete from acme_work.orders"), **grant)
    assert_refused(ports, job, "sql_rejected")
    assert "write grant changed" in job.error.message


def test_what_the_shrunk_grant_still_allows_runs():
    ports = make_ports(settings=make_settings(tenant_cache_seconds=0))
    read = writer_job(ports, "select * from acme_work.orders")
    write = submit_query(
        ports,
        Caller.of(ports.tenants.get("acme")),
        sql="insert into acme_stage.orders select * from acme_work.orders",
        parameters=[],
        fmt=ResultFormat.JSON,
    )[0]
    assert start_after_grant(ports, read, allow_writes=False).status is JobStatus.SUBMITTED
    ports.tenants.update_tenant("acme", allow_writes=True)
    assert start_after_grant(ports, write, owned_schemas=["acme_stage"]).status is JobStatus.SUBMITTED


def test_a_write_is_never_refused_on_a_remembered_record():
    """The grant taken away and given back within TENANT_CACHE_SECONDS: a write submitted after it was refused for
    good on the record this executor remembered, where a record that would refuse is read again first."""
    ports = make_ports(settings=make_settings(tenant_cache_seconds=60))
    ports.tenants.create_tenant("acme", db_user="tenant_acme", allow_writes=True, owned_schemas=["acme_work"])
    ports.tenants.update_tenant("acme", allow_writes=False)
    read, _ = submit_query(
        ports, Caller.of(ports.tenants.get("acme")), sql="select 1", parameters=[], fmt=ResultFormat.JSON
    )
    execute_job(ports, JobQueuedMessage(job_id=read.job_id, tenant_id="acme"))  # remembers the record without the flag
    writer = Caller.of(ports.tenants.update_tenant("acme", allow_writes=True))
    write, _ = submit_query(ports, writer, sql="delete from acme_work.orders", parameters=[], fmt=ResultFormat.JSON)
    execute_job(ports, JobQueuedMessage(job_id=write.job_id, tenant_id="acme"))
    assert ports.jobs.get(write.job_id).status is JobStatus.SUBMITTED


def test_a_stacks_parameters_say_which_identities_its_executor_takes():
    """Asked by ``tenants create`` before anything is made (the operations review); a parameter left out has the
    template's default."""
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:spectra/tenants/acme-AbCdEf"
    cluster = TenantIdentities.of_parameters({"RedshiftClusterId": "dw", "RedshiftWorkgroup": ""})
    assert cluster == TenantIdentities(cluster=True, prefix="tenant_")
    assert cluster.problem(db_user="tenant_acme", secret_arn=None) is None
    assert "not a tenant user" in cluster.problem(db_user="awsuser", secret_arn=None)
    # the Data API signs a cluster's users in through GetClusterCredentials, whose DbUser is at most 64 characters,
    # a letter first, and no $ (the identifiers review: made, every job of theirs would fail at its start)
    assert cluster.problem(db_user="tenant_" + "u" * 57, secret_arn=None) is None
    for refused in ("tenant_" + "u" * 58, "tenant_a$b"):
        assert "GetClusterCredentials" in cluster.problem(db_user=refused, secret_arn=None)
    underscored = TenantIdentities(cluster=True, prefix="_t")
    assert "GetClusterCredentials" in underscored.problem(db_user="_tx", secret_arn=None)
    assert "(--db-user)" in cluster.problem(db_user=None, secret_arn=secret)
    serverless = TenantIdentities.of_parameters({"RedshiftWorkgroup": "wg", "TenantSecretPrefix": "t/"})
    assert serverless == TenantIdentities(cluster=False, prefix="t/")
    assert serverless.problem(db_user=None, secret_arn=secret.replace("spectra/tenants/", "t/")) is None
    assert "not a tenant secret" in serverless.problem(db_user=None, secret_arn=secret)
    assert "(--secret-arn)" in serverless.problem(db_user="tenant_acme", secret_arn=None)
    assert TenantIdentities.of_parameters({}) is None  # neither warehouse named: not asked
