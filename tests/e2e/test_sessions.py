"""Data API sessions on the whole stack: HTTP in, statements in kept-alive sessions of the tenant's identity.

What each statement ran in is read back from the emulator (DescribeStatement's ``SessionId``, ``DbUser`` and times),
not from the job store: the tests check what the warehouse saw.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import pairwise

import pytest

from spectra.ports import get_ports
from tests.fixtures.stack import ApiClient

pytestmark = pytest.mark.e2e


def run(client: ApiClient, sql: str = "select 1 as one") -> dict:
    job = client.wait(client.submit(sql)["job_id"])
    assert job["status"] == "COMPLETED", job
    return job


def statement_of(redshift_data, job: dict) -> dict:
    statement_id = get_ports().jobs.get(job["job_id"]).statement_id
    return redshift_data.describe_statement(Id=statement_id)


def test_a_tenants_twenty_sequential_jobs_open_at_most_two_sessions(new_tenant, redshift_data):
    client = new_tenant()
    statements = [statement_of(redshift_data, run(client)) for _ in range(20)]
    sessions = {s.get("SessionId") for s in statements}
    assert None not in sessions
    assert 1 <= len(sessions) <= 2, sessions
    assert {s["DbUser"] for s in statements} == {client.db_user}


def test_two_tenants_never_share_a_session(new_tenant, redshift_data):
    tenants = [new_tenant(), new_tenant()]
    seen: dict[str, set[str]] = {t.tenant_id: set() for t in tenants}
    for _ in range(4):
        for client in tenants:
            job = run(client, "select current_user as who")
            statement = statement_of(redshift_data, job)
            assert statement["DbUser"] == client.db_user
            seen[client.tenant_id].add(statement["SessionId"])
            # the warehouse ran it as the tenant, in the session
            assert client.request("GET", f"/v1/jobs/{job['job_id']}/results").json()["rows"] == [[client.db_user]]
    first, second = seen.values()
    assert first and second and not first & second


def test_an_expired_session_is_dropped_and_the_statement_still_runs(new_tenant, redshift_data, redshift_emulator):
    client = new_tenant()
    expired = statement_of(redshift_data, run(client))["SessionId"]
    assert redshift_emulator.end_session(expired)  # its keep-alive ran out before the pool's estimate said
    job = run(client)
    session = statement_of(redshift_data, job)["SessionId"]
    assert session and session != expired
    pool = get_ports().slots.sessions(client.tenant_id)
    assert expired not in pool and session in pool
    assert statement_of(redshift_data, run(client))["SessionId"] == session  # the new one is reused in turn


def test_a_busy_session_is_not_shared_under_concurrency(new_tenant, redshift_data):
    client = new_tenant()
    run(client)  # one idle session in the pool, for the concurrent jobs to fight over
    with ThreadPoolExecutor(6) as pool:
        job_ids = list(pool.map(lambda _: client.submit("select pg_sleep(0.3), 1 as one")["job_id"], range(6)))
    statements = []
    for job_id in job_ids:
        job = client.wait(job_id)
        assert job["status"] == "COMPLETED", job.get("error")
        statements.append(statement_of(redshift_data, job))
    by_session: dict[str, list[tuple[datetime, datetime]]] = {}
    for statement in statements:
        by_session.setdefault(statement["SessionId"], []).append((statement["CreatedAt"], statement["UpdatedAt"]))
    assert len(by_session) >= 2  # six statements at once cannot all have run in one session
    for session_id, spans in by_session.items():
        spans.sort()
        for (_, ended), (started, _) in pairwise(spans):
            assert ended <= started, f"session {session_id} ran two statements at once: {spans}"
