"""spectra.results.S3Upload on moto's S3: an upload given up (its writer failed part-way) replaces nothing, whether it
was still one PutObject's worth or had become a multipart upload, and leaves no multipart upload behind."""

from __future__ import annotations

import uuid

import pytest

from spectra.results import S3Upload

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("size", [1024, S3Upload.MULTIPART_THRESHOLD + 1024], ids=["small", "multipart"])
def test_an_upload_given_up_leaves_the_object_at_its_key_as_it_was(local_aws, size):
    s3 = local_aws.client("s3")
    bucket = f"uploads-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="results/successful.csv", Body=b"the winner's files\n")

    upload = S3Upload(s3, bucket, "results/successful.csv", "text/csv")
    upload.write(b"x" * size)
    upload.give_up()
    upload.close()

    assert s3.get_object(Bucket=bucket, Key="results/successful.csv")["Body"].read() == b"the winner's files\n"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    whole = S3Upload(s3, bucket, "results/successful.csv", "text/csv")  # and one not given up replaces it
    whole.write(b"y" * size)
    whole.close()
    assert s3.get_object(Bucket=bucket, Key="results/successful.csv")["ContentLength"] == size
