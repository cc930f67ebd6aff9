"""The reconciler's rules (pure) and its run control (bound, throttling, errors) with in-memory fakes of the ports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from events import JobStatus
from spectra.errors import Throttled
from spectra.job_store import PendingJob, PendingPage, index_time
from spectra.jobs import Job
from spectra.reconciliation import Action, Thresholds, plan, reconcile
from spectra.settings import Settings
from spectra.warehouse import StatementInfo

pytestmark = pytest.mark.unit

T = Thresholds(
    look_after=timedelta(seconds=60),
    requeue_after=timedelta(seconds=300),
    give_up_after=timedelta(seconds=3600),
    batch_max=200,
)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def job(status: JobStatus = JobStatus.QUEUED, *, age: float = 600, **fields) -> Job:
    created = NOW - timedelta(seconds=age)
    return Job(
        job_id="j_x",
        tenant_id="t",
        db_user="u",
        sql="select 1",
        status=status,
        created_at=created,
        **{"updated_at": created, **fields},
    )


def quiet(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("the_job", "quiet_for", "expected"),
    [
        (job(JobStatus.SUBMITTED, statement_id="s1"), 61, Action.CHECK_STATEMENT),
        (job(JobStatus.SUBMITTED, statement_id="s1", age=86_400), 61, Action.CHECK_STATEMENT),  # long queries run on
        (job(JobStatus.QUEUED), 120, Action.WAIT),  # SQS's own retry comes first
        (job(JobStatus.QUEUED), 300, Action.REQUEUE),
        (job(JobStatus.SUBMITTED), 301, Action.REQUEUE),  # the executor died between its two writes
        (job(JobStatus.QUEUED, age=3600), 301, Action.GIVE_UP),
        (job(JobStatus.SUBMITTED, age=7200), 120, Action.GIVE_UP),
        (job(JobStatus.FAILED), 61, Action.PUBLISH),
        (job(JobStatus.COMPLETED, event_published=True), 61, Action.NOTHING),  # the index lags behind the table
        # moved since the index listed it quiet: left to the writer that moved it, until it is quiet again
        (job(JobStatus.SUBMITTED, statement_id="s1", submitted_at=quiet(59)), 301, Action.WAIT),
        (job(JobStatus.FAILED, completed_at=quiet(5)), 61, Action.WAIT),
        # a write that moves nothing (a cancel request, its taking back; a result attempt) is no move
        (
            job(JobStatus.SUBMITTED, statement_id="s1", submitted_at=quiet(90), updated_at=quiet(1)),
            61,
            Action.CHECK_STATEMENT,
        ),
        (job(JobStatus.QUEUED, age=3600, updated_at=quiet(1)), 301, Action.GIVE_UP),
    ],
)
def test_plan(the_job, quiet_for, expected):
    assert plan(the_job, quiet_since=quiet(quiet_for), now=NOW, thresholds=T) is expected


def test_thresholds_come_from_settings():
    settings = Settings(
        jobs_table="j",
        tenants_table="t",
        redshift_cluster_id="c",
        reconcile_after_seconds=5,
        requeue_after_seconds=10,
        pending_max_age_seconds=20,
        reconcile_batch_max=3,
    )
    assert Thresholds.from_settings(settings) == Thresholds(
        timedelta(seconds=5), timedelta(seconds=10), timedelta(seconds=20), 3
    )


def test_giving_up_must_come_after_requeueing():
    with pytest.raises(ValueError, match="REQUEUE_AFTER_SECONDS"):
        Settings(jobs_table="j", tenants_table="t", redshift_cluster_id="c", requeue_after_seconds=3600)


def test_index_time_sorts_as_time():
    earlier = datetime(2026, 1, 1, 0, 0, 5, tzinfo=NOW.tzinfo)
    moments = [earlier, earlier + timedelta(microseconds=1), earlier + timedelta(seconds=1)]
    assert sorted(moments, key=index_time) == moments
    assert len({len(index_time(m)) for m in moments}) == 1


# -- run control, with fakes ----------------------------------------------------------------------------------------


@dataclass
class FakeJobs:
    jobs: dict[str, Job]
    more: bool = False
    checked: list[str] = field(default_factory=list)
    asked_limit: int | None = None

    def pending_before(self, cutoff, *, limit):
        self.asked_limit = limit
        return PendingPage([PendingJob(j, quiet(61)) for j in self.jobs], more=self.more)

    def get(self, job_id):
        return self.jobs.get(job_id)

    def mark_checked(self, job_id, status, at):
        self.checked.append(job_id)
        return self.jobs[job_id]


@dataclass
class FakeWarehouse:
    """Statements by id; ``throttle_after`` describes succeed, then the Data API says slow down."""

    statements: dict[str, str]
    throttle_after: int = 10**9
    described: list[str] = field(default_factory=list)

    def describe(self, statement_id):
        if len(self.described) >= self.throttle_after:
            raise Throttled("Redshift Data API: ThrottlingException: rate exceeded")
        self.described.append(statement_id)
        return StatementInfo(statement_id=statement_id, status=self.statements[statement_id])


@dataclass
class FakePorts:
    jobs: FakeJobs
    warehouse: FakeWarehouse
    settings: Settings = field(
        default_factory=lambda: Settings(jobs_table="j", tenants_table="t", redshift_cluster_id="c")
    )
    bulk: None = None  # no bulk jobs in these sweeps


def running_jobs(n: int) -> tuple[FakeJobs, FakeWarehouse]:
    jobs = {
        f"j_{i}": job(JobStatus.SUBMITTED, statement_id=f"s{i}").model_copy(update={"job_id": f"j_{i}"})
        for i in range(n)
    }
    return FakeJobs(jobs), FakeWarehouse({f"s{i}": "STARTED" for i in range(n)})


def test_running_statements_are_moved_back_and_counted():
    jobs, warehouse = running_jobs(3)
    summary = reconcile(FakePorts(jobs, warehouse), now=NOW)
    assert (summary.checked, summary.still_running, summary.completed) == (3, 3, 0)
    assert jobs.checked == ["j_0", "j_1", "j_2"]
    assert jobs.asked_limit == 200
    assert summary.more_pending is False


def test_a_job_that_moved_after_the_index_listed_it_is_not_checked():
    """The index lists a job quiet (QUEUED at its tenant's cap for minutes); by the time the sweep reads it, the
    executor has started it and its statement has finished, and its completion event is being handled. The sweep
    checked the statement and completed the job beside the event's completion, and both announced it: two events for
    one job (the warehouse-outage fault test saw 2-4 in 100). It leaves the job to the event now."""
    jobs = FakeJobs({"j_x": job(JobStatus.SUBMITTED, statement_id="s1", submitted_at=quiet(1), updated_at=quiet(1))})
    warehouse = FakeWarehouse({"s1": "FINISHED"})
    summary = reconcile(FakePorts(jobs, warehouse), now=NOW)
    assert (summary.checked, summary.completed) == (1, 0)
    assert warehouse.described == [] and jobs.checked == []


def test_throttling_stops_the_run_and_leaves_the_rest_in_place():
    """The job whose check was throttled goes to the back with those checked, so the next run starts past it (a
    throttled head job that kept its place would stop every run on itself); the others keep their place."""
    jobs, warehouse = running_jobs(5)
    summary = reconcile(FakePorts(jobs, FakeWarehouse(warehouse.statements, throttle_after=2)), now=NOW)
    assert summary.throttled is True
    assert summary.still_running == 2
    assert jobs.checked == ["j_0", "j_1", "j_2"]  # j_3 and j_4 keep their place at the head of the index
    assert summary.more_pending is True


def test_a_deadline_in_the_past_starts_nothing():
    jobs, warehouse = running_jobs(2)
    summary = reconcile(FakePorts(jobs, warehouse), now=NOW, deadline=0.0)
    assert (summary.checked, summary.out_of_time, summary.more_pending) == (0, True, True)
    assert warehouse.described == []


def test_one_broken_job_does_not_stop_the_others():
    jobs, warehouse = running_jobs(3)
    del warehouse.statements["s1"]  # describe raises KeyError: an unexpected failure for that job only
    summary = reconcile(FakePorts(jobs, warehouse), now=NOW)
    assert (summary.errors, summary.still_running) == (1, 2)
    assert jobs.checked == ["j_0", "j_1", "j_2"]  # a statement check moves its job back before it asks


def test_a_job_that_cannot_be_read_does_not_stop_the_others():
    """An item no model reads (written by a later version, say) is counted as an error; the jobs behind it run."""
    jobs, warehouse = running_jobs(3)
    unreadable = FakeJobs(jobs.jobs)

    def get(job_id):
        if job_id == "j_0":
            raise ValueError("1 validation error for Job: status: Input should be 'QUEUED', ...")
        return jobs.jobs[job_id]

    unreadable.get = get
    summary = reconcile(FakePorts(unreadable, warehouse), now=NOW)
    assert (summary.errors, summary.still_running) == (1, 2)
    assert unreadable.checked == ["j_1", "j_2"]


def test_a_full_batch_is_reported():
    jobs, warehouse = running_jobs(1)
    jobs.more = True
    assert reconcile(FakePorts(jobs, warehouse), now=NOW).more_pending is True


def _an_hour_old_insert(ports):
    """A write job of tenant acme made an hour less a second ago, still QUEUED (it waited in line all that time)."""
    from spectra.jobs import new_job_id, utcnow

    ports.tenants.create_tenant("acme", db_user="tenant_acme", allow_writes=True, owned_schemas=["acme"])
    created = utcnow() - timedelta(seconds=3599)
    ports.tenants.backdate("acme", created)
    queued = Job(
        job_id=new_job_id(),
        tenant_id="acme",
        db_user="tenant_acme",
        sql="insert into acme.t values (1)",
        created_at=created,
        updated_at=created,
        write_grant=["acme"],
    )
    ports.jobs.create(queued)
    return queued


def test_a_job_an_executor_is_starting_is_not_given_up_under_it():
    """The hour's give-up landing while the executor is inside ExecuteStatement: the job ended FAILED 'not_started
    ... it was not run' while its INSERT committed (the lifecycle review). Holding a slot stamped moments ago, it is
    left to the executor, and ends with its statement."""
    from events import JobQueuedMessage
    from spectra.jobs import utcnow
    from spectra.lifecycle import complete_statement, execute_job
    from tests.unit.fakes import make_ports

    ports = make_ports()
    queued = _an_hour_old_insert(ports)
    start = ports.warehouse.start
    runs = []

    def give_up_meanwhile(*args, **kwargs):
        started = start(*args, **kwargs)
        ports.warehouse.finish(started.statement_id, rows=1)  # the INSERT commits at once
        runs.append(reconcile(ports, now=utcnow() + timedelta(seconds=5)))
        return started

    ports.warehouse.start = give_up_meanwhile
    execute_job(ports, JobQueuedMessage(job_id=queued.job_id, tenant_id="acme"), first_delivery=False)
    assert runs[0].expired == 0 and runs[0].still_running == 1
    submitted = ports.jobs.get(queued.job_id)
    assert submitted.status is JobStatus.SUBMITTED
    complete_statement(ports, ports.warehouse.status_change(submitted.statement_id))
    assert ports.jobs.get(queued.job_id).status is JobStatus.COMPLETED


def test_a_job_whose_starter_died_holding_its_slot_is_given_up_once_the_stamp_is_old():
    from spectra.jobs import utcnow
    from tests.unit.fakes import make_ports

    ports = make_ports()
    queued = _an_hour_old_insert(ports)
    assert ports.slots.acquire("acme", queued.job_id, limit=5)  # an executor took it, then died
    assert reconcile(ports, now=utcnow() + timedelta(seconds=5)).still_running == 1
    later = reconcile(ports, now=utcnow() + timedelta(seconds=400))
    assert later.expired == 1
    assert ports.jobs.get(queued.job_id).error.code == "not_started"
