"""The S3 door (spectra.bulk.drops) on fakes: a dropped file becomes one queued bulk job, whatever happens to its
notification; its options come from a sidecar or the object's metadata; a drop that cannot be loaded still becomes a
job that says why, and one naming no tenant is tagged and left alone."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from events import BulkJobQueuedMessage, S3EventRecord
from spectra.bulk import drops
from spectra.bulk.drops import LATE_SIDECAR_JOBS, SIDECAR_MAX_BYTES, DroppedObject, accept_drop
from spectra.bulk.lifecycle import start_bulk_job
from spectra.bulk.models import (
    BulkOperation,
    BulkState,
    ColumnDelimiter,
    JobSource,
    LineEnding,
    SourceFile,
    is_bulk_job_id,
)
from spectra.bulk.reconcile import reconcile_bulk
from spectra.jobs import utcnow
from spectra.reconciliation import ReconcileSummary, Thresholds
from tests.unit.fakes import INGEST_BUCKET, acme_ports, result_file

pytestmark = pytest.mark.unit

BODY = b"id,name\n1,Ann\n2,Bob\n"


@pytest.fixture
def ports():
    return acme_ports()


def s3(ports):
    return ports.bulk.files.client


def drop(ports, key: str, body: bytes = BODY, *, metadata: dict[str, str] | None = None) -> DroppedObject:
    """Put the object as a tenant would, and what its notification says about it."""
    etag = s3(ports).put_object(Bucket=INGEST_BUCKET, Key=key, Body=body, Metadata=metadata or {})["ETag"]
    return DroppedObject(bucket=INGEST_BUCKET, key=key, size=len(body), etag=etag)


def sidecar(ports, key: str, document) -> None:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    s3(ports).put_object(Bucket=INGEST_BUCKET, Key=key, Body=body)


def jobs(ports, tenant: str = "acme"):
    return ports.bulk.jobs.list_for_tenant(tenant, limit=100).jobs


# -- the notification -----------------------------------------------------------------------------------------------


def notification(key: str, **obj) -> S3EventRecord:
    s3_entity = {"bucket": {"name": INGEST_BUCKET}, "object": {"key": key, **obj}}
    return S3EventRecord.model_validate({"eventName": "ObjectCreated:Put", "s3": s3_entity})


def test_a_sidecar_of_many_bad_keys_fails_the_job_with_a_short_reason(ports):
    """Every problem was joined into the job's error: thousands of bad keys made a message past what a job record
    holds (found by a diff review, as the API's validation answers were)."""
    sidecar(ports, "acme/accounts/jan.json", {f"k{n}": 1 for n in range(5000)})  # 49 KB, within 64 KB
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    assert job.state is BulkState.FAILED and job.error.code == "invalid_drop"
    assert len(job.error.message) < 3000 and job.error.message.endswith("; and 4990 more")


@pytest.mark.parametrize(
    ("encoded", "key"),
    [
        ("acme/accounts/my+file.csv", "acme/accounts/my file.csv"),  # S3 encodes a space as '+'
        ("acme/accounts/a%2Bb.csv", "acme/accounts/a+b.csv"),  # and a real '+' as %2B
        ("acme/accounts/caf%C3%A9%20%281%29.csv", "acme/accounts/café (1).csv"),
        ("acme/accounts/100%25.csv", "acme/accounts/100%.csv"),
    ],
)
def test_notification_keys_are_url_decoded(encoded, key):
    dropped = DroppedObject.from_notification(
        notification(encoded, size=12, eTag="abc", versionId="v1", sequencer="0055AED6DCD90281E5")
    )
    assert dropped == DroppedObject(
        INGEST_BUCKET, key, size=12, etag="abc", version_id="v1", sequencer="0055AED6DCD90281E5"
    )


def test_a_notification_without_size_or_version_still_reads():
    dropped = DroppedObject.from_notification(notification("acme/accounts/a.csv"))
    assert (dropped.size, dropped.etag, dropped.version_id) == (0, "", None)


def test_the_job_id_is_stable_per_object_identity_and_changes_with_it():
    base = DroppedObject(bucket="ingest", key="acme/accounts/a.csv", size=10, etag="e1", version_id="v1")
    assert base.job_id == DroppedObject("ingest", "acme/accounts/a.csv", 99, '"e1"', "v1").job_id  # quotes, size
    assert is_bulk_job_id(base.job_id) and len(base.job_id) <= 64
    assert base.job_id.replace("_", "").replace("-", "").isalnum()  # URL-safe
    others = [
        DroppedObject("ingest", "acme/accounts/a.csv", 10, "e2", "v1"),  # a new upload to the same key
        DroppedObject("ingest", "acme/accounts/a.csv", 10, "e1", "v2"),
        DroppedObject("ingest", "acme/accounts/a.csv", 10, "e1", None),
        DroppedObject("ingest", "acme/accounts/b.csv", 10, "e1", "v1"),
        DroppedObject("other", "acme/accounts/a.csv", 10, "e1", "v1"),
        DroppedObject("ingest", "acme/accounts/a.csv", 10, "e1", "v1", sequencer="0A"),  # the same file put again
        DroppedObject("ingest", "acme/accounts/a.csv", 10, "e1", "v1", sequencer="0B"),
    ]
    assert len({base.job_id, *(o.job_id for o in others)}) == 1 + len(others)
    again = DroppedObject("ingest", "acme/accounts/a.csv", 10, "e1", "v1", sequencer="0A")
    assert again.job_id == others[-2].job_id  # one write's notification delivered twice: one job


# -- accepted drops -------------------------------------------------------------------------------------------------


def test_a_drop_becomes_a_queued_insert_job_listed_with_its_key(ports):
    dropped = drop(ports, "acme/Accounts/jan.csv")
    job = accept_drop(ports, dropped)
    assert job is not None and job.job_id == dropped.job_id
    assert (job.state, job.operation, job.source, job.object) == (
        BulkState.UPLOAD_COMPLETE,
        BulkOperation.INSERT,
        JobSource.S3_DROP,
        "accounts",
    )
    assert (job.column_delimiter, job.line_ending, job.external_id_field) == (
        ColumnDelimiter.COMMA,
        LineEnding.LF,
        None,
    )
    assert job.object_key == "acme/Accounts/jan.csv"
    assert job.files == [
        SourceFile(
            bucket=INGEST_BUCKET, key="acme/Accounts/jan.csv", size=len(BODY), gzip=False, etag=dropped.etag.strip('"')
        )
    ]
    assert job.tenant_generation == ports.tenants.get("acme").generation
    assert job.queued_at is not None and job.db_user == "tenant_acme"
    assert ports.queue.messages == [BulkJobQueuedMessage(job_id=job.job_id, tenant_id="acme")]
    assert jobs(ports) == [job]
    assert ports.bulk.jobs.pending_since(job.job_id) is not None  # the reconciler will look after it


def test_the_same_event_twice_makes_one_job(ports):
    """Its messages name the one job (a delivery queues it again while it has not started: the executor starts a
    job once, which tests/e2e/test_bulk_ingest.py checks on the stack)."""
    dropped = drop(ports, "acme/accounts/jan.csv")
    first = accept_drop(ports, dropped)
    assert accept_drop(ports, dropped) is None
    assert accept_drop(ports, DroppedObject(**{**dropped.__dict__, "etag": dropped.etag.strip('"')})) is None
    assert jobs(ports) == [first]
    assert {m.job_id for m in ports.queue.messages} == {first.job_id}


def test_the_same_file_put_again_is_a_new_job(ports):
    """An unversioned bucket gives the same file the same ETag each time: S3's sequencer tells the writes apart."""
    dropped = drop(ports, "acme/accounts/jan.csv")
    first = accept_drop(ports, DroppedObject(**{**dropped.__dict__, "sequencer": "0001"}))
    second = accept_drop(ports, DroppedObject(**{**dropped.__dict__, "sequencer": "0002"}))
    assert second is not None and second.job_id != first.job_id
    assert accept_drop(ports, DroppedObject(**{**dropped.__dict__, "sequencer": "0002"})) is None
    assert len(jobs(ports)) == 2 and {m.job_id for m in ports.queue.messages} == {first.job_id, second.job_id}


def test_a_new_upload_to_the_same_key_is_a_new_job(ports):
    first = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    second = accept_drop(ports, drop(ports, "acme/accounts/jan.csv", b"id,name\n3,Cy\n"))
    assert second is not None and second.job_id != first.job_id
    assert len(jobs(ports)) == 2


def test_gzip_files_are_marked_as_such_and_schema_qualified_tables_are_accepted(ports):
    job = accept_drop(ports, drop(ports, "acme/Sales.Orders/jan.CSV.GZ"))
    assert job.state is BulkState.UPLOAD_COMPLETE
    assert job.files[0].gzip is True and job.object == "sales.orders"


def test_object_metadata_sets_the_jobs_options(ports):
    metadata = {"operation": "upsert", "externalIdFieldName": "ID", "columnDelimiter": "SEMICOLON"}
    metadata["lineEnding"] = "CRLF"
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv", metadata=metadata))
    assert (job.operation, job.external_id_field) == (BulkOperation.UPSERT, "id")
    assert (job.column_delimiter, job.line_ending) == (ColumnDelimiter.SEMICOLON, LineEnding.CRLF)


def test_a_sidecar_wins_over_metadata_field_by_field(ports):
    sidecar(ports, "acme/accounts/jan.json", {"operation": "upsert", "externalIdFieldName": "email"})
    metadata = {"operation": "update", "externalidfieldname": "id", "columndelimiter": "TAB"}
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv.gz", metadata=metadata))
    assert (job.operation, job.external_id_field) == (BulkOperation.UPSERT, "email")  # the sidecar's
    assert job.column_delimiter is ColumnDelimiter.TAB  # the metadata's, which the sidecar did not set


@pytest.mark.parametrize(("data", "side"), [("DATA.CSV", "DATA.JSON"), ("Data.csv.gz", "Data.json")])
def test_a_sidecar_in_capitals_is_read_for_its_data_file_and_makes_no_job_itself(ports, data, side):
    """Every object is announced now: DATA.JSON was skipped as a sidecar yet never read for DATA.CSV, whose rows
    were then inserted where the sidecar asked to delete."""
    document = json.dumps({"operation": "delete", "externalIdFieldName": "id"}).encode()
    assert accept_drop(ports, drop(ports, f"acme/accounts/{side}", document)) is None  # the sidecar's own event
    job = accept_drop(ports, drop(ports, f"acme/accounts/{data}"))
    assert (job.operation, job.external_id_field) == (BulkOperation.DELETE, "id")
    assert jobs(ports) == [job]


UPSERT_BY_ID = {"operation": "upsert", "externalIdFieldName": "id"}


def test_a_sidecar_after_its_file_fails_the_files_job_before_it_starts(ports):
    """`aws s3 sync` uploads in parallel: the file's job was made with the defaults (an insert) before its sidecar
    (an upsert) was written. Not started yet, it is left to the executor, which fails it saying why, and nothing is
    loaded; the file put again loads with the sidecar."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    first = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    assert first.operation is BulkOperation.INSERT
    sidecar(ports, "acme/accounts/jan.json", UPSERT_BY_ID)
    late = DroppedObject(bucket=INGEST_BUCKET, key="acme/accounts/jan.json", size=40, etag="e1")
    assert accept_drop(ports, late) is None
    assert ports.bulk.jobs.get(first.job_id).state is BulkState.UPLOAD_COMPLETE
    assert start_bulk_job(ports, ports.queue.messages[0]) is None
    failed = ports.bulk.jobs.get(first.job_id)
    assert (failed.state, failed.error.code) == (BulkState.FAILED, "late_sidecar")
    assert "jan.json came after it and asks for operation upsert, externalIdFieldName id" in failed.error.message
    assert "put jan.csv again" in failed.error.message
    assert [j.job_id for j in jobs(ports)] == [first.job_id]  # no job of its own: the file's says it
    again = DroppedObject(bucket=INGEST_BUCKET, key="acme/accounts/jan.csv", size=len(BODY), etag="e2")
    assert accept_drop(ports, again).operation is BulkOperation.UPSERT


@pytest.mark.parametrize(
    ("data", "side"),
    [
        ("jan.csv", "jan.csv.json"),
        ("jan.csv.gz", "jan.csv.gz.json"),
        ("jan.csv.gz", "jan.csv.json"),
        ("JAN.CSV", "JAN.CSV.JSON"),
    ],
)
def test_a_file_beside_a_sidecar_named_after_it_with_its_extension_is_refused_not_inserted(ports, data, side):
    """No file reads ``jan.csv.json``: put first, its file was inserted where it asked for an upsert, and nothing
    said why (note 32's list). The file is refused, saying so, and nothing is loaded."""
    sidecar(ports, f"acme/accounts/{side}", UPSERT_BY_ID)
    assert accept_drop(ports, drop(ports, f"acme/accounts/{side}", json.dumps(UPSERT_BY_ID).encode())) is None
    job = accept_drop(ports, drop(ports, f"acme/accounts/{data}"))
    assert (job.state, job.error.code) == (BulkState.FAILED, "invalid_drop")
    right = data.split(".")[0] + ".json"
    assert f"sidecar {side} keeps the file's extension" in job.error.message
    assert f"put the sidecar again as {right}, then the file" in job.error.message
    assert ports.queue.messages == []  # nothing to load
    sidecar(ports, f"acme/accounts/{right}", UPSERT_BY_ID)  # named as it should be: read, and wins
    again = accept_drop(ports, drop(ports, f"acme/accounts/{data}", BODY + b"\n"))
    assert (again.operation, again.error) == (BulkOperation.UPSERT, None)


@pytest.mark.parametrize(
    ("data", "side"), [("mix.csv", "mix.Json"), ("MIX.CSV", "MIX.jSoN"), ("mix.csv.gz", "mix.JSon")]
)
def test_a_file_beside_a_sidecar_in_another_case_of_json_is_refused_not_inserted(ports, data, side):
    """A sidecar is read as .json or .JSON: mix.Json was taken for a misplaced data file (its job said drop files
    at .csv), and mix.csv was inserted where it asked for an upsert (the S3 drop review)."""
    sidecar(ports, f"acme/accounts/{side}", UPSERT_BY_ID)
    own = accept_drop(ports, drop(ports, f"acme/accounts/{side}", json.dumps(UPSERT_BY_ID).encode()))
    assert (own.state, own.error.code) == (BulkState.FAILED, "invalid_key")
    right = data.split(".")[0] + ".json"
    assert f"a sidecar ends .json or .JSON, so this one is not read; put it again as {right}" in own.error.message
    job = accept_drop(ports, drop(ports, f"acme/accounts/{data}"))
    assert (job.state, job.error.code) == (BulkState.FAILED, "invalid_drop")
    assert f"sidecar {side} ends {side[len(data.split('.')[0]) :]}, so it is not read for it" in job.error.message
    assert ports.queue.messages == []  # nothing loaded


def test_a_misnamed_sidecar_is_found_among_a_thousand_names_that_start_like_it(ports):
    """Listed by the stem alone (``jan.``), a folder of ``jan.2024-…`` files and their sidecars filled the first page
    of names, and ``jan.csv.json`` or ``jan.Json`` past it went unseen: the file was inserted (the diff review)."""
    for n in range(1_001):
        ports.bulk.files.client.put_object(Bucket=INGEST_BUCKET, Key=f"acme/accounts/jan.2024-{n:05d}.json", Body=b"{}")
    for side in ("jan.csv.json", "jan.Json"):
        sidecar(ports, f"acme/accounts/{side}", UPSERT_BY_ID)
        job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv", BODY + side.encode()))
        assert (job.state, job.error.code) == (BulkState.FAILED, "invalid_drop"), side
        assert f"sidecar {side} " in job.error.message
        ports.bulk.files.client.delete_object(Bucket=INGEST_BUCKET, Key=f"acme/accounts/{side}")
    assert ports.queue.messages == []


def test_the_names_beside_a_file_are_listed_only_where_a_sidecar_could_be(ports):
    """A folder of rotated copies (jan.csv.00000, ...) was listed page by page at each drop of jan.csv (the second
    diff review): only names continuing ``.j`` or ``.J`` are listed."""
    client = ports.bulk.files.client
    for n in range(1_001):
        client.put_object(Bucket=INGEST_BUCKET, Key=f"acme/accounts/jan.csv.{n:05d}", Body=b"id\n1\n")
    client.requests.clear()
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    assert job.error is None
    listed = [prefix for call, prefix in client.requests if call == "ListObjectsV2"]
    assert listed and all(prefix.endswith((".j", ".J")) for prefix in listed), listed


def test_a_sidecar_named_after_its_file_in_another_case_of_json_is_told_the_name_it_should_have(ports):
    own = accept_drop(ports, drop(ports, "acme/accounts/jan.csv.Json", json.dumps(UPSERT_BY_ID).encode()))
    assert (own.state, own.error.code) == (BulkState.FAILED, "invalid_key")
    assert own.error.message.endswith("put it again as jan.json, then its file")


def test_a_sidecar_named_after_its_file_put_after_it_stops_the_load_or_is_reported(ports):
    """The diff review: put after the file's event (aws s3 sync), it did not stop the load, nor was it reported."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    waiting = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    sidecar(ports, "acme/accounts/jan.csv.json", UPSERT_BY_ID)
    late = DroppedObject(bucket=INGEST_BUCKET, key="acme/accounts/jan.csv.json", size=40, etag="e1")
    assert accept_drop(ports, late) is None  # not started: left to the executor
    assert start_bulk_job(ports, ports.queue.messages[0]) is None
    failed = ports.bulk.jobs.get(waiting.job_id)
    assert (failed.state, failed.error.code) == (BulkState.FAILED, "invalid_drop")
    assert "sidecar jan.csv.json keeps the file's extension" in failed.error.message
    assert ports.warehouse.statements == {}

    started = accept_drop(ports, drop(ports, "acme/accounts/feb.csv"))
    ports.bulk.jobs.transition(started.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE})
    sidecar(ports, "acme/accounts/feb.csv.json", UPSERT_BY_ID)
    late = DroppedObject(bucket=INGEST_BUCKET, key="acme/accounts/feb.csv.json", size=40, etag="e2")
    report = accept_drop(ports, late)
    assert (report.state, report.error.code) == (BulkState.FAILED, "late_sidecar")
    assert f"feb.csv.json came after feb.csv, whose job {started.job_id} was InProgress" in report.error.message
    assert "Put a sidecar before its file (name it feb.json)" in report.error.message


def test_a_stray_sidecar_named_after_a_file_that_ran_with_its_own_is_not_reported(ports):
    """The second diff review: jan.json set the load's options, and a jan.csv.json put later (asking for others) was
    reported as a sidecar the load may have run without."""
    sidecar(ports, "acme/accounts/jan.json", UPSERT_BY_ID)
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    ports.bulk.jobs.transition(job.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE})
    sidecar(ports, "acme/accounts/jan.csv.json", {"operation": "insert"})
    stray = DroppedObject(bucket=INGEST_BUCKET, key="acme/accounts/jan.csv.json", size=30, etag="e3")
    assert accept_drop(ports, stray) is None
    assert [j.job_id for j in jobs(ports)] == [job.job_id]


def test_the_sidecar_of_a_file_named_x_csv_csv_is_x_csv_json_as_ever(ports):
    sidecar(ports, "acme/accounts/x.csv.json", UPSERT_BY_ID)
    assert accept_drop(ports, drop(ports, "acme/accounts/x.csv.json", json.dumps(UPSERT_BY_ID).encode())) is None
    job = accept_drop(ports, drop(ports, "acme/accounts/x.csv.csv"))
    assert (job.operation, job.error) == (BulkOperation.UPSERT, None)
    assert [j.job_id for j in jobs(ports)] == [job.job_id]


def test_a_sidecar_naming_no_key_for_an_update_loads_by_id(ports):
    """Tooling that writes every field writes ``"externalIdFieldName": null``: the job keys on ``id``, as an update
    naming none does, and the executor's second read of the sidecar finds it asking for nothing else (found by
    review: the job failed late_sidecar, "asks for externalIdFieldName None")."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    sidecar(ports, "acme/accounts/jan.json", {"operation": "update", "externalIdFieldName": None})
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    assert (job.operation, job.external_id_field) == (BulkOperation.UPDATE, "id")
    started = start_bulk_job(ports, ports.queue.messages[0])
    assert started is not None and started.statement_id, ports.bulk.jobs.get(job.job_id).error


def test_a_sidecar_after_its_file_started_is_reported_by_a_failed_job_of_its_own(ports):
    first = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    ports.bulk.jobs.transition(first.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE})
    sidecar(ports, "acme/accounts/jan.json", UPSERT_BY_ID)
    late = DroppedObject(bucket=INGEST_BUCKET, key="acme/accounts/jan.json", size=40, etag="e1")
    accept_drop(ports, late)
    accept_drop(ports, late)  # the event again: one report
    report = ports.bulk.jobs.get(late.job_id)
    assert (report.state, report.error.code, report.object_key) == (BulkState.FAILED, "late_sidecar", late.key)
    assert f"jan.json came after jan.csv, whose job {first.job_id} was InProgress by then" in report.error.message
    assert ports.bulk.jobs.get(first.job_id).state is BulkState.IN_PROGRESS  # left to finish: it started
    assert sorted(j.job_id for j in jobs(ports)) == sorted([first.job_id, late.job_id])


def test_a_late_sidecar_is_reported_however_many_bulk_api_jobs_came_since(ports):
    """The drop options review: the lookup read the tenant's newest 100 jobs of any kind, so a tenant using the Bulk
    API beside the S3 door had a sidecar put seconds after its file go unreported, the file loaded as an insert."""
    from spectra.bulk.service import NewJob, create_job
    from spectra.tenants import Caller

    first = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    ports.bulk.jobs.transition(first.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE})
    api = Caller.of(ports.tenants.get("acme"))
    for _ in range(LATE_SIDECAR_JOBS + 1):  # the other door's jobs
        create_job(ports, api, NewJob(object="accounts", operation=BulkOperation.INSERT))
    sidecar(ports, "acme/accounts/jan.json", UPSERT_BY_ID)
    late = DroppedObject(bucket=INGEST_BUCKET, key="acme/accounts/jan.json", size=40, etag="e1")
    accept_drop(ports, late)
    report = ports.bulk.jobs.get(late.job_id)
    assert (report.state, report.error.code) == (BulkState.FAILED, "late_sidecar"), report


def test_a_sidecar_put_seconds_after_its_file_is_reported_however_late_its_event_is_handled(ports, monkeypatch):
    """Found by the clocks review: a sidecar put 20 s after its file, whose event was handled 6 minutes later (a
    backlog on the drop queue, failed receives, a redrive from the DLQ), went unreported while the file loaded as an
    insert where an upsert was meant: the 5 minutes ran back from the handling, not from the sidecar's write."""
    written = utcnow()
    put = drop(ports, "acme/accounts/jan.csv")
    first = accept_drop(ports, DroppedObject(INGEST_BUCKET, put.key, put.size, put.etag, written_at=written))
    ports.bulk.jobs.transition(first.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE})
    sidecar(ports, "acme/accounts/jan.json", UPSERT_BY_ID)
    late = DroppedObject(INGEST_BUCKET, "acme/accounts/jan.json", 40, "e1", written_at=written + timedelta(seconds=20))
    monkeypatch.setattr(drops, "utcnow", lambda: first.created_at + timedelta(minutes=6))  # its event, handled late
    report = accept_drop(ports, late)
    assert (report.state, report.error.code, report.object_key) == (BulkState.FAILED, "late_sidecar", late.key)
    assert f"whose job {first.job_id} was InProgress by then" in report.error.message


def test_a_sidecar_its_own_event_cannot_tell_about_is_caught_before_the_load(ports):
    """The sidecar's event can run before the file's job is written, or miss it in the tenant index (eventually
    consistent on AWS): it finds nothing. The executor reads the sidecar again before it loads (found by review: the
    file loaded as an insert, unreported)."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    sidecar(ports, "acme/accounts/jan.JSON", UPSERT_BY_ID)  # its event found no job
    [message] = ports.queue.messages
    assert start_bulk_job(ports, message) is None
    failed = ports.bulk.jobs.get(job.job_id)
    assert (failed.state, failed.error.code, failed.statement_id) == (BulkState.FAILED, "late_sidecar", None)
    assert "its sidecar jan.JSON came after it and asks for operation upsert" in failed.error.message
    assert ports.warehouse.statements == {}


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({"operation": "UPSERT", "externalIdFieldName": "id"}, "operation: Input should be"),  # the enum's case
        ({**UPSERT_BY_ID, "comment": "daily"}, "comment: Extra inputs are not permitted"),
        ({**UPSERT_BY_ID, "columnDelimiter": ","}, "columnDelimiter: Input should be"),  # the character, not COMMA
        (b'{"operation": "upsert", "externalIdFieldName": "id",}', "is not a JSON object"),  # a trailing comma
    ],
)
def test_a_late_sidecar_that_is_not_valid_fails_the_job_rather_than_load_it_with_the_defaults(ports, document, says):
    """Put before its file, each fails the file's job invalid_drop; put a moment after (aws s3 sync), both checks
    passed over it and the file loaded as an insert where an upsert was meant, unreported (found by the drops
    review)."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    sidecar(ports, "acme/accounts/jan.json", document)
    assert accept_drop(ports, DroppedObject(bucket=INGEST_BUCKET, key="acme/accounts/jan.json", size=9)) is None
    assert start_bulk_job(ports, ports.queue.messages[0]) is None
    failed = ports.bulk.jobs.get(job.job_id)
    assert (failed.state, failed.error.code, failed.statement_id) == (BulkState.FAILED, "late_sidecar", None)
    assert (
        "its sidecar jan.json came after it and is not valid" in failed.error.message and says in failed.error.message
    )
    assert ports.warehouse.statements == {}


def test_a_late_sidecar_that_is_not_valid_is_reported_for_a_started_job(ports):
    first = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    ports.bulk.jobs.transition(first.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE})
    sidecar(ports, "acme/accounts/jan.json", {**UPSERT_BY_ID, "comment": "daily"})
    late = DroppedObject(bucket=INGEST_BUCKET, key="acme/accounts/jan.json", size=40, etag="e1")
    report = accept_drop(ports, late)
    assert (report.state, report.error.code) == (BulkState.FAILED, "late_sidecar")
    assert "the sidecar asks for options it cannot give (job options are not valid: comment" in report.error.message


def test_a_file_and_sidecar_put_again_while_the_first_job_waits_fail_it_file_replaced(ports):
    """Both replaced, in the right order, while the first job waited: the first job's file is gone, which is what
    it says (found by review: it said late_sidecar and told the tenant to put the file again, which the newer job
    loads already; the new sidecar's own event said so too, before the file came)."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    sidecar(ports, "acme/accounts/jan.json", {"operation": "insert"})
    first = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    sidecar(ports, "acme/accounts/jan.json", UPSERT_BY_ID)
    accept_drop(ports, DroppedObject(bucket=INGEST_BUCKET, key="acme/accounts/jan.json", size=40, etag="e9"))
    assert ports.bulk.jobs.get(first.job_id).state is BulkState.UPLOAD_COMPLETE  # left to the executor
    accept_drop(ports, drop(ports, "acme/accounts/jan.csv", b"id,name\n3,Cid\n"))
    assert start_bulk_job(ports, ports.queue.messages[0]) is None
    failed = ports.bulk.jobs.get(first.job_id)
    assert (failed.state, failed.error.code) == (BulkState.FAILED, "file_replaced")
    # named as its tenant put it: the bucket's name holds the account id, which tenants are not told (leak review)
    assert failed.error.message.startswith("acme/accounts/jan.csv was replaced") and INGEST_BUCKET not in str(failed)


def test_the_same_file_put_again_with_a_new_sidecar_fails_the_waiting_job_file_replaced(ports):
    """The same bytes put again have the same ETag: the write's time tells that the key was put again after the job
    was made. The newer upload's job loads it with the newer sidecar; the first job loads nothing, and says why (it
    blamed the sidecar and advised putting the file again, which would have loaded it twice: found by review)."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    sidecar(ports, "acme/accounts/jan.json", {"operation": "insert"})
    first = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    ports.bulk.jobs._items[first.job_id]["created_at"] = (utcnow() - timedelta(seconds=10)).isoformat()
    sidecar(ports, "acme/accounts/jan.json", UPSERT_BY_ID)
    again = drop(ports, "acme/accounts/jan.csv")  # the very same bytes, a new write (S3 gives it a new sequencer)
    newer = accept_drop(
        ports, DroppedObject(bucket=again.bucket, key=again.key, size=again.size, etag=again.etag, sequencer="0A")
    )
    assert newer.operation is BulkOperation.UPSERT
    assert start_bulk_job(ports, ports.queue.messages[0]) is None
    failed = ports.bulk.jobs.get(first.job_id)
    assert (failed.state, failed.error.code, failed.files) == (BulkState.FAILED, "file_replaced", [])
    assert "replaced by a newer upload" in failed.error.message
    assert ports.warehouse.statements == {}


def test_a_sidecar_the_job_was_made_with_does_not_stop_the_load(ports):
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    sidecar(ports, "acme/accounts/jan.json", {"operation": "insert", "columnDelimiter": "COMMA"})
    accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    assert start_bulk_job(ports, ports.queue.messages[0]).state is BulkState.IN_PROGRESS


@pytest.mark.parametrize("case", ["before", "same options", "long after", "another file"])
def test_a_sidecar_that_changes_nothing_that_ran_makes_no_report(ports, case):
    if case == "before":  # the usual order: the file's job read it
        sidecar(ports, "acme/accounts/jan.json", UPSERT_BY_ID)
    file = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    if case == "long after":  # a sidecar for the next drop of that name, not this one's
        ports.bulk.jobs._items[file.job_id]["created_at"] = (utcnow() - timedelta(minutes=6)).isoformat()
    document = {"operation": "insert"} if case == "same options" else UPSERT_BY_ID
    name = "feb.json" if case == "another file" else "jan.json"
    sidecar(ports, f"acme/accounts/{name}", document)
    assert accept_drop(ports, DroppedObject(bucket=INGEST_BUCKET, key=f"acme/accounts/{name}", size=9)) is None
    assert ports.bulk.jobs.get(file.job_id).state is BulkState.UPLOAD_COMPLETE
    assert [j.job_id for j in jobs(ports)] == [file.job_id]


def test_a_folder_marker_makes_no_job(ports):
    """The S3 console's "Create folder" writes an empty object named with a trailing slash."""
    assert accept_drop(ports, drop(ports, "acme/accounts/", b"")) is None
    assert jobs(ports) == []


def test_metadata_that_is_not_an_option_is_ignored(ports):
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv", metadata={"owner": "finance"}))
    assert job.state is BulkState.UPLOAD_COMPLETE and job.operation is BulkOperation.INSERT


# -- drops that cannot be loaded: a Failed job that says why --------------------------------------------------------


def failed_drop(ports, key: str, **kwargs):
    returned = accept_drop(ports, drop(ports, key, **kwargs))
    assert returned is not None and returned.state is BulkState.FAILED
    assert ports.queue.messages == []  # nothing to start
    job = ports.bulk.jobs.get(returned.job_id)
    assert (job.state, job.error, job.event_published) == (BulkState.FAILED, returned.error, True)
    assert ports.events.types() == ["Bulk Job Failed"]
    assert s3(ports).tags(INGEST_BUCKET, key) == {"spectra-processed": "true"}
    return job


@pytest.mark.parametrize(
    ("document", "words"),
    [
        (b"{not json", "is not a JSON object"),
        ([1, 2], "is not a JSON object: it must be a JSON object"),
        ({"operation": "merge"}, "operation"),
        ({"operation": "insert", "delimiter": ","}, "delimiter"),  # a misspelt option is not silently ignored
        ({"columnDelimiter": ","}, "columnDelimiter"),  # Bulk 2.0 names, not the character
        ({"operation": "query"}, "cannot run a query"),
        ({"operation": "upsert"}, "needs externalIdFieldName"),
        (b"{" + b" " * SIDECAR_MAX_BYTES + b"}", f"larger than {SIDECAR_MAX_BYTES} bytes"),
    ],
)
def test_a_bad_sidecar_fails_the_job_with_the_reason(ports, document, words):
    sidecar(ports, "acme/accounts/jan.json", document)
    job = failed_drop(ports, "acme/accounts/jan.csv")
    assert job.error.code == "invalid_drop"
    assert job.error.message.startswith("acme/accounts/jan.csv: ")
    assert words in job.error.message
    # an ingest job whatever the options asked (a query job has no unprocessedrecords to list the file's records in)
    assert job.operation is not BulkOperation.QUERY


@pytest.mark.parametrize("name", ["\u212aey", "e-mail", "key\n"])
def test_a_sidecars_external_id_field_that_is_not_a_column_name_fails_the_job(ports, name):
    """Found by the names review: a sidecar's externalIdFieldName was checked only for its length, so the Kelvin
    sign's "\u212aey" was lower-cased to the column key and upserted by it (the API refuses the name: it is no
    column name)."""
    sidecar(ports, "acme/accounts/jan.json", {"operation": "upsert", "externalIdFieldName": name})
    job = failed_drop(ports, "acme/accounts/jan.csv")
    assert job.error.code == "invalid_drop" and "externalIdFieldName: String should match pattern" in job.error.message


def test_bad_metadata_fails_the_job_with_the_reason(ports):
    job = failed_drop(ports, "acme/accounts/jan.csv", metadata={"lineEnding": "CR"})
    assert job.error.code == "invalid_drop" and "lineEnding" in job.error.message


@pytest.mark.parametrize(
    ("key", "code", "obj"),
    [
        ("acme/jan.csv", "invalid_key", "-"),  # no table
        ("acme/accounts/2026/jan.csv", "invalid_key", "-"),  # deeper
        ("acme/accounts/jan.txt", "invalid_key", "accounts"),
        ("acme/bad-name/jan.csv", "invalid_drop", "bad-name"),
        ("acme/a.b.c/jan.csv", "invalid_drop", "a.b.c"),
    ],
)
def test_a_key_outside_tenant_table_fails_visibly(ports, key, code, obj):
    job = failed_drop(ports, key)
    assert (job.error.code, job.object) == (code, obj)
    assert job.error.message.startswith(key)
    assert jobs(ports) == [job]  # the tenant sees it in its list


def test_a_table_name_ending_in_a_line_break_is_not_a_table_name(ports):
    """Found by the names review: a drop at ``acme/accounts%0A/jan.csv`` (S3's event spelling) queued a job for the
    table "accounts\\n": the name was checked with re.match, whose $ also matches before a final line break."""
    key = DroppedObject.from_notification(notification("acme/accounts%0A/jan.csv")).key
    job = failed_drop(ports, key)
    assert (job.error.code, job.object) == ("invalid_drop", "accounts\n")
    assert "is not a table name" in job.error.message


def test_the_failed_job_lists_every_record_as_unprocessed(ports):
    job = failed_drop(ports, "acme/accounts/2026/jan.csv")
    assert job.results_ready is True
    assert result_file(ports, job.job_id, "unprocessed") == BODY


@pytest.mark.parametrize("key", ["globex/accounts/jan.csv", "ACME/accounts/jan.csv", "../accounts/jan.csv", "/x.csv"])
def test_a_drop_naming_no_tenant_makes_no_job_and_is_tagged(ports, key):
    assert accept_drop(ports, drop(ports, key)) is None
    assert s3(ports).tags(INGEST_BUCKET, key) == {"spectra-rejected": "no-active-tenant"}
    assert jobs(ports) == [] and ports.queue.messages == [] and ports.events.events == []


def test_an_inactive_tenants_drop_makes_no_job(ports):
    ports.tenants.set_active("acme", False)
    assert accept_drop(ports, drop(ports, "acme/accounts/jan.csv")) is None
    assert jobs(ports) == []
    assert s3(ports).tags(INGEST_BUCKET, "acme/accounts/jan.csv") == {"spectra-rejected": "no-active-tenant"}


def test_a_drop_whose_object_is_already_gone_is_tagged_quietly(ports):
    dropped = DroppedObject(bucket=INGEST_BUCKET, key="globex/accounts/gone.csv", size=3, etag="e")
    assert accept_drop(ports, dropped) is None  # tagging a deleted object is not an error


def test_a_job_the_queue_refused_is_queued_by_the_events_next_delivery(ports):
    """Nothing is wrong with the file: the job waits, not started, and the event's redelivery queues it."""
    ports.queue.fail_next()
    dropped = drop(ports, "acme/accounts/jan.csv")
    with pytest.raises(Exception, match="gone"):
        accept_drop(ports, dropped)  # the record fails: SQS delivers the event again
    assert ports.bulk.jobs.get(dropped.job_id).state is BulkState.UPLOAD_COMPLETE and ports.queue.messages == []
    assert accept_drop(ports, dropped) is None  # the retried event finds the job: no second one
    assert jobs(ports) == [ports.bulk.jobs.get(dropped.job_id)]
    assert [(m.job_id, m.tenant_id) for m in ports.queue.messages] == [(dropped.job_id, "acme")]


def test_a_repeated_event_of_a_started_job_queues_nothing(ports):
    dropped = drop(ports, "acme/accounts/jan.csv")
    accept_drop(ports, dropped)
    ports.bulk.jobs.transition(dropped.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE})
    ports.queue.messages.clear()
    assert accept_drop(ports, dropped) is None
    assert ports.queue.messages == []


@pytest.fixture
def refused_drop_cut_short(ports, monkeypatch):
    """A refused drop (a misspelt option) whose Failed write never happened: the function died right before it."""
    sidecar(ports, "acme/accounts/jan.json", {"operation": "upsert", "externalIdField": "email"})
    dropped = drop(ports, "acme/accounts/jan.csv")
    finish = drops.finish_bulk_job
    monkeypatch.setattr(drops, "finish_bulk_job", lambda *args, **kwargs: (_ for _ in ()).throw(RuntimeError("died")))
    with pytest.raises(RuntimeError):
        accept_drop(ports, dropped)
    monkeypatch.setattr(drops, "finish_bulk_job", finish)
    assert ports.bulk.jobs.get(dropped.job_id).state is BulkState.UPLOAD_COMPLETE
    return dropped


def test_a_refused_drop_whose_failing_was_cut_short_is_failed_by_the_events_redelivery(ports, refused_drop_cut_short):
    job = accept_drop(ports, refused_drop_cut_short)
    assert job.state is BulkState.FAILED and job.error.code == "invalid_drop" and "externalIdField" in job.error.message
    assert ports.queue.messages == []
    assert accept_drop(ports, refused_drop_cut_short) is None  # once failed, a further copy changes nothing


def test_a_refused_drop_the_reconciler_queues_is_failed_by_the_executor_never_loaded(ports, refused_drop_cut_short):
    """Should the event's retries run out, the reconciler queues the UploadComplete job; the executor fails it with
    the reason it was refused for instead of loading the file as a default insert."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    reconcile_bulk(
        ports, utcnow() + timedelta(seconds=301), Thresholds.from_settings(ports.settings), ReconcileSummary()
    )
    [message] = ports.queue.messages
    assert start_bulk_job(ports, message) is None
    job = ports.bulk.jobs.get(refused_drop_cut_short.job_id)
    assert job.state is BulkState.FAILED and job.error.code == "invalid_drop"
    assert ports.warehouse.calls == [] and ports.slots.holders("acme") == {}


def test_a_file_put_through_a_previous_tenants_drop_url_is_not_loaded(ports):
    """A drop URL signs in the generation of the tenant it was issued to: after the tenant id is deleted and created
    again, a file put through the old URL makes no job for the new tenant, and is tagged."""
    issued_to = ports.tenants.get("acme").generation
    ports.tenants.delete_tenant("acme")
    ports.tenants.create_tenant("acme", db_user="tenant_acme_2")
    dropped = drop(ports, "acme/accounts/jan.csv", metadata={"spectra-generation": issued_to})
    assert accept_drop(ports, dropped) is None
    assert jobs(ports) == [] and ports.queue.messages == []
    assert s3(ports).tags(INGEST_BUCKET, "acme/accounts/jan.csv") == {"spectra-rejected": "previous-tenant"}
    current = ports.tenants.get("acme").generation
    assert accept_drop(ports, drop(ports, "acme/accounts/feb.csv", metadata={"spectra-generation": current}))


def test_a_file_replaced_before_its_job_starts_fails_that_job_and_only_the_newer_one_loads(ports):
    """The ingest bucket keeps no versions: once a newer upload replaced a dropped file, the first job has nothing of
    its own left to load. It fails saying so, with no files (the newer upload's job lists and tags them); the same
    bytes put again are the same file, and load (a new upload of the very same file is a new job by design)."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    first = drop(ports, "acme/accounts/jan.csv")
    accept_drop(ports, first)
    second = drop(ports, "acme/accounts/jan.csv", b"id,name\n3,Cid\n")
    accept_drop(ports, second)
    replaced, newer = ports.queue.messages
    assert start_bulk_job(ports, replaced) is None
    job = ports.bulk.jobs.get(first.job_id)
    assert job.state is BulkState.FAILED and job.error.code == "file_replaced" and job.files == []
    assert "replaced by a newer upload" in job.error.message
    assert s3(ports).tags(INGEST_BUCKET, "acme/accounts/jan.csv") == {}  # the newer file's job marks it processed
    assert start_bulk_job(ports, newer).state is BulkState.IN_PROGRESS
    again = drop(ports, "acme/accounts/feb.csv")
    accept_drop(ports, again)
    accept_drop(ports, drop(ports, "acme/accounts/feb.csv"))
    assert start_bulk_job(ports, ports.queue.messages[2]).state is BulkState.IN_PROGRESS


# -- what a real bucket sends (drops review) --------------------------------------------------------------------------


def test_a_file_put_through_a_drop_url_runs_with_its_signed_options_whatever_sidecar_is_there(ports):
    """Sidecars are never expired: one an operator left (here for an earlier tenant of the same id) won over the
    options a drop URL signed in, and a tenant's insert ran as a DELETE of the matching rows."""
    from spectra.bulk.uploads import drop_upload_url
    from spectra.tenants import Caller

    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    sidecar(ports, "acme/accounts/daily.json", {"operation": "delete", "externalIdFieldName": "id"})
    ports.tenants.delete_tenant("acme")
    ports.tenants.create_tenant("acme", db_user="tenant_acme_2")
    answer = drop_upload_url(
        ports,
        Caller.of(ports.tenants.get("acme")),
        object_name="accounts",
        filename="daily",
        gzip=False,
        metadata={"operation": "insert"},
    )
    metadata = {name.removeprefix("x-amz-meta-"): value for name, value in answer["headers"].items()}
    job = accept_drop(ports, drop(ports, answer["key"], metadata=metadata))
    assert (job.operation, job.state) == (BulkOperation.INSERT, BulkState.UPLOAD_COMPLETE)
    started = start_bulk_job(ports, ports.queue.messages[-1])  # and the executor's sidecar check lets it load
    assert started.state is BulkState.IN_PROGRESS and started.operation is BulkOperation.INSERT
    # the sidecar's own event names no job of a URL's file as loaded without it
    assert accept_drop(ports, DroppedObject(bucket=INGEST_BUCKET, key="acme/accounts/daily.json", size=9)) is None


def test_the_same_bytes_put_again_before_the_first_writes_event_is_handled_load_once(ports):
    """The first write's event was handled late (a backlog, a redrive from the dead-letter queue), after the same
    bytes were put again and loaded by their own job: its job, made after both writes, found no write later than
    itself and loaded the rows a second time. The write's time comes from its notification now."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    tenant = ports.tenants.get("acme")
    ports.tenants.tenants["acme"] = tenant.model_copy(update={"created_at": utcnow() - timedelta(days=1)})
    first_write = utcnow() - timedelta(minutes=10)
    again = drop(ports, "acme/accounts/daily.csv")  # the same bytes, put again now
    newer = accept_drop(ports, DroppedObject(**{**vars(again), "sequencer": "0B", "written_at": utcnow()}))
    assert start_bulk_job(ports, ports.queue.messages[-1]).state is BulkState.IN_PROGRESS
    late = accept_drop(ports, DroppedObject(**{**vars(again), "sequencer": "0A", "written_at": first_write}))
    assert late.job_id != newer.job_id
    assert start_bulk_job(ports, ports.queue.messages[-1]) is None
    failed = ports.bulk.jobs.get(late.job_id)
    assert (failed.state, failed.error.code) == (BulkState.FAILED, "file_replaced")


def test_the_notifications_event_time_is_the_dropped_files_write_time():
    record = notification("acme/accounts/jan.csv", size=3, eTag="e")
    assert DroppedObject.from_notification(record).written_at is None
    timed = S3EventRecord.model_validate({**record.model_dump(), "eventTime": "2026-12-01T10:00:00.123Z"})
    assert DroppedObject.from_notification(timed).written_at.isoformat() == "2026-12-01T10:00:00.123000+00:00"


def test_a_file_whose_sidecar_key_would_pass_s3s_longest_is_a_job_not_a_dead_letter(ports, monkeypatch):
    """S3 answers a read of a key over 1,024 bytes 400 KeyTooLongError, not 404: the drop's record failed five times
    into the dead-letter queue, with no job, for a 1,024-byte data key (its sidecar's is one byte longer)."""
    from tests.unit.fakes import _client_error

    real_get = s3(ports).get_object

    def get_object(*, Bucket, Key, **kwargs):
        if len(Key.encode()) > 1024:
            raise _client_error("KeyTooLongError", "Your key is too long", "GetObject")
        return real_get(Bucket=Bucket, Key=Key, **kwargs)

    monkeypatch.setattr(s3(ports), "get_object", get_object)
    key = "acme/accounts/" + "x" * (1024 - len("acme/accounts/") - len(".csv")) + ".csv"
    s3(ports).requests.clear()
    job = accept_drop(ports, drop(ports, key))
    assert job.state is BulkState.UPLOAD_COMPLETE and job.operation is BulkOperation.INSERT
    # nor are names listed beside it that no key could have (the misnamed-sidecar check's, as its reads)
    listed = [prefix for call, prefix in s3(ports).requests if call == "ListObjectsV2"]
    assert all(len(f"{prefix}son".encode()) <= 1024 for prefix in listed), listed


def test_a_key_ending_in_a_slash_with_content_is_a_failed_job_not_a_folder_marker(ports):
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv/"))
    assert (job.state, job.error.code) == (BulkState.FAILED, "invalid_key")
    assert accept_drop(ports, drop(ports, "acme/accounts/", b"")) is None  # the console's "Create folder"


def test_a_sidecar_that_gives_a_field_twice_is_refused(ports):
    """Of two ``operation`` fields the last won, silently."""
    sidecar(ports, "acme/accounts/jan.json", b'{"operation": "delete", "operation": "insert"}')
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    assert (job.state, job.error.code) == (BulkState.FAILED, "invalid_drop")
    assert "given more than once: operation" in job.error.message


def test_what_is_not_a_drop_is_passed_over_with_a_log_line(ports, monkeypatch, caplog):
    """S3's s3:TestEvent (sent when notifications are configured) and events other than ObjectCreated were passed over
    without a line: nothing told an operator why a message made no job."""
    import logging

    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from producers.s3_drop import app

    monkeypatch.setattr(app, "get_ports", lambda: ports)
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": INGEST_BUCKET}
    removed = {"Records": [{**notification("acme/accounts/jan.csv").model_dump(), "eventName": "ObjectRemoved:Delete"}]}
    with caplog.at_level(logging.INFO):
        for body in (test_event, removed):
            app.record_handler(SQSRecord({"messageId": "m", "body": json.dumps(body)}))
    app.metrics.clear_metrics()
    told = [record.getMessage() for record in caplog.records]
    assert any("s3:TestEvent" in line for line in told) and any("ObjectRemoved:Delete" in line for line in told), told
    assert jobs(ports) == [] and ports.queue.messages == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"Type": "Notification", "Message": json.dumps({"Records": []})},  # S3 → SNS → SQS: an envelope
        {"detail-type": "Object Created", "source": "aws.s3", "detail": {"object": {"key": "acme/accounts/a.csv"}}},
    ],
)
def test_a_body_that_is_no_s3_notification_fails_into_the_dlq_instead_of_being_deleted(ports, monkeypatch, body):
    """Any JSON object without Records was taken for S3's test event: logged at INFO as "nothing dropped" and
    deleted, so a message about a file (in another envelope) was lost without a DLQ message or an alarm."""
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from pydantic import ValidationError

    from producers.s3_drop import app

    monkeypatch.setattr(app, "get_ports", lambda: ports)
    with pytest.raises(ValidationError):
        app.record_handler(SQSRecord({"messageId": "m", "body": json.dumps(body)}))
    app.metrics.clear_metrics()
    assert jobs(ports) == [] and ports.queue.messages == []


def test_a_drop_url_of_a_tenant_from_before_generations_is_marked_too(ports):
    """Its URL signed no generation, so its file looked like a direct put and a sidecar left under its name still
    turned its insert into a DELETE (diff review). It signs a placeholder now, which a tenant created again under the
    id (with a generation) refuses, as it refuses any earlier tenant's URL."""
    from spectra.bulk.uploads import drop_upload_url
    from spectra.tenants import Caller

    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    ports.tenants.tenants["acme"] = ports.tenants.get("acme").model_copy(update={"generation": None})
    sidecar(ports, "acme/accounts/daily.json", {"operation": "delete", "externalIdFieldName": "id"})
    legacy = Caller.of(ports.tenants.get("acme"))
    url = drop_upload_url(ports, legacy, object_name="accounts", filename="daily", gzip=False, metadata={})
    metadata = {name.removeprefix("x-amz-meta-"): value for name, value in url["headers"].items()}
    job = accept_drop(ports, drop(ports, url["key"], metadata=metadata))
    assert job.operation is BulkOperation.INSERT
    ports.tenants.delete_tenant("acme")
    ports.tenants.create_tenant("acme", db_user="tenant_acme_2")
    assert accept_drop(ports, drop(ports, "acme/accounts/daily.csv", b"id,name\n7,Gus\n", metadata=metadata)) is None


def test_a_late_sidecar_is_reported_for_a_direct_put_whatever_came_through_a_drop_url_after_it(ports):
    """Whether a job's file came through a drop URL was asked of the key as it is now: a direct put loading with the
    defaults, its sidecar late, was passed over once the key had been written through a drop URL since (diff
    review). The job records how its file came."""
    from spectra.bulk.uploads import drop_upload_url
    from spectra.tenants import Caller

    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    direct = accept_drop(ports, drop(ports, "acme/accounts/daily.csv"))
    assert start_bulk_job(ports, ports.queue.messages[-1]).operation is BulkOperation.INSERT
    sidecar(ports, "acme/accounts/daily.json", UPSERT_BY_ID)
    caller = Caller.of(ports.tenants.get("acme"))
    url = drop_upload_url(ports, caller, object_name="accounts", filename="daily", gzip=False, metadata={})
    metadata = {name.removeprefix("x-amz-meta-"): value for name, value in url["headers"].items()}
    drop(ports, url["key"], b"id,name\n3,Cy\n", metadata=metadata)  # its event not handled yet
    report = accept_drop(ports, DroppedObject(bucket=INGEST_BUCKET, key="acme/accounts/daily.json", size=9))
    assert report.error.code == "late_sidecar" and direct.job_id in report.error.message


def test_a_file_put_for_an_earlier_tenant_of_the_id_is_not_the_new_tenants(ports):
    """Put straight into the bucket for a tenant later deleted and created again, its event handled only after that
    (a backlog, a redrive): it was loaded into the new tenant's tables, as its user (isolation review). Its write
    time, from the notification, is before the new tenant was created."""
    ports.tenants.delete_tenant("acme")
    tenant = ports.tenants.create_tenant("acme", db_user="tenant_acme_2")
    dropped = drop(ports, "acme/accounts/jan.csv")
    before = DroppedObject(**{**vars(dropped), "written_at": tenant.created_at - timedelta(minutes=5)})
    assert accept_drop(ports, before) is None and jobs(ports) == []
    assert s3(ports).tags(INGEST_BUCKET, dropped.key) == {"spectra-rejected": "previous-tenant"}
    after = DroppedObject(**{**vars(dropped), "written_at": tenant.created_at + timedelta(seconds=1)})
    assert accept_drop(ports, after).state is BulkState.UPLOAD_COMPLETE


def _made_a_day_ago(ports) -> None:
    """Tenant acme as created a day ago (a write a few minutes old is then no earlier tenant's)."""
    made = ports.tenants.tenants["acme"]
    ports.tenants.tenants["acme"] = made.model_copy(update={"created_at": made.created_at - timedelta(days=1)})


def test_a_file_put_before_its_tenant_was_reactivated_is_not_loaded_when_its_event_comes_late(ports):
    """README: to stop a leaked key's work, deactivate the tenant. A file put through the key's drop URL while the
    tenant was inactive, its event handled (or handled again: a retry, a redrive) once the tenant was active again,
    was loaded as the tenant's (the drop review). One put after the reactivation is the tenant's."""
    _made_a_day_ago(ports)
    dropped = drop(ports, "acme/accounts/leak.csv")
    ports.tenants.set_active("acme", False)
    assert accept_drop(ports, dropped) is None  # handled while inactive: refused, tagged
    tenant = ports.tenants.set_active("acme", True)
    put_while_inactive = DroppedObject(**{**vars(dropped), "written_at": tenant.activated_at - timedelta(minutes=5)})
    assert accept_drop(ports, put_while_inactive) is None and jobs(ports) == []
    assert s3(ports).tags(INGEST_BUCKET, dropped.key) == {"spectra-rejected": "no-active-tenant"}
    after = DroppedObject(**{**vars(dropped), "written_at": tenant.activated_at + timedelta(seconds=1)})
    assert accept_drop(ports, after).state is BulkState.UPLOAD_COMPLETE


def test_a_standing_sidecar_put_while_the_tenant_was_active_is_read_after_a_reactivation(ports):
    """The diff review: the first version refused every sidecar written before the reactivation, so each day's
    ``daily.csv`` beside its standing ``daily.json`` failed invalid_drop once the tenant had been deactivated and
    activated again (a drop URL, all a leaked key gets, stores data files only)."""
    _made_a_day_ago(ports)
    sidecar(ports, "acme/accounts/daily.json", UPSERT_BY_ID)
    _written_before_the_tenant(ports, "acme/accounts/daily.json")  # put long ago, while the tenant was active
    ports.tenants.set_active("acme", False)
    ports.tenants.set_active("acme", True)
    job = accept_drop(ports, drop(ports, "acme/accounts/daily.csv"))
    assert job.state is BulkState.UPLOAD_COMPLETE and job.operation is BulkOperation.UPSERT


def test_a_record_naming_another_bucket_than_the_ingest_bucket_is_not_loaded(ports):
    """Only the ingest bucket notifies the queue; a record naming another bucket (put on the queue by hand) loaded
    that bucket's object as the tenant's (the drop review)."""
    other = "someone-elses-bucket"
    s3(ports).put_object(Bucket=other, Key="acme/accounts/x.csv", Body=b"id,name\n1,Ann\n")
    assert accept_drop(ports, DroppedObject(other, "acme/accounts/x.csv", 15, "e1")) is None
    assert jobs(ports) == [] and ports.queue.messages == []


def _written_before_the_tenant(ports, key: str) -> None:
    """Date the object's write back past the clock leeway before its tenant is (re-)created, as a sidecar an earlier
    tenant of the id put and left is (sidecars never expire), or one staged before the tenant was created."""
    s3(ports).objects[(INGEST_BUCKET, key)]["LastModified"] -= timedelta(minutes=5)


def test_a_sidecar_an_earlier_tenant_of_the_id_left_does_not_set_the_new_tenants_options(ports):
    """Found by the offboarding review: the predecessor's sidecar, left in the bucket, turned the new tenant's insert
    (a file put straight into the bucket, where sidecars apply) into the predecessor's delete, run as the new
    tenant's user on its tables. A sidecar written before its tenant was created is an earlier tenant's, as a data file
    is (its job would otherwise load with it, or the executor fail it late_sidecar)."""
    sidecar(ports, "acme/accounts/jan.json", {"operation": "delete", "externalIdFieldName": "id"})
    _written_before_the_tenant(ports, "acme/accounts/jan.json")
    ports.tenants.delete_tenant("acme")
    ports.tenants.create_tenant("acme", db_user="tenant_acme_2")
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    # refused, saying why, rather than loaded with the predecessor's options or silently without them
    assert (job.state, job.error.code) == (BulkState.FAILED, "invalid_drop")
    assert "jan.json was written before this tenant was created" in job.error.message
    assert ports.queue.messages == []  # nothing to load
    # put again for this tenant, the sidecar counts
    sidecar(ports, "acme/accounts/jan.json", UPSERT_BY_ID)
    again = accept_drop(ports, drop(ports, "acme/accounts/jan.csv", BODY + b"3,Cy\n"))
    assert (again.state, again.operation) == (BulkState.UPLOAD_COMPLETE, BulkOperation.UPSERT)


def test_a_sidecar_staged_before_its_tenant_was_created_is_refused_not_ignored(ports):
    """The diff review of the offboarding fix: an operator put ``daily.json`` (an upsert) and then created the tenant;
    the sidecar, older than the tenant, was read as none, and ``daily.csv`` loaded as an insert (duplicate rows),
    where before it loaded as the upsert asked. Neither its options nor their absence may be silent."""
    ports.tenants.create_tenant("globex", db_user="tenant_globex")
    sidecar(ports, "globex/accounts/daily.json", UPSERT_BY_ID)
    _written_before_the_tenant(ports, "globex/accounts/daily.json")
    job = accept_drop(ports, drop(ports, "globex/accounts/daily.csv"))
    assert (job.state, job.error.code) == (BulkState.FAILED, "invalid_drop")
    assert "daily.json was written before this tenant was created" in job.error.message
    assert ports.queue.messages == []


def test_a_new_tenants_late_sidecar_does_not_report_its_predecessors_job(ports):
    """Found by the offboarding review: a tenant id deleted and created again within minutes of a drop; the new
    tenant's sidecar of the same name made a Failed job in the new tenant's list naming the predecessor's job, its id
    and its state ("may have loaded without it"). The predecessor's jobs are not the new tenant's to hear of."""
    first = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    ports.bulk.jobs.transition(first.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE})
    ports.tenants.delete_tenant("acme")
    ports.tenants.create_tenant("acme", db_user="tenant_acme_2")
    sidecar(ports, "acme/accounts/jan.json", UPSERT_BY_ID)
    late = DroppedObject(bucket=INGEST_BUCKET, key="acme/accounts/jan.json", size=40, etag="e1")
    assert accept_drop(ports, late) is None
    assert [j.job_id for j in jobs(ports)] == [first.job_id]  # the predecessor's alone: no report naming it
