"""The API's answers as caches, browsers and HTTP clients read their headers (the handler over the domain's fakes;
tests/e2e/test_answer_headers.py reads them over HTTP on the local stack, API Gateway's own answers included).

Answers hold tenants' rows, presigned URLs and secrets: none may be stored by a browser or a shared cache
(``Cache-Control: no-store``), none may be sniffed into another type (``X-Content-Type-Options: nosniff``), and the
CSV ones say they are UTF-8."""

from __future__ import annotations

import base64
import json

import pytest

from producers.api import app as api
from producers.api import bulk as bulk_routes
from producers.api import subscriptions as subscription_routes
from spectra.bulk.lifecycle import complete_bulk_statement, start_bulk_job
from spectra.bulk.models import BulkOperation
from spectra.bulk.service import NewJob, change_state, create_job
from spectra.bulk.uploads import upload_batch
from spectra.tenants import Caller
from tests.unit.fakes import make_ports, make_settings

pytestmark = pytest.mark.unit

CSV = "id,name\n1,Zoë\n".encode()


@pytest.fixture
def ports(monkeypatch):
    return acme(monkeypatch, inline_max_bytes=30)


def acme(monkeypatch, *, inline_max_bytes: int):
    """The API on fakes: the tenant acme and its table ``accounts``; result files past ``inline_max_bytes`` are
    answered by a redirect."""
    ports = make_ports(settings=make_settings(bulk_inline_download_max_bytes=inline_max_bytes))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    for module in (api, bulk_routes, subscription_routes):
        monkeypatch.setattr(module, "get_ports", lambda budget: ports)
    return ports


def call(method: str, path: str, body: object = None) -> dict:
    event = {
        "httpMethod": method,
        "path": path,
        "resource": path,
        "headers": {"Content-Type": "application/json"},
        "queryStringParameters": None,
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
        "requestContext": {"requestId": "r1", "authorizer": {"tenant_id": "acme"}, "stage": "v1"},
    }
    return api.app.resolve(event, None)


def headers(answer: dict) -> dict[str, str]:
    """The answer's headers, one value each, by lower-case name (API Gateway sends both kinds)."""
    single = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
    multi = {k.lower(): ", ".join(v) for k, v in (answer.get("multiValueHeaders") or {}).items()}
    return {**single, **multi}


def finished_insert(ports) -> str:
    """An insert job of one row, run to its end: its successfulResults are past 30 bytes, its failedResults (the
    header line alone) are not."""
    caller = Caller.of(ports.tenants.get("acme"))
    job = create_job(ports, caller, NewJob(object="accounts", operation=BulkOperation.INSERT))[0]
    upload_batch(ports, caller, job.job_id, CSV, gzip=False)
    change_state(ports, caller, job.job_id, "UploadComplete")
    running = start_bulk_job(ports, ports.queue.messages[-1])
    complete_bulk_statement(ports, ports.warehouse.finish_batch(running.statement_id, {0: 1, 1: []}))
    return job.job_id


def test_no_answer_may_be_stored_or_sniffed(ports):
    """No answer said anything to caches: a browser's disk cache or a shared proxy could keep a tenant's rows, a
    presigned URL (a bearer token) or a webhook secret, and reuse a 404, 405 or 410 by RFC 9111's heuristics; no
    answer said nosniff, though CSV pages and error messages carry the tenant's own bytes. (What S3 answers the
    presigned URLs with: tests/unit/test_presigned_urls.py.)"""
    queued = call("POST", "/v1/queries", {"sql": "select 1 as one"})
    job_id = json.loads(queued["body"])["job_id"]
    bulk_job = finished_insert(ports)
    answers = {
        "202 a queued job": queued,
        "200 a job": call("GET", f"/v1/jobs/{job_id}"),
        "200 a listing": call("GET", "/v1/jobs"),
        "409 its unfinished result": call("GET", f"/v1/jobs/{job_id}/results"),
        "404 no such job": call("GET", "/v1/jobs/j_none"),
        "404 no such route": call("GET", "/v1/nothing"),
        "405 a method the path does not serve": call("PUT", "/v1/jobs"),
        "400 a body that is not JSON": call("POST", "/v1/queries", "<script>"),
        "200 an inline result file": call("GET", f"/v1/bulk/jobs/{bulk_job}/failedResults"),
        "303 a large one": call("GET", f"/v1/bulk/jobs/{bulk_job}/successfulResults"),
        "201 a bulk job": (created := call("POST", "/v1/bulk/jobs", {"object": "accounts", "operation": "insert"})),
        "200 an upload URL": call("POST", f"/v1/bulk/jobs/{json.loads(created['body'])['id']}/uploads", {}),
        "200 the document": call("GET", "/v1/openapi.json"),
    }
    assert {name: answer["statusCode"] for name, answer in answers.items()} == {
        name: int(name[:3]) for name in answers
    }, {name: answer["body"][:200] for name, answer in answers.items()}
    for name, answer in answers.items():
        said = headers(answer)
        assert said.get("cache-control") == "no-store", name
        assert said.get("x-content-type-options") == "nosniff", name
    assert answers["409 its unfinished result"]["multiValueHeaders"]["Retry-After"]  # kept beside them


def test_the_swagger_page_keeps_its_own_cache_control(ports):
    """A route that says its own Cache-Control keeps it (the page holds no tenant's data: revalidated, not refetched),
    and is said once."""
    page = call("GET", "/v1/docs")
    assert page["statusCode"] == 200
    assert headers(page)["cache-control"] == "no-cache"
    assert headers(page)["x-content-type-options"] == "nosniff"


def test_csv_answers_say_they_are_utf8(monkeypatch):
    """text/csv without a charset is decoded by each client's default (requests' ``.text`` as ISO-8859-1, browsers
    as windows-1252): the tenant's Zoë came back as ZoÃ«."""
    answer = call("GET", f"/v1/bulk/jobs/{finished_insert(acme(monkeypatch, inline_max_bytes=1000))}/successfulResults")
    assert answer["statusCode"] == 200
    assert headers(answer)["content-type"] == "text/csv; charset=utf-8"
    assert "Zoë" in base64.b64decode(answer["body"]).decode("utf-8")
