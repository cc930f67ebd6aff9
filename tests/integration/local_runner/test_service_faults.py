"""The local moto's fault switch (``local.aws.failing``), which the fault suite's service storms use: a fault answers
the requests it names with AWS's own error, as botocore reads it, and leaves every other request as it was."""

from __future__ import annotations

import uuid

import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from local.aws import s3_error

pytestmark = pytest.mark.integration


def test_a_fault_on_one_bucket_fails_it_alone_and_keeps_other_buckets_bodies_whole(local_aws):
    """A fault naming one bucket makes the middleware read other requests' bodies to look for the name. A chunked
    upload has no Content-Length: read by a length it does not have, the body was lost and moto stored an empty
    object, answered 200 (the review of the storm switch)."""
    s3 = local_aws.client("s3", config=Config(signature_version="s3v4"))
    failing, drops = f"failing-{uuid.uuid4().hex[:8]}", f"drops-{uuid.uuid4().hex[:8]}"
    for bucket in (failing, drops):
        s3.create_bucket(Bucket=bucket)
    url = s3.generate_presigned_url("put_object", Params={"Bucket": drops, "Key": "k"}, ExpiresIn=60)
    local_aws.fail(s3_error("SlowDown", seconds=60, resource=failing))
    try:
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket=failing, Key="k", Body=b"x")
        assert refused.value.response["Error"]["Code"] == "SlowDown"
        put = requests.put(url, data=(part for part in (b"hello ", b"world")), timeout=30)  # chunked: no length
        assert put.status_code == 200, put.text
        s3.put_object(Bucket=drops, Key="sized", Body=b"sized body")
    finally:
        failed = local_aws.recover()
    assert s3.get_object(Bucket=drops, Key="k")["Body"].read() == b"hello world"
    assert s3.get_object(Bucket=drops, Key="sized")["Body"].read() == b"sized body"
    assert set(failed) == {"s3:PUT"}  # the failing bucket's PUT alone (botocore tried it again)
