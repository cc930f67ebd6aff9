"""Data API sessions: each tenant's statements run in kept-alive sessions, one statement at a time per session.

A session (``SessionKeepAliveSeconds`` on ExecuteStatement, then ``SessionId`` on later statements) keeps its
database connection between statements, so a statement after the first skips connecting and authenticating. The
rules:

- **Per tenant, per identity.** A tenant's sessions live in its own pool (the ``sessions`` map of its slots item,
  :mod:`spectra.slots`), each recorded with the identity it was opened as (:func:`identity_key`). A statement runs in
  a session of its own tenant's pool whose identity is the one :func:`spectra.identity.identity_for` just chose for
  it, checked in code before the call: a session runs as whoever opened it (AWS takes neither ``DbUser`` nor
  ``SecretArn`` beside ``SessionId``), so tenant B's statement never runs in tenant A's session, and a tenant moved
  to another database user opens new ones.
- **One statement at a time.** The executor leases a session in the same conditional write that takes the job's
  running slot (:meth:`~spectra.slots.RunningSlots.claim`): idle, alive, of that identity, or the write is refused,
  so two executors never take the same one. A busy session is never shared: the executor takes another idle one, or
  opens a new one. A tenant therefore holds at most as many sessions as its running cap, but for cancels: a DELETE
  served while ExecuteStatement runs frees the job's slot before the executor gives its session back, and a job
  taking the slot in between opens one more. Such extras stay pooled until they idle out, unused (:func:`_choose`
  leases the idle session used last).
- **Given back when the statement ends.** :func:`spectra.lifecycle.finish_job` (completion events and the
  reconciler alike) releases the slot and returns the session to the pool in one write, idle, with the end of its
  keep-alive (an estimate on the early side, :data:`EXPIRY_MARGIN_SECONDS`). A slot reclaimed from a dead function
  takes its lease along.
- **Retired before the Data API's 24 hours.** The Data API closes a session 24 hours after it opened, terminating
  the statement it runs: a session's ``until`` never passes :data:`RETIRE_AFTER_SECONDS` after its opening, so no
  statement starts in it in its last hours, and it is pruned like an expired one.
- **Expired or failed: dropped.** A session the Data API refuses (its keep-alive ran out, it was closed, it failed)
  is taken out of the pool and the statement is started again without it, in a new session. Long-expired idle
  entries are pruned by later claims.
- **Only what the warehouse allows leaks between statements, and only within one tenant.** The SQL guard refuses SET,
  ``set_config`` and temporary tables, so a statement cannot change what the next one in its session sees.

Bulk jobs run without sessions: their batches (COPY, UPDATE, UNLOAD) run for seconds to minutes, where a connection
saved is noise, and a BatchExecuteStatement holds its connection for the whole transaction anyway.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

from spectra.errors import NotFound, StatementRejected, Throttled
from spectra.slots import Claim, PooledSession
from spectra.tenants import identity_key as one_spelling
from spectra.warehouse import DatabaseIdentity, Started

if TYPE_CHECKING:
    from spectra.jobs import Job
    from spectra.ports import Ports

logger = logging.getLogger(__name__)

#: A session goes back to the pool with ``until = now + keep-alive - margin``: its keep-alive started when its
#: statement ended, a little before the status event brought the news. At most a quarter of the keep-alive: a
#: whole margin would have every session of a keep-alive of 15 s or less (SessionKeepAliveSeconds takes 1) expired as
#: it is pooled, so each statement would open one more and the tenant's pool would grow with its job rate.
EXPIRY_MARGIN_SECONDS = 15.0
#: The Data API closes a session 24 hours after it opened, "and the query is terminated" (SessionKeepAliveSeconds):
#: a busy tenant's session, leased again and again within its keep-alive, would reach it with a statement running.
#: No statement starts in a session older than this, leaving the last hours for the statements already running.
RETIRE_AFTER_SECONDS = 22 * 3600
#: Idle sessions whose ``until`` is this far past are taken out of the pool by the next claim.
PRUNE_AFTER_SECONDS = 60.0
_PRUNE_MAX = 5

# What this process last saw of each tenant's pool (per slots port): a hint for the next claim, never trusted for
# more than a guess, since the claim's conditional write decides.
_views: weakref.WeakKeyDictionary[Any, dict[str, Claim]] = weakref.WeakKeyDictionary()


def identity_key(identity: DatabaseIdentity) -> str:
    """The database identity a session is opened as, as the pool records it."""
    if identity.secret_arn:
        return f"secret:{identity.secret_arn}"
    return f"db_user:{identity.db_user or ''}"


def enabled(ports: Ports) -> bool:
    return ports.settings.session_keep_alive_seconds > 0


def claim(ports: Ports, tenant_id: str, job_id: str, *, limit: int) -> Claim:
    """Take the job's running slot and, when the pool has one to give, lease an idle session with it.

    One write in the common case (this process saw the session go idle, or the tenant has none). A guess that missed
    (another executor took the session) is refused without effect and answers the pool as it is, so the next try
    chooses from the truth; a process that knew nothing of the pool takes the slot first and leases from its answer.
    """
    if not enabled(ports):
        return ports.slots.claim(tenant_id, job_id, limit=limit)
    seen = _views.setdefault(ports.slots, {})
    view, fresh = seen.get(tenant_id), False
    refused: set[str] = set()
    result = Claim(taken=False)
    for _ in range(3):
        now = time.time()
        candidate = _choose(view.sessions, job_id, now, refused, guess=not fresh) if view is not None else None
        prune = _stale(view, now) if view is not None else ()
        result = ports.slots.claim(tenant_id, job_id, limit=limit, lease=candidate, prune=prune, now=now)
        seen[tenant_id], view, fresh = result, result, True
        if candidate is None or not result.session_refused:
            break
        refused.add(candidate.session_id)
    if result.taken and result.session is None:
        candidate = _choose(result.sessions, job_id, time.time(), refused, guess=False)
        if candidate is not None:  # this process had no view of the pool: lease from what the write answered
            leased = ports.slots.claim(tenant_id, job_id, limit=limit, lease=candidate)
            seen[tenant_id] = leased
            if leased.taken:
                return leased
    return result


def _choose(
    pool: dict[str, PooledSession], job_id: str, now: float, refused: set[str], *, guess: bool
) -> PooledSession | None:
    """The session to ask for: one this job leased already (a redelivered message), else the idle one used last;
    from a remembered view (``guess``), a busy one may have gone idle since, so it is worth asking for too."""
    for session in pool.values():
        if session.job_id == job_id and session.session_id not in refused:
            return session
    open_ = [s for s in pool.values() if s.session_id not in refused and s.until > now]
    idle = [s for s in open_ if s.job_id is None]
    if idle:
        return max(idle, key=lambda s: s.until)
    if guess and open_:
        return max(open_, key=lambda s: s.until)
    return None


def _stale(view: Claim, now: float) -> tuple[str, ...]:
    """Sessions long past their keep-alive that no running statement holds (idle, or leased by a job whose slot is
    gone, so no release will come): nothing can lease them any more, so the next write removes them."""
    gone = [
        s.session_id
        for s in view.sessions.values()
        if s.until < now - PRUNE_AFTER_SECONDS and (s.job_id is None or s.job_id not in view.holders)
    ]
    return tuple(gone[:_PRUNE_MAX])


def usable_lease(
    ports: Ports, job: Job, lease: PooledSession | None, identity: DatabaseIdentity
) -> PooledSession | None:
    """The leased session if it runs as ``identity``; otherwise it is dropped from the pool (the tenant now runs as
    someone else: that session can never serve it again) and the statement opens its own."""
    if lease is None or lease.identity == identity_key(identity):
        return lease
    logger.warning("job %s: session %s runs as another identity; dropping it", job.job_id, lease.session_id)
    drop(ports, job, lease)
    return None


def start_statement(
    ports: Ports, job: Job, sql: str, identity: DatabaseIdentity, lease: PooledSession | None, **request: Any
) -> tuple[Started, PooledSession | None]:
    """Start the job's statement: in the leased session, else in a new one (or in none, when sessions are off or the
    account has no more). Returns what started and the session it runs in.

    A session the Data API refuses is dropped and the statement started again without it. A statement refused for
    itself is refused again there, and that answer is the job's (the session is then dropped needlessly: it expires).

    The ClientToken answers an attempt that died before recording its statement (:class:`Started`) with that
    attempt's statement, which may run elsewhere than asked: the lease then goes back unused, and a session opened
    as someone else than ``identity`` (the tenant was moved to another database user meanwhile) is not the job's to
    pool: it would serve the tenant's next jobs as the identity it left. Neither is returned; the earlier session
    idles out at the Data API.
    """
    common = {"identity": identity, "name": job.job_id, "client_token": job.job_id, **request}
    if lease is not None:
        try:
            started = ports.warehouse.start(sql, session_id=lease.session_id, **common)
        except (StatementRejected, NotFound) as exc:
            logger.info("job %s: session %s refused (%s); running without it", job.job_id, lease.session_id, exc)
            drop(ports, job, lease)
            try:
                return _start_in_a_new_session(ports, job, sql, identity, common)
            except Throttled as throttled:
                # the lease is no longer the job's: an ending now must not give the refused session back to the
                # pool as idle
                throttled.details = {**(throttled.details or {}), LEASE_DROPPED: True}
                raise
        else:
            if started.session_id == lease.session_id:
                return started, lease
            logger.warning(
                "job %s: an earlier attempt's statement answered, not in session %s", job.job_id, lease.session_id
            )
            give_back(ports, job, lease, running_in=started.session_id)
            return started, None
    return _start_in_a_new_session(ports, job, sql, identity, common)


#: In a :class:`~spectra.errors.Throttled`'s details: the job's lease was dropped before the throttled start.
LEASE_DROPPED = "lease_dropped"


def _start_in_a_new_session(
    ports: Ports, job: Job, sql: str, identity: DatabaseIdentity, common: dict[str, Any]
) -> tuple[Started, PooledSession | None]:
    keep_alive = ports.settings.session_keep_alive_seconds
    opened = time.time()  # on the early side: the session opens during the call
    try:
        started = ports.warehouse.start(sql, keep_alive_seconds=keep_alive or None, **common)
    except Throttled as exc:
        if not keep_alive or (exc.details or {}).get("aws_error") != "ActiveSessionsExceededException":
            raise
        logger.warning("job %s: no session can be opened (%s); running without one", job.job_id, exc.message)
        started = ports.warehouse.start(sql, **common)
    if not started.session_id:
        return started, None
    if not _runs_as(started, identity):
        logger.warning("job %s: an earlier attempt's statement answered, as another identity; not pooled", job.job_id)
        return started, None
    pooled = PooledSession(started.session_id, identity_key(identity), until=0.0, job_id=job.job_id, opened=opened)
    return started, pooled


def _runs_as(started: Started, identity: DatabaseIdentity) -> bool:
    """Whether the Data API's answer says ``started`` runs as ``identity``: the field the identity is made of (its
    secret, else its user), each as one spelling (:func:`spectra.tenants.identity_key`: a user's name folded as
    Redshift folds it, a secret's ARN with or without its suffix). ExecuteStatement names the user or secret its
    request named; an answer that names neither is an earlier attempt's statement in a session (that request named
    only the session), opened for someone the tenant may have left, so it does not count as ``identity``'s."""
    reported = started.identity or DatabaseIdentity()
    field = "secret_arn" if identity.secret_arn else "db_user"
    wanted, answered = getattr(identity, field), getattr(reported, field)
    return bool(wanted and answered) and one_spelling(field, answered) == one_spelling(field, wanted)


def returned(ports: Ports, job: Job, *, ended_at: float | None = None) -> PooledSession | None:
    """The job's session as it goes back to the pool when its statement has ended (at ``ended_at``, epoch seconds;
    None: now): idle, until its keep-alive ends."""
    if not job.session_id or not job.session_identity:
        return None
    return idle_again(
        ports,
        PooledSession(job.session_id, job.session_identity, until=0.0, opened=job.session_opened_at),
        since=ended_at,
    )


def idle_again(ports: Ports, session: PooledSession | None, *, since: float | None = None) -> PooledSession | None:
    """``session`` with no lease and a fresh expiry counted from ``since`` (its last statement's end; None: now),
    never past its retirement (None stays None). The Data API counts the keep-alive from the statement's end, so a
    completion that collected a large result, or a reconciler minutes late, counting from its own end, would call
    alive a session closed since."""
    if session is None:
        return None
    now = time.time()
    keep_alive = ports.settings.session_keep_alive_seconds
    until = (now if since is None else min(since, now)) + keep_alive - min(EXPIRY_MARGIN_SECONDS, keep_alive / 4)
    # A session of unknown age (pooled, or its job started, before openings were recorded) is not pooled again: it
    # may be near the Data API's 24 hours already. It idles out, and the next statement opens a new one.
    until = min(until, session.opened + RETIRE_AFTER_SECONDS if session.opened is not None else now)
    return PooledSession(session.session_id, session.identity, until=until, opened=session.opened)


def unused(session: PooledSession | None) -> PooledSession | None:
    """A leased session that ran nothing, as it goes back: idle, its expiry unchanged."""
    if session is None:
        return None
    return PooledSession(session.session_id, session.identity, until=session.until, opened=session.opened)


def give_back(ports: Ports, job: Job, lease: PooledSession | None, *, running_in: str | None) -> None:
    """A lease a job took with its slot and will not use (the job runs already, in session ``running_in`` or in
    none): back to the pool, idle, the job keeping its slot. A redelivered message of a running job claims its slot
    again, and that claim may lease an idle session; kept, it would stay leased until the job's end and beyond."""
    if lease is None or lease.session_id == running_in:
        return
    give_back_unused(ports, job.tenant_id, job.job_id, lease)


def give_back_unused(ports: Ports, tenant_id: str, job_id: str, lease: PooledSession | None) -> None:
    """A lease ``job_id`` took and will not use, back in the pool whether or not the job still holds its slot."""
    if lease is not None:
        ports.slots.unlease(tenant_id, unused(lease), job_id=job_id)
        _views.get(ports.slots, {}).pop(tenant_id, None)


def drop(ports: Ports, job: Job, session: PooledSession) -> None:
    ports.slots.drop_session(job.tenant_id, session.session_id, job_id=job.job_id)
    _views.get(ports.slots, {}).pop(job.tenant_id, None)  # what this process knew of the pool is out of date
