"""The Bulk API routes (Salesforce Bulk API 2.0's workflow under /v1/bulk). Every route is one call into
``spectra.bulk`` (``service`` for jobs, ``uploads`` for batches and upload URLs, ``downloads`` for result files and
pages); the app (producers/api/app.py) includes this router and maps errors in one place."""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from http import HTTPStatus
from typing import Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from producers.api.body import UTF8_CHARSETS, media_type_of
from producers.api.bulk_models import (
    BulkJobInfo,
    BulkJobList,
    ChangeBulkJobState,
    CreateBulkJob,
    DropUploadRequest,
    UploadUrl,
    UploadUrlRequest,
)
from producers.api.links import api_path
from producers.api.models import ErrorResponse, IdempotencyKey, response_links
from spectra.bulk import downloads, service, uploads
from spectra.bulk.files import CSV_CONTENT_TYPE, GZIP_MAGIC
from spectra.bulk.jsonfiles import JSON_MEDIA_TYPES
from spectra.bulk.models import BulkOperation, BulkState, JobType
from spectra.errors import InvalidRequest, UnsupportedMediaType
from spectra.ports import Budget, get_ports
from spectra.tenants import Caller
from spectra.tokens import MAX_TOKEN_CHARS

router = Router()

_ERROR = {"content": {"application/json": {"model": ErrorResponse}}}
_RETRY_AFTER = {"Retry-After": {"description": "With job_not_finished: seconds to wait", "schema": {"type": "integer"}}}
#: What the routes answer besides their success, each route naming the ones it really gives (app.py's
#: openapi_document() adds the gateway's answers, and 413/415 where a JSON body is read, to every operation).
_ANSWERS = {
    400: {"description": "Invalid request: fields, SQL, page token or locator", **_ERROR},
    404: {"description": "No such bulk job for this tenant (or no such result file)", **_ERROR},
    409: {"description": "The job's state does not allow this", **_ERROR},
    "409-key": {"description": "The Idempotency-Key was used for a different request", **_ERROR},
    "409-results": {
        "description": "The job has not ended or its result files are still being written (job_not_finished, with "
        "Retry-After), or it ended without results (conflict)",
        "headers": _RETRY_AFTER,
        **_ERROR,
    },
    422: {
        "description": "A record of the results is too large for any page (record_too_large: its details give the "
        "locator of the record after it)",
        **_ERROR,
    },
    410: {
        "description": "The job's result files were given up (results_unavailable; its errorMessage says why), or "
        "expired ResultRetentionDays after they were written (gone)",
        **_ERROR,
    },
}


def _errors(*statuses: int | str) -> dict:
    return {int(str(status)[:3]): _ANSWERS[status] for status in statuses}


_JOB_ERRORS = _errors(400, 404)
_CSV = {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}}
_LOCATION = {"Location": {"description": "The new job's URL", "schema": {"type": "string"}}}
# Lets a client (and the API fuzzer's stateful phase) follow a new bulk job: its id is the id of the answer.
_JOB_LINKS = response_links(
    "job_id",
    "id",
    {
        "GetBulkJob": "get_job_v1_bulk_jobs__job_id__get",
        "ChangeBulkJobState": "change_state_v1_bulk_jobs__job_id__patch",
        "UploadBatch": "upload_batch_v1_bulk_jobs__job_id__batches_put",
        "GetUploadUrl": "upload_url_v1_bulk_jobs__job_id__uploads_post",
        "GetSuccessfulResults": "successful_results_v1_bulk_jobs__job_id__successfulResults_get",
        "GetFailedResults": "failed_results_v1_bulk_jobs__job_id__failedResults_get",
        "GetUnprocessedRecords": "unprocessed_records_v1_bulk_jobs__job_id__unprocessedrecords_get",
        "GetQueryResults": "query_results_v1_bulk_jobs__job_id__results_get",
    },
)


def _ok(description: str, model) -> dict:
    return {"description": description, "content": {"application/json": {"model": model}}}


JobId = Annotated[str, Path(max_length=64)]


def _caller() -> Caller:
    return Caller.from_authorizer_context(router.current_event.request_context.authorizer or {})


def _info(job, status: int = HTTPStatus.OK) -> Response[BulkJobInfo]:
    view = BulkJobInfo.of(job)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=view)


@router.post(
    "/v1/bulk/jobs",
    tags=["bulk"],
    status_code=201,
    responses={
        201: {**_ok("Job created", BulkJobInfo), "headers": _LOCATION, "links": _JOB_LINKS},
        200: {**_ok("The job this Idempotency-Key already created, as it is now", BulkJobInfo), "headers": _LOCATION},
        **_errors(400, "409-key"),
    },
    summary="Create a bulk job",
    description="An ingest job (insert, update, upsert, delete into `object`) starts `Open`: upload its data, then "
    "PATCH it to `UploadComplete`. A query job (operation `query` with `query`) is queued at once and UNLOADs its "
    "rows as the tenant.",
)
def create_job(
    request: Annotated[CreateBulkJob, Body()],
    idempotency_key: IdempotencyKey = None,
) -> Response[BulkJobInfo]:
    job, created = service.create_job(
        get_ports(Budget.CLIENT),
        _caller(),
        request.new_job(),
        correlation_id=router.current_event.request_context.request_id,
        idempotency_key=idempotency_key,
    )
    response = _info(job, HTTPStatus.CREATED if created else HTTPStatus.OK)
    response.headers["Location"] = api_path(f"/v1/bulk/jobs/{job.job_id}")
    return response


@router.get(
    "/v1/bulk/jobs",
    tags=["bulk"],
    responses={200: _ok("One page of the caller's bulk jobs", BulkJobList), **_errors(400)},
    summary="List bulk jobs",
    description="The caller's bulk jobs (API and S3 drops), newest first, optionally filtered by state, operation "
    "and jobType; follow `nextRecordsUrl` until `done`.",
)
def list_jobs(
    state: Annotated[BulkState | None, Query()] = None,
    operation: Annotated[BulkOperation | None, Query()] = None,
    jobType: Annotated[JobType | None, Query(description="V2Ingest (loads) or V2Query, as Bulk 2.0's")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(min_length=1, max_length=MAX_TOKEN_CHARS)] = None,
) -> BulkJobList:
    page = service.list_jobs(
        get_ports(Budget.CLIENT),
        _caller(),
        state=state,
        operation=operation,
        limit=limit,
        next_token=next_token,
        job_type=jobType,
    )
    next_url = None
    if page.next_token:
        params = {"limit": limit, "next_token": page.next_token}
        filters = (("state", state), ("operation", operation), ("jobType", jobType))
        params.update({k: v.value for k, v in filters if v is not None})
        next_url = api_path("/v1/bulk/jobs?" + urllib.parse.urlencode(params))
    return BulkJobList(done=next_url is None, records=[BulkJobInfo.of(j) for j in page.jobs], nextRecordsUrl=next_url)


@router.get(
    "/v1/bulk/jobs/<job_id>",
    tags=["bulk"],
    responses={200: _ok("The bulk job", BulkJobInfo), **_JOB_ERRORS},
    summary="Get a bulk job",
    description="The job's state and counts (`numberRecordsProcessed`, `numberRecordsFailed`, `errorMessage`, ...).",
)
def get_job(job_id: JobId) -> BulkJobInfo:
    return BulkJobInfo.of(service.get_job(get_ports(Budget.CLIENT), _caller(), job_id))


@router.patch(
    "/v1/bulk/jobs/<job_id>",
    tags=["bulk"],
    responses={200: _ok("The bulk job", BulkJobInfo), **_errors(400, 404, 409)},
    summary="Close or abort a bulk job",
    description="`UploadComplete` queues the load of an `Open` job's batches (repeating it is harmless); `Aborted` "
    "stops a job that has not ended. Every batch whose PUT was answered 201 is part of the job; an `UploadComplete` "
    "sent while batches keep arriving is answered 429 with `Retry-After`.",
)
def change_state(job_id: JobId, request: Annotated[ChangeBulkJobState, Body()]) -> BulkJobInfo:
    return BulkJobInfo.of(service.change_state(get_ports(Budget.CLIENT), _caller(), job_id, request.state))


@router.put(
    "/v1/bulk/jobs/<job_id>/batches",
    tags=["bulk"],
    status_code=201,
    responses={
        201: {"description": "Batch stored (an empty body)", "content": {"text/plain": {"schema": {"type": "string"}}}},
        413: {"description": "Body too large", **_ERROR},
        415: {
            "description": "The batch is not text/csv (or application/octet-stream; application/json or"
            " application/x-ndjson for a job with contentType JSON), is not the job's contentType, declares a charset"
            " that is not UTF-8, or its header line is not UTF-8 (a UTF-16 file's, say)",
            **_ERROR,
        },
        **_errors(400, 404),
        409: {
            "description": "The job was closed or aborted before the batch was stored, or the Idempotency-Key was "
            "used for a different batch",
            **_ERROR,
        },
    },
    summary="Upload a batch of CSV (or JSON)",
    description="One more CSV file (with its header line) for an `Open` job, up to 4 MiB a request, in UTF-8; for a "
    "job with `contentType` `JSON`, a JSON array of objects or JSON Lines (`application/json` or "
    "`application/x-ndjson`), every record with the same fields, rewritten as CSV when stored (400 naming the "
    "record it cannot take; result files are CSV); "
    "`Content-Encoding: gzip` is accepted (and needed for gzip data: 400 without it). Larger files: POST .../uploads "
    "for a presigned URL. 201: the batch is part of the job; 409: the job was closed or aborted before the batch was "
    "stored, and it is not. With an `Idempotency-Key` the key names the batch (in this job): a repeat with the same "
    "bytes is answered 201 and stored and counted once, also after `UploadComplete` listed it; other bytes under "
    "the key are a 409.",
    # the body is read as bytes, not through a model, so the document states it here; application/octet-stream is
    # accepted too (what generated clients send for a file). Both are binary: a batch's rows are any bytes, checked
    # when the job runs, so no body can violate the schema (an API fuzzer sending "[null]" as a "non-string" body
    # sends a valid batch) but an empty one, or gzip data not declared so, which upload_batch refuses (400). A JSON
    # job's media types (application/json, application/x-ndjson) are in the description, not here: declared, the
    # generated clients sent every file (a CSV job's too) as the last of them, and a CSV job answered 415.
    openapi_extensions={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string", "format": "binary", "minLength": 1}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary", "minLength": 1}},
            },
        },
    },
)
def upload_batch(job_id: JobId, idempotency_key: IdempotencyKey = None) -> Response[str]:
    """A CSV body (``Content-Type: text/csv``; gzip with ``Content-Encoding: gzip``). Larger files: POST .../uploads."""
    event = router.current_event
    media, charset = media_type_of(event.headers.get("content-type") or event.headers.get("Content-Type") or "")
    if media not in ("text/csv", "application/octet-stream", *JSON_MEDIA_TYPES):
        raise UnsupportedMediaType("send the batch as text/csv (or application/json for a job with contentType JSON)")
    if charset is not None and charset not in UTF8_CHARSETS:  # Excel's "CSV (Comma delimited)" is windows-1252
        said = charset or "an empty charset"  # `charset=` was answered "not : save ..."
        raise UnsupportedMediaType(f"the batch must be UTF-8, not {said}: save the file as UTF-8 (CSV UTF-8)")
    encoding = (event.headers.get("content-encoding") or event.headers.get("Content-Encoding") or "").lower()
    if encoding not in ("", "identity", "gzip"):
        raise UnsupportedMediaType("Content-Encoding must be gzip or none")
    raw = event.body or ""
    try:  # API Gateway's base64 is always valid; another caller's is checked, not read past its bad characters
        body = (
            base64.b64decode(raw, validate=True)
            if event.is_base64_encoded
            else raw.encode("utf-8", errors="surrogateescape")
        )
    except (binascii.Error, ValueError):
        raise InvalidRequest("the request body is not readable") from None
    # API Gateway inflates a gzip body before the function sees it and leaves the header as sent: gzip data under
    # the header (its magic bytes) is a batch stored compressed (another gateway, or a gzip file sent gzipped once
    # more), checked whole as such; anything else arrived inflated and is stored as it is
    gzip = encoding == "gzip" and body[:2] == GZIP_MAGIC
    ports = get_ports(Budget.CLIENT)
    uploads.upload_batch(ports, _caller(), job_id, body, gzip=gzip, idempotency_key=idempotency_key, media=media)
    return Response(status_code=HTTPStatus.CREATED, content_type=content_types.TEXT_PLAIN, body="")


@router.post(
    "/v1/bulk/jobs/<job_id>/uploads",
    tags=["bulk"],
    responses={
        200: _ok("Where to PUT the batch", UploadUrl),
        **_errors(400, 404),
        409: {
            "description": "The job's state does not allow this, or the Idempotency-Key was used for a different "
            "request",
            **_ERROR,
        },
    },
    summary="Get an upload URL for a large batch",
    description="A presigned SigV4 PUT URL for one more batch of an `Open` job, for files past the 4 MiB request "
    "limit; send the returned headers with the PUT. Finish the PUT before `UploadComplete`: S3 cannot ask the job's "
    "state, so a file put after it is stored but not part of the job. With an `Idempotency-Key` the key names the "
    "batch (in this job): a repeat is answered a URL for the same key, counted once against the job's 100 (signed "
    "again: a later expiry); `gzip` changed under the key is a 409.",
)
def upload_url(
    job_id: JobId, request: Annotated[UploadUrlRequest, Body()], idempotency_key: IdempotencyKey = None
) -> UploadUrl:
    """A presigned URL to PUT one more (large) batch of an Open job straight to S3."""
    answer = uploads.upload_url(
        get_ports(Budget.CLIENT), _caller(), job_id, gzip=request.gzip, idempotency_key=idempotency_key
    )
    return UploadUrl.model_validate(answer)


@router.post(
    "/v1/bulk/uploads",
    tags=["bulk"],
    responses={200: _ok("Where to PUT the file", UploadUrl), **_errors(400)},
    summary="Get an upload URL for an S3 drop",
    description="A presigned PUT URL for `<tenant>/<object>/<filename>` in the ingest bucket: the dropped file "
    "starts a bulk job. The options given become object metadata: send the returned headers with the PUT.",
)
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
    answer = uploads.drop_upload_url(
        get_ports(Budget.CLIENT),
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
    result = downloads.job_results(get_ports(Budget.CLIENT), _caller(), job_id, kind)
    if result.url is not None:
        return Response(status_code=HTTPStatus.SEE_OTHER, body=b"", headers={"Location": result.url})
    return Response(status_code=HTTPStatus.OK, content_type=CSV_CONTENT_TYPE, body=result.body or b"")


_RESULT_RESPONSES = {
    200: _CSV,
    303: {
        "description": "Large file (over 4 MiB): follow Location, a presigned S3 URL, without the Authorization "
        "header (S3 refuses a request with two authentications)",
        "headers": {"Location": {"description": "A presigned GET of the file", "schema": {"type": "string"}}},
    },
    **_errors(400, 404, "409-results", 410),
}


@router.get(
    "/v1/bulk/jobs/<job_id>/successfulResults",
    tags=["bulk"],
    responses=_RESULT_RESPONSES,
    summary="Rows loaded",
    description="CSV of the rows the job loaded: `sf__Id`, `sf__Created`, then the row.",
)
def successful_results(job_id: JobId):  # bytes, not validated as text
    return _result_file(job_id, "successfulResults")


@router.get(
    "/v1/bulk/jobs/<job_id>/failedResults",
    tags=["bulk"],
    responses=_RESULT_RESPONSES,
    summary="Rows refused",
    description="CSV of the rows the warehouse refused: `sf__Id`, `sf__Error` (the reason), then the row as sent.",
)
def failed_results(job_id: JobId):  # bytes, not validated as text
    return _result_file(job_id, "failedResults")


# Bulk 2.0 clients (simple-salesforce, salesforcer) request unprocessedRecords, and paths are case-sensitive here
# (API Gateway's resources): that spelling is served beside this API's first one, unprocessedrecords, by one handler.
@router.get(
    "/v1/bulk/jobs/<job_id>/unprocessedRecords",
    tags=["bulk"],
    responses=_RESULT_RESPONSES,
    summary="Rows not processed (unprocessedRecords)",
    description="The same file as `unprocessedrecords`, under the spelling Bulk 2.0 clients use.",
)
@router.get(
    "/v1/bulk/jobs/<job_id>/unprocessedrecords",
    tags=["bulk"],
    responses=_RESULT_RESPONSES,
    summary="Rows not processed",
    description="CSV of the rows a failed or aborted job never processed, as sent.",
)
def unprocessed_records(job_id: JobId):  # bytes, not validated as text
    return _result_file(job_id, "unprocessedrecords")


@router.get(
    "/v1/bulk/jobs/<job_id>/results",
    tags=["bulk"],
    responses={
        200: {
            **_CSV,
            "headers": {
                "Sforce-Locator": {
                    "description": "The next page's locator (pass it as locator); null after the last page",
                    "schema": {"type": "string"},
                },
                "Sforce-NumberOfRecords": {"description": "Records on this page", "schema": {"type": "integer"}},
            },
        },
        **_errors(400, 404, "409-results", 410, 422),
    },
    summary="Rows of a query job",
    description="A page of CSV with its header line. `Sforce-Locator` names the next page (`null` after the "
    "last); pass it as `locator`. `Sforce-NumberOfRecords` counts this page's records.",
)
def query_results(
    job_id: JobId,
    locator: Annotated[str | None, Query(max_length=256)] = None,
    maxRecords: Annotated[int | None, Query(ge=1)] = None,
):  # bytes, not validated as text
    """A page of a query job's rows: CSV with the header line; ``Sforce-Locator`` names the next page (``null``
    after the last), ``Sforce-NumberOfRecords`` counts this one's records."""
    if locator == "null":
        raise InvalidRequest("locator null means there are no more pages")
    page = downloads.query_results(get_ports(Budget.CLIENT), _caller(), job_id, locator=locator, max_records=maxRecords)
    headers = {"Sforce-Locator": page.locator or "null", "Sforce-NumberOfRecords": str(page.records)}
    return Response(status_code=HTTPStatus.OK, content_type=CSV_CONTENT_TYPE, body=page.body, headers=headers)
