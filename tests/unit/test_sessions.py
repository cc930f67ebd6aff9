"""Data API sessions (spectra/sessions.py) on in-memory ports: reuse per tenant identity, one statement at a time,
dropped when the service refuses them, returned when the statement ends."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta

import pytest

from events import JobQueuedMessage, JobStatus
from spectra import sessions, share
from spectra.errors import Throttled
from spectra.jobs import Job, new_job_id, utcnow
from spectra.lifecycle import complete_statement, execute_job, finish_job, queued_message
from spectra.reconciliation import reconcile
from spectra.slots import Claim, PooledSession
from spectra.warehouse import Column, DatabaseIdentity
from tests.unit.fakes import make_ports, make_settings

pytestmark = pytest.mark.unit


@pytest.fixture
def ports():
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.tenants.create_tenant("globex", db_user="tenant_globex")
    return ports


def queued(ports, tenant: str = "acme", sql: str = "select 1") -> JobQueuedMessage:
    now = utcnow()
    job = Job(
        job_id=new_job_id(), tenant_id=tenant, db_user=f"tenant_{tenant}", sql=sql, created_at=now, updated_at=now
    )
    ports.jobs.create(job)
    return JobQueuedMessage(job_id=job.job_id, tenant_id=tenant)


def run(ports, tenant: str = "acme") -> Job:
    """One job from the queue to its end."""
    job = execute_job(ports, queued(ports, tenant))
    assert job is not None and job.statement_id
    change = ports.warehouse.finish(job.statement_id, columns=[Column("n", "int4")], pages=["1\n"])
    return complete_statement(ports, change)


def session_of(ports, job: Job) -> str | None:
    return ports.warehouse.session_of(job.statement_id)


def test_a_tenants_sequential_jobs_share_one_session_each_leased_with_its_slot(ports):
    first = run(ports)
    run(ports)  # this process saw no session yet: the claim answers the pool, a second write leases from it
    writes = ports.slots.writes
    later = [run(ports) for _ in range(5)]
    assert len(ports.warehouse.sessions) == 1
    assert {session_of(ports, job) for job in [first, *later]} == {first.session_id}
    assert first.session_id
    # per job: one claim (slot + lease) and one release (slot + session back): no write of its own for the session
    assert ports.slots.writes - writes == 2 * len(later)
    [pooled] = ports.slots.sessions("acme").values()
    assert (pooled.job_id, pooled.identity) == (None, "db_user:tenant_acme")
    assert pooled.until > time.time() + ports.settings.session_keep_alive_seconds - 60


@pytest.mark.parametrize("keep_alive", [4, 10, 15])
def test_a_short_keep_alive_still_shares_one_session(keep_alive):
    """With a keep-alive of 15 s or less, the 15 s margin had every session expired as it went back to the pool:
    each statement opened a session, and the pool item grew with the tenant's job rate (the sessions review)."""
    from tests.unit.fakes import make_ports, make_settings

    ports = make_ports(settings=make_settings(session_keep_alive_seconds=keep_alive))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    jobs = [run(ports) for _ in range(6)]
    assert len(ports.warehouse.sessions) == 1 and len({session_of(ports, job) for job in jobs}) == 1
    [pooled] = ports.slots.sessions("acme").values()
    assert time.time() < pooled.until <= time.time() + keep_alive


def test_the_first_statement_opens_the_session_as_its_tenant_with_the_keep_alive(ports):
    job = run(ports)
    session = ports.warehouse.sessions[job.session_id]
    assert session.identity == DatabaseIdentity(db_user="tenant_acme")
    assert session.keep_alive_seconds == ports.settings.session_keep_alive_seconds
    assert job.session_identity == "db_user:tenant_acme"


def test_two_tenants_never_share_a_session(ports):
    jobs = [run(ports, tenant) for tenant in ["acme", "globex", "acme", "globex", "globex", "acme"]]
    by_tenant: dict[str, set[str]] = {}
    for job in jobs:
        by_tenant.setdefault(job.tenant_id, set()).add(session_of(ports, job))
        statement = ports.warehouse.statements[job.statement_id]
        assert statement.identity == DatabaseIdentity(db_user=f"tenant_{job.tenant_id}")
    assert len(by_tenant["acme"]) == len(by_tenant["globex"]) == 1
    assert not by_tenant["acme"] & by_tenant["globex"]
    assert set(ports.slots.sessions("acme")).isdisjoint(ports.slots.sessions("globex"))


def test_a_busy_session_is_not_shared_while_its_statement_runs(ports):
    run(ports)  # the tenant has one idle session
    running = [execute_job(ports, queued(ports)) for _ in range(3)]
    sessions_used = [session_of(ports, job) for job in running]
    assert len(set(sessions_used)) == 3  # the idle one, then two new ones
    assert all(ports.warehouse.busy(s) for s in sessions_used)
    for job in running:
        complete_statement(ports, ports.warehouse.finish(job.statement_id, columns=[Column("n", "int4")], pages=[]))
    assert sorted(s.job_id or "idle" for s in ports.slots.sessions("acme").values()) == ["idle"] * 3
    assert session_of(ports, run(ports)) in sessions_used  # and they are reused afterwards


def test_a_stale_view_of_a_busy_session_is_refused_by_the_write_and_another_is_chosen(ports):
    """Two executor environments: one's view says the session is idle, the other leased it meanwhile."""
    run(ports)
    [session_id] = ports.slots.sessions("acme")
    # another process leases the session behind this process's back
    other = queued(ports)
    ports.slots.claim("acme", other.job_id, limit=5, lease=ports.slots.sessions("acme")[session_id])
    job = execute_job(ports, queued(ports))
    assert session_of(ports, job) != session_id
    assert ports.slots.sessions("acme")[session_id].job_id == other.job_id


def test_an_expired_session_is_dropped_and_the_statement_runs_in_a_new_one(ports):
    expired = run(ports).session_id
    ports.warehouse.end_session(expired)  # its keep-alive ran out at the Data API, before our estimate
    job = run(ports)
    assert job.status is JobStatus.COMPLETED
    assert job.session_id not in (None, expired)
    assert set(ports.slots.sessions("acme")) == {job.session_id}
    refused = [call for call in ports.warehouse.calls if call[0] == "execute"]
    assert len(refused) == 3  # the first job, the refused try in the expired session, the retry without it


def test_a_session_past_its_recorded_expiry_is_not_asked_for(ports):
    first = run(ports).session_id
    pool = ports.slots.pools["acme"]
    pool[first] = PooledSession(first, pool[first].identity, until=time.time() - 1)
    job = run(ports)
    assert job.session_id != first
    assert len([call for call in ports.warehouse.calls if call[0] == "execute"]) == 2  # no doomed try


def test_a_session_is_retired_before_the_data_apis_24_hours(ports, monkeypatch):
    ports = replace(ports, settings=make_settings(session_keep_alive_seconds=86400))  # a day of keep-alive
    """The Data API closes a session 24 hours after it opened and terminates the statement it runs: a busy tenant's
    session, leased again within every keep-alive, got there with a statement running (found by the Data API review).
    Its opening is kept through the job and the pool; from RETIRE_AFTER_SECONDS on, its statements go elsewhere."""
    first = run(ports)
    opened = ports.slots.pools["acme"][first.session_id].opened
    assert opened is not None and first.session_opened_at == int(opened)
    assert run(ports).session_id == first.session_id  # young: leased again, its opening kept
    assert ports.slots.pools["acme"][first.session_id].opened == opened
    later = opened + sessions.RETIRE_AFTER_SECONDS - 60  # a minute before its retirement
    monkeypatch.setattr(sessions.time, "time", lambda: later)
    last = run(ports)  # still leased (a minute left), and given back no later than its retirement
    assert last.session_id == first.session_id
    assert ports.slots.pools["acme"][first.session_id].until <= opened + sessions.RETIRE_AFTER_SECONDS
    monkeypatch.setattr(sessions.time, "time", lambda: later + 120)
    retired = run(ports)
    assert retired.session_id != first.session_id  # a new session, not the old one at its end


def test_a_session_of_unknown_age_is_not_pooled_again(ports):
    """Pooled, or its job started, before openings were recorded: it may be near the Data API's 24 hours already,
    and leased again within every keep-alive it was never retired (found by the diff review)."""
    first = run(ports)
    pool = ports.slots.pools["acme"]
    pool[first.session_id] = replace(pool[first.session_id], opened=None)  # as the code before wrote it
    again = run(ports)
    assert again.session_id == first.session_id  # leased once more: its keep-alive still runs
    assert ports.slots.pools["acme"][first.session_id].until <= time.time()  # but given back spent
    assert run(ports).session_id != first.session_id


def test_a_tenant_moved_to_another_user_does_not_run_in_its_old_users_session(ports):
    old = run(ports).session_id
    ports.tenants.tenants["acme"] = ports.tenants.tenants["acme"].model_copy(update={"db_user": "tenant_acme_v2"})
    fresh = replace(ports, settings=make_settings(tenant_cache_seconds=0))  # read the moved record at once
    message = queued(fresh)
    job = execute_job(fresh, message)
    statement = fresh.warehouse.statements[job.statement_id]
    assert statement.identity == DatabaseIdentity(db_user="tenant_acme_v2")
    assert job.session_id != old and old not in fresh.slots.sessions("acme")


def test_sessions_off_runs_every_statement_on_its_own_connection():
    ports = make_ports(settings=make_settings(session_keep_alive_seconds=0))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    jobs = [run(ports) for _ in range(3)]
    assert ports.warehouse.sessions == {} and all(job.session_id is None for job in jobs)


def test_with_no_session_left_in_the_account_the_statement_runs_without_one(ports):
    ports.warehouse.max_sessions = 0
    job = run(ports)
    assert job.status is JobStatus.COMPLETED and job.session_id is None
    assert ports.slots.sessions("acme") == {}


def test_a_job_refused_before_it_starts_gives_its_lease_back(ports):
    session_id = run(ports).session_id
    ports.tenants.set_active("acme", False)
    ports = replace(ports, settings=make_settings(tenant_cache_seconds=0))  # past the tenant cache
    message = queued(ports)
    assert execute_job(ports, message) is None
    assert ports.jobs.get(message.job_id).error.code == "tenant_inactive"
    assert ports.slots.sessions("acme")[session_id].job_id is None


def test_a_redelivered_message_finds_the_session_its_job_leased(ports):
    run(ports)
    message = queued(ports)
    ports.warehouse.throttle_next()
    with pytest.raises(Exception, match="Rate exceeded"):
        execute_job(ports, message)
    [leased] = ports.slots.sessions("acme").values()
    assert leased.job_id == message.job_id  # kept for the retry
    job = execute_job(ports, message)
    assert job.session_id == leased.session_id


def test_a_reclaimed_slot_takes_its_lease_along(ports):
    run(ports)
    message = queued(ports)
    [session_id] = ports.slots.sessions("acme")
    ports.slots.claim("acme", message.job_id, limit=5, lease=ports.slots.sessions("acme")[session_id], now=1.0)
    # the executor died there; the job is still QUEUED a lease later
    claim = ports.slots.claim("acme", "j_probe", limit=1)
    assert share.reclaim_slots(ports, "acme", holders={message.job_id: 1.0}, pool=claim.sessions) == 1
    assert session_id not in ports.slots.sessions("acme")


def test_identity_keys_tell_users_and_secrets_apart():
    assert sessions.identity_key(DatabaseIdentity(db_user="tenant_a")) == "db_user:tenant_a"
    secret = "arn:aws:secretsmanager:us-east-1:0:secret:spectra/tenants/a-Xy"
    assert sessions.identity_key(DatabaseIdentity(secret_arn=secret)) == f"secret:{secret}"


def test_a_redelivered_message_of_a_running_job_gives_back_the_idle_session_its_claim_leased(ports):
    run(ports)  # s1 opened, and idle in the pool once its job ended
    first = execute_job(ports, queued(ports))  # leases s1
    second_message = queued(ports)
    second = execute_job(ports, second_message)  # opens s2 (in the pool only once it ends)
    complete_statement(ports, ports.warehouse.finish(first.statement_id, columns=[Column("n", "int4")], pages=["1\n"]))
    assert execute_job(ports, second_message) is None  # its message again, while it runs in s2: nothing to start
    assert all(s.job_id is None for s in ports.slots.sessions("acme").values())  # s1 is idle, not leased by it
    assert set(ports.slots.holders("acme")) == {second.job_id}
    complete_statement(ports, ports.warehouse.finish(second.statement_id, columns=[Column("n", "int4")], pages=["1\n"]))
    pool = ports.slots.sessions("acme")
    assert len(pool) == 2 and all(s.job_id is None for s in pool.values())


def test_jobs_cancelled_before_their_first_delivery_leave_no_session_open_beside_the_pool(ports):
    """A read job's first delivery starts from the job in its message, so one the tenant cancelled while the message
    waited still reaches ExecuteStatement; the refused QUEUED -> SUBMITTED write then cancels the statement. Its
    session was dropped, or never pooled: it stayed open at the Data API for its keep-alive, one per job, so a
    loop of submit and DELETE opened sessions past the tenant's cap and into the account's quota. It goes back to
    the pool, idle, and the next such job leases it."""
    cap = ports.settings.tenant_max_running_statements
    for _ in range(cap * 4):
        message = queued(ports)
        job = ports.jobs.get(message.job_id)
        carried = queued_message(job)  # what the API sends: the job rides in the message
        finish_job(ports, job, JobStatus.CANCELLED)  # DELETE /v1/jobs/<id> while the message waits
        assert execute_job(ports, carried, first_delivery=True, sent_at=job.created_at) is None
    open_sessions = {s for s, session in ports.warehouse.sessions.items() if not session.ended}
    assert len(open_sessions) == 1 and set(ports.slots.sessions("acme")) == open_sessions
    assert run(ports).session_id in open_sessions  # and the next job runs in it


@contextmanager
def cancelled_while_starting(ports):
    """Within: each job is cancelled (DELETE /v1/jobs/<id>) while ExecuteStatement starts its statement."""
    start = ports.warehouse.start

    def start_then_cancelled(sql, **kwargs):
        started = start(sql, **kwargs)
        finish_job(ports, ports.jobs.get(kwargs["name"]), JobStatus.CANCELLED)
        return started

    ports.warehouse.start = start_then_cancelled
    try:
        yield
    finally:
        ports.warehouse.start = start


def test_a_job_cancelled_while_its_statement_starts_leaves_no_session_open_beside_the_pool(ports):
    """A DELETE served while ExecuteStatement ran frees the job's slot knowing nothing of its session, so a put back
    with the slot found no holder and the session stayed open at the Data API, one per such job."""
    with cancelled_while_starting(ports):
        for _ in range(ports.settings.tenant_max_running_statements * 4):
            assert execute_job(ports, queued(ports)) is None
    open_sessions = {s for s, session in ports.warehouse.sessions.items() if not session.ended}
    idle = {s for s, pooled in ports.slots.sessions("acme").items() if pooled.job_id is None}
    assert len(open_sessions) == 1 and open_sessions == idle


def _dies_before_recording(ports, message: JobQueuedMessage) -> None:
    """An attempt that calls ExecuteStatement and dies before its SUBMITTED write (the function timed out)."""
    transition = ports.jobs.transition

    def die(*args, **kwargs):
        raise RuntimeError("function timed out")

    ports.jobs.transition = die
    try:
        with pytest.raises(RuntimeError):
            execute_job(ports, message)
    finally:
        ports.jobs.transition = transition


def test_a_session_an_earlier_attempt_opened_as_the_tenants_old_user_is_never_pooled(ports):
    """The retry's ClientToken answers the dead attempt's statement, in the session it opened as the tenant's old
    database user. Pooled under the new identity, it ran the tenant's next jobs as the old user for up to 22 hours
    (sessions review): a move to another user is how an administrator revokes the old one's grants."""
    ports = replace(ports, settings=make_settings(tenant_cache_seconds=0))
    message = queued(ports)
    _dies_before_recording(ports, message)
    [first_session] = ports.warehouse.sessions
    ports.tenants.update_tenant("acme", db_user="tenant_acme_v2")
    job = execute_job(ports, message)  # the message comes back
    assert job.statement_id and job.session_id is None  # the statement runs where it ran; the job records no session
    complete_statement(ports, ports.warehouse.finish(job.statement_id, columns=[Column("n", "int4")], pages=[]))
    assert first_session not in ports.slots.sessions("acme")
    later = run(ports)
    assert ports.warehouse.statements[later.statement_id].identity == DatabaseIdentity(db_user="tenant_acme_v2")
    assert later.session_id != first_session


def test_a_lease_the_answered_statement_does_not_run_in_goes_back_idle(ports):
    """The retry leased an idle session, and the ClientToken answered the dead attempt's statement in another one: the
    job recorded the lease, which stayed leased while idle and went back at the job's end (sessions review)."""
    first, _busy = execute_job(ports, queued(ports)), execute_job(ports, queued(ports))
    message = queued(ports)  # no idle session: the dead attempt opens one of its own
    _dies_before_recording(ports, message)
    complete_statement(ports, ports.warehouse.finish(first.statement_id, columns=[Column("n", "int4")], pages=[]))
    job = execute_job(ports, message)
    assert ports.warehouse.session_of(job.statement_id) not in (None, first.session_id)
    assert job.session_id is None
    assert ports.slots.sessions("acme")[first.session_id].job_id is None  # the lease is back, idle
    assert session_of(ports, run(ports)) == first.session_id  # and serves the next job


class _OtherEnvironment:
    """The same slots table seen from another executor environment (what each remembers of the pool is per port)."""

    def __init__(self, shared) -> None:
        self._shared = shared

    def __getattr__(self, name):
        return getattr(self._shared, name)


def test_two_copies_leasing_two_sessions_never_give_back_the_one_the_statement_runs_in(ports):
    """Two copies of a job's message at once, in environments remembering the pool otherwise, lease S1 and S2. A's
    statement starts in S1; B's ClientToken gets it back (S2 goes back idle) and B records the job with no session;
    A, refused, gave S1 back idle, with the statement running in it, and the tenant's next job was handed the busy
    session (found by the concurrency review). S1 stays leased."""
    older, newer = execute_job(ports, queued(ports)), execute_job(ports, queued(ports))
    for job in (older, newer):  # two idle sessions: a fresh claim leases the later one's (S2)
        complete_statement(ports, ports.warehouse.finish(job.statement_id, columns=[Column("n", "int4")], pages=[]))
        time.sleep(0.01)
    s1, s2 = older.session_id, newer.session_id
    a, b = replace(ports, slots=_OtherEnvironment(ports.slots)), replace(ports, slots=_OtherEnvironment(ports.slots))
    pool = ports.slots.sessions("acme")
    busy_s2 = replace(pool[s2], job_id="j_other")  # A last saw S2 busy: it leases S1
    sessions._views[a.slots] = {"acme": Claim(taken=True, sessions={s1: pool[s1], s2: busy_s2})}
    message = queued(ports)
    b_in_start, a_started, b_recorded = threading.Event(), threading.Event(), threading.Event()
    starting, recording = ports.warehouse.start, ports.jobs.transition

    def start(sql, **request):
        if threading.current_thread().name == "B":  # B has claimed (leasing S2): A claims and starts meanwhile
            b_in_start.set()
            a_started.wait(5)
        started = starting(sql, **request)
        a_started.set()
        return started

    def transition(job_id, status, **changes):
        if threading.current_thread().name == "A":
            b_recorded.wait(5)  # B records first: the statement, which its ClientToken answered in S1, and no session
        recorded = recording(job_id, status, **changes)
        if threading.current_thread().name == "B":
            b_recorded.set()
        return recorded

    ports.warehouse.start, ports.jobs.transition = start, transition
    outcomes: dict[str, Job | None] = {}
    b_copy = threading.Thread(name="B", target=lambda: outcomes.update(B=execute_job(b, message)))
    a_copy = threading.Thread(name="A", target=lambda: outcomes.update(A=execute_job(a, message)))
    b_copy.start()
    assert b_in_start.wait(5)
    a_copy.start()
    a_copy.join(10), b_copy.join(10)
    ports.warehouse.start, ports.jobs.transition = starting, recording
    assert outcomes["A"] is None and outcomes["B"].session_id is None
    assert ports.warehouse.session_of(outcomes["B"].statement_id) == s1
    assert ports.slots.sessions("acme")[s1].job_id == message.job_id  # still leased: not handed out while busy
    assert ports.slots.sessions("acme")[s2].job_id is None
    assert session_of(ports, execute_job(ports, queued(ports))) != s1


def test_a_pooled_session_an_earlier_attempt_ran_in_is_not_pooled_again_under_the_new_user(ports):
    """The dead attempt ran in pooled session S1 (opened as the old user). The retry's lease of S1 is dropped (another
    identity now), and the fresh start's ClientToken answers S1's statement, whose answer names no user (its request
    named only the session): taken for the new user's, S1 was pooled under it (diff review)."""
    ports = replace(ports, settings=make_settings(tenant_cache_seconds=0))
    s1 = run(ports).session_id
    message = queued(ports)
    _dies_before_recording(ports, message)
    assert ports.warehouse.session_of(ports.warehouse._by_token[message.job_id]) == s1
    ports.tenants.update_tenant("acme", db_user="tenant_acme_v2")
    job = execute_job(ports, message)
    assert job.session_id is None
    complete_statement(ports, ports.warehouse.finish(job.statement_id, columns=[Column("n", "int4")], pages=[]))
    assert s1 not in ports.slots.sessions("acme")
    later = run(ports)
    assert ports.warehouse.statements[later.statement_id].identity == DatabaseIdentity(db_user="tenant_acme_v2")


PARTIAL_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:spectra/tenant/initech"


@pytest.mark.parametrize(
    "answered",
    [
        # an answer naming a user besides the secret made every session unpoolable, silently (diff review)
        DatabaseIdentity(db_user="initech_user", secret_arn=PARTIAL_ARN),
        # a partial ARN (the tenant's), answered in full: one secret, one spelling (diff review)
        DatabaseIdentity(secret_arn=PARTIAL_ARN + "-AbCdEf"),
    ],
    ids=["a-user-besides", "the-arn-in-full"],
)
def test_a_secret_tenants_session_is_pooled_when_the_answer_names_its_secret(answered):
    """Only the field the identity is made of is compared, in any of its spellings."""
    settings = make_settings(redshift_cluster_id="", redshift_workgroup="wg", tenant_secret_prefix="spectra/tenant/")
    ports = make_ports(settings=settings)
    ports.tenants.create_tenant("initech", secret_arn=PARTIAL_ARN)
    real = ports.warehouse.start

    def start(sql, **request):
        started = real(sql, **request)
        return started if started.identity is None else replace(started, identity=answered)

    ports.warehouse.start = start
    jobs = [run(ports, "initech") for _ in range(3)]
    assert len({session_of(ports, job) for job in jobs}) == 1


@pytest.mark.parametrize("ender", ["delete", "reconciler_gives_up"])
def test_a_job_ended_between_the_executors_claim_and_its_read_gives_its_lease_back(ports, monkeypatch, ender):
    """A redelivered message claims the slot and leases a session, then reads the job: a DELETE (or the reconciler's
    give-up) in between freed that slot knowing nothing of the lease, and the release that should have given it back
    was refused with the slot: it stayed leased by an ended job until pruned (races review)."""
    [s1] = {run(ports).session_id}
    message = queued(ports)
    take_slot = share.take_slot

    def take_then_end(p, msg):
        claim = take_slot(p, msg)
        assert claim.session is not None and claim.session.session_id == s1
        job = p.jobs.get(msg.job_id)
        if ender == "delete":
            finish_job(p, job, JobStatus.CANCELLED)
        else:
            finish_job(p, job, JobStatus.FAILED, unstarted=True)
        return claim

    monkeypatch.setattr(share, "take_slot", take_then_end)
    assert execute_job(ports, message, first_delivery=False) is None
    assert not ports.slots.holders("acme")
    assert ports.slots.sessions("acme")[s1].job_id is None


def test_a_last_attempt_that_loses_to_another_copy_gives_its_lease_back(ports):
    """The queue's last delivery leased a session and was throttled; meanwhile another copy, leasing another session,
    started and recorded the statement: the give-up was refused (the job runs) and kept its lease (races review)."""
    from spectra.errors import Throttled
    from spectra.slots import Claim

    first, second = execute_job(ports, queued(ports)), execute_job(ports, queued(ports))
    for job in (second, first):
        complete_statement(ports, ports.warehouse.finish(job.statement_id, columns=[Column("n", "int4")], pages=[]))
    message = queued(ports)
    start = ports.warehouse.start

    def another_copy_wins(sql, **request):
        ports.warehouse.start = start
        # the other copy runs in another executor, whose view of the pool shows only the other session idle
        mine = request["session_id"]
        other = next(s for s in ports.slots.sessions("acme").values() if s.session_id != mine)
        sessions._views.setdefault(ports.slots, {})["acme"] = Claim(taken=True, sessions={other.session_id: other})
        assert execute_job(ports, message).session_id == other.session_id
        raise Throttled("Redshift Data API: ThrottlingException: Rate exceeded")

    ports.warehouse.start = another_copy_wins
    assert execute_job(ports, message, final_attempt=True) is None
    job = ports.jobs.get(message.job_id)
    assert job.status is JobStatus.SUBMITTED
    leased = {s.session_id: s.job_id for s in ports.slots.sessions("acme").values()}
    assert list(leased.values()).count(job.job_id) == 1 and leased[job.session_id] == job.job_id


def test_a_refused_session_is_not_put_back_when_the_start_without_it_is_throttled_on_the_last_attempt(ports):
    """The sessions review: the lease the Data API refused was dropped, the start without it was throttled on the
    job's last delivery, and the job's ending gave the dropped session back to the pool as idle (with its old expiry):
    the next job leased a dead session, was refused, and dropped it again."""
    run(ports)
    [pooled] = ports.slots.sessions("acme").values()
    ports.warehouse.end_session(pooled.session_id)  # its keep-alive ran out at the Data API; the pool cannot know
    start, starts = ports.warehouse.start, []

    def throttled_without_the_session(sql, **options):
        starts.append(options.get("session_id"))
        if len(starts) == 2:  # the start without the refused session
            raise Throttled("Rate exceeded", details={"aws_error": "ThrottlingException"})
        return start(sql, **options)

    ports.warehouse.start = throttled_without_the_session
    message = queued(ports)
    assert execute_job(ports, message, final_attempt=True) is None
    assert starts == [pooled.session_id, None]
    assert ports.jobs.get(message.job_id).error.code == "warehouse_unavailable"
    assert pooled.session_id not in ports.slots.sessions("acme")


def test_a_sessions_expiry_counts_from_its_statements_end_not_from_the_collections(ports, monkeypatch):
    """The sessions review: the pool counted the keep-alive from the job's completion, after the result's collection
    (a large one takes minutes), where the Data API counts it from the statement's end: the pool said alive a
    session closed since. The reconciler, which cannot tell when the statement ended, does not pool it again."""
    import types

    job = execute_job(ports, queued(ports))
    change = ports.warehouse.finish(job.statement_id, columns=[Column("n", "int4")], pages=["1\n"])
    handled = time.time()
    monkeypatch.setattr(sessions, "time", types.SimpleNamespace(time=lambda: time.time() + 600))  # 10 min later
    complete_statement(ports, change)
    [pooled] = ports.slots.sessions("acme").values()
    assert pooled.until <= handled + ports.settings.session_keep_alive_seconds
    monkeypatch.undo()

    late = execute_job(ports, queued(ports))  # its event lost: the reconciler completes it
    ports.warehouse.finish(late.statement_id, columns=[Column("n", "int4")], pages=["1\n"])
    reconcile(ports, now=utcnow() + timedelta(minutes=10))
    assert ports.jobs.get(late.job_id).status is JobStatus.COMPLETED
    entry = ports.slots.sessions("acme").get(late.session_id)
    assert late.session_id and entry is not None and entry.until < time.time()  # idle, and taken for closed


@pytest.mark.parametrize("end", ["fail", "abort"])
def test_a_session_whose_failed_or_aborted_statement_the_reconciler_ends_is_not_pooled_alive(ports, end):
    """The third diff review: only a COMPLETED job's session counted from its statement's end; a FAILED or ABORTED
    one the reconciler ended minutes later went back alive for a whole keep-alive from the reconciler's run."""
    job = execute_job(ports, queued(ports))
    if end == "fail":
        ports.warehouse.fail(job.statement_id, "division by zero")
    else:
        ports.warehouse.abort(job.statement_id)
    reconcile(ports, now=utcnow() + timedelta(minutes=10))  # its event lost
    assert ports.jobs.get(job.job_id).status is JobStatus.FAILED
    entry = ports.slots.sessions("acme").get(job.session_id)
    assert job.session_id and entry is not None and entry.until < time.time()


def test_a_sessions_expiry_counts_from_its_status_events_time_however_late_the_event_is_handled(ports):
    job = execute_job(ports, queued(ports))
    change = ports.warehouse.fail(job.statement_id, "division by zero")
    sent = time.time() - 600  # the event came back after retries, ten minutes on
    complete_statement(ports, change, ended_at=sent)
    entry = ports.slots.sessions("acme").get(job.session_id)
    assert entry is not None and entry.until <= sent + ports.settings.session_keep_alive_seconds
