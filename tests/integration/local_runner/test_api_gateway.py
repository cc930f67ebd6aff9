"""The HTTP side: proxy events, routing, authorizers and responses, over real HTTP."""

import base64
import gzip
import http.client
import json
import socket
import zlib

import pytest
import requests

pytestmark = pytest.mark.integration

ALLOW = {"Authorization": "Bearer allow"}
MB = 1024 * 1024


@pytest.fixture
def api(start_stack):
    return start_stack("api")


def _get(api, path, **kwargs):
    return requests.get(api.api_url + path, timeout=10, **kwargs)


def test_request_becomes_a_rest_proxy_event(api):
    response = requests.get(api.api_url + "/items/42?tag=a&tag=b&q=x", headers={**ALLOW, "X-Custom": "yes"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["X-Handler"] == "echo"
    assert response.headers["X-Amzn-RequestId"]
    event = response.json()
    assert event["resource"] == "/items/{item_id}"
    assert event["path"] == "/items/42"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"item_id": "42"}
    assert event["queryStringParameters"] == {"tag": "b", "q": "x"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "q": ["x"]}
    assert event["headers"]["X-Custom"] == "yes"
    assert event["multiValueHeaders"]["X-Custom"] == ["yes"]
    assert event["body"] is None and event["isBase64Encoded"] is False
    assert event["stageVariables"] is None
    context = event["requestContext"]
    assert context["stage"] == "v1"
    assert context["path"] == "/items/42"  # as requested: at the root (the stage-prefixed request: below)
    assert context["resourcePath"] == "/items/{item_id}"
    assert context["apiId"] == api.physical_id("Api")
    assert context["requestId"] == response.headers["X-Amzn-RequestId"]
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["identity"]["userAgent"].startswith("python-requests")
    assert context["authorizer"]["principalId"] == "user-1"


def test_a_repeated_header_keeps_each_value_as_api_gateway_does(api):
    """werkzeug joined them into "a1,b2", so an Idempotency-Key sent twice was a third key locally."""
    from urllib.parse import urlsplit

    url = urlsplit(api.api_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    connection.putrequest("GET", url.path.rstrip("/") + "/items/42")
    for name, value in [*ALLOW.items(), ("Idempotency-Key", "a1"), ("idempotency-key", "b2 \t"), ("X-Pad", " p ")]:
        connection.putheader(name, value)
    connection.endheaders()
    event = json.loads(connection.getresponse().read())
    connection.close()
    assert event["headers"]["Idempotency-Key"] == "b2"
    assert event["multiValueHeaders"]["Idempotency-Key"] == ["a1", "b2"]
    # white space around a value is not part of it (RFC 9110): a key sent with a trailing space made a second job
    # where one with a leading space found the first (the idempotency review)
    assert event["multiValueHeaders"]["X-Pad"] == ["p"]


def test_empty_query_and_path_parameters_are_null_and_bodies_are_passed(api):
    response = requests.post(api.api_url + "/items", data='{"sql": "select 1"}', headers=ALLOW, timeout=10)
    event = response.json()
    assert event["queryStringParameters"] is None and event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None
    assert event["body"] == '{"sql": "select 1"}' and event["isBase64Encoded"] is False
    assert response.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]


def test_the_stage_prefix_is_served_too_and_kept_out_of_the_event_path(api):
    event = _get(api, "/v1/items/7", headers=ALLOW).json()
    assert event["path"] == "/items/7" and event["requestContext"]["path"] == "/v1/items/7"
    # at the root, as through a custom domain mapped at its root: the path as requested, no stage
    event = _get(api, "/items/7", headers=ALLOW).json()
    assert event["path"] == "/items/7" and event["requestContext"]["path"] == "/items/7"


def test_most_specific_route_wins_and_greedy_paths_capture_the_rest(api):
    assert _get(api, "/items/special", headers=ALLOW).json()["resource"] == "/items/special"
    event = requests.delete(api.api_url + "/files/a/b/c.csv", headers=ALLOW, timeout=10).json()
    assert event["resource"] == "/files/{proxy+}"
    assert event["pathParameters"] == {"proxy": "a/b/c.csv"}
    assert event["httpMethod"] == "DELETE"  # ANY


def test_unknown_routes_get_api_gateways_missing_token_answer(api):
    for response in (
        _get(api, "/nowhere", headers=ALLOW),
        requests.put(api.api_url + "/items", headers=ALLOW, timeout=10),  # known path, unknown method
    ):
        assert response.status_code == 403
        assert response.json() == {"message": "Missing Authentication Token"}


def test_binary_bodies_are_base64_both_ways(api):
    octets = {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}
    response = requests.put(api.api_url + "/upload", data=b"\x00\xff", headers=octets, timeout=10)
    assert response.status_code == 201
    assert response.content == b"\x00\x01\xff"
    assert response.headers["Content-Type"] == "application/octet-stream"
    event = api.invocation_log("Binary")[-1].event
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\x00\xff"


def test_a_compressed_body_reaches_the_function_inflated_with_its_header_as_sent(api):
    """API Gateway inflates a gzip or deflate body before the integration ("Calling an API method with a compressed
    payload"), leaving Content-Encoding as the client sent it; gzip members one after another inflate whole."""
    octets = {"Content-Type": "application/octet-stream", **ALLOW}
    for encoding, body in [
        ("gzip", gzip.compress(b"a,b\n") + gzip.compress(b"1,2\n")),
        ("deflate", zlib.compress(b"a,b\n1,2\n")),
        ("identity", b"a,b\n1,2\n"),
    ]:
        response = requests.put(
            api.api_url + "/upload", data=body, headers={**octets, "Content-Encoding": encoding}, timeout=10
        )
        assert response.status_code == 201, (encoding, response.text)
        event = api.invocation_log("Binary")[-1].event
        assert base64.b64decode(event["body"]) == b"a,b\n1,2\n"
        assert event["headers"]["Content-Encoding"] == encoding


def test_a_body_that_does_not_inflate_as_its_coding_says_is_a_415_and_invokes_nothing(api):
    before = len(api.invocation_log("Binary"))
    whole = gzip.compress(b"a,b\n" * 100)
    for encoding, body in [("gzip", whole[:-8]), ("gzip", whole + b"garbage"), ("gzip", b"a,b\n"), ("br", b"x")]:
        response = requests.put(
            api.api_url + "/upload",
            data=body,
            headers={"Content-Type": "application/octet-stream", "Content-Encoding": encoding, **ALLOW},
            timeout=10,
        )
        assert (response.status_code, response.json()) == (415, {"message": "Unsupported Media Type"}), encoding
    assert len(api.invocation_log("Binary")) == before


def test_a_body_inflating_past_lambdas_event_quota_is_a_502_without_a_call(api):
    before = len(api.invocation_log("Binary"))
    bomb = gzip.compress(b"\0" * (7 * MB))  # 7 KB on the wire
    response = requests.put(
        api.api_url + "/upload",
        data=bomb,
        headers={"Content-Type": "application/octet-stream", "Content-Encoding": "gzip", **ALLOW},
        timeout=10,
    )
    assert response.status_code == 502 and response.json() == {"message": "Internal server error"}
    assert len(api.invocation_log("Binary")) == before


@pytest.mark.parametrize("accept", ["*/*", "text/plain, application/octet-stream", None])
def test_a_base64_answer_is_decoded_only_for_a_client_whose_first_accept_is_binary(api, accept):
    """As API Gateway does ("uses the first Accept header ... to determine if a response should return binary
    media"): the template's binary media type is application/octet-stream, so these clients get the base64 text."""
    headers = {"Content-Type": "application/octet-stream", **({"Accept": accept} if accept else {})}
    session = requests.Session()
    if accept is None:
        del session.headers["Accept"]
    response = session.put(api.api_url + "/upload", data=b"\x00\xff", headers=headers, timeout=10)
    assert response.status_code == 201
    assert base64.b64decode(response.content) == b"\x00\x01\xff"


def test_a_raising_function_is_a_502_on_the_implicit_api(api):
    response = _get(api, "/broken")
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}
    assert api.invocation_log("Broken")[-1].event["requestContext"]["stage"] == "Prod"
    assert _get(api, "/Prod/broken").status_code == 502


def test_an_answer_past_the_integration_timeout_is_a_504_and_past_the_functions_a_502(api):
    """API Gateway stops waiting at the integration's timeout (29 s, or the event's ``TimeoutInMillis``): 504
    INTEGRATION_TIMEOUT. A function stopped by its own, shorter, Timeout is Lambda's error: 502. The runner waited
    for any answer however long it took."""
    gateway = _get(api, "/slow/gateway?seconds=0.8")
    assert gateway.status_code == 504 and gateway.json() == {"message": "Endpoint request timed out"}
    function = _get(api, "/slow/lambda?seconds=1.5")
    assert function.status_code == 502 and function.json() == {"message": "Internal server error"}
    assert _get(api, "/slow/gateway?seconds=0").status_code == 200


def test_missing_token_is_401_without_calling_the_authorizer(api):
    response = _get(api, "/items/1")
    assert response.status_code == 401 and response.json() == {"message": "Unauthorized"}
    assert api.invocations("Authorizer") == 0
    assert api.invocations("Echo") == 0


def test_authorizer_raising_unauthorized_is_401(api):
    response = _get(api, "/items/1", headers={"Authorization": "Bearer nonsense"})
    assert response.status_code == 401 and response.json() == {"message": "Unauthorized"}
    assert api.invocations("Authorizer") == 1 and api.invocations("Echo") == 0


def test_an_authorizer_past_its_timeout_is_a_500_though_it_would_have_allowed(api):
    """Lambda stops an authorizer at its Timeout and API Gateway answers AUTHORIZER_CONFIGURATION_ERROR (a 500). The
    runner waited for it, so an authorizer whose SDK retried past its Timeout let the request through (the service
    storms' fault test)."""
    response = _get(api, "/items/1", headers={"Authorization": "Bearer slow"})
    assert response.status_code == 500 and response.json() == {"message": None}
    assert api.invocations("Echo") == 0


def test_deny_policy_is_403(api):
    response = _get(api, "/items/1", headers={"Authorization": "Bearer deny"})
    assert response.status_code == 403
    assert response.json() == {"message": "User is not authorized to access this resource"}
    assert api.invocations("Echo") == 0


def test_token_authorizer_gets_the_method_arn_and_its_context_reaches_the_function(api):
    event = _get(api, "/items/9", headers=ALLOW).json()
    authorizer_event = api.invocation_log("Authorizer")[0].event
    assert authorizer_event == {
        "type": "TOKEN",
        "authorizationToken": "Bearer allow",
        "methodArn": f"arn:aws:execute-api:us-east-1:123456789012:{api.physical_id('Api')}/v1/GET/items/9",
    }
    context = event["requestContext"]["authorizer"]
    assert context["principalId"] == "user-1"
    assert (context["tenant"], context["limit"], context["admin"], context["type"]) == ("acme", "5", "false", "TOKEN")


def test_token_answers_are_cached_and_the_cached_policy_is_reevaluated(api):
    narrow = {"Authorization": "Bearer narrow"}
    assert _get(api, "/items/1", headers=narrow).status_code == 200
    assert _get(api, "/items/1", headers=narrow).status_code == 200
    assert api.invocations("Authorizer") == 1  # cached for ReauthorizeEvery
    # The cached policy names /items/1 only: another resource is denied without asking the authorizer again.
    assert _get(api, "/items/2", headers=narrow).status_code == 403
    assert api.invocations("Authorizer") == 1


def test_request_authorizer_sees_the_request_and_is_not_cached(api):
    for _ in range(2):
        event = _get(api, "/request/bob?x=1", headers=ALLOW).json()
    assert api.invocations("Authorizer") == 2  # ReauthorizeEvery: 0
    assert event["requestContext"]["authorizer"]["type"] == "REQUEST"
    authorizer_event = api.invocation_log("Authorizer")[0].event
    assert authorizer_event["type"] == "REQUEST"
    assert authorizer_event["methodArn"].endswith("/v1/GET/request/bob")
    assert authorizer_event["resource"] == "/request/{name}"
    assert authorizer_event["pathParameters"] == {"name": "bob"}
    assert authorizer_event["queryStringParameters"] == {"x": "1"}
    assert authorizer_event["headers"]["Authorization"] == "Bearer allow"
    assert _get(api, "/request/bob").status_code == 401  # identity header missing


def test_routes_with_auth_none_skip_the_authorizer(api):
    assert _get(api, "/public").status_code == 200
    assert "authorizer" not in api.invocation_log("Echo")[-1].event["requestContext"]
    assert api.invocations("Authorizer") == 0


def test_cors_preflight_answers_from_the_template(api):
    response = requests.options(api.api_url + "/items/1", headers={"Origin": "http://example.com"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Allow-Methods"] == "GET,POST,OPTIONS"
    assert api.invocations("Authorizer") == 0  # AddDefaultAuthorizerToCorsPreflight: false


def test_api_gateways_request_quotas_are_answered_before_routing(api):
    big = requests.post(api.api_url + "/items", data=b"x" * (10 * 1024 * 1024 + 1), headers=ALLOW, timeout=30)
    assert big.status_code == 413 and big.json() == {"message": "Request Too Large"}
    assert _get(api, "/items/1?" + "q" * 9000, headers=ALLOW).status_code == 414
    assert _get(api, "/items/1", headers={**ALLOW, "X-Big": "b" * 11_000}).status_code == 431
    assert api.invocations("Echo") == 0 and api.invocations("Authorizer") == 0


def test_a_chunked_body_is_held_to_the_10_mb_quota_too(api):
    """No Content-Length to refuse it by: it is counted as it is read, and never handed on cut short."""

    def chunks(size):
        for _ in range(size // MB):
            yield b"x" * MB
        yield b"x" * (size % MB)

    octets = {"Content-Type": "application/octet-stream", **ALLOW}
    over = requests.post(api.api_url + "/items", data=chunks(10 * MB + 1), headers=octets, timeout=60)
    assert over.status_code == 413 and over.json() == {"message": "Request Too Large"}
    assert api.invocations("Echo") == 0


def test_lambdas_payload_quotas_refuse_what_api_gateway_would_pass_on(api):
    """A binary body arrives base64-encoded: past about 4.5 MB the event exceeds Lambda's 6 MiB and API Gateway
    answers 502 without a call, though it takes 10 MB; an answer past 6 MiB + 100 bytes is a 502 too."""
    octets = {"Content-Type": "application/octet-stream"}
    fits = requests.put(api.api_url + "/sized", data=b"x" * (4 * MB), headers=octets, timeout=30)
    assert fits.status_code == 200 and fits.json()["received"] == 4 * MB
    calls = api.invocations("Sized")
    too_big = requests.put(api.api_url + "/sized", data=b"x" * (4 * MB + MB // 2), headers=octets, timeout=30)
    assert too_big.status_code == 502 and too_big.json() == {"message": "Internal server error"}
    assert api.invocations("Sized") == calls  # never invoked
    answered = requests.put(api.api_url + "/sized?answer=" + str(6 * MB + 100), data=b"x", headers=octets, timeout=30)
    assert answered.status_code == 502
    assert api.invocations("Sized") == calls + 1  # invoked: its answer is what Lambda refused
    near = requests.put(api.api_url + "/sized?answer=" + str(5 * MB), data=b"x", headers=octets, timeout=30)
    assert near.status_code == 200 and len(near.json()["pad"]) == 5 * MB


def test_what_the_http_server_refuses_by_itself_is_answered_in_json_too(api):
    host, port = api.api_url.removeprefix("http://").split(":")
    for request, status in (
        (b"GET /items/1 HTTP/1.1\r\nX-Huge: " + b"h" * 70_000 + b"\r\n\r\n", 431),
        (b"GET /" + b"u" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /items/1 HTTP/7.0\r\n\r\n", 400),  # the HTTP server's 505 for the version is the client's fault
    ):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(request)
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert response.status == status, request[:40]
            assert response.getheader("Content-Type") == "application/json"
            assert set(json.loads(response.read())) == {"message"}


def _raw_post(api, rest: bytes, *, stop_sending: bool = False) -> tuple[int, bytes]:
    """POST /items as bytes on the wire (what no HTTP client library sends): ``rest`` is the headers after the
    authorization, the blank line and the body; ``stop_sending`` closes the client's side after them."""
    host, port = api.api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /items HTTP/1.1\r\nAuthorization: Bearer allow\r\nConnection: close\r\n" + rest)
        if stop_sending:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


@pytest.mark.parametrize(
    "body",
    [
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",  # a chunk size that is not hex
        b"Content-Length: 100\r\n\r\nonly a few bytes",  # then the client stops sending
    ],
    ids=["bad-chunk", "short-body"],
)
def test_a_body_that_cannot_be_read_is_a_400_not_a_500(api, body):
    status, answer = _raw_post(api, body, stop_sending=True)
    assert (status, json.loads(answer)) == (400, {"message": "Bad Request"})
    assert api.invocations("Echo") == 0


@pytest.mark.parametrize(
    "lengths",
    [["19", "3"], ["3", "19"], ["abc"], ["-1"], ["+19"], ["1_9"], ["\u0661\u0669"]],
    ids=["two-lengths", "two-lengths-reversed", "letters", "negative", "plus", "underscore", "non-ascii"],
)
def test_a_content_length_that_does_not_say_the_bodys_length_is_a_400(api, lengths):
    """RFC 9112 (6.3): the body's length is unknown, so the request is refused. werkzeug read the last length given
    (a body cut to 3 bytes reached the function: a bulk batch stored cut short, answered 201) or none (an empty one)."""
    headers = "".join(f"Content-Length: {value}\r\n" for value in lengths).encode()
    status, answer = _raw_post(api, headers + b'\r\n{"sql": "select 1"}')
    assert (status, json.loads(answer)) == (400, {"message": "Bad Request"})
    assert api.invocations("Echo") == 0


@pytest.mark.parametrize(
    "chunks",
    [
        b'7;name=value\r\n{"sql":\r\nc\r\n "select 1"}\r\n0\r\n\r\n',  # a chunk extension
        b'7 ; a=1 ; b="x;y"\r\n{"sql":\r\nC;x\r\n "select 1"}\r\n0;last\r\n\r\n',  # spaced, upper-case hex
        b'7\r\n{"sql":\r\nc\r\n "select 1"}\r\n0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n',  # trailer fields
    ],
    ids=["extension", "extensions", "trailers"],
)
def test_a_chunked_body_with_extensions_or_trailers_is_read_whole(api, chunks):
    """Both are legal HTTP/1.1 (RFC 9112, 7.1): werkzeug's reader answered them 400, as if the body were malformed."""
    status, answer = _raw_post(api, b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    assert status == 200 and json.loads(answer)["body"] == '{"sql": "select 1"}'


@pytest.mark.parametrize(
    "chunks",
    [
        b"".join(b"1;x=" + b"a" * 1000 + b"\r\nx\r\n" for _ in range(20)) + b"0\r\n\r\n",  # 20 KB of extensions
        b"1\r\nx\r\n0\r\n" + b"".join(b"X-T%d: %s\r\n" % (i, b"a" * 1000) for i in range(20)) + b"\r\n",  # trailers
        b"0" * 40 + b"1\r\nx\r\n0\r\n\r\n",  # a size of 41 characters
    ],
    ids=["extensions", "trailers", "leading-zeros"],
)
def test_chunked_framing_that_outweighs_its_data_is_a_400(api, chunks):
    """One-byte chunks each carrying a 60 KB extension made the gateway read 12 MB for a 200-byte body, answered 200
    (diff review; as Node.js's CVE-2024-22019): extensions and trailers are bounded in all, not line by line."""
    status, _ = _raw_post(api, b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    assert status == 400
    assert api.invocations("Echo") == 0


def test_a_path_parameter_holding_a_newline_is_still_covered_by_a_wildcard_policy(api):
    event = _get(api, "/items/a%0Ab", headers=ALLOW).json()
    assert event["pathParameters"] == {"item_id": "a\nb"}
