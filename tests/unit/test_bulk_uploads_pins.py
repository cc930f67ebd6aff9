"""Bulk upload behaviour no test held before (found by mutation testing spectra/bulk/uploads.py): a JSON job's batch
stored as the CSV its load reads (its gzip inflated, an upsert's null id a missing one, a blank first line taken), no
upload URL for a JSON job, a keyed batch whose count landed unseen answered with itself and one whose repeat counted
first taken back, a keyed upload URL racing its repeat answered with the repeat's, and the signed ``url`` of a job's
and a drop's upload URL answers, each for its key in the tenant's own prefix, and a drop URL for options not valid
a 400 as is one for a filename that is no plain file name."""

from __future__ import annotations

import gzip

import pytest
from botocore.exceptions import ClientError

from spectra.bulk.models import BulkOperation
from spectra.bulk.service import NewJob, change_state, create_job
from spectra.bulk.uploads import drop_upload_url, upload_batch, upload_url
from spectra.errors import InvalidRequest
from spectra.tenants import Caller
from tests.unit.fakes import INGEST_BUCKET, RESULTS_BUCKET, make_ports, make_settings

pytestmark = pytest.mark.unit

CSV = b"id,name\n1,Ann\n"


@pytest.fixture
def ports():
    ports = make_ports(settings=make_settings(bulk_max_batch_bytes=256))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    return ports


def caller(ports) -> Caller:
    return Caller.of(ports.tenants.get("acme"))


def new_job(ports, operation: BulkOperation = BulkOperation.INSERT, **fields):
    return create_job(ports, caller(ports), NewJob(object="accounts", operation=operation, **fields))[0]


def stored_body(ports, stored) -> bytes:
    return ports.bulk.files.client.body(stored.bucket, stored.key)


@pytest.mark.parametrize("zipped", [False, True])
def test_a_json_jobs_batch_is_stored_as_the_csv_its_load_reads(ports, zipped):
    """The load reads CSV: a JSON job's batch is stored rewritten, plain (a gzip batch inflated), as a .csv batch.
    Stored as sent, COPY would read JSON text as CSV rows."""
    job = new_job(ports, content_type="JSON")
    body = b'{"id": 1, "name": "Ann"}\n{"id": 2, "name": null}\n'
    stored = upload_batch(ports, caller(ports), job.job_id, gzip.compress(body) if zipped else body, gzip=zipped)
    assert stored.gzip is False and stored.key.endswith(".csv")
    assert stored_body(ports, stored) == b'"id","name"\n1,"Ann"\n2,\\N\n'
    closed = change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert [(f.key, f.gzip) for f in closed.files] == [(stored.key, False)]


def test_a_json_upserts_null_external_id_is_stored_as_a_missing_id(ports):
    """An upsert stages rows on its external id: a null id is stored as the empty field a CSV job's missing id is
    (COPY's \\N there reads back in the result files as an id), while another field's null stays NULL."""
    job = new_job(ports, BulkOperation.UPSERT, external_id_field="id", content_type="JSON")
    stored = upload_batch(ports, caller(ports), job.job_id, b'{"id": null, "name": null}', gzip=False)
    assert stored_body(ports, stored) == b'"id","name"\n,\\N\n'


def test_a_json_lines_batch_whose_first_line_is_blank_is_taken(ports):
    """A JSON batch has no header line: a blank line before its first record (which the rewrite skips) is not
    refused as a CSV batch's first line naming no column is."""
    job = new_job(ports, content_type="JSON")
    stored = upload_batch(ports, caller(ports), job.job_id, b'\n{"id": 1, "name": "Ann"}\n', gzip=False)
    assert stored_body(ports, stored) == b'"id","name"\n1,"Ann"\n'


def test_a_json_job_gets_no_upload_url_and_no_batch_is_counted_for_asking(ports):
    """An upload URL stores a file as it is and the load reads CSV: a JSON job is refused one (400), pointed at its
    batches' PUT, and the refused request takes none of the job's batches."""
    job = new_job(ports, content_type="JSON")
    with pytest.raises(InvalidRequest, match=f"PUT /v1/bulk/jobs/{job.job_id}/batches"):
        upload_url(ports, caller(ports), job.job_id, gzip=False)
    assert ports.bulk.jobs.get(job.job_id).uploads == 0


def test_a_keyed_batch_whose_count_landed_but_answered_refused_is_answered_with_itself(ports, monkeypatch):
    """The keyed count is applied but its answer is lost, and botocore's retry is refused by the key now recorded
    (None, as for a closed job): the job records this very batch under the key, so the PUT answers it (201, its key
    and size), keeps it and a close lists it; a repeat under the key gets the same batch."""
    job = new_job(ports)
    count = type(ports.bulk.jobs).count_upload

    def applied_then_refused(jobs, job_id, **kw):
        count(jobs, job_id, **kw)
        return None

    monkeypatch.setattr(type(ports.bulk.jobs), "count_upload", applied_then_refused)
    stored = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    monkeypatch.undo()
    assert stored is not None and stored.size == len(CSV) and stored_body(ports, stored) == CSV
    assert upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k").key == stored.key
    closed = change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert [f.key for f in closed.files] == [stored.key]


def test_a_keyed_batch_whose_count_fails_after_its_repeat_counted_first_is_taken_back(ports, monkeypatch):
    """The client's retry counts its copy of the batch under the key while the first copy's count is on its way, and
    that count then fails: the job records the retry's batch, not this one, so this copy is taken back and the PUT
    fails. Kept and answered, the close would list both copies and load the rows twice."""
    job = new_job(ports)
    count = type(ports.bulk.jobs).count_upload
    retried = []

    def repeat_counted_then_failing(jobs, job_id, **kw):
        monkeypatch.setattr(type(ports.bulk.jobs), "count_upload", count)
        retried.append(upload_batch(ports, caller(ports), job_id, CSV, gzip=False, idempotency_key="k"))
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "try again"}}, "UpdateItem")

    monkeypatch.setattr(type(ports.bulk.jobs), "count_upload", repeat_counted_then_failing)
    with pytest.raises(ClientError):
        upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    closed = change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert [f.key for f in closed.files] == [retried[0].key] and closed.uploads == 1


def test_a_keyed_upload_url_racing_its_repeat_answers_the_url_the_repeat_counted(ports, monkeypatch):
    """The client's retry of a keyed upload URL request counts its URL first: the first request's count is refused by
    the key, and it answers the retry's URL (the same key) rather than nothing; the job counts one batch."""
    job = new_job(ports)
    count = type(ports.bulk.jobs).count_upload
    retried = []

    def repeat_counted_first(jobs, job_id, **kw):
        monkeypatch.setattr(type(ports.bulk.jobs), "count_upload", count)
        retried.append(upload_url(ports, caller(ports), job_id, gzip=False, idempotency_key="k"))
        return count(jobs, job_id, **kw)

    monkeypatch.setattr(type(ports.bulk.jobs), "count_upload", repeat_counted_first)
    first = upload_url(ports, caller(ports), job.job_id, gzip=False, idempotency_key="k")
    assert first["key"] == retried[0]["key"] and first["url"] == retried[0]["url"]
    assert ports.bulk.jobs.get(job.job_id).uploads == 1


def test_upload_urls_sign_a_put_of_the_key_they_name_in_the_tenants_own_prefix(ports):
    """The answer's ``url`` is the presigned PUT the client sends its file to: for a job's batch, the job's key in
    the results bucket; for a drop, the tenant's key in the ingest bucket; each valid for ``expires_in`` seconds."""
    job = new_job(ports)
    ttl = ports.settings.upload_url_ttl_seconds
    batch = upload_url(ports, caller(ports), job.job_id, gzip=False)
    assert batch["key"].startswith(f"acme/{job.job_id}/uploads/")
    assert batch["url"] == f"https://{RESULTS_BUCKET}.s3.fake/{batch['key']}?op=put_object&X-Amz-Expires={ttl}"
    drop = drop_upload_url(ports, caller(ports), object_name="accounts", filename="jan", gzip=False, metadata={})
    assert drop["url"] == f"https://{INGEST_BUCKET}.s3.fake/acme/accounts/jan.csv?op=put_object&X-Amz-Expires={ttl}"


@pytest.mark.parametrize("metadata", [{"columndelimiter": "NOPE"}, {"operation": "merge"}])
def test_a_drop_url_for_options_that_are_not_valid_is_a_400_saying_so(ports, metadata):
    """Options the drop could not read (not one of the Bulk API's values) are refused with a 400 that says which
    rule they break, before any file is put through the URL (not a 500)."""
    with pytest.raises(InvalidRequest, match=r"^job options are not valid: "):
        drop_upload_url(ports, caller(ports), object_name="accounts", filename=None, gzip=False, metadata=metadata)


@pytest.mark.parametrize("filename", ["a/b", " ", "x" * 201])
def test_a_drop_urls_filename_that_is_no_plain_file_name_is_a_400_naming_the_field(ports, filename):
    """A name that would leave the table's folder, is blank, or is longer than 200 characters is refused, the 400's
    details naming the request's ``filename`` field."""
    with pytest.raises(InvalidRequest) as refused:
        drop_upload_url(ports, caller(ports), object_name="accounts", filename=filename, gzip=False, metadata={})
    assert refused.value.details == {"field": "filename"}
