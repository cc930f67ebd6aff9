"""The REST API: submit queries, follow jobs, fetch results. Every route is one call into ``spectra.queries``."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from events import JobStatus
from producers.api import bulk
from producers.api.models import ErrorResponse, JobList, JobResults, JobView, QueryRequest
from spectra import queries
from spectra.errors import JobNotFinished, SpectraError
from spectra.ports import get_ports
from spectra.tenants import Caller

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayRestResolver(enable_validation=True)
app.include_router(bulk.router)

_ERRORS = {
    400: {"description": "Invalid request", "content": {"application/json": {"model": ErrorResponse}}},
    401: {"description": "Missing or invalid API key"},
    404: {"description": "No such job for this tenant", "content": {"application/json": {"model": ErrorResponse}}},
    409: {
        "description": "The job's state does not allow this",
        "content": {"application/json": {"model": ErrorResponse}},
    },
}


def _caller() -> Caller:
    """The tenant our authorizer vouched for. API Gateway only invokes us after it allowed the request."""
    return Caller.from_authorizer_context(app.current_event.request_context.authorizer or {})


def _error(status: int, code: str, message: str, details: Any = None, headers: dict | None = None) -> Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body, default=str),
        headers=headers,
    )


@app.exception_handler(SpectraError)
def _domain_error(exc: SpectraError) -> Response:
    if exc.status >= 500:
        logger.exception("request failed")
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, JobNotFinished) else None
    return _error(exc.status, exc.code, exc.message, exc.details, headers)


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_media(exc: RequestUnsupportedContentType) -> Response:
    return _error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send the body as application/json")


@app.exception_handler(ServiceError)
def _http_error(exc: ServiceError) -> Response:
    """Powertools' own HTTP errors keep their status, in our shape."""
    return _error(exc.status_code, HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_"), str(exc.msg))


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    """Anything unforeseen: logged with its stack, answered in the one error shape, details kept server-side."""
    logger.exception("unhandled error")
    return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "the request failed; it is safe to retry")


@app.exception_handler(RequestValidationError)
def _validation_error(exc: RequestValidationError) -> Response:
    details = [
        {"loc": list(err.get("loc", [])), "msg": err.get("msg"), "type": err.get("type")} for err in exc.errors()
    ]
    if any(err["type"] == "json_invalid" for err in details):
        return _error(HTTPStatus.BAD_REQUEST, "invalid_json", "the body is not valid JSON", details)
    return _error(HTTPStatus.BAD_REQUEST, "invalid_request", "the request is not valid", details)


@app.not_found
def _not_found(exc: Exception) -> Response:
    return _error(HTTPStatus.NOT_FOUND, "not_found", "no such route")


@app.post("/v1/queries", status_code=202, responses={202: {"description": "Job queued"}, **_ERRORS}, tags=["queries"])
def submit(
    request: Annotated[QueryRequest, Body()],
    idempotency_key: Annotated[str | None, Header(alias="idempotency-key", max_length=255)] = None,
) -> Response[JobView]:
    job, created = queries.submit_query(
        get_ports(),
        _caller(),
        sql=request.sql,
        parameters=request.parameters,
        fmt=request.format,
        delivery=request.delivery,
        row_limit=request.row_limit,
        idempotency_key=idempotency_key,
        correlation_id=app.current_event.request_context.request_id,
    )
    metrics.add_metric(name="JobsSubmitted" if created else "JobsReplayed", unit="Count", value=1)
    view = JobView.of(job)
    return Response(
        status_code=HTTPStatus.ACCEPTED if created else HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=view,
        headers={"Location": view.links.self},
    )


@app.get("/v1/jobs/<job_id>", responses=_ERRORS, tags=["jobs"])
def get_job(job_id: Annotated[str, Path(max_length=64)]) -> JobView:
    return JobView.of(queries.get_job(get_ports(), _caller(), job_id))


@app.get("/v1/jobs", responses=_ERRORS, tags=["jobs"])
def list_jobs(
    status: Annotated[JobStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> JobList:
    page = queries.list_jobs(get_ports(), _caller(), status=status, limit=limit, next_token=next_token)
    return JobList(jobs=[JobView.of(job) for job in page.jobs], next_token=page.next_token)


@app.get("/v1/jobs/<job_id>/results", responses=_ERRORS, tags=["jobs"])
def get_results(job_id: Annotated[str, Path(max_length=64)]) -> JobResults:
    return JobResults.model_validate(queries.job_results(get_ports(), _caller(), job_id))


@app.delete("/v1/jobs/<job_id>", status_code=202, responses=_ERRORS, tags=["jobs"])
def cancel(job_id: Annotated[str, Path(max_length=64)]) -> Response[JobView]:
    job = queries.cancel_job(get_ports(), _caller(), job_id)
    status = HTTPStatus.OK if job.status.is_terminal else HTTPStatus.ACCEPTED
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=JobView.of(job))


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=app.get_openapi_json_schema(title="Redshift Spectra", version="1"),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
