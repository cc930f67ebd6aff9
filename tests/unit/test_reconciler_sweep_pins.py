"""Reconciler sweep behaviour no test held before (found by a second mutation run over spectra/reconciliation.py): a
run given no clock, as the scheduled function calls it, sweeps by the current time; with a deadline, query jobs take
the first half of the run, the bulk sweep runs on to the deadline, and the query jobs the first half left are looked
at after it, each once; a cancel at the hour racing the record of the job's statement does not land; a collection
that fails while a late event completes the job is counted skipped, not as an error."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from events import JobStatus
from spectra import lifecycle, reconciliation
from spectra.bulk import reconcile as bulk_reconcile
from spectra.jobs import Job, new_job_id, utcnow
from spectra.lifecycle import complete_statement
from spectra.reconciliation import reconcile
from spectra.warehouse import Column
from tests.unit.fakes import make_ports, make_settings
from tests.unit.test_reconciler import _an_hour_old_insert
from tests.unit.test_reconciler_fairness import bulk_queued, query_job
from tests.unit.test_reconciliation_pins import _assert_left_to_its_statement, _record_a_statement_behind_the_runs_read

pytestmark = pytest.mark.unit


def _lost_message(ports, *, minutes_ago: int) -> Job:
    """A QUEUED query job of tenant acme made ``minutes_ago`` minutes ago whose queue message was lost."""
    created = utcnow() - timedelta(minutes=minutes_ago)
    job = Job(
        job_id=new_job_id(),
        tenant_id="acme",
        db_user="tenant_acme",
        sql="select 1",
        created_at=created,
        updated_at=created,
    )
    ports.jobs.create(job)
    return job


def test_a_run_given_no_clock_sweeps_by_the_current_time():
    """The scheduled function calls reconcile without ``now``: the run reads the current time, so a QUEUED job whose
    message was lost 10 minutes ago is re-queued (its message sent again), and one made a moment ago is not yet
    looked at."""
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    lost = _lost_message(ports, minutes_ago=10)
    _lost_message(ports, minutes_ago=0)

    summary = reconcile(ports)

    assert (summary.checked, summary.requeued) == (1, 1), summary.as_dict()
    assert [m.job_id for m in ports.queue.messages] == [lost.job_id]
    assert ports.jobs.get(lost.job_id).status is JobStatus.QUEUED


def _each_look_costs_a_tick(monkeypatch) -> list[tuple[str, str]]:
    """time.monotonic stands still except that each job looked at (query or bulk) moves it one tick on; returns the
    (kind, job id) of each look, in order."""
    clock, looks = [0], []
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])

    def costing(kind, real):
        def look(ports, job, *args):
            looks.append((kind, job.job_id))
            clock[0] += 1
            return real(ports, job, *args)

        return look

    monkeypatch.setattr(reconciliation, "_reconcile_job", costing("query", reconciliation._reconcile_job))
    monkeypatch.setattr(bulk_reconcile, "_reconcile", costing("bulk", bulk_reconcile._reconcile))
    return looks


@pytest.fixture
def ports():
    ports = make_ports(settings=make_settings(tenant_max_running_statements=100))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    return ports


def test_query_jobs_take_the_first_half_of_a_run_and_the_bulk_sweep_the_rest(ports, monkeypatch):
    """With more query and bulk jobs overdue than a run of 20 ticks can look at (one tick a look), the query sweep
    looks at 10 query jobs (half the run), the bulk sweep at 10 bulk jobs (up to the deadline), and no time is left
    for the other query jobs: the run says out_of_time and more_pending."""
    for _ in range(15):
        query_job(ports)  # long statements, their events lost
    for _ in range(15):
        bulk_queued(ports)  # queue messages lost
    looks = _each_look_costs_a_tick(monkeypatch)

    summary = reconcile(ports, now=utcnow() + timedelta(minutes=10), deadline=20)

    assert [kind for kind, _ in looks] == ["query"] * 10 + ["bulk"] * 10
    assert (summary.checked, summary.out_of_time, summary.more_pending) == (20, True, True), summary.as_dict()


def test_query_jobs_the_first_half_left_are_looked_at_after_the_bulk_sweep_each_once(ports, monkeypatch):
    """With 20 query jobs overdue, 2 bulk jobs and a run of 30 ticks (one tick a look): the first half looks at 15
    query jobs, the bulk sweep at its 2, and the 5 query jobs left are looked at after it; each query job is looked at
    exactly once, and the run, having reached every job, is neither out_of_time nor more_pending."""
    for _ in range(20):
        query_job(ports)
    for _ in range(2):
        bulk_queued(ports)
    looks = _each_look_costs_a_tick(monkeypatch)

    summary = reconcile(ports, now=utcnow() + timedelta(minutes=10), deadline=30)

    assert [kind for kind, _ in looks] == ["query"] * 15 + ["bulk"] * 2 + ["query"] * 5
    query_ids = [job_id for kind, job_id in looks if kind == "query"]
    assert len(set(query_ids)) == 20
    assert (summary.checked, summary.out_of_time, summary.more_pending) == (22, False, False), summary.as_dict()


def test_a_cancel_at_the_hour_racing_the_record_of_its_statement_leaves_the_job_to_it(monkeypatch):
    """The reconciler read an hour-old SUBMITTED job without a statement whose cancel was asked (202), to end it
    CANCELLED as asked; meanwhile another executor's attempt recorded the statement it started. The cancel, which
    would say nothing of the job ran, does not land: the job keeps its statement (its completion or cancel ends it)."""
    ports = make_ports()
    job = _an_hour_old_insert(ports)
    ports.jobs.update(job.job_id, [JobStatus.QUEUED], status=JobStatus.SUBMITTED, cancel_requested_at=utcnow())
    get = _record_a_statement_behind_the_runs_read(ports, monkeypatch, job.job_id)

    summary = reconcile(ports, now=utcnow() + timedelta(seconds=5))

    _assert_left_to_its_statement(ports, summary, job.job_id, JobStatus.SUBMITTED, get)


def test_a_collection_failing_while_a_late_event_completes_the_job_is_skipped_not_an_error(ports, monkeypatch):
    """The run's collection of a finished statement's result fails (S3 refused a part) while a late copy of the status
    event collects it fine and completes the job: the run's failed attempt finds the job moved on and leaves it to that
    copy. The run counts the job skipped, neither completed by it nor among its errors (ReconcileErrors, alarmed)."""
    job = query_job(ports)
    change = ports.warehouse.finish(job.statement_id, columns=[Column("n", "int4")], pages=["1\n"], rows=1)
    real_collect, calls = lifecycle.collect_result, []

    def collect(ports_, job_, statement_id, info=None):
        calls.append(info)
        if len(calls) == 1:  # the run's attempt
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "PutObject")
        return real_collect(ports_, job_, statement_id, info)

    monkeypatch.setattr(lifecycle, "collect_result", collect)
    real_count = ports.jobs.count_result_attempt

    def late_event_then_count(job_id):
        complete_statement(ports, change)  # the late status event's copy, handled meanwhile
        return real_count(job_id)

    monkeypatch.setattr(ports.jobs, "count_result_attempt", late_event_then_count)

    summary = reconcile(ports, now=utcnow() + timedelta(minutes=2))

    assert (summary.checked, summary.completed, summary.skipped, summary.errors) == (1, 0, 1, 0), summary.as_dict()
    assert ports.jobs.get(job.job_id).status is JobStatus.COMPLETED
    assert ports.events.types() == ["Job Completed"]
