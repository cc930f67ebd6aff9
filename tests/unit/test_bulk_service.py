"""What the Bulk API does (spectra.bulk.service, uploads and downloads) on in-memory ports: the Bulk 2.0 workflow's
state rules, and every misuse refused with the error the API maps to a 4xx (the HTTP side is tested end to end in
tests/e2e)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from events import BulkJobQueuedMessage
from spectra.bulk import downloads, outcomes, service, uploads
from spectra.bulk.csvfiles import HEADER_MAX_BYTES
from spectra.bulk.downloads import ResultFile, job_results, query_results
from spectra.bulk.files import results_key
from spectra.bulk.lifecycle import bulk_ports, complete_bulk_statement, start_bulk_job
from spectra.bulk.models import BulkOperation, BulkState, ColumnDelimiter, ExportFile, JobType, LineEnding
from spectra.bulk.service import NewJob, change_state, create_job, get_job, list_jobs
from spectra.bulk.uploads import drop_upload_url, upload_batch, upload_url
from spectra.errors import (
    BadGzip,
    Conflict,
    Gone,
    InvalidRequest,
    InvalidToken,
    JobNotFinished,
    NotFound,
    PayloadTooLarge,
    SqlRejected,
    Throttled,
    UnsupportedMediaType,
)
from spectra.jobs import utcnow
from spectra.tenants import Caller
from tests.unit.fakes import (
    AMBIGUOUS_SEND_FAILURES,
    INGEST_BUCKET,
    RESULTS_BUCKET,
    make_ports,
    make_settings,
    result_file,
)

pytestmark = pytest.mark.unit

CSV = b"id,name\n1,Ann\n"


def acme_ports(**settings):
    """Ports with ``settings``, the tenant acme and its table ``accounts`` (id, name)."""
    ports = make_ports(settings=make_settings(**settings))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    return ports


@pytest.fixture
def ports():
    return acme_ports(bulk_max_batch_bytes=64, bulk_inline_download_max_bytes=30)


def overtaken_by(ports, monkeypatch, upload) -> list:
    """The next batch stored is overtaken: ``upload`` (another request's whole PUT) runs, once, just before that
    store lands, its own store going straight through. The list returned holds its answer once it has one (None
    while it runs)."""
    put = type(ports.bulk.files).put
    answers: list = []

    def overtaken(files, key, body):
        if not answers:
            answers.append(None)
            answers[0] = upload()
        return put(files, key, body)

    monkeypatch.setattr(type(ports.bulk.files), "put", overtaken)
    return answers


def caller(ports) -> Caller:
    return Caller.of(ports.tenants.get("acme"))


def new_insert(ports, operation: BulkOperation = BulkOperation.INSERT, **fields):
    return create_job(ports, caller(ports), NewJob(object="accounts", operation=operation, **fields))[0]


# -- create ---------------------------------------------------------------------------------------------------------


def test_an_ingest_job_opens_and_waits_for_its_data(ports):
    job = new_insert(ports, BulkOperation.UPSERT, external_id_field="ID")
    assert (job.state, job.external_id_field, job.tenant_generation) == (
        BulkState.OPEN,
        "id",
        ports.tenants.get("acme").generation,
    )
    assert ports.queue.messages == []
    assert get_job(ports, caller(ports), job.job_id) == job


def test_a_query_job_is_checked_and_queued_at_once(ports):
    job, _ = create_job(ports, caller(ports), NewJob(object=None, operation=BulkOperation.QUERY, query="select 1"))
    assert job.state is BulkState.UPLOAD_COMPLETE and job.queued_at is not None
    assert ports.queue.messages == [BulkJobQueuedMessage(job_id=job.job_id, tenant_id="acme")]
    with pytest.raises(SqlRejected):
        create_job(ports, caller(ports), NewJob(object=None, operation=BulkOperation.QUERY, query="drop user x"))


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("select a from public.Contacts c join x on true", "public.Contacts"),
        ("select * from demo_orders where id > 3 order by 1 limit 5", "demo_orders"),
        ("with t as (select 1) select * from s.t", "s.t"),
        ("with t as (select 1) select * from t", ""),
        ("select * from (select 1) s", ""),
        ("select a from t1 union select a from t2", ""),
        ("select 1", ""),
    ],
)
def test_a_query_job_that_names_no_object_is_named_by_the_table_it_reads(ports, query, named):
    """Bulk 2.0 names a query job's object by its FROM; the list, GET and the job's event carried "" for every query
    job (note 31's list)."""
    job, _ = create_job(ports, caller(ports), NewJob(object=None, operation=BulkOperation.QUERY, query=query))
    assert job.object == named
    named_by_client = NewJob(object="contacts", operation=BulkOperation.QUERY, query="select a from t1")
    assert create_job(ports, caller(ports), named_by_client)[0].object == "contacts"


def test_a_keyed_query_job_made_before_query_jobs_were_named_answers_its_repeat(ports):
    spec = NewJob(object=None, operation=BulkOperation.QUERY, query="select a from t1")
    job, _ = create_job(ports, caller(ports), spec, idempotency_key="k1")
    made_before = bulk_ports(ports).jobs.update(job.job_id, [job.state], object="")  # as such a job stands
    assert create_job(ports, caller(ports), spec, idempotency_key="k1") == (made_before, False)


def test_the_requests_later_lines_name_the_bulk_job_it_made(ports):
    """A query job's did; a bulk job's "its message's send failed" line and the request's error named none (the
    operations review), so README's Logs Insights query by job_id missed them."""
    from spectra import logs

    with logs.job_keys(tenant_id="acme"):
        job, _ = create_job(ports, caller(ports), NewJob(object=None, operation=BulkOperation.QUERY, query="select 1"))
        assert logs.current() == {"tenant_id": "acme", "job_id": job.job_id}


def test_a_create_repeated_with_its_idempotency_key_answers_the_first_job(ports):
    """A client whose answer was lost retries with its key: it gets the job it made (and the batches it uploaded
    meanwhile are that job's), not a second Open job."""
    spec = NewJob(object="accounts", operation=BulkOperation.UPSERT, external_id_field="id")
    first, created = create_job(ports, caller(ports), spec, idempotency_key="load-1")
    upload_batch(ports, caller(ports), first.job_id, CSV, gzip=False)
    again, repeated = create_job(ports, caller(ports), spec, idempotency_key="load-1")
    assert created and not repeated
    assert again.job_id == first.job_id and again.uploads == 1
    listed = list_jobs(ports, caller(ports), state=None, operation=None, limit=10, next_token=None)
    assert [j.job_id for j in listed.jobs] == [first.job_id]


def test_a_key_reused_after_its_jobs_record_expired_makes_a_new_job(ports, monkeypatch):
    """A key names its job for as long as the job's record lives (30 days, README); DynamoDB's TTL deletes the record
    days after that, and the create found it meanwhile. A nightly script reusing one key each month was answered
    last month's job, 200 and JobComplete, which the contract says is its own request done already: the new load was
    never made. (The fakes keep an expired record until the TTL deletes it, as DynamoDB does.)"""
    from spectra.bulk import store
    from tests.unit import fakes

    spec = NewJob(object="accounts", operation=BulkOperation.UPSERT, external_id_field="id")
    month_ago = utcnow() - store.JOB_TTL - timedelta(days=1)
    for module in (service, fakes):
        monkeypatch.setattr(module, "utcnow", lambda: month_ago)
    first, _ = create_job(ports, caller(ports), spec, idempotency_key="nightly")
    upload_batch(ports, caller(ports), first.job_id, CSV, gzip=False)
    change_state(ports, caller(ports), first.job_id, BulkState.UPLOAD_COMPLETE.value)
    monkeypatch.undo()

    again, created = create_job(ports, caller(ports), spec, idempotency_key="nightly")
    assert created and (again.state, again.uploads, again.created_at > month_ago) == (BulkState.OPEN, 0, True)
    assert get_job(ports, caller(ports), first.job_id) == again  # the key's id is the new job's now
    listed = list_jobs(ports, caller(ports), state=None, operation=None, limit=10, next_token=None)
    assert [(j.job_id, j.state) for j in listed.jobs] == [(again.job_id, BulkState.OPEN)]


def test_a_job_made_again_under_an_expired_key_loads_none_of_the_old_jobs_batches(ports, monkeypatch):
    """The job made again keeps the key's id, so its S3 prefix, where the old job's batches stay until the bucket's
    lifecycle removes them (days after they expire): UploadComplete listed them with the new job's own, and last
    month's rows loaded again, duplicates (found by the diff review). A batch written before the job was made is not
    its own; one S3 stamped a little before (its clock behind ours, within CLOCK_LEEWAY) still is."""
    from spectra.bulk import store
    from spectra.bulk.files import CLOCK_LEEWAY
    from tests.unit import fakes

    spec = NewJob(object="accounts", operation=BulkOperation.INSERT)
    month_ago = utcnow() - store.JOB_TTL - timedelta(days=1)
    for module in (service, fakes):
        monkeypatch.setattr(module, "utcnow", lambda: month_ago)
    first, _ = create_job(ports, caller(ports), spec, idempotency_key="nightly")
    old = upload_batch(ports, caller(ports), first.job_id, CSV, gzip=False)
    change_state(ports, caller(ports), first.job_id, BulkState.ABORTED.value)
    monkeypatch.undo()
    s3 = ports.bulk.files.client
    s3.objects[(old.bucket, old.key)]["LastModified"] = month_ago  # as S3 stamped it then

    again, created = create_job(ports, caller(ports), spec, idempotency_key="nightly")
    assert created and again.job_id == first.job_id
    new = upload_batch(ports, caller(ports), again.job_id, CSV, gzip=False)
    s3.objects[(new.bucket, new.key)]["LastModified"] = again.created_at - CLOCK_LEEWAY / 2  # S3's clock behind
    closed = change_state(ports, caller(ports), again.job_id, BulkState.UPLOAD_COMPLETE.value)
    assert [f.key for f in closed.files] == [new.key]
    assert old.key != new.key and (old.bucket, old.key) in s3.objects  # still there: only not this job's


@pytest.mark.parametrize(
    "changed",
    [
        {"object": "other"},
        {"operation": BulkOperation.INSERT, "external_id_field": None},
        {"external_id_field": "name"},
        {"column_delimiter": ColumnDelimiter.TAB},
    ],
)
def test_a_key_used_for_another_bulk_job_is_a_conflict(ports, changed):
    spec = {"object": "accounts", "operation": BulkOperation.UPSERT, "external_id_field": "id"}
    first, _ = create_job(ports, caller(ports), NewJob(**spec), idempotency_key="load-1")
    with pytest.raises(Conflict, match="different request") as refused:
        create_job(ports, caller(ports), NewJob(**(spec | changed)), idempotency_key="load-1")
    assert refused.value.details["job_id"] == first.job_id


def test_a_bulk_key_is_the_tenants(ports):
    ports.tenants.create_tenant("globex", db_user="tenant_globex")
    spec = NewJob(object="accounts", operation=BulkOperation.INSERT)
    mine, _ = create_job(ports, caller(ports), spec, idempotency_key="load-1")
    theirs, created = create_job(ports, Caller.of(ports.tenants.get("globex")), spec, idempotency_key="load-1")
    assert created and theirs.job_id != mine.job_id and theirs.tenant_id == "globex"


def test_a_keyed_query_job_whose_message_was_refused_waits_for_the_reconciler_and_the_retry_gets_it(ports):
    """With a key, the retry answers this job, so it stays UploadComplete for the reconciler to queue rather than
    failing under the client."""
    spec = NewJob(object=None, operation=BulkOperation.QUERY, query="select 1")
    ports.queue.fail_next()
    with pytest.raises(Exception):  # noqa: B017 - whatever SQS raised: the API answers 500 and the client retries
        create_job(ports, caller(ports), spec, idempotency_key="export-1")
    again, created = create_job(ports, caller(ports), spec, idempotency_key="export-1")
    assert not created and again.state is BulkState.UPLOAD_COMPLETE and again.error is None


@pytest.mark.parametrize("failure", AMBIGUOUS_SEND_FAILURES.values(), ids=AMBIGUOUS_SEND_FAILURES.keys())
def test_a_keyless_query_job_whose_send_failed_is_answered_and_the_reconciler_queues_it_once(ports, failure):
    """Whether SQS took the message cannot be told from the error. The job was failed enqueue_failed with a 500:
    the client's retry was a second export, and an executor that had the message found the job Failed. It is
    answered UploadComplete now, as a query job is answered QUEUED, and the reconciler queues it."""
    from spectra.bulk.reconcile import reconcile_bulk
    from spectra.reconciliation import ReconcileSummary, Thresholds

    ports.queue.fail_next(failure)
    job, created = create_job(
        ports, caller(ports), NewJob(object=None, operation=BulkOperation.QUERY, query="select 1")
    )
    assert created and job.state is BulkState.UPLOAD_COMPLETE and ports.queue.messages == []
    stored = get_job(ports, caller(ports), job.job_id)
    assert stored.state is BulkState.UPLOAD_COMPLETE and stored.error is None
    later = job.queued_at + timedelta(seconds=ports.settings.requeue_after_seconds + 1)
    reconcile_bulk(ports, later, Thresholds.from_settings(ports.settings), ReconcileSummary())
    assert [m.job_id for m in ports.queue.messages] == [job.job_id]


def test_a_query_job_whose_unload_is_past_the_data_apis_limit_is_a_413_at_once(ports):
    """Measured as its UNLOAD, quotes doubled: accepted, it failed at ExecuteStatement (found by the limits review)."""
    query = "select '" + "''" * 40_000 + "' as q"
    with pytest.raises(PayloadTooLarge, match="as the UNLOAD that exports it"):
        create_job(ports, caller(ports), NewJob(object=None, operation=BulkOperation.QUERY, query=query))
    assert ports.queue.messages == []


def test_a_query_job_redshift_would_refuse_to_nest_is_refused_at_once(ports):
    """UNLOAD takes a query ending in LIMIT nested in a subquery, where Redshift refuses WITH RECURSIVE."""
    recursive = "with recursive r(n) as (select 1 union all select n + 1 from r where n < 9) select n from r"
    with pytest.raises(InvalidRequest, match="WITH RECURSIVE") as error:
        create_job(
            ports, caller(ports), NewJob(object=None, operation=BulkOperation.QUERY, query=recursive + " limit 3")
        )
    assert error.value.details == {"field": "query"}
    assert create_job(ports, caller(ports), NewJob(object=None, operation=BulkOperation.QUERY, query=recursive))


@pytest.mark.parametrize("query", ["explain select 1", "show search_path"])
def test_a_query_job_of_a_statement_unload_cannot_take_is_refused_at_once(ports, query):
    """A query job unloads: an EXPLAIN or a SHOW only failed in the warehouse with a syntax error (the API review)."""
    with pytest.raises(InvalidRequest, match="runs the statement as an UNLOAD, which takes a query") as error:
        create_job(ports, caller(ports), NewJob(object=None, operation=BulkOperation.QUERY, query=query))
    assert error.value.details == {"field": "query"}
    assert ports.queue.messages == []


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (NewJob(object="accounts", operation=BulkOperation.INSERT, content_type="XML"), "contentType"),
        (NewJob(object=None, operation=BulkOperation.QUERY, query="select 1", content_type="JSON"), "contentType"),
        (
            NewJob(object="accounts", operation=BulkOperation.INSERT, content_type="JSON", line_ending=LineEnding.CRLF),
            "lineEnding",
        ),
        (NewJob(object=None, operation=BulkOperation.INSERT), "object"),
        (NewJob(object="a-b", operation=BulkOperation.INSERT), "object"),
        (NewJob(object="accounts", operation=BulkOperation.UPSERT), "externalIdFieldName"),
        (NewJob(object="accounts", operation=BulkOperation.INSERT, query="select 1"), "query"),
        (NewJob(object=None, operation=BulkOperation.QUERY), "query"),
    ],
)
def test_a_bad_job_is_refused_naming_the_field(ports, spec, field):
    with pytest.raises(InvalidRequest) as raised:
        create_job(ports, caller(ports), spec)
    assert raised.value.details["field"] == field
    assert ports.bulk.jobs.list_for_tenant("acme", limit=10).jobs == []


@pytest.mark.parametrize("operation", [BulkOperation.UPDATE, BulkOperation.DELETE])
def test_an_update_or_delete_naming_no_key_keys_on_id_as_bulk_2_does(ports, operation):
    """Bulk 2.0 keys updates and deletes on the record's Id, and its clients name no externalIdFieldName for them:
    such a job was refused 400; it keys on ``id`` (a header ``Id`` folds to it). An upsert must still name one."""
    job = create_job(ports, caller(ports), NewJob(object="accounts", operation=operation))[0]
    assert job.external_id_field == "id"
    named = create_job(ports, caller(ports), NewJob(object="accounts", operation=operation, external_id_field="Email"))
    assert named[0].external_id_field == "email"
    metadata = {"operation": operation.value}
    assert drop_upload_url(ports, caller(ports), object_name="accounts", filename=None, gzip=False, metadata=metadata)


def test_another_tenants_job_is_not_found(ports):
    job = new_insert(ports)
    other = ports.tenants.create_tenant("globex", db_user="tenant_globex")
    with pytest.raises(NotFound):
        get_job(ports, Caller.of(other), job.job_id)
    with pytest.raises(NotFound):
        upload_batch(ports, Caller.of(other), job.job_id, CSV, gzip=False)


# -- upload and close -----------------------------------------------------------------------------------------------


def test_batches_are_stored_as_sent_and_listed_on_upload_complete(ports):
    job = new_insert(ports)
    first = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    second = upload_batch(ports, caller(ports), job.job_id, gzip.compress(b"id,name\n2,Bob\n"), gzip=True)
    assert first.key.startswith(f"acme/{job.job_id}/uploads/") and second.key.endswith(".csv.gz")
    closed = change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert closed.state is BulkState.UPLOAD_COMPLETE
    assert sorted(f.key for f in closed.files) == sorted([first.key, second.key])
    assert [f.gzip for f in closed.files] == [f.key.endswith(".gz") for f in closed.files]
    assert ports.queue.messages == [BulkJobQueuedMessage(job_id=job.job_id, tenant_id="acme")]
    # repeated: harmless, and nothing queued twice
    assert change_state(ports, caller(ports), job.job_id, "UploadComplete").state is BulkState.UPLOAD_COMPLETE
    assert len(ports.queue.messages) == 1


@pytest.mark.parametrize(
    "body",
    [
        "id,name\n1,Ann\n".encode("utf-16"),  # Excel's "Unicode Text", PowerShell's `>`: a BOM, then UTF-16LE
        "id,name\n1,Ann\n".encode("utf-16-le"),  # no BOM: valid UTF-8, but NULs between the letters
        "id,pr\xe9nom\r\n1,Ann\r\n".encode("cp1252"),  # Excel's "CSV (Comma delimited)", sent without a charset
    ],
)
def test_a_batch_whose_header_line_is_not_utf8_is_refused_before_it_is_stored(ports, body):
    """Found walking the README: a UTF-16 batch was answered 201, then failed the whole job at its header check, its
    other batches with it, naming a stored file the client never saw ("20261202T003216936281-5eeccc55.csv: the
    header line is not valid UTF-8"). It is now a 415 at the PUT, as a charset other than UTF-8 is."""
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    with pytest.raises(UnsupportedMediaType, match="save the file as CSV UTF-8"):
        upload_batch(ports, caller(ports), job.job_id, body, gzip=False)
    assert service.get_job(ports, caller(ports), job.job_id).uploads == 1  # the refused batch is not the job's


@pytest.mark.parametrize(
    ("body", "gzipped", "says"),
    [
        (b"\xef\xbb\xbf", False, "holds no header line"),  # a BOM alone
        (b"\n\n\n", False, "holds no header line and no rows"),
        (b"", True, "holds no header line"),  # an empty file, gzipped
        (b"\xef\xbb\xbf \r\n", True, "holds no header line and no rows"),
        (b"\nid,name\n1,Ann\n", False, "names no column"),  # COPY would load the header as a row
        (b"\r\nid,name\n1,Ann\n", True, "names no column"),
        (b"   \nid,name\n1,Ann\n", False, "names no column"),  # spaces alone: no column names
        (b"\xef\xbb\xbf\t \r\nid,name\n1,Ann\n", True, "names no column"),
        # as the job reads its header (the diff review): a spreadsheet's empty first row, empty quotes, a no-break
        # space, a form feed
        (b",,,\nid,name\n1,Ann\n", False, "names no column"),
        (b'"" , ""\r\nid,name\n1,Ann\n', True, "names no column"),
        (b"\xc2\xa0\nid,name\n1,Ann\n", False, "names no column"),
        (b"\x0c\nid,name\n1,Ann\n", False, "names no column"),
    ],
)
def test_a_batch_with_no_header_line_is_refused_before_it_is_stored(ports, body, gzipped, says):
    """The bulk bad input review: taken 201, such a batch failed the whole job at UploadComplete, its six good
    batches with it, naming a stored file the client never saw ("batch 8 of 11 (20261203T...csv.gz) is empty")."""
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    with pytest.raises(InvalidRequest, match=says):
        upload_batch(ports, caller(ports), job.job_id, gzip.compress(body) if gzipped else body, gzip=gzipped)
    assert service.get_job(ports, caller(ports), job.job_id).uploads == 1


#: a gzip batch past the header check's first MB once inflated (1.9 MB of rows), of two members as `cat` makes
ROWS = b"".join(b"%d,name %d\n" % (n, n) for n in range(150_000))
MEMBERS = gzip.compress(b"id,name\n" + ROWS[:900_000]) + gzip.compress(ROWS[900_000:])


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (gzip.compress(b"id,name\n" + ROWS[:3000])[:-30], "is not a complete gzip file (it ends early)"),  # cut
        (MEMBERS[:-30], "is not a complete gzip file (it ends early)"),  # its last member cut, past the first MB
        (MEMBERS[: len(MEMBERS) // 3], "is not a complete gzip file (it ends early)"),
        (gzip.compress(CSV) + b"\0" * 512, "is not a valid gzip file: NUL bytes follow its gzip data (padding)"),
        (MEMBERS + b"\0" * 512, "is not a valid gzip file: NUL bytes follow its gzip data (padding)"),
        (MEMBERS + b"trailing bytes", "is not a valid gzip file: Error -3 while decompressing data: incorrect header"),
        (gzip.compress(CSV)[:-8] + b"\0" * 8, "is not a valid gzip file: Error -3 while decompressing data: incorrect"),
    ],
    ids=["cut", "cut-past-1mb", "cut-to-a-third", "nul-padding", "nul-padding-past-1mb", "trailing-bytes", "bad-crc"],
)
def test_a_gzip_batch_that_does_not_inflate_to_its_end_is_refused_before_it_is_stored(body, says):
    """The bulk review: its first MB alone was inflated, a stream that did not inflate was let through, so such a
    batch was answered 201 and then failed the whole job bad_gzip at UploadComplete, its good batches with it. It is
    read to its end now, as the job reads it, and refused with the code that job failure had."""
    ports = acme_ports()  # batches of up to 4 MiB
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    with pytest.raises(BadGzip) as refused:
        upload_batch(ports, caller(ports), job.job_id, body, gzip=True)
    assert (refused.value.status, refused.value.code) == (400, "bad_gzip")
    assert refused.value.message.startswith(f"the batch {says}"), refused.value.message
    assert service.get_job(ports, caller(ports), job.job_id).uploads == 1  # the refused batch is not the job's


def test_a_gzip_batch_of_several_members_is_read_through_them_all_and_taken():
    ports = acme_ports()
    job = new_insert(ports)
    stored = upload_batch(ports, caller(ports), job.job_id, MEMBERS, gzip=True)
    assert b"".join(ports.bulk.files.chunks(stored)) == b"id,name\n" + ROWS  # both members, as the job reads them
    assert service.get_job(ports, caller(ports), job.job_id).uploads == 1


def test_a_gzip_batch_inflating_past_what_is_read_at_the_put_is_taken_its_end_left_to_the_job(ports):
    """A few MB of one repeated byte inflate to GBs, too long to read through in the request: past sixteen times the
    request limit (1 KiB here) the rest is left to the job's read, as a stored file's is."""
    rows = b"1,Ann\n" * 200  # 1.2 KiB inflated, past 1 KiB
    for body in (gzip.compress(b"id,name\n" + rows)[:-8], gzip.compress(b"id,name\n" + rows) + b"\0" * 16):
        assert len(body) <= 64  # within the request limit of these ports
        upload_batch(ports, caller(ports), (job := new_insert(ports)).job_id, body, gzip=True)
        assert service.get_job(ports, caller(ports), job.job_id).uploads == 1
    short = gzip.compress(b"id,name\n" + rows[:600])[:-8]  # 608 bytes inflated: read to its end
    with pytest.raises(BadGzip, match="ends early"):
        upload_batch(ports, caller(ports), new_insert(ports).job_id, short, gzip=True)


def test_a_gzip_batch_whose_header_line_is_not_utf8_is_refused_too(ports):
    job = new_insert(ports)
    with pytest.raises(UnsupportedMediaType, match="save the file as CSV UTF-8"):
        upload_batch(ports, caller(ports), job.job_id, gzip.compress("id,name\n1,Ann\n".encode("utf-16")), gzip=True)
    upload_batch(ports, caller(ports), job.job_id, gzip.compress(b"\xef\xbb\xbfid,name\n1,Ann\n"), gzip=True)
    assert service.get_job(ports, caller(ports), job.job_id).uploads == 1


def test_a_batch_with_a_utf8_header_and_bytes_of_another_encoding_in_its_rows_is_taken():
    """Rows' bytes are the rows' business (loaded or failed one by one, as sent): only the header line is checked,
    and a header of no line break within the first MB is left to the job, which says what is wrong with it."""
    ports = acme_ports()  # batches of up to 4 MiB
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, "\ufeffid,name\n1,Ren\xe9\n".encode("utf-8"), gzip=False)
    upload_batch(ports, caller(ports), job.job_id, b"id,name\n1,Ren\xe9\n", gzip=False)
    no_break = b"a" * (HEADER_MAX_BYTES - 1) + "\u00e9".encode()  # its first MB ends inside the character
    upload_batch(ports, caller(ports), job.job_id, no_break, gzip=False)
    assert service.get_job(ports, caller(ports), job.job_id).uploads == 3


def a_batch_arrives_after_the_listing(ports, monkeypatch, job_id: str) -> list:
    """The next listing of the job's batches is followed at once by one more batch, stored and counted (a PUT that
    lands between a PATCH's listing and its write); the list returned gets that batch."""
    listing = type(ports.bulk.files).uploaded_batches
    late = []

    def listed_then_a_batch_arrives(files, listed_job):
        found = listing(files, listed_job)
        if not late:
            late.append(upload_batch(ports, caller(ports), job_id, b"id,name\n2,Bob\n", gzip=False))
        return found

    monkeypatch.setattr(type(ports.bulk.files), "uploaded_batches", listed_then_a_batch_arrives)
    return late


def test_a_batch_stored_while_upload_complete_lists_the_batches_is_loaded(ports, monkeypatch):
    """The PATCH listed the batches, then a PUT stored and counted one more before the PATCH wrote: the PATCH's
    write is refused and it lists again, so the acknowledged batch is part of the job."""
    job = new_insert(ports)
    first = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    late = a_batch_arrives_after_the_listing(ports, monkeypatch, job.job_id)
    closed = change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert sorted(f.key for f in closed.files) == sorted([first.key, late[0].key])
    assert len(ports.queue.messages) == 1


def test_a_batch_stored_while_an_abort_lists_the_batches_is_listed_as_unprocessed(ports, monkeypatch):
    """The abort listed the batches, then a PUT stored and counted one more (201) before the abort wrote: the abort
    is refused and lists again, so the acknowledged batch's rows are in unprocessedrecords (found by review: a 201
    batch was in no result file)."""
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    late = a_batch_arrives_after_the_listing(ports, monkeypatch, job.job_id)
    aborted = change_state(ports, caller(ports), job.job_id, "Aborted")
    assert aborted.state is BulkState.ABORTED and late[0].key in [f.key for f in aborted.files]
    monkeypatch.undo()
    assert job_results(ports, caller(ports), job.job_id, "unprocessedrecords").body == b"id,name\n1,Ann\n2,Bob\n"


def test_an_upload_complete_that_loses_to_a_concurrent_abort_is_a_conflict(ports, monkeypatch):
    """UploadComplete listed the batches, then a concurrent PATCH Aborted ended the job before its write: the close
    is refused and, finding the job Aborted, answers 409 as an UploadComplete sent after the abort does (found on
    the local stack: it answered 200 with the aborted job, which a client reads as its load queued)."""
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    listing = type(ports.bulk.files).uploaded_batches
    aborted = []

    def listed_then_aborted(files, listed_job):
        found = listing(files, listed_job)
        if not aborted:
            aborted.append(None)
            aborted[0] = change_state(ports, caller(ports), job.job_id, "Aborted")
        return found

    monkeypatch.setattr(type(ports.bulk.files), "uploaded_batches", listed_then_aborted)
    with pytest.raises(Conflict) as refused:
        change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert aborted[0].state is BulkState.ABORTED
    assert refused.value.details == {"state": "Aborted"}
    assert ports.queue.messages == []


def test_a_batch_arriving_after_upload_complete_is_a_conflict_not_a_silent_loss(ports, monkeypatch):
    """The PUT saw the job Open, then the PATCH closed it before the batch was stored: 409, never a 201 for a
    batch that will not be loaded."""
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    put = type(ports.bulk.files).put

    def closed_meanwhile(files, key, body):
        change_state(ports, caller(ports), job.job_id, "UploadComplete")
        return put(files, key, body)

    monkeypatch.setattr(type(ports.bulk.files), "put", closed_meanwhile)
    with pytest.raises(Conflict, match="became UploadComplete while this batch was uploading") as raised:
        upload_batch(ports, caller(ports), job.job_id, b"id,name\n2,Bob\n", gzip=False)
    assert raised.value.details == {"state": "UploadComplete"}
    assert len(get_job(ports, caller(ports), job.job_id).files) == 1


@pytest.mark.parametrize("key", [None, "k"])
def test_a_batch_the_upload_complete_listed_before_it_was_counted_is_acknowledged(ports, monkeypatch, key):
    """Stored, then listed and closed before the PUT counted it: it is part of the job, so the PUT answers as usual.
    Under a key, its repeat (the retry of a lost 201) is answered too: the diff review found the key unrecorded and the
    repeat a 409 'not Open', which says the job does not hold the batch (a client believing it sends the rows again
    elsewhere, and loads them twice)."""
    job = new_insert(ports)
    count = type(ports.bulk.jobs).count_upload

    def closed_before_counted(jobs, job_id, **limit):
        change_state(ports, caller(ports), job_id, "UploadComplete")
        return count(jobs, job_id, **limit)

    monkeypatch.setattr(type(ports.bulk.jobs), "count_upload", closed_before_counted)
    stored = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key=key)
    monkeypatch.undo()
    assert [f.key for f in get_job(ports, caller(ports), job.job_id).files] == [stored.key]
    if key is not None:
        assert upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key=key).key == stored.key
        with pytest.raises(Conflict, match="a different request"):
            upload_batch(ports, caller(ports), job.job_id, CSV + b"3,Cy\n", gzip=False, idempotency_key=key)


def test_a_batch_whose_count_fails_is_taken_back_so_a_retry_does_not_load_it_twice(ports, monkeypatch):
    job = new_insert(ports)

    def failing(jobs, job_id, **limit):
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "try again"}}, "UpdateItem")

    count = type(ports.bulk.jobs).count_upload
    monkeypatch.setattr(type(ports.bulk.jobs), "count_upload", failing)
    with pytest.raises(ClientError):
        upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    monkeypatch.setattr(type(ports.bulk.jobs), "count_upload", count)
    retried = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)  # the client's retry
    closed = change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert [f.key for f in closed.files] == [retried.key]


@pytest.mark.parametrize("key", [None, "k"])
def test_a_batch_listed_by_an_upload_complete_before_its_count_failed_stays(ports, monkeypatch, key):
    """Stored, listed by a close, then the count fails: the batch is part of the job, so it is not taken back, and
    the PUT answers 201 for it (it answered 5xx, and the retry got a 409 'not Open' for a batch the job loads, under
    a key too: the key was never recorded; the whole-feature review). Under a key, the repeat is answered."""
    job = new_insert(ports)

    def closed_then_failing(jobs, job_id, **limit):
        change_state(ports, caller(ports), job_id, "UploadComplete")
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "try again"}}, "UpdateItem")

    monkeypatch.setattr(type(ports.bulk.jobs), "count_upload", closed_then_failing)
    stored = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key=key)
    monkeypatch.undo()
    (listed,) = get_job(ports, caller(ports), job.job_id).files
    assert listed.key == stored.key and ports.bulk.files.client.body(listed.bucket, listed.key) == CSV
    if key is not None:
        assert upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key=key).key == stored.key


def test_a_listed_batch_whose_key_cannot_be_recorded_is_still_answered(ports, monkeypatch):
    """The whole-feature review: listed by a close before its count, the batch is the job's; a throttled write of its
    key answered 5xx for it (and the retry a 409). It is answered 201, the failure logged."""
    job = new_insert(ports)
    count = type(ports.bulk.jobs).count_upload

    def closed_before_counted(jobs, job_id, **kw):
        change_state(ports, caller(ports), job_id, "UploadComplete")
        return count(jobs, job_id, **kw)

    def throttled(*args, **kwargs):
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, "UpdateItem")

    monkeypatch.setattr(type(ports.bulk.jobs), "count_upload", closed_before_counted)
    monkeypatch.setattr(type(ports.bulk.jobs), "record_keyed_batch", throttled)
    stored = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    assert [f.key for f in get_job(ports, caller(ports), job.job_id).files] == [stored.key]


def test_a_keyed_batch_taken_back_after_its_count_landed_is_put_back_by_its_repeat(ports, monkeypatch):
    """The whole-feature review: the count (and the key's record) applied while the write raised, and the reads after
    it failed too, so the PUT could not tell and took its object back (5xx): the key's retry was answered 201 for an
    object gone, its rows never loaded. The repeat puts its bytes back under the key the job records."""
    job = new_insert(ports)
    jobs_type = type(ports.bulk.jobs)
    count, get = jobs_type.count_upload, jobs_type.get
    failing: list[bool] = []

    def throttled(operation: str) -> ClientError:
        return ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, operation)

    def applied_then_throttled(jobs, job_id, **kw):
        count(jobs, job_id, **kw)
        failing.append(True)
        raise throttled("UpdateItem")

    def read(jobs, job_id):
        if failing:
            raise throttled("GetItem")
        return get(jobs, job_id)

    def no_write(jobs, job_id, key):
        raise throttled("UpdateItem")

    monkeypatch.setattr(jobs_type, "count_upload", applied_then_throttled)
    monkeypatch.setattr(jobs_type, "get", read)
    monkeypatch.setattr(jobs_type, "withdraw", no_write)
    with pytest.raises(ClientError):
        upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    monkeypatch.undo()
    retried = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    other = upload_batch(ports, caller(ports), job.job_id, b"id,name\n2,Bob\n", gzip=False)
    closed = change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert sorted(f.key for f in closed.files) == sorted([retried.key, other.key])
    assert closed.uploads == 3  # the put-back is counted again, so a close racing it lists again
    assert ports.bulk.files.client.body(retried.bucket, retried.key) == CSV


def test_a_keyed_batch_whose_count_landed_unseen_is_kept_when_its_take_back_learns_it(ports, monkeypatch):
    """The second diff review: the count landed while the write raised and the read after failed, so the take-back
    withdrew the batch, which the job records under its key (a close lists it), then deleted it: a close in between
    listed a file gone, and the load failed. The withdraw's own answer says the job counted it: kept, 201."""
    job = new_insert(ports)
    jobs_type, files_type = type(ports.bulk.jobs), type(ports.bulk.files)
    count, get, discard = jobs_type.count_upload, jobs_type.get, files_type.discard
    failing: list[bool] = []

    def applied_then_throttled(jobs, job_id, **kw):
        count(jobs, job_id, **kw)
        failing.append(True)
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, "UpdateItem")

    def read(jobs, job_id):
        if failing:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, "GetItem")
        return get(jobs, job_id)

    def closed_first(files, source):  # a close between the take-back's withdraw and its delete
        failing.clear()
        change_state(ports, caller(ports), job.job_id, "UploadComplete")
        return discard(files, source)

    monkeypatch.setattr(jobs_type, "count_upload", applied_then_throttled)
    monkeypatch.setattr(jobs_type, "get", read)
    monkeypatch.setattr(files_type, "discard", closed_first)
    stored = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    monkeypatch.undo()
    if get_job(ports, caller(ports), job.job_id).state is BulkState.OPEN:
        change_state(ports, caller(ports), job.job_id, "UploadComplete")
    closed = get_job(ports, caller(ports), job.job_id)
    assert [f.key for f in closed.files] == [stored.key]
    assert ports.bulk.files.size(stored.key) is not None  # listed, and there


def test_a_keyed_repeat_putting_its_batch_back_during_a_close_is_listed_or_refused(ports, monkeypatch):
    """The review of the put-back: a close listing the job's batches between the repeat's read and its put closed the
    job without the batch (its condition is on the count, which the put did not change), and the repeat answered 201
    for an object never loaded. The put is counted: the close lists again, or the repeat is refused (409)."""
    job = new_insert(ports)
    first = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    other = upload_batch(ports, caller(ports), job.job_id, b"id,name\n2,Bob\n", gzip=False)
    ports.bulk.files.client.delete_object(Bucket=first.bucket, Key=first.key)  # taken back after its count landed
    files_type = type(ports.bulk.files)
    size, closes = files_type.size, []

    def close_then_look(files, key):
        if not closes:
            closes.append(change_state(ports, caller(ports), job.job_id, "UploadComplete"))  # lists: it is gone
        return size(files, key)

    monkeypatch.setattr(files_type, "size", close_then_look)
    with pytest.raises(Conflict, match="became UploadComplete while this batch was uploading"):
        upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    monkeypatch.undo()
    assert [f.key for f in get_job(ports, caller(ports), job.job_id).files] == [other.key]
    assert ports.bulk.files.size(first.key) is None  # not left beside the job


def test_a_keyed_repeat_of_an_ended_job_puts_nothing_back(ports):
    """The review of the put-back: a repeat on a job long ended, whose batch the bucket expired, wrote the tenant's
    bytes back under the job's uploads, never loaded and kept another retention period."""
    job = new_insert(ports)
    first = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    change_state(ports, caller(ports), job.job_id, "UploadComplete")
    running = start_bulk_job(ports, ports.queue.messages[-1])
    complete_bulk_statement(ports, ports.warehouse.finish_batch(running.statement_id, {0: 1, 1: []}))
    assert get_job(ports, caller(ports), job.job_id).state is BulkState.JOB_COMPLETE
    ports.bulk.files.client.delete_object(Bucket=first.bucket, Key=first.key)  # the bucket's lifecycle expired it
    assert upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k").key == first.key
    assert ports.bulk.files.size(first.key) is None


def test_a_batch_a_close_listed_while_its_count_met_the_limit_is_answered_not_refused(monkeypatch):
    """The whole-feature review: the count refused at the limit (another batch counted first; an unused upload URL
    holds a place), then a close listed both stored batches before the take-back read the job: kept, the batch is
    loaded, yet the PUT answered 400 'put more data in another job', which a client obeying loads twice."""
    ports = acme_ports(bulk_max_files=2)
    job = new_insert(ports)
    upload_url(ports, caller(ports), job.job_id, gzip=False)  # a URL issued, its file never put: one place taken
    jobs_type = type(ports.bulk.jobs)
    count, get = jobs_type.count_upload, jobs_type.get
    state: dict = {"refused": False, "closed": False}
    other = overtaken_by(
        ports, monkeypatch, lambda: upload_batch(ports, caller(ports), job.job_id, b"id,name\n2,Bob\n", gzip=False)
    )

    def counting(jobs, job_id, **kw):
        counted = count(jobs, job_id, **kw)
        state["refused"] = counted is None and bool(other) and other[0] is not None  # the overtaking one has ended
        return counted

    def read_then_close(jobs, job_id):
        found = get(jobs, job_id)
        if state["refused"] and not state["closed"]:
            state["closed"] = True
            change_state(ports, caller(ports), job_id, "UploadComplete")  # lists both stored batches
        return found

    monkeypatch.setattr(jobs_type, "count_upload", counting)
    monkeypatch.setattr(jobs_type, "get", read_then_close)
    stored = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    monkeypatch.undo()
    closed = get_job(ports, caller(ports), job.job_id)
    assert stored.key in [f.key for f in closed.files] and len(closed.files) == 2
    assert upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k").key == stored.key


def test_a_batch_repeated_with_its_idempotency_key_is_stored_and_counted_once(ports):
    """A client whose answer was lost (API Gateway's 504 while the function went on, a reset connection) PUTs the
    batch again: with its key, the repeat is answered as the first (201) and the job loads the batch once, also when
    the repeat comes after UploadComplete; other bytes under the key are a 409. Without keys, both were stored and
    the load inserted every row twice."""
    job = new_insert(ports)
    first = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="part-1")
    repeat = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="part-1")
    other = upload_batch(ports, caller(ports), job.job_id, b"id,name\n2,Bob\n", gzip=False, idempotency_key="part-2")
    assert repeat.key == first.key != other.key
    assert get_job(ports, caller(ports), job.job_id).uploads == 2
    with pytest.raises(Conflict, match="Idempotency-Key was already used for a different request") as raised:
        upload_batch(ports, caller(ports), job.job_id, b"id,name\n3,Cy\n", gzip=False, idempotency_key="part-1")
    assert raised.value.details == {"idempotency_key": "part-1", "job_id": job.job_id}
    closed = change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert [f.key for f in closed.files] == [first.key, other.key]
    after = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="part-1")
    assert after.key == first.key  # part of the job: 201, not the 409 of a batch the job does not hold
    with pytest.raises(Conflict, match="data can be uploaded only while it is Open"):
        upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="part-3")
    with pytest.raises(Conflict, match="a different request"):
        upload_batch(ports, caller(ports), job.job_id, b"id,name\n3,Cy\n", gzip=False, idempotency_key="part-2")
    assert get_job(ports, caller(ports), job.job_id).files == closed.files


def test_a_batch_key_is_scoped_to_its_job(ports):
    one, two = new_insert(ports), new_insert(ports)
    first = upload_batch(ports, caller(ports), one.job_id, CSV, gzip=False, idempotency_key="part-1")
    second = upload_batch(ports, caller(ports), two.job_id, CSV, gzip=False, idempotency_key="part-1")
    assert first.key.startswith(f"acme/{one.job_id}/") and second.key.startswith(f"acme/{two.job_id}/")
    assert [get_job(ports, caller(ports), j.job_id).uploads for j in (one, two)] == [1, 1]


def test_a_keyed_repeat_racing_its_first_copy_is_counted_once(ports, monkeypatch):
    """The first copy is still storing (a slow S3 write) when the client's retry stores and counts the batch: the
    first copy's count is refused by the key, it takes its own copy back and answers the retry's batch."""
    job = new_insert(ports)
    raced = overtaken_by(  # the retry
        ports, monkeypatch, lambda: upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    )
    first = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    monkeypatch.undo()
    assert first.key == raced[0].key
    closed = change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert [f.key for f in closed.files] == [raced[0].key] and closed.uploads == 1


def test_a_close_between_a_take_back_and_its_delete_does_not_list_the_batch(ports, monkeypatch):
    """The bulk concurrency review: the copy whose count the key refused looked at the job (Open), then deleted its
    batch, and an UploadComplete in between listed it: the load failed "deleted before the job read it", nothing of
    the job loaded. The take-back withdraws the batch first, in a write the close is conditional on."""
    job = new_insert(ports)
    raced = overtaken_by(
        ports, monkeypatch, lambda: upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    )
    files_type = type(ports.bulk.files)
    discard = files_type.discard

    def closed_first(files, source):
        monkeypatch.setattr(files_type, "discard", discard)
        change_state(ports, caller(ports), job.job_id, "UploadComplete")
        return discard(files, source)

    monkeypatch.setattr(files_type, "discard", closed_first)
    first = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    monkeypatch.undo()
    closed = get_job(ports, caller(ports), job.job_id)
    assert first.key == raced[0].key and [f.key for f in closed.files] == [first.key]
    assert all(ports.bulk.files.size(f.key) is not None for f in closed.files)  # every file it lists is there


def test_a_keyed_batch_whose_count_failed_is_stored_by_the_retry(ports, monkeypatch):
    """A 5xx takes the batch back and records no key: the retry under the key stores and counts it, once."""
    job = new_insert(ports)

    def failing(jobs, job_id, **limit):
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "try again"}}, "UpdateItem")

    monkeypatch.setattr(type(ports.bulk.jobs), "count_upload", failing)
    with pytest.raises(ClientError):
        upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    monkeypatch.undo()
    retried = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    again = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    closed = change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert [f.key for f in closed.files] == [retried.key] == [again.key]


@pytest.mark.parametrize(
    ("body", "refusal"),
    [(b"", InvalidRequest), (b"x" * 1001, PayloadTooLarge), (gzip.compress(CSV), InvalidRequest)],
    ids=["empty", "too_large", "undeclared_gzip"],
)
def test_bad_input_under_a_recorded_key_is_refused_as_bad_input(body, refusal):
    """The diff review: the repeat check came before the body's, so an empty, oversized or undeclared gzip body under
    a recorded key was a 409 'a different request' rather than the 400 or 413 saying what is wrong with it."""
    ports = acme_ports(bulk_max_batch_bytes=1000)
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    with pytest.raises(refusal):
        upload_batch(ports, caller(ports), job.job_id, body, gzip=False, idempotency_key="k")


def test_a_keyed_batch_whose_count_landed_though_its_write_raised_stays(ports, monkeypatch):
    """The diff review: the count (and the key's record) applied, its answer lost, botocore's next tries throttled:
    the PUT took its object back and answered 5xx while the job recorded the key naming it, so the retry under the
    key was answered 201 for an object gone, and UploadComplete found no data. The PUT now reads the record: its own
    object named there is the job's, kept and answered 201; the repeat gets the same."""
    job = new_insert(ports)
    count = type(ports.bulk.jobs).count_upload

    def applied_then_throttled(jobs, job_id, **kw):
        count(jobs, job_id, **kw)
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, "UpdateItem")

    monkeypatch.setattr(type(ports.bulk.jobs), "count_upload", applied_then_throttled)
    stored = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    monkeypatch.undo()
    assert upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k").key == stored.key
    closed = change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert ([f.key for f in closed.files], closed.uploads) == ([stored.key], 1)


def test_a_batch_left_stored_past_the_limit_keeps_upload_complete_a_400_not_a_429_for_ever(monkeypatch):
    """The second diff review: listing more batches than the limit lists again (they may be on their way to being
    taken back), but one left by a function that died between storing and counting it stays: a 429 "still
    receiving" for ever, where README says the 400 naming the count."""
    ports = acme_ports(bulk_max_files=2)
    job = new_insert(ports)
    for body in (CSV, b"id,name\n2,Bob\n"):
        upload_batch(ports, caller(ports), job.job_id, body, gzip=False)
    lately = uploads._upload_key(job, gzip=False)  # stored just now: perhaps on its way to being taken back
    ports.bulk.files.put(lately, CSV)
    with pytest.raises(Throttled):  # the third diff review: a 400 naming a batch count the job would not have
        change_state(ports, caller(ports), job.job_id, "UploadComplete")
    monkeypatch.setattr(service, "TAKE_BACK_SECONDS", 0)  # a minute on: left by a function that died, it stays
    with pytest.raises(InvalidRequest, match="has 3 batches; at most 2"):
        change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert get_job(ports, caller(ports), job.job_id).state is BulkState.OPEN


def test_a_keyed_repeat_at_the_batch_limit_is_answered_not_refused():
    """The repeat's batch is counted already: it is the 201 the client missed, not a batch past the limit."""
    ports = acme_ports(bulk_max_files=1)
    job = new_insert(ports)
    first = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k")
    assert upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="k").key == first.key
    with pytest.raises(InvalidRequest, match="has had its 1 batches"):
        upload_url(ports, caller(ports), job.job_id, gzip=False, idempotency_key="u")


def test_an_upload_url_repeated_with_its_idempotency_key_is_for_the_same_batch(ports):
    """A repeat is answered a URL for the same key, counted once against the job's batches; another request under
    the key (gzip changed, or the key of a batch PUT) is a 409. Once the job is closed, a repeat is answered when
    UploadComplete listed the file put through the URL, and is a 409 when it did not (a file put now would not be
    part of the job)."""
    job = new_insert(ports)
    first = upload_url(ports, caller(ports), job.job_id, gzip=True, idempotency_key="big-1")
    repeat = upload_url(ports, caller(ports), job.job_id, gzip=True, idempotency_key="big-1")
    assert repeat["key"] == first["key"] and repeat["headers"] == {"If-None-Match": "*"}
    unused = upload_url(ports, caller(ports), job.job_id, gzip=False, idempotency_key="big-2")
    assert get_job(ports, caller(ports), job.job_id).uploads == 2
    with pytest.raises(Conflict, match="a different request"):
        upload_url(ports, caller(ports), job.job_id, gzip=False, idempotency_key="big-1")
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="put-1")
    with pytest.raises(Conflict, match="a different request"):
        upload_url(ports, caller(ports), job.job_id, gzip=False, idempotency_key="put-1")
    with pytest.raises(Conflict, match="a different request"):
        upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False, idempotency_key="big-2")
    ports.bulk.files.put(first["key"], gzip.compress(CSV))  # the client's PUT through the first URL
    closed = change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert first["key"] in [f.key for f in closed.files] and unused["key"] not in [f.key for f in closed.files]
    assert upload_url(ports, caller(ports), job.job_id, gzip=True, idempotency_key="big-1")["key"] == first["key"]
    with pytest.raises(Conflict, match="is UploadComplete; the batch of this Idempotency-Key is not part of it"):
        upload_url(ports, caller(ports), job.job_id, gzip=False, idempotency_key="big-2")


def test_upload_complete_gives_up_with_a_429_while_batches_keep_arriving(ports, monkeypatch):
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    listing = type(ports.bulk.files).uploaded_batches

    def always_one_more(files, listed_job):
        found = listing(files, listed_job)
        upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
        return found

    monkeypatch.setattr(type(ports.bulk.files), "uploaded_batches", always_one_more)
    with pytest.raises(Throttled, match="still receiving batches"):
        change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert get_job(ports, caller(ports), job.job_id).state is BulkState.OPEN


def test_upload_misuse_is_refused(ports):
    job = new_insert(ports)
    with pytest.raises(InvalidRequest, match="empty"):
        upload_batch(ports, caller(ports), job.job_id, b"", gzip=False)
    with pytest.raises(PayloadTooLarge) as raised:
        upload_batch(ports, caller(ports), job.job_id, b"x" * 65, gzip=False)
    assert f"/v1/bulk/jobs/{job.job_id}/uploads" in raised.value.message
    with pytest.raises(InvalidRequest, match="not gzip"):
        upload_batch(ports, caller(ports), job.job_id, CSV, gzip=True)
    corrupt = bytes.fromhex("1f8b08000000000000ff") + b"\xff" * 20  # a gzip header over data that is not deflate
    with pytest.raises(InvalidRequest, match="not gzip"):
        upload_batch(ports, caller(ports), job.job_id, corrupt, gzip=True)
    with pytest.raises(InvalidRequest, match="no data"):
        change_state(ports, caller(ports), job.job_id, "UploadComplete")
    with pytest.raises(InvalidRequest) as raised:
        change_state(ports, caller(ports), job.job_id, "JobComplete")
    assert raised.value.details == {"field": "state", "value": "JobComplete"}

    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    change_state(ports, caller(ports), job.job_id, "UploadComplete")
    with pytest.raises(Conflict, match="only while it is Open"):
        upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    with pytest.raises(Conflict):
        upload_url(ports, caller(ports), job.job_id, gzip=False)


def test_a_job_takes_a_bounded_number_of_batches_and_upload_urls():
    """Each batch and each URL can store a file, and UploadComplete takes at most ``bulk_max_files`` of them: past
    that many of both kinds together, a 400 says so and stores nothing. Counted apart (found by review), a job given
    a 201 or a URL for each of its files could never be closed."""
    ports = acme_ports(bulk_max_files=3)
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    url = upload_url(ports, caller(ports), job.job_id, gzip=False)
    with pytest.raises(InvalidRequest, match="has had its 3 batches and upload URLs") as raised:
        upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    assert raised.value.details == {"limit": 3}
    with pytest.raises(InvalidRequest, match="has had its 3 batches and upload URLs"):
        upload_url(ports, caller(ports), job.job_id, gzip=False)
    ports.bulk.files.put(url["key"], CSV)  # the client's PUT through the URL
    assert len(ports.bulk.files.uploaded_batches(ports.bulk.jobs.get(job.job_id))) == 3
    assert change_state(ports, caller(ports), job.job_id, "UploadComplete").state is BulkState.UPLOAD_COMPLETE
    with pytest.raises(Conflict):  # a closed job is a 409 still, not the limit
        upload_url(ports, caller(ports), job.job_id, gzip=False)


def test_batches_sent_at_once_past_the_limit_are_taken_back(monkeypatch):
    """Two PUTs both read the job under its limit; the count refuses the second, whose stored batch is deleted so
    that UploadComplete does not list it."""
    ports = acme_ports(bulk_max_files=1)
    job = new_insert(ports)
    raced = overtaken_by(
        ports, monkeypatch, lambda: upload_batch(ports, caller(ports), job.job_id, b"id,name\n2,Bob\n", gzip=False)
    )
    with pytest.raises(InvalidRequest, match="has had its 1 batches"):
        upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    monkeypatch.undo()
    closed = change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert [f.key for f in closed.files] == [raced[0].key]


def test_upload_urls_open_one_key_under_the_job_or_the_tenants_drop_prefix(ports):
    job = new_insert(ports)
    url = upload_url(ports, caller(ports), job.job_id, gzip=True)
    assert url["key"].startswith(f"acme/{job.job_id}/uploads/") and url["key"].endswith(".csv.gz")
    assert url["method"] == "PUT" and url["expires_in"] == ports.settings.upload_url_ttl_seconds
    assert url["headers"] == {"If-None-Match": "*"}  # the URL writes its key once (signed into it)

    drop = drop_upload_url(
        ports,
        caller(ports),
        object_name="Accounts",
        filename="jan",
        gzip=False,
        metadata={"operation": "insert", "spectra-generation": "forged"},
    )
    assert (drop["bucket"], drop["key"]) == (INGEST_BUCKET, "acme/accounts/jan.csv")
    generation = ports.tenants.get("acme").generation  # signed in by the service, whatever the caller sent
    assert drop["headers"] == {"x-amz-meta-operation": "insert", "x-amz-meta-spectra-generation": generation}
    for filename in ("a/b", " ", "x" * 201):
        with pytest.raises(InvalidRequest):
            drop_upload_url(ports, caller(ports), object_name="accounts", filename=filename, gzip=False, metadata={})
    with pytest.raises(InvalidRequest):
        drop_upload_url(ports, caller(ports), object_name="../x", filename=None, gzip=False, metadata={})


@pytest.mark.parametrize(
    ("filename", "gzip", "key"),
    [
        ("jan.csv", False, "acme/accounts/jan.csv"),
        ("Jan.CSV", False, "acme/accounts/Jan.CSV"),  # the drop takes .csv in any case
        ("jan.csv", True, "acme/accounts/jan.csv.gz"),
        ("jan.CSV.GZ", True, "acme/accounts/jan.CSV.GZ"),
        ("jan", True, "acme/accounts/jan.csv.gz"),
        ("jan.txt", False, "acme/accounts/jan.txt.csv"),
    ],
)
def test_a_drop_urls_file_name_gets_the_suffix_it_lacks_only(ports, filename, gzip, key):
    """Found walking the README: `{"filename": "new-contacts.csv", "gzip": true}` (the documented example name) put
    the file at `new-contacts.csv.csv.gz`, and `Jan.CSV` at `Jan.CSV.csv`, the names its job then carried."""
    drop = drop_upload_url(ports, caller(ports), object_name="accounts", filename=filename, gzip=gzip, metadata={})
    assert drop["key"] == key


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"operation": "query"}, "operation"),
        ({"operation": "upsert"}, "externalIdFieldName"),
        ({"operation": "upsert", "columndelimiter": "TAB"}, "externalIdFieldName"),
    ],
)
def test_no_drop_url_for_options_every_file_would_fail_with(ports, metadata, field):
    """The door would fail each file put through such a URL: the request is refused, before anything is uploaded."""
    with pytest.raises(InvalidRequest) as refused:
        drop_upload_url(ports, caller(ports), object_name="accounts", filename=None, gzip=False, metadata=metadata)
    assert refused.value.details == {"field": field}
    upsert = {"operation": "upsert", "externalidfieldname": "email"}
    assert drop_upload_url(ports, caller(ports), object_name="accounts", filename=None, gzip=False, metadata=upsert)


# -- abort ----------------------------------------------------------------------------------------------------------


def test_aborting_an_open_job_ends_it_and_a_second_abort_is_a_conflict(ports):
    job = new_insert(ports)
    assert change_state(ports, caller(ports), job.job_id, "Aborted").state is BulkState.ABORTED
    assert ports.events.types() == ["Bulk Job Aborted"]
    with pytest.raises(Conflict, match="already ended Aborted"):
        change_state(ports, caller(ports), job.job_id, "Aborted")
    with pytest.raises(Conflict):
        change_state(ports, caller(ports), job.job_id, "UploadComplete")


@pytest.mark.parametrize("closed", [False, True], ids=["open", "upload-complete"])
def test_an_abort_whose_event_fails_to_go_out_is_answered_aborted(ports, closed):
    """The Aborted write lands, then PutEvents fails: the API answered 500 ("safe to retry") and the retry 409
    (already ended Aborted). The answer is the aborted job; the event is left to the reconciler."""
    job = new_insert(ports)
    if closed:
        upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
        change_state(ports, caller(ports), job.job_id, "UploadComplete")
    ports.events.fail_next()
    aborted = change_state(ports, caller(ports), job.job_id, "Aborted")
    assert aborted.state is BulkState.ABORTED and not aborted.event_published
    assert ports.events.types() == []
    assert ports.bulk.jobs.pending_since(job.job_id) is not None  # owed: the reconciler publishes it


def test_aborting_a_running_job_cancels_its_statement_and_it_ends_aborted(ports):
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    change_state(ports, caller(ports), job.job_id, "UploadComplete")
    running = start_bulk_job(ports, ports.queue.messages[0])
    marked = change_state(ports, caller(ports), job.job_id, "Aborted")
    assert marked.state is BulkState.IN_PROGRESS and marked.abort_requested_at is not None
    assert ("cancel", running.statement_id) in ports.warehouse.calls
    done = complete_bulk_statement(ports, ports.warehouse.status_change(running.statement_id))
    assert done.state is BulkState.ABORTED


def test_an_abort_that_loses_its_race_leaves_the_completed_jobs_result_files_alone(ports, monkeypatch):
    """The abort saw the job UploadComplete; before its write, the executor started the load and completion finished
    it, files and all. The abort's write is refused (409), and its files (its own attempt's) are not the ones served."""
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    change_state(ports, caller(ports), job.job_id, "UploadComplete")
    transition, write_results = ports.bulk.jobs.transition, outcomes.write_results
    raced = []

    def the_load_runs_first():  # at the abort's first write, whichever it is
        if not raced:
            raced.append(True)
            running = start_bulk_job(ports, ports.queue.messages[-1])
            complete_bulk_statement(ports, ports.warehouse.finish_batch(running.statement_id, {0: 1, 1: []}))

    def transition_after_the_load(job_id, state, **changes):
        if state is BulkState.ABORTED:
            the_load_runs_first()
        return transition(job_id, state, **changes)

    def files_after_the_load(p, view, **options):
        if view.state is BulkState.ABORTED:
            the_load_runs_first()
        return write_results(p, view, **options)

    monkeypatch.setattr(ports.bulk.jobs, "transition", transition_after_the_load)
    monkeypatch.setattr(outcomes, "write_results", files_after_the_load)
    with pytest.raises(Conflict):
        change_state(ports, caller(ports), job.job_id, "Aborted")
    assert ports.bulk.jobs.get(job.job_id).state is BulkState.JOB_COMPLETE
    assert result_file(ports, job.job_id, "unprocessed") == b"id,name\n"
    assert result_file(ports, job.job_id, "successful").count(b"\n") == 2


def test_an_abort_whose_result_files_cannot_be_written_still_aborts_and_leaves_them_to_the_results_function(
    ports, monkeypatch
):
    """(Found by the diff review.) An abort writes its files before its write now: S3 slowing down under them
    answered 500 and left the job UploadComplete, queued for its load to start. The job is Aborted; its files follow
    through the results queue."""
    from botocore.exceptions import ClientError

    from spectra.bulk.lifecycle import write_owed_results

    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    change_state(ports, caller(ports), job.job_id, "UploadComplete")

    def slowed_down(*args, **kwargs):
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "Reduce your request rate"}}, "PutObject")

    monkeypatch.setattr(outcomes, "write_results", slowed_down)
    aborted = change_state(ports, caller(ports), job.job_id, "Aborted")
    monkeypatch.undo()
    assert aborted.state is BulkState.ABORTED and not aborted.results_ready
    [request] = ports.bulk.results_queue.messages
    assert write_owed_results(ports, request).results_ready
    assert result_file(ports, job.job_id, "unprocessed") == CSV


def test_an_abort_that_wins_writes_every_record_as_unprocessed(ports):
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    change_state(ports, caller(ports), job.job_id, "UploadComplete")
    aborted = change_state(ports, caller(ports), job.job_id, "Aborted")
    assert aborted.state is BulkState.ABORTED and aborted.results_ready
    unprocessed = result_file(ports, job.job_id, "unprocessed")
    assert unprocessed == CSV


# -- results --------------------------------------------------------------------------------------------------------


def finished_insert(ports, body: bytes = CSV):
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, body, gzip=False)
    change_state(ports, caller(ports), job.job_id, "UploadComplete")
    running = start_bulk_job(ports, ports.queue.messages[-1])
    rows = body.count(b"\n") - 1
    complete_bulk_statement(ports, ports.warehouse.finish_batch(running.statement_id, {0: rows, 1: []}))
    return job


def test_result_files_are_inline_when_small_and_a_url_when_not(ports):
    job = finished_insert(ports)
    small = job_results(ports, caller(ports), job.job_id, "failedResults")
    assert (small.body, small.url) == (b"sf__Id,sf__Error,id,name\n", None)
    large = job_results(ports, caller(ports), job.job_id, "successfulResults")  # 40 bytes > 30
    attempt = ports.bulk.jobs.get(job.job_id).results_attempt
    assert large.body is None and f"acme/{job.job_id}/results/{attempt}/successful.csv" in large.url


def test_result_files_written_before_attempts_are_served_from_the_results_folder_itself(ports):
    """A job whose files were written before each run had a folder of its own names no attempt: its files are at
    ``results/<kind>.csv``, where they were written then."""
    job = finished_insert(ports)
    client = ports.bulk.files.client
    written = ports.bulk.jobs.get(job.job_id)
    legacy = ports.bulk.jobs.update(job.job_id, [BulkState.JOB_COMPLETE], results_attempt=None)
    assert written.results_attempt and legacy.results_attempt is None
    client.put_object(Bucket=RESULTS_BUCKET, Key=results_key(legacy, "failed"), Body=b"sf__Id,sf__Error,id,name\n")
    assert results_key(legacy, "failed") == f"acme/{job.job_id}/results/failed.csv"
    served = job_results(ports, caller(ports), job.job_id, "failedResults")
    assert served.body == b"sf__Id,sf__Error,id,name\n"


def test_results_are_refused_until_there_are_some(ports):
    job = new_insert(ports)
    with pytest.raises(JobNotFinished, match="is Open"):
        job_results(ports, caller(ports), job.job_id, "successfulResults")
    with pytest.raises(InvalidRequest, match="ingest job"):
        query_results(ports, caller(ports), job.job_id, locator=None, max_records=None)

    query, _ = create_job(ports, caller(ports), NewJob(object=None, operation=BulkOperation.QUERY, query="select 1"))
    with pytest.raises(InvalidRequest, match="query job"):
        job_results(ports, caller(ports), query.job_id, "successfulResults")
    with pytest.raises(JobNotFinished):
        query_results(ports, caller(ports), query.job_id, locator=None, max_records=10)
    change_state(ports, caller(ports), query.job_id, "Aborted")
    with pytest.raises(Conflict, match="no results"):
        query_results(ports, caller(ports), query.job_id, locator=None, max_records=10)


# -- listing --------------------------------------------------------------------------------------------------------


def test_a_bulk_page_token_continues_only_the_listing_it_was_signed_for(ports):
    ports.tenants.create_tenant("globex", db_user="tenant_globex")
    globex = Caller.of(ports.tenants.get("globex"))
    for _ in range(3):
        new_insert(ports)
    first = list_jobs(ports, caller(ports), state=None, operation=None, limit=1, next_token=None)
    rest = list_jobs(ports, caller(ports), state=None, operation=None, limit=1, next_token=first.next_token)
    assert first.next_token and rest.jobs and rest.jobs[0].job_id != first.jobs[0].job_id
    for who, state, operation, limit in (
        (globex, None, None, 1),  # another tenant
        (caller(ports), BulkState.OPEN, None, 1),  # another state filter
        (caller(ports), None, BulkOperation.INSERT, 1),  # another operation filter
        (caller(ports), None, None, 2),  # another page size
    ):
        with pytest.raises(InvalidToken):
            list_jobs(ports, who, state=state, operation=operation, limit=limit, next_token=first.next_token)
    query_token = ports.page_tokens.encode(
        {"created_key": "2026-01-01T00:00:00+00:00#j_x", "job_id": "j_x"},
        bound_to={"listing": "jobs", "tenant": "acme", "status": None, "limit": 1},
    )
    with pytest.raises(InvalidToken):  # another jobType filter
        list_jobs(
            ports,
            caller(ports),
            state=None,
            operation=None,
            limit=1,
            next_token=first.next_token,
            job_type=JobType.V2_INGEST,
        )
    with pytest.raises(InvalidToken):  # a query-job listing's token never resumes the bulk listing
        list_jobs(ports, caller(ports), state=None, operation=None, limit=1, next_token=query_token)


def test_a_tenant_created_again_under_the_same_id_gets_none_of_its_predecessors_bulk_jobs(ports):
    job = new_insert(ports)
    ports.tenants.delete_tenant("acme")
    ports.tenants.create_tenant("acme", db_user="tenant_acme_2")
    successor = Caller.of(ports.tenants.get("acme"))
    with pytest.raises(NotFound):
        get_job(ports, successor, job.job_id)
    listing = list_jobs(ports, successor, state=None, operation=None, limit=20, next_token=None)
    assert listing.jobs == []


def test_uploadcomplete_whose_message_cannot_be_sent_is_not_killed(ports):
    """A transient SQS failure on PATCH UploadComplete: the job is already UploadComplete and in the pending index,
    so the reconciler would queue it; the client's retry of the (idempotent) PATCH should get the job back. It was
    failed enqueue_failed and the retry answered 409: every batch had to be uploaded again."""
    from spectra.bulk.reconcile import reconcile_bulk
    from spectra.reconciliation import ReconcileSummary, Thresholds

    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    ports.queue.fail_next(RuntimeError("SQS is down"))
    with pytest.raises(RuntimeError):
        change_state(ports, caller(ports), job.job_id, "UploadComplete")
    # the client retries its PATCH
    retried = change_state(ports, caller(ports), job.job_id, "UploadComplete")  # was 409: the job had been failed
    assert retried.state is BulkState.UPLOAD_COMPLETE
    later = retried.queued_at + timedelta(seconds=ports.settings.requeue_after_seconds + 1)
    reconcile_bulk(ports, later, Thresholds.from_settings(ports.settings), ReconcileSummary())
    assert [m.job_id for m in ports.queue.messages][-1] == job.job_id


def test_an_aborted_open_job_lists_its_uploaded_rows_as_unprocessed(ports):
    """README: 'A job that failed or was aborted lists all its rows in unprocessedrecords.' An Open job aborted after
    its batches were stored had no result files at all: every result route answered 404."""
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    aborted = change_state(ports, caller(ports), job.job_id, "Aborted")
    assert aborted.state is BulkState.ABORTED and aborted.results_ready
    try:
        unprocessed = job_results(ports, caller(ports), job.job_id, "unprocessedrecords")
    except NotFound as exc:
        pytest.fail(f"unprocessedrecords of an aborted job with uploaded rows: 404 {exc}")
    assert unprocessed.body == CSV


@pytest.mark.parametrize("kind", ["successfulResults", "failedResults", "unprocessedrecords"])
def test_a_job_aborted_before_any_batch_has_empty_result_files_not_404(ports, kind):
    """An Open job aborted before any batch was stored (its PUTs all answered 409) has no records, and no files were
    written for it: each result route answered 404 'has no unprocessedrecords', which reads as a wrong job id. Every
    record is accounted for (there are none): each file is empty, as its listing of nothing would be (found on the
    local stack racing PUTs against an abort)."""
    job = new_insert(ports, line_ending=LineEnding.CRLF)
    aborted = change_state(ports, caller(ports), job.job_id, "Aborted")
    assert (aborted.state, aborted.files, aborted.results_ready) == (BulkState.ABORTED, [], True)
    # the header line every other result file starts with, for a Bulk 2.0 client reading its columns (the diff
    # review); unprocessedrecords' columns are the records' own, which no batch told
    heading = {"successfulResults": b"sf__Id,sf__Created\r\n", "failedResults": b"sf__Id,sf__Error\r\n"}
    assert job_results(ports, caller(ports), job.job_id, kind) == ResultFile(body=heading.get(kind, b""), url=None)


@pytest.mark.parametrize("kind", ["successfulResults", "failedResults", "unprocessedrecords"])
def test_a_job_aborted_with_an_upload_url_never_used_has_no_records_not_404(ports, kind):
    """An upload URL issued counts on the job as a batch would (``uploads``), but stores nothing until it is used:
    aborted with it unused, the job took no batch, and its result files are those of a job with no records (the
    state review: each route answered 404, and past ResultRetentionDays 410 'run the job again')."""
    job = new_insert(ports)
    upload_url(ports, caller(ports), job.job_id, gzip=False)
    aborted = change_state(ports, caller(ports), job.job_id, "Aborted")
    assert (aborted.state, aborted.files, aborted.uploads) == (BulkState.ABORTED, [], 1)
    heading = {"successfulResults": b"sf__Id,sf__Created\n", "failedResults": b"sf__Id,sf__Error\n"}
    assert job_results(ports, caller(ports), job.job_id, kind) == ResultFile(body=heading.get(kind, b""), url=None)


def aborted_while_listing(ports, monkeypatch, job_id: str) -> list:
    """Another request aborts the job, once, while the next listing of its batches runs. The list returned holds
    that abort's answer (None while it runs)."""
    files = ports.bulk.files
    listing = files.uploaded_batches
    raced: list = []

    def another_abort_first(listed_job):
        if not raced:
            raced.append(None)  # the other abort lists the batches itself
            raced[0] = change_state(ports, caller(ports), job_id, "Aborted")
        return listing(listed_job)

    monkeypatch.setattr(files, "uploaded_batches", another_abort_first)
    return raced


def test_of_two_aborts_at_once_the_one_whose_write_lost_answers_409(ports, monkeypatch):
    """README: 'An abort that finds the job ended, even one that ended between its read and its write, answers 409.'
    Another abort landing while this one listed the batches was answered 200 as if this one had ended the job (the
    state review: three at once all answered 200)."""
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    raced = aborted_while_listing(ports, monkeypatch, job.job_id)
    with pytest.raises(Conflict, match="already ended Aborted") as refused:
        change_state(ports, caller(ports), job.job_id, "Aborted")
    assert refused.value.details == {"state": "Aborted"}
    assert raced[0].state is BulkState.ABORTED and get_job(ports, caller(ports), job.job_id).state is BulkState.ABORTED


@pytest.mark.parametrize("request_kind", ["Aborted", "UploadComplete"])
def test_a_job_whose_batches_expired_before_it_ended_does_not_answer_an_empty_file(ports, request_kind):
    """A batch answered 201, the job left Open past ResultRetentionDays, the bucket's lifecycle took the batch, then
    the client aborts or closes it: it ends Aborted listing no file, but its rows were taken, not absent, so
    unprocessedrecords is not an empty file saying every record is accounted for (the diff review)."""
    job = new_insert(ports)
    stored = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    _opened_ago(ports, job.job_id, timedelta(days=8))
    ports.bulk.files.client.objects.pop((stored.bucket, stored.key))  # the results bucket's lifecycle
    with contextlib.suppress(Conflict):  # UploadComplete aborts it open_too_long, answering 409
        change_state(ports, caller(ports), job.job_id, request_kind)
    ended = get_job(ports, caller(ports), job.job_id)
    assert (ended.state, ended.files, ended.uploads) == (BulkState.ABORTED, [], 1)
    with pytest.raises(NotFound):
        job_results(ports, caller(ports), job.job_id, "unprocessedrecords")


def test_a_batch_replaced_after_upload_complete_is_never_what_the_job_reads(ports):
    """UploadComplete lists each batch with its size and ETag: a batch put again at its key afterwards (through the
    URL that stored it, or by anyone who could write there) fails the job, never loads in the listed one's place."""
    from events import BulkJobQueuedMessage
    from spectra.bulk.lifecycle import start_bulk_job

    job = new_insert(ports)
    stored = upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    closed = change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert [f.etag for f in closed.files] == [hashlib.md5(CSV).hexdigest()]
    ports.bulk.files.client.put_object(Bucket=stored.bucket, Key=stored.key, Body=CSV + b"2,Bo\n" * 1000)
    assert start_bulk_job(ports, BulkJobQueuedMessage(job_id=job.job_id, tenant_id="acme")) is None
    failed = ports.bulk.jobs.get(job.job_id)
    assert (failed.state, failed.error.code) == (BulkState.FAILED, "file_replaced")


def _opened_ago(ports, job_id: str, age: timedelta) -> None:
    ports.bulk.jobs._items[job_id]["created_at"] = (utcnow() - age).isoformat()


@pytest.mark.parametrize("request_kind", ["batch", "url", "UploadComplete"])
def test_a_job_open_past_its_batches_lifetime_is_aborted_not_loaded_in_part(ports, request_kind):
    """The results bucket expires every object ResultRetentionDays (7) after it was written, a job's batches too: a
    job closed after that loaded the batches still there and accounted for nothing of the others."""
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    _opened_ago(ports, job.job_id, timedelta(days=7) - timedelta(minutes=59))
    with pytest.raises(Conflict, match="Open for 7 days less an hour") as raised:
        if request_kind == "batch":
            upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
        elif request_kind == "url":
            upload_url(ports, caller(ports), job.job_id, gzip=False)
        else:
            change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert raised.value.details == {"state": "Aborted"}
    aborted = get_job(ports, caller(ports), job.job_id)
    assert (aborted.state, aborted.error.code) == (BulkState.ABORTED, "open_too_long")
    assert job_results(ports, caller(ports), job.job_id, "unprocessedrecords").body == CSV  # what was left, listed
    assert ports.queue.messages == []


def test_a_job_open_for_less_than_that_still_closes(ports):
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    _opened_ago(ports, job.job_id, timedelta(days=7) - timedelta(minutes=61))
    assert change_state(ports, caller(ports), job.job_id, "UploadComplete").state is BulkState.UPLOAD_COMPLETE


def test_result_files_the_bucket_expired_answer_410_and_name_no_bucket(ports):
    """Records live 30 days, files ResultRetentionDays (7): in between, the routes answered 404, and a query job's
    page named the results bucket and key."""
    job = finished_insert(ports)
    for kind in ("successful", "failed", "unprocessed"):
        ports.bulk.files.client.objects.pop((RESULTS_BUCKET, results_key(ports.bulk.jobs.get(job.job_id), kind)))
    with pytest.raises(NotFound):  # within the retention: never written, not expired
        job_results(ports, caller(ports), job.job_id, "successfulResults")
    _ended_ago(ports, job.job_id, timedelta(days=7, minutes=1))
    with pytest.raises(Gone, match="kept 7 days after they were written") as raised:
        job_results(ports, caller(ports), job.job_id, "successfulResults")
    assert raised.value.details == {"retention_days": 7}

    query, _ = create_job(ports, caller(ports), NewJob(object=None, operation=BulkOperation.QUERY, query="select 1"))
    ports.bulk.jobs.transition(query.job_id, BulkState.IN_PROGRESS)
    part = ExportFile(key=f"acme/{query.job_id}/export/part_0000_part_00", rows=1, bytes=6)
    ports.bulk.jobs.transition(query.job_id, BulkState.JOB_COMPLETE, export_files=[part], export_columns=["x"])
    for expected in (NotFound, Gone):
        with pytest.raises(expected) as raised:
            query_results(ports, caller(ports), query.job_id, locator=None, max_records=10)
        assert RESULTS_BUCKET not in raised.value.message and "export" not in raised.value.message
        _ended_ago(ports, query.job_id, timedelta(days=8))


def test_result_files_the_bucket_still_holds_past_their_retention_answer_410_and_urls_end_with_it(ports):
    """The bucket deletes files up to a day after their retention (the next midnight UTC, then whenever S3 gets to
    it): until then the routes still served them, and signed their URLs for the whole presign time (found by
    review). A URL signed near the end lives only to it, as a query job's results' URLs do."""
    job = finished_insert(ports)
    query, _ = create_job(ports, caller(ports), NewJob(object=None, operation=BulkOperation.QUERY, query="select 1"))
    ports.bulk.jobs.transition(query.job_id, BulkState.IN_PROGRESS)
    key = f"acme/{query.job_id}/export/part_0000_part_00"
    ports.bulk.files.client.put_object(Bucket=RESULTS_BUCKET, Key=key, Body=b"x\n1\n")
    part = ExportFile(key=key, rows=1, bytes=4)
    ports.bulk.jobs.transition(query.job_id, BulkState.JOB_COMPLETE, export_files=[part], export_columns=["x"])

    _ended_ago(ports, job.job_id, timedelta(days=7) - timedelta(seconds=40))
    url = job_results(ports, caller(ports), job.job_id, "successfulResults").url
    assert url is not None
    assert 0 < int(urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["X-Amz-Expires"][0]) <= 40
    assert query_results(ports, caller(ports), query.job_id, locator=None, max_records=10).records == 1

    for job_id in (job.job_id, query.job_id):
        _ended_ago(ports, job_id, timedelta(days=7, minutes=1))  # past the retention, the files still there
    with pytest.raises(Gone, match="kept 7 days after they were written"):
        job_results(ports, caller(ports), job.job_id, "successfulResults")
    with pytest.raises(Gone, match="kept 7 days after they were written"):
        query_results(ports, caller(ports), query.job_id, locator=None, max_records=10)


def test_a_query_page_the_bucket_expired_answers_410_when_its_unload_ran_across_midnight(ports, monkeypatch):
    """Found by the clocks review: the bucket deletes a part ResultRetentionDays after its write, rounded up to the
    next midnight UTC; a part written at 23:50 by an UNLOAD that ended at 00:20 was gone at that midnight, yet 410
    counted from the ending: for 20 minutes the page answered 404 "has lost a file of its results"."""
    query, _ = create_job(ports, caller(ports), NewJob(object=None, operation=BulkOperation.QUERY, query="select 1"))
    midnight = datetime(2026, 3, 1, tzinfo=UTC)
    monkeypatch.setattr(downloads, "utcnow", lambda: midnight - timedelta(minutes=10))
    ports.bulk.jobs.transition(query.job_id, BulkState.IN_PROGRESS, started_at=downloads.utcnow())
    part = ExportFile(key=f"acme/{query.job_id}/export/part_0000_part_00", rows=1, bytes=6)
    ended = midnight + timedelta(minutes=20)
    ports.bulk.jobs.transition(
        query.job_id, BulkState.JOB_COMPLETE, export_files=[part], export_columns=["x"], completed_at=ended
    )
    monkeypatch.setattr(downloads, "utcnow", lambda: midnight + timedelta(days=7, minutes=5))  # the part deleted
    with pytest.raises(Gone, match="kept 7 days after they were written"):
        query_results(ports, caller(ports), query.job_id, locator=None, max_records=10)


def _ended_ago(ports, job_id: str, age: timedelta) -> None:
    """The job made, run and ended ``age`` ago."""
    for field in ("created_at", "started_at", "completed_at"):
        ports.bulk.jobs._items[job_id][field] = (utcnow() - age).isoformat()


#: Lambda's synchronous answer, as JSON (local/runner/api_gateway.py enforces it as AWS does: past it, a 502)
LAMBDA_ANSWER_MAX_BYTES = 6 * 1024 * 1024 + 100


def test_a_listing_of_query_jobs_at_the_largest_queries_fits_lambdas_answer(ports, monkeypatch):
    """Each record carries its job's query, up to 100 KB (six times that as JSON escapes): 100 query jobs of 100 KB
    made a 10 MB page, past Lambda's 6 MiB answer, so every GET of that page was API Gateway's 502, whatever the
    client retried. A page now ends once its queries pass 4 MiB, with a next_token at the last job kept (a filtered
    page is short at times already), and walking the pages lists each job once."""
    from producers.api import app as api
    from producers.api import bulk as bulk_routes
    from tests.unit.bulk_helpers import bulk_job

    monkeypatch.setattr(bulk_routes, "get_ports", lambda budget: ports)
    generation = ports.tenants.get("acme").generation
    made = set()
    for n in range(100):
        query = f"select {n} as n -- " + "\x01" * 30_000 + "x" * 70_000  # 100 KB, the control bytes escaped 6-fold
        job = bulk_job(BulkOperation.QUERY, query=query, tenant_generation=generation, state=BulkState.JOB_COMPLETE)
        made.add(ports.bulk.jobs.create(job)[0].job_id)
    listed, params, pages = [], {"limit": "100"}, 0
    while params:
        event = {
            "httpMethod": "GET",
            "path": "/v1/bulk/jobs",
            "resource": "/v1/bulk/jobs",
            "headers": {},
            "queryStringParameters": params,
            "body": None,
            "isBase64Encoded": False,
            "requestContext": {"requestId": "r1", "authorizer": {"tenant_id": "acme"}, "stage": "v1"},
        }
        answer = api.app.resolve(event, None)
        assert answer["statusCode"] == 200, answer["body"][:500]
        assert len(json.dumps(answer)) <= LAMBDA_ANSWER_MAX_BYTES, f"page {pages + 1} is past Lambda's answer"
        page = json.loads(answer["body"])
        assert all(len(record["query"]) > 100_000 for record in page["records"])  # each query listed whole
        listed += [record["id"] for record in page["records"]]
        next_url = page["nextRecordsUrl"]
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(next_url).query)) if next_url else None
        pages += 1
    assert sorted(listed) == sorted(made) and pages > 1
