"""POST /v1/queries with wait_timeout on the local stack: one call for a query that ends in time, the usual 202 for
one that does not (and the job goes on, or is cancelled with on_wait_timeout CANCEL)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from local.demo import add_tenant
from local.pipeline import LOCAL_TENANT_MAX_WAITS
from spectra.ports import get_ports
from tests.e2e.test_api_contract import error_of
from tests.fixtures.stack import ApiClient, wait_until

pytestmark = pytest.mark.e2e


def post(client: ApiClient, sql: str, **body) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = client.request("POST", "/v1/queries", json={"sql": sql, **body})
    return response, time.monotonic() - started


def test_a_query_that_ends_in_time_is_answered_with_its_rows_in_one_call(new_tenant):
    client = new_tenant()
    response, elapsed = post(client, "select 1 as one, 'a' as s", wait_timeout=25)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "COMPLETED" and body["row_count"] == 1
    assert body["results"]["rows"] == [[1, "a"]]
    assert [c["name"] for c in body["results"]["columns"]] == ["one", "s"]
    assert elapsed < 20  # answered when the job ended, not when the wait ran out
    assert response.headers["Location"] == f"/v1/jobs/{body['job_id']}"
    assert client.job(body["job_id"])["status"] == "COMPLETED"


def test_a_query_that_fails_in_time_is_answered_with_the_database_message(new_tenant):
    client = new_tenant()
    response, _ = post(client, "select * from no_such_table_for_waiting", wait_timeout=25)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "FAILED" and body["results"] is None
    assert "no_such_table_for_waiting" in body["error"]["message"]


def test_an_expired_wait_answers_202_and_the_job_completes_later(new_tenant):
    client = new_tenant()
    response, elapsed = post(client, "select 7 as seven from (select pg_sleep(3)) s", wait_timeout=1)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] in ("QUEUED", "SUBMITTED") and body["results"] is None
    assert 1 <= elapsed < 3
    # its results are not there yet: a distinct code, and when to ask again
    early = client.request("GET", f"/v1/jobs/{body['job_id']}/results")
    assert error_of(early, 409)["code"] == "job_not_finished"
    assert int(early.headers["Retry-After"]) >= 1
    assert client.wait(body["job_id"])["status"] == "COMPLETED"
    rows = client.request("GET", f"/v1/jobs/{body['job_id']}/results").json()["rows"]
    assert rows == [[7]]


def test_an_expired_wait_with_cancel_stops_the_running_statement(new_tenant):
    client = new_tenant()
    response, _ = post(client, "select pg_sleep(30)", wait_timeout=1, on_wait_timeout="CANCEL")
    body = response.json()
    if body["status"] == "SUBMITTED":  # running: asked to stop, ends CANCELLED when the warehouse aborts it
        assert response.status_code == 202 and body["cancel_requested"] is True
    else:  # still queued after the wait: cancelled at once
        assert (response.status_code, body["status"]) == (200, "CANCELLED")
    assert client.wait(body["job_id"], timeout=30)["status"] == "CANCELLED"


def test_an_expired_wait_with_cancel_ends_a_queued_job_at_once(spectra_stack, warehouse):
    tenant_id = "t" + uuid.uuid4().hex[:12]
    key = add_tenant(warehouse, get_ports().tenants, tenant_id, max_running_statements=0)  # its jobs wait queued
    client = ApiClient(spectra_stack.api_url, key, tenant_id, f"tenant_{tenant_id}")
    response, _ = post(client, "select 1", wait_timeout=1, on_wait_timeout="CANCEL")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "CANCELLED"


def test_a_client_that_hangs_up_loses_nothing(new_tenant):
    client = new_tenant()
    key = str(uuid.uuid4())
    sql = "select 'kept' as v from (select pg_sleep(2)) s"
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            client.base_url + "/v1/queries",
            json={"sql": sql, "wait_timeout": 25},
            headers={"Authorization": f"Bearer {client.api_key}", "Idempotency-Key": key},
            timeout=(5, 0.5),
        )
    # the job went on; asking again with the same key waits for that same job
    again = client.request(
        "POST", "/v1/queries", json={"sql": sql, "wait_timeout": 25}, headers={"Idempotency-Key": key}
    )
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "COMPLETED" and again.json()["results"]["rows"] == [["kept"]]
    jobs = wait_until(lambda: client.request("GET", "/v1/jobs").json()["jobs"], 10, "the job to be listed")
    assert [job["job_id"] for job in jobs] == [again.json()["job_id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"wait_timeout": 26}, "wait_timeout"),
        ({"wait_timeout": -1}, "wait_timeout"),
        ({"wait_timeout": 1.5}, "wait_timeout"),
        ({"wait_timeout": "5"}, "wait_timeout"),
        ({"wait_timeout": True}, "wait_timeout"),
        ({"wait_timeout": 5, "on_wait_timeout": "KILL"}, "on_wait_timeout"),
        ({"on_wait_timeout": "cancel"}, "on_wait_timeout"),
    ],
)
def test_bad_wait_settings_are_400_naming_the_field(new_tenant, body, field):
    client = new_tenant()
    error = error_of(client.request("POST", "/v1/queries", json={"sql": "select 1", **body}), 400)
    assert error["code"] == "invalid_request"
    assert {tuple(d["loc"]) for d in error["details"]} == {("body", field)}


def test_a_tenant_holding_its_most_waits_is_refused_429_and_no_job_is_made(spectra_stack, warehouse, new_tenant):
    """A one-call query holds an API environment while it waits: past its tenant's cap (``max_waits``) it is refused
    before any job is made, while the tenant's other requests, and another tenant's waits, go on."""
    tenant_id = "t" + uuid.uuid4().hex[:12]
    # its jobs wait queued (cap 0), so each wait lasts its whole wait_timeout
    key = add_tenant(warehouse, get_ports().tenants, tenant_id, max_running_statements=0, max_waits=2)
    client = ApiClient(spectra_stack.api_url, key, tenant_id, f"tenant_{tenant_id}")
    with ThreadPoolExecutor(max_workers=2) as pool:
        waiting = [pool.submit(post, client, f"select {n}", wait_timeout=6) for n in range(2)]
        wait_until(
            lambda: len([ends for ends in get_ports().waits.held(tenant_id).values() if ends > time.time()]) == 2,
            timeout=20,
            what="both waits holding their leases",
        )
        refused, _ = post(client, "select 'third'", wait_timeout=6)
        assert error_of(refused, 429)["code"] == "too_many_waits", refused.text
        assert refused.headers["Retry-After"] == "1"
        assert error_of(refused, 429)["details"] == {"max_waits": 2}
        queued, _ = post(client, "select 'no wait'")  # the cap is on waits, not on jobs
        assert queued.status_code == 202, queued.text
        other, _ = post(new_tenant(), "select 1 as one", wait_timeout=25)  # another tenant's waits are its own
        assert other.status_code == 200 and other.json()["results"]["rows"] == [[1]], other.text
        answers = [future.result()[0] for future in waiting]
    assert [answer.status_code for answer in answers] == [202, 202]
    made = {answer.json()["job_id"] for answer in [*answers, queued]}
    assert {job["job_id"] for job in client.request("GET", "/v1/jobs").json()["jobs"]} == made  # none for the third
    assert get_ports().waits.held(tenant_id) == {}  # given back when they answered
    again, _ = post(client, "select 'after'", wait_timeout=1)
    assert again.status_code == 202, again.text


def test_one_tenant_at_its_cap_leaves_api_environments_to_the_others(spectra_stack, warehouse, new_tenant):
    """The local stack's cap (TenantMaxWaits 4) sits below its API's ten environments: a tenant waiting all it may
    still leaves the others served at once. With the template's default (20) its waits held all ten, and another
    tenant's GET was answered only once one of them ended (found by review)."""
    tenant_id = "t" + uuid.uuid4().hex[:12]
    key = add_tenant(warehouse, get_ports().tenants, tenant_id, max_running_statements=0)  # the stack's own cap
    client = ApiClient(spectra_stack.api_url, key, tenant_id, f"tenant_{tenant_id}")
    other = new_tenant()

    def live_leases() -> int:
        return len([ends for ends in get_ports().waits.held(tenant_id).values() if ends > time.time()])

    sent = 11  # more than the API has environments
    with ThreadPoolExecutor(max_workers=sent) as pool:
        waiting = [pool.submit(post, client, f"select {n}", wait_timeout=15) for n in range(sent)]
        wait_until(lambda: live_leases() == int(LOCAL_TENANT_MAX_WAITS), timeout=20, what="the tenant at its cap")
        listing = other.request("GET", "/v1/jobs")
        assert listing.status_code == 200, listing.text
        assert live_leases() == int(LOCAL_TENANT_MAX_WAITS)  # answered while every one of them still waits
        statuses = sorted(future.result()[0].status_code for future in waiting)
    assert statuses == [202] * int(LOCAL_TENANT_MAX_WAITS) + [429] * (sent - int(LOCAL_TENANT_MAX_WAITS))
