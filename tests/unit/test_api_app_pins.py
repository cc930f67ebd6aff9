"""REST API route behaviour no test held before (found by mutation testing producers/api/app.py): what a 405 names
as the methods allowed, and the gateway and body answers the OpenAPI document declares on each operation."""

from __future__ import annotations

import json

import pytest

from producers.api import app as api
from producers.api.app import openapi_document
from tests.unit.fakes import acme_ports, serving

pytestmark = pytest.mark.unit


@pytest.fixture
def ports(monkeypatch):
    yield from serving(monkeypatch, api, acme_ports())


def call(method: str, path: str, body: dict | None = None, query: dict | None = None) -> tuple[int, dict, dict]:
    """The handler's answer to a request of the tenant acme: status, headers (one value each) and JSON body."""
    job_id = path.split("/")[3] if path.startswith("/v1/jobs/") and len(path.split("/")) > 3 else None
    event = {
        "httpMethod": method,
        "path": path,
        "resource": path.replace(job_id, "{job_id}") if job_id else path,
        "pathParameters": {"job_id": job_id} if job_id else None,
        "queryStringParameters": query,
        "headers": {"Content-Type": "application/json"},
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
        "requestContext": {"requestId": "r1", "authorizer": {"tenant_id": "acme"}, "stage": "v1"},
    }
    answer = api.app.resolve(event, None)
    headers = {name: values[-1] for name, values in (answer.get("multiValueHeaders") or {}).items()}
    headers.update(answer.get("headers") or {})
    return int(answer["statusCode"]), headers, json.loads(answer["body"])


def test_a_method_a_path_does_not_serve_is_a_405_naming_the_methods_it_does(ports):
    """PUT on a job: 405, its details and its Allow header both name DELETE and GET, and the message says them."""
    status, headers, body = call("PUT", "/v1/jobs/j_x")
    assert status == 405
    assert body["error"] == {
        "code": "method_not_allowed",
        "message": "PUT is not allowed here; use DELETE, GET",
        "details": {"allow": ["DELETE", "GET"]},
    }
    assert headers["Allow"] == "DELETE, GET"


GATEWAY_STATUSES = {"401", "403", "413", "414", "429", "431", "500", "502", "503", "504"}


def test_every_operation_declares_api_gateways_own_answers():
    """A client generated from the document knows each answer API Gateway may give any request: 401, 403, 413, 414,
    429, 431, 500, 502, 503 and 504, each in the error shape, 429 and 503 with Retry-After."""
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert set(responses) >= GATEWAY_STATUSES, (method, path, GATEWAY_STATUSES - set(responses))
            assert "Retry-After" in responses["503"]["headers"], (method, path)
            assert "gateway_error" in responses["504"]["description"], (method, path)


def test_an_operation_with_a_json_body_declares_its_415_and_one_without_does_not():
    """POST /v1/queries and POST /v1/subscriptions read a JSON body: they may answer 415 (not application/json);
    GET /v1/jobs and DELETE /v1/jobs/{job_id} read none and do not declare it."""
    paths = openapi_document()["paths"]
    for method, path in [("post", "/v1/queries"), ("post", "/v1/subscriptions")]:
        assert "415" in paths[path][method]["responses"], (method, path)
    for method, path in [("get", "/v1/jobs"), ("delete", "/v1/jobs/{job_id}")]:
        assert "415" not in paths[path][method]["responses"], (method, path)


def test_every_operation_is_filed_under_a_tag_the_document_declares():
    """Swagger UI and generated clients group operations by tag: POST /v1/queries under queries, the job routes
    under jobs, each tag one of the four the document describes."""
    document = openapi_document()
    declared = {tag["name"] for tag in document["tags"]}
    assert declared == {"queries", "jobs", "bulk", "subscriptions"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["tags"] and set(operation["tags"]) <= declared, (method, path, operation["tags"])
    assert document["paths"]["/v1/queries"]["post"]["tags"] == ["queries"]
    for method, path in [("get", "/v1/jobs"), ("get", "/v1/jobs/{job_id}"), ("delete", "/v1/jobs/{job_id}")]:
        assert document["paths"][path][method]["tags"] == ["jobs"], (method, path)
    assert document["paths"]["/v1/jobs/{job_id}/results"]["get"]["tags"] == ["jobs"]


def test_a_new_query_counts_one_job_submitted_and_its_repeat_one_replayed(ports):
    """The dashboard's JobsSubmitted counts each job a POST makes, 1 each; a POST repeating an Idempotency-Key makes
    none and counts 1 JobsReplayed instead."""

    def post() -> dict[str, float]:
        api.metrics.clear_metrics()
        event = {
            "httpMethod": "POST",
            "path": "/v1/queries",
            "resource": "/v1/queries",
            "headers": {"Content-Type": "application/json", "Idempotency-Key": "k-1"},
            "body": json.dumps({"sql": "select 1"}),
            "isBase64Encoded": False,
            "requestContext": {"requestId": "r1", "authorizer": {"tenant_id": "acme"}, "stage": "v1"},
        }
        assert api.app.resolve(event, None)["statusCode"] in (200, 202)
        counted = {name: sum(metric["Value"]) for name, metric in api.metrics.metric_set.items()}
        api.metrics.clear_metrics()
        return counted

    assert post() == {"JobsSubmitted": 1}
    assert post() == {"JobsReplayed": 1}


def test_a_next_token_past_2048_characters_is_refused_as_a_bad_parameter_before_it_is_read(ports):
    """GET /v1/jobs with a next_token of 2049 characters is a 400 invalid_request naming the query's next_token (no
    token is that long), and the document says so with maxLength 2048."""
    status, _, body = call("GET", "/v1/jobs", query={"next_token": "a" * 2049})
    assert (status, body["error"]["code"]) == (400, "invalid_request"), body
    assert [detail["loc"] for detail in body["error"]["details"]] == [["query", "next_token"]]
    parameters = openapi_document()["paths"]["/v1/jobs"]["get"]["parameters"]
    (token,) = [parameter for parameter in parameters if parameter["name"] == "next_token"]
    assert {"type": "string", "maxLength": 2048, "minLength": 1} in token["schema"]["anyOf"]


def test_each_job_route_documents_its_success_with_its_model():
    """A client generated from the document reads a job from GET /v1/jobs/{job_id}'s 200, a page from GET /v1/jobs'
    200 and a result from GET /v1/jobs/{job_id}/results' 200: each of those is its route's one success."""
    paths = openapi_document()["paths"]
    for path, model in [
        ("/v1/jobs/{job_id}", "JobView"),
        ("/v1/jobs", "JobList"),
        ("/v1/jobs/{job_id}/results", "JobResults"),
    ]:
        responses = paths[path]["get"]["responses"]
        assert [status for status in responses if status.startswith("2")] == ["200"], path
        schema = responses["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}, (path, schema)


def test_a_jobs_results_document_their_409_with_retry_after_and_their_410():
    """GET /v1/jobs/{job_id}/results declares 409 (job_not_finished, with Retry-After) and 410 (past retention)
    apart, as the route answers them; DELETE /v1/jobs/{job_id} declares its 409 too."""
    paths = openapi_document()["paths"]
    responses = paths["/v1/jobs/{job_id}/results"]["get"]["responses"]
    assert "Retry-After" in responses["409"]["headers"]
    assert "job_not_finished" in responses["409"]["description"]
    assert "retention" in responses["410"]["description"]
    assert "409" in paths["/v1/jobs/{job_id}"]["delete"]["responses"]
