"""API Gateway (REST, Lambda proxy integration) in front of the local functions, on a werkzeug server.

Every HTTP request becomes a payload-v1 proxy event, goes through the route's Lambda authorizer if it has one (see
``authorizers.py``) and the function's proxy response is written back. Routes come from the functions' ``Api``
events; the most specific one wins as in API Gateway (static segment > ``{param}`` > ``{proxy+}``, then an exact
method > ``ANY``). An unknown route gets API Gateway REST's answer, 403 ``Missing Authentication Token``.

Stages. API Gateway serves ``https://<id>.execute-api.../<stage>/<path>``. Locally the API is served at the root *and*
under ``/<stage>/``; the root wins when both could match. Either way the event's ``path`` has no stage, and
``requestContext.path`` is the path as requested: with the stage, as through the execute-api domain, or without, as
through a custom domain mapped at its root. When several APIs are declared they share one port; their routes must not
overlap.

Quotas. Before routing, API Gateway REST's hard request limits apply: a body past 10 MB is 413 (REQUEST_TOO_LARGE),
a URL past 8,192 characters 414, a request line and header values past 10,240 bytes 431, each as the API's gateway
response. What the HTTP server refuses by itself (lines past 64 KiB, over 100 headers, an unreadable request line) is
answered the same way, and a body that cannot be read (a malformed chunk, fewer bytes than its Content-Length before
the client closes) or whose length is unknown (a Content-Length that is not digits, or two that differ) is a 400
gateway response, so no caller ever sees an HTML error page or a 5xx for its own input.

Lambda's own quotas follow: a synchronous invocation takes an event of at most 6 MiB and returns a response of at
most 6 MiB + 100 bytes (both as JSON). API Gateway sends the proxy event whatever its size, the invocation is refused,
and the client gets API Gateway's 502 (INTEGRATION_FAILURE), as on AWS: a binary body arrives base64-encoded, so a
body past about 4.5 MB never reaches the function although API Gateway takes 10 MB. Each payload is measured as
compact UTF-8 JSON, the smallest form it can take, so nothing AWS would hand over is refused here.

Compressed request bodies. API Gateway inflates a body sent with ``Content-Encoding: gzip`` or ``deflate`` before the
integration sees it and leaves the header as sent; a body that does not inflate, or another coding, is its 415
("Calling an API method with a compressed payload" in its developer guide). So does this gateway, the inflated body
counting against Lambda's event quota (past it, the 502 above).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import re
import threading
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.serving import BaseWSGIServer, DechunkedInput, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from local.runner.authorizers import AuthDecision, AuthorizerRequest, LambdaAuthorizer
from local.runner.functions import LocalFunction, TaskTimedOut
from local.runner.usage_plans import INVALID_API_KEY, QUOTA_EXCEEDED, THROTTLED, UsageMeter

#: Lambda's synchronous invocation quotas (bytes of the event, of the response)
LAMBDA_EVENT_MAX_BYTES = 6 * 1024 * 1024
LAMBDA_RESPONSE_MAX_BYTES = 6 * 1024 * 1024 + 100

log = logging.getLogger(__name__)

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
#: An authorizer that raised or timed out is, to API Gateway, an AuthorizerConfigurationException: its
#: AUTHORIZER_CONFIGURATION_ERROR response, the one the template must get right
_RESPONSE_TYPES = {401: "UNAUTHORIZED", 403: "ACCESS_DENIED", 429: "THROTTLED", 500: "AUTHORIZER_CONFIGURATION_ERROR"}
_METER_REFUSALS = {
    INVALID_API_KEY: (403, "Forbidden"),
    THROTTLED: (429, "Too Many Requests"),
    QUOTA_EXCEEDED: (429, "Limit Exceeded"),
}

#: API Gateway REST's integration timeout (its default; an Api event's ``TimeoutInMillis`` may ask for less, and a
#: Regional API for more): past it the client gets a 504 INTEGRATION_TIMEOUT however long the function goes on
INTEGRATION_TIMEOUT_SECONDS = 29

# API Gateway REST's request quotas (hard limits, not adjustable): payload, URL, and request line plus header values.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
MAX_URL_CHARS = 8192
MAX_REQUEST_LINE_AND_HEADER_VALUES = 10240


@dataclass
class RestApi:
    """One ``AWS::Serverless::Api`` (or SAM's implicit one): id, stage, authorizers, CORS and binary settings."""

    logical_id: str
    api_id: str
    stage: str
    authorizers: dict[str, LambdaAuthorizer] = field(default_factory=dict)
    default_authorizer: str | None = None
    authorize_preflight: bool = True
    cors: dict[str, str] | None = None
    binary_media_types: list[str] = field(default_factory=list)
    gateway_responses: dict[str, Any] = field(default_factory=dict)
    api_key_required: bool = False  # Auth.ApiKeyRequired: the default of its methods
    api_key_source: str = "HEADER"  # ApiKeySourceType: X-API-Key header, or the authorizer's usageIdentifierKey

    def gateway_response(self, status: int, message: str | None, kind: str | None = None) -> Response:
        """API Gateway's own answer (401, 403, 500 ...), customised by the template's ``GatewayResponses`` when it
        declares one for that response type (or for DEFAULT_4XX / DEFAULT_5XX), as API Gateway does. Templates may
        use ``$context.error.messageString`` (the message as a quoted JSON string) and ``$context.error.message``."""
        fallback = "DEFAULT_4XX" if status < 500 else "DEFAULT_5XX"
        kind = kind or _RESPONSE_TYPES.get(status, fallback)
        spec = self.gateway_responses.get(kind) or self.gateway_responses.get(fallback)
        if not spec:
            return _message(status, message)
        templates = spec.get("ResponseTemplates") or {}
        body = templates.get("application/json")
        if body is None:
            return _message(int(spec.get("StatusCode", status)), message)
        body = body.replace("$context.error.messageString", json.dumps(message or "")).replace(
            "$context.error.message", message or ""
        )
        headers = {k: str(v).strip("'") for k, v in (spec.get("ResponseParameters") or {}).get("Headers", {}).items()}
        return Response(body, status=int(spec.get("StatusCode", status)), mimetype="application/json", headers=headers)


@dataclass
class Route:
    """One ``Api`` event: ``method`` on ``path`` (a template like ``/jobs/{job_id}``) invokes ``function``."""

    api: RestApi
    path: str
    method: str
    function: LocalFunction
    authorizer: str | None
    resource_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    api_key_required: bool = False
    #: the event's ``TimeoutInMillis``, else API Gateway's default
    timeout_seconds: float = INTEGRATION_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        self.segments = [s for s in self.path.split("/") if s]

    def match(self, parts: list[str]) -> tuple[tuple[int, ...], dict[str, str]] | None:
        """Path parameters and a specificity key when ``parts`` matches this route's path, else ``None``."""
        params: dict[str, str] = {}
        score: list[int] = []
        for index, segment in enumerate(self.segments):
            if segment.startswith("{") and segment.endswith("+}"):
                if index >= len(parts):
                    return None
                params[segment[1:-2]] = "/".join(parts[index:])
                score.append(0)
                return (*score, -1), params
            if index >= len(parts):
                return None
            if segment.startswith("{") and segment.endswith("}"):
                params[segment[1:-1]] = parts[index]
                score.append(1)
            elif segment == parts[index]:
                score.append(2)
            else:
                return None
        if len(parts) != len(self.segments):
            return None
        return (*score, 3), params


class ApiGateway:
    """The WSGI application plus the server thread; ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(
        self, routes: list[Route], *, region: str, account_id: str, port: int = 0, meter: UsageMeter | None = None
    ) -> None:
        self.routes = routes
        self.region = region
        self.account_id = account_id
        self.meter = meter
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", port, self, threaded=True, request_handler=_GatewayRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="api-gateway", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout)

    # -- WSGI -----------------------------------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        request = Request(environ)
        request_id = str(uuid.uuid4())
        try:
            response = self.handle(request, request_id)
        except Exception:
            log.exception("local API Gateway failed on %s %s", request.method, request.path)
            response = _message(500, "Internal server error")
        response.headers["X-Amzn-RequestId"] = request_id
        return response(environ, start_response)

    def handle(self, request: Request, request_id: str) -> Response:
        refused = self._unframed(request) or self._over_quota(request)
        if refused is not None:
            return refused
        found = self.find_route(request.method, request.path)
        if found is None:
            preflight = self._preflight(request)
            if preflight is not None:
                return preflight
            return self.refusal(403, "Missing Authentication Token", "MISSING_AUTHENTICATION_TOKEN")
        route, params, path = found
        try:
            event = self.proxy_event(request, route, params, path, request_id)
        except RequestEntityTooLarge:  # a chunked body that announced no length
            return route.api.gateway_response(413, "Request Too Large", "REQUEST_TOO_LARGE")
        except _NotInflatable:
            return route.api.gateway_response(415, "Unsupported Media Type", "UNSUPPORTED_MEDIA_TYPE")
        except _InflatedPastTheEventQuota:
            log.warning("%s %s: the inflated body is past Lambda's 6 MiB; not invoked", request.method, request.path)
            return route.api.gateway_response(502, "Internal server error", "INTEGRATION_FAILURE")
        except ClientDisconnected:  # a body cut short of its Content-Length, or a malformed chunk: unreadable
            return route.api.gateway_response(400, "Bad Request")
        decision = self._authorize(route.api, route.authorizer, event)
        if not decision.allowed:
            return route.api.gateway_response(decision.status, decision.message)
        refused = self._metered(route, decision, request)
        if refused is not None:
            return refused
        if route.authorizer:
            event["requestContext"]["authorizer"] = decision.context
        if _json_size(event) > LAMBDA_EVENT_MAX_BYTES:
            log.warning("%s %s: the event is past Lambda's 6 MiB; not invoked", request.method, request.path)
            return route.api.gateway_response(502, "Internal server error", "INTEGRATION_FAILURE")
        try:
            result = route.function.invoke_bounded(event, seconds=route.timeout_seconds)
        except TaskTimedOut as timed_out:
            log.warning("%s on %s %s: %s", route.function.logical_id, request.method, request.path, timed_out)
            if timed_out.callers_limit:
                return route.api.gateway_response(504, "Endpoint request timed out", "INTEGRATION_TIMEOUT")
            return route.api.gateway_response(502, "Internal server error")  # Lambda's timeout: the function's error
        except Exception:
            log.exception("%s raised on %s %s", route.function.logical_id, request.method, request.path)
            return route.api.gateway_response(502, "Internal server error")
        if _json_size(result) > LAMBDA_RESPONSE_MAX_BYTES:
            log.warning("%s answered past Lambda's 6 MiB response limit", route.function.logical_id)
            return route.api.gateway_response(502, "Internal server error", "INTEGRATION_FAILURE")
        response = _proxy_response(
            result,
            route.function.logical_id,
            accept=request.headers.get("Accept"),
            binary_media_types=route.api.binary_media_types,
        )
        if response is None:
            return route.api.gateway_response(502, "Internal server error")
        return response

    def refusal(self, status: int, message: str, kind: str | None = None) -> Response:
        """API Gateway's own answer before any route is chosen: the API's gateway response when there is one API."""
        apis = {route.api.logical_id: route.api for route in self.routes}
        if len(apis) == 1:
            (api,) = apis.values()
            return api.gateway_response(status, message, kind)
        return _message(status, message)

    def _unframed(self, request: Request) -> Response | None:
        """400 for a body whose length cannot be known (RFC 9112, 6.3): a ``Content-Length`` that is not digits, or
        one given twice with different values. werkzeug read the last value given, or none (an empty body), so a
        batch cut short was stored and answered 201, and the rest of its rows were lost without a word."""
        lengths = {
            value.strip() for name, value in request.environ.get(SENT_HEADERS) or [] if name.lower() == "content-length"
        }
        if len(lengths) > 1 or any(not _DIGITS.fullmatch(value) for value in lengths):
            return self.refusal(400, "Bad Request")
        return None

    def _over_quota(self, request: Request) -> Response | None:
        """API Gateway's request quotas, checked before routing as API Gateway does: 414 for a URL past 8,192
        characters, 431 for a request line and header values past 10,240 bytes, 413 for a body past 10 MB."""
        environ = request.environ
        url = environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.full_path
        if len(url) > MAX_URL_CHARS:
            return self.refusal(414, "Request-URI Too Long")
        request_line = len(request.method) + len(url) + len(environ.get("SERVER_PROTOCOL", "HTTP/1.1")) + 2
        if request_line + sum(len(value) for _, value in request.headers.items()) > MAX_REQUEST_LINE_AND_HEADER_VALUES:
            return self.refusal(431, "Request Header Fields Too Large")
        if request.content_length is not None and request.content_length > MAX_PAYLOAD_BYTES:
            return self.refusal(413, "Request Too Large", "REQUEST_TOO_LARGE")
        # Bounds a chunked body as it is read. werkzeug stops at the bound without a word (the body is cut short),
        # so one byte more is let through, and a body that reaches it is refused (_request_body).
        request.max_content_length = MAX_PAYLOAD_BYTES + 1
        return None

    def find_route(self, method: str, raw_path: str) -> tuple[Route, dict[str, str], str] | None:
        """The best route for ``method`` and ``raw_path`` (root first, then with a stage prefix removed)."""
        parts = [p for p in raw_path.split("/") if p]
        candidates = [(parts, None)]
        if parts:
            candidates.append((parts[1:], parts[0]))
        for candidate, stage in candidates:
            best: tuple[tuple, Route, dict[str, str]] | None = None
            for route in self.routes:
                if stage is not None and route.api.stage != stage:
                    continue
                if route.method not in (method, "ANY"):
                    continue
                matched = route.match(candidate)
                if matched is None:
                    continue
                key = (matched[0], route.method != "ANY")
                if best is None or key > best[0]:
                    best = (key, route, matched[1])
            if best is not None:
                return best[1], best[2], "/" + "/".join(candidate)
        return None

    # -- events ---------------------------------------------------------------------------------------------------

    def proxy_event(
        self, request: Request, route: Route, params: dict[str, str], path: str, request_id: str
    ) -> dict[str, Any]:
        sent = request.environ.get(SENT_HEADERS)
        items = request.headers.items() if sent is None else sent
        headers = _single(items)
        multi_headers = _multi(items)
        headers.setdefault("X-Forwarded-For", request.remote_addr or "127.0.0.1")
        multi_headers.setdefault("X-Forwarded-For", [headers["X-Forwarded-For"]])
        headers.setdefault("X-Forwarded-Proto", request.scheme)
        multi_headers.setdefault("X-Forwarded-Proto", [request.scheme])
        body, is_base64 = _request_body(request, route.api.binary_media_types)
        now = datetime.now(UTC)
        host = request.host or "127.0.0.1"
        return {
            "resource": route.path,
            "path": path,
            "httpMethod": request.method,
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": _single(request.args.items(multi=True)) or None,
            "multiValueQueryStringParameters": _multi(request.args.items(multi=True)) or None,
            "pathParameters": params or None,
            "stageVariables": None,
            "requestContext": {
                "accountId": self.account_id,
                "apiId": route.api.api_id,
                "resourceId": route.resource_id,
                "resourcePath": route.path,
                "stage": route.api.stage,
                "requestId": request_id,
                "extendedRequestId": request_id,
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "requestTimeEpoch": int(now.timestamp() * 1000),
                "httpMethod": request.method,
                "path": request.path,  # as requested: /<stage>/... or, served at the root, the path alone
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "domainName": host,
                "domainPrefix": host.split(".")[0],
                "identity": {
                    "sourceIp": request.remote_addr or "127.0.0.1",
                    "userAgent": request.headers.get("User-Agent"),
                    "accountId": None,
                    "apiKey": None,
                    "caller": None,
                    "cognitoAuthenticationProvider": None,
                    "cognitoAuthenticationType": None,
                    "cognitoIdentityId": None,
                    "cognitoIdentityPoolId": None,
                    "principalOrgId": None,
                    "user": None,
                    "userArn": None,
                },
            },
            "body": body,
            "isBase64Encoded": is_base64,
        }

    def method_arn(self, event: dict[str, Any]) -> str:
        context = event["requestContext"]
        return (
            f"arn:aws:execute-api:{self.region}:{self.account_id}:{context['apiId']}/{context['stage']}/"
            f"{event['httpMethod']}{event['path']}"
        )

    def _authorize(self, api: RestApi, authorizer_name: str | None, event: dict[str, Any]) -> AuthDecision:
        if not authorizer_name:
            return AuthDecision(200)
        authorizer = api.authorizers.get(authorizer_name)
        if authorizer is None:
            log.warning("API %s has no authorizer %s", api.logical_id, authorizer_name)
            return AuthDecision(500, None)
        request_event = {
            key: event[key]
            for key in ("resource", "path", "httpMethod", "headers", "multiValueHeaders", "requestContext")
        }
        request_event["queryStringParameters"] = event["queryStringParameters"] or {}
        request_event["multiValueQueryStringParameters"] = event["multiValueQueryStringParameters"] or {}
        request_event["pathParameters"] = event["pathParameters"] or {}
        request_event["stageVariables"] = {}
        return authorizer.authorize(
            AuthorizerRequest(
                method_arn=self.method_arn(event),
                headers=event["headers"] or {},
                query=event["queryStringParameters"] or {},
                request_event=request_event,
            )
        )

    def _metered(self, route: Route, decision: AuthDecision, request: Request) -> Response | None:
        """Usage plans (``usage_plans.py``): a method requiring an API key is refused without a valid key (403) and
        over its plan's rate or quota (429); the answers are API Gateway's, shaped by the template's
        ``GatewayResponses`` (INVALID_API_KEY, THROTTLED, QUOTA_EXCEEDED)."""
        if not route.api_key_required or self.meter is None:
            return None
        api = route.api
        key = decision.usage_key if api.api_key_source == "AUTHORIZER" else request.headers.get("X-API-Key")
        refusal = self.meter.check(key, api.api_id, api.stage)
        if refusal is None:
            return None
        status, message = _METER_REFUSALS[refusal]
        log.info("%s %s refused by its usage plan: %s", request.method, request.path, refusal)
        return api.gateway_response(status, message, refusal)

    def _preflight(self, request: Request) -> Response | None:
        """SAM's CORS: an OPTIONS mock integration on every path of an API that declares ``Cors``."""
        if request.method != "OPTIONS":
            return None
        for method in _METHODS:
            found = self.find_route(method, request.path)
            if found is None or found[0].api.cors is None:
                continue
            route, params, path = found
            api = route.api
            if api.default_authorizer and api.authorize_preflight:
                event = self.proxy_event(request, route, params, path, str(uuid.uuid4()))
                decision = self._authorize(api, api.default_authorizer, event)
                if not decision.allowed:
                    return _message(decision.status, decision.message)
            response = Response(status=200)
            for key, value in api.cors.items():
                response.headers[key] = value
            return response
        return None


#: The request's headers one by one, as sent (environ key): werkzeug's environ joins a repeated header's values into
#: one with commas, where API Gateway keeps each (the last in ``headers``, all in ``multiValueHeaders``).
SENT_HEADERS = "spectra.sent_headers"


class _GatewayRequestHandler(WSGIRequestHandler):
    """The HTTP server's own refusals (a request line or header line past 64 KiB, more than 100 headers, a malformed
    request line), answered in the API's gateway response shape like every other answer of the gateway. A refusal
    of the HTTP version itself (505) is the client's fault too, and is a 400 here. Headers reach the event one by one
    (:data:`SENT_HEADERS`), named as werkzeug names them, those with an underscore left out as werkzeug leaves them."""

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        # without the white space around each value, which is not part of it (RFC 9110): the parser keeps a
        # trailing one, and a key sent with a trailing space was another key
        environ[SENT_HEADERS] = [
            (name.title(), value.strip(" \t")) for name, value in self.headers.items() if "_" not in name
        ]
        if isinstance(environ["wsgi.input"], DechunkedInput):
            environ["wsgi.input"] = _ChunkedBody(self.rfile)
        return environ

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        status = code if code < 500 else 400
        reason = message or self.responses.get(code, ("Bad Request",))[0]
        self.log_error("code %d, message %s", code, reason)
        response = self.server.app.refusal(status, reason)
        body = response.get_data()
        # a request line it could not read leaves the handler at HTTP/0.9, which has no status line or headers
        self.request_version = "HTTP/1.1"
        self.send_response(response.status_code)
        for key, value in response.headers.items():
            if key.lower() not in ("content-length", "connection"):
                self.send_header(key, value)
        self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _ChunkedBody(io.RawIOBase):
    """A ``Transfer-Encoding: chunked`` body read as RFC 9112 (7.1) frames it: a chunk size may carry extensions
    (``1a;name=value``), which are ignored, and the last chunk may be followed by trailer fields, which are read past.
    werkzeug's dev-server reader refused both as malformed, so legal requests got the 400 of an unreadable body.
    Malformed framing (a size that is not hex, data cut short, a missing line end) still raises ``OSError``, which
    werkzeug turns into ``ClientDisconnected``: that 400. So does framing that outweighs what it frames: extensions
    and trailers past 16 KiB in all, or a size of more than 32 characters (leading zeros), which let one-byte chunks
    carrying 60 KB extensions make the gateway read gigabytes for a body of a few hundred bytes (as Node.js's
    CVE-2024-22019)."""

    def __init__(self, rfile) -> None:
        self._rfile = rfile
        self._left = 0  # bytes of the current chunk still to read
        self._done = False
        self._extras = 0  # bytes of extensions and trailer lines read so far

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._left == 0 and not self._done:
            self._left = self._chunk_size()
            if self._left == 0:
                self._skip_trailers()
                self._done = True
        if self._done:
            return 0
        data = self._rfile.read(min(len(buffer), self._left))
        if not data:
            raise OSError("the chunked body ends inside a chunk")
        buffer[: len(data)] = data
        self._left -= len(data)
        if self._left == 0 and self._rfile.readline(2) not in (b"\r\n", b"\n"):
            raise OSError("a chunk's data is not followed by a line end")
        return len(data)

    def _line(self) -> bytes:
        line = self._rfile.readline(_CHUNK_LINE_MAX + 1)
        if not line.endswith(b"\n"):
            raise OSError("a chunk size or trailer line is cut short or too long")
        return line

    def _spend(self, extra: bytes) -> None:
        self._extras += len(extra)
        if self._extras > _EXTRAS_MAX:
            raise OSError("a chunked body's extensions and trailers are too long")

    def _chunk_size(self) -> int:
        size, _, extension = self._line().partition(b";")
        self._spend(extension)
        size = size.strip(b" \t\r\n")
        if not _HEX.fullmatch(size):
            raise OSError("a chunk size is not hexadecimal")
        return int(size, 16)

    def _skip_trailers(self) -> None:
        while (line := self._line()) not in (b"\r\n", b"\n"):
            self._spend(line)


#: bounds on what a chunked body's framing may spend beyond its data: extensions and trailer lines together (Node.js
#: allows 16 KiB of extensions), and a size's hex digits (a size of the payload limit takes 6; leading zeros aside)
_EXTRAS_MAX = 16384
_CHUNK_LINE_MAX = _EXTRAS_MAX + 64
_HEX = re.compile(rb"[0-9A-Fa-f]{1,32}")
_DIGITS = re.compile(r"[0-9]+")


def _single(items) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in items:
        out[key] = value  # API Gateway keeps the last value of a repeated header or query parameter
    return out


def _multi(items) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in items:
        out.setdefault(key, []).append(value)
    return out


def _request_body(request: Request, binary_media_types: list[str]) -> tuple[str | None, bool]:
    raw = request.get_data(cache=True)
    if len(raw) > MAX_PAYLOAD_BYTES:  # a chunked body, which announced no length (see _over_quota)
        raise RequestEntityTooLarge()
    if not raw:
        return None, False
    raw = _inflated(raw, request.headers.getlist("Content-Encoding"))
    content_type = (request.mimetype or "").lower()
    if any(_media_matches(pattern, content_type) for pattern in binary_media_types):
        return base64.b64encode(raw).decode(), True
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), True


class _NotInflatable(Exception):
    """A body in a coding API Gateway does not take, or that does not inflate as its coding says: its 415."""


class _InflatedPastTheEventQuota(Exception):
    """A body whose inflated bytes cannot fit Lambda's event quota: the invocation would be refused."""


def _inflated(raw: bytes, encodings: list[str]) -> bytes:
    """The body as the integration receives it: each coding of ``Content-Encoding`` undone, last applied first
    (``identity`` none), as API Gateway does. Inflating stops past :data:`LAMBDA_EVENT_MAX_BYTES`."""
    codings = [c.strip().lower() for value in encodings for c in value.split(",") if c.strip()]
    for coding in reversed(codings):
        if coding == "identity":
            continue
        try:
            if coding in ("gzip", "x-gzip"):
                with gzip.GzipFile(fileobj=io.BytesIO(raw)) as inflating:
                    raw = inflating.read(LAMBDA_EVENT_MAX_BYTES + 1)
            elif coding == "deflate":
                inflating = zlib.decompressobj()
                raw = inflating.decompress(raw, LAMBDA_EVENT_MAX_BYTES + 1)
                if not inflating.eof and len(raw) <= LAMBDA_EVENT_MAX_BYTES:
                    raise _NotInflatable(coding)
            else:
                raise _NotInflatable(coding)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            raise _NotInflatable(coding) from exc
        if len(raw) > LAMBDA_EVENT_MAX_BYTES:
            raise _InflatedPastTheEventQuota()
    return raw


def _media_matches(pattern: str, content_type: str) -> bool:
    pattern = pattern.replace("~1", "/").lower()  # SAM escapes "/" as "~1" in BinaryMediaTypes
    if pattern == "*/*":
        return True
    if pattern.endswith("/*"):
        return content_type.startswith(pattern[:-1])
    return pattern == content_type


def _message(status: int, message: str | None) -> Response:
    return Response(json.dumps({"message": message}), status=status, mimetype="application/json")


def _wants_binary(accept: str | None, binary_media_types: list[str]) -> bool:
    first = (accept or "").split(",")[0].split(";")[0].strip().lower()
    return any(_media_matches(pattern, first) for pattern in binary_media_types)


def _json_size(payload: Any) -> int:
    """Bytes of ``payload`` as compact JSON (what Lambda's payload quotas count); a payload JSON cannot carry is
    left to the invocation to refuse."""
    try:
        return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))
    except (TypeError, ValueError):
        return 0


def _proxy_response(
    result: Any, function_id: str, *, accept: str | None = None, binary_media_types: list[str] = ()
) -> Response | None:
    """Turn a Lambda proxy response into HTTP; None when it is malformed (API Gateway's 502)."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int | str):
        log.warning("%s returned a malformed proxy response: %r", function_id, result)
        return None
    body = result.get("body") or ""
    if not isinstance(body, str):
        log.warning("%s returned a non-string body", function_id)
        return None
    # API Gateway decodes a base64 body only for a client whose first Accept media type is a binary media type;
    # others get the base64 text as it is (AWS: "uses the first Accept header ... to determine if a response should
    # return binary media"), so clients of the CSV routes send Accept: text/csv.
    binary = result.get("isBase64Encoded") and _wants_binary(accept, binary_media_types)
    payload = base64.b64decode(body) if binary else body.encode("utf-8")
    headers = MultiDict()
    for key, value in (result.get("headers") or {}).items():
        headers[key] = str(value)
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers.setlist(key, [str(v) for v in values])
    response = Response(payload, status=int(result["statusCode"]))
    response.headers.remove("Content-Type")
    for key, value in headers.items(multi=True):
        response.headers.add(key, value)
    if "Content-Type" not in response.headers:
        response.headers["Content-Type"] = "application/json"  # API Gateway's default for proxy integrations
    return response
