"""The API's input edge: the strict body reader, and the OpenAPI document and template agreeing on every route."""

from __future__ import annotations

import base64
import io
import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from botocore.exceptions import ClientError, ReadTimeoutError
from cfnlint.decode import decode
from pydantic import ValidationError

from events import JobQueuedMessage, ResultFormat
from producers.api import app as api
from producers.api.app import _UNDOCUMENTED_PATHS, _allowed_methods, app, openapi_document
from producers.api.body import MAX_JSON_DEPTH, is_json_media_type, read_json_body
from producers.api.bulk_models import CreateBulkJob
from spectra.errors import InvalidJson, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from spectra.lifecycle import execute_job
from spectra.ports import get_ports
from spectra.queries import submit_query
from spectra.settings import get_settings
from spectra.tenants import Caller
from tests.unit.fakes import make_ports

pytestmark = pytest.mark.unit

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
LIMIT = 1024 * 1024


def event(body: bytes | str | None, content_type: str | None = "application/json", *, b64: bool = False):
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode() if b64 else body.decode("utf-8", "surrogateescape")
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return APIGatewayProxyEvent({"body": body, "isBase64Encoded": b64, "headers": headers, "httpMethod": "POST"})


def test_zeros_and_the_smallest_floats_are_read_as_sent():
    body = b'{"a": 0.0, "b": -0e-400, "c": 0E5, "d": 5e-324, "e": 1e-310}'
    assert read_json_body(event(body), max_bytes=LIMIT) == {"a": 0.0, "b": 0.0, "c": 0.0, "d": 5e-324, "e": 1e-310}


def test_a_plain_json_body_is_read():
    assert read_json_body(event(b'{"sql": "select 1"}'), max_bytes=LIMIT) == {"sql": "select 1"}
    assert read_json_body(event(b'{"sql": "x"}', None), max_bytes=LIMIT) == {"sql": "x"}  # no type: JSON
    assert read_json_body(event('{"sql": "\u05e9"}'.encode(), b64=True), max_bytes=LIMIT) == {"sql": "\u05e9"}
    assert read_json_body(event(None), max_bytes=LIMIT) is None


MALFORMED = {
    "not-utf8": (b'{"sql": "\xff"}', True, InvalidJson),  # API Gateway base64-encodes what is not UTF-8
    "nested": (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", False, InvalidJson),
    "digits": (b'{"a": ' + b"9" * 4301 + b"}", False, InvalidJson),
    "nan": (b'{"a": NaN}', False, InvalidJson),
    "infinity": (b'{"a": Infinity}', False, InvalidJson),
    "overflow": (b'{"a": 1e400}', False, InvalidJson),
    "underflow": (b'{"a": 1e-400}', False, InvalidJson),  # read as 0.0, another number than the one sent
    "underflow-negative": (b'{"a": -2.5E-999}', False, InvalidJson),
    "duplicate": (b'{"a": 1, "a": 2}', False, InvalidJson),
    "surrogate-value": (b'{"a": "\\udc00"}', False, InvalidJson),
    "surrogate-key": (b'{"\\ud800": 1}', False, InvalidJson),
    "truncated": (b"{", False, InvalidJson),
    "too-large": (b"x" * (LIMIT + 1), False, PayloadTooLarge),
    "too-large-b64": (b"x" * (LIMIT + 1), True, PayloadTooLarge),
    "bad-b64": (b"", False, None),
}


@pytest.mark.parametrize(("body", "b64", "error"), MALFORMED.values(), ids=MALFORMED)
def test_every_malformed_body_is_a_typed_4xx(body, b64, error):
    if error is None:  # a body that claims to be base64 and is not (only API Gateway sets the flag)
        bad = APIGatewayProxyEvent({"body": "!!not base64!!", "isBase64Encoded": True, "headers": {}})
        with pytest.raises(InvalidRequest):
            read_json_body(bad, max_bytes=LIMIT)
        return
    with pytest.raises(error) as raised:
        read_json_body(event(body, b64=b64), max_bytes=LIMIT)
    assert 400 <= raised.value.status < 500


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "GZIP"])
def test_a_content_encoded_body_is_not_json(encoding):
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    encoded = APIGatewayProxyEvent({"body": '{"sql": "select 1"}', "isBase64Encoded": False, "headers": headers})
    with pytest.raises(UnsupportedMediaType):
        read_json_body(encoded, max_bytes=LIMIT)
    headers["Content-Encoding"] = "identity"
    assert read_json_body(encoded, max_bytes=LIMIT) == {"sql": "select 1"}


@pytest.mark.parametrize("recursion_limit", [None, 20_000])
def test_nesting_is_bounded_by_the_api_not_by_the_process_recursion_limit(recursion_limit):
    """The same body gets the same answer whatever the process ran before (the SQL guard raises the limit)."""

    def nested(levels: int) -> bytes:
        return b"[" * (levels - 1) + b"[1]" + b"]" * (levels - 1)

    before = sys.getrecursionlimit()
    sys.setrecursionlimit(recursion_limit or before)
    try:
        value = read_json_body(event(nested(MAX_JSON_DEPTH)), max_bytes=LIMIT)
        for _ in range(MAX_JSON_DEPTH - 1):
            (value,) = value
        assert value == [1]
        for levels in (MAX_JSON_DEPTH + 1, 900, 5_000):
            with pytest.raises(InvalidJson) as raised:
                read_json_body(event(nested(levels)), max_bytes=LIMIT)
            assert raised.value.details == {"limit": MAX_JSON_DEPTH}, levels
    finally:
        sys.setrecursionlimit(before)


def test_a_lone_surrogate_in_a_text_body_is_refused():
    with pytest.raises(InvalidJson):
        read_json_body(event('{"sql": "\ud800"}'), max_bytes=LIMIT)


@pytest.mark.parametrize(
    ("content_type", "json_ok"),
    [
        ("application/json", True),
        ("Application/JSON; charset=UTF-8", True),
        ('application/json; charset="utf-8"', True),
        ("application/json; charset=latin-1", False),
        ("multipart/form-data", False),
        ("multipart/form-data; boundary=x", False),
        ("application/x-www-form-urlencoded", False),
        ("text/plain", False),
        ("application/jsonp", False),
    ],
)
def test_only_json_in_utf8_is_json(content_type, json_ok):
    assert is_json_media_type(content_type) is json_ok
    if not json_ok:
        with pytest.raises(UnsupportedMediaType):
            read_json_body(event(b'{"sql": "select 1"}', content_type), max_bytes=LIMIT)


def test_a_bulk_jobs_assignment_rule_id_is_accepted_and_ignored():
    """Bulk 2.0 scripts send assignmentRuleId with an ingest job; CreateBulkJob refuses unknown fields, so it was a
    400. It is accepted now and changes nothing; other unknown fields are still refused."""
    fields = {"object": "contacts", "operation": "insert"}
    with_rule = CreateBulkJob.model_validate({**fields, "assignmentRuleId": "01QD0000000EqAbMAK"})
    assert with_rule.new_job() == CreateBulkJob.model_validate(fields).new_job()
    with pytest.raises(ValidationError):
        CreateBulkJob.model_validate({**fields, "assignmentRule": "01QD0000000EqAbMAK"})


def test_known_paths_know_their_methods_and_odd_ids_still_match():
    assert _allowed_methods("/v1/jobs/j_abc") == ("DELETE", "GET")
    assert _allowed_methods("/v1/jobs/\x00\n") == ("DELETE", "GET")
    assert _allowed_methods("/v1/jobs/j_abc/results") == ("GET",)
    assert _allowed_methods("/v1/queries") == ("POST",)
    assert _allowed_methods("/v1/nothing") == ()
    assert _allowed_methods("/v1/jobs/a/b/c") == ()
    assert _allowed_methods("/v1/openapi.json") == _allowed_methods("/v1/docs") == ("GET",)  # not documented


def test_the_document_declares_no_validation_422_and_its_links_name_real_operations():
    document = openapi_document()
    operations = {op["operationId"] for ops in document["paths"].values() for op in ops.values()}
    for path, ops in document["paths"].items():
        for operation in ops.values():
            responses = operation["responses"]
            assert "422" not in responses or path == "/v1/bulk/jobs/{job_id}/results"  # record_too_large
            assert {"400", "401", "429", "500"} <= set(responses)
            assert any(code.startswith("2") for code in responses)
            for response in responses.values():
                for link in response.get("links", {}).values():
                    assert link["operationId"] in operations
    assert "HTTPValidationError" not in json.dumps(document)
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_every_documented_path_reaches_the_function_with_any_method():
    """A wrong method must reach the app, which answers 405 with Allow: API Gateway answers a method it has no
    integration for with its own 403 (404 in this template), so each path needs an ANY event beside its methods."""
    body, _ = decode(str(TEMPLATE))
    events = body["Resources"]["ApiFunction"]["Properties"]["Events"].values()
    routes = {(e["Properties"]["Path"], e["Properties"]["Method"].upper()) for e in events if e["Type"] == "Api"}
    for path, operations in {**openapi_document()["paths"], **_UNDOCUMENTED_PATHS}.items():
        assert (path, "ANY") in routes, f"{path} needs an ANY event on ApiFunction"
        for method in operations:
            assert (path, method.upper()) in routes, f"{method.upper()} {path} is documented but not routed"


@pytest.fixture
def resolve(monkeypatch):
    """The API handler on a proxy event, with settings from a test environment (no request here reaches AWS)."""
    for name, value in {"JOBS_TABLE": "jobs", "TENANTS_TABLE": "tenants", "REDSHIFT_CLUSTER_ID": "c1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REDSHIFT_WORKGROUP", raising=False)
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(name, value)  # building the ports' clients resolves credentials; none are used
    get_settings.cache_clear()
    get_ports.cache_clear()

    def call(
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        *,
        query: dict[str, list[str]] | None = None,
        headers: dict[str, list[str]] | None = None,
    ) -> tuple:
        """``query`` and ``headers``: each name's values, as API Gateway gives them (the last one alone in the
        single-value maps)."""
        is_text = body is None or _is_utf8(body)
        multi_headers = {"Content-Type": [content_type], **(headers or {})}
        proxy = {
            "httpMethod": method,
            "path": path,
            "resource": path,
            "headers": {name: values[-1] for name, values in multi_headers.items()},
            "multiValueHeaders": multi_headers,
            "queryStringParameters": {name: values[-1] for name, values in query.items()} if query else None,
            "multiValueQueryStringParameters": query,
            "body": None if body is None else body.decode() if is_text else base64.b64encode(body).decode(),
            "isBase64Encoded": not is_text,
            "requestContext": {"requestId": "r1", "authorizer": {"tenant_id": "acme"}, "stage": "v1"},
        }
        answer = app.resolve(proxy, None)
        return (
            answer["statusCode"],
            answer.get("multiValueHeaders") or answer.get("headers"),
            json.loads(answer["body"]),
        )

    yield call
    get_settings.cache_clear()
    get_ports.cache_clear()


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


JSON, INVALID = "application/json", "invalid_request"
HANDLER_CASES = {
    "not-utf8": ("POST", "/v1/queries", b'{"sql": "select \xff"}', "application/json", 400, "invalid_json"),
    # deeper than any recursion limit of this process (the SQL guard raises it for its parser, to some 11,000
    # frames); shallower bodies past the API's own bound are test_nesting_is_bounded_by_the_api_not_by_the_process_...
    "deep-json": (
        "POST",
        "/v1/queries",
        b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "application/json",
        400,
        "invalid_json",
    ),
    "multipart": ("POST", "/v1/queries", b'{"sql": "select 1"}', "multipart/form-data", 415, "unsupported_media_type"),
    "form": ("POST", "/v1/queries", b"sql=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    "put-job": ("PUT", "/v1/jobs/j_x", None, "application/json", 405, "method_not_allowed"),
    # API Gateway keeps a trailing slash in the path it routes to the resource without one: the router took it, the
    # 405 did not (a 404 "no such route"; the HTTP edge review)
    "post-jobs-slash": ("POST", "/v1/jobs/", None, "application/json", 405, "method_not_allowed"),
    "put-job-slash": ("PUT", "/v1/jobs/j_x/", None, "application/json", 405, "method_not_allowed"),
    "trace-queries": ("TRACE", "/v1/queries", None, "application/json", 405, "method_not_allowed"),
    "post-openapi": ("POST", "/v1/openapi.json", None, "application/json", 405, "method_not_allowed"),
    "control-char-id": ("GET", "/v1/jobs/\x01", None, "application/json", 404, "not_found"),
    # Python's $ matches before a last line feed: Powertools' route patterns answered these as the job, the listing
    "line-feed-id": ("GET", "/v1/jobs/j_x\n", None, "application/json", 404, "not_found"),
    "line-feed-listing": ("GET", "/v1/jobs/\n", None, "application/json", 404, "not_found"),
    "line-feed-bulk-job": ("GET", "/v1/bulk/jobs/b_x\n", None, "application/json", 404, "not_found"),
    "unknown-route": ("GET", "/v2/anything", None, "application/json", 404, "not_found"),
    # an array around a valid body: Powertools alone read its first item and dropped the rest
    "array-query": ("POST", "/v1/queries", b'[{"sql": "select 1"}, {"sql": "select 2"}]', JSON, 400, INVALID),
    "array-bulk-job": ("POST", "/v1/bulk/jobs", b'[{"object": "t", "operation": "insert"}]', JSON, 400, INVALID),
    "array-bulk-state": ("PATCH", "/v1/bulk/jobs/b_x", b'[{"state": "Aborted"}]', JSON, 400, INVALID),
    "array-upload-url": ("POST", "/v1/bulk/jobs/b_x/uploads", b'[{"gzip": true}, 5]', JSON, 400, INVALID),
    "array-drop-url": ("POST", "/v1/bulk/uploads", b'[{"object": "t"}]', JSON, 400, INVALID),
    "array-subscription": (
        "POST",
        "/v1/subscriptions",
        b'[{"url": "https://hooks.example.com/x", "events": ["Job Completed"]}]',
        JSON,
        400,
        INVALID,
    ),
}


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status", "code"), HANDLER_CASES.values(), ids=HANDLER_CASES
)
def test_the_handler_answers_malformed_requests_in_the_error_shape(
    resolve, method, path, body, content_type, status, code
):
    got, headers, answer = resolve(method, path, body, content_type)
    assert (got, answer["error"]["code"]) == (status, code), answer
    if status == 405:
        allow = headers["Allow"]
        assert (allow[0] if isinstance(allow, list) else allow) in ("DELETE, GET", "POST", "GET")


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "named"),
    [
        ("GET", "/v1/jobs", {"limit": ["5", "5"]}, None, ("query", "limit")),
        ("GET", "/v1/jobs", {"status": ["QUEUED", "FAILED"]}, None, ("query", "status")),
        ("GET", "/v1/bulk/jobs", {"limit": ["5", "7"], "state": ["Open"]}, None, ("query", "limit")),
        ("GET", "/v1/bulk/jobs/b_x/results", {"maxRecords": ["10", "10"]}, None, ("query", "maxRecords")),
        (
            "POST",
            "/v1/queries",
            None,
            {"Idempotency-Key": ["k1", "k1"]},
            ("header", "idempotency-key"),
        ),
        # who calls and how the body is written, on every route (found by the README review: the last of two keys
        # ran the request as its tenant)
        ("GET", "/v1/jobs", None, {"Authorization": ["Bearer spk_a", "Bearer spk_b"]}, ("header", "Authorization")),
        ("POST", "/v1/queries", None, {"Content-Type": ["text/plain", JSON]}, ("header", "Content-Type")),
        ("POST", "/v1/queries", None, {"Content-Encoding": ["gzip", "identity"]}, ("header", "Content-Encoding")),
        ("PUT", "/v1/bulk/jobs/b_x/batches", None, {"Content-Type": [JSON, "text/csv"]}, ("header", "Content-Type")),
    ],
)
def test_a_parameter_of_one_value_given_twice_is_said_so(resolve, method, path, query, headers, named):
    """Powertools validated the list of values against the one value and answered "Input should be a valid integer",
    blaming a value sent right (found by the hostile HTTP review)."""
    body = b'{"sql": "select 1"}' if method == "POST" else b"a\n1\n" if method == "PUT" else None
    got, _, answer = resolve(method, path, body, JSON, query=query, headers=headers)
    assert (got, answer["error"]["code"]) == (400, INVALID), answer
    [said] = [detail for detail in answer["error"]["details"] if detail["type"] == "repeated"]
    assert tuple(said["loc"]) == (named[0], named[1]) and "given 2 times; send it once" in said["msg"]


def test_a_batch_body_flagged_base64_that_is_not_is_a_400():
    """Read without validation it raised binascii.Error: a 500 (the hostile HTTP review; API Gateway itself always
    sends valid base64)."""
    proxy = {
        "httpMethod": "PUT",
        "path": "/v1/bulk/jobs/b_x/batches",
        "resource": "/v1/bulk/jobs/b_x/batches",
        "headers": {"Content-Type": "text/csv"},
        "body": "a,b\n1,2\n",
        "isBase64Encoded": True,
        "requestContext": {"requestId": "r1", "authorizer": {"tenant_id": "acme"}, "stage": "v1"},
    }
    answer = app.resolve(proxy, None)
    assert answer["statusCode"] == 400, answer
    assert json.loads(answer["body"])["error"]["message"] == "the request body is not readable"


@pytest.mark.parametrize(
    "filter_",
    [{"status": [1] * 60_000}, {str(n): 1 for n in range(70_000)}, {"k" * 200_000: 1, "j" * 200_000: 1}],
    ids=["values", "keys", "long-keys"],
)
def test_many_invalid_values_are_a_small_400(resolve, filter_):
    """One entry per pydantic error made a 120 KB body's answer pass Lambda's 6 MiB: a 502 for the caller's own
    mistake (found by the fuzzing review). The first 20 are listed, each location cut, and how many more."""
    body = json.dumps({"url": "https://hooks.example.com/x", "events": ["Job Completed"], "filter": filter_})
    got, _, answer = resolve("POST", "/v1/subscriptions", body.encode(), JSON)
    assert (got, answer["error"]["code"]) == (400, INVALID)
    assert len(json.dumps(answer)) < 10_000
    details = answer["error"]["details"]
    assert len(details) <= 21 and all(len(str(part)) <= 106 for d in details for part in d["loc"])
    if len(filter_) > 20 or any(len(v) > 20 for v in filter_.values() if isinstance(v, list)):
        assert details[-1]["type"] == "more_errors" and "more errors not listed" in details[-1]["msg"]


def test_every_line_of_a_request_names_its_tenant_and_job(resolve, monkeypatch):
    """The request's lines, the domain's and the handler's own error line included, carry the caller's tenant and
    the job the path names, as every consumer's lines do (spectra/logs.py)."""

    def failing(ports, caller, job_id):
        logging.getLogger(f"{api.logger.service}.queries").warning("reading the job")  # spectra.queries on AWS
        raise RuntimeError("the store broke")

    monkeypatch.setattr(api.queries, "get_job", failing)
    written = io.StringIO()
    monkeypatch.setattr(api.logger.registered_handler, "stream", written)  # the function's own log handler
    event = {
        "httpMethod": "GET",
        "path": "/v1/jobs/j_logged",
        "resource": "/v1/jobs/{job_id}",
        "pathParameters": {"job_id": "j_logged"},
        "headers": {},
        "body": None,
        "isBase64Encoded": False,
        "requestContext": {"requestId": "r1", "authorizer": {"tenant_id": "acme"}, "stage": "v1"},
    }
    context = SimpleNamespace(
        function_name="api", memory_limit_in_mb=512, invoked_function_arn="arn:aws:lambda:x", aws_request_id="r1"
    )
    assert api.lambda_handler(event, context)["statusCode"] == 500
    lines = [json.loads(text) for text in written.getvalue().splitlines()]
    for message in ("reading the job", "unhandled error"):
        line = next(line for line in lines if line["message"] == message)
        assert (line.get("tenant_id"), line.get("job_id")) == ("acme", "j_logged"), line


def test_a_warehouse_that_refuses_a_cancel_is_a_429_with_retry_after_or_our_500(resolve, monkeypatch):
    """The Data API throttling CancelStatement is a 429 with Retry-After, as the README promises every 429; refusing
    it otherwise (access denied, an internal error) is a failure on our side: 500, safe to retry, not a 422 with the
    AWS error's text. Asked again, the cancel goes through."""
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    monkeypatch.setattr(api, "get_ports", lambda budget: ports)
    job, _ = submit_query(ports, Caller(tenant_id="acme"), sql="select 1", parameters=[], fmt=ResultFormat.JSON)
    execute_job(ports, JobQueuedMessage(job_id=job.job_id, tenant_id="acme"))

    ports.warehouse.throttle_next("cancel")
    status, headers, answer = resolve("DELETE", f"/v1/jobs/{job.job_id}")
    assert (status, answer["error"]["code"]) == (429, "throttled")
    assert headers["Retry-After"] in ("1", ["1"])

    ports.warehouse.reject_next("User is not authorized", method="cancel", aws_error="AccessDeniedException")
    status, _, answer = resolve("DELETE", f"/v1/jobs/{job.job_id}")
    assert (status, answer["error"]["code"]) == (500, "internal_error"), answer
    assert "authorized" not in answer["error"]["message"]

    status, _, answer = resolve("DELETE", f"/v1/jobs/{job.job_id}")
    assert (status, answer["cancel_requested"]) == (202, True)


def test_a_bulk_create_that_sends_its_unset_fields_as_null_gets_their_defaults(resolve, monkeypatch):
    """Clients that write every field of a class send the ones left unset as null: "lineEnding": null was a 400
    (the Bulk 2.0 clients review)."""
    from producers.api import bulk

    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    monkeypatch.setattr(bulk, "get_ports", lambda budget: ports)
    fields = {"externalIdFieldName": None, "columnDelimiter": None, "lineEnding": None, "contentType": None}
    body = json.dumps({"object": "contacts", "operation": "insert", **fields}).encode()
    status, _, job = resolve("POST", "/v1/bulk/jobs", body)
    assert status == 201, job
    assert (job["columnDelimiter"], job["lineEnding"], job["contentType"]) == ("COMMA", "LF", "CSV")


@pytest.mark.parametrize(
    "trouble",
    [
        ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}, "GetItem"),
        ClientError({"Error": {"Code": "InternalServerError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "Query"),
        ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
    ],
    ids=["throttled", "aws-5xx", "no-answer"],
)
def test_an_aws_service_throttling_or_failing_is_a_503_with_retry_after(resolve, monkeypatch, trouble):
    """Found by the AWS failures review: DynamoDB still throttled (or failing on its side, or not answering) after
    botocore's retries was a 500 `internal_error`; it is a 503 `unavailable` with Retry-After, the shape of the
    other answers that say "not now". A refusal (AccessDenied, a ValidationException) stays our 500."""
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    monkeypatch.setattr(api, "get_ports", lambda budget: ports)
    job, _ = submit_query(ports, Caller(tenant_id="acme"), sql="select 1", parameters=[], fmt=ResultFormat.JSON)
    failures = iter([trouble, ClientError({"Error": {"Code": "AccessDeniedException"}}, "GetItem")])
    get = ports.jobs.get

    def troubled(job_id, **kwargs):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return get(job_id, **kwargs)

    monkeypatch.setattr(ports.jobs, "get", troubled)
    status, headers, answer = resolve("GET", f"/v1/jobs/{job.job_id}")
    assert (status, answer["error"]["code"]) == (503, "unavailable"), answer
    assert headers["Retry-After"] in ("2", ["2"])
    status, _, answer = resolve("GET", f"/v1/jobs/{job.job_id}")
    assert (status, answer["error"]["code"]) == (500, "internal_error"), answer
    status, _, answer = resolve("GET", f"/v1/jobs/{job.job_id}")
    assert (status, answer["job_id"]) == (200, job.job_id)


def test_a_data_api_5xx_refusing_a_cancel_is_a_503(resolve, monkeypatch):
    """Found by the diff review: a Data API answer of 500 that is not a throttling code (InternalFailure) is a
    StatementRejected raised from it, which the API answered 500 without Retry-After, not 503 as every other AWS 5xx."""
    from spectra.errors import StatementRejected
    from spectra.warehouse import _call

    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    monkeypatch.setattr(api, "get_ports", lambda budget: ports)
    job, _ = submit_query(ports, Caller(tenant_id="acme"), sql="select 1", parameters=[], fmt=ResultFormat.JSON)
    execute_job(ports, JobQueuedMessage(job_id=job.job_id, tenant_id="acme"))

    def failing(**_kwargs):
        answer = {"Error": {"Code": "InternalFailure", "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 500}}
        raise ClientError(answer, "CancelStatement")

    with pytest.raises(StatementRejected) as caught:
        _call(failing)
    ports.warehouse._script("cancel", caught.value)
    status, headers, answer = resolve("DELETE", f"/v1/jobs/{job.job_id}")
    assert (status, answer["error"]["code"]) == (503, "unavailable"), answer
    assert headers["Retry-After"] in ("2", ["2"])


def test_a_cancel_timing_out_is_a_429_to_ask_again(resolve, monkeypatch):
    """CancelStatement may answer QueryTimeoutException ("failed due to timeout", botocore's model), which the
    emulator never gives: as a real client raises it through the port, the DELETE was a 500 (a failure on our side)
    where a throttled cancel is a 429 with Retry-After. Asked again, the cancel goes through."""
    from tests.unit.test_warehouse_answers import raised_by

    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    monkeypatch.setattr(api, "get_ports", lambda budget: ports)
    job, _ = submit_query(ports, Caller(tenant_id="acme"), sql="select 1", parameters=[], fmt=ResultFormat.JSON)
    execute_job(ports, JobQueuedMessage(job_id=job.job_id, tenant_id="acme"))
    ports.warehouse._script("cancel", raised_by("cancel_statement", "QueryTimeoutException", 400))
    status, headers, answer = resolve("DELETE", f"/v1/jobs/{job.job_id}")
    assert (status, answer["error"]["code"]) == (429, "throttled"), answer
    assert headers["Retry-After"] in ("1", ["1"])
    status, _, answer = resolve("DELETE", f"/v1/jobs/{job.job_id}")
    assert (status, answer["cancel_requested"]) == (202, True)


def test_an_error_message_is_cut_before_it_can_pass_lambdas_answer_limit():
    """A backstop under the messages' own bounds: a message quoting a request's input whole could pass Lambda's
    6 MiB answer, which API Gateway turns into a 502 (the JSON review)."""
    answer = api._domain_error(InvalidRequest("x" * 7_000_000))
    body = json.loads(answer.body)["error"]
    assert answer.status_code == 400 and len(body["message"]) == api.MESSAGE_MAX + len(" [...]")
