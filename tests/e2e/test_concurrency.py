"""Concurrent requests never cross: 16 clients of two tenants mixing submit, get, list, results and cancel.

The local stack runs each API invocation in an execution environment of its own (local/runner/functions.py), as
Lambda does, so per-request state (Powertools' ``current_event``) cannot leak between requests. Before it did, this
mix got the wrong status about once in two requests.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

pytestmark = pytest.mark.e2e

CLIENTS = 16
REQUESTS_PER_CLIENT = 13  # 208 requests in all


@dataclass
class TenantJobs:
    """What one tenant owns, as far as the test knows: its finished job and every job its clients submitted."""

    finished: str
    submitted: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, job_id: str) -> None:
        with self.lock:
            self.submitted.add(job_id)

    def all(self) -> set[str]:
        with self.lock:
            return {self.finished, *self.submitted}


def test_sixteen_clients_of_two_tenants_each_get_what_their_request_deserves(new_tenant):
    tenants = [new_tenant(), new_tenant()]
    owned = []
    for index, client in enumerate(tenants):
        job = client.wait(client.submit(f"select {index + 1} as tenant_marker")["job_id"])
        assert job["status"] == "COMPLETED", job
        owned.append(TenantJobs(finished=job["job_id"]))

    wrong: list[str] = []
    listed: list[tuple[int, set[str]]] = []  # (tenant index, ids a list returned), checked once all ids are known
    outcomes: Counter[str] = Counter()

    def expect(what: str, response, status: int, check=lambda body: True) -> dict:
        body = response.json()
        ok = response.status_code == status and check(body)
        outcomes[what] += 1
        if not ok:
            wrong.append(f"{what}: wanted {status}, got {response.status_code} {response.text[:200]}")
        return body

    def run_client(number: int) -> None:
        me = number % 2
        client, mine, theirs = tenants[me], owned[me], owned[1 - me]
        rng = random.Random(number)
        own_running: list[str] = []
        for _ in range(REQUESTS_PER_CLIENT):
            action = rng.choice(["submit", "submit_long", "get", "get_foreign", "list", "results", "cancel"])
            if action == "submit":
                body = expect(
                    action,
                    client.request("POST", "/v1/queries", json={"sql": "select 1"}),
                    202,
                    lambda b: b["status"] == "QUEUED" and b["links"]["self"] == f"/v1/jobs/{b['job_id']}",
                )
                if "job_id" in body:
                    mine.add(body["job_id"])
            elif action == "submit_long":
                body = expect(
                    action,
                    client.request("POST", "/v1/queries", json={"sql": "select pg_sleep(30)"}),
                    202,
                    lambda b: b["status"] == "QUEUED",
                )
                if "job_id" in body:
                    mine.add(body["job_id"])
                    own_running.append(body["job_id"])
            elif action == "get":
                expect(
                    action,
                    client.request("GET", f"/v1/jobs/{mine.finished}"),
                    200,
                    lambda b: b["job_id"] == mine.finished and b["status"] == "COMPLETED" and b["row_count"] == 1,
                )
            elif action == "get_foreign":
                path = rng.choice([f"/v1/jobs/{theirs.finished}", f"/v1/jobs/{theirs.finished}/results"])
                expect(action, client.request("GET", path), 404, lambda b: b["error"]["code"] == "not_found")
            elif action == "list":
                body = expect(action, client.request("GET", "/v1/jobs?limit=100"), 200, lambda b: "jobs" in b)
                listed.append((me, {job["job_id"] for job in body.get("jobs", [])}))
            elif action == "results":
                expect(
                    action,
                    client.request("GET", f"/v1/jobs/{mine.finished}/results"),
                    200,
                    lambda b: b["job_id"] == mine.finished and b["rows"] == [[me + 1]],
                )
            elif own_running:  # cancel a long job of this client: queued → 200 CANCELLED, running → 202
                job_id = own_running.pop()
                response = client.request("DELETE", f"/v1/jobs/{job_id}")
                if response.status_code == 200:
                    deserved = (200, lambda b, j=job_id: b["job_id"] == j and b["status"] == "CANCELLED")
                else:
                    deserved = (
                        202,
                        lambda b, j=job_id: b["job_id"] == j and b["status"] == "SUBMITTED" and b["cancel_requested"],
                    )
                expect("cancel", response, *deserved)
            else:  # nothing of its own running: cancelling a finished job is a conflict, a foreign one not found
                if rng.random() < 0.5:
                    expect(
                        "cancel_finished",
                        client.request("DELETE", f"/v1/jobs/{mine.finished}"),
                        409,
                        lambda b: b["error"]["code"] == "conflict" and b["error"]["details"]["status"] == "COMPLETED",
                    )
                else:
                    expect(
                        "cancel_foreign",
                        client.request("DELETE", f"/v1/jobs/{theirs.finished}"),
                        404,
                        lambda b: b["error"]["code"] == "not_found",
                    )

    with ThreadPoolExecutor(CLIENTS) as pool:
        for future in [pool.submit(run_client, number) for number in range(CLIENTS)]:
            future.result()
    # the long jobs still running would hold the warehouse's workers for half a minute after this test: stop them
    for client, jobs in zip(tenants, owned, strict=True):
        for job_id in jobs.all():
            client.request("DELETE", f"/v1/jobs/{job_id}")  # 409 for the finished ones

    assert sum(outcomes.values()) == CLIENTS * REQUESTS_PER_CLIENT
    assert len(outcomes) >= 8, outcomes  # the mix really was mixed
    assert wrong == []
    for me, ids in listed:
        assert ids <= owned[me].all(), f"tenant {me} was shown jobs that are not its own: {ids - owned[me].all()}"
        assert owned[me].finished in ids
