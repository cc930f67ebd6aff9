"""Identity enforced in code (spectra.identity), the behaviour mutation testing found no test held: the clocks' leeway
of a reactivation, which records are read again before a refusal (and which are not), the write grant's second look
only when the grant shrank, the operator's log of a refused identity, and the stack parameters' prefixes."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

import pytest

from events import JobStatus, ResultFormat
from spectra import identity, lifecycle
from spectra.bulk.files import CLOCK_LEEWAY
from spectra.identity import TenantIdentities, before_reactivation, check_write_grant, is_tenant_secret
from spectra.jobs import Job, utcnow
from spectra.lifecycle import execute_job
from spectra.queries import submit_query
from spectra.tenants import Caller, Tenant
from spectra.warehouse import DatabaseIdentity
from tests.unit.fakes import CountingReads, make_ports, make_settings
from tests.unit.test_identity import run

pytestmark = pytest.mark.unit

SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:spectra/tenants/acme-AbCdEf"


def submitted(ports, sql: str) -> Job:
    job, _ = submit_query(ports, Caller.of(ports.tenants.get("acme")), sql=sql, parameters=[], fmt=ResultFormat.JSON)
    return job


def start_queued(ports, job: Job) -> Job:
    execute_job(ports, lifecycle.queued_message(job), first_delivery=True)  # the API's message
    return ports.jobs.get(job.job_id)


def reactivated(at) -> Tenant:
    return Tenant.new("acme", db_user="tenant_acme").model_copy(update={"activated_at": at})


# -- a reactivation, within the clocks' leeway ------------------------------------------------------------------------


def test_before_reactivation_allows_the_clocks_leeway_and_no_more():
    since = utcnow()
    tenant = reactivated(since)
    assert not before_reactivation(since - CLOCK_LEEWAY, tenant)  # at the edge of the leeway: the tenant's
    assert before_reactivation(since - CLOCK_LEEWAY - timedelta(microseconds=1), tenant)


def test_before_reactivation_is_false_without_a_moment_or_a_reactivation():
    assert not before_reactivation(None, reactivated(utcnow()))  # a drop event without its time
    assert not before_reactivation(utcnow() - timedelta(days=1), reactivated(None))  # never reactivated


def test_a_job_queued_within_the_leeway_before_a_reactivation_runs():
    """Its clock and the reactivating operator's may disagree by that much: it is not taken for a leaked key's work."""
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.tenants.set_active("acme", False)
    ports.tenants.set_active("acme", True)
    assert run(ports, created_at=utcnow() - CLOCK_LEEWAY + timedelta(seconds=5)).status is JobStatus.SUBMITTED


# -- a remembered record serves a job that runs; one that would refuse is read again -----------------------------------


def counted(ports) -> tuple:
    counting = CountingReads(ports.tenants)
    return replace(ports, tenants=counting), counting


@pytest.mark.parametrize(
    "kind",
    ["stamped with its tenant's generation", "a write its tenant may still make"],
)
def test_jobs_that_run_are_served_by_one_remembered_read(kind):
    ports = make_ports(settings=make_settings(tenant_cache_seconds=60))
    tenant = ports.tenants.create_tenant(
        "acme", db_user="tenant_acme", allow_writes=True, owned_schemas=["acme_stage", "acme_work"]
    )
    ports, counting = counted(ports)
    job = (
        {"generation": tenant.generation}
        if kind.startswith("stamped")
        else {"sql": "delete from acme_work.orders", "write_grant": ["acme_work"]}
    )
    assert [run(ports, **job).status for _ in range(3)] == [JobStatus.SUBMITTED] * 3
    assert counting.reads == 1


def test_a_tenant_created_again_within_the_cache_runs_its_own_jobs_at_once():
    """The remembered record is its predecessor's (another generation): read again, not refused on."""
    ports = make_ports(settings=make_settings(tenant_cache_seconds=60))
    old = ports.tenants.create_tenant("acme", db_user="tenant_acme")
    assert run(ports, generation=old.generation).status is JobStatus.SUBMITTED  # the old record remembered
    ports.tenants.delete_tenant("acme")
    new = ports.tenants.create_tenant("acme", db_user="tenant_acme_2")
    job = run(ports, generation=new.generation)
    assert job.status is JobStatus.SUBMITTED
    assert ports.warehouse.statements[job.statement_id].identity == DatabaseIdentity(db_user="tenant_acme_2")


def test_a_job_queued_before_a_reactivation_is_refused_on_a_record_read_afresh():
    ports = make_ports(settings=make_settings(tenant_cache_seconds=60))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.tenants.set_active("acme", False)
    ports.tenants.set_active("acme", True)
    ports, counting = counted(ports)
    assert run(ports).status is JobStatus.SUBMITTED
    reads = counting.reads
    refused = run(ports, created_at=utcnow() - timedelta(minutes=2))
    assert refused.error.code == "tenant_inactive"
    assert counting.reads == reads + 1  # never refused on the remembered record


# -- the write grant: looked at again only when it shrank ------------------------------------------------------------


@pytest.fixture
def writer():
    ports = make_ports(settings=make_settings(tenant_cache_seconds=0))
    ports.tenants.create_tenant("acme", db_user="tenant_acme", allow_writes=True, owned_schemas=["acme_work"])
    return ports


@pytest.mark.parametrize("grant", [{}, {"owned_schemas": ["acme_stage", "acme_work"]}], ids=["unchanged", "wider"])
def test_a_write_whose_grant_did_not_shrink_is_not_checked_again(writer, monkeypatch, grant):
    job = submitted(writer, "delete from acme_work.orders")
    asked = []
    monkeypatch.setattr(identity, "check_sql", lambda sql, **grant: asked.append(sql))
    writer.tenants.update_tenant("acme", **grant)
    assert start_queued(writer, job).status is JobStatus.SUBMITTED
    assert asked == []


def test_a_read_submitted_without_the_write_flag_runs_once_the_tenant_may_write():
    ports = make_ports(settings=make_settings(tenant_cache_seconds=0))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    read = submitted(ports, "select * from acme_work.orders")
    assert read.write_grant is None
    ports.tenants.update_tenant("acme", allow_writes=True, owned_schemas=["acme_work"])
    assert start_queued(ports, read).status is JobStatus.SUBMITTED


def test_the_write_grant_check_leaves_a_deleted_tenant_to_identity_for(writer):
    """A tenant gone between the two reads is not a write refused: its refusal is identity_for's (tenant_inactive)."""
    job = submitted(writer, "delete from acme_work.orders")
    writer.tenants.delete_tenant("acme")
    assert check_write_grant(writer, job) is None


# -- the operator's log names what was refused -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "identity_", "named"),
    [
        ({}, {"db_user": "awsuser"}, "'awsuser'"),
        (
            {"redshift_cluster_id": None, "redshift_workgroup": "wg"},
            {"secret_arn": SECRET.replace("spectra/tenants/", "admin/")},
            "admin/acme-AbCdEf",
        ),
    ],
    ids=["database user", "secret"],
)
def test_a_refused_identity_is_named_in_the_operators_log(caplog, settings, identity_, named):
    ports = make_ports(settings=make_settings(**settings))
    ports.tenants.create_tenant("acme", **identity_)
    with caplog.at_level(logging.ERROR, logger="spectra.identity"):
        job = run(ports)
    assert job.error.code == "identity_refused"
    assert named not in job.error.message  # the tenant hears less than the operator
    logged = [r.getMessage() for r in caplog.records if r.name == "spectra.identity" and r.levelno == logging.ERROR]
    assert len(logged) == 1 and named in logged[0] and "acme" in logged[0]


# -- what is and is not a tenant secret's ARN ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret_arn",
    [
        "arn:aws:secretsmanager:spectra/tenants/acme-AbCdEf",  # too few parts
        "arm:aws:secretsmanager:eu-west-1:123456789012:secret:spectra/tenants/acme-AbCdEf",  # not an ARN
        "arn:aws:rds:eu-west-1:123456789012:secret:spectra/tenants/acme-AbCdEf",  # another service's
    ],
)
def test_what_is_not_a_secrets_manager_secret_arn_is_refused(secret_arn):
    assert is_tenant_secret(secret_arn, "spectra/tenants/") is False
    ports = make_ports(settings=make_settings(redshift_cluster_id=None, redshift_workgroup="wg"))
    ports.tenants.create_tenant("acme", secret_arn=secret_arn)
    job = run(ports)
    assert (job.status, job.error.code) == (JobStatus.FAILED, "identity_refused")
    assert ports.warehouse.calls == []


# -- the stack's parameters --------------------------------------------------------------------------------------------


def test_a_stacks_prefix_parameter_or_its_default_is_the_rule_of_its_kind_of_warehouse():
    cluster = {"RedshiftClusterId": "dw"}
    serverless = {"RedshiftWorkgroup": "wg"}
    prefixes = {"TenantDbUserPrefix": "svc_", "TenantSecretPrefix": "t/"}
    assert TenantIdentities.of_parameters({**cluster, **prefixes}) == TenantIdentities(cluster=True, prefix="svc_")
    assert TenantIdentities.of_parameters(serverless) == TenantIdentities(cluster=False, prefix="spectra/tenants/")
    assert TenantIdentities.of_parameters({**serverless, "TenantDbUserPrefix": "svc_"}).prefix == "spectra/tenants/"
    assert TenantIdentities.of_parameters({**cluster, "TenantSecretPrefix": "t/"}).prefix == "tenant_"


def test_a_cluster_user_may_begin_with_a_capital_letter():
    assert TenantIdentities(cluster=True, prefix="Svc_").problem(db_user="Svc_acme", secret_arn=None) is None
