"""The Bulk API routes (Salesforce Bulk API 2.0's workflow under /v1/bulk). Every route is one call into
``spectra.bulk.service``; the app (producers/api/app.py) includes this router and maps errors in one place."""

from __future__ import annotations

import base64
import urllib.parse
from http import HTTPStatus
from typing import Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from producers.api.bulk_models import (
    BulkJobInfo,
    BulkJobList,
    ChangeBulkJobState,
    CreateBulkJob,
    DropUploadRequest,
    UploadUrl,
    UploadUrlRequest,
)
from producers.api.models import ErrorResponse
from spectra.bulk import service
from spectra.bulk.models import BulkOperation, BulkState
from spectra.errors import InvalidRequest, UnsupportedMediaType
from spectra.ports import get_ports
from spectra.tenants import Caller

router = Router()

_ERROR = {"content": {"application/json": {"model": ErrorResponse}}}
_JOB_ERRORS = {
    400: {"description": "Invalid request", **_ERROR},
    401: {"description": "Missing or invalid credentials", **_ERROR},
    404: {"description": "No such bulk job for this tenant", **_ERROR},
    409: {"description": "The job's state does not allow this (job_not_finished comes with Retry-After)", **_ERROR},
}
_CSV = {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}}


def _ok(description: str, model) -> dict:
    return {"description": description, "content": {"application/json": {"model": model}}}


JobId = Annotated[str, Path(max_length=64)]


def _caller() -> Caller:
    return Caller.from_authorizer_context(router.current_event.request_context.authorizer or {})


def _info(job, status: int = HTTPStatus.OK) -> Response[BulkJobInfo]:
    view = BulkJobInfo.of(job)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=view)


@router.post("/v1/bulk/jobs", status_code=201, responses={201: _ok("Job created", BulkJobInfo), **_JOB_ERRORS})
def create_job(request: Annotated[CreateBulkJob, Body()]) -> Response[BulkJobInfo]:
    spec = service.NewJob(
        object=request.object,
        operation=request.operation,
        external_id_field=request.externalIdFieldName,
        column_delimiter=request.columnDelimiter,
        line_ending=request.lineEnding,
        content_type=request.contentType,
        query=request.query,
    )
    job = service.create_job(
        get_ports(), _caller(), spec, correlation_id=router.current_event.request_context.request_id
    )
    response = _info(job, HTTPStatus.CREATED)
    response.headers["Location"] = f"/v1/bulk/jobs/{job.job_id}"
    return response


@router.get("/v1/bulk/jobs", responses={200: _ok("One page of the caller's bulk jobs", BulkJobList), **_JOB_ERRORS})
def list_jobs(
    state: Annotated[BulkState | None, Query()] = None,
    operation: Annotated[BulkOperation | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> BulkJobList:
    page = service.list_jobs(
        get_ports(), _caller(), state=state, operation=operation, limit=limit, next_token=next_token
    )
    next_url = None
    if page.next_token:
        params = {"limit": limit, "next_token": page.next_token}
        params.update({k: v.value for k, v in (("state", state), ("operation", operation)) if v is not None})
        next_url = "/v1/bulk/jobs?" + urllib.parse.urlencode(params)
    return BulkJobList(done=next_url is None, records=[BulkJobInfo.of(j) for j in page.jobs], nextRecordsUrl=next_url)


@router.get("/v1/bulk/jobs/<job_id>", responses={200: _ok("The bulk job", BulkJobInfo), **_JOB_ERRORS})
def get_job(job_id: JobId) -> BulkJobInfo:
    return BulkJobInfo.of(service.get_job(get_ports(), _caller(), job_id))


@router.patch("/v1/bulk/jobs/<job_id>", responses={200: _ok("The bulk job", BulkJobInfo), **_JOB_ERRORS})
def change_state(job_id: JobId, request: Annotated[ChangeBulkJobState, Body()]) -> BulkJobInfo:
    return BulkJobInfo.of(service.change_state(get_ports(), _caller(), job_id, request.state))


@router.put(
    "/v1/bulk/jobs/<job_id>/batches",
    status_code=201,
    responses={
        201: {"description": "Batch stored (an empty body)", "content": {"text/plain": {"schema": {"type": "string"}}}},
        413: {"description": "Body too large", **_ERROR},
        415: {"description": "The batch is not text/csv (gzip or not)", **_ERROR},
        **_JOB_ERRORS,
    },
    # the body is read as bytes, not through a model, so the document states it here
    openapi_extensions={
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}},
    },
)
def upload_batch(job_id: JobId) -> Response[str]:
    """A CSV body (``Content-Type: text/csv``; gzip with ``Content-Encoding: gzip``). Larger files: POST .../uploads."""
    event = router.current_event
    media = (event.headers.get("content-type") or event.headers.get("Content-Type") or "").split(";")[0].strip()
    if media.lower() not in ("text/csv", "application/octet-stream"):
        raise UnsupportedMediaType("send the batch as text/csv")
    encoding = (event.headers.get("content-encoding") or event.headers.get("Content-Encoding") or "").lower()
    if encoding not in ("", "identity", "gzip"):
        raise UnsupportedMediaType("Content-Encoding must be gzip or none")
    raw = event.body or ""
    body = base64.b64decode(raw) if event.is_base64_encoded else raw.encode("utf-8", errors="surrogateescape")
    service.upload_batch(get_ports(), _caller(), job_id, body, gzip=encoding == "gzip")
    return Response(status_code=HTTPStatus.CREATED, content_type=content_types.TEXT_PLAIN, body="")


@router.post("/v1/bulk/jobs/<job_id>/uploads", responses={200: _ok("Where to PUT the batch", UploadUrl), **_JOB_ERRORS})
def upload_url(job_id: JobId, request: Annotated[UploadUrlRequest, Body()]) -> UploadUrl:
    """A presigned URL to PUT one more (large) batch of an Open job straight to S3."""
    return UploadUrl.model_validate(service.upload_url(get_ports(), _caller(), job_id, gzip=request.gzip))


@router.post("/v1/bulk/uploads", responses={200: _ok("Where to PUT the file", UploadUrl), **_JOB_ERRORS})
def drop_upload_url(request: Annotated[DropUploadRequest, Body()]) -> UploadUrl:
    """A presigned URL to drop a file at ``<tenant>/<object>/<filename>`` in the ingest bucket; the options given
    become object metadata (send the returned headers with the PUT)."""
    metadata = {
        name.lower(): value.value if hasattr(value, "value") else value
        for name, value in request.model_dump(
            include={"operation", "externalIdFieldName", "columnDelimiter", "lineEnding"}
        ).items()
        if value is not None
    }
    answer = service.drop_upload_url(
        get_ports(),
        _caller(),
        object_name=request.object,
        filename=request.filename,
        gzip=request.gzip,
        metadata=metadata,
    )
    return UploadUrl.model_validate(answer)


def _result_file(job_id: str, kind: str) -> Response:
    """Small files inline (bytes: base64 on the wire, so rows sent with bytes that are not UTF-8 come back as sent);
    large ones by a redirect to a short-lived presigned URL."""
    result = service.job_results(get_ports(), _caller(), job_id, kind)
    if result.url is not None:
        return Response(status_code=HTTPStatus.SEE_OTHER, body=b"", headers={"Location": result.url})
    return Response(status_code=HTTPStatus.OK, content_type="text/csv", body=result.body or b"")


_RESULT_RESPONSES = {200: _CSV, 303: {"description": "Large file: follow Location (a presigned URL)"}, **_JOB_ERRORS}


@router.get("/v1/bulk/jobs/<job_id>/successfulResults", responses=_RESULT_RESPONSES)
def successful_results(job_id: JobId):  # bytes, not validated as text
    return _result_file(job_id, "successfulResults")


@router.get("/v1/bulk/jobs/<job_id>/failedResults", responses=_RESULT_RESPONSES)
def failed_results(job_id: JobId):  # bytes, not validated as text
    return _result_file(job_id, "failedResults")


@router.get("/v1/bulk/jobs/<job_id>/unprocessedrecords", responses=_RESULT_RESPONSES)
def unprocessed_records(job_id: JobId):  # bytes, not validated as text
    return _result_file(job_id, "unprocessedrecords")


@router.get("/v1/bulk/jobs/<job_id>/results", responses={200: _CSV, **_JOB_ERRORS})
def query_results(
    job_id: JobId,
    locator: Annotated[str | None, Query(max_length=256)] = None,
    maxRecords: Annotated[int | None, Query(ge=1)] = None,
):  # bytes, not validated as text
    """A page of a query job's rows: CSV with the header line; ``Sforce-Locator`` names the next page (``null``
    after the last), ``Sforce-NumberOfRecords`` counts this one's records."""
    if locator == "null":
        raise InvalidRequest("locator null means there are no more pages")
    page = service.query_results(get_ports(), _caller(), job_id, locator=locator, max_records=maxRecords)
    headers = {"Sforce-Locator": page.locator or "null", "Sforce-NumberOfRecords": str(page.records)}
    return Response(status_code=HTTPStatus.OK, content_type="text/csv", body=page.body, headers=headers)
