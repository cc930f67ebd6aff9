"""Events API Gateway never sends the API: a function invoked directly (the Lambda console, a script) or behind a
misconfigured integration. Bad input is never a 5xx: 400 in the error shape, or 401 without our authorizer's identity
(found by the hostile-input review: each case here was a 500 or an unhandled exception). The authorizer's own are in
test_authorizer.py."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from producers.api import app as api
from producers.api import bulk as bulk_routes
from producers.api import subscriptions as subscription_routes
from spectra.errors import Unauthorized
from spectra.tenants import Caller
from tests.unit.fakes import make_ports

pytestmark = pytest.mark.unit

CONTEXT = SimpleNamespace(
    function_name="f", memory_limit_in_mb=512, invoked_function_arn="arn:aws:lambda:x", aws_request_id="r1"
)
ACME = {"tenant_id": "acme", "db_user": "tenant_acme", "principalId": "acme", "integrationLatency": 3}


@pytest.fixture
def api_on_fakes(monkeypatch):
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    for module in (api, bulk_routes, subscription_routes):
        monkeypatch.setattr(module, "get_ports", lambda budget: ports)
    return ports


def proxy(path: str = "/v1/jobs", method: str = "GET", **changes: Any) -> dict[str, Any]:
    """A REST proxy event as API Gateway sends it, with ``changes`` (None: the key left out)."""
    event = {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {"Host": "api.example.com"},
        "multiValueHeaders": {"Host": ["api.example.com"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {"requestId": "r1", "stage": "v1", "path": f"/v1{path}", "authorizer": dict(ACME)},
        "body": None,
        "isBase64Encoded": False,
    }
    event.update(changes)
    return {key: value for key, value in event.items() if value is not None}


def answer_of(event: Any) -> tuple[int, dict]:
    answer = api.lambda_handler(event, CONTEXT)
    headers = {name.lower(): values for name, values in (answer.get("multiValueHeaders") or {}).items()}
    assert headers.get("cache-control") == ["no-store"], answer  # every answer's headers, refusals' too
    return answer["statusCode"], json.loads(answer["body"])


def with_query(**values: Any) -> dict[str, Any]:
    return {"queryStringParameters": values, "multiValueQueryStringParameters": {k: [v] for k, v in values.items()}}


def test_well_formed_events_are_answered_as_before(api_on_fakes):
    assert answer_of(proxy())[0] == 200
    assert answer_of(proxy(**with_query(limit="5", status="QUEUED")))[0] == 200
    assert answer_of(proxy(headers=None, multiValueHeaders=None))[0] == 200  # no headers at all
    # the document and its page need no identity: their events have no authorizer
    assert answer_of(proxy("/v1/openapi.json", requestContext={"requestId": "r1", "stage": "v1"}))[0] == 200


MALFORMED = {
    # (a) a query parameter without a value: API Gateway sends "" for ?limit, never null
    "query-null-limit": proxy(**with_query(limit=None)),
    "query-null-status": proxy(queryStringParameters={"status": None}),
    "query-null-token": proxy(queryStringParameters={"next_token": None}),
    "multi-query-null": proxy(multiValueQueryStringParameters={"limit": None}),
    "multi-query-null-item": proxy(
        queryStringParameters={"limit": "5"}, multiValueQueryStringParameters={"limit": [None]}
    ),
    "query-number": proxy(queryStringParameters={"limit": 5}),
    "query-list": proxy(queryStringParameters={"limit": ["5"]}),
    "query-not-a-map": proxy(queryStringParameters="limit=5"),
    "docs-format-null": proxy("/v1/docs", queryStringParameters={"format": None}),
    "bulk-limit-null": proxy("/v1/bulk/jobs", queryStringParameters={"limit": None, "state": None}),
    "bulk-max-records-null": proxy("/v1/bulk/jobs/b_x/results", queryStringParameters={"maxRecords": None}),
    # the neighbours: headers, path parameters, the body and the event itself
    "header-null": proxy("/v1/queries", "POST", headers={"Content-Type": None}, body='{"sql": "select 1"}'),
    "header-number": proxy("/v1/queries", "POST", headers={"Content-Type": 5}, body='{"sql": "select 1"}'),
    "multi-header-null": proxy(multiValueHeaders={"Idempotency-Key": None}),
    "multi-header-null-item": proxy(multiValueHeaders={"Idempotency-Key": [None]}),
    "headers-not-a-map": proxy(headers=["Host"]),
    "path-parameter-null": proxy("/v1/jobs/j_x", resource="/v1/jobs/{job_id}", pathParameters={"job_id": None}),
    "path-parameters-list": proxy("/v1/jobs/j_x", pathParameters=["j_x"]),
    "body-number": proxy("/v1/queries", "POST", body=5),
    "base64-flag-string": proxy("/v1/queries", "POST", body='{"sql": "select 1"}', isBase64Encoded="yes"),
    "no-method": {key: value for key, value in proxy().items() if key != "httpMethod"},
    "method-null": {**proxy(), "httpMethod": None},
    "no-path": {key: value for key, value in proxy().items() if key != "path"},
    "path-null": {**proxy(), "path": None},
    "no-request-context": {key: value for key, value in proxy().items() if key != "requestContext"},
    "request-context-null": {**proxy(), "requestContext": None},
    "request-id-null": proxy(requestContext={"requestId": None, "authorizer": dict(ACME)}),
    "request-path-number": proxy(requestContext={"requestId": "r1", "path": 5, "authorizer": dict(ACME)}),
    "authorizer-list": proxy(requestContext={"requestId": "r1", "authorizer": ["acme"]}),
    "event-list": [],
    "event-string": "GET /v1/jobs",
    "event-null": None,
}


@pytest.mark.parametrize("event", MALFORMED.values(), ids=MALFORMED)
def test_a_malformed_event_is_a_400_in_the_error_shape(api_on_fakes, event):
    status, body = answer_of(event)
    assert (status, body["error"]["code"]) == (400, "invalid_request"), body
    details = body["error"]["details"]
    assert details and all(set(detail) == {"loc", "msg", "type"} for detail in details)


def test_the_400_names_what_is_wrong_and_so_does_its_log_line(api_on_fakes, caplog):
    _, body = answer_of(proxy(**with_query(limit=None)))
    locations = [detail["loc"] for detail in body["error"]["details"]]
    assert locations == [["queryStringParameters", "limit"], ["multiValueQueryStringParameters", "limit", 0]]
    [record] = [r for r in caplog.records if "would not send" in r.getMessage()]
    assert (record.levelname, json.loads(json.dumps(record.parts))) == ("WARNING", locations)


NO_IDENTITY = {
    "empty": {},
    "null": None,
    "principal-only": {"principalId": "acme", "integrationLatency": 3},  # an authorizer that is not ours
    "tenant-null": {"tenant_id": None},
    "tenant-empty": {"tenant_id": ""},
    "tenant-number": {"tenant_id": 5},
    "owned-schemas-number": {"tenant_id": "acme", "owned_schemas": 5},
    "db-user-list": {"tenant_id": "acme", "db_user": ["tenant_acme"]},
}


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/bulk/jobs", "/v1/subscriptions"])
@pytest.mark.parametrize("context", NO_IDENTITY.values(), ids=NO_IDENTITY)
def test_an_event_without_our_authorizers_identity_is_a_401(api_on_fakes, path, context):
    """(b): the API reads the caller from the context our authorizer sets; without it, as without a key."""
    request_context = {"requestId": "r1", "stage": "v1"}
    if context is not None:
        request_context["authorizer"] = context
    status, body = answer_of(proxy(path, requestContext=request_context))
    assert (status, body["error"]["code"]) == (401, "unauthorized"), body
    status, body = answer_of(proxy(path, requestContext={"requestId": "r1"}))  # no authorizer key at all
    assert (status, body["error"]["code"]) == (401, "unauthorized"), body


def test_the_caller_is_read_only_from_a_context_our_authorizer_could_have_set():
    assert Caller.from_authorizer_context(ACME) == Caller(tenant_id="acme", db_user="tenant_acme")
    for context in NO_IDENTITY.values():
        with pytest.raises(Unauthorized):
            Caller.from_authorizer_context(context)
