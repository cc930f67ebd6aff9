"""Result sink behaviour on moto's S3 that no test held before (found by mutation testing spectra/results.py, second
sample): a result file that grows past the multipart threshold keeps every byte written after it became a multipart
upload, and its object answers the Content-Type a small file's does."""

from __future__ import annotations

import uuid

import pytest

from spectra.results import S3Upload

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def test_an_upload_past_the_multipart_threshold_keeps_every_later_write_and_its_content_type(local_aws):
    """Three writes: 8 MiB (the threshold, which turns the upload into a multipart one), then 8 MiB and 5 bytes
    more. The object holds all 16 MiB and 5 bytes in order (not the later writes alone, as a second upload of them
    would leave), count says so, it went up in parts of 8 MiB (its ETag counts 3), not one part held whole in
    memory, and it is application/gzip as given."""
    s3 = local_aws.client("s3")
    bucket = f"uploads-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    writes = [b"a" * (8 * MIB), b"b" * (8 * MIB), b"tail!"]

    upload = S3Upload(s3, bucket, "acme/j_1/part-00000.csv.gz", "application/gzip")
    assert [upload.write(data) for data in writes] == [8 * MIB, 8 * MIB, 5]
    upload.close()

    stored = s3.get_object(Bucket=bucket, Key="acme/j_1/part-00000.csv.gz")
    assert stored["ContentType"] == "application/gzip"
    assert stored["ETag"].strip('"').endswith("-3")
    assert stored["Body"].read() == b"".join(writes)
    assert upload.count == 16 * MIB + 5
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
