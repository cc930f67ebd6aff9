"""Bulk API route behaviour no test held before (found by mutation testing producers/api/bulk.py): a query job's
pages through GET .../results (the CSV, Sforce-Locator naming the next page and "null" after the last,
Sforce-NumberOfRecords, maxRecords and locator passed on, locator=null refused), GET and PATCH of a job answering it as
it is, a drop URL whose options become the x-amz-meta-* headers to send, and the 415s of a batch sent as another
media type or content encoding. Each goes through the API handler with an API Gateway proxy event on fake ports."""

from __future__ import annotations

import base64
import gzip
import json
import urllib.parse

import pytest

from producers.api import app as api
from producers.api import bulk as bulk_routes
from producers.api.app import openapi_document
from spectra.bulk.lifecycle import complete_bulk_statement, start_bulk_job
from spectra.bulk.models import BulkOperation, BulkState, ExportFile
from spectra.bulk.service import NewJob, create_job
from spectra.tenants import Caller
from tests.unit.fakes import RESULTS_BUCKET, make_ports, make_settings
from tests.unit.test_crafted_events import CONTEXT, proxy, with_query

pytestmark = pytest.mark.unit

CSV = b"id,name\n1,Ann\n"


@pytest.fixture
def ports(monkeypatch):
    """Fake ports with the tenant acme and its table accounts, served by the API handler; pages of 3 records."""
    return _served(monkeypatch, bulk_page_max_records=3)


def _served(monkeypatch, **settings):
    ports = make_ports(settings=make_settings(**settings))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    for module in (api, bulk_routes):
        monkeypatch.setattr(module, "get_ports", lambda budget: ports)
    return ports


def _call(method: str, path: str, body: str | None = None, headers: dict | None = None, **query) -> dict:
    """The handler's whole answer (status, headers by lower-case name, body as sent) to one proxy event."""
    headers = headers if headers is not None else ({"Content-Type": "application/json"} if body else {})
    event = proxy(path, method, body=body, headers=headers, multiValueHeaders={k: [v] for k, v in headers.items()})
    if query:
        event.update(with_query(**query))
    answer = api.lambda_handler(event, CONTEXT)
    raw = answer["body"]
    body_bytes = base64.b64decode(raw) if answer.get("isBase64Encoded") else raw.encode()
    headers_out = {name.lower(): values[0] for name, values in (answer.get("multiValueHeaders") or {}).items()}
    return {"status": answer["statusCode"], "headers": headers_out, "body": body_bytes}


def _query_job(ports, body: bytes, rows: int) -> str:
    """A query job JobComplete whose one UNLOAD part holds ``body`` (a header line and ``rows`` records)."""
    caller = Caller.of(ports.tenants.get("acme"))
    job, _ = create_job(ports, caller, NewJob(object=None, operation=BulkOperation.QUERY, query="select 1"))
    ports.bulk.jobs.transition(job.job_id, BulkState.IN_PROGRESS)
    key = f"acme/{job.job_id}/export/part_0000_part_00"
    ports.bulk.files.client.put_object(Bucket=RESULTS_BUCKET, Key=key, Body=body)
    part = ExportFile(key=key, rows=rows, bytes=len(body))
    ports.bulk.jobs.transition(job.job_id, BulkState.JOB_COMPLETE, export_files=[part], export_columns=["x"])
    return job.job_id


# -- query results -----------------------------------------------------------------------------------------------------


def test_a_query_jobs_pages_are_csv_with_the_next_locator_until_null(ports):
    """Five records in pages of 3: the first page is its header and 3 records, Sforce-NumberOfRecords 3 and a locator;
    that locator answers the other 2 with Sforce-Locator null, as Bulk 2.0's last page."""
    job_id = _query_job(ports, b"x\n1\n2\n3\n4\n5\n", rows=5)
    first = _call("GET", f"/v1/bulk/jobs/{job_id}/results")
    assert first["status"] == 200, first
    assert first["headers"]["content-type"].startswith("text/csv")
    assert first["body"] == b"x\n1\n2\n3\n"
    assert first["headers"]["sforce-numberofrecords"] == "3"
    locator = first["headers"]["sforce-locator"]
    assert locator and locator != "null"
    last = _call("GET", f"/v1/bulk/jobs/{job_id}/results", locator=locator)
    assert (last["status"], last["body"]) == (200, b"x\n4\n5\n"), last
    assert last["headers"]["sforce-locator"] == "null"
    assert last["headers"]["sforce-numberofrecords"] == "2"


def test_max_records_sets_a_query_pages_size(ports):
    """maxRecords=2 answers 2 records of the 5 and a locator to the rest."""
    job_id = _query_job(ports, b"x\n1\n2\n3\n4\n5\n", rows=5)
    page = _call("GET", f"/v1/bulk/jobs/{job_id}/results", maxRecords="2")
    assert (page["status"], page["body"]) == (200, b"x\n1\n2\n"), page
    assert page["headers"]["sforce-numberofrecords"] == "2"
    assert page["headers"]["sforce-locator"] != "null"


def test_the_locator_null_is_a_400_not_the_first_page_again(ports):
    """A client passing back the last page's Sforce-Locator (null) is told there are no more pages, not answered the
    job's first page once more (a loop that never ends)."""
    job_id = _query_job(ports, b"x\n1\n", rows=1)
    answer = _call("GET", f"/v1/bulk/jobs/{job_id}/results", locator="null")
    assert answer["status"] == 400, answer
    error = json.loads(answer["body"])["error"]
    assert error["code"] == "invalid_request" and "no more pages" in error["message"], error


# -- a job read and changed --------------------------------------------------------------------------------------------


def test_get_and_patch_answer_the_job_as_it_is(ports):
    """GET of a new ingest job answers it Open; PATCH Aborted answers it Aborted, and GET then says so too."""
    created = _call("POST", "/v1/bulk/jobs", json.dumps({"object": "accounts", "operation": "insert"}))
    assert created["status"] == 201, created
    job_id = json.loads(created["body"])["id"]
    got = _call("GET", f"/v1/bulk/jobs/{job_id}")
    assert got["status"] == 200 and json.loads(got["body"])["state"] == "Open", got
    assert json.loads(got["body"])["id"] == job_id
    changed = _call("PATCH", f"/v1/bulk/jobs/{job_id}", json.dumps({"state": "Aborted"}))
    assert changed["status"] == 200, changed
    assert (json.loads(changed["body"])["id"], json.loads(changed["body"])["state"]) == (job_id, "Aborted")
    assert json.loads(_call("GET", f"/v1/bulk/jobs/{job_id}")["body"])["state"] == "Aborted"


# -- drop upload URLs --------------------------------------------------------------------------------------------------


def test_a_drop_urls_options_are_the_metadata_headers_to_send(ports):
    """The options asked become x-amz-meta-* headers named in lower case with Bulk 2.0's values (COMMA, CRLF), under
    <tenant>/<object>/<filename>; options left out are no header."""
    request = {
        "object": "accounts",
        "filename": "new.csv",
        "operation": "upsert",
        "externalIdFieldName": "id",
        "columnDelimiter": "COMMA",
        "lineEnding": "CRLF",
    }
    answer = _call("POST", "/v1/bulk/uploads", json.dumps(request))
    assert answer["status"] == 200, answer
    url = json.loads(answer["body"])
    assert url["key"] == "acme/accounts/new.csv" and url["method"] == "PUT"
    options = {k: v for k, v in url["headers"].items() if k != "x-amz-meta-spectra-generation"}
    assert options == {
        "x-amz-meta-operation": "upsert",
        "x-amz-meta-externalidfieldname": "id",
        "x-amz-meta-columndelimiter": "COMMA",
        "x-amz-meta-lineending": "CRLF",
    }
    plain = json.loads(_call("POST", "/v1/bulk/uploads", json.dumps({"object": "accounts", "gzip": True}))["body"])
    assert [k for k in plain["headers"] if k != "x-amz-meta-spectra-generation"] == []
    assert plain["key"].startswith("acme/accounts/") and plain["key"].endswith(".csv.gz")


# -- batch media types -------------------------------------------------------------------------------------------------


def _open_job(ports) -> str:
    created = _call("POST", "/v1/bulk/jobs", json.dumps({"object": "accounts", "operation": "insert"}))
    return json.loads(created["body"])["id"]


@pytest.mark.parametrize(
    ("headers", "said"),
    [
        ({"Content-Type": "text/plain"}, "text/csv"),
        ({"Content-Type": "text/csv", "Content-Encoding": "br"}, "Content-Encoding must be gzip or none"),
        ({"Content-Type": "text/csv; charset=windows-1252"}, "UTF-8, not windows-1252"),
    ],
    ids=["text-plain", "brotli", "windows-1252"],
)
def test_a_batch_of_another_media_type_or_encoding_is_a_415_and_not_stored(ports, headers, said):
    """A batch sent as text/plain, with Content-Encoding br or in windows-1252 is refused 415 unsupported_media_type
    saying what to send (the charset it named), where the same rows sent as text/csv are stored (201)."""
    job_id = _open_job(ports)
    answer = _call("PUT", f"/v1/bulk/jobs/{job_id}/batches", "id,name\n1,Ann\n", headers=headers)
    assert answer["status"] == 415, answer
    error = json.loads(answer["body"])["error"]
    assert error["code"] == "unsupported_media_type" and said in error["message"], error
    stored = _call("PUT", f"/v1/bulk/jobs/{job_id}/batches", "id,name\n1,Ann\n", headers={"Content-Type": "text/csv"})
    assert stored["status"] == 201, stored


# -- create and list ---------------------------------------------------------------------------------------------------


def test_a_created_job_is_a_201_with_its_location_and_its_repeat_a_200_with_the_same(ports):
    """POST /v1/bulk/jobs answers 201 with Location /v1/bulk/jobs/<id>; the same Idempotency-Key again answers that
    job 200 with the same Location, not a second job."""
    headers = {"Content-Type": "application/json", "Idempotency-Key": "k1"}
    body = json.dumps({"object": "accounts", "operation": "insert"})
    first = _call("POST", "/v1/bulk/jobs", body, headers=headers)
    job_id = json.loads(first["body"])["id"]
    assert first["status"] == 201 and first["headers"]["location"].endswith(f"/v1/bulk/jobs/{job_id}"), first
    again = _call("POST", "/v1/bulk/jobs", body, headers=headers)
    assert again["status"] == 200 and json.loads(again["body"])["id"] == job_id, again
    assert again["headers"]["location"] == first["headers"]["location"]


def test_a_filtered_listings_next_page_keeps_its_filters(ports):
    """Three aborted insert jobs beside an open one, listed state=Aborted, operation=insert, jobType=V2Ingest, one a
    page: each page's nextRecordsUrl carries the filters and the limit, the three come one by one, and
    the last page is done with no nextRecordsUrl."""
    made = []
    for _ in range(3):
        job_id = _open_job(ports)
        _call("PATCH", f"/v1/bulk/jobs/{job_id}", json.dumps({"state": "Aborted"}))
        made.append(job_id)
    _open_job(ports)
    params = {"state": "Aborted", "operation": "insert", "jobType": "V2Ingest", "limit": "1"}
    listed = []
    for _ in range(3):
        answer = _call("GET", "/v1/bulk/jobs", **params)
        assert answer["status"] == 200, answer
        page = json.loads(answer["body"])
        listed += [(record["id"], record["state"]) for record in page["records"]]
        if page["done"]:
            assert page["nextRecordsUrl"] is None
            break
        split = urllib.parse.urlsplit(page["nextRecordsUrl"])
        assert split.path.endswith("/v1/bulk/jobs"), page
        params = dict(urllib.parse.parse_qsl(split.query))
        assert {k: params[k] for k in ("state", "operation", "jobType", "limit")} == {
            "state": "Aborted",
            "operation": "insert",
            "jobType": "V2Ingest",
            "limit": "1",
        }
    assert sorted(listed) == sorted((job_id, "Aborted") for job_id in made)
    assert page["done"] is True


# -- result files ------------------------------------------------------------------------------------------------------


def _finished_insert(ports) -> str:
    """An insert job of two rows, through the API, whose load the warehouse answered row 1 loaded, none failed."""
    job_id = _open_job(ports)
    batch = _call("PUT", f"/v1/bulk/jobs/{job_id}/batches", CSV.decode(), headers={"Content-Type": "text/csv"})
    assert batch["status"] == 201, batch
    assert _call("PATCH", f"/v1/bulk/jobs/{job_id}", json.dumps({"state": "UploadComplete"}))["status"] == 200
    running = start_bulk_job(ports, ports.queue.messages[-1])
    complete_bulk_statement(ports, ports.warehouse.finish_batch(running.statement_id, {0: 1, 1: []}))
    return job_id


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("successfulResults", None),
        ("failedResults", b"sf__Id,sf__Error,id,name\n"),
        ("unprocessedrecords", b"id,name\n"),
        ("unprocessedRecords", b"id,name\n"),
    ],
)
def test_each_result_file_is_served_as_csv_from_its_own_path(ports, path, expected):
    """Each of a finished job's result files is answered 200 text/csv at its own path: the loaded row under
    successfulResults, only the header under failedResults (none failed), and under both spellings of
    unprocessedrecords only the file's own header (every row was processed)."""
    job_id = _finished_insert(ports)
    answer = _call("GET", f"/v1/bulk/jobs/{job_id}/{path}")
    assert answer["status"] == 200 and answer["headers"]["content-type"].startswith("text/csv"), answer
    if expected is None:
        lines = answer["body"].decode().splitlines()
        assert lines[0] == "sf__Id,sf__Created,id,name" and lines[1].endswith(",true,1,Ann"), lines
        assert len(lines) == 2
    else:
        assert answer["body"] == expected


def test_a_result_file_past_the_inline_limit_is_a_303_to_its_presigned_url(monkeypatch):
    """failedResults of 25 bytes under an inline limit of 24 is answered 303 whose Location is a presigned GET of the
    file (no body), for the client to follow."""
    ports = _served(monkeypatch, bulk_inline_download_max_bytes=24)
    job_id = _finished_insert(ports)
    answer = _call("GET", f"/v1/bulk/jobs/{job_id}/failedResults")
    assert answer["status"] == 303 and answer["body"] == b"", answer
    location = answer["headers"]["location"]
    assert f"acme/{job_id}/results/" in location and "failed.csv?op=get_object" in location


# -- batches: gzip and Idempotency-Key ---------------------------------------------------------------------------------


def _put(job_id: str, body: bytes, **headers) -> dict:
    """PUT a batch as API Gateway hands a binary body to the function: base64, isBase64Encoded."""
    headers = {"Content-Type": "text/csv", **{k.replace("_", "-"): v for k, v in headers.items()}}
    event = proxy(
        f"/v1/bulk/jobs/{job_id}/batches",
        "PUT",
        body=base64.b64encode(body).decode(),
        isBase64Encoded=True,
        headers=headers,
        multiValueHeaders={k: [v] for k, v in headers.items()},
    )
    answer = api.lambda_handler(event, CONTEXT)
    return {"status": answer["statusCode"], "body": answer["body"]}


def test_gzip_data_is_taken_under_content_encoding_gzip_and_refused_without_it(ports):
    """A gzip file sent with Content-Encoding gzip is a batch (201); the same bytes sent without the header are a 400,
    not stored as rows; plain rows under Content-Encoding gzip (API Gateway inflated them) are a batch too."""
    job_id = _open_job(ports)
    packed = gzip.compress(CSV)
    assert _put(job_id, packed, Content_Encoding="gzip")["status"] == 201
    assert _put(job_id, packed)["status"] == 400
    assert _put(job_id, CSV, Content_Encoding="gzip")["status"] == 201


def test_a_batchs_idempotency_key_names_it(ports):
    """Under one Idempotency-Key the same bytes again are 201 and other bytes a 409; without a key each is a batch."""
    job_id = _open_job(ports)
    assert _put(job_id, CSV, Idempotency_Key="b1")["status"] == 201
    assert _put(job_id, CSV, Idempotency_Key="b1")["status"] == 201
    assert _put(job_id, b"id,name\n2,Bob\n", Idempotency_Key="b1")["status"] == 409
    assert _put(job_id, b"id,name\n2,Bob\n")["status"] == 201


def test_an_upload_urls_idempotency_key_names_its_batch(ports):
    """Two upload URL requests under one Idempotency-Key answer the same key; without a key, two different keys."""
    job_id = _open_job(ports)
    path = f"/v1/bulk/jobs/{job_id}/uploads"

    def key(**headers) -> str:
        answer = _call("POST", path, "{}", headers={"Content-Type": "application/json", **headers})
        assert answer["status"] == 200, answer
        return json.loads(answer["body"])["key"]

    assert key(**{"Idempotency-Key": "u1"}) == key(**{"Idempotency-Key": "u1"})
    assert key() != key()


def test_the_document_says_the_bulk_routes_answer_json_in_their_models():
    """The OpenAPI document a generated client is made from says GET and PATCH of a job and the job list answer
    application/json in BulkJobInfo or BulkJobList, and a drop URL request an UploadUrl."""
    paths = openapi_document()["paths"]
    answers = {
        ("/v1/bulk/jobs/{job_id}", "get"): "BulkJobInfo",
        ("/v1/bulk/jobs/{job_id}", "patch"): "BulkJobInfo",
        ("/v1/bulk/jobs", "get"): "BulkJobList",
        ("/v1/bulk/uploads", "post"): "UploadUrl",
    }
    for (path, method), model in answers.items():
        content = paths[path][method]["responses"]["200"]["content"]
        assert list(content) == ["application/json"], (path, method, content)
        assert content["application/json"]["schema"]["$ref"].endswith(f"/{model}")
