"""One scenario suite, two S3s under the real BulkFiles: the FakeS3 the unit tier uses and moto's S3.

The bulk unit tests read headers, records and result pages through BulkFiles on a FakeS3; these scenarios keep that
fake to what S3 itself answers (ranged reads and a range past the end, a missing key on GET, HEAD and tagging,
listing order and sizes, metadata names, a read pinned to an ETag), so a unit test cannot pass on behaviour S3 does
not have.
"""

from __future__ import annotations

import gzip
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from botocore.config import Config

from spectra.bulk.files import BulkFiles, FileReplaced, FileUnreadable, WrittenBefore
from spectra.bulk.models import SourceFile
from spectra.errors import NotFound
from tests.unit.bulk_helpers import bulk_job
from tests.unit.fakes import FakeS3

pytestmark = pytest.mark.integration


@pytest.fixture(params=["fake", "moto"])
def files(request):
    if request.param == "fake":
        return BulkFiles(FakeS3(), results_bucket="results", ingest_bucket="ingest")
    s3 = request.getfixturevalue("local_aws").client("s3")
    results, ingest = (f"{name}-{uuid.uuid4().hex[:10]}" for name in ("results", "ingest"))
    for bucket in (results, ingest):
        s3.create_bucket(Bucket=bucket)
    return BulkFiles(s3, results_bucket=results, ingest_bucket=ingest)


def test_a_put_batch_reads_back_whole_and_from_an_offset(files):
    body = b"id,name\n" + b"".join(b"%d,row %d\n" % (i, i) for i in range(2000))
    source = files.put("acme/b_1/uploads/batch-1.csv", body)
    assert source == SourceFile(bucket=files.results_bucket, key="acme/b_1/uploads/batch-1.csv", size=len(body))
    assert b"".join(files.chunks(source)) == body
    assert b"".join(files.chunks(source, start=8)) == body[8:]
    assert b"".join(files.chunks(source, start=len(body) - 1)) == body[-1:]
    assert list(files.chunks(source, start=len(body))) == []  # S3 refuses the range; the reader ends
    assert files.read_all(source.key) == body
    assert files.size(source.key) == len(body)


def test_head_bytes_stops_at_its_limit_and_says_whether_it_read_everything(files):
    source = files.put("acme/b_1/uploads/a.csv", b"0123456789")
    assert files.head_bytes(source, limit=4) == (b"0123", False)
    assert files.head_bytes(source, limit=10) == (b"0123456789", True)


def test_gzip_batches_are_inflated_and_a_bad_one_is_unreadable(files):
    body = b"id\n" + b"1\n" * 5000
    good = files.put("acme/b_1/uploads/a.csv.gz", gzip.compress(body[:100]) + gzip.compress(body[100:]))
    assert good.gzip is True
    assert b"".join(files.chunks(good)) == body
    bad = files.put("acme/b_1/uploads/b.csv.gz", b"not gzip")
    with pytest.raises(FileUnreadable):
        b"".join(files.chunks(bad))


def test_a_dropped_file_reads_only_while_its_key_holds_the_upload_it_was_dropped_as(files):
    key = "acme/accounts/jan.csv"
    etag = files.client.put_object(Bucket=files.ingest_bucket, Key=key, Body=b"id\n1\n")["ETag"]
    dropped = SourceFile(bucket=files.ingest_bucket, key=key, etag=etag.strip('"'))
    assert b"".join(files.chunks(dropped)) == b"id\n1\n"
    assert b"".join(files.chunks(dropped, start=3)) == b"1\n"
    files.client.put_object(Bucket=files.ingest_bucket, Key=key, Body=b"id\n2\n")
    with pytest.raises(FileReplaced):
        files.head_bytes(dropped, limit=10)
    assert b"".join(files.chunks(dropped.model_copy(update={"etag": None}))) == b"id\n2\n"


def test_a_missing_object_is_none_on_head_and_small_reads_and_not_found_on_reads(files):
    missing = SourceFile(bucket=files.ingest_bucket, key="acme/accounts/gone.csv")
    assert files.head(missing.bucket, missing.key) is None
    assert files.read_small(missing.bucket, "acme/accounts/gone.json", limit=10) is None
    assert files.size("acme/b_1/results/failed.csv") is None
    with pytest.raises(NotFound):
        list(files.chunks(missing))
    files.tag_processed(missing)  # tagging a deleted drop is not an error


def test_uploaded_batches_are_listed_in_key_order_with_their_sizes(files):
    job_prefix = "acme/b_1/uploads/"
    for name, body in [("20260301T2-b.csv", b"bb"), ("20260301T1-a.csv.gz", b"a"), ("20260301T3-c.csv", b"ccc")]:
        files.put(job_prefix + name, body)
    files.put("acme/b_10/uploads/x.csv", b"another job whose id starts the same")
    files.put("acme/b_1/load/plain.manifest", b"{}")
    listed = files.uploaded_batches(bulk_job().model_copy(update={"job_id": "b_1"}))
    assert [(f.key.removeprefix(job_prefix), f.size, f.gzip) for f in listed] == [
        ("20260301T1-a.csv.gz", 1, True),
        ("20260301T2-b.csv", 2, False),
        ("20260301T3-c.csv", 3, False),
    ]
    assert files.uploaded_batches(bulk_job().model_copy(update={"job_id": "b_none"})) == []


def test_batches_written_before_their_job_was_made_are_not_its_own(files):
    """A job made again under an expired Idempotency-Key keeps its id and prefix: what S3 stamped (LastModified)
    more than CLOCK_LEEWAY before the job's created_at was the old job's, and is not listed (found by the diff
    review). Within the leeway it is: S3's clock and ours differ."""
    from spectra.bulk.files import CLOCK_LEEWAY

    batch = files.put("acme/b_2/uploads/20260301T1-a.csv", b"id\n1\n")
    written = files.client.head_object(Bucket=batch.bucket, Key=batch.key)["LastModified"]
    job = bulk_job().model_copy(update={"job_id": "b_2"})
    made_after = job.model_copy(update={"created_at": written + CLOCK_LEEWAY + timedelta(seconds=5)})
    assert files.uploaded_batches(made_after) == []
    made_just_after = job.model_copy(update={"created_at": written + CLOCK_LEEWAY - timedelta(seconds=5)})
    assert [f.key for f in files.uploaded_batches(made_just_after)] == [batch.key]


def test_metadata_comes_back_under_lower_case_names_and_tags_replace_the_set(files):
    s3 = files.client
    s3.put_object(Bucket=files.ingest_bucket, Key="acme/a/x.csv", Body=b"id\n1\n", Metadata={"Operation": "upsert"})
    head = files.head(files.ingest_bucket, "acme/a/x.csv")
    assert head["Metadata"] == {"operation": "upsert"}
    assert head["ContentLength"] == 5 and head["ETag"].startswith('"')
    source = SourceFile(bucket=files.ingest_bucket, key="acme/a/x.csv")
    files.tag(source, "spectra-rejected", "no-active-tenant")
    files.tag_processed(source)
    tags = s3.get_object_tagging(Bucket=files.ingest_bucket, Key="acme/a/x.csv")["TagSet"]
    assert tags == [{"Key": "spectra-processed", "Value": "true"}]


def test_read_small_refuses_past_its_limit(files):
    files.client.put_object(Bucket=files.ingest_bucket, Key="acme/a/x.json", Body=b"x" * 11)
    assert files.read_small(files.ingest_bucket, "acme/a/x.json", limit=11) == b"x" * 11
    with pytest.raises(ValueError, match="larger than 10 bytes"):
        files.read_small(files.ingest_bucket, "acme/a/x.json", limit=10)


def test_read_small_refuses_an_object_written_before_written_since(files):
    """A sidecar older than its tenant was not put for it (spectra.bulk.drops): S3's GetObject answers the write's
    time (LastModified), which the fake must answer too."""
    files.client.put_object(Bucket=files.ingest_bucket, Key="acme/a/x.json", Body=b"{}")
    now = datetime.now(UTC)
    assert files.read_small(files.ingest_bucket, "acme/a/x.json", limit=10, written_since=now - timedelta(minutes=5))
    with pytest.raises(WrittenBefore):
        files.read_small(files.ingest_bucket, "acme/a/x.json", limit=10, written_since=now + timedelta(minutes=5))


def test_result_files_stream_out_and_read_back(files):
    with files.writer("acme/b_1/results/successful.csv") as out:
        out.write(b"sf__Id,sf__Created\n")
        out.write(b",true\n")
    assert files.read_all("acme/b_1/results/successful.csv") == b"sf__Id,sf__Created\n,true\n"


def test_a_put_that_leaves_out_a_header_its_url_signs_is_refused_as_s3_refuses_it(local_aws):
    """Found walking the README on the local stack: a drop URL's file put without the answer's `x-amz-meta-*`
    headers loaded as an insert where the URL signed an upsert, and an upload URL put without `If-None-Match: *`
    could be written twice, each answered 200. S3 refuses both (403: the signature covers every header the URL
    names); the local stack now does too (local/aws.py), so a client that drops the headers fails here first."""
    s3 = local_aws.client("s3", config=Config(signature_version="s3v4"))  # as spectra/ports.py builds it
    bucket = "signed-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket)
    files = BulkFiles(s3, results_bucket=bucket, ingest_bucket=bucket)
    batch_key, drop_key = "acme/b_job/uploads/20260101T000000000000-abcd.csv", "acme/contacts/mine.csv"
    batch_url = files.presign_put(bucket, batch_key, ttl_seconds=900, once=True)
    options = {"operation": "upsert", "externalidfieldname": "email"}
    drop_url = files.presign_put(bucket, drop_key, ttl_seconds=900, metadata=options)
    sent = {f"x-amz-meta-{name}": value for name, value in options.items()}
    body = b"email,name\nann@acme.test,Ann\n"

    assert _put(batch_url, body, {}) == 403
    assert _put(drop_url, body, {}) == 403
    assert _put(drop_url, body, {"x-amz-meta-operation": "upsert"}) == 403  # one of the two left out
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0

    assert _put(batch_url, body, {"If-None-Match": "*"}) == 200
    assert _put(drop_url, body, sent) == 200
    assert s3.head_object(Bucket=bucket, Key=drop_key)["Metadata"] == options


def _put(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": "text/csv", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_batch_upload_url_writes_its_key_once(local_aws):
    """The URL of one batch, put again after UploadComplete listed the batch, replaced it with one of any size (the
    job then read the new one). S3's conditional write (If-None-Match: *) is signed into the URL, so the holder must
    send it, and a second PUT finds the key taken. moto checks no signature, so the URL's signed headers are read."""
    s3 = local_aws.client("s3", config=Config(signature_version="s3v4"))  # as spectra/ports.py builds it
    bucket = "once-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket)
    files = BulkFiles(s3, results_bucket=bucket, ingest_bucket=bucket)
    key = "acme/b_job/uploads/20260101T000000000000-abcd.csv"
    url = files.presign_put(bucket, key, ttl_seconds=900, once=True)
    signed = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["X-Amz-SignedHeaders"][0].split(";")
    assert "if-none-match" in signed
    once = {"If-None-Match": "*"}
    assert _put(url, b"id,name\n7,Ann\n", once) == 200
    assert _put(url, b"id,name\n" + b"7,Ann\n" * 10_000, once) == 412
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"id,name\n7,Ann\n"


def test_a_result_files_download_says_its_charset_and_no_store_whatever_it_was_written_with(local_aws):
    """The API answers a bulk result file inline as text/csv; charset=utf-8; past the inline size it is a 303 to S3,
    which answered it as written (text/csv, no charset: requests' .text read Zoë as ZoÃ«), a file's type depending on
    its size (the review of 0a4a117). The URL has S3 answer the API's type, for files written before it too."""
    import requests

    s3 = local_aws.client("s3")
    bucket = f"results-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    files = BulkFiles(s3, results_bucket=bucket, ingest_bucket=bucket)
    s3.put_object(
        Bucket=bucket, Key="old.csv", Body="sf__Id,sf__Created,name\n,true,Zoë\n".encode(), ContentType="text/csv"
    )
    with files.writer("new.csv") as out:
        out.write("sf__Id,sf__Created,name\n,true,Zoë\n".encode())
    for key in ("old.csv", "new.csv"):
        download = requests.get(files.presign_get(bucket, key, ttl_seconds=60), timeout=30)
        assert download.status_code == 200
        assert download.headers["Cache-Control"] == "no-store"
        assert download.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert download.text.splitlines()[1] == ",true,Zoë"
