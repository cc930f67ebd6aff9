"""Identity on the whole stack: who may call, and as whom a job runs.

- Revoking a key, deactivating or deleting a tenant is refused at the API within the authorizer cache
  (``AuthorizerCacheSeconds``; the session stack uses a short one, the template allows 60 s at most).
- Queued jobs of a deactivated, deleted or re-created tenant fail ``tenant_inactive``; no statement starts.
- A tenant record naming the admin (or any user outside the tenant prefix) never runs as it.
- JWT bearer tokens from the test's identity provider reach the API as their tenant; bad ones are 401.
"""

from __future__ import annotations

import time

import pytest

from events import JobQueuedMessage
from local.demo import ADMIN_USER
from spectra import tenant_cache
from spectra.errors import Conflict
from spectra.ports import get_ports
from tests.fixtures.stack import AUTHORIZER_CACHE_SECONDS, ApiClient, record_job, usage_key, wait_until

pytestmark = pytest.mark.e2e

# Polling adds up to a quarter second and a request's own time: the bound asserted is the cache plus this.
MARGIN_SECONDS = 1.5


def assert_refused_within_the_cache(client: ApiClient, since: float) -> None:
    """The API refuses the client's credential, at the latest one authorizer cache lifetime after ``since``."""
    [refused] = wait_until(  # a list: a 401 Response is itself falsy
        lambda: [r] if (r := client.request("GET", "/v1/jobs")).status_code == 401 else None,
        AUTHORIZER_CACHE_SECONDS + MARGIN_SECONDS,
        "the credential to be refused",
    )
    assert time.monotonic() - since <= AUTHORIZER_CACHE_SECONDS + MARGIN_SECONDS
    assert refused.json()["error"]["code"] == "unauthorized"


def run_recorded_job(job) -> dict:
    """Hand a job recorded earlier to the executor through the real jobs queue; its final state."""
    ports = get_ports()
    ports.queue.send(JobQueuedMessage(job_id=job.job_id, tenant_id=job.tenant_id))
    done = wait_until(lambda: (j := ports.jobs.get(job.job_id)).status.is_terminal and j, 30, "the job to end")
    return done.model_dump(mode="json")


def statements_of(redshift_data, job_id: str) -> list:
    return redshift_data.list_statements(StatementName=job_id, RoleLevel=False, Status="ALL")["Statements"]


def assert_not_run(redshift_data, job: dict, code: str) -> None:
    assert job["status"] == "FAILED", job
    assert job["error"]["code"] == code, job["error"]
    assert statements_of(redshift_data, job["job_id"]) == []


# -- revocation and deactivation --------------------------------------------------------------------------------------


def test_a_revoked_key_is_refused_within_the_authorizer_cache(new_tenant):
    client = new_tenant()
    assert client.request("GET", "/v1/jobs").status_code == 200  # its answer is now cached
    get_ports().tenants.revoke_key(client.api_key)
    assert_refused_within_the_cache(client, time.monotonic())


def test_a_deactivated_tenant_is_refused_and_its_queued_jobs_do_not_start(new_tenant, redshift_data):
    client = new_tenant()
    ports = get_ports()
    queued = record_job(ports, client.tenant_id, "select 1")
    assert client.request("GET", "/v1/jobs").status_code == 200
    ports.tenants.set_active(client.tenant_id, False)
    # refused first: the bound runs from here, and a job run in between would count against it
    assert_refused_within_the_cache(client, time.monotonic())
    assert_not_run(redshift_data, run_recorded_job(queued), "tenant_inactive")

    ports.tenants.set_active(client.tenant_id, True)
    assert client.wait(client.submit("select 1 as one")["job_id"])["status"] == "COMPLETED"


def test_a_deleted_tenant_takes_its_keys_and_queued_jobs_along_even_when_its_id_comes_back(
    new_tenant, redshift_data, warehouse
):
    client = new_tenant()
    ports = get_ports()
    queued, queued_too = (
        record_job(ports, client.tenant_id, "select 1"),
        record_job(ports, client.tenant_id, "select 2"),
    )
    # jobs submitted through the API carry the generation the authorizer vouched for, as these recorded ones do
    submitted = client.submit("select 1")
    assert ports.jobs.get(submitted["job_id"]).tenant_generation == ports.tenants.get(client.tenant_id).generation
    assert ports.tenants.delete_tenant(client.tenant_id)
    assert_refused_within_the_cache(client, time.monotonic())  # first, as above
    # The executor ran this tenant's job a moment ago and may trust that record for TENANT_CACHE_SECONDS (5 s; the
    # bound is tested in tests/unit/test_identity.py): as if that time had passed.
    tenant_cache.forget(ports.tenants, client.tenant_id)
    assert_not_run(redshift_data, run_recorded_job(queued), "tenant_inactive")

    # The same id: a new tenant, which neither the old key nor the old job speaks for. Not under the old database
    # user, whose rows and schemas are its predecessor's (spectra/tenants.py): under a new one.
    with pytest.raises(Conflict, match="was given to tenant"):
        ports.tenants.create_tenant(client.tenant_id, db_user=client.db_user, usage_key=usage_key(client.tenant_id))
    new_user = f"{client.db_user}_2"
    warehouse.run(f'CREATE USER "{new_user}"')
    ports.tenants.create_tenant(client.tenant_id, db_user=new_user, usage_key=usage_key(client.tenant_id))
    assert client.request("GET", "/v1/jobs").status_code == 401
    assert_not_run(redshift_data, run_recorded_job(queued_too), "tenant_inactive")
    reborn = ApiClient(client.base_url, ports.tenants.issue_key(client.tenant_id), client.tenant_id, new_user)
    assert reborn.wait(reborn.submit("select 1 as one")["job_id"])["status"] == "COMPLETED"


# -- the admin identity ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("db_user", [ADMIN_USER, "analyst"])
def test_a_tenant_record_naming_a_user_outside_the_prefix_never_runs_as_it(
    spectra_stack, warehouse, redshift_data, unique_name, db_user
):
    """On AWS, IAM would refuse the executor credentials for such a user; here nothing would, so the code must."""
    if db_user != ADMIN_USER:
        db_user = f"{db_user}_{unique_name}"
        warehouse.run(f'CREATE USER "{db_user}"')  # a real, loginable user: only the prefix check stands in the way
    ports = get_ports()
    ports.tenants.create_tenant(unique_name, db_user=db_user, usage_key=usage_key(unique_name))
    client = ApiClient(spectra_stack.api_url, ports.tenants.issue_key(unique_name), unique_name, db_user)
    job = client.wait(client.submit("select current_user")["job_id"])
    assert_not_run(redshift_data, job, "identity_refused")
    assert db_user not in job["error"]["message"]


# -- JWT bearer tokens ------------------------------------------------------------------------------------------------


def test_a_jwt_reaches_the_api_as_its_tenant(new_tenant, identity_provider):
    tenant = new_tenant()
    for kid in ("rsa-1", "ec-1"):
        client = ApiClient(tenant.base_url, identity_provider.token(tenant.tenant_id, kid=kid), tenant.tenant_id, "")
        job = client.wait(client.submit("select current_user as me")["job_id"])
        assert job["status"] == "COMPLETED", job
        rows = client.request("GET", f"/v1/jobs/{job['job_id']}/results").json()["rows"]
        assert rows == [[tenant.db_user]]
        # the same tenant's API key sees the job: one tenant, two ways in
        assert tenant.job(job["job_id"])["job_id"] == job["job_id"]


def test_bad_jwts_are_refused_with_one_answer(new_tenant, identity_provider):
    tenant = new_tenant()
    now = int(time.time())
    bad = {
        "expired": identity_provider.token(tenant.tenant_id, exp=now - 3600),
        "not yet valid": identity_provider.token(tenant.tenant_id, nbf=now + 3600),
        "unknown kid": identity_provider.token(
            tenant.tenant_id, kid="rsa-2", alg="RS256", key=identity_provider.keys["rsa-1"]
        ),
        "another audience": identity_provider.token(tenant.tenant_id, aud="another-api"),
        "unknown tenant": identity_provider.token(tenant.tenant_id + "x"),
    }
    bodies = set()
    for what, token in bad.items():
        response = ApiClient(tenant.base_url, token, tenant.tenant_id, "").request("GET", "/v1/jobs")
        assert response.status_code == 401, what
        bodies.add(response.text)
    assert len(bodies) == 1  # nothing says which part was wrong


def test_a_deactivated_tenants_jwt_is_refused_within_the_authorizer_cache(new_tenant, identity_provider):
    tenant = new_tenant()
    client = ApiClient(tenant.base_url, identity_provider.token(tenant.tenant_id), tenant.tenant_id, "")
    assert client.request("GET", "/v1/jobs").status_code == 200
    get_ports().tenants.set_active(tenant.tenant_id, False)
    assert_refused_within_the_cache(client, time.monotonic())
