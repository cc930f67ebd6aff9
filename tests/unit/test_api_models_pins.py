"""Query request, job answer and OpenAPI link behaviour no test held before (found by mutation testing
producers/api/models.py): the bounds of what POST /v1/queries accepts (each refused as a 400 invalid_request naming
the field, never a 5xx, and the value at each bound accepted), the Idempotency-Key's length, what a job's answer says
of its delivery, error, cancel request, result size and links, and the link from a submitted query to its job."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from events import JobQueuedMessage
from producers.api import app as api
from producers.api.app import openapi_document
from producers.api.models import QueryRequest
from spectra.lifecycle import complete_statement, execute_job
from spectra.warehouse import Column
from tests.unit.fakes import acme_ports, serving

pytestmark = pytest.mark.unit


@pytest.fixture
def ports(monkeypatch):
    yield from serving(monkeypatch, api, acme_ports())


def call(method: str, path: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    job_id = path.split("/")[3] if path.startswith("/v1/jobs/") else None
    event = {
        "httpMethod": method,
        "path": path,
        "resource": path.replace(job_id, "{job_id}") if job_id else path,
        "pathParameters": {"job_id": job_id} if job_id else None,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
        "requestContext": {"requestId": "r1", "authorizer": {"tenant_id": "acme"}, "stage": "v1"},
    }
    answer = api.app.resolve(event, None)
    return int(answer["statusCode"]), json.loads(answer["body"])


def refused_fields(status: int, body: dict) -> list:
    assert (status, body["error"]["code"]) == (400, "invalid_request"), body
    return [detail["loc"] for detail in body["error"]["details"]]


REFUSED = {
    "empty-sql": ({"sql": ""}, ["body", "sql"]),
    "row-limit-0": ({"sql": "select 1", "row_limit": 0}, ["body", "row_limit"]),
    "row-limit-past-bigint": ({"sql": "select 1", "row_limit": 9223372036854775808}, ["body", "row_limit"]),
    "wait-timeout-negative": ({"sql": "select 1", "wait_timeout": -1}, ["body", "wait_timeout"]),
    "wait-timeout-26": ({"sql": "select 1", "wait_timeout": 26}, ["body", "wait_timeout"]),
    "callback-url-empty": ({"sql": "select 1", "callback_url": ""}, ["body", "callback_url"]),
    "callback-url-2049": (
        {"sql": "select 1", "callback_url": "https://hooks.example.com/" + "a" * 2023},
        ["body", "callback_url"],
    ),
    "101-parameters": (
        {"sql": "select 1", "parameters": [{"name": f"p{n}", "value": n} for n in range(101)]},
        ["body", "parameters"],
    ),
    "unknown-field": ({"sql": "select 1", "sql_text": "select 2"}, ["body", "sql_text"]),
}


@pytest.mark.parametrize(("body", "field"), REFUSED.values(), ids=REFUSED)
def test_a_query_past_a_bound_is_a_400_naming_its_field_and_makes_no_job(ports, body, field):
    """Each of these is the client's mistake: a 400 invalid_request whose details name the field, and no job."""
    assert refused_fields(*call("POST", "/v1/queries", body)) == [field]
    assert ports.queue.messages == []


def test_a_query_at_each_bound_it_can_be_answered_at_once_is_accepted(ports):
    """row_limit 1 and 2^63 - 1 (a BIGINT's largest), wait_timeout 0, and 100 parameters each make a job."""
    sql = "select " + ", ".join(f":p{n}" for n in range(100))
    bodies = [
        {"sql": "select 1", "row_limit": 1},
        {"sql": "select 1", "row_limit": 9223372036854775807},
        {"sql": "select 1", "wait_timeout": 0},
        {"sql": sql, "parameters": [{"name": f"p{n}", "value": n} for n in range(100)]},
    ]
    for body in bodies:
        status, job = call("POST", "/v1/queries", body)
        assert (status, job["status"]) == (202, "QUEUED"), (body, job)
    assert len(ports.queue.messages) == 4


def test_the_longest_wait_and_callback_url_are_valid_requests():
    """wait_timeout 25 and a callback_url of 2048 characters are the largest a request may ask; 1 character is the
    shortest callback_url (which the URL check then judges)."""
    url = "https://hooks.example.com/" + "a" * 2022
    request = QueryRequest(sql="select 1", wait_timeout=25, callback_url=url)
    assert (request.wait_timeout, len(request.callback_url)) == (25, 2048)
    assert QueryRequest(sql="x", callback_url="h").callback_url == "h"
    with pytest.raises(ValidationError):
        QueryRequest(sql="select 1", wait_timeout=26)


def test_an_idempotency_key_of_1_to_255_characters_is_taken_and_longer_or_empty_is_a_400(ports):
    """The header is bounded both ways; a key at either end makes its job and its repeat answers that job."""
    for key in ("k", "k" * 255):
        status, first = call("POST", "/v1/queries", {"sql": "select 1"}, {"Idempotency-Key": key})
        assert status == 202, first
        status, repeat = call("POST", "/v1/queries", {"sql": "select 1"}, {"Idempotency-Key": key})
        assert repeat["job_id"] == first["job_id"], repeat
    for key in ("", "k" * 256):
        status, body = call("POST", "/v1/queries", {"sql": "select 1"}, {"Idempotency-Key": key})
        assert refused_fields(status, body) == [["header", "idempotency-key"]]
    assert len(ports.queue.messages) == 2


def test_a_job_shows_its_cancel_request_while_running_and_not_once_it_ended(ports):
    """DELETE on a running job: it says cancel_requested. The statement then completes before the warehouse aborts
    it: the job is COMPLETED and no longer says a cancel is under way; it shows its rows, bytes and links."""
    status, job = call("POST", "/v1/queries", {"sql": "select 1 as one"})
    job_id = job["job_id"]
    assert (job["cancel_requested"], job["row_count"], job["result_bytes"]) == (False, None, None)
    execute_job(ports, JobQueuedMessage(job_id=job_id, tenant_id="acme"))
    status, cancelling = call("DELETE", f"/v1/jobs/{job_id}")
    assert (status, cancelling["status"], cancelling["cancel_requested"]) == (202, "SUBMITTED", True), cancelling
    assert call("GET", f"/v1/jobs/{job_id}")[1]["cancel_requested"] is True

    change = ports.warehouse.finish(ports.jobs.get(job_id).statement_id, columns=[Column("one", "int4")], pages=["1\n"])
    complete_statement(ports, change)
    status, ended = call("GET", f"/v1/jobs/{job_id}")
    assert status == 200, ended
    assert (ended["status"], ended["cancel_requested"]) == ("COMPLETED", False)
    assert ended["submitted_at"] == cancelling["submitted_at"] and ended["completed_at"] is not None, ended
    assert (ended["row_count"], ended["result_bytes"]) == (1, 5)
    assert ended["links"] == {"self": f"/v1/jobs/{job_id}", "results": f"/v1/jobs/{job_id}/results"}


def test_a_one_character_statement_is_judged_by_the_sql_guard_not_refused_as_too_short(ports):
    """sql needs at least 1 character: "x" gets past the request's own check to the guard, which refuses it as a
    statement (sql_rejected), not as an invalid request."""
    status, body = call("POST", "/v1/queries", {"sql": "x"})
    assert (status, body["error"]["code"]) == (400, "sql_rejected"), body


def test_a_job_shows_the_delivery_it_was_asked_and_a_failed_jobs_error(ports):
    """A job asked for delivery s3 says s3 (not the default auto) when made and when read; a statement the warehouse
    fails shows FAILED with its error code and the database's message, and when it was started and ended."""
    status, job = call("POST", "/v1/queries", {"sql": "select 1 as one", "delivery": "s3"})
    assert (status, job["delivery"]) == (202, "s3"), job
    job_id = job["job_id"]
    execute_job(ports, JobQueuedMessage(job_id=job_id, tenant_id="acme"))
    complete_statement(ports, ports.warehouse.fail(ports.jobs.get(job_id).statement_id, "relation does not exist"))
    status, failed = call("GET", f"/v1/jobs/{job_id}")
    assert (status, failed["status"], failed["delivery"]) == (200, "FAILED", "s3"), failed
    assert failed["error"]["code"] == "statement_failed" and "relation does not exist" in failed["error"]["message"]
    assert failed["submitted_at"] is not None and failed["completed_at"] is not None, failed


def test_the_documents_link_from_a_submitted_query_takes_the_job_id_from_its_answer():
    """A client (or the fuzzer's stateful phase) follows a 202 to its job through the link's runtime expression: it
    must point into the answer's body at job_id, and name the operation it leads to."""
    links = openapi_document()["paths"]["/v1/queries"]["post"]["responses"]["202"]["links"]
    assert links and all(link["parameters"] == {"job_id": "$response.body#/job_id"} for link in links.values())
    assert all(link["operationId"] for link in links.values()), links


def test_a_completed_jobs_results_say_its_columns_total_and_until_when_they_are_served(ports):
    """GET .../results of a small inline result: its columns (name and warehouse type), rows, the total the statement
    returned, and expires_at (when it turns 410), as well as how long its URLs last."""
    status, job = call("POST", "/v1/queries", {"sql": "select 1 as one"})
    job_id = job["job_id"]
    execute_job(ports, JobQueuedMessage(job_id=job_id, tenant_id="acme"))
    change = ports.warehouse.finish(ports.jobs.get(job_id).statement_id, columns=[Column("one", "int4")], pages=["1\n"])
    complete_statement(ports, change)
    status, results = call("GET", f"/v1/jobs/{job_id}/results")
    assert status == 200, results
    assert results["columns"] == [{"name": "one", "type": "int4"}] and results["rows"] == [[1]], results
    assert (results["row_count"], results["total_row_count"], results["truncated"]) == (1, 1, False)
    assert results["expires_at"] is not None and results["expires_in"] == 300, results
