"""Reconciler behaviour no test held before (found by mutation testing spectra/reconciliation.py): a job left to the
executor starting it goes to the back of the pending index, and a slot stamped exactly ORPHANED_AFTER_SECONDS ago no
longer holds off the give-up; a lost statement is counted expired, not an error; an index entry whose job is gone is
passed over, not an error; a collection cut short in time leaves the jobs after it to the rest of the run; a give-up,
an in-line cancel or a tenant refusal racing the record of the job's statement does not land; one run reads a
tenant's line once for both sweeps; a job moved exactly reconcile_after_seconds ago is quiet; the summary tells waiting
from skipped; and the log carries each job's id and tenant and says when a run leaves overdue jobs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from events import JobStatus, ResultFormat
from spectra import lifecycle, logs
from spectra.bulk.lifecycle import start_bulk_job
from spectra.deadline import OutOfTime
from spectra.jobs import Job, utcnow
from spectra.lifecycle import ORPHANED_AFTER_SECONDS, execute_job
from spectra.queries import cancel_job, submit_query
from spectra.reconciliation import Action, Thresholds, plan, reconcile
from spectra.tenants import Caller
from spectra.warehouse import StatementInfo
from tests.unit.fakes import make_ports, make_settings
from tests.unit.test_bulk_reconcile import bulk_ports, queued, started
from tests.unit.test_lifecycle import queued as queued_query
from tests.unit.test_reconciler import NOW, FakeJobs, FakePorts, FakeWarehouse, _an_hour_old_insert, running_jobs
from tests.unit.test_reconciler import job as listed_job

pytestmark = pytest.mark.unit


def test_a_job_left_to_its_starter_goes_to_the_back_of_the_index():
    """A QUEUED job an hour old whose executor took its slot moments ago is left to that executor (still running),
    and moved to the back of the pending index: the next run, a few seconds later, does not look at it again (it is
    not quiet for reconcile_after_seconds since), so it cannot hold the head of the index run after run."""
    ports = make_ports()
    job = _an_hour_old_insert(ports)
    assert ports.slots.acquire("acme", job.job_id, limit=5)  # an executor is starting it
    start = utcnow()
    first = reconcile(ports, now=start + timedelta(seconds=5))
    assert (first.checked, first.still_running) == (1, 1)
    again = reconcile(ports, now=start + timedelta(seconds=10))
    assert again.checked == 0, again.as_dict()
    later = reconcile(ports, now=start + timedelta(seconds=5 + ports.settings.reconcile_after_seconds + 1))
    assert later.checked == 1  # quiet again: looked at once more


def test_a_run_that_leaves_overdue_jobs_says_so(caplog):
    """A run cut short (here a full batch: more overdue jobs than reconcile_batch_max) logs a warning naming what it
    did, so an operator reading the log sees jobs were left for the next run; a run that reached every overdue job
    logs none."""
    ports = make_ports(settings=make_settings(reconcile_batch_max=1, tenant_cache_seconds=0))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    queued_query(ports)
    queued_query(ports)  # both messages lost
    start = utcnow()
    with caplog.at_level(logging.WARNING, logger="spectra.reconciliation"):
        cut = reconcile(ports, now=start + timedelta(minutes=6))
    assert (cut.requeued, cut.more_pending) == (1, True)
    assert [r.getMessage() for r in caplog.records if "overdue" in r.getMessage()], caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="spectra.reconciliation"):
        whole = reconcile(ports, now=start + timedelta(minutes=6, seconds=1))
    assert (whole.requeued, whole.more_pending) == (1, False)
    assert not [r for r in caplog.records if "overdue" in r.getMessage()], caplog.text


def test_a_statement_the_data_api_forgot_is_counted_expired_not_as_an_error():
    """A SUBMITTED job whose statement DescribeStatement no longer knows fails statement_lost, naming the statement,
    announced once, and the run counts it expired (ExpiredJobs), not among ReconcileErrors (alarmed)."""
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    job = execute_job(ports, queued_query(ports))
    ports.warehouse.statements.pop(job.statement_id)  # expired from the Data API
    summary = reconcile(ports, now=utcnow() + timedelta(minutes=2))
    assert (summary.expired, summary.errors, summary.completed) == (1, 0, 0), summary.as_dict()
    failed = ports.jobs.get(job.job_id)
    assert (failed.status, failed.error.code) == (JobStatus.FAILED, "statement_lost")
    assert job.statement_id in failed.error.message
    assert ports.events.types() == ["Job Failed"]


@pytest.mark.parametrize(("moved_ago", "expected"), [(60, Action.CHECK_STATEMENT), (59, Action.WAIT)])
def test_a_job_that_moved_exactly_look_after_ago_is_quiet(moved_ago, expected):
    """plan is given jobs quiet for at least reconcile_after_seconds: one whose statement started exactly that long
    ago is quiet, and checked; a second less, it is left to the writer that moved it."""
    now = utcnow()
    job = Job(
        job_id="j_x",
        tenant_id="t",
        db_user="u",
        sql="select 1",
        status=JobStatus.SUBMITTED,
        statement_id="s1",
        created_at=now - timedelta(minutes=10),
        updated_at=now,
        submitted_at=now - timedelta(seconds=moved_ago),
    )
    thresholds = Thresholds.from_settings(make_settings(reconcile_after_seconds=60))
    assert plan(job, quiet_since=now - timedelta(seconds=61), now=now, thresholds=thresholds) is expected


def test_one_run_reads_a_tenants_line_once_for_its_query_and_bulk_jobs():
    """A query job and a bulk job waiting in line at their tenant's cap are both left waiting (a release sends them),
    and the run reads the tenant's slots item once for both sweeps, not once per sweep."""
    ports = bulk_ports(tenant_max_running_statements=1)
    started(ports)  # a bulk load holds the tenant's one slot
    in_line = queued(ports)
    assert start_bulk_job(ports, in_line) is None
    query = queued_query(ports)
    assert execute_job(ports, query) is None
    assert set(ports.slots.waiting("acme")) == {in_line.job_id, query.job_id}
    ports.queue.messages.clear()
    reads = ports.slots.line_reads
    summary = reconcile(ports, now=utcnow() + timedelta(seconds=400))
    assert summary.waiting == 2 and ports.queue.messages == [], summary.as_dict()
    assert ports.slots.line_reads - reads == 1


@pytest.mark.parametrize(("stamp_age", "still_running", "expired"), [(119.0, 1, 0), (ORPHANED_AFTER_SECONDS, 0, 1)])
def test_a_slot_stamped_orphaned_after_seconds_ago_no_longer_holds_off_the_give_up(stamp_age, still_running, expired):
    """An hour-old QUEUED job holding a slot stamped under ORPHANED_AFTER_SECONDS (120 s) ago is left to the executor
    starting it; stamped exactly that long ago, its starter is taken as dead (as the bulk side's being_started reads
    its plan's stamp) and the job is given up not_started."""
    ports = make_ports()
    job = _an_hour_old_insert(ports)
    stamp = float(int(time.time()))
    assert ports.slots.acquire("acme", job.job_id, limit=5, now=stamp)
    summary = reconcile(ports, now=datetime.fromtimestamp(stamp + stamp_age, UTC))
    assert (summary.still_running, summary.expired) == (still_running, expired), summary.as_dict()


def test_each_job_the_sweep_looks_at_logs_with_its_id_and_tenant(caplog):
    """Every line the reconciler writes about a job carries the job's id and its tenant (spectra/logs.py's keys),
    so an operator can find one tenant's jobs in the sweep's log."""
    ports = make_ports(settings=make_settings(tenant_cache_seconds=0))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    message = queued_query(ports)  # its message was lost
    caplog.handler.addFilter(logs.KEYS)
    with caplog.at_level(logging.INFO, logger="spectra.reconciliation"):
        assert reconcile(ports, now=utcnow() + timedelta(minutes=6)).requeued == 1
    lines = [r for r in caplog.records if r.name == "spectra.reconciliation"]
    assert lines and {(r.job_id, r.tenant_id) for r in lines} == {(message.job_id, "acme")}


def _record_a_statement_behind_the_runs_read(ports, monkeypatch, job_id: str) -> Callable[[str], Job | None]:
    """The run reads the job as it is now; behind that read, a statement an earlier attempt started is recorded on it
    (as its completion records an orphaned start), so the run acts on a stale view. Returns the store's own read."""
    stale, get = ports.jobs.get(job_id), ports.jobs.get
    ports.jobs.update(job_id, [stale.status], statement_id="s_started")
    monkeypatch.setattr(ports.jobs, "get", lambda read: stale if read == job_id else get(read))
    return get


def _assert_left_to_its_statement(ports, summary, job_id: str, status: JobStatus, get: Callable) -> None:
    """The run's ending did not land: the job keeps its status and the statement recorded, no event went out."""
    assert (summary.expired, summary.skipped) == (0, 1), summary.as_dict()
    kept = get(job_id)
    assert (kept.status, kept.statement_id, kept.error) == (status, "s_started", None)
    assert ports.events.types() == []


def test_a_give_up_racing_the_record_of_its_statement_leaves_the_job_to_it(monkeypatch):
    """The reconciler read an hour-old SUBMITTED job without a statement (its executor stopped between its writes);
    meanwhile another executor's attempt recorded the statement it started. The give-up, which would say 'not_started
    ... it was not run' of a job whose statement runs, does not land: the job keeps its statement."""
    ports = make_ports()
    job = _an_hour_old_insert(ports)
    ports.jobs.update(job.job_id, [JobStatus.QUEUED], status=JobStatus.SUBMITTED)
    get = _record_a_statement_behind_the_runs_read(ports, monkeypatch, job.job_id)  # the other attempt's record
    summary = reconcile(ports, now=utcnow() + timedelta(seconds=5))
    _assert_left_to_its_statement(ports, summary, job.job_id, JobStatus.SUBMITTED, get)


def test_a_run_counts_jobs_not_yet_due_as_waiting_and_ended_ones_as_skipped():
    """The run's summary (the handler's answer and log): each QUEUED job quiet for less than requeue_after_seconds
    is counted waiting; an ended job whose event went out, still listed by the index (it lags the table), skipped."""
    jobs = FakeJobs(
        {
            "j_q1": listed_job(JobStatus.QUEUED).model_copy(update={"job_id": "j_q1"}),
            "j_q2": listed_job(JobStatus.QUEUED).model_copy(update={"job_id": "j_q2"}),
            "j_c": listed_job(JobStatus.COMPLETED, event_published=True).model_copy(update={"job_id": "j_c"}),
        }
    )
    summary = reconcile(FakePorts(jobs, FakeWarehouse({})), now=NOW)
    assert (summary.checked, summary.waiting, summary.skipped) == (3, 2, 1), summary.as_dict()


def test_an_index_entry_whose_job_is_gone_is_passed_over_without_an_error():
    """The pending index can list a job the table no longer holds (the index lags the table): the run passes over
    it, uncounted, and does not report it among its errors (ReconcileErrors, alarmed); the jobs behind it are
    handled."""
    jobs, warehouse = running_jobs(2)
    real_get = jobs.get
    jobs.get = lambda job_id: None if job_id == "j_0" else real_get(job_id)
    summary = reconcile(FakePorts(jobs, warehouse), now=NOW)
    assert (summary.checked, summary.errors, summary.still_running) == (1, 0, 1), summary.as_dict()


def test_a_cancel_in_line_racing_the_record_of_its_statement_leaves_the_job_to_it(monkeypatch):
    """A write asked to stop (202) whose executor died holding its slot, then parked in line: the reconciler ends it
    CANCELLED, but not when, since it read the job, the statement that executor had started was recorded on it (its
    completion does so for a start older than ORPHANED_AFTER_SECONDS): the INSERT ran, and CANCELLED would say not."""
    from tests.unit.test_identity import writer_job

    ports = make_ports()
    job = writer_job(ports, "insert into acme_work.t values (1)")
    ports.tenants.update_tenant("acme", max_running_statements=1)
    ports.slots.claim("acme", job.job_id, limit=1, now=utcnow().timestamp() - 120)  # taken by an executor that died
    caller = Caller.of(ports.tenants.get("acme"))
    assert cancel_job(ports, caller, job.job_id).cancel_requested_at is not None
    other, _ = submit_query(ports, caller, sql="select 1", parameters=[], fmt=ResultFormat.JSON)
    assert execute_job(ports, lifecycle.queued_message(other), first_delivery=True).status is JobStatus.SUBMITTED
    assert execute_job(ports, lifecycle.queued_message(job)) is None  # redelivered at the cap: in line
    get = _record_a_statement_behind_the_runs_read(ports, monkeypatch, job.job_id)
    summary = reconcile(ports, now=utcnow() + timedelta(minutes=5))
    _assert_left_to_its_statement(ports, summary, job.job_id, JobStatus.QUEUED, get)


def test_a_collection_cut_short_in_time_leaves_the_jobs_after_it_to_the_rest_of_the_run():
    """A job whose result collection ran out of the invocation's time (OutOfTime) ends its part of the sweep as
    out_of_time, not throttled; the jobs after it are still looked at in the same run once the bulk sweep is done,
    and the cut one is not looked at twice."""
    jobs, warehouse = running_jobs(3)
    asked = []

    def describe(statement_id):
        asked.append(statement_id)
        if statement_id == "s0":
            raise OutOfTime("collecting the result of s0 would outlast the invocation")
        return StatementInfo(statement_id=statement_id, status="STARTED")

    warehouse.describe = describe
    summary = reconcile(FakePorts(jobs, warehouse), now=NOW)
    assert (summary.out_of_time, summary.throttled, summary.more_pending) == (True, False, True)
    assert asked == ["s0", "s1", "s2"]
    assert (summary.checked, summary.still_running, summary.errors) == (3, 2, 0), summary.as_dict()


def test_a_tenant_refusal_in_line_racing_the_record_of_its_statement_leaves_the_job_to_it(monkeypatch):
    """A job in line on a paused tenant since deactivated fails tenant_inactive at the reconciler's look, but not
    when, since it read the job, a statement an earlier attempt started was recorded on it: that statement ran, and
    'tenant_inactive' with a "Job Failed" event would say the job never did."""
    from spectra import tenant_cache

    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme", max_running_statements=0)
    message = queued_query(ports)
    assert execute_job(ports, message) is None  # in line: the tenant is paused
    ports.tenants.set_active("acme", False)
    tenant_cache.forget(ports.tenants)
    get = _record_a_statement_behind_the_runs_read(ports, monkeypatch, message.job_id)
    summary = reconcile(ports, now=utcnow() + timedelta(minutes=6))
    _assert_left_to_its_statement(ports, summary, message.job_id, JobStatus.QUEUED, get)
