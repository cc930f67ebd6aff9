"""The warehouse taken away mid-burst and given back: a cluster rebooting (or paused, resized, failing over) refuses
new statements for a while, and the reboot ends those that were running, without their completion events.

The fault stack's own emulator is switched (``emulator.outage``, local/redshift_data/outage.py): ExecuteStatement and
the catalog calls are refused with ValidationException "Cluster ... is not available", every time, while
DescribeStatement and the result calls still answer from the Data API's records; the reboot ends the running
statements FAILED and sends no event for them. Whatever a job was doing then, it ends once: completed after the
warehouse came back, failed `warehouse_unavailable` after its retries (README, "How it works"), or, when its
statement was running at the reboot, failed with the warehouse's message; a bulk load handed over meanwhile
likewise. No job is left in a dead-letter queue, QUEUED or SUBMITTED, and no running slot stays taken. Before the
warehouse port read "Cluster ... is not available" as passing trouble, every job that started during the outage
failed at once `statement_rejected`, as if its SQL were at fault.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from spectra.slots import RunningSlots
from tests.faults.conftest import all_terminal, log_records
from tests.faults.test_faults import DEAD_LETTER_QUEUES, dead_letters, events_by_job, whole
from tests.fixtures.stack import wait_until

pytestmark = pytest.mark.faults

OUTAGE_SECONDS = 20  # the retry of a refused start comes after 2 s locally: five tries are over well within it
SLOW, BEFORE, DURING = 3, 47, 50  # a burst of 100: three running at the reboot, then as many before the outage as in it
#: what a job may end with here, and the words its message must have
ALLOWED = {"warehouse_unavailable": "not available", "statement_failed": "rebooted"}


@pytest.mark.timeout(360)
def test_the_warehouse_away_mid_burst_loses_no_job(functions_running, fault_tenant, bus, local_aws):
    stack = functions_running
    outage = stack.emulator.outage
    tenant = fault_tenant()  # running cap 5: the three slow jobs leave two slots to the burst
    store = stack.jobs()
    slow = [tenant.submit(f"select {n} as n from (select pg_sleep(60)) s") for n in range(SLOW)]
    running = wait_until(
        lambda: whole({j: job.statement_id for j in slow if (job := store.get(j)) and job.statement_id}, SLOW),
        60,
        "the slow jobs' statements to start",
    )
    wait_until(
        lambda: all(stack.warehouse.client.describe_statement(Id=s)["Status"] == "STARTED" for s in running.values()),
        60,
        "the slow statements to run",
    )

    jobs: list[str] = list(slow)
    lock = threading.Lock()

    def submit(n: int) -> None:
        job_id = tenant.submit(f"select {n} as n")  # 202: the API never calls the warehouse
        with lock:
            jobs.append(job_id)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(submit, range(BEFORE)))
    wait_until(lambda: sum(s == "COMPLETED" for s in _states(store, jobs).values()) >= 10, 60, "ten jobs done")

    loader = fault_tenant()  # the bulk load's own tenant, its slot apart from the burst's
    bulk_job = _bulk_job(stack, loader)
    outage.begin(code="ValidationException", state="rebooting")
    try:
        handed = loader.request("PATCH", f"/v1/bulk/jobs/{bulk_job}", json={"state": "UploadComplete"})
        assert handed.status_code == 200, handed.text  # the API does not call the warehouse for it either
        rebooted = outage.reboot(with_events=False)  # FAILED, no event: the reconciler must find them
        assert set(running.values()) <= set(rebooted)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(submit, range(BEFORE, BEFORE + DURING)))
        # A one-call query meanwhile: answered 202 when its wait runs out, or 200 with its failure, never a 5xx.
        waited = tenant.request("POST", "/v1/queries", json={"sql": "select 'waited' as w", "wait_timeout": 5})
        assert waited.status_code in (200, 202), waited.text
        jobs.append(waited.json()["job_id"])
        print("one-call query during the outage:", waited.status_code, waited.json().get("status"), flush=True)
        time.sleep(OUTAGE_SECONDS)  # the fault's length, not a wait for a state
        refused = outage.refused.get("ExecuteStatement", 0)
    finally:
        outage.end()
    assert refused > 0, "the warehouse refused no statement: the fault did not happen"
    assert len(jobs) == SLOW + BEFORE + DURING + 1 and len(set(jobs)) == len(jobs)

    wait_until(lambda: all_terminal(stack, jobs), 180, "every job to end after the outage")
    ended = {job_id: store.get(job_id) for job_id in jobs}
    print("outcomes:", Counter(_outcome(job) for job in ended.values()), flush=True)
    loaded = wait_until(lambda: _bulk_ended(loader, bulk_job), 120, "the bulk load to end with its result files")
    print("bulk load:", loaded["state"], loaded.get("errorMessage"), flush=True)
    for job_id, job in ended.items():
        assert job.status.value in ("COMPLETED", "FAILED"), (job_id, job.status)
        if job.status.value == "FAILED":
            assert job.error is not None and job.error.code in ALLOWED, (job_id, job.error)
            assert ALLOWED[job.error.code] in job.error.message, (job_id, job.error)
    for job_id in slow:  # running at the reboot: failed with the warehouse's reason (the ClientToken runs none again)
        assert ended[job_id].error is not None and ended[job_id].error.code == "statement_failed", ended[job_id]
    assert any(job.status.value == "COMPLETED" for job_id, job in ended.items() if job_id in jobs[SLOW + BEFORE :])

    # the bulk load, handed over during the outage: loaded after it, or failed saying the warehouse was away
    assert loaded["state"] == "JobComplete" or "not available" in (loaded.get("errorMessage") or ""), loaded
    if loaded["state"] == "JobComplete":
        assert loaded["numberRecordsProcessed"] == 20 and loaded["numberRecordsFailed"] == 0, loaded

    # each job ended once, announced as it ended, nothing dead-lettered, no slot held
    endings = [r for r in log_records(stack) if r.get("message", "").startswith("job ") and r.get("job_id") in ended]
    once = Counter(r["job_id"] for r in endings if r["message"] in ("job completed", "job failed", "job cancelled"))
    assert once == dict.fromkeys(jobs, 1)
    announced = wait_until(lambda: whole(events_by_job(bus, jobs), len(jobs)), 60, "every job's event")
    expected = {"COMPLETED": "Job Completed", "FAILED": "Job Failed"}
    assert all(set(types) == {expected[ended[j].status.value]} for j, types in announced.items()), announced
    print("jobs announced more than once:", sum(len(types) > 1 for types in announced.values()), flush=True)
    assert dead_letters(stack, local_aws) == dict.fromkeys(DEAD_LETTER_QUEUES, 0)
    slots = RunningSlots(local_aws.client("dynamodb"), stack.state.output("TenantsTable"))
    assert slots.line(tenant.tenant_id) == slots.line(loader.tenant_id) == ({}, {})
    after = tenant.submit("select 'after' as a")
    wait_until(lambda: all_terminal(stack, [after]), 60, "the tenant's next job")
    assert store.get(after).status.value == "COMPLETED"


def _bulk_job(stack, tenant) -> str:
    """An insert of 20 rows into a table of the tenant's, created and uploaded, not yet handed over."""
    table = f"outage_{tenant.tenant_id}"
    stack.warehouse.run(
        f"CREATE TABLE {table} (email varchar(64) NOT NULL, score int)",
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO "tenant_{tenant.tenant_id}"',
    )
    created = tenant.request("POST", "/v1/bulk/jobs", json={"object": table, "operation": "insert"})
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    rows = "email,score\n" + "".join(f"o{n}@x,{n}\n" for n in range(20))
    uploaded = tenant.request(
        "PUT", f"/v1/bulk/jobs/{job_id}/batches", data=rows.encode(), headers={"Content-Type": "text/csv"}
    )
    assert uploaded.status_code == 201, uploaded.text
    return job_id


def _bulk_ended(tenant, job_id: str) -> dict | None:
    job = tenant.request("GET", f"/v1/bulk/jobs/{job_id}").json()
    return job if job["state"] in ("JobComplete", "Failed", "Aborted") and job.get("resultsReady") else None


def _states(store, job_ids) -> dict[str, str]:
    return {job_id: job.status.value for job_id in list(job_ids) if (job := store.get(job_id)) is not None}


def _outcome(job) -> str:
    return job.status.value + (f" {job.error.code}" if job.error else "")
