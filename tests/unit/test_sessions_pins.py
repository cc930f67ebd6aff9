"""Data API session behaviour no test held before (found by mutation testing spectra/sessions.py): sessions turned
off with some still pooled, a redelivered message among several idle sessions, a cancel while a statement starts
with no session left in the account, and the expiry README gives a pooled session."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from events import JobStatus
from spectra import sessions
from spectra.errors import Throttled
from spectra.lifecycle import complete_statement, execute_job
from spectra.slots import Claim
from spectra.warehouse import Column
from tests.unit.fakes import make_ports, make_settings
from tests.unit.test_sessions import cancelled_while_starting, queued, run

pytestmark = pytest.mark.unit


def _acme(**settings):
    """In-memory ports with one tenant, acme, running as its database user."""
    ports = make_ports(settings=make_settings(**settings)) if settings else make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    return ports


@pytest.fixture
def ports():
    return _acme()


def _complete(ports, job, **kwargs):
    change = ports.warehouse.finish(job.statement_id, columns=[Column("n", "int4")], pages=["1\n"])
    return complete_statement(ports, change, **kwargs)


def _complete_a_second_apart(ports, monkeypatch, first, second) -> None:
    """Complete ``first``, then ``second`` a second later by the clock, so their sessions' expiries differ (without
    sleeping)."""
    now = time.time()
    for offset, job in enumerate((first, second)):
        monkeypatch.setattr(time, "time", lambda offset=offset: now + offset)
        _complete(ports, job)
    monkeypatch.undo()


def test_sessions_turned_off_leave_the_pooled_ones_unused(ports):
    """README: SessionKeepAliveSeconds 0 turns sessions off. A pool filled before the change still holds idle
    sessions, and this process remembers them: the next statement runs on its own connection all the same."""
    pooled = run(ports).session_id
    assert pooled in ports.slots.sessions("acme")
    off = replace(ports, settings=make_settings(session_keep_alive_seconds=0))
    job = run(off)
    assert job.status is JobStatus.COMPLETED and job.session_id is None
    assert ports.warehouse.session_of(job.statement_id) is None
    assert ports.slots.sessions("acme")[pooled].job_id is None  # not leased either


def test_a_redelivered_message_runs_in_the_session_it_leased_not_another_idle_one(ports, monkeypatch):
    """Two idle sessions: the throttled first delivery leased one, and its redelivery must take that one again
    rather than lease the other as well (the first would stay leased by the job after its end, open at the Data
    API and unusable until pruned)."""
    first, second = execute_job(ports, queued(ports)), execute_job(ports, queued(ports))
    _complete_a_second_apart(ports, monkeypatch, first, second)  # the later expiry is leased first
    message = queued(ports)
    ports.warehouse.throttle_next()
    with pytest.raises(Exception, match="Rate exceeded"):
        execute_job(ports, message)
    [leased] = [s.session_id for s in ports.slots.sessions("acme").values() if s.job_id == message.job_id]
    job = execute_job(ports, message)
    assert job.session_id == leased == ports.warehouse.session_of(job.statement_id)
    _complete(ports, job)
    pool = ports.slots.sessions("acme")
    assert set(pool) == {first.session_id, second.session_id} and all(s.job_id is None for s in pool.values())


def test_a_statement_run_without_a_session_leaves_the_pool_empty_when_its_job_is_cancelled_meanwhile(ports):
    """No session left in the account (ActiveSessionsExceededException): the statement runs on its own connection.
    A DELETE served while it starts has the executor give back the session its statement runs in: there is none,
    so the pool stays empty, and the job records no session."""
    ports.warehouse.max_sessions = 0
    message = queued(ports)
    with cancelled_while_starting(ports):
        assert execute_job(ports, message) is None
    assert ports.slots.sessions("acme") == {}
    cancelled = ports.jobs.get(message.job_id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.session_id is None
    assert cancelled.session_identity is None


@pytest.mark.parametrize(("keep_alive", "pooled_for"), [(300, 285.0), (4, 3.0)])
def test_a_pooled_sessions_expiry_is_its_statements_end_plus_the_keep_alive_less_the_margin(keep_alive, pooled_for):
    """README: the pool records the keep-alive's end on the early side, end of statement + keep-alive - 15 s, the
    margin at most a quarter of the keep-alive (15 s would leave a 4 s session expired as it is pooled)."""
    ports = _acme(session_keep_alive_seconds=keep_alive)
    job = execute_job(ports, queued(ports))
    ended = time.time() - 1  # the status event's time, a second before its handling
    _complete(ports, job, ended_at=ended)
    assert ports.slots.sessions("acme")[job.session_id].until == pytest.approx(ended + pooled_for, abs=1e-6)


def _refused_then_throttled(ports, details):
    """The pooled session is dead at the Data API (the pool cannot know) and the start without it is throttled."""
    run(ports)
    [pooled] = ports.slots.sessions("acme").values()
    ports.warehouse.end_session(pooled.session_id)
    start, starts = ports.warehouse.start, []

    def throttled_without_the_session(sql, **request):
        starts.append(request.get("session_id"))
        if len(starts) == 2:
            raise Throttled("Redshift Data API: too busy", details=details)
        return start(sql, **request)

    ports.warehouse.start = throttled_without_the_session
    return pooled


def test_a_full_warehouse_met_after_a_refused_session_lets_the_job_wait_on_its_last_delivery(ports):
    """The start without the refused session meets a full warehouse on the message's last delivery: the job waits
    QUEUED for capacity, as any job meeting a full warehouse does, rather than failing warehouse_unavailable (the
    error code the Data API gave must survive the lease's being marked dropped)."""
    pooled = _refused_then_throttled(ports, {"aws_error": "ActiveStatementsExceededException"})
    message = queued(ports)
    assert execute_job(ports, message, final_attempt=True) is None
    job = ports.jobs.get(message.job_id)
    assert job.status is JobStatus.QUEUED and job.error is None
    assert pooled.session_id not in ports.slots.sessions("acme")


def test_a_throttle_with_no_details_after_a_refused_session_is_retried_as_a_throttle(ports):
    """A Throttled carrying no details (a plain rate limit) after the refused session: the executor still raises
    Throttled, so SQS redelivers the message; the job stays QUEUED and keeps no lease of the dropped session."""
    pooled = _refused_then_throttled(ports, None)
    message = queued(ports)
    with pytest.raises(Throttled):
        execute_job(ports, message)
    assert ports.jobs.get(message.job_id).status is JobStatus.QUEUED
    assert pooled.session_id not in ports.slots.sessions("acme")


def test_a_session_is_still_leased_a_minute_before_22_hours_and_never_after(ports, monkeypatch):
    """README: a pooled session's expiry never passes 22 hours after it opened (the Data API closes it at 24)."""
    ports = replace(ports, settings=make_settings(session_keep_alive_seconds=86400))
    first = run(ports)
    opened = ports.slots.pools["acme"][first.session_id].opened
    monkeypatch.setattr(sessions.time, "time", lambda: opened + 22 * 3600 - 60)
    assert run(ports).session_id == first.session_id
    assert ports.slots.pools["acme"][first.session_id].until == opened + 22 * 3600
    monkeypatch.setattr(sessions.time, "time", lambda: opened + 22 * 3600 + 1)
    assert run(ports).session_id != first.session_id


def test_a_claim_prunes_long_expired_idle_sessions_but_not_one_a_running_statement_holds(ports, monkeypatch):
    """Pruning takes idle entries a minute past their keep-alive; a session leased by a statement still running
    (its recorded expiry passed while it ran) stays in the pool, leased, and goes back idle at its end."""
    a, b = execute_job(ports, queued(ports)), execute_job(ports, queued(ports))
    _complete_a_second_apart(ports, monkeypatch, a, b)
    running = execute_job(ports, queued(ports))  # leases b's session, the one used last
    assert running.session_id == b.session_id
    later = time.time() + ports.settings.session_keep_alive_seconds + 3600  # both entries long expired
    monkeypatch.setattr(sessions.time, "time", lambda: later)
    execute_job(ports, queued(ports))  # a second job's claim prunes a's idle session, not the busy one
    pool = ports.slots.sessions("acme")
    assert a.session_id not in pool and pool[b.session_id].job_id == running.job_id
    monkeypatch.undo()
    _complete(ports, running)
    assert ports.slots.sessions("acme")[b.session_id].job_id is None


def test_a_session_expired_in_this_processs_view_too_is_not_asked_for(ports, monkeypatch):
    """README: a session past its recorded expiry is not asked for. Its keep-alive long over (in the pool and in
    what this process remembers alike), the next job's claim is one write that takes the slot without it."""
    idle = run(ports).session_id
    later = time.time() + ports.settings.session_keep_alive_seconds + 1
    monkeypatch.setattr(sessions.time, "time", lambda: later)
    writes = ports.slots.writes
    job = execute_job(ports, queued(ports))
    assert ports.slots.writes - writes == 1 and job.session_id != idle


def test_a_claim_prunes_idle_entries_a_minute_past_their_expiry_and_ones_a_vanished_job_leased(ports):
    """README: idle entries a minute past their keep-alive are pruned by later claims; so is one leased by a job that
    no longer holds a slot (no release will come for it). One less than a minute past stays."""
    jobs = [execute_job(ports, queued(ports)) for _ in range(3)]
    for job in jobs:
        _complete(ports, job)
    minute_past, just_expired, orphaned = (job.session_id for job in jobs)
    now = time.time()
    pool = ports.slots.pools["acme"]
    pool[minute_past] = replace(pool[minute_past], until=now - 60.5)
    pool[just_expired] = replace(pool[just_expired], until=now - 59.5)
    pool[orphaned] = replace(pool[orphaned], until=now - 3600, job_id="j_gone")  # its job's slot is gone
    view = Claim(taken=True, sessions=ports.slots.sessions("acme"), holders=ports.slots.holders("acme"))
    sessions._views[ports.slots] = {"acme": view}
    job = execute_job(ports, queued(ports))
    assert set(ports.slots.sessions("acme")) == {just_expired}  # the job opened its own, pooled at its end
    assert job.session_id not in {minute_past, just_expired, orphaned}


def test_a_process_that_knew_nothing_of_the_pool_does_not_ask_for_a_busy_session(ports):
    """A process with no view of the pool takes the slot first and leases from the write's answer, the truth: with
    the tenant's only session busy, that is the one write, and the job opens a session of its own."""
    run(ports)
    busy = execute_job(ports, queued(ports))  # leases the tenant's one pooled session
    assert busy.session_id in ports.slots.sessions("acme")
    sessions._views.pop(ports.slots, None)  # another executor environment, new to this tenant
    writes = ports.slots.writes
    job = execute_job(ports, queued(ports))
    assert ports.slots.writes - writes == 1 and job.session_id not in (None, busy.session_id)
