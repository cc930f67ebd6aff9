"""The one-call path (POST /v1/queries with wait_timeout) once its job exists (found by the listings review).

Without an Idempotency-Key the client's retry is another job, so no failure after the job exists may answer 500
"safe to retry". The wait's own reads and the result read after it did, on a passing store error, for a job that
was queued (or had run: an INSERT retried runs twice). They now answer the job."""

from __future__ import annotations

import functools
import json
import time
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from events import JobQueuedMessage, JobStatus
from producers.api import app as api
from spectra import queries, waits
from spectra.jobs import utcnow
from spectra.lifecycle import complete_statement, execute_job
from spectra.queries import WaitTimeoutAction, await_job, wait_for_job
from spectra.warehouse import Column
from tests.unit.fakes import make_ports, serving
from tests.unit.test_queries import ACME, FakeClock, started, submit

pytestmark = pytest.mark.unit


def _throttled(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, operation)


@pytest.fixture
def ports(monkeypatch):
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    yield from serving(monkeypatch, api, ports)


def post_query(body: dict, headers: dict | None = None) -> tuple[int, dict]:
    event = {
        "httpMethod": "POST",
        "path": "/v1/queries",
        "resource": "/v1/queries",
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body),
        "isBase64Encoded": False,
        "requestContext": {"requestId": "r1", "authorizer": {"tenant_id": "acme"}, "stage": "v1"},
    }
    answer = api.app.resolve(event, None)
    return answer["statusCode"], json.loads(answer["body"])


def test_a_store_error_during_the_wait_answers_the_queued_job_not_a_500(ports):
    """The job is created and queued; one GetItem of the wait fails (throttled past the SDK's retries): the wait ends
    there and the job is answered as last seen."""
    calls = {"n": 0}
    original_get = ports.jobs.get

    def flaky_get(job_id):
        calls["n"] += 1
        if calls["n"] == 1:
            raise _throttled("GetItem")
        return original_get(job_id)

    ports.jobs.get = flaky_get
    status, body = post_query({"sql": "select 1 as one", "wait_timeout": 2})
    queued = [m for m in ports.queue.messages]
    assert len(queued) == 1  # the job exists and will run
    assert status == 202 and body["job_id"] == queued[0].job_id, body


def test_a_store_error_reading_the_result_after_the_wait_answers_the_completed_job_not_a_500(ports):
    """The job completed within the wait, and every job read after the wait's last look would fail: the results come
    from the job the wait read (job_results' read of its own answered 500, listings review)."""
    original_get = ports.jobs.get
    state = {"completed": False, "reads_after": 0}

    def get(job_id):
        job = original_get(job_id)
        if not state["completed"]:  # the first look of the wait: the job runs and completes meanwhile
            state["completed"] = True
            ports.jobs.get = original_get  # the executor and the completion read the store as it is
            started = execute_job(ports, JobQueuedMessage(job_id=job_id, tenant_id="acme"))
            change = ports.warehouse.finish(started.statement_id, columns=[Column("one", "int4")], pages=["1\n"])
            complete_statement(ports, change)
            ports.jobs.get = get
            return original_get(job_id)
        if job.status is JobStatus.COMPLETED and state["reads_after"]:  # any read after the look that saw it end
            raise _throttled("GetItem")
        state["reads_after"] += job.status is JobStatus.COMPLETED
        return job

    ports.jobs.get = get
    status, body = post_query({"sql": "select 1 as one", "wait_timeout": 2})
    completed = [j for j in ports.jobs.list_for_tenant("acme", limit=10).jobs if j.status is JobStatus.COMPLETED]
    assert len(completed) == 1  # the statement ran
    assert status == 200 and body["results"]["rows"] == [[1]], body


def completes_during_the_wait(ports) -> None:
    """The job runs and completes during the wait's first look."""
    original_get = ports.jobs.get

    def get(job_id):
        ports.jobs.get = original_get
        started = execute_job(ports, JobQueuedMessage(job_id=job_id, tenant_id="acme"))
        change = ports.warehouse.finish(started.statement_id, columns=[Column("one", "int4")], pages=["1\n"])
        complete_statement(ports, change)
        return original_get(job_id)

    ports.jobs.get = get


def test_results_that_cannot_be_given_after_the_wait_answer_the_completed_job_alone(ports, monkeypatch):
    from spectra import queries

    def broken(ports_, job):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")

    monkeypatch.setattr(queries, "results_body", broken)
    completes_during_the_wait(ports)
    status, body = post_query({"sql": "select 1 as one", "wait_timeout": 2})
    assert status == 200 and body["status"] == "COMPLETED" and body.get("results") is None, body


def test_a_repeat_whose_results_expired_is_told_so_not_answered_completed_without_results(ports):
    """A one-call query retried with its Idempotency-Key after its result's retention answers 410 gone, as a GET of
    the results does ("run the query again"), not 200 COMPLETED without results (review of 575c65f)."""
    body = {"sql": "select 1 as one", "wait_timeout": 2}
    key = {"Idempotency-Key": "daily-1"}
    completes_during_the_wait(ports)
    status, first = post_query(body, key)
    assert status == 200 and first["results"]["rows"] == [[1]], first
    job = ports.jobs.get(first["job_id"])
    expired = job.result.model_copy(update={"expires_at": utcnow() - timedelta(hours=1)})
    ports.jobs.update(job.job_id, [JobStatus.COMPLETED], result=expired)
    status, repeat = post_query(body, key)
    assert status == 410, (status, repeat)


def test_failing_reads_do_not_carry_the_wait_past_the_functions_time(ports):
    """wait_timeout 25 in a function with 29 s: _wait_seconds gives 25, leaving 3 s (README: "the wait also stops
    3 s before the function would time out"). DynamoDB throttles; each GetItem fails after the standard client's
    retries (~8 s here). A wait that looked again after a failed read started another look at 24.3 s that ended at
    32.3 s, past the function's 29 s: a 5xx for a job that exists (review of 78bbe16). The wait ends at the first
    failed read."""
    job, _ = submit(ports)
    clock = FakeClock()

    def slow_failing_get(job_id):
        clock.now += 8.0  # the SDK's retries against a throttling table
        raise _throttled("GetItem")

    ports.jobs.get = slow_failing_get
    wait_for_job(ports, job, seconds=25, clock=clock, sleep=clock.sleep)
    assert clock.now <= 25 + 3, f"the wait returned at {clock.now:.1f} s, the function ends at 28-29 s"


def test_a_cancel_on_timeout_that_could_not_be_sent_is_said_in_the_answer(ports, monkeypatch):
    """on_wait_timeout CANCEL, CancelStatement throttled: 202 with the job (not the 429 that invited a second job)
    and ``cancel_error`` saying the cancel was not sent, so the client knows to DELETE (diff reviews)."""
    send = ports.queue.send

    def send_and_start(message, **kwargs):  # the executor takes the job at once; it runs past the wait
        sent = send(message, **kwargs)
        execute_job(ports, message, first_delivery=True)
        return sent

    monkeypatch.setattr(ports.queue, "send", send_and_start)
    ports.warehouse.throttle_next("cancel")
    status, body = post_query({"sql": "select 1 as one", "wait_timeout": 1, "on_wait_timeout": "CANCEL"})
    assert status == 202 and body["status"] == "SUBMITTED", body
    assert body["cancel_error"]["code"] == "cancel_failed" and "DELETE /v1/jobs/" in body["cancel_error"]["message"]


def test_slow_reads_that_succeed_do_not_carry_the_wait_past_the_functions_time(ports):
    """The case of test_failing_reads_do_not_carry_the_wait_past_the_functions_time (a throttled table, GetItem
    taking ~8 s of the standard client's retries) when the last retry succeeds: the wait's last look started just
    before 25 s and ended past the function's 29 s (review of 63785ac). A look is not started with less time left
    than the slowest one took."""
    job, _ = submit(ports)
    clock = FakeClock()
    real_get = ports.jobs.get

    def slow_get(job_id):
        clock.now += 8.0  # the SDK's retries against a throttling table; the last one gets through
        return real_get(job_id)

    ports.jobs.get = slow_get
    wait_for_job(ports, job, seconds=25, clock=clock, sleep=clock.sleep)
    assert clock.now <= 25 + 3, f"the wait returned at {clock.now:.1f} s, the function ends at 28-29 s"


# -- the wait's edges (review of 6f79248): its last look at the deadline, slow job stores, a keyless job whose
# message's send is ambiguous, and what cancel_error says


def _complete(ports, job_id):
    job = ports.jobs.get(job_id)
    change = ports.warehouse.finish(job.statement_id, columns=[Column("one", "int4")], pages=["1\n"])
    return complete_statement(ports, change)


def test_the_look_at_the_deadline_is_made_whatever_the_looks_took(ports):
    """Each GetItem takes 2 ms (a real clock never reads 0). The job completes at 0.95 s of a 1 s wait: the look
    the wait's last sleep led to (at 1.0 s) found less time left (0) than the slowest look (2 ms) and was skipped."""
    job = started(ports)
    clock = FakeClock(lambda n: clock.now >= 0.95 and ports.jobs.get(job.job_id).status is JobStatus.SUBMITTED
                      and _complete(ports, job.job_id))  # fmt: skip
    real_get = ports.jobs.get

    def get(job_id):
        clock.now += 0.002
        return real_get(job_id)

    ports.jobs.get = get
    waited = wait_for_job(ports, job, seconds=1, clock=clock, sleep=clock.sleep)[0]
    assert waited.status is JobStatus.COMPLETED, (waited.status, clock.now)


def test_a_query_done_just_before_its_wait_timeout_is_answered_with_its_results(ports, monkeypatch):
    """API, on_wait_timeout CONTINUE (the default): the statement completes between the wait's last two looks (at
    1.8 s of a 2 s wait, looked at about 1.6 s and 2.0 s). README: "a job that ends in time is answered 200 with its
    result". The wait's clock is a fake one: on the real clock, under a loaded machine, the completion could land after
    the look at the deadline, and the test failed once so (202 SUBMITTED, answered at 2.02 s)."""
    send, sent = ports.queue.send, []

    def send_and_start(message, **kwargs):
        sent.append(execute_job(ports, message, first_delivery=True) and message.job_id)
        return send(message, **kwargs)

    def completes_at_1_8(_sleeps) -> None:
        if clock.now >= 1.8 and ports.jobs.get(sent[0]).status is JobStatus.SUBMITTED:
            _complete(ports, sent[0])

    clock = FakeClock(completes_at_1_8)
    monkeypatch.setattr(queries, "await_job", functools.partial(queries.await_job, clock=clock, sleep=clock.sleep))
    ports.queue.send = send_and_start
    status, body = post_query({"sql": "select 1 as one", "wait_timeout": 2})
    assert status == 200 and body["status"] == "COMPLETED", (status, body["status"], clock.sleeps)
    assert body["results"]["rows"] == [[1]], body
    assert clock.now - clock.sleeps[-1] < 1.8 <= clock.now <= 2.0, clock.sleeps  # done between the last two looks


def test_a_keyless_job_whose_send_reached_the_queue_runs_once_from_its_message(ports):
    """The send's answer is lost after SQS took the message. submit_query failed the job (enqueue_failed) and
    re-raised, which could land between the executor's ExecuteStatement and its write: 500 "safe to retry" for a
    statement that was started (a short INSERT then ran again through the retry; reviews of 6f79248 and 1143f92).
    Now nothing is failed: the job is answered and runs once, from its message."""
    real_send = ports.queue.send
    delivered = []

    def send(message, **how):
        real_send(message, **how)
        delivered.append(message)
        raise ReadTimeoutError(endpoint_url="https://sqs.eu-west-1.amazonaws.com/")

    ports.queue.send = send
    status, body = post_query({"sql": "select 1 as one"})
    assert status == 202 and body["status"] == "QUEUED", (status, body)
    started = execute_job(ports, delivered[0], first_delivery=True)
    assert started.status is JobStatus.SUBMITTED and len(ports.warehouse.executed()) == 1


def test_a_cancel_whose_answer_timed_out_is_said_unconfirmed(ports):
    """The quick CancelStatement reaches the Data API, which aborts the statement, but its answer is later than the
    1.5 s read timeout. cancel_error said "the job was not cancelled"; it says the cancel is unconfirmed now."""
    job = started(ports)
    real_cancel = ports.warehouse.cancel

    def cancel(statement_id, **how):
        real_cancel(statement_id, **how)
        raise ReadTimeoutError(endpoint_url="https://redshift-data.eu-west-1.amazonaws.com/")

    ports.warehouse.cancel = cancel
    clock = FakeClock()
    waited = await_job(ports, ACME, job, seconds=1, on_timeout=WaitTimeoutAction.CANCEL, clock=clock, sleep=clock.sleep)
    ended = complete_statement(ports, ports.warehouse.status_change(job.statement_id))
    assert ended.status is JobStatus.CANCELLED  # it was cancelled
    assert waited.cancel_error.code == "cancel_unconfirmed", waited.cancel_error  # not "was not cancelled"


def test_slow_reads_do_not_carry_a_cancel_on_timeout_past_the_functions_time(ports):
    """The case of test_slow_reads_that_succeed_do_not_carry_the_wait_past_the_functions_time with on_wait_timeout
    CANCEL: the wait stopped in time, then cancel_job read the job twice (GetItem, same throttled table, 8 s each)
    and await_job once more: the answer came long after the function's 28-29 s. A wait whose looks were slow
    cancels nothing, and says so."""
    job = started(ports)
    clock = FakeClock()
    real_get, real_get_for_tenant = ports.jobs.get, ports.jobs.get_for_tenant

    def slow(real):
        def read(*args):
            clock.now += 8.0
            return real(*args)

        return read

    ports.jobs.get = slow(real_get)
    ports.jobs.get_for_tenant = slow(real_get_for_tenant)
    cancel = WaitTimeoutAction.CANCEL
    waited = await_job(ports, ACME, job, seconds=25, on_timeout=cancel, clock=clock, sleep=clock.sleep)
    assert clock.now <= 25 + 3, f"the answer came at {clock.now:.1f} s, the function ends at 28-29 s"
    assert waited.cancel_error.code == "cancel_failed" and "too slowly" in waited.cancel_error.message


def test_a_read_failing_after_an_accepted_cancel_does_not_say_it_was_not_sent(ports):
    """CancelStatement is accepted (the statement aborts); cancel_job's read of the job after it fails (throttled):
    cancel_error said "the job was not cancelled (the warehouse could not be asked)". The job is answered as the cancel
    marked it."""
    from tests.unit.test_one_call_query import _throttled

    job = started(ports)
    real_cancel, real_get_for_tenant = ports.warehouse.cancel, ports.jobs.get_for_tenant
    state = {"cancelled": False}

    def cancel(statement_id, **how):
        state["cancelled"] = True
        return real_cancel(statement_id, **how)

    def get_for_tenant(*args):
        if state["cancelled"]:
            raise _throttled("GetItem")
        return real_get_for_tenant(*args)

    ports.warehouse.cancel = cancel
    ports.jobs.get_for_tenant = get_for_tenant
    clock = FakeClock()
    waited = await_job(ports, ACME, job, seconds=1, on_timeout=WaitTimeoutAction.CANCEL, clock=clock, sleep=clock.sleep)
    assert ports.warehouse.statements[job.statement_id].status == "ABORTED"  # the cancel reached the warehouse
    assert waited.cancel_error is None, waited.cancel_error


def test_the_wait_leaves_its_margin_when_queueing_the_job_was_slow(ports, monkeypatch):
    """The wait is what the function has left once the job is queued (a cold environment, a 100 KB statement, SQS
    retried: 4 s here), not what it had when the request came in: measured before, it ran 4 s into the margin the
    answer needs, and a 25 s wait then outlived the function's 29 s (a 504 for a queued job; found by review)."""
    clock = {"now": 0.0}

    class Context:  # the API function's Timeout, 29 s (template.yaml)
        function_name, memory_limit_in_mb, aws_request_id = "api", 512, "r1"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:api"

        def get_remaining_time_in_millis(self):
            return int((29.0 - clock["now"]) * 1000)

    submit_query = api.queries.submit_query

    def slow_submit(*args, **kwargs):
        clock["now"] += 4.0
        return submit_query(*args, **kwargs)

    waited = {}

    def recorded_wait(ports, caller, job, *, seconds, on_timeout):
        waited["seconds"], waited["at"] = seconds, clock["now"]
        return api.queries.Waited(job=job)

    taken = []
    take = ports.waits.take

    def recorded_take(tenant_id, lease_id, *, limit, until, now=None):
        taken.append(until - now)
        return take(tenant_id, lease_id, limit=limit, until=until, now=now)

    monkeypatch.setattr(api.queries, "submit_query", slow_submit)
    monkeypatch.setattr(api.queries, "await_job", recorded_wait)
    monkeypatch.setattr(ports.waits, "take", recorded_take)
    answer = api.app.resolve(_a_25_second_wait(), Context())
    assert answer["statusCode"] in (200, 202), answer["body"]
    assert waited["at"] + waited["seconds"] <= 29.0 - api._WAIT_MARGIN_SECONDS, waited
    assert taken == [pytest.approx(29.0)]  # the lease lasts as long as the request can: to the function's end
    assert ports.waits.held("acme") == {}  # and was given back when it answered


# -- a repeat while the tenant's waits are all taken (README walk of "Per-tenant share")


def _take_every_wait(ports, tenant_id="acme"):
    for n in range(waits.wait_cap(ports, tenant_id)):
        assert ports.waits.take(tenant_id, f"other-{n}", limit=n + 1, until=time.time() + 60)


def test_a_repeat_past_the_tenants_waits_is_answered_its_job_not_told_to_send_it_again(ports):
    """A client whose one-call answer was lost sends it again with its Idempotency-Key while its tenant's other
    one-call queries hold every wait lease: the job exists, so the repeat makes none and is answered it (200, with
    its rows when it completed), as a repeated key is, not 429 too_many_waits "send this one again", which the
    client would retry into the same refusal as long as the others keep waiting."""
    body = {"sql": "select 1 as one", "wait_timeout": 5}
    status, first = post_query({"sql": "select 1 as one"}, {"Idempotency-Key": "k-1"})
    assert status == 202, first
    execute_job(ports, JobQueuedMessage(job_id=first["job_id"], tenant_id="acme"))
    _complete(ports, first["job_id"])
    _take_every_wait(ports)

    status, repeat = post_query(body, {"Idempotency-Key": "k-1"})
    assert status == 200, repeat
    assert (repeat["job_id"], repeat["status"]) == (first["job_id"], "COMPLETED")
    assert repeat["results"]["rows"] == [[1]]
    assert len(ports.queue.messages) == 1  # no second job

    status, new = post_query(body, {"Idempotency-Key": "k-2"})  # a new key still makes no job past the cap
    assert (status, new["error"]["code"]) == (429, "too_many_waits"), new
    status, other = post_query({**body, "sql": "select 2 as two"}, {"Idempotency-Key": "k-1"})
    assert (status, other["error"]["code"]) == (409, "conflict"), other  # the key names another request
    assert len(ports.queue.messages) == 1


@pytest.mark.parametrize("headers", [{}, {"Idempotency-Key": "k-1"}], ids=["keyless", "keyed"])
def test_a_request_that_can_never_pass_is_its_400_past_the_tenants_waits_not_a_429(ports, headers):
    """The waits review: the wait lease was taken before the request was checked, so bad SQL sent while the
    tenant's waits were taken was a 429 "send this one again", which a client retrying 429s did for ever."""
    _take_every_wait(ports)
    status, refused = post_query({"sql": "select nope from", "wait_timeout": 5}, headers)
    assert (status, refused["error"]["code"]) == (400, "sql_rejected"), refused
    status, later = post_query({"sql": "select 1 as one", "wait_timeout": 5}, headers)
    assert (status, later["error"]["code"]) == (429, "too_many_waits"), later  # a good one waits its turn
    assert ports.queue.messages == []


@pytest.mark.parametrize("headers", [{}, {"Idempotency-Key": "k-1"}], ids=["keyless", "keyed"])
def test_a_callback_url_refused_is_its_400_past_the_tenants_waits_not_a_429(monkeypatch, headers):
    """The second diff review: the callback URL is checked where the job is made, which a request past its tenant's
    waits never reaches: ftp:// was a 429 "send it again" there, and a 400 url_refused otherwise."""
    from tests.unit.fakes import make_notify

    ports = make_ports(notify=make_notify())
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    monkeypatch.setattr(api, "get_ports", lambda budget: ports)
    _take_every_wait(ports)
    body = {"sql": "select 1 as one", "wait_timeout": 5, "callback_url": "ftp://hooks.example.com/x"}
    status, refused = post_query(body, headers)
    assert (status, refused["error"]["code"]) == (400, "url_refused"), refused


def test_a_repeat_past_the_tenants_waits_of_a_running_job_is_answered_at_once(ports):
    """The repeated job still runs: it is answered as it stands (200, a repeat), without a lease to wait with."""
    status, first = post_query({"sql": "select 1 as one"}, {"Idempotency-Key": "k-1"})
    execute_job(ports, JobQueuedMessage(job_id=first["job_id"], tenant_id="acme"))
    _take_every_wait(ports)
    status, repeat = post_query({"sql": "select 1 as one", "wait_timeout": 5}, {"Idempotency-Key": "k-1"})
    assert status == 200, repeat
    assert (repeat["job_id"], repeat["status"], repeat.get("results")) == (first["job_id"], "SUBMITTED", None)
    assert set(ports.waits.held("acme")) == {f"other-{n}" for n in range(waits.wait_cap(ports, "acme"))}


@pytest.mark.parametrize("started", [False, True], ids=["queued", "running"])
def test_a_repeat_past_the_tenants_waits_asking_cancel_says_no_cancel_was_sent(ports, started):
    """It cannot wait, so it cannot cancel when the wait ends: the answer says so (cancel_error), where it read as a
    wait that needed no cancel while the statement ran on (the diff review). A finished job needs no word."""
    status, first = post_query({"sql": "select 1 as one"}, {"Idempotency-Key": "k-1"})
    if started:
        execute_job(ports, JobQueuedMessage(job_id=first["job_id"], tenant_id="acme"))
    _take_every_wait(ports)
    body = {"sql": "select 1 as one", "wait_timeout": 1, "on_wait_timeout": "CANCEL"}
    status, repeat = post_query(body, {"Idempotency-Key": "k-1"})
    assert status == 200 and repeat["status"] == ("SUBMITTED" if started else "QUEUED"), repeat
    assert repeat["cancel_error"]["code"] == "cancel_failed", repeat
    assert "not waited" in repeat["cancel_error"]["message"] and first["job_id"] in repeat["cancel_error"]["message"]
    status, again = post_query({**body, "on_wait_timeout": "CONTINUE"}, {"Idempotency-Key": "k-1"})
    assert status == 200 and again["cancel_error"] is None, again


def test_a_repeat_past_the_waits_of_a_job_whose_cancel_was_sent_does_not_say_it_was_not(ports):
    """The first request's wait ran out and its CANCEL went out; its answer was lost, and the repeat comes while the
    tenant's waits are all taken: cancel_requested, and no cancel_error saying it was not cancelled (the diff
    review)."""
    body = {"sql": "select 1 as one", "wait_timeout": 1, "on_wait_timeout": "CANCEL"}
    status, first = post_query({"sql": "select 1 as one"}, {"Idempotency-Key": "k-1"})
    execute_job(ports, JobQueuedMessage(job_id=first["job_id"], tenant_id="acme"))
    status, waited = post_query(body, {"Idempotency-Key": "k-1"})  # a wait of its own: it runs out, and cancels
    assert waited["cancel_requested"] and waited["cancel_error"] is None, waited
    _take_every_wait(ports)
    status, repeat = post_query(body, {"Idempotency-Key": "k-1"})
    assert status == 200 and repeat["cancel_requested"] and repeat["cancel_error"] is None, repeat


def test_the_wait_ends_before_api_gateways_timeout_when_a_cold_start_took_some_of_it(ports, monkeypatch):
    """API Gateway's 29 s count from the request, a new environment's initialisation included, while the function's
    Timeout starts with its handler: 6 s of cold start left a 25 s wait answering at about 31 s, after API Gateway's
    504 (API Gateway review). The wait is bounded by the request's requestTimeEpoch too: 29 - 6 - 3 s."""

    class Context:  # a fresh invocation: the function's whole 29 s ahead
        function_name, memory_limit_in_mb, aws_request_id = "api", 512, "r1"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:api"

        def get_remaining_time_in_millis(self):
            return 29_000

    waited = {}

    def recorded_wait(ports, caller, job, *, seconds, on_timeout):
        waited["seconds"] = seconds
        return api.queries.Waited(job=job)

    monkeypatch.setattr(api.queries, "await_job", recorded_wait)
    received = int((time.time() - 6.0) * 1000)  # API Gateway took the request 6 s ago
    answer = api.app.resolve(_a_25_second_wait(requestTimeEpoch=received), Context())
    assert answer["statusCode"] in (200, 202), answer["body"]
    assert 19.0 <= waited["seconds"] <= 20.0, waited


def _a_25_second_wait(**request_context) -> dict:
    """A POST /v1/queries event asking for a 25 s wait, its request context extended by ``request_context``."""
    return {
        "httpMethod": "POST",
        "path": "/v1/queries",
        "resource": "/v1/queries",
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"sql": "select 1", "wait_timeout": 25}),
        "isBase64Encoded": False,
        "requestContext": {"requestId": "r1", "authorizer": {"tenant_id": "acme"}, "stage": "v1", **request_context},
    }
