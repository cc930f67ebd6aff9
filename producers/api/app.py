"""The REST API: submit queries, follow jobs, fetch results. Every route is one call into ``spectra.queries``."""

from __future__ import annotations

import json
import re
import time
from functools import lru_cache
from http import HTTPStatus
from importlib import resources
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer, Tag
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.shared.json_encoder import Encoder
from aws_lambda_powertools.utilities.typing import LambdaContext

from events import JobStatus
from producers.api import bulk, links, subscriptions
from producers.api.body import StrictBodyValidation
from producers.api.models import (
    ErrorResponse,
    IdempotencyKey,
    JobList,
    JobResults,
    JobView,
    QueryAnswer,
    QueryRequest,
    response_links,
)
from producers.api.proxy_event import ProxyEvent
from producers.api.subscription_models import CallbackView
from spectra import logs, queries
from spectra.errors import (
    JobNotFinished,
    SpectraError,
    StatementRejected,
    Throttled,
    TooManyWaits,
    Unavailable,
    passing_trouble,
)
from spectra.notify import service as notify
from spectra.notify.models import callback_id
from spectra.ports import Budget, get_ports
from spectra.tenants import Caller
from spectra.tokens import MAX_TOKEN_CHARS

logger = Logger()
logs.install(logger)  # tenant_id and job_id on every line of a request, the domain's included (spectra/logs.py)
tracer = Tracer()
metrics = Metrics()


def _json_answer(body: Any) -> str:
    """An answer's JSON in UTF-8 as it is: with json.dumps' default ``ensure_ascii`` every non-ASCII character was a
    6- or 12-byte escape, and an inline result measured at INLINE_MAX_BYTES reached the client up to three times as
    large. A lone surrogate (a subscription's filter value sent as ``\\ud800``, answered back) has no UTF-8: then
    the answer is escaped. Error answers (:func:`_error`) keep json.dumps' escapes: they may echo any input.
    U+0085, U+2028 and U+2029 stay escaped, as the README says JSON writes them and the result files do
    (``spectra/result_encoding.py``): inline rows holding them came out raw, so a reader splitting on every Unicode
    line break (Python's ``str.splitlines``) broke one answer into several lines. They can only stand inside a JSON
    string, so replacing them there is safe."""
    text = json.dumps(body, separators=(",", ":"), cls=Encoder, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(body, separators=(",", ":"), cls=Encoder)
    return text.translate(_LINE_BREAK_ESCAPES)


_LINE_BREAK_ESCAPES = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


#: What every answer says to caches and browsers, unless its route says otherwise (the Swagger UI page's no-cache).
#: ``no-store``: answers hold a tenant's rows, presigned URLs (bearer tokens for their life), upload URLs and the
#: webhook secret shown once, which neither a browser's disk cache nor a shared proxy or CDN may keep (OWASP REST
#: Security); nothing is stored, so no answer needs ``Vary`` on the credentials, and no 404, 405 or 410 is reused by
#: RFC 9111's heuristics. ``nosniff``: CSV pages, inline files and error messages carry the tenant's bytes, which a
#: browser must read as the type sent and never sniff into HTML or script.
ANSWER_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class _Resolver(APIGatewayRestResolver):
    """Powertools' resolver, whose every answer (routes, exception handlers, the 404/405 handler) carries
    :data:`ANSWER_HEADERS`: added here, after the answer is built, so no path to an answer can miss them."""

    @staticmethod
    def _compile_regex(rule: str, base_regex: str = "") -> re.Pattern[str]:
        """Powertools' route pattern, ended by ``\\Z`` rather than ``$``, which also matches before a last line feed:
        ``/v1/jobs/<id>%0A`` answered as the job, and ``/v1/jobs/%0A`` as the listing, where a path no route takes
        is 404 (found by the README review). ``base_regex``: Powertools' own, replaced."""
        return ApiGatewayResolver._compile_regex(rule, r"^{}/*\Z")  # APIGatewayRestResolver's ignores base_regex

    def resolve(self, event: Any, context: Any) -> dict[str, Any]:
        """The answer to ``event``: 400 for one API Gateway would not send (producers/api/proxy_event.py)."""
        try:
            request = ProxyEvent.checked(event)
        except RequestValidationError as exc:
            # an operator chasing a misconfigured integration (or a direct invocation) sees which parts were wrong
            parts = [error["loc"] for error in exc.errors()]
            logger.warning("refused an event API Gateway would not send", extra={"parts": parts})
            # through the handler every validation error takes; the event only chooses how headers are written
            answer = self._call_exception_handler(exc, route=None).build(self._to_proxy_event({}))
        else:
            # the caller our authorizer vouched for and the job the path names, on every line the request writes
            with logs.job_keys(**request.log_keys()), links.served_under(event):
                answer = super().resolve(event, context)
        headers = answer.setdefault("multiValueHeaders", {})
        given = {name.lower() for name in [*headers, *(answer.get("headers") or {})]}
        headers.update({name: [value] for name, value in ANSWER_HEADERS.items() if name.lower() not in given})
        return answer


app = _Resolver(enable_validation=True, serializer=_json_answer)
# Request bodies are read by our strict reader (producers/api/body.py) in place of Powertools' lenient one, inside
# the same validation step, so that no body can escape as an unhandled exception.
app._request_validation_middleware = StrictBodyValidation(lambda: get_ports(Budget.CLIENT).settings.api_max_body_bytes)
app.include_router(bulk.router)
app.include_router(subscriptions.router)


def _answer(description: str, model: Any = ErrorResponse, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"model": model}}, **extra}


# What each route may answer besides its success, as the OpenAPI document declares it. _GATEWAY is what any request
# may get: API Gateway's own answers (401, 429 and its size quotas), in the same shape through the template's
# GatewayResponses, and 500 when something on our side fails; _JSON_BODY what any route with a JSON body may get from
# the body reader. openapi_document() adds both to every operation (bulk routes included) that does not say more.
_INVALID = {400: _answer("Invalid request: parameters, JSON, SQL or page token")}
_GATEWAY = {
    401: _answer("Missing or invalid API key"),
    403: _answer("The caller's tenant has no usage plan (API Gateway's INVALID_API_KEY)"),
    413: _answer("The request is larger than API Gateway accepts (10 MB)"),
    414: _answer("The URL is longer than API Gateway accepts (8,192 characters)"),
    429: _answer(
        "Too many requests: retry after a pause",
        headers={"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}},
    ),
    431: _answer("The request line and headers are larger than API Gateway accepts (10,240 bytes)"),
    500: _answer("The request failed on our side; it is safe to retry"),
    502: _answer(
        "API Gateway could not hand the request to the function: a body past about 4.5 MB, which Lambda's 6 MiB "
        "event quota cannot carry once base64-encoded"
    ),
    503: _answer(
        "An AWS service behind the API is throttling or failing (`unavailable`): retry after a pause",
        headers={"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}},
    ),
    504: _answer(
        "No answer within API Gateway's 29 s (`gateway_error`): what the request did may have been done; a query "
        "sent with an `Idempotency-Key` is safe to send again"
    ),
}
_JSON_BODY = {
    413: _answer("The body is larger than 1 MiB"),
    415: _answer("The body is not application/json"),
}
_NOT_FOUND = {404: _answer("No such job for this tenant")}
_CONFLICT = {409: _answer("The job's state does not allow this")}
_RETRY_AFTER = {"Retry-After": {"description": "With job_not_finished: seconds to wait", "schema": {"type": "integer"}}}
_JOB_ID = Path(min_length=1, max_length=64, description="The job id returned by POST /v1/queries.")


def _caller() -> Caller:
    """The tenant our authorizer vouched for. API Gateway only invokes us after it allowed the request."""
    return Caller.from_authorizer_context(app.current_event.request_context.authorizer or {})


#: An error's message is cut to this many characters: one that quoted a request's input whole could pass Lambda's
#: 6 MiB answer and turn a 400 into API Gateway's 502 (the JSON review); the messages themselves bound what they quote
MESSAGE_MAX = 4000


def _error(status: int, code: str, message: str, details: Any = None, headers: dict | None = None) -> Response:
    if len(message) > MESSAGE_MAX:
        message = message[:MESSAGE_MAX] + " [...]"
    body = {"error": {"code": code, "message": message, "details": details}}
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body, default=str),
        headers=headers,
    )


@app.exception_handler(SpectraError)
def _domain_error(exc: SpectraError) -> Response:
    if not isinstance(exc, Unavailable | Throttled) and passing_trouble(exc):  # the Data API's 5xx, say
        return _domain_error(Unavailable("a service behind the API is busy or failing; retry after a pause"))
    if isinstance(exc, StatementRejected):
        # The API starts no statement: only a cancel (DELETE, PATCH Aborted) reaches the warehouse, and the Data API
        # refusing it (access denied, an internal error) is a failure on our side, not a 422 of the caller's
        logger.exception("the warehouse refused a request")
        return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "the request failed; it is safe to retry")
    if exc.status >= 500:
        logger.exception("request failed")
    retry_after = isinstance(exc, JobNotFinished | Throttled | TooManyWaits | Unavailable)
    headers = {"Retry-After": str(exc.retry_after)} if retry_after else None
    return _error(exc.status, exc.code, exc.message, exc.details, headers)


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_media(exc: RequestUnsupportedContentType) -> Response:
    return _error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send the body as application/json")


@app.exception_handler(ServiceError)
def _http_error(exc: ServiceError) -> Response:
    """Powertools' own HTTP errors keep their status, in our shape."""
    return _error(exc.status_code, HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_"), str(exc.msg))


@app.exception_handler(RecursionError)
def _too_deep(exc: RecursionError) -> Response:
    """Input nested deeper than some parser below us recurses (JSON, SQL ...): the request's fault, not ours."""
    logger.warning("request nested too deeply to process", extra={"error": type(exc).__name__})
    return _error(HTTPStatus.BAD_REQUEST, "invalid_request", "the request is nested too deeply to process")


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    """Anything unforeseen: logged with its stack, answered in the one error shape, details kept server-side. An AWS
    service still throttled, failing on its side or not answering after botocore's retries (DynamoDB, SQS, S3) is
    503 ``unavailable`` with ``Retry-After``: nothing is wrong on either side, and the same request may pass soon."""
    if passing_trouble(exc):
        return _domain_error(Unavailable("a service behind the API is busy or failing; retry after a pause"))
    logger.exception("unhandled error")
    return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "the request failed; it is safe to retry")


#: Validation errors an answer lists: a small body of many bad values (60,000 in a filter) made an answer of one
#: entry each, past Lambda's 6 MiB (a 502 for the caller's own mistake).
MAX_LISTED_ERRORS = 20
#: A location's parts are cut to this many characters: a bad key may be as long as the body.
MAX_LOCATION_CHARS = 100


@app.exception_handler(RequestValidationError)
def _validation_error(exc: RequestValidationError) -> Response:
    errors = exc.errors()
    details = [
        {"loc": [_cut(part) for part in err.get("loc", [])], "msg": err.get("msg"), "type": err.get("type")}
        for err in errors[:MAX_LISTED_ERRORS]
    ]
    if len(errors) > MAX_LISTED_ERRORS:
        more = len(errors) - MAX_LISTED_ERRORS
        details.append({"loc": [], "msg": f"and {more} more errors not listed", "type": "more_errors"})
    if any(err.get("type") == "json_invalid" for err in errors):
        return _error(HTTPStatus.BAD_REQUEST, "invalid_json", "the body is not valid JSON", details)
    return _error(HTTPStatus.BAD_REQUEST, "invalid_request", "the request is not valid", details)


def _cut(part: Any) -> Any:
    return part[:MAX_LOCATION_CHARS] + " [...]" if isinstance(part, str) and len(part) > MAX_LOCATION_CHARS else part


@app.not_found
def _not_found(exc: Exception) -> Response:
    """An unknown path is 404; a known path with another method is 405 with ``Allow``. The template routes every
    method of each path here (its ``ANY`` events), so API Gateway gives the same answers. A path whose parameter
    holds characters no route accepts (control characters, say) names no job: 404."""
    allowed = _allowed_methods(app.current_event.path)
    method = app.current_event.http_method.upper()
    if allowed and method not in allowed:
        return _error(
            HTTPStatus.METHOD_NOT_ALLOWED,
            "method_not_allowed",
            f"{method[:16]} is not allowed here; use {', '.join(allowed)}",
            details={"allow": list(allowed)},
            headers={"Allow": ", ".join(allowed)},
        )
    return _error(HTTPStatus.NOT_FOUND, "not_found", "no such route")


def _allowed_methods(path: str) -> tuple[str, ...]:
    return next((methods for pattern, methods in _routes() if pattern.fullmatch(path)), ())


#: Paths the document leaves out of itself, with their methods.
_UNDOCUMENTED_PATHS = {"/v1/openapi.json": {"get": {}}, "/v1/docs": {"get": {}}}


@lru_cache(maxsize=1)
def _routes() -> list[tuple[re.Pattern[str], tuple[str, ...]]]:
    """Each path as a pattern, with the methods it serves (read from the OpenAPI document once)."""
    out = []
    for template, operations in {**openapi_document()["paths"], **_UNDOCUMENTED_PATHS}.items():
        # trailing slashes as the router takes them (``/*``): API Gateway hands ``/v1/jobs/`` to the ``/v1/jobs``
        # resource with the slash kept, where a wrong method was a 404 rather than 405 (the HTTP edge review)
        pattern = re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "/*")
        out.append((pattern, tuple(sorted(m.upper() for m in operations if m.upper() in _HTTP_METHODS))))
    return out


_HTTP_METHODS = {"GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"}


_LOCATION = {"Location": {"description": "The job's URL", "schema": {"type": "string"}}}
# Lets a client (and the API fuzzer) follow a new job: its id is the job_id of the answer.
_JOB_LINKS = response_links(
    "job_id",
    "job_id",
    {
        "GetJob": "get_job_v1_jobs__job_id__get",
        "GetResults": "get_results_v1_jobs__job_id__results_get",
        "CancelJob": "cancel_v1_jobs__job_id__delete",
    },
)


@app.post(
    "/v1/queries",
    status_code=202,
    summary="Run a query",
    description="Queue one SQL statement as a job of the caller's tenant; it runs as the tenant's database "
    "identity. With `wait_timeout`, wait up to that many seconds for it to end: a job that ends in time is answered "
    "200 with its result (rows inline when small) in this one call. Otherwise 202: follow `links.self`.",
    responses={
        202: _answer(
            "Job queued (or, with wait_timeout, still running when the wait ended; with on_wait_timeout CANCEL, "
            "asked to stop)",
            QueryAnswer,
            headers=_LOCATION,
            links=_JOB_LINKS,
        ),
        200: _answer(
            "The job ended within wait_timeout (COMPLETED with its result, FAILED with the database's message, or "
            "CANCELLED), or the job this Idempotency-Key already created",
            QueryAnswer,
            headers=_LOCATION,
            links=_JOB_LINKS,
        ),
        400: _answer("Invalid request: fields, JSON, SQL, or parameters that do not match the SQL's placeholders"),
        409: _answer("The Idempotency-Key was used for a different request"),
        413: _answer(
            "The body (over 1 MiB), the SQL (over 100 KB), one parameter value (over 65,535 bytes) or the "
            "parameters (over 64 KB) are too large"
        ),
        429: _answer(
            "Too many requests (API Gateway's throttled or quota_exceeded), or, with wait_timeout, the tenant has "
            "its most one-call queries waiting already (too_many_waits; no job was made): retry after a pause",
            headers={
                "Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}
            },
        ),
    },
    tags=["queries"],
)
def submit(
    request: Annotated[QueryRequest, Body()],
    idempotency_key: IdempotencyKey = None,
) -> Response[QueryAnswer]:
    ask = queries.QueryAsk(
        sql=request.sql,
        parameters=request.parameters,
        fmt=request.format,
        delivery=request.delivery,
        row_limit=request.row_limit,
        idempotency_key=idempotency_key,
        callback=notify.new_callback(request.callback_url) if request.callback_url else None,
        wait_timeout=request.wait_timeout,
        on_wait_timeout=request.on_wait_timeout,
    )
    answered = queries.answer_query(
        get_ports(Budget.CLIENT),
        _caller(),
        ask,
        correlation_id=app.current_event.request_context.request_id,
        seconds_left=_seconds_left,
        wait_seconds=_wait_seconds,
        on_job=_count_job,
    )
    job, created = answered.job, answered.created
    view = QueryAnswer.of(job)
    view.cancel_error = answered.cancel_error
    if answered.results is not None:
        view.results = JobResults.model_validate(answered.results)
    if answered.callback is not None:
        stored = answered.callback
        view.callback = CallbackView(subscription_id=callback_id(job.job_id), url=stored.url, secret=stored.secret)
    return Response(
        status_code=HTTPStatus.ACCEPTED if created and not job.status.is_terminal else HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=view,
        headers={"Location": view.links.self},
    )


def _count_job(created: bool) -> None:
    metrics.add_metric(name="JobsSubmitted" if created else "JobsReplayed", unit="Count", value=1)


#: What a wait leaves of the function's time for the rest of the request (reading the result, answering).
_WAIT_MARGIN_SECONDS = 3
#: API Gateway's integration timeout: it answers 504 this long after it received the request, whatever the function.
_GATEWAY_SECONDS = 29


def _remaining_seconds() -> float | None:
    """How long this request can still run: the function's remaining time (its timeout ends it), and no longer than
    API Gateway still waits, counted from the request's ``requestTimeEpoch``. A cold start's initialisation is part
    of API Gateway's 29 s but not of the function's Timeout, which starts with the handler, so the function's own
    clock alone let a 25 s wait on a new environment answer after API Gateway's 504. None outside Lambda."""
    context = getattr(app, "lambda_context", None)
    if context is None:
        return None
    left = context.get_remaining_time_in_millis() / 1000
    received = (app.current_event.raw_event.get("requestContext") or {}).get("requestTimeEpoch")
    if isinstance(received, int | float) and received > 0:
        left = min(left, _GATEWAY_SECONDS - (time.time() - received / 1000))
    return left


def _seconds_left(wait_timeout: int) -> float:
    """How long this request can still run (:func:`_remaining_seconds`), else the wait and its margin."""
    left = _remaining_seconds()
    return wait_timeout + _WAIT_MARGIN_SECONDS if left is None else left


def _wait_seconds(wait_timeout: int) -> float:
    """The wait asked for, within what the request has left less the answer's margin."""
    left = _remaining_seconds()
    if left is None:
        return wait_timeout
    return max(0.0, min(wait_timeout, left - _WAIT_MARGIN_SECONDS))


@app.get(
    "/v1/jobs/<job_id>",
    responses={200: _answer("The job", JobView), **_INVALID, **_NOT_FOUND},
    tags=["jobs"],
    summary="Get a job",
    description="The job's status (QUEUED, SUBMITTED, then COMPLETED, FAILED or CANCELLED), timings, row count "
    "and, for a failed job, the database's message.",
)
def get_job(job_id: Annotated[str, _JOB_ID]) -> JobView:
    return JobView.of(queries.get_job(get_ports(Budget.CLIENT), _caller(), job_id))


@app.get(
    "/v1/jobs",
    responses={200: _answer("One page of the caller's jobs", JobList), **_INVALID},
    tags=["jobs"],
    summary="List jobs",
    description="The caller's query jobs, newest first, optionally of one status. A page may be short (even empty) "
    "and still have a `next_token`: follow it, with the same status and limit, until it is null.",
)
def list_jobs(
    status: Annotated[JobStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_TOKEN_CHARS,
            description="From the previous page, with the same status and limit; opaque and signed.",
        ),
    ] = None,
) -> JobList:
    page = queries.list_jobs(get_ports(Budget.CLIENT), _caller(), status=status, limit=limit, next_token=next_token)
    return JobList(jobs=[JobView.of(job) for job in page.jobs], next_token=page.next_token)


@app.get(
    "/v1/jobs/<job_id>/results",
    responses={
        200: _answer("The result", JobResults),
        **_INVALID,
        **_NOT_FOUND,
        409: _answer(
            "The job has not ended (job_not_finished, with Retry-After), or it ended FAILED or CANCELLED (conflict)",
            headers=_RETRY_AFTER,
        ),
        410: _answer("The result is past its retention (ResultRetentionDays): run the query again"),
    },
    tags=["jobs"],
    summary="Get a job's result",
    description="The columns, the row count, the rows themselves when the result is small, and short-lived "
    "presigned URLs of the result files.",
)
def get_results(job_id: Annotated[str, _JOB_ID]) -> JobResults:
    return JobResults.model_validate(queries.job_results(get_ports(Budget.CLIENT), _caller(), job_id))


@app.delete(
    "/v1/jobs/<job_id>",
    status_code=202,
    responses={
        202: _answer("Cancel requested: the job ends CANCELLED when its statement stops", JobView),
        200: _answer(
            "The job is CANCELLED already (it was queued, or its statement stopped before this answer)", JobView
        ),
        **_INVALID,
        **_NOT_FOUND,
        **_CONFLICT,
    },
    tags=["jobs"],
    summary="Cancel a job",
    description="A queued job ends CANCELLED at once (200). A running one, or a queued one that may write and is "
    "being started, is asked to stop (202, `cancel_requested`) and ends CANCELLED when the warehouse aborts its "
    "statement (200 if that happened before the answer). A finished job, or one whose statement has already ended "
    "(it ends with that outcome): 409.",
)
def cancel(job_id: Annotated[str, _JOB_ID]) -> Response[JobView]:
    job = queries.cancel_job(get_ports(Budget.CLIENT), _caller(), job_id)
    status = HTTPStatus.OK if job.status.is_terminal else HTTPStatus.ACCEPTED
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=JobView.of(job))


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=json.dumps(_served_document()))


def _served_document() -> dict:
    """The OpenAPI document with the base its operations are served under: the stage on an execute-api URL (the
    template's ApiUrl), the root elsewhere. Its ``servers`` said ``/`` everywhere, which a client resolves against
    the document's own URL: a client generated from ``<ApiUrl>/v1/openapi.json`` called the API without its stage."""
    return {**openapi_document(), "servers": [{"url": links.api_path("") or "/"}]}


@app.get("/v1/docs", include_in_schema=False)
def docs() -> Response[str]:
    """Swagger UI over the served document, without a key (calls made from it need one: Authorize with the bearer
    key). Its script and styles are the ones Powertools ships, inlined in the page, so it needs no CDN."""
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

    document = _served_document()  # "Try it out" calls the API where this page is
    if (app.current_event.query_string_parameters or {}).get("format") == "json":
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=json.dumps(document))
    script, styles = _swagger_assets()
    page = generate_swagger_html(json.dumps(document).replace("</", "<\\/"), script, styles, "", None, False)
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=page, headers=headers)


@lru_cache(maxsize=1)
def _swagger_assets() -> tuple[str, str]:
    folder = resources.files("aws_lambda_powertools.event_handler.openapi.swagger_ui")
    return (
        (folder / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (folder / "swagger-ui.min.css").read_text(encoding="utf-8"),
    )


#: The usual code of each error status, for the document's examples (the description says which others occur).
_ERROR_CODES = {
    "400": "invalid_request",
    "401": "unauthorized",
    "403": "forbidden",
    "404": "not_found",
    "409": "conflict",
    "410": "gone",
    "413": "payload_too_large",
    "414": "request_error",
    "415": "unsupported_media_type",
    "422": "record_too_large",
    "429": "throttled",
    "431": "request_error",
    "500": "internal_error",
    "502": "gateway_error",  # the template's DEFAULT_5XX
    "503": "unavailable",
    "504": "gateway_error",
}


def _error_content() -> dict[str, Any]:
    """A content of its own for each answer: the example written into it below is that status's."""
    return {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}


def _is_validation_answer(answer: dict | None) -> bool:
    schema = ((answer or {}).get("content") or {}).get("application/json", {}).get("schema") or {}
    return schema.get("$ref") == "#/components/schemas/HTTPValidationError"


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The served OpenAPI document: generated from the routes and models, with the bearer key declared and without
    Powertools' 422 answers (a request that fails validation gets 400 here, in the one error shape; a route's own
    422, the bulk query results' ``record_too_large``, stays) or bodies on answers that have none (204, 303)."""
    document = json.loads(
        app.get_openapi_json_schema(
            title="Redshift Spectra",
            version="1",
            summary="Amazon Redshift as a multi-tenant data service",
            description="SQL over REST as jobs (or one call, with `wait_timeout`), bulk loads and exports with "
            "Salesforce Bulk API 2.0's workflow, and webhooks of job events. Every call runs as the caller's "
            "tenant: send `Authorization: Bearer <API key or JWT>` (Authorize, here). Errors have one shape, "
            '`{"error": {"code", "message", "details"}}`.',
            tags=[
                Tag(name="queries", description="Run SQL as the caller's tenant"),
                Tag(name="jobs", description="Follow, list and cancel query jobs; fetch their results"),
                Tag(name="bulk", description="Bulk loads and exports (Salesforce Bulk API 2.0's workflow)"),
                Tag(name="subscriptions", description="Webhooks of the caller's job events"),
            ],
            security_schemes={"apiKey": HTTPBearer(description="Authorization: Bearer <api key>")},
            security=[{"apiKey": []}],
        )
    )
    for operations in document["paths"].values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if _is_validation_answer(responses.get("422")):
                del responses["422"]  # Powertools' own: a request that fails validation is a 400 here
            for empty in ("204", "303"):  # no body: Powertools gives every answer a content of its own
                if empty in responses:
                    responses[empty].pop("content", None)
            common = {**_GATEWAY, **(_JSON_BODY if "requestBody" in operation else {})}
            for status, answer in common.items():
                extra = {"headers": answer["headers"]} if "headers" in answer else {}
                responses.setdefault(
                    str(status), {"description": answer["description"], "content": _error_content(), **extra}
                )
            for status, answer in responses.items():
                if status in _ERROR_CODES and "application/json" in answer.get("content", {}):
                    error = {"code": _ERROR_CODES[status], "message": answer["description"], "details": None}
                    answer["content"]["application/json"]["example"] = {"error": error}
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(unused, None)
    return _whole_bounds(document)


#: The largest bound the API's models set, a BIGINT's (``row_limit``): the one past 2^53, where a float is not exact.
_BIGINT_MAX = 2**63 - 1


def _whole_bounds(schema: Any) -> Any:
    """The document with each integer's ``minimum`` and ``maximum`` whole numbers: Powertools' OpenAPI model keeps
    them as floats, so ``row_limit``'s 2^63 - 1 came out 2^63, which a client validating against the document sent
    and the API refused (the HTTP edge review), and the others read ``1.0``, ``25.0``. The one bound past 2^53 the
    models set is a BIGINT's, put back exactly."""
    if isinstance(schema, list):
        return [_whole_bounds(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    fixed = {key: _whole_bounds(value) for key, value in schema.items()}
    if fixed.get("type") == "integer":
        for bound in ("minimum", "maximum"):
            value = fixed.get(bound)
            if isinstance(value, float) and value.is_integer():
                fixed[bound] = _BIGINT_MAX if value == float(_BIGINT_MAX) else int(value)
    return fixed


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: Any, context: LambdaContext) -> dict:
    return app.resolve(event, context)
