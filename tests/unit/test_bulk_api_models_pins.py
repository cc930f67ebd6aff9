"""Bulk API request and response model behaviour no test held before (found by mutation testing
producers/api/bulk_models.py): the length and type bounds a create, a state change and an upload URL request are held
to (each a 400 naming the field, never a 5xx), and the Bulk 2.0 JobInfo a job is shown as: its fixed fields, counts,
times, error, content URL and S3 door fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from events import ErrorInfo
from producers.api import app as api
from producers.api import bulk as bulk_routes
from producers.api.bulk_models import (
    BulkJobInfo,
    ChangeBulkJobState,
    CreateBulkJob,
    DropUploadRequest,
    UploadUrlRequest,
)
from producers.api.links import served_under
from spectra.bulk.models import BulkCounts, BulkOperation, BulkState, JobSource
from tests.unit.bulk_helpers import bulk_job
from tests.unit.fakes import make_ports
from tests.unit.test_crafted_events import answer_of, proxy

pytestmark = pytest.mark.unit


@pytest.fixture
def bulk_api(monkeypatch):
    """The API handler on fake ports with the tenant acme and its table accounts: ``call(method, path, body)``."""
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    for module in (api, bulk_routes):
        monkeypatch.setattr(module, "get_ports", lambda budget: ports)

    def call(method: str, path: str, body: dict) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        multi = {name: [value] for name, value in headers.items()}
        return answer_of(proxy(path, method, body=json.dumps(body), headers=headers, multiValueHeaders=multi))

    return call


def _refused(answer: dict) -> list[list]:
    assert answer["error"]["code"] == "invalid_request", answer
    return [detail["loc"] for detail in answer["error"]["details"]]


# -- requests -------------------------------------------------------------------------------------------------------


def test_a_query_of_100000_characters_is_taken_and_one_more_is_refused():
    """README's bound on a query job's SELECT: 100,000 characters are a job; 100,001 are refused naming query."""
    select = "select 1 from accounts where name = '" + "x" * (100_000 - 38) + "'"
    assert len(select) == 100_000
    assert CreateBulkJob.model_validate({"operation": "query", "query": select}).new_job().query == select
    with pytest.raises(ValidationError) as raised:
        CreateBulkJob.model_validate({"operation": "query", "query": select + " "})
    assert [error["loc"] for error in raised.value.errors()] == [("query",)]


def test_a_query_too_long_is_a_400_naming_it(bulk_api):
    """Through the handler, the over-long query is a 400 in the error shape naming the body's query."""
    status, answer = bulk_api("POST", "/v1/bulk/jobs", {"operation": "query", "query": "x" * 100_001})
    assert status == 400 and _refused(answer) == [["body", "query"]], answer


def test_an_assignment_rule_id_of_64_characters_is_taken_and_65_are_refused():
    """Bulk 2.0's assignmentRuleId is ignored, but held to 64 characters: a longer one is no rule id."""
    fields = {"object": "accounts", "operation": "insert"}
    CreateBulkJob.model_validate({**fields, "assignmentRuleId": "a" * 64})
    with pytest.raises(ValidationError):
        CreateBulkJob.model_validate({**fields, "assignmentRuleId": "a" * 65})


def test_a_create_without_options_gets_comma_lf_and_csv():
    """Fields left out are COMMA, LF and CSV, as Bulk 2.0's; a contentType of "" stays "" for the service's 400."""
    job = CreateBulkJob.model_validate({"object": "accounts", "operation": "insert"}).new_job()
    assert (job.column_delimiter.value, job.line_ending.value, job.content_type) == ("COMMA", "LF", "CSV")
    assert job.object == "accounts" and job.external_id_field is None
    empty = CreateBulkJob.model_validate({"object": "accounts", "operation": "insert", "contentType": ""})
    assert empty.new_job().content_type == ""


@pytest.mark.parametrize("state", ["UploadComplete", "Aborted"])
def test_a_state_change_takes_upload_complete_and_aborted(state):
    """The two states a client may ask a job for, spelled as Bulk 2.0 spells them."""
    assert ChangeBulkJobState.model_validate({"state": state}).state == state


@pytest.mark.parametrize("state", ["", "Open", "JobComplete", "uploadcomplete"])
def test_any_other_state_change_is_a_400_naming_state(bulk_api, state):
    """A state the client cannot ask for is the body's 400, not a change the service tries."""
    status, answer = bulk_api("PATCH", "/v1/bulk/jobs/b_x", {"state": state})
    assert status == 400 and _refused(answer) == [["body", "state"]], answer


@pytest.mark.parametrize("model", [UploadUrlRequest, DropUploadRequest])
def test_gzip_is_json_true_or_false_only(model):
    """The document's boolean: true and false are taken, "true", 1 and 0 refused; left out it is false."""
    base = {"object": "accounts"} if model is DropUploadRequest else {}
    assert model.model_validate(base).gzip is False
    assert model.model_validate({**base, "gzip": True}).gzip is True
    for sent in ("true", 1, 0):
        with pytest.raises(ValidationError):
            model.model_validate({**base, "gzip": sent})


def test_an_upload_url_request_with_a_field_it_does_not_know_is_a_400(bulk_api):
    """A misspelled option (compress for gzip) is refused, not silently dropped to give a URL for a plain file."""
    status, answer = bulk_api("POST", "/v1/bulk/jobs/b_x/uploads", {"compress": True})
    assert status == 400 and _refused(answer) == [["body", "compress"]], answer
    status, answer = bulk_api("POST", "/v1/bulk/uploads", {"object": "accounts", "compress": True})
    assert status == 400 and _refused(answer) == [["body", "compress"]], answer


def test_a_state_change_with_a_field_it_does_not_know_is_a_400(bulk_api):
    status, answer = bulk_api("PATCH", "/v1/bulk/jobs/b_x", {"state": "Aborted", "reason": "x"})
    assert status == 400 and _refused(answer) == [["body", "reason"]], answer


def test_a_drop_filename_of_200_characters_is_taken_and_201_refused():
    DropUploadRequest.model_validate({"object": "accounts", "filename": "a" * 196 + ".csv"})
    with pytest.raises(ValidationError):
        DropUploadRequest.model_validate({"object": "accounts", "filename": "a" * 197 + ".csv"})


@pytest.mark.parametrize("filename", ["../x.csv", "a/b.csv", "", "x\n.csv", "x%2f.csv"])
def test_a_drop_filename_with_a_path_or_odd_characters_is_a_400(bulk_api, filename):
    """A filename is one name of letters, digits, dot, underscore, space and hyphen: a slash would drop the file
    under another object's prefix."""
    status, answer = bulk_api("POST", "/v1/bulk/uploads", {"object": "accounts", "filename": filename})
    assert status == 400 and _refused(answer) == [["body", "filename"]], answer


def test_a_drop_for_a_query_is_a_400_naming_operation(bulk_api):
    """A dropped file is a load: operation query is refused before any URL is made."""
    status, answer = bulk_api("POST", "/v1/bulk/uploads", {"object": "accounts", "operation": "query"})
    assert status == 400 and _refused(answer) == [["body", "operation"]], answer


def test_a_drop_with_no_options_gives_a_url_naming_none():
    """Options left out are None, so that the drop's metadata says nothing the caller did not (insert by default)."""
    request = DropUploadRequest.model_validate({"object": "accounts"})
    assert (request.operation, request.columnDelimiter, request.lineEnding, request.filename) == (None,) * 4


@pytest.mark.parametrize("model", [CreateBulkJob, DropUploadRequest])
@pytest.mark.parametrize("name", ["1email", "e-mail", "a.b", "x" * 128])
def test_an_external_id_that_is_no_column_name_is_refused(model, name):
    """externalIdFieldName is one column's name (up to 127 characters), for a create and a drop alike."""
    with pytest.raises(ValidationError):
        model.model_validate({"object": "accounts", "operation": "upsert", "externalIdFieldName": name})
    model.model_validate({"object": "accounts", "operation": "upsert", "externalIdFieldName": "x" * 127})


@pytest.mark.parametrize("model", [CreateBulkJob, DropUploadRequest])
@pytest.mark.parametrize("name", ["a.b.c", "1t", "t;drop", "s.", "x" * 128])
def test_an_object_that_is_no_table_name_is_refused(model, name):
    with pytest.raises(ValidationError):
        model.model_validate({"object": name, "operation": "insert"})
    model.model_validate({"object": "crm." + "x" * 127, "operation": "insert"})


# -- JobInfo --------------------------------------------------------------------------------------------------------


def test_a_jobs_info_has_bulk_2_0s_fixed_fields():
    """Bulk 2.0 clients read these and typed ones decode them: Parallel, apiVersion the number 1.0, retries and
    apexProcessingTime 0."""
    shown = BulkJobInfo.of(bulk_job(job_id="b_1")).model_dump(mode="json")
    assert shown["concurrencyMode"] == "Parallel"
    assert shown["apiVersion"] == 1.0 and isinstance(shown["apiVersion"], float)
    assert (shown["retries"], shown["apexProcessingTime"]) == (0, 0)
    assert shown["contentType"] == "CSV" and shown["jobType"] == "V2Ingest" and shown["source"] == "api"


def test_a_finished_jobs_info_says_its_counts_time_error_and_results():
    """Counts, milliseconds taken (both times), the error's message and code, and whether results can be read."""
    error = ErrorInfo(code="results_mismatch", message="2 records are not in the result files")
    job = bulk_job(
        job_id="b_2",
        state=BulkState.JOB_COMPLETE,
        counts=BulkCounts(processed=12, failed=3),
        started_at=datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC),
        completed_at=datetime(2026, 3, 1, 12, 0, 6, 321000, tzinfo=UTC),
        error=error,
        results_ready=True,
    )
    shown = BulkJobInfo.of(job).model_dump(mode="json")
    assert (shown["numberRecordsProcessed"], shown["numberRecordsFailed"]) == (12, 3)
    assert (shown["totalProcessingTime"], shown["apiActiveProcessingTime"]) == (5321, 5321)
    assert shown["errorMessage"] == "2 records are not in the result files"
    assert shown["error"] == {"code": "results_mismatch", "message": "2 records are not in the result files"}
    assert shown["resultsReady"] is True and shown["state"] == "JobComplete" and shown["contentUrl"] is None


def test_a_job_not_yet_counted_shows_zeros_and_no_error():
    shown = BulkJobInfo.of(bulk_job(job_id="b_3")).model_dump(mode="json")
    assert (shown["numberRecordsProcessed"], shown["numberRecordsFailed"]) == (0, 0)
    assert (shown["totalProcessingTime"], shown["apiActiveProcessingTime"]) == (0, 0)
    assert (shown["errorMessage"], shown["error"], shown["resultsReady"]) == (None, None, False)


def test_a_job_complete_whose_results_are_pending_is_shown_in_progress():
    """Bulk 2.0 clients fetch results as soon as they see JobComplete: until the files are written it shows
    InProgress."""
    job = bulk_job(job_id="b_4", state=BulkState.JOB_COMPLETE, counts=BulkCounts(processed=1), results_ready=False)
    assert job.state is BulkState.JOB_COMPLETE
    assert BulkJobInfo.of(job).state is job.shown_state


def test_an_open_jobs_content_url_is_its_batches_under_the_stage_served():
    """Only an Open job has a contentUrl: its batches route, as the client reaches it (under /v1 of the stage)."""
    event = {"path": "/v1/bulk/jobs/b_5", "requestContext": {"path": "/dev/v1/bulk/jobs/b_5"}}
    with served_under(event):
        shown = BulkJobInfo.of(bulk_job(job_id="b_5"))
    assert shown.contentUrl == "/dev/v1/bulk/jobs/b_5/batches"
    closed = bulk_job(job_id="b_5", state=BulkState.UPLOAD_COMPLETE)
    assert BulkJobInfo.of(closed).contentUrl is None


def test_a_dropped_jobs_info_names_its_door_and_file():
    job = bulk_job(
        job_id="b_6",
        source=JobSource.S3_DROP,
        object_key="acme/accounts/new.csv",
        created_at=datetime(2026, 3, 1, 12, tzinfo=UTC),
        updated_at=datetime(2026, 3, 1, 12, 5, tzinfo=UTC),
    )
    shown = BulkJobInfo.of(job).model_dump(mode="json")
    assert (shown["source"], shown["objectKey"]) == ("s3", "acme/accounts/new.csv")
    assert (shown["createdDate"], shown["systemModstamp"]) == ("2026-03-01T12:00:00Z", "2026-03-01T12:05:00Z")
    assert (shown["id"], shown["createdById"], shown["object"]) == ("b_6", "acme", "accounts")


def test_a_query_jobs_info_is_v2_query_with_its_query():
    job = bulk_job(BulkOperation.QUERY, job_id="b_7", query="select id from accounts")
    shown = BulkJobInfo.of(job).model_dump(mode="json")
    assert (shown["jobType"], shown["operation"], shown["query"]) == ("V2Query", "query", "select id from accounts")
