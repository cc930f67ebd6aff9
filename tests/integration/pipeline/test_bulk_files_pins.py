"""Bulk file port behaviour no test held before (found by mutation testing spectra/bulk/files.py): what S3 refuses
for a reason other than a missing key is raised as S3 said it, never taken for a missing object or a tag written;
taking a batch back is best effort and says whether it is gone; a batch URL signs ``If-None-Match: *`` and a drop URL
its metadata, each with the value the holder must send (checked against an independent SigV4 signer), and a drop URL
may be written again.

Runs on S3 (moto); :class:`Faulty` refuses the calls a test picks."""

from __future__ import annotations

import gzip
import random
import uuid
import zlib
from datetime import timedelta

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from spectra.bulk.files import BulkFiles, FileUnreadable, WrittenBefore
from spectra.bulk.models import SourceFile
from tests.fixtures.aws import Faulty
from tests.integration.pipeline.test_bulk_files_contract import _put
from tests.sigv4 import PresignedUrl
from tests.unit.bulk_helpers import bulk_job

pytestmark = pytest.mark.integration


def _refused(code: str):
    """A fault that answers the call as S3 refusing it with ``code``."""

    def fault(real, kwargs):
        raise ClientError({"Error": {"Code": code, "Message": f"{code} for this test"}}, "S3")

    return fault


@pytest.fixture
def s3(local_aws):
    """(the plain client, a faulty client on it, BulkFiles over the faulty one, the bucket: results and ingest)."""
    client = local_aws.client("s3", config=Config(signature_version="s3v4"))
    bucket = f"pins-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    faulty = Faulty(client)
    return client, faulty, BulkFiles(faulty, results_bucket=bucket, ingest_bucket=bucket), bucket


def test_a_batch_taken_back_is_deleted_and_said_gone(s3):
    """discard deletes the stored batch and answers True."""
    client, _, files, bucket = s3
    stored = files.put("acme/b_1/uploads/a.csv", b"id\n1\n")
    assert files.discard(stored) is True
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_a_batch_s3_refuses_to_delete_stays_and_is_said_not_gone_without_raising(s3):
    """Taking a batch back is best effort: a delete S3 refuses leaves the batch, answers False and raises nothing,
    so the caller's own answer (a 409 for a batch stored as its job closed) is not turned into a 500."""
    client, faulty, files, bucket = s3
    stored = files.put("acme/b_1/uploads/a.csv", b"id\n1\n")
    faulty.faults["delete_object"] = _refused("AccessDenied")
    assert files.discard(stored) is False
    assert client.get_object(Bucket=bucket, Key=stored.key)["Body"].read() == b"id\n1\n"


def test_a_sidecar_read_s3_refuses_is_raised_not_taken_for_no_sidecar(s3):
    """read_small answers None only for a missing key; a read refused (AccessDenied) is raised as S3's error, so a
    dropped file is not loaded as if it had no sidecar options."""
    client, faulty, files, bucket = s3
    client.put_object(Bucket=bucket, Key="acme/contacts/a.json", Body=b'{"operation": "upsert"}')
    faulty.faults["get_object"] = _refused("AccessDenied")
    with pytest.raises(ClientError) as refused:
        files.read_small(bucket, "acme/contacts/a.json", limit=100)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_a_file_read_s3_refuses_is_raised_as_s3_said(s3):
    """chunks answers NotFound, FileReplaced or nothing (a range past the end) for those; any other refusal is raised
    as S3's own error, naming its code."""
    _, faulty, files, _ = s3
    source = files.put("acme/b_1/uploads/a.csv", b"id\n1\n")
    faulty.faults["get_object"] = _refused("SlowDown")
    with pytest.raises(ClientError) as refused:
        list(files.chunks(source))
    assert refused.value.response["Error"]["Code"] == "SlowDown"


def test_a_head_s3_refuses_is_raised_not_taken_for_no_object(s3):
    """head and size answer None only for a missing key; a HEAD refused (AccessDenied) is raised, so a batch that is
    there is never taken for one gone (and put again, or a job's file said missing)."""
    _, faulty, files, _ = s3
    source = files.put("acme/b_1/uploads/a.csv", b"id\n1\n")
    assert files.size(source.key) == 5
    faulty.faults["head_object"] = _refused("AccessDenied")
    with pytest.raises(ClientError) as refused:
        files.size(source.key)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_a_tag_s3_refuses_is_raised(s3):
    """Tagging a file that is gone is no error, but a tag S3 refuses is raised: the file would otherwise be taken
    as tagged, and the bucket's lifecycle never expire it."""
    client, faulty, files, bucket = s3
    client.put_object(Bucket=bucket, Key="acme/contacts/a.csv", Body=b"id\n1\n")
    faulty.faults["put_object_tagging"] = _refused("AccessDenied")
    with pytest.raises(ClientError) as refused:
        files.tag_processed(SourceFile(bucket=bucket, key="acme/contacts/a.csv"))
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_a_drop_url_may_write_its_key_again(s3):
    """A URL given without once (a drop URL) writes its key whenever it is put: a tenant drops a corrected file over
    the first, and the second upload is the one stored."""
    client, _, files, bucket = s3
    url = files.presign_put(bucket, "acme/contacts/mine.csv", ttl_seconds=900)
    assert _put(url, b"id\n1\n", {}) == 200
    assert _put(url, b"id\n2\n", {}) == 200
    assert client.get_object(Bucket=bucket, Key="acme/contacts/mine.csv")["Body"].read() == b"id\n2\n"


SECRET = "pins-secret-key"


def _signing_files() -> BulkFiles:
    """BulkFiles over a client with known keys: presigning is local, so nothing is sent."""
    client = boto3.client(
        "s3",
        region_name="eu-west-1",
        aws_access_key_id="AKIAPINS",
        aws_secret_access_key=SECRET,
        config=Config(signature_version="s3v4"),
    )
    return BulkFiles(client, results_bucket="results", ingest_bucket="ingest")


def test_a_batch_url_signs_if_none_match_star_and_nothing_else():
    """A batch URL is good for a PUT sent with ``If-None-Match: *`` (S3's write-once), exactly that value: S3 would
    refuse the client's PUT were the URL to sign another value, and write any number of times were it to sign none."""
    url = _signing_files().presign_put("results", "acme/b_1/uploads/x.csv", ttl_seconds=900, once=True)
    presigned = PresignedUrl.parse(url)
    assert presigned.params["X-Amz-SignedHeaders"] == "host;if-none-match"
    assert presigned.params["X-Amz-Expires"] == "900"
    assert presigned.params["X-Amz-Signature"] == presigned.expected_signature(
        SECRET, method="PUT", headers={"If-None-Match": "*"}
    )


def test_a_drop_url_signs_its_metadata_and_no_write_once():
    """A drop URL is good for a PUT sent with its options as ``x-amz-meta-*`` headers, their values exactly, and with
    no ``If-None-Match``: a tenant may drop a corrected file over the first."""
    options = {"operation": "upsert", "externalidfieldname": "email"}
    url = _signing_files().presign_put("ingest", "acme/contacts/x.csv", ttl_seconds=600, metadata=options)
    presigned = PresignedUrl.parse(url)
    sent = {f"x-amz-meta-{name}": value for name, value in options.items()}
    assert presigned.params["X-Amz-Signature"] == presigned.expected_signature(SECRET, method="PUT", headers=sent)
    plain = PresignedUrl.parse(_signing_files().presign_put("ingest", "acme/contacts/y.csv", ttl_seconds=600))
    assert plain.params["X-Amz-SignedHeaders"] == "host"
    assert plain.params["X-Amz-Signature"] == plain.expected_signature(SECRET, method="PUT")


def test_a_batch_written_exactly_30_s_before_its_job_is_its_own_and_a_microsecond_earlier_is_not(s3):
    """S3's clock and ours may differ by 30 s: a batch S3 stamps up to exactly 30 s before its job's created_at is
    the job's own and is loaded; one stamped 30 s and 1 us before is an older job's of the same id, left out."""
    client, _, files, bucket = s3
    batch = files.put("acme/b_3/uploads/20260301T1-a.csv", b"id\n1\n")
    written = client.head_object(Bucket=bucket, Key=batch.key)["LastModified"]
    job = bulk_job().model_copy(update={"job_id": "b_3"})
    at_30_s = job.model_copy(update={"created_at": written + timedelta(seconds=30)})
    assert [f.key for f in files.uploaded_batches(at_30_s)] == [batch.key]
    past_30_s = job.model_copy(update={"created_at": written + timedelta(seconds=30, microseconds=1)})
    assert files.uploaded_batches(past_30_s) == []


def test_a_sidecar_written_at_the_very_time_asked_for_is_read(s3):
    """read_small refuses only a sidecar written before written_since: one S3 stamps at exactly that time is read."""
    client, _, files, bucket = s3
    client.put_object(Bucket=bucket, Key="acme/contacts/a.json", Body=b"{}")
    written = client.head_object(Bucket=bucket, Key="acme/contacts/a.json")["LastModified"]
    assert files.read_small(bucket, "acme/contacts/a.json", limit=2, written_since=written) == b"{}"
    with pytest.raises(WrittenBefore):
        files.read_small(bucket, "acme/contacts/a.json", limit=2, written_since=written + timedelta(microseconds=1))


def test_a_file_read_as_text_ends_its_lines_at_lf_only(s3):
    """As COPY counts lines: a CR alone is data within its line, CRLF ends a line (the CR kept for the csv module to
    take as part of the ending), and bytes that are not UTF-8 come back as they were sent."""
    _, _, files, _ = s3
    source = files.put("acme/b_1/uploads/a.csv", b"id,note\n1,a\rb\n2,c\r\n3,\xff\n")
    with files.text(source) as stream:
        lines = list(stream)
    assert lines == ["id,note\n", "1,a\rb\n", "2,c\r\n", "3,\udcff\n"]
    assert lines[3].encode("utf-8", "surrogateescape") == b"3,\xff\n"


def test_a_gz_file_of_zlib_data_is_unreadable_not_inflated(s3):
    """A .gz file must be gzip, as COPY's GZIP reads it: deflate data in zlib's own framing (no gzip header) is
    refused as not gzip when the job reads it, not inflated and loaded."""
    _, _, files, _ = s3
    source = files.put("acme/b_1/uploads/a.csv.gz", zlib.compress(b"id\n1\n2\n"))
    with pytest.raises(FileUnreadable, match="is not a valid gzip file"):
        list(files.chunks(source))
    assert b"".join(files.chunks(files.put("acme/b_1/uploads/b.csv.gz", gzip.compress(b"id\n1\n2\n")))) == (
        b"id\n1\n2\n"
    )


def test_a_gz_file_whose_second_member_is_zlib_data_is_unreadable(s3):
    """Each member of a .gz file must be gzip: a gzip member followed by zlib-framed deflate data is refused, as the
    load's COPY would refuse it, not read on as a second member."""
    _, _, files, _ = s3
    source = files.put("acme/b_1/uploads/a.csv.gz", gzip.compress(b"id\n1\n") + zlib.compress(b"2\n"))
    with pytest.raises(FileUnreadable, match="is not a valid gzip file"):
        list(files.chunks(source))


def test_a_gz_file_referring_back_32_kib_inflates_whole(s3):
    """gzip lets deflate data refer back up to 32 KiB: a file that does (a 20 KiB block of random bytes, then the
    same block again, each copy 20 KiB back) is read whole, not refused as too far back for a smaller window."""
    _, _, files, _ = s3
    block = random.Random(7).randbytes(20 * 1024)
    body = block + block + block
    source = files.put("acme/b_1/uploads/a.csv.gz", gzip.compress(body))
    assert b"".join(files.chunks(source)) == body
