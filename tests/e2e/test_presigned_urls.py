"""Result files through the API: SigV4 presigned GETs of one object each, short-lived, that download the object.

moto checks neither the signature nor the expiry of a presigned URL, so the test recomputes the signature
(tests/sigv4.py, written from AWS's documentation) with the credentials the functions sign with.
"""

from __future__ import annotations

import gzip

import pytest
import requests

from local.aws import LOCAL_CREDENTIALS
from spectra.ports import get_ports
from tests.sigv4 import assert_sigv4_get_url

pytestmark = pytest.mark.e2e


def test_result_urls_are_sigv4_and_download_their_object(new_tenant, local_aws):
    client = new_tenant()
    job = client.wait(client.submit("select g as n from generate_series(1, 3) g", format="csv")["job_id"])
    assert job["status"] == "COMPLETED", job
    body = client.request("GET", f"/v1/jobs/{job['job_id']}/results").json()
    ttl = get_ports().settings.presign_ttl_seconds
    assert body["expires_in"] == ttl <= 3600

    [file] = body["files"]
    url = assert_sigv4_get_url(
        file["url"],
        access_key=LOCAL_CREDENTIALS["aws_access_key_id"],
        secret_key=LOCAL_CREDENTIALS["aws_secret_access_key"],
        region=local_aws.region,
        ttl_seconds=ttl,
    )
    bucket, _, key = url.path.lstrip("/").partition("/")  # the local endpoint is an IP address: path-style
    assert key.startswith(f"{client.tenant_id}/{job['job_id']}/part-")
    assert url.params["X-Amz-Signature"] != url.expected_signature(
        LOCAL_CREDENTIALS["aws_secret_access_key"], method="PUT"
    )

    download = requests.get(file["url"], timeout=10)
    assert download.status_code == 200
    # the bytes are gzip, and say so (labelled text/csv, a client trusting the label read binary: newcomer review)
    assert download.headers["Content-Type"] == "application/gzip" and "Content-Encoding" not in download.headers
    # signed into the URL (response-cache-control): with S3's Last-Modified alone, a cache could keep the file and
    # hand it out past the URL's expiry
    assert download.headers["Cache-Control"] == "no-store"
    stored = local_aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    assert download.content == stored
    assert gzip.decompress(download.content).decode().splitlines() == ['"n"', "1", "2", "3"]
