"""One scenario suite, two pairs of stores: a job's terminal write and its running slot's release in one transaction
(:meth:`spectra.job_store.JobStore.finish` with :meth:`spectra.slots.RunningSlots.releasing`), on the in-memory
fakes the unit tier uses and on DynamoDB (moto), in tables made from template.yaml's ``JobsTable`` and
``TenantsTable``. Both or neither: a refused release writes no job, a job that moved releases nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from events import JobStatus, ResultFormat
from spectra.job_store import JobStore
from spectra.jobs import Job, new_job_id, utcnow
from spectra.slots import PooledSession, RunningSlots, SlotsSeen
from tests.fixtures.aws import table_from_template
from tests.unit.fakes import FakeJobStore, FakeRunningSlots

pytestmark = pytest.mark.integration

ACME = "db_user:tenant_acme"


@dataclass
class Stores:
    jobs: JobStore | FakeJobStore
    slots: RunningSlots | FakeRunningSlots


@pytest.fixture(params=["fake", "dynamodb"])
def stores(request):
    if request.param == "fake":
        yield Stores(FakeJobStore(), FakeRunningSlots())
        return
    aws = request.getfixturevalue("local_aws")
    with (
        table_from_template(aws, "JobsTable", "jobs-finish-") as (client, jobs_table),
        table_from_template(aws, "TenantsTable", "tenants-finish-") as (_, tenants_table),
    ):
        yield Stores(JobStore(client, jobs_table), RunningSlots(client, tenants_table))


def running(stores: Stores, *, statement: str | None = "st-1") -> Job:
    """A SUBMITTED job holding a slot of tenant acme, its statement ``statement``."""
    now = utcnow()
    job = Job(
        job_id=new_job_id(), tenant_id="acme", db_user="tenant_acme", sql="select 1", format=ResultFormat.JSON,
        created_at=now, updated_at=now,
    )  # fmt: skip
    stores.jobs.create(job)
    assert stores.slots.claim("acme", job.job_id, limit=5).taken
    changes = {"statement_id": statement} if statement else {}
    return stores.jobs.transition(job.job_id, JobStatus.SUBMITTED, expected={JobStatus.QUEUED}, **changes)


def test_the_terminal_write_and_the_release_are_one(stores):
    job = running(stores)
    session = PooledSession("s-1", ACME, until=10_000.0)
    release = stores.slots.releasing("acme", job.job_id, session=session)
    done = stores.jobs.finish(job, JobStatus.COMPLETED, release=release, announced=True, completed_at=utcnow())
    assert done.job is not None and done.job.status is JobStatus.COMPLETED and done.job.event_published
    assert stores.jobs.get(job.job_id) == done.job  # the job answered is the job written
    assert stores.slots.holders("acme") == {}
    assert stores.slots.sessions("acme") == {"s-1": session}


def test_a_job_that_moved_is_not_written_and_keeps_its_slot(stores):
    job = running(stores)
    assert stores.jobs.transition(job.job_id, JobStatus.FAILED, expected={JobStatus.SUBMITTED}) is not None
    done = stores.jobs.finish(job, JobStatus.COMPLETED, release=stores.slots.releasing("acme", job.job_id))
    assert done.job is None and done.slots is None
    assert stores.jobs.get(job.job_id).status is JobStatus.FAILED
    assert job.job_id in stores.slots.holders("acme")  # whoever moved it owns the release


def test_a_release_somebody_waits_for_is_refused_and_says_who_waits(stores):
    job = running(stores)
    stores.slots.claim("acme", "j_other", limit=2)
    assert stores.slots.park("acme", "j_waiting", limit=2, now=50.0)
    done = stores.jobs.finish(job, JobStatus.COMPLETED, release=stores.slots.releasing("acme", job.job_id))
    assert done.job is None and done.slots == SlotsSeen(holding=True, waiting={"j_waiting": 50.0})
    assert stores.jobs.get(job.job_id).status is JobStatus.SUBMITTED  # nothing written
    assert job.job_id in stores.slots.holders("acme")
    # again, waking that job: the job ends, its slot is free, and the waiting job is off the list (its message owed)
    release = stores.slots.releasing("acme", job.job_id, waiter="j_waiting")
    done = stores.jobs.finish(job, JobStatus.COMPLETED, release=release)
    assert done.job is not None and done.job.status is JobStatus.COMPLETED
    assert stores.slots.waiting("acme") == {}
    assert set(stores.slots.holders("acme")) == {"j_other"}


def test_a_waiter_someone_else_woke_refuses_the_release(stores):
    job = running(stores)
    stores.slots.claim("acme", "j_other", limit=2)
    stores.slots.park("acme", "j_waiting", limit=2, now=50.0)
    assert stores.slots.unpark("acme", "j_waiting")
    release = stores.slots.releasing("acme", job.job_id, waiter="j_waiting")
    done = stores.jobs.finish(job, JobStatus.COMPLETED, release=release)
    assert done.job is None and done.slots == SlotsSeen(holding=True, waiting={})


def test_a_reclaimed_slot_refuses_the_release(stores):
    job = running(stores)
    stamp = stores.slots.holders("acme")[job.job_id]
    assert stores.slots.evict("acme", job.job_id, stamp=stamp)
    done = stores.jobs.finish(job, JobStatus.COMPLETED, release=stores.slots.releasing("acme", job.job_id))
    assert done.job is None and done.slots == SlotsSeen(holding=False, waiting={})
    assert stores.jobs.get(job.job_id).status is JobStatus.SUBMITTED


def test_an_unstarted_finish_fails_once_the_job_has_a_statement(stores):
    job = running(stores)
    gave_up = stores.jobs.finish(
        job, JobStatus.FAILED, release=stores.slots.releasing("acme", job.job_id), unstarted=True
    )
    assert gave_up.job is None and gave_up.slots is None
    assert job.job_id in stores.slots.holders("acme")
    unstarted = running(stores, statement=None)
    release = stores.slots.releasing("acme", unstarted.job_id)
    assert stores.jobs.finish(unstarted, JobStatus.FAILED, release=release, unstarted=True).job is not None


def test_racing_finishers_write_once(local_aws):
    """Duplicate status events and the reconciler, at once: one transaction wins, the slot is freed once."""
    with (
        table_from_template(local_aws, "JobsTable", "jobs-finish-") as (client, jobs_table),
        table_from_template(local_aws, "TenantsTable", "tenants-finish-") as (_, tenants_table),
    ):
        stores = Stores(JobStore(client, jobs_table), RunningSlots(client, tenants_table))
        job = running(stores)

        def finish(_):
            release = stores.slots.releasing("acme", job.job_id, session=PooledSession("s-1", ACME, until=1.0))
            return stores.jobs.finish(job, JobStatus.COMPLETED, release=release, announced=True).job

        with ThreadPoolExecutor(8) as pool:
            written = [result for result in pool.map(finish, range(8)) if result is not None]
        assert len(written) == 1
        assert stores.jobs.get(job.job_id).status is JobStatus.COMPLETED
        assert stores.slots.holders("acme") == {}
