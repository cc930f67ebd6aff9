"""The S3 door (spectra.bulk.drops): behaviours no test held until a mutation run of the module showed them free to
change. Each test names what it pins; the module's docstring and the README's "The S3 door" say why they matter.

The fixtures and helpers are test_bulk_drops.py's (a tenant ``acme``, files put in the fake ingest bucket)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from spectra import logs
from spectra.bulk.drops import GENERATION_METADATA, DroppedObject, accept_drop
from spectra.bulk.files import CLOCK_LEEWAY
from spectra.bulk.lifecycle import start_bulk_job
from spectra.bulk.models import BulkOperation, BulkState, ColumnDelimiter, LineEnding
from spectra.bulk.store import BulkJobPage
from tests.unit.fakes import INGEST_BUCKET, make_ports
from tests.unit.test_bulk_drops import BODY, UPSERT_BY_ID, drop, jobs, s3, sidecar

pytestmark = pytest.mark.unit

#: The limits the README and the module's docstring give, written out: a test reading the module's constants would
#: follow a change of them instead of holding it.
SIDECAR_LIMIT = 64 * 1024
S3_LONGEST_KEY = 1024
PUT_AGAIN_MARGIN = timedelta(seconds=2)
LATE_SIDECAR_WINDOW = timedelta(minutes=5)
LATE_SIDECAR_JOBS = 100


@pytest.fixture
def ports():
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    return ports


def late_sidecar_event(key: str, **kwargs) -> DroppedObject:
    """The notification of a sidecar put (by :func:`sidecar`) after its file."""
    return DroppedObject(bucket=INGEST_BUCKET, key=key, size=40, etag="e1", **kwargs)


def started(ports, key: str = "acme/accounts/jan.csv", body: bytes = BODY, **kwargs):
    """A dropped file whose job the executor has started (as the sidecar's event sees it)."""
    job = accept_drop(ports, drop(ports, key, body, **kwargs))
    return ports.bulk.jobs.transition(job.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE})


def made_a_day_ago(ports) -> None:
    """Tenant acme as created a day ago, so that a write dated seconds before now is its own."""
    made = ports.tenants.tenants["acme"]
    ports.tenants.tenants["acme"] = made.model_copy(update={"created_at": made.created_at - timedelta(days=1)})


# -- the job id -----------------------------------------------------------------------------------------------------


def test_the_job_id_of_an_objects_write_is_the_same_in_every_release():
    """The job id is what makes a repeated event load once: an event delivered before a deploy and again after it
    (SQS redelivery, a redrive from the dead-letter queue) must name the same job, or the file loads twice. So the
    derivation (what goes in, in what order, the digest's length) is fixed, not only stable within one process."""
    written = DroppedObject("spectra-ingest-test", "acme/accounts/jan.csv", 12, '"e1"', "v1", "0055AED6DCD90281E5")
    assert written.job_id == "b_BLkQFMIZ3AfQZ4ylIuiRhg"
    unversioned = DroppedObject("spectra-ingest-test", "acme/accounts/jan.csv", 12, "e1")
    assert unversioned.job_id == "b_GS7Ov8B8wYy1mQ3FJVHscw"


# -- which keys are drops -------------------------------------------------------------------------------------------


def test_an_empty_csv_is_a_job_not_a_folder_marker(ports):
    """Only a key ending ``/`` with no content is the console's "Create folder": an empty ``jan.csv`` is a drop the
    tenant sees a job for, not one passed over in silence."""
    job = accept_drop(ports, drop(ports, "acme/accounts/empty.csv", b""))
    assert job is not None and job.state is BulkState.UPLOAD_COMPLETE and job.files[0].size == 0
    assert jobs(ports) == [job]


@pytest.mark.parametrize("key", ["acme/jan.json", "acme/accounts/2026/jan.json", "acme/accounts/2026/jan.Json"])
def test_a_json_file_deeper_or_shallower_than_a_table_is_a_failed_job_saying_where_drops_go(ports, key):
    """Only ``<tenant>/<table>/<name>.json`` is a sidecar (its event looks for a late one's file); a ``.json`` at
    any other depth is a misplaced drop, failed with the layout drops take, not read as a sidecar (whose event
    splits the key in three) nor told to be renamed as one."""
    job = accept_drop(ports, drop(ports, key, json.dumps(UPSERT_BY_ID).encode()))
    assert (job.state, job.error.code) == (BulkState.FAILED, "invalid_key")
    assert job.error.message.startswith(f"{key}: drop files at <tenant>/<table>/<name>.csv")
    assert job.error.message.endswith("nothing deeper or shallower")


def test_names_beside_a_file_that_only_start_like_a_sidecar_do_not_stop_its_load(ports):
    """The misnamed-sidecar check refuses a file beside ``jan.csv.json`` or ``jan.Json``; ``jan.jsonl``, ``jan.csv.js``
    and ``jan.JS``, which are no sidecar in any case, and ``jan.jul.json`` (``jan.jul.csv``'s, as long a name as
    ``jan.csv``), leave ``jan.csv`` to load with its own options."""
    for other in (
        "acme/accounts/jan.jsonl",
        "acme/accounts/jan.csv.js",
        "acme/accounts/jan.JS",
        "acme/accounts/jan.jul.json",
    ):
        sidecar(ports, other, UPSERT_BY_ID)
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    assert (job.state, job.error, job.operation) == (BulkState.UPLOAD_COMPLETE, None, BulkOperation.INSERT)


def test_a_sidecar_whose_key_is_s3s_longest_is_read(ports):
    """A data key of 1,023 bytes has a sidecar of 1,024, S3's longest key: it exists and is read (only a longer
    one, which S3 cannot hold, is not asked for)."""
    key = "acme/accounts/" + "x" * (S3_LONGEST_KEY - 1 - len("acme/accounts/") - len(".csv")) + ".csv"
    side = key.removesuffix(".csv") + ".json"
    assert len(side.encode()) == S3_LONGEST_KEY
    sidecar(ports, side, UPSERT_BY_ID)
    job = accept_drop(ports, drop(ports, key))
    assert (job.state, job.operation, job.external_id_field) == (BulkState.UPLOAD_COMPLETE, BulkOperation.UPSERT, "id")


def test_a_tenants_drop_binds_its_tenant_to_the_log_lines(ports):
    """README, "Logs keyed by job and tenant": an S3 drop binds the tenant when it finds it, for a data file and for a
    sidecar's event alike, so every line the record writes after that carries ``tenant_id``."""
    for key, body in (("acme/accounts/jan.csv", BODY), ("acme/accounts/feb.json", b"{}")):
        with logs.job_keys():
            accept_drop(ports, drop(ports, key, body))
            assert logs.current().get("tenant_id") == "acme", key


# -- a drop's options -----------------------------------------------------------------------------------------------


def upsert_sidecar_of(size: int) -> bytes:
    document = json.dumps(UPSERT_BY_ID).encode()
    return document[:-1] + b" " * (size - len(document)) + b"}"


def test_a_sidecar_of_64_kib_is_read_and_a_larger_one_refused(ports):
    """The limit is 64 KiB, the whole of it: a sidecar of that size sets the options (a smaller limit would fail
    drops that load today). One byte more fails the job saying so."""
    sidecar(ports, "acme/accounts/jan.json", upsert_sidecar_of(SIDECAR_LIMIT))
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    assert (job.state, job.operation) == (BulkState.UPLOAD_COMPLETE, BulkOperation.UPSERT)

    sidecar(ports, "acme/accounts/feb.json", upsert_sidecar_of(SIDECAR_LIMIT + 1))
    refused = accept_drop(ports, drop(ports, "acme/accounts/feb.csv"))
    assert (refused.state, refused.error.code) == (BulkState.FAILED, "invalid_drop")
    assert refused.error.message.startswith("acme/accounts/feb.csv: sidecar feb.json")
    assert f"is larger than {SIDECAR_LIMIT} bytes" in refused.error.message


def test_a_sidecar_nested_past_pythons_recursion_limit_fails_the_job(ports):
    """``[[[[...]]]]`` within 64 KiB makes the JSON reader raise RecursionError, not ValueError: it fails the job as
    any sidecar that is not a JSON object does, instead of failing the record into the dead-letter queue."""
    sidecar(ports, "acme/accounts/jan.json", b"[" * 30_000 + b"]" * 30_000)
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    assert (job.state, job.error.code) == (BulkState.FAILED, "invalid_drop")
    assert "sidecar jan.json is not a JSON object" in job.error.message


def test_an_upsert_refused_for_want_of_a_key_keeps_its_operation(ports):
    """Only a query (which a drop cannot run) is listed as the default insert; an upsert naming no
    ``externalIdFieldName`` is failed as the upsert the tenant asked for."""
    sidecar(ports, "acme/accounts/jan.json", {"operation": "upsert"})
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    assert (job.state, job.error.code, job.operation) == (BulkState.FAILED, "invalid_drop", BulkOperation.UPSERT)


def test_a_drop_of_a_tenant_with_a_secret_instead_of_a_db_user_is_a_job(ports):
    """A serverless tenant has a ``secret_arn`` and no ``db_user``: its drop's job records an empty one."""
    ports.tenants.create_tenant("globex", secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:globex")
    job = accept_drop(ports, drop(ports, "globex/accounts/jan.csv"))
    assert (job.state, job.db_user) == (BulkState.UPLOAD_COMPLETE, "")


def test_a_write_at_the_very_start_of_the_tenants_clock_leeway_is_the_tenants(ports):
    """A file counts as an earlier tenant's when written *before* the tenant was created less the clock leeway; one
    written at that moment is this tenant's."""
    tenant = ports.tenants.get("acme")
    dropped = drop(ports, "acme/accounts/jan.csv")
    at_the_edge = DroppedObject(**{**vars(dropped), "written_at": tenant.created_at - CLOCK_LEEWAY})
    assert accept_drop(ports, at_the_edge).state is BulkState.UPLOAD_COMPLETE


# -- the executor's check -------------------------------------------------------------------------------------------


def written_after_its_event(ports, key: str, after: timedelta) -> DroppedObject:
    """A dropped file whose object S3 dates ``after`` the write its notification announced."""
    made_a_day_ago(ports)
    put = drop(ports, key)
    modified = s3(ports).objects[(INGEST_BUCKET, key)]["LastModified"]
    return DroppedObject(**{**vars(put), "written_at": modified - after})


def test_a_file_dated_up_to_2_s_after_its_write_is_the_same_write(ports):
    """README: a dropped file is read only if it "was not written more than 2 s after the write the notification
    announced" (S3 keeps whole seconds, its event time does not). Exactly 2 s is the same write, and loads."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    accept_drop(ports, written_after_its_event(ports, "acme/accounts/jan.csv", PUT_AGAIN_MARGIN))
    assert start_bulk_job(ports, ports.queue.messages[0]).state is BulkState.IN_PROGRESS


def test_a_file_dated_more_than_2_s_after_its_write_was_put_again(ports):
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    job = accept_drop(ports, written_after_its_event(ports, "acme/accounts/jan.csv", timedelta(seconds=2.5)))
    assert start_bulk_job(ports, ports.queue.messages[0]) is None
    assert ports.bulk.jobs.get(job.job_id).error.code == "file_replaced"
    assert ports.warehouse.statements == {}


def test_a_drop_whose_notification_gave_no_etag_is_judged_by_its_write_time_alone(ports):
    """A record without an ETag stores none for the file (not an empty one), and the executor does not take every
    ETag for a changed one: the file loads."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    put = drop(ports, "acme/accounts/jan.csv")
    job = accept_drop(ports, DroppedObject(**{**vars(put), "etag": ""}))
    assert job.files[0].etag is None
    assert start_bulk_job(ports, ports.queue.messages[0]).state is BulkState.IN_PROGRESS


def test_a_late_sidecar_setting_only_some_options_is_compared_on_those_alone(ports):
    """The executor compares the fields a late sidecar sets, not the defaults of those it leaves out: a file whose
    metadata asked for semicolons, and whose sidecar (put after it) says only ``insert``, loads as it was made."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    job = accept_drop(
        ports, drop(ports, "acme/accounts/jan.csv", b"id;name\n1;Ann\n", metadata={"columnDelimiter": "SEMICOLON"})
    )
    assert job.column_delimiter is ColumnDelimiter.SEMICOLON
    sidecar(ports, "acme/accounts/jan.json", {"operation": "insert"})
    assert start_bulk_job(ports, ports.queue.messages[0]).state is BulkState.IN_PROGRESS


def test_a_late_sidecar_naming_no_key_for_an_insert_asks_for_nothing_else(ports):
    """``"externalIdFieldName": null`` (tooling that writes every field) beside an insert is the insert's own (no
    key): the load goes ahead."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    sidecar(ports, "acme/accounts/jan.json", {"operation": "insert", "externalIdFieldName": None})
    assert start_bulk_job(ports, ports.queue.messages[0]).state is BulkState.IN_PROGRESS


def test_a_late_sidecar_asking_for_another_line_ending_stops_the_load(ports):
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    sidecar(ports, "acme/accounts/jan.json", {"lineEnding": "CRLF"})
    assert start_bulk_job(ports, ports.queue.messages[0]) is None
    failed = ports.bulk.jobs.get(job.job_id)
    assert (failed.state, failed.error.code) == (BulkState.FAILED, "late_sidecar")
    assert "asks for lineEnding CRLF" in failed.error.message and failed.line_ending is LineEnding.LF


def test_a_late_sidecar_larger_than_the_limit_stops_the_load_saying_why(ports):
    """Put after its file, a sidecar past 64 KiB is not valid: the job fails ``late_sidecar`` (nothing loaded)
    rather than the executor failing on the storage layer's error, and the reason names no bucket."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    sidecar(ports, "acme/accounts/jan.json", upsert_sidecar_of(SIDECAR_LIMIT + 1))
    assert start_bulk_job(ports, ports.queue.messages[0]) is None
    failed = ports.bulk.jobs.get(job.job_id)
    assert (failed.state, failed.error.code) == (BulkState.FAILED, "late_sidecar")
    assert "its sidecar jan.json came after it and is not valid (sidecar jan.json" in failed.error.message
    assert f"is larger than {SIDECAR_LIMIT} bytes" in failed.error.message and ports.warehouse.statements == {}


def test_a_file_put_through_a_drop_url_before_jobs_recorded_so_ignores_a_late_sidecar(ports):
    """A job stored before jobs recorded how their file came (``through_drop_url`` false) is still one whose file
    came through a drop URL when the object carries the generation the URL signs in: it runs with the URL's options,
    whatever sidecar is put beside it later."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    generation = ports.tenants.get("acme").generation
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv", metadata={GENERATION_METADATA: generation}))
    assert job.files[0].through_drop_url
    ports.bulk.jobs._items[job.job_id]["files"][0]["through_drop_url"] = False  # as a record from before the field
    sidecar(ports, "acme/accounts/jan.json", UPSERT_BY_ID)
    started_job = start_bulk_job(ports, ports.queue.messages[0])
    assert started_job is not None and started_job.operation is BulkOperation.INSERT


# -- a late sidecar's own event -------------------------------------------------------------------------------------


def test_a_late_sidecars_report_carries_its_options_and_needs_no_renaming(ports):
    """The report lists the options the sidecar asked for (what the tenant meant), and tells no new name for a
    sidecar named as it should be."""
    first = started(ports)
    sidecar(ports, "acme/accounts/jan.json", UPSERT_BY_ID)
    report = accept_drop(ports, late_sidecar_event("acme/accounts/jan.json"))
    assert (report.state, report.error.code) == (BulkState.FAILED, "late_sidecar")
    assert (report.operation, report.external_id_field) == (BulkOperation.UPSERT, "id")
    assert report.error.message.startswith(f"jan.json came after jan.csv, whose job {first.job_id} was InProgress")
    assert "the sidecar asks for operation upsert, externalIdFieldName id. Put a sidecar before its file (aws s3" in (
        report.error.message
    )


@pytest.mark.parametrize("tenant", ["globex", "inactive"])
def test_a_sidecar_event_naming_no_active_tenant_reports_nothing(ports, tenant):
    """A sidecar under an id that is no tenant's is passed over (its event cannot fail); an inactive tenant's late
    sidecar makes no job either: deactivating a tenant stops its drops."""
    started(ports)
    if tenant == "inactive":
        ports.tenants.set_active("acme", False)
        key = "acme/accounts/jan.json"
    else:
        key = "globex/accounts/jan.json"
    sidecar(ports, key, UPSERT_BY_ID)
    assert accept_drop(ports, late_sidecar_event(key)) is None
    assert len(jobs(ports)) == 1 and jobs(ports, "globex") == []


def test_a_sidecar_whose_event_comes_after_it_was_deleted_reports_nothing(ports):
    started(ports)
    late = late_sidecar_event("acme/accounts/jan.json")
    assert accept_drop(ports, late) is None
    assert len(jobs(ports)) == 1


@pytest.mark.parametrize(("before", "reported"), [(LATE_SIDECAR_WINDOW, True), (LATE_SIDECAR_WINDOW * 1.01, False)])
def test_a_late_sidecar_reports_a_job_made_up_to_5_minutes_before_it(ports, before, reported):
    """README: a sidecar's event looks for its file's job among those of the 5 minutes before the sidecar was
    written; a job made exactly 5 minutes before is among them, one made earlier is not (it is an earlier drop's)."""
    first = started(ports)
    sidecar(ports, "acme/accounts/jan.json", UPSERT_BY_ID)
    report = accept_drop(ports, late_sidecar_event("acme/accounts/jan.json", written_at=first.created_at + before))
    assert (report is not None) is reported
    assert len(jobs(ports)) == (2 if reported else 1)


def test_a_late_sidecar_reports_only_its_own_files_job(ports):
    """``feb.csv``'s job, running with other options than ``jan.json`` asks for, is not ``jan.json``'s to report."""
    started(ports, "acme/accounts/feb.csv")
    sidecar(ports, "acme/accounts/jan.json", UPSERT_BY_ID)
    assert accept_drop(ports, late_sidecar_event("acme/accounts/jan.json")) is None
    assert len(jobs(ports)) == 1


@pytest.mark.parametrize("case", ["same options", BulkState.FAILED, BulkState.ABORTED, BulkState.JOB_COMPLETE])
def test_a_late_sidecar_reports_a_job_that_ran_or_runs_without_it_only(ports, case):
    """A started job that runs with the options the sidecar asks for is not reported, nor one that failed or was
    aborted (it loaded nothing); a completed one loaded without the sidecar, and is."""
    first = started(ports)
    if case != "same options":
        ports.bulk.jobs.transition(first.job_id, case, expected={BulkState.IN_PROGRESS})
    sidecar(ports, "acme/accounts/jan.json", {"operation": "insert"} if case == "same options" else UPSERT_BY_ID)
    report = accept_drop(ports, late_sidecar_event("acme/accounts/jan.json"))
    assert (report is not None) is (case is BulkState.JOB_COMPLETE)


def test_a_job_the_lagging_index_shows_waiting_is_read_and_reported_once_started(ports, monkeypatch):
    """The tenant index is eventually consistent: a job it still lists ``UploadComplete`` is read, and one started
    meanwhile (its load may run without the sidecar) is reported."""
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    ports.bulk.jobs.transition(job.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE})
    stale = BulkJobPage(jobs=[job], resume_after=None)  # as the index listed it before it started
    monkeypatch.setattr(ports.bulk.jobs, "list_for_tenant", lambda *args, **kwargs: stale)
    sidecar(ports, "acme/accounts/jan.json", UPSERT_BY_ID)
    report = accept_drop(ports, late_sidecar_event("acme/accounts/jan.json"))
    assert report is not None and f"whose job {job.job_id} was InProgress by then" in report.error.message


def test_a_late_sidecar_reports_the_jan_csv_job_among_the_tenants_newest_100_drops(ports):
    """README: the sidecar's event looks among the tenant's newest 100 drops (of the 5 minutes): its file's job as the
    100th newest is reported."""
    first = started(ports)
    for n in range(LATE_SIDECAR_JOBS - 1):
        accept_drop(ports, drop(ports, f"acme/accounts/other{n}.csv"))
    sidecar(ports, "acme/accounts/jan.json", UPSERT_BY_ID)
    report = accept_drop(ports, late_sidecar_event("acme/accounts/jan.json"))
    assert report is not None and first.job_id in report.error.message


def test_a_late_sidecar_of_a_gzip_file_named_with_its_extension_is_reported(ports):
    """``jan.csv.json`` was meant for ``jan.csv.gz`` too (named after it less ``.gz``): put after the file's load
    began, it is reported, and told the name it should have."""
    first = started(ports, "acme/accounts/jan.csv.gz")
    sidecar(ports, "acme/accounts/jan.csv.json", UPSERT_BY_ID)
    report = accept_drop(ports, late_sidecar_event("acme/accounts/jan.csv.json"))
    assert report is not None and first.job_id in report.error.message
    assert "Put a sidecar before its file (name it jan.json)" in report.error.message


def test_a_late_sidecar_naming_no_key_is_compared_with_the_key_its_own_operation_takes(ports):
    """An update naming no ``externalIdFieldName`` keys on ``id``: a late one beside an insert asks for both."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    sidecar(ports, "acme/accounts/jan.json", {"operation": "update", "externalIdFieldName": None})
    assert start_bulk_job(ports, ports.queue.messages[0]) is None
    assert "asks for operation update, externalIdFieldName id;" in ports.bulk.jobs.get(job.job_id).error.message


def test_a_sidecar_giving_a_field_twice_names_that_field_alone(ports):
    sidecar(ports, "acme/accounts/jan.json", b'{"lineEnding": "LF", "operation": "delete", "operation": "insert"}')
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    assert job.error.message.endswith("a field is given more than once: operation"), job.error.message


@pytest.mark.parametrize(
    "document",
    [
        b"{" + b", ".join(b'"k%d": 1, "k%d": 2' % (n, n) for n in range(2_500)) + b"}",  # thousands given twice
        json.dumps({"k" * 50_000: 1}).encode(),  # one bad field of a very long name
    ],
)
def test_a_refused_sidecars_reason_stays_short_however_it_is_spoiled(ports, document):
    """The job's error is stored with the job and shown to the tenant: the names a spoiled sidecar gives are cut,
    as the problems it has are counted past the first few (test_bulk_drops.py)."""
    assert len(document) < SIDECAR_LIMIT
    sidecar(ports, "acme/accounts/jan.json", document)
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    assert (job.state, job.error.code) == (BulkState.FAILED, "invalid_drop")
    assert len(job.error.message) < 1_000, len(job.error.message)


def test_an_active_tenants_drop_whose_object_is_gone_is_a_job_that_fails_saying_so(ports):
    """Deleted before its event was handled: the door still makes the job (the object's metadata read as none),
    and the executor fails it, loading nothing, rather than the record failing into the dead-letter queue."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    gone = DroppedObject(bucket=INGEST_BUCKET, key="acme/accounts/gone.csv", size=3, etag="e")
    job = accept_drop(ports, gone)
    assert job is not None and job.state is BulkState.UPLOAD_COMPLETE
    assert start_bulk_job(ports, ports.queue.messages[0]) is None
    failed = ports.bulk.jobs.get(job.job_id)
    assert failed.state is BulkState.FAILED and ports.warehouse.statements == {}


def test_a_file_put_while_its_tenant_was_inactive_is_tagged_when_first_handled_after_the_reactivation(ports):
    """Its first event handled only once the tenant is active again (a backlog): not loaded, and tagged
    ``spectra-rejected=no-active-tenant`` so that the bucket's lifecycle expires it as it does other rejected drops."""
    made_a_day_ago(ports)
    ports.tenants.set_active("acme", False)
    dropped = drop(ports, "acme/accounts/leak.csv")
    tenant = ports.tenants.set_active("acme", True)
    put_while_inactive = DroppedObject(**{**vars(dropped), "written_at": tenant.activated_at - timedelta(minutes=5)})
    assert accept_drop(ports, put_while_inactive) is None and jobs(ports) == []
    assert s3(ports).tags(INGEST_BUCKET, dropped.key) == {"spectra-rejected": "no-active-tenant"}


@pytest.mark.parametrize("case", ["no tenant", "inactive", "previous tenant", "before reactivation", "other bucket"])
def test_a_drop_that_makes_no_job_is_logged_saying_why(ports, case, caplog):
    """Module docstring: a drop naming no active tenant "has no one to tell: it is logged". So is each other drop
    that makes no job, with the key, for an operator to find."""
    import logging

    key = "globex/accounts/jan.csv" if case == "no tenant" else "acme/accounts/jan.csv"
    dropped = drop(ports, key)
    tenant = ports.tenants.get("acme")
    if case == "inactive":
        ports.tenants.set_active("acme", False)
    elif case == "previous tenant":
        dropped = DroppedObject(**{**vars(dropped), "written_at": tenant.created_at - timedelta(minutes=5)})
    elif case == "before reactivation":
        made_a_day_ago(ports)
        ports.tenants.set_active("acme", False)
        tenant = ports.tenants.set_active("acme", True)
        dropped = DroppedObject(**{**vars(dropped), "written_at": tenant.activated_at - timedelta(minutes=5)})
    elif case == "other bucket":
        dropped = DroppedObject(**{**vars(dropped), "bucket": "someone-elses-bucket"})
    why = {
        "no tenant": "names no active tenant",
        "inactive": "names no active tenant",
        "previous tenant": "was a previous tenant's",
        "before reactivation": "was put before the tenant was reactivated",
        "other bucket": "not the ingest bucket",
    }[case]
    with caplog.at_level(logging.WARNING, logger="spectra.bulk.drops"):
        assert accept_drop(ports, dropped) is None
    assert any(why in line and key in line for line in caplog.messages), caplog.messages


def test_a_misnamed_sidecar_whose_key_is_s3s_longest_is_found(ports):
    """``<file>.csv.json`` of 1,024 bytes, S3's longest key, exists and is listed: its file is refused, not loaded
    with the defaults where the sidecar asked for an upsert."""
    key = "acme/accounts/" + "x" * (S3_LONGEST_KEY - len(".json") - len("acme/accounts/") - len(".csv")) + ".csv"
    assert len(f"{key}.json".encode()) == S3_LONGEST_KEY
    sidecar(ports, f"{key}.json", UPSERT_BY_ID)
    job = accept_drop(ports, drop(ports, key))
    assert (job.state, job.error.code) == (BulkState.FAILED, "invalid_drop")  # (its reason cut: the names are long)
    assert ports.queue.messages == []


def test_a_sidecar_of_ten_problems_lists_them_all_and_no_more(ports):
    """The reason lists the first 10 problems and counts those past them: with exactly 10 there are none to count."""
    sidecar(ports, "acme/accounts/jan.json", {f"k{n}": 1 for n in range(10)})
    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    assert job.error.message.count("Extra inputs are not permitted") == 10
    assert job.error.message.endswith("k9: Extra inputs are not permitted"), job.error.message


def test_a_sidecar_past_the_limit_is_refused_without_naming_the_ingest_bucket(ports):
    """The reason quoted the storage layer's ``s3://<bucket>/<key> is larger than ...``: the ingest bucket's name holds
    the account id, which tenants are not told (as test_bulk_drops.py's file_replaced case holds). Refused at the door
    or, put after its file, by the executor, the sidecar is named as the tenant put it."""
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    sidecar(ports, "acme/accounts/feb.json", upsert_sidecar_of(SIDECAR_LIMIT + 1))
    refused = accept_drop(ports, drop(ports, "acme/accounts/feb.csv"))
    assert refused.error.message == f"acme/accounts/feb.csv: sidecar feb.json is larger than {SIDECAR_LIMIT} bytes"

    job = accept_drop(ports, drop(ports, "acme/accounts/jan.csv"))
    sidecar(ports, "acme/accounts/jan.json", upsert_sidecar_of(SIDECAR_LIMIT + 1))
    assert start_bulk_job(ports, ports.queue.messages[0]) is None
    failed = ports.bulk.jobs.get(job.job_id)
    assert failed.error.code == "late_sidecar"
    assert f"is not valid (sidecar jan.json is larger than {SIDECAR_LIMIT} bytes)" in failed.error.message
    assert INGEST_BUCKET not in refused.error.message + failed.error.message
