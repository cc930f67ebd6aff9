"""Each tenant's share on the local stack: its tier's request rate (usage plans, 429 with Retry-After), its cap on
running statements (a flood waits QUEUED and never starves another tenant), and its statement timeout."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from local.demo import add_tenant
from spectra.ports import get_ports
from tests.fixtures.stack import ApiClient, wait_until

pytestmark = pytest.mark.e2e

# Few long statements rather than many short ones: behind the cap, the neighbour waits for the executor to set the
# flood's messages aside, which takes longer the more messages there are and the slower the machine (200 of them took
# 6-10 s here); without the cap it waits for the flood's statements on the warehouse's 8 workers, which no machine
# makes shorter than the sleeps (40 x 3 s: 13 s here, against under a second behind the cap).
FLOOD = 40
FLOOD_SQL = "select pg_sleep(3) as slept"


@pytest.fixture
def tenant_with(spectra_stack, warehouse):
    """A fresh tenant with the given share (tier, statement timeout, running cap), as an HTTP client."""

    def make(**share) -> ApiClient:
        tenant_id = "t" + uuid.uuid4().hex[:12]
        db_user = f"tenant_{tenant_id}"
        key = add_tenant(warehouse, get_ports().tenants, tenant_id, db_user=db_user, **share)
        return ApiClient(spectra_stack.api_url, key, tenant_id, db_user)

    return make


def test_a_tenant_over_its_tiers_rate_gets_429_with_retry_after(tenant_with):
    basic, standard = tenant_with(tier="basic"), tenant_with()
    answers = [basic.request("GET", "/v1/jobs?limit=1") for _ in range(20)]  # basic: 10/s, bursts of 20
    # then faster than the bucket refills, from four clients at once: one client's requests one after another stay
    # under 10/s once each takes 50 ms, which a loaded machine reaches (18 ms here under load)
    with ThreadPoolExecutor(4) as pool:
        answers += pool.map(lambda _: basic.request("GET", "/v1/jobs?limit=1"), range(40))
    codes = [a.status_code for a in answers]
    assert codes[:20] == [200] * 20 and 429 in codes
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["Retry-After"] == "1"
    assert refused.json() == {"error": {"code": "throttled", "message": "too many requests", "details": None}}
    assert standard.request("GET", "/v1/jobs?limit=1").status_code == 200  # another tenant's bucket is its own
    wait_until(lambda: basic.request("GET", "/v1/jobs?limit=1").status_code == 200, 5, "the bucket to refill")


def test_a_tenant_without_a_usage_plan_key_is_refused(spectra_stack, warehouse):
    tenants = get_ports().tenants
    tenant_id = "t" + uuid.uuid4().hex[:12]
    tenants.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}")  # provisioned without add_tenant's usage plan
    client = ApiClient(spectra_stack.api_url, tenants.issue_key(tenant_id), tenant_id, f"tenant_{tenant_id}")
    response = client.request("GET", "/v1/jobs")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_a_runaway_query_ends_failed_by_the_tenants_statement_timeout(tenant_with):
    client = tenant_with(statement_timeout_ms=300)
    job = client.wait(client.submit("select pg_sleep(30)")["job_id"], timeout=20)
    assert job["status"] == "FAILED"
    assert job["error"]["code"] == "statement_timeout"
    assert "statement timeout" in job["error"]["message"]
    quick = client.wait(client.submit("select 1 as fine")["job_id"])
    assert quick["status"] == "COMPLETED"


def test_a_flooding_tenant_waits_its_turn_and_does_not_starve_another(tenant_with):
    flooder, neighbour = tenant_with(tier="premium"), tenant_with()
    cap = get_ports().settings.tenant_max_running_statements

    def submit(_):
        response = flooder.request("POST", "/v1/queries", json={"sql": FLOOD_SQL})
        assert response.status_code == 202, response.text
        return response.json()["job_id"]

    with ThreadPoolExecutor(8) as pool:
        flood = list(pool.map(submit, range(FLOOD)))
    assert len(set(flood)) == FLOOD

    submitted = time.monotonic()
    small = neighbour.submit("select 42 as answer")["job_id"]
    done = neighbour.wait(small, timeout=10)  # without the cap: behind the flood's statements (see FLOOD)
    waited = time.monotonic() - submitted
    assert done["status"] == "COMPLETED", done
    assert waited < 10

    running_seen = []

    def count(status: str) -> int:
        return len(flooder.request("GET", f"/v1/jobs?status={status}&limit=100").json()["jobs"])

    def all_finished() -> bool:
        running_seen.append(count("SUBMITTED"))
        return running_seen[-1] == 0 and count("QUEUED") == 0

    wait_until(all_finished, 150, "the flood to finish")
    statuses: dict[str, int] = {}
    token = None
    while True:
        page = flooder.request("GET", "/v1/jobs?limit=100" + (f"&next_token={token}" if token else "")).json()
        for job in page["jobs"]:
            statuses[job["status"]] = statuses.get(job["status"], 0) + 1
        token = page["next_token"]
        if not token:
            break
    assert statuses == {"COMPLETED": FLOOD}  # all of them ran; none was failed by the cap
    assert max(running_seen) <= cap  # and the flooder never had more than its cap running
