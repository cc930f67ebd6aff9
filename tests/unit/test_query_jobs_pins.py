"""Query job behaviour no test held before (found by the second mutation testing run of spectra/queries.py): a
keyless job whose send failed is answered even when the store cannot be read again; the request's later log lines
carry its job's id; a keyed request that lost the race for its key to another request keeps no callback of its own
(the one whose job was made stands, or none when the key went to a different request); a one-call query repeated
under its key answers the first request's callback and secret, and one answered past its tenant's waits logs under
its job's id; a key reused with another row_limit is a 409; a DELETE whose job store write fails is its error (the job
still QUEUED), and one whose read after an accepted cancel fails is answered the job as marked. On the in-memory ports
of tests/unit/fakes.py."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from events import JobStatus, ResultFormat
from spectra import logs
from spectra.errors import Conflict
from spectra.notify import service
from spectra.queries import QueryAsk, answer_query, cancel_job, get_job, submit_query
from tests.unit.test_notify import ACME, ports_with_notify
from tests.unit.test_one_call_query import _take_every_wait
from tests.unit.test_queries import started, submit, with_tenants

pytestmark = pytest.mark.unit


def test_a_keyless_job_whose_send_and_reread_both_failed_is_still_answered_queued(monkeypatch):
    """The message's send timed out and the store cannot be read again either: the job exists and runs by its message
    or the reconciler, so the request is answered that job, QUEUED (its id is the client's only handle on it), not
    an error inviting a retry that would run the query twice, nor no job at all."""
    ports = with_tenants()
    ports.queue.fail_next(ReadTimeoutError(endpoint_url="https://sqs.eu-west-1.amazonaws.com/"))

    def unreadable(job_id):
        raise EndpointConnectionError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com/")

    monkeypatch.setattr(ports.jobs, "get", unreadable)
    job, created = submit(ports)
    monkeypatch.undo()
    assert created is True
    assert job.status is JobStatus.QUEUED
    assert ports.jobs.get(job.job_id).job_id == job.job_id


def test_the_requests_later_log_lines_carry_the_job_id():
    """Once a job is made, the request's later log lines name it (spectra/logs.py), so an operator can follow a
    job from its submit; a repeat's lines name the job it was answered."""
    ports = with_tenants()
    with logs.job_keys():
        job, _ = submit(ports, idempotency_key="k1")
        assert logs.current()["job_id"] == job.job_id
    with logs.job_keys():
        repeat, created = submit(ports, idempotency_key="k1")
        assert created is False and repeat.job_id == job.job_id
        assert logs.current()["job_id"] == job.job_id


def _submit_with(ports, key: str, url: str, sql: str = "select 1"):
    callback = service.new_callback(url)
    job, created = submit_query(
        ports, ACME, sql=sql, parameters=[], fmt=ResultFormat.JSON, idempotency_key=key, callback=callback
    )
    return job, created, callback


def _the_first_request_lands_meanwhile(ports, monkeypatch, first_sql: str):
    """Two requests under one key at once: the second looks for the key's job before the first has written it, and
    then the first's job (and its idempotency record) lands before the second's write."""
    repeat_of = ports.jobs.repeat_of
    state = {"done": False}

    def not_yet_then_first_lands(job, *, fingerprint=None):
        if state["done"]:
            return repeat_of(job, fingerprint=fingerprint)
        state["done"] = True
        landed = _submit_with(ports, "k1", "https://hooks.acme.example/first", sql=first_sql)
        state["first"] = landed
        return None

    monkeypatch.setattr(ports.jobs, "repeat_of", not_yet_then_first_lands)
    return state


def test_a_request_that_lost_its_keys_race_to_its_own_repeat_keeps_no_callback_of_its_own(monkeypatch):
    """The same request sent twice at once under one key: the one whose write lost is answered the other's job (not
    created), and the callback it recorded under the job id it drew is discarded; the job's callback is the winner's,
    the only one stored."""
    ports = ports_with_notify()
    state = _the_first_request_lands_meanwhile(ports, monkeypatch, first_sql="select 1")
    job, created, _ = _submit_with(ports, "k1", "https://hooks.acme.example/first")
    first_job, _, first_callback = state["first"]
    assert created is False and job.job_id == first_job.job_id
    assert [(s.job_id, s.secret) for s in ports.notify.subscriptions.items.values()] == [
        (first_job.job_id, first_callback.secret)
    ]


def test_a_request_whose_key_went_meanwhile_to_another_request_is_refused_and_keeps_no_callback(monkeypatch):
    """The key was taken meanwhile by a different request (another statement): this one is a 409 and no job, so its
    callback, recorded before the write, is discarded too; only the other request's stands."""
    ports = ports_with_notify()
    state = _the_first_request_lands_meanwhile(ports, monkeypatch, first_sql="select 2")
    with pytest.raises(Conflict):
        _submit_with(ports, "k1", "https://hooks.acme.example/first")
    first_job, _, first_callback = state["first"]
    assert [(s.job_id, s.secret) for s in ports.notify.subscriptions.items.values()] == [
        (first_job.job_id, first_callback.secret)
    ]


def _answer(ports, ask: QueryAsk):
    return answer_query(
        ports,
        ACME,
        ask,
        correlation_id=None,
        seconds_left=lambda wait: 30.0,
        wait_seconds=lambda wait: 0.0,
        on_job=lambda created: None,
    )


def test_a_one_call_querys_repeat_answers_the_first_requests_callback_and_secret():
    """README (Callbacks): a repeat under the same Idempotency-Key answers the callback the first request stored,
    secret included (a client whose first answer was lost has no other way to learn it), not the secret drawn for the
    repeat, which is never stored; a new request answers its own."""
    ports = ports_with_notify()
    first = service.new_callback("https://hooks.acme.example/cb")
    ask = QueryAsk(sql="select 1", parameters=[], fmt=ResultFormat.JSON, idempotency_key="k1", callback=first)
    answered = _answer(ports, ask)
    assert answered.created is True and answered.callback.secret == first.secret
    again = service.new_callback("https://hooks.acme.example/cb")
    repeat = _answer(ports, QueryAsk(**{**ask.__dict__, "callback": again}))
    assert repeat.created is False and repeat.job.job_id == answered.job.job_id
    assert repeat.callback.secret == first.secret != again.secret
    assert repeat.callback.url == "https://hooks.acme.example/cb"


def test_a_one_call_query_answered_past_its_tenants_waits_logs_under_its_jobs_id():
    """A repeat answered its job without a wait (every wait of its tenant taken): the request's later log lines name
    that job, as any repeat's do."""
    ports = with_tenants()
    ask = QueryAsk(sql="select 1", parameters=[], fmt=ResultFormat.JSON, idempotency_key="k1")
    first = _answer(ports, ask)
    _take_every_wait(ports)
    with logs.job_keys():
        repeat = _answer(ports, QueryAsk(**{**ask.__dict__, "wait_timeout": 5}))
        assert repeat.created is False and repeat.job.job_id == first.job.job_id
        assert logs.current()["job_id"] == first.job.job_id


def test_a_key_reused_with_another_row_limit_is_a_conflict_and_the_same_one_a_repeat():
    """row_limit is part of the request an Idempotency-Key names: the same statement with another row_limit under the
    key is another request (409), not answered the first job with its other limit; the same row_limit repeats."""
    ports = with_tenants()
    job, created = submit(ports, idempotency_key="k1", row_limit=10)
    with pytest.raises(Conflict):
        submit(ports, idempotency_key="k1", row_limit=20)
    repeat, created_again = submit(ports, idempotency_key="k1", row_limit=10)
    assert (created, created_again, repeat.job_id) == (True, False, job.job_id)


def _throttled(*args, **kwargs):
    raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "UpdateItem")


def test_a_cancel_of_a_queued_job_whose_write_is_throttled_is_its_error_and_the_job_stays_queued(monkeypatch):
    """The job store refuses the write that would end the queued job CANCELLED: the DELETE is that refusal (a 429 the
    client repeats), not the job answered as if cancelled while it stays QUEUED and runs."""
    ports = with_tenants()
    job, _ = submit(ports)
    monkeypatch.setattr(ports.jobs, "finish", _throttled)
    monkeypatch.setattr(ports.jobs, "transition", _throttled)
    with pytest.raises(ClientError):
        cancel_job(ports, ACME, job.job_id)
    monkeypatch.undo()
    assert get_job(ports, ACME, job.job_id).status is JobStatus.QUEUED
    assert cancel_job(ports, ACME, job.job_id).status is JobStatus.CANCELLED  # the repeat carries it out


def test_a_delete_whose_read_after_the_accepted_cancel_fails_is_answered_the_job_as_marked(monkeypatch):
    """CancelStatement went out for a running job; the read that would answer the job as it now stands fails: the
    DELETE is answered the job as marked (its cancel requested), not an error that says the cancel was not sent."""
    ports = with_tenants()
    job = started(ports)
    read = ports.jobs.get_for_tenant
    reads = []

    def first_read_only(tenant_id, job_id):
        reads.append(job_id)
        if len(reads) > 1:
            raise EndpointConnectionError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com/")
        return read(tenant_id, job_id)

    monkeypatch.setattr(ports.jobs, "get_for_tenant", first_read_only)
    answered = cancel_job(ports, ACME, job.job_id)
    assert answered.job_id == job.job_id
    assert answered.status is JobStatus.SUBMITTED and answered.cancel_requested_at is not None
    assert len(reads) == 2
