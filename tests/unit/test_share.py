"""The per-tenant running cap and the statement-timeout code (spectra.share) on in-memory ports.

Over the cap a job waits QUEUED (its message comes back later), it never fails; a slot comes back whichever way its
job ends; and a slot whose release was lost is recomputed from the job store after its lease.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from events import ErrorInfo, JobQueuedMessage, JobStatus
from spectra import queries, share, tenant_cache
from spectra.bulk.models import BulkState
from spectra.errors import Throttled
from spectra.job_store import Finished
from spectra.jobs import Job, new_job_id, utcnow
from spectra.lifecycle import complete_statement, execute_job, finish_job, queued_message
from spectra.reconciliation import reconcile
from spectra.slots import Claim, SlotsSeen
from spectra.tenants import Caller
from tests.unit.bulk_helpers import bulk_job
from tests.unit.fakes import FakeRunningSlots, make_ports, make_settings

pytestmark = pytest.mark.unit


@pytest.fixture
def ports():
    return make_ports(settings=make_settings(tenant_max_running_statements=2, tenant_wait_seconds=4))


def queued(ports, tenant: str = "acme", sql: str = "select 1") -> JobQueuedMessage:
    if tenant != "ghost" and ports.tenants.get(tenant) is None:
        ports.tenants.create_tenant(tenant, db_user=f"tenant_{tenant}")
    now = utcnow()
    job = Job(
        job_id=new_job_id(), tenant_id=tenant, db_user=f"tenant_{tenant}", sql=sql, created_at=now, updated_at=now
    )
    ports.jobs.create(job)
    return JobQueuedMessage(job_id=job.job_id, tenant_id=tenant)


def status(ports, message: JobQueuedMessage) -> JobStatus:
    return ports.jobs.get(message.job_id).status


def _dies_recording_its_statement(ports, message: JobQueuedMessage, monkeypatch) -> str:
    """The job's first delivery, on an executor that dies between ExecuteStatement and recording it: its statement."""
    transition = ports.jobs.transition

    def dies(job_id, status, **changes):
        if status is JobStatus.SUBMITTED:
            raise RuntimeError("the executor died")
        return transition(job_id, status, **changes)

    monkeypatch.setattr(ports.jobs, "transition", dies)
    with pytest.raises(RuntimeError):
        execute_job(ports, message, first_delivery=True)
    monkeypatch.setattr(ports.jobs, "transition", transition)
    [statement_id] = [s.statement_id for s in ports.warehouse.statements.values() if s.name == message.job_id]
    return statement_id


def held(ports, tenant: str = "acme") -> set[str]:
    return set(ports.slots.holders(tenant))


def line(ports, tenant: str = "acme") -> list[str]:
    """The tenant's waiting jobs in the order they are woken: by the time each has waited since."""
    waiting = ports.slots.waiting(tenant)
    return sorted(waiting, key=waiting.__getitem__)


def test_jobs_over_the_cap_wait_queued_on_the_tenants_waiting_list(ports):
    messages = [queued(ports) for _ in range(4)]
    started = [execute_job(ports, m) for m in messages]
    assert [s is not None for s in started] == [True, True, False, False]
    assert [status(ports, m) for m in messages] == [JobStatus.SUBMITTED] * 2 + [JobStatus.QUEUED] * 2
    assert len(ports.warehouse.statements) == 2
    assert held(ports) == {messages[0].job_id, messages[1].job_id}
    assert list(ports.slots.waiting("acme")) == [messages[2].job_id, messages[3].job_id]
    assert ports.queue.messages == []  # nothing polls: a waiting job costs nothing until a slot is freed


def test_a_freed_slot_sends_the_longest_waiting_job_on_its_way(ports):
    first, second, waiting, later = (queued(ports) for _ in range(4))
    job = execute_job(ports, first)
    execute_job(ports, second)
    assert execute_job(ports, waiting) is None
    assert execute_job(ports, later) is None
    assert execute_job(ports, waiting) is None  # a repeated message keeps the job's place in the line
    complete_statement(ports, ports.warehouse.finish(job.statement_id, rows=0))
    assert first.job_id not in held(ports)
    assert ports.queue.messages == [JobQueuedMessage(job_id=waiting.job_id, tenant_id="acme")]
    assert execute_job(ports, ports.queue.messages[0]).status is JobStatus.SUBMITTED
    assert list(ports.slots.waiting("acme")) == [later.job_id]


def test_a_woken_job_that_loses_the_freed_slot_to_a_newer_one_keeps_its_place_in_line(ports):
    first, second = queued(ports), queued(ports)
    job = execute_job(ports, first)
    execute_job(ports, second)
    oldest, next_oldest = queued(ports), queued(ports)
    assert execute_job(ports, oldest) is None and execute_job(ports, next_oldest) is None
    complete_statement(ports, ports.warehouse.finish(job.statement_id, rows=0))
    [woken] = ports.queue.messages
    assert woken.job_id == oldest.job_id
    newer = queued(ports)
    assert execute_job(ports, newer).status is JobStatus.SUBMITTED  # it came first and found the slot free
    assert execute_job(ports, woken) is None  # so the woken job waits again...
    assert line(ports) == [oldest.job_id, next_oldest.job_id]  # ...in its place, not last
    complete_statement(ports, ports.warehouse.finish(ports.jobs.get(second.job_id).statement_id, rows=0))
    assert ports.queue.messages[-1].job_id == oldest.job_id  # and is the next one woken


def test_the_line_is_the_order_of_submission(ports):
    first, second = queued(ports), queued(ports)
    execute_job(ports, first)
    execute_job(ports, second)
    earlier, later = queued(ports), queued(ports)
    assert execute_job(ports, later) is None  # its message came first
    assert execute_job(ports, earlier) is None
    assert line(ports) == [earlier.job_id, later.job_id]


@pytest.mark.parametrize(
    ("refusal", "delays"),
    [
        # thousands wait ahead on a list past the item size: back in minutes, under the reconciler's re-queue (300 s),
        # not every few seconds (the excess of a flooding tenant used to circle through the shared jobs queue)
        (True, (149, 299)),
        ("ProvisionedThroughputExceededException", (2, 6)),  # a passing refusal: 4 s ± 50%
    ],
)
def test_a_job_that_cannot_be_put_on_the_waiting_list_tries_again_later(ports, refusal, delays):
    for _ in range(2):
        execute_job(ports, queued(ports))
    ports.slots.fail_park = refusal
    message = queued(ports)
    assert execute_job(ports, message) is None
    assert status(ports, message) is JobStatus.QUEUED
    # A fresh message (so waiting never counts towards the queue's maxReceiveCount), delayed,
    # and the job moved to the back of the pending index so the reconciler does not queue a second one.
    assert ports.queue.messages == [message]
    assert delays[0] <= ports.queue.delays[0] <= delays[1]
    assert ports.jobs.pending_since(message.job_id) > ports.jobs.get(message.job_id).created_at


def test_a_message_sent_again_carries_ids_only(ports):
    """Only the API's own first message carries the job (events.JobQueuedMessage): one sent again to wait (a full
    waiting list, a full warehouse) kept it, and its first delivery could be trusted for a job cancelled meanwhile
    (the last diff review)."""
    for _ in range(2):
        execute_job(ports, queued(ports))
    ports.slots.fail_park = True
    first = queued_message(ports.jobs.get(queued(ports).job_id))
    assert first.job is not None
    assert execute_job(ports, first, first_delivery=True) is None
    assert ports.queue.messages == [first.model_copy(update={"job": None})]


@pytest.mark.parametrize("refusal", [True, "ProvisionedThroughputExceededException"])
def test_a_retry_is_never_delayed_past_what_sqs_takes(refusal):
    """``TenantWaitSeconds`` goes up to 900 and the delay spreads it by half again: SQS refuses DelaySeconds past
    900, so unclamped, a job waiting under a long setting failed its send and, on the last delivery, the job."""
    settings = make_settings(tenant_max_running_statements=1, tenant_wait_seconds=900, requeue_after_seconds=3000)
    ports = make_ports(settings=settings)
    execute_job(ports, queued(ports))
    ports.slots.fail_park = refusal
    for _ in range(40):
        execute_job(ports, queued(ports))
    assert len(ports.queue.delays) == 40 and max(ports.queue.delays) <= 900


@pytest.mark.parametrize("refusal", [True, "ProvisionedThroughputExceededException"])
def test_a_retry_comes_back_before_the_reconciler_would_queue_another(refusal):
    """The reconciler queues a job's message again once the job has sat in the pending index for
    ``requeue_after_seconds`` (300) since its last try: a retry delayed past that (``TenantWaitSeconds`` 900, spread
    by half again) met a second message the reconciler had sent meanwhile (the parameters review)."""
    ports = make_ports(settings=make_settings(tenant_max_running_statements=1, tenant_wait_seconds=900))
    execute_job(ports, queued(ports))
    ports.slots.fail_park = refusal
    for _ in range(40):
        execute_job(ports, queued(ports))
    assert len(ports.queue.delays) == 40
    assert max(ports.queue.delays) < ports.settings.requeue_after_seconds


def test_within_one_batch_a_tenant_found_at_its_cap_waits_without_asking_again(ports):
    for _ in range(2):
        execute_job(ports, queued(ports))
    first, second, third, other = queued(ports), queued(ports), queued(ports), queued(ports, "globex")
    with share.one_batch():
        claims = ports.slots.writes
        assert execute_job(ports, first) is None
        assert ports.slots.writes == claims + 1  # asked once, refused, parked
        assert execute_job(ports, second) is None and execute_job(ports, third) is None
        assert ports.slots.writes == claims + 1  # parked straight away: one write each, no refused claim
        assert execute_job(ports, other).status is JobStatus.SUBMITTED  # another tenant is not held back
    assert list(ports.slots.waiting("acme")) == [first.job_id, second.job_id, third.job_id]
    with share.one_batch():  # a new batch asks again
        claims = ports.slots.writes
        assert execute_job(ports, queued(ports)) is None
        assert ports.slots.writes == claims + 1


def test_within_one_batch_a_slot_freed_meanwhile_is_still_taken(ports):
    running = execute_job(ports, queued(ports))
    execute_job(ports, queued(ports))
    waiting, later = queued(ports), queued(ports)
    with share.one_batch():
        assert execute_job(ports, waiting) is None
        complete_statement(ports, ports.warehouse.finish(running.statement_id, rows=0))  # frees a slot
        assert execute_job(ports, later).status is JobStatus.SUBMITTED  # the park is refused: the claim wins it
    assert ports.queue.messages == [JobQueuedMessage(job_id=waiting.job_id, tenant_id="acme")]  # woken, as before


def test_within_one_batch_a_job_holding_its_slot_is_never_parked(ports):
    # a throttled start keeps its slot for the retry; the retry must find it, not wait behind its own slot
    retried = queued(ports)
    ports.slots.acquire("acme", retried.job_id, limit=2)
    execute_job(ports, queued(ports))
    with share.one_batch():
        assert execute_job(ports, queued(ports)) is None  # the tenant is at its cap: remembered
        assert execute_job(ports, retried).status is JobStatus.SUBMITTED
    assert retried.job_id not in ports.slots.waiting("acme")


def test_within_one_batch_a_job_that_cannot_be_put_on_the_waiting_list_tries_again_later(ports):
    for _ in range(2):
        execute_job(ports, queued(ports))
    with share.one_batch():
        assert execute_job(ports, queued(ports)) is None
        ports.slots.fail_park = True
        message = queued(ports)
        assert execute_job(ports, message) is None
    assert status(ports, message) is JobStatus.QUEUED
    assert ports.queue.messages == [message] and 149 <= ports.queue.delays[0] <= 299


def test_the_cap_is_per_tenant(ports):
    for _ in range(2):
        execute_job(ports, queued(ports, "acme"))
    assert execute_job(ports, queued(ports, "acme")) is None
    other = execute_job(ports, queued(ports, "globex"))
    assert other is not None and other.status is JobStatus.SUBMITTED


def test_a_tenant_record_may_set_its_own_cap(ports):
    ports.tenants.create_tenant("big", db_user="tenant_big", max_running_statements=3)
    ports.tenants.create_tenant("none", db_user="tenant_none", max_running_statements=0)
    assert [execute_job(ports, queued(ports, "big")) is not None for _ in range(4)] == [True, True, True, False]
    assert execute_job(ports, queued(ports, "none")) is None
    assert share.running_cap(ports, "acme") == 2  # no record: the service default


def test_a_redelivered_message_takes_no_second_slot(ports):
    message = queued(ports)
    execute_job(ports, message)
    assert execute_job(ports, message) is None  # already running: nothing to do, and it keeps its one slot
    assert held(ports) == {message.job_id}
    assert execute_job(ports, queued(ports)) is not None  # the second slot is still free


def test_a_late_message_of_a_finished_job_leaves_no_slot_behind(ports):
    message = queued(ports)
    job = execute_job(ports, message)
    complete_statement(ports, ports.warehouse.finish(job.statement_id, rows=0))
    assert execute_job(ports, message) is None
    assert held(ports) == set()


def woken_after_cancel(ports) -> tuple[JobQueuedMessage, JobQueuedMessage]:
    """Two jobs running at the cap of 2, two waiting; the first waiter is cancelled, then a slot is freed: the
    wake-up message (for the cancelled job) and the job next in line. A cancel takes its job off the line; this one
    is back on it, as when the executor parks a job cancelled while its first message waited in the queue (its place
    comes from the message, unread, on a tenant that is not paused)."""
    job = execute_job(ports, queued(ports))
    execute_job(ports, queued(ports))
    cancelled, next_in_line = queued(ports), queued(ports)
    execute_job(ports, cancelled)
    execute_job(ports, next_in_line)
    place = ports.slots.waiting("acme")[cancelled.job_id]
    queries.cancel_job(ports, Caller(tenant_id="acme"), cancelled.job_id)
    assert cancelled.job_id not in ports.slots.waiting("acme")
    ports.slots.waiters["acme"][cancelled.job_id] = place
    complete_statement(ports, ports.warehouse.finish(job.statement_id, rows=0))
    [woken] = ports.queue.messages
    assert woken.job_id == cancelled.job_id
    return woken, next_in_line


def test_a_job_cancelled_while_it_waits_passes_its_turn_on(ports):
    woken, next_in_line = woken_after_cancel(ports)
    assert execute_job(ports, woken) is None  # cancelled: it gives the slot straight back, to the next in line
    assert ports.queue.messages[1].job_id == next_in_line.job_id
    assert execute_job(ports, ports.queue.messages[1]).status is JobStatus.SUBMITTED
    assert woken.job_id not in held(ports)


def test_in_a_batch_that_found_the_tenant_at_its_cap_a_cancelled_jobs_wake_up_is_still_passed_on(ports):
    """Within one batch, a tenant met at its cap earlier parks its next jobs without asking for a slot. A wake-up
    for a job cancelled while it waited was parked with it, so the freed slot stayed free and the next in line
    waited for the reconciler."""
    woken, next_in_line = woken_after_cancel(ports)
    with share.one_batch():
        share._AT_CAP.get().add("acme")  # an earlier record of this batch found acme at its cap
        assert execute_job(ports, woken) is None
    assert ports.queue.messages[1].job_id == next_in_line.job_id
    assert execute_job(ports, ports.queue.messages[1]).status is JobStatus.SUBMITTED
    assert woken.job_id not in held(ports)


def test_a_job_cancelled_while_it_waits_leaves_the_line_when_its_wake_up_finds_the_slot_taken(ports):
    woken, next_in_line = woken_after_cancel(ports)
    assert execute_job(ports, queued(ports)).status is JobStatus.SUBMITTED  # a newer job takes the freed slot
    assert execute_job(ports, woken) is None
    assert line(ports) == [next_in_line.job_id]  # the cancelled job did not park again at the head


def _end_running(ports, message, how):
    job = ports.jobs.get(message.job_id)
    if how == "finished":
        complete_statement(ports, ports.warehouse.finish(job.statement_id, rows=0))
    elif how == "failed":
        complete_statement(ports, ports.warehouse.fail(job.statement_id, "division by zero"))
    elif how == "cancelled":
        queries.cancel_job(ports, Caller(tenant_id="acme"), job.job_id)
        complete_statement(ports, ports.warehouse.abort(job.statement_id))
    elif how == "reconciler":  # its completion event was lost; the reconciler finds the statement finished
        ports.warehouse.finish(job.statement_id, rows=0)
        reconcile(ports, now=utcnow() + timedelta(minutes=2))
    else:  # the statement vanished from the Data API; the reconciler fails the job
        ports.warehouse.statements.pop(job.statement_id)
        reconcile(ports, now=utcnow() + timedelta(minutes=2))


@pytest.mark.parametrize("how", ["finished", "failed", "cancelled", "reconciler", "statement_lost"])
def test_every_end_of_a_running_job_gives_its_slot_back(ports, how):
    message = queued(ports)
    execute_job(ports, message)
    assert held(ports) == {message.job_id}
    _end_running(ports, message, how)
    assert status(ports, message).is_terminal
    assert held(ports) == set()


def test_jobs_that_fail_before_running_give_their_slot_back(ports):
    rejected = queued(ports)
    ports.warehouse.reject_next("ValidationException: bad parameter")
    execute_job(ports, rejected)
    throttled = queued(ports)
    ports.warehouse.throttle_next()
    with pytest.raises(Throttled):
        execute_job(ports, throttled)
    assert held(ports) == {throttled.job_id}  # it comes back and tries again: the slot stays its own meanwhile
    ports.warehouse.throttle_next()
    execute_job(ports, throttled, final_attempt=True)
    no_identity = queued(ports, tenant="ghost")
    ports.jobs.update(no_identity.job_id, [JobStatus.QUEUED], db_user="")
    execute_job(ports, no_identity)
    assert [status(ports, m) for m in (rejected, throttled, no_identity)] == [JobStatus.FAILED] * 3
    assert held(ports) == held(ports, "ghost") == set()


def test_a_job_cancelled_while_queued_holds_no_slot(ports):
    message = queued(ports)
    queries.cancel_job(ports, Caller(tenant_id="acme"), message.job_id)
    assert status(ports, message) is JobStatus.CANCELLED
    assert held(ports) == set()


def test_a_job_cancelled_before_its_first_delivery_gives_back_the_slot_that_delivery_took(ports):
    """The first delivery trusts the job in the message (QUEUED), takes a slot and starts the statement; the job's
    write is refused (it was cancelled, with no slot to release then), so the statement is cancelled and the slot
    given back, and the next job starts instead of waiting for a slot nobody holds."""
    first, second = queued(ports), queued(ports)
    execute_job(ports, first)
    cancelled = queued_message(ports.jobs.get(queued(ports).job_id))  # the API's message, the job in it
    queries.cancel_job(ports, Caller(tenant_id="acme"), cancelled.job_id)
    assert execute_job(ports, cancelled, first_delivery=True) is None
    assert [method for method, _ in ports.warehouse.calls][-2:] == ["execute", "cancel"]
    assert held(ports) == {first.job_id}
    assert execute_job(ports, second).status is JobStatus.SUBMITTED


@pytest.mark.parametrize("refusal", ["tenant_inactive", "statement_rejected"])
def test_a_job_cancelled_before_its_first_delivery_gives_back_its_slot_when_the_delivery_refuses_it(ports, refusal):
    """As above, but the first delivery ends the job itself (its tenant was deactivated meanwhile, or the Data API
    rejects the statement): that ending is refused, the job having been cancelled, and the slot and session the
    delivery took were kept, the slot until a claim at the cap reclaimed it a lease later (races review)."""
    done = execute_job(ports, queued(ports))
    complete_statement(ports, ports.warehouse.finish(done.statement_id, rows=0))  # its session goes back, idle
    cancelled = queued_message(ports.jobs.get(queued(ports).job_id))  # the API's message, the job in it
    queries.cancel_job(ports, Caller(tenant_id="acme"), cancelled.job_id)
    if refusal == "tenant_inactive":
        ports.tenants.set_active("acme", False)
        tenant_cache.forget(ports.tenants)  # the executor's cached record has aged out (TENANT_CACHE_SECONDS)
    else:
        for _ in range(2):  # in the leased session, then in a new one
            ports.warehouse.reject_next("column does not exist")
    assert execute_job(ports, cancelled, first_delivery=True) is None
    assert status(ports, cancelled) is JobStatus.CANCELLED
    assert held(ports) == set()
    assert not [s for s in ports.slots.sessions("acme").values() if s.job_id is not None]
    ports.tenants.set_active("acme", True)
    tenant_cache.forget(ports.tenants)
    assert [execute_job(ports, queued(ports)) is not None for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize("ran_to_its_end", [False, True])
def test_a_statement_an_attempt_started_but_never_recorded_is_cancelled_once_the_job_is_cancelled(
    ports, monkeypatch, ran_to_its_end
):
    """The executor died between ExecuteStatement and the SUBMITTED write; the tenant cancelled the still QUEUED job.
    The message comes back: the statement is found by the job's name and cancelled (one that already ended is left
    as it is), and the slot is given back."""
    message = queued(ports)
    statement_id = _dies_recording_its_statement(ports, message, monkeypatch)
    if ran_to_its_end:
        ports.warehouse.finish(statement_id, rows=3)
    queries.cancel_job(ports, Caller(tenant_id="acme"), message.job_id)
    assert execute_job(ports, message) is None  # the redelivery
    expected = "FINISHED" if ran_to_its_end else "ABORTED"
    assert ports.warehouse.statements[statement_id].status == expected
    assert status(ports, message) is JobStatus.CANCELLED and held(ports) == set()


def test_a_slot_whose_release_was_lost_is_recomputed_from_the_job_store_after_its_lease(ports):
    lease = ports.settings.slot_lease_seconds
    lost, running = queued(ports), queued(ports)
    execute_job(ports, lost)
    execute_job(ports, running)
    # The completion function died between the job's terminal write and the release.
    finish_job(ports, ports.jobs.get(lost.job_id), JobStatus.COMPLETED)
    ports.slots.acquire("acme", lost.job_id, limit=2)
    waiting = queued(ports)
    assert execute_job(ports, waiting) is None  # within the lease nothing is looked up
    assert share.reclaim_slots(ports, "acme", now=time.time() + lease / 2) == 0
    later = time.time() + lease + 1
    assert share.reclaim_slots(ports, "acme", now=later) == 1
    assert held(ports) == {running.job_id}
    assert ports.slots.holders("acme")[running.job_id] == later  # a running holder is re-stamped, not freed
    assert execute_job(ports, waiting) is not None


def test_a_slot_taken_by_an_executor_that_died_before_starting_the_job_expires(ports):
    message = queued(ports)
    ports.slots.acquire("acme", message.job_id, limit=2, now=time.time() - 3600)  # then the function died
    ports.slots.acquire("acme", "j_gone", limit=2, now=time.time() - 3600)  # a job that no longer exists
    assert share.reclaim_slots(ports, "acme") == 2
    assert held(ports) == set()
    assert execute_job(ports, message).status is JobStatus.SUBMITTED  # its message came back: it runs


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("canceling statement due to statement timeout", "statement_timeout"),
        ("ERROR: Query (2211) cancelled on user's request", "statement_timeout"),
        ("ERROR:  Query (150) canceled on user's request", "statement_timeout"),  # statement_timeout's reference
        ('relation "nope" does not exist', "statement_failed"),
        (None, "statement_failed"),
    ],
)
def test_failure_codes(error, code):
    assert share.failure_code(error) == code


def test_a_statement_the_timeout_cancelled_fails_the_job_as_statement_timeout(ports):
    job = execute_job(ports, queued(ports, sql="select pg_sleep(600)"))
    change = ports.warehouse.fail(job.statement_id, "canceling statement due to statement timeout")
    failed = complete_statement(ports, change)
    assert failed.status is JobStatus.FAILED
    assert failed.error == ErrorInfo(code="statement_timeout", message="canceling statement due to statement timeout")
    assert held(ports) == set()


def test_statement_timeout_sql_names_a_database_user_and_milliseconds():
    sql = share.statement_timeout_sql("tenant_acme", 60_000)
    assert sql == 'ALTER USER "tenant_acme" SET statement_timeout TO 60000'
    for user, ms in [('x"; DROP USER admin; --', 1), ("tenant_acme", -1)]:
        with pytest.raises(ValueError):
            share.statement_timeout_sql(user, ms)


class FakeApiGateway:
    """The two API Gateway calls tenant provisioning makes, recorded."""

    def __init__(self) -> None:
        self.keys: list[dict] = []
        self.plan_keys: list[tuple[str, str]] = []

    def create_api_key(self, *, name, value, enabled, tags):
        self.keys.append({"id": f"key{len(self.keys)}", "name": name, "value": value, "enabled": enabled, "tags": tags})
        return self.keys[-1]

    def create_usage_plan_key(self, *, usagePlanId, keyId, keyType):  # boto3's parameter names
        assert keyType == "API_KEY"
        self.plan_keys.append((usagePlanId, keyId))


def test_a_tenant_is_attached_to_its_tiers_plans_by_a_fresh_key():
    client = FakeApiGateway()
    plans = share.UsagePlans(client, {"standard": ["p-std-dev", "p-std-prod"], "premium": ["p-prem"]})
    first, second = plans.attach("acme", "standard"), plans.attach("globex", "premium")
    assert first != second and len(first) >= 20  # API Gateway wants at least 20 characters
    assert [k["value"] for k in client.keys] == [first, second]
    assert client.keys[0]["tags"] == {"spectra:tenant": "acme"} and client.keys[0]["enabled"]
    assert client.plan_keys == [("p-std-dev", "key0"), ("p-std-prod", "key0"), ("p-prem", "key1")]
    with pytest.raises(ValueError, match="tier"):
        plans.attach("initech", "platinum")


def test_a_tenant_is_attached_by_the_stack_outputs_plan_ids_as_the_readme_says():
    """Found by the README audit: the stack output UsagePlanIds maps each tier to one id (a string), which was listed
    into its characters: the key was made, then attached to plans 's', '7', ... (on AWS: a key left over and a tenant
    answered 403 on every request)."""
    import json
    import re

    from cfnlint.decode import decode

    body, _ = decode("template.yaml")
    output = body["Outputs"]["UsagePlanIds"]["Value"]["Fn::Sub"]  # each ${Plan} as its logical id, for the test
    plan_ids = json.loads(re.sub(r"\$\{(\w+)\}", r"\1", output))
    client = FakeApiGateway()
    share.UsagePlans(client, plan_ids).attach("acme", "standard")
    assert client.plan_keys == [("StandardUsagePlan", "key0")]


def test_a_tenant_is_attached_by_the_stack_outputs_value_as_cloudformation_gives_it():
    """README walk: README says plan_ids "is the stack output UsagePlanIds", and DescribeStacks answers an output's
    value as a string, its JSON text: passed as it came, it failed with AttributeError ('str' object has no attribute
    'items') before any key was made."""
    client = FakeApiGateway()
    output_value = '{"basic": "p-basic", "standard": "p-std", "premium": "p-prem"}'
    plans = share.UsagePlans(client, output_value)
    plans.attach("acme", "standard")
    assert client.plan_keys == [("p-std", "key0")]
    assert plans.tiers == {"basic", "standard", "premium"}


def test_a_raised_cap_wakes_as_many_waiting_jobs_as_it_has_room_for(ports):
    """A tenant's cap raised while its jobs wait: each released slot used to wake one waiter, so the tenant kept running
    at its old cap until the reconciler re-queued the rest (REQUEUE_AFTER_SECONDS). A woken job that takes a slot
    with room left now wakes the next in line, until the new cap is full."""
    ports.tenants.create_tenant("acme", db_user="tenant_acme", max_running_statements=1)
    running = execute_job(ports, queued(ports))
    waiting = [queued(ports) for _ in range(4)]
    assert [execute_job(ports, m) for m in waiting] == [None] * 4
    ports.tenants.tenants["acme"] = ports.tenants.get("acme").model_copy(update={"max_running_statements": 3})
    tenant_cache.forget(ports.tenants, "acme")
    complete_statement(ports, ports.warehouse.finish(running.statement_id, rows=0))
    while ports.queue.messages:
        execute_job(ports, ports.queue.messages.pop(0))
    assert held(ports) == {m.job_id for m in waiting[:3]}
    assert line(ports) == [waiting[3].job_id]


def test_a_paused_tenants_jobs_wait_on_its_list_instead_of_polling(ports):
    """A tenant paused at 0 before it ever ran a job has no slots item: its jobs could not park (the list lives in
    that item), so each was sent again every few seconds for an hour, a dozen writes to the tenants table a time."""
    ports.tenants.create_tenant("new", db_user="tenant_new", max_running_statements=0)
    message = queued(ports, "new")
    assert execute_job(ports, message) is None
    assert status(ports, message) is JobStatus.QUEUED
    assert line(ports, "new") == [message.job_id]
    assert ports.queue.messages == []


@pytest.mark.parametrize("end", ["deactivated", "deleted"])
def test_a_tenant_ended_while_its_jobs_wait_fails_each_with_the_reason_and_leaves_no_slot_or_waiter(ports, end):
    ports.tenants.create_tenant("acme", db_user="tenant_acme", max_running_statements=1)
    running = execute_job(ports, queued(ports))
    waiting = [queued(ports) for _ in range(3)]
    assert [execute_job(ports, m) for m in waiting] == [None] * 3
    if end == "deactivated":
        ports.tenants.set_active("acme", False)
    else:
        ports.tenants.delete_tenant("acme")
    tenant_cache.forget(ports.tenants)  # the functions see the change once their cached record is older than its age
    complete_statement(ports, ports.warehouse.finish(running.statement_id, rows=0))
    while ports.queue.messages:
        execute_job(ports, ports.queue.messages.pop(0))
    if end == "deleted":
        # the delete took the tenant's slots item, its line with it, in its transaction: nobody is woken, and the
        # reconciler's next look finds each job in no line and sends it again (the test-quality review: the fake's
        # delete left the line, and the release woke them)
        assert line(ports) == [] and {status(ports, m) for m in waiting} == {JobStatus.QUEUED}
        reconcile(ports, now=utcnow() + timedelta(minutes=5))
        while ports.queue.messages:
            execute_job(ports, ports.queue.messages.pop(0))
    assert [(status(ports, m), ports.jobs.get(m.job_id).error.code) for m in waiting] == [
        (JobStatus.FAILED, "tenant_inactive")
    ] * 3
    assert held(ports) == set() and line(ports) == []
    assert len(ports.warehouse.statements) == 1  # none of them reached the warehouse


@pytest.mark.parametrize("end", ["deactivated", "deleted"])
def test_jobs_waiting_on_a_paused_tenant_since_ended_fail_with_the_reason_at_the_reconcilers_next_look(ports, end):
    """Paused (cap 0), the tenant frees no slot to wake them: ended then, its jobs waited for the reconciler's
    one-hour give-up and failed not_started (found by the operations review). A tenant only paused keeps them."""
    ports.tenants.create_tenant("acme", db_user="tenant_acme", max_running_statements=0)
    waiting = [queued(ports) for _ in range(2)]
    assert [execute_job(ports, m) for m in waiting] == [None] * 2
    assert reconcile(ports, now=utcnow() + timedelta(minutes=6)).waiting == 2
    if end == "deactivated":
        ports.tenants.set_active("acme", False)
    else:
        ports.tenants.delete_tenant("acme")
        assert line(ports) == []  # its slots item, the line in it, went in the delete's transaction
    tenant_cache.forget(ports.tenants)
    summary = reconcile(ports, now=utcnow() + timedelta(minutes=12))
    # deleted, its slots item (and the line in it) went too: the jobs are queued again, and refused when they start
    assert (summary.expired, summary.requeued) == ((2, 0) if end == "deactivated" else (0, 2))
    while ports.queue.messages:
        execute_job(ports, ports.queue.messages.pop(0))
    assert [(status(ports, m), ports.jobs.get(m.job_id).error.code) for m in waiting] == [
        (JobStatus.FAILED, "tenant_inactive")
    ] * 2
    assert line(ports) == [] and ports.warehouse.statements == {}


def test_a_lowered_cap_starts_nothing_until_the_running_jobs_are_under_it(ports):
    ports.tenants.create_tenant("acme", db_user="tenant_acme", max_running_statements=3)
    running = [execute_job(ports, queued(ports)) for _ in range(3)]
    waiting = queued(ports)
    assert execute_job(ports, waiting) is None
    ports.tenants.tenants["acme"] = ports.tenants.get("acme").model_copy(update={"max_running_statements": 1})
    tenant_cache.forget(ports.tenants, "acme")
    for job in running[:2]:
        complete_statement(ports, ports.warehouse.finish(job.statement_id, rows=0))
        assert execute_job(ports, ports.queue.messages.pop()) is None  # woken, still over the new cap: waits again
        assert execute_job(ports, queued(ports)) is None  # and so does a newcomer
    assert len(held(ports)) == 1 and line(ports)[0] == waiting.job_id
    complete_statement(ports, ports.warehouse.finish(running[2].statement_id, rows=0))
    assert execute_job(ports, ports.queue.messages.pop()).job_id == waiting.job_id


# -- the reconciler and the waiting lists ---------------------------------------------------------------------------


def test_the_reconciler_leaves_jobs_waiting_their_turn_and_reaches_other_tenants_first(ports):
    """A waiting job has lost no message (a release sends it), yet every waiting job was re-queued every 5 minutes,
    each one a refused claim, a read and a park on the tenant's slots item; a list longer than a run's budget (200)
    held back other tenants' lost events (found by review: 6 runs for 1,000 waiting jobs)."""
    waiting = 300
    for message in [queued(ports, "flood") for _ in range(waiting + 2)]:
        execute_job(ports, message)
    assert len(ports.slots.waiting("flood")) == waiting
    victim = execute_job(ports, queued(ports, "victim"))
    ports.warehouse.finish(victim.statement_id, rows=0)  # its status event is lost
    later = utcnow() + timedelta(minutes=6)
    for run in range(3):
        reconcile(ports, now=later + timedelta(minutes=run))
    assert ports.jobs.get(victim.job_id).status is JobStatus.COMPLETED
    assert ports.queue.messages == []  # nobody in line was sent again
    assert ports.slots.line_reads <= 3 * 2  # one look at each tenant's line per run
    assert len(ports.slots.waiting("flood")) == waiting


def test_the_reconciler_frees_lost_slots_and_sends_the_line_on(ports):
    """Slots whose releases were lost (their jobs ended long ago) are reclaimed, as the executor does when a tenant
    is at its cap: the waiting jobs are sent then, rather than left behind slots nobody holds."""
    first, second, third = queued(ports), queued(ports), queued(ports)
    for message in (first, second, third):
        execute_job(ports, message)
    for message in (first, second):  # ended, their releases lost
        job = ports.jobs.get(message.job_id)
        ports.jobs.transition(job.job_id, JobStatus.COMPLETED, expected={JobStatus.SUBMITTED}, event_published=True)
    stale = time.time() - 2 * ports.settings.slot_lease_seconds
    ports.slots.slots["acme"] = dict.fromkeys(ports.slots.slots["acme"], stale)
    assert line(ports) == [third.job_id]
    reconcile(ports, now=utcnow() + timedelta(minutes=6))
    assert held(ports) == set()
    assert ports.queue.messages == [third]


# -- ended jobs leave the waiting list (found by the share review) ---------------------------------------------------


class SizedSlots(FakeRunningSlots):
    """The fake slots port with DynamoDB's 400 KB item limit modelled as a number of map entries (holders + waiters):
    a write that would add an entry past it fails as RunningSlots reacts to DynamoDB's ValidationException (a claim is
    refused like a full cap, a park raises). Thousands of entries on AWS (400 KB); a few here."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def _entries(self, tenant_id: str) -> int:
        return len(self.slots.get(tenant_id, {})) + len(self.waiters.get(tenant_id, {}))

    def claim(self, tenant_id, job_id, *, limit, now=None, lease=None, prune=()):
        holders = self.slots.get(tenant_id, {})
        waiting = self.waiters.get(tenant_id, {})
        grows = job_id not in holders and job_id not in waiting
        if grows and self._entries(tenant_id) + 1 > self.capacity and len(holders) < limit:
            return Claim(taken=False, holders=dict(holders))  # RunningSlots.claim on item_too_large
        return super().claim(tenant_id, job_id, limit=limit, now=now, lease=lease, prune=prune)

    def park(self, tenant_id, job_id, *, limit, now=None):
        holders = self.slots.get(tenant_id)
        condition = holders is not None and len(holders) >= limit and job_id not in holders
        grows = job_id not in self.waiters.get(tenant_id, {})
        if condition and grows and self._entries(tenant_id) + 1 > self.capacity:
            error = {"Code": "ValidationException", "Message": "Item size has exceeded the maximum allowed size"}
            raise ClientError({"Error": error}, "UpdateItem")
        return super().park(tenant_id, job_id, limit=limit, now=now)


def _set_cap(ports, tenant: str, cap: int | None) -> None:
    ports.tenants.tenants[tenant] = ports.tenants.get(tenant).model_copy(update={"max_running_statements": cap})
    tenant_cache.forget(ports.tenants, tenant)


def test_jobs_that_expire_or_are_cancelled_while_waiting_leave_the_waiting_list():
    """A job still waiting PENDING_MAX_AGE after its creation fails not_started, and a cancelled one ends: their
    places stayed on the list, which only a wake-up cleared. A paused tenant (cap 0) frees no slot to wake anyone,
    so its list only grew."""
    ports = make_ports(settings=make_settings(tenant_max_running_statements=2))
    ports.tenants.create_tenant("acme", db_user="tenant_acme", max_running_statements=0)
    expired = [queued(ports) for _ in range(3)]
    assert [execute_job(ports, m) for m in expired] == [None] * 3
    reconcile(ports, now=utcnow() + timedelta(hours=1, minutes=1))
    assert {ports.jobs.get(m.job_id).error.code for m in expired} == {"not_started"}
    cancelled = queued(ports)
    assert execute_job(ports, cancelled) is None
    queries.cancel_job(ports, Caller(tenant_id="acme"), cancelled.job_id)
    assert ports.jobs.get(cancelled.job_id).status is JobStatus.CANCELLED
    assert ports.slots.waiting("acme") == {}


def test_a_tenant_resumed_after_a_pause_runs_jobs_again_though_its_list_filled_while_paused():
    """Paused long enough for its list to reach the item's size (thousands of entries on AWS; 6 here), a tenant was
    wedged for good once resumed: no claim fit, so no slot was taken or freed to clear the ended jobs' places."""
    slots = SizedSlots(capacity=6)
    ports = make_ports(settings=make_settings(tenant_max_running_statements=2), slots=slots)
    ports.tenants.create_tenant("acme", db_user="tenant_acme", max_running_statements=0)
    paused = [queued(ports) for _ in range(6)]
    assert [execute_job(ports, m) for m in paused] == [None] * 6
    reconcile(ports, now=utcnow() + timedelta(hours=1, minutes=1))  # they fail not_started
    _set_cap(ports, "acme", None)  # resumed: the default cap (2)
    fresh = queued(ports)
    execute_job(ports, fresh)
    assert ports.jobs.get(fresh.job_id).status is JobStatus.SUBMITTED


def test_a_job_cancelled_before_its_first_delivery_does_not_park_on_a_paused_tenants_list():
    """The API's message carries the job, so its first delivery took its place in line from the message without
    reading the store: a job cancelled while its message waited in the queue parked after its ending, and on a
    tenant paused at cap 0 nothing took it off again (found by a diff review). At cap 0 the job is read first."""
    ports = make_ports(settings=make_settings(tenant_max_running_statements=2))
    ports.tenants.create_tenant("acme", db_user="tenant_acme", max_running_statements=0)
    job = ports.jobs.get(queued(ports).job_id)
    message = queued_message(job)  # as the API sends it: the job rides in the message
    queries.cancel_job(ports, Caller(tenant_id="acme"), job.job_id)
    assert execute_job(ports, message, first_delivery=True) is None
    assert ports.slots.waiting("acme") == {}


# -- the running cap's paths (found by the mutation review) ------------------------------------------------------


def test_a_job_finding_the_cap_full_of_lost_slots_frees_them_and_starts_at_once(ports):
    """The executor recomputes a full tenant's slots from the job store (share's docstring): a job that finds only
    slots whose releases were lost takes one of them now, not after the reconciler re-queues it."""
    ended, gone = queued(ports), queued(ports)
    stale = time.time() - 3600
    for message in (ended, gone):
        ports.slots.acquire("acme", message.job_id, limit=2, now=stale)  # the executors died with the slots
    ports.jobs.transition(ended.job_id, JobStatus.CANCELLED, expected={JobStatus.QUEUED})
    ports.jobs._items.pop(gone.job_id)  # gone
    waiting = queued(ports)
    started = execute_job(ports, waiting)
    assert started is not None and started.status is JobStatus.SUBMITTED
    assert held(ports) == {waiting.job_id}
    assert ports.queue.messages == []  # not put off to a delayed retry


def test_a_released_slot_wakes_one_waiting_job_not_all(ports):
    first, second = queued(ports), queued(ports)
    execute_job(ports, first)
    execute_job(ports, second)
    waiters = [queued(ports) for _ in range(3)]
    assert [execute_job(ports, w) for w in waiters] == [None] * 3
    share.release_slot(ports, "acme", first.job_id)  # as a late message or an ended start gives a slot back
    assert [m.job_id for m in ports.queue.messages] == [waiters[0].job_id]
    assert list(ports.slots.waiting("acme")) == [w.job_id for w in waiters[1:]]


def test_a_finish_the_transaction_could_not_tell_about_still_frees_the_slot(ports, monkeypatch):
    """A conflicting transaction (or a slots item made before pools): the job and its slot are written apart."""
    first, second = queued(ports), queued(ports)
    job = execute_job(ports, first)
    execute_job(ports, second)
    waiting = queued(ports)
    assert execute_job(ports, waiting) is None
    real = ports.jobs.finish
    monkeypatch.setattr(ports.jobs, "finish", lambda *a, **k: Finished(None, slots=SlotsSeen(known=False)))
    ended = finish_job(ports, job, JobStatus.FAILED, statement_id=job.statement_id)
    monkeypatch.setattr(ports.jobs, "finish", real)
    assert ended is not None and ended.status is JobStatus.FAILED
    assert first.job_id not in held(ports)
    assert [m.job_id for m in ports.queue.messages] == [waiting.job_id]


def test_an_aborted_bulk_job_does_not_park_on_the_waiting_list(ports):
    """Its place is read from the job store; an ended bulk job leaves the line instead of soaking up a wake-up."""
    from events import BulkJobQueuedMessage

    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    for holder in ("j_a", "j_b"):
        ports.slots.acquire("acme", holder, limit=2)
    job = bulk_job(state=BulkState.ABORTED, tenant_id="acme")
    ports.bulk.jobs.create(job)
    message = BulkJobQueuedMessage(job_id=job.job_id, tenant_id="acme")
    assert share._wait_for_slot(ports, message, 2) == share._ENDED
    assert ports.slots.waiting("acme") == {}


def _orphaned_at_the_cap(monkeypatch):
    """A job whose executor died between ExecuteStatement and its write, and whose slot was then reclaimed for
    another job of its tenant (cap 1), which runs: the ports, the job's message, its statement, the other job."""
    ports = make_ports(settings=make_settings(tenant_max_running_statements=1, tenant_wait_seconds=4))
    j = queued(ports)
    statement_id = _dies_recording_its_statement(ports, j, monkeypatch)
    ports.slots.restamp("acme", j.job_id, stamp=ports.slots.holders("acme")[j.job_id], now=time.time() - 3600)
    other = queued(ports)
    assert execute_job(ports, other, first_delivery=True) is not None
    return ports, j, statement_id, other


def test_a_redelivery_that_waits_records_the_statement_a_dead_attempt_started(monkeypatch):
    """The redelivered message found the tenant at its cap and parked the job instead of recording the statement
    (ClientToken): the statement's event was retried to the dead-letter queue (the fault suite's kill mid-burst), and
    an hour on the reconciler gave the job up "not run" while its statement had run (the lifecycle review). A
    redelivery that waits looks the statement up by the job's name and records it; the job leaves the line, and its
    event ends it."""
    from spectra.warehouse import Column

    ports, j, statement_id, other = _orphaned_at_the_cap(monkeypatch)
    assert execute_job(ports, j) is None  # the redelivery (not a first delivery) finds the tenant at its cap
    recorded = ports.jobs.get(j.job_id)
    assert (recorded.status, recorded.statement_id) == (JobStatus.SUBMITTED, statement_id)
    assert (held(ports), line(ports)) == ({other.job_id}, [])
    change = ports.warehouse.finish(statement_id, columns=[Column("n", "int4")], pages=["1\n"])
    assert complete_statement(ports, change).status is JobStatus.COMPLETED
    assert held(ports) == {other.job_id}  # the other job keeps its slot
    assert [s.statement_id for s in ports.warehouse.statements.values() if s.name == j.job_id] == [statement_id]


def test_a_redelivery_that_waits_cancels_the_statement_it_records_for_a_job_asked_to_stop(monkeypatch):
    """The second diff review: a job that may write, asked to stop while its executor started it (a 202, see
    queries.cancel_job), whose executor died before recording the statement, had the statement recorded by its
    redelivery at the cap and never cancelled: the INSERT ran on and the job COMPLETED."""
    from spectra.jobs import utcnow

    ports, j, statement_id, _ = _orphaned_at_the_cap(monkeypatch)
    assert ports.jobs.update(j.job_id, [JobStatus.QUEUED], cancel_requested_at=utcnow()) is not None  # the 202
    assert execute_job(ports, j) is None  # the redelivery finds the tenant at its cap
    recorded = ports.jobs.get(j.job_id)
    assert (recorded.status, recorded.statement_id) == (JobStatus.SUBMITTED, statement_id)
    assert ports.warehouse.statements[statement_id].status == "ABORTED"  # its event ends the job CANCELLED


def test_a_redelivery_at_the_cap_asks_again_a_cancel_that_was_throttled(monkeypatch):
    """The third diff review: the redelivery that recorded the statement had its CancelStatement throttled, and the
    next, still at the cap, found the statement recorded and returned: the INSERT ran on."""
    from spectra.errors import Throttled
    from spectra.jobs import utcnow

    ports, j, statement_id, _ = _orphaned_at_the_cap(monkeypatch)
    assert ports.jobs.update(j.job_id, [JobStatus.QUEUED], cancel_requested_at=utcnow()) is not None
    ports.warehouse.throttle_next("cancel")
    with pytest.raises(Throttled):
        execute_job(ports, j)
    assert ports.warehouse.statements[statement_id].status == "SUBMITTED"
    assert execute_job(ports, j) is None  # the next redelivery, the tenant still at its cap
    assert ports.warehouse.statements[statement_id].status == "ABORTED"


def test_a_statement_a_dead_executor_started_is_recorded_by_its_event_once_no_executor_could_still(monkeypatch):
    """Should no redelivery come to record it (the message's copies used up, a first delivery of a re-queue that
    waits), completion records a statement made longer ago than any executor runs, and the job ends with its
    outcome and leaves the line (the lifecycle review)."""
    from spectra import lifecycle
    from spectra.warehouse import Column

    monkeypatch.setattr(lifecycle, "START_RECORD_WAIT_SECONDS", 0.05)
    ports, j, statement_id, other = _orphaned_at_the_cap(monkeypatch)
    assert execute_job(ports, j, first_delivery=True) is None  # a first delivery waits, and looks nothing up
    assert (held(ports), line(ports)) == ({other.job_id}, [j.job_id])
    change = ports.warehouse.finish(statement_id, columns=[Column("n", "int4")], pages=["1\n"])
    # the event as it comes at first: an executor might still be about to record the statement
    with pytest.raises(lifecycle.StartNotRecorded):
        complete_statement(ports, change)
    assert status(ports, j) is JobStatus.QUEUED
    # its retry, made longer ago than any executor runs: recorded on the job, which ends with its result
    made = utcnow() - timedelta(seconds=lifecycle.ORPHANED_AFTER_SECONDS + 1)
    ports.warehouse.statements[statement_id].created_at = made
    finished = complete_statement(ports, change)
    assert finished is not None and finished.status is JobStatus.COMPLETED
    assert finished.statement_id == statement_id and finished.result.row_count == 1
    assert (held(ports), line(ports)) == ({other.job_id}, [])  # it left the line; the other job keeps its slot
    assert ports.events.types() == ["Job Completed"]
    # the parked message's wake-up, should one still come, starts nothing: the same statement, already recorded
    assert execute_job(ports, j) is None
    assert [s.statement_id for s in ports.warehouse.statements.values() if s.name == j.job_id] == [statement_id]
