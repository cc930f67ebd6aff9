"""Result URLs as the ports build them: SigV4 presigned GETs of one object (botocore would presign with SigV2 unless
its S3 client is told otherwise). Presigning is local, so this runs with the network off."""

from __future__ import annotations

import boto3
import pytest

from spectra.jobs import JobResult, ResultFile
from spectra.ports import build_ports
from spectra.results import NO_STORE
from tests.sigv4 import assert_sigv4_get_url
from tests.unit.fakes import make_settings

pytestmark = pytest.mark.unit

ACCESS_KEY, SECRET_KEY, REGION = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "eu-west-1"


def signing_ports(monkeypatch, settings, region: str = REGION):
    """Ports whose S3 client signs with the fixed test credentials, pointed at AWS (not a local stack)."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)  # another tier's local stack may have exported its endpoints
    session = boto3.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=region)
    return build_ports(settings, session=session)


def one_file_result(prefix: str, key: str) -> JobResult:
    return JobResult(
        bucket="spectra-results",
        prefix=prefix,
        manifest_key=f"{prefix}manifest.json",
        files=[ResultFile(key=key, rows=1, bytes=10)],
        row_count=1,
        bytes=10,
        columns=[],
    )


@pytest.mark.parametrize("region", [REGION, "us-east-1"])
def test_result_urls_are_short_lived_sigv4_gets_of_one_object(monkeypatch, region):
    """On the bucket's regional host, us-east-1 too (where botocore presigns for the global s3.amazonaws.com unless
    told: README's claim was false there; the query review)."""
    settings = make_settings()
    ports = signing_ports(monkeypatch, settings, region)
    key = "acme/j_x-Y_1/part-00000.csv.gz"
    result = one_file_result("acme/j_x-Y_1/", key)
    [file] = ports.results.presign(result, ttl_seconds=settings.presign_ttl_seconds)
    url = assert_sigv4_get_url(
        file["url"], access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=region, ttl_seconds=300
    )
    assert url.host == f"spectra-results.s3.{region}.amazonaws.com" and url.path == f"/{key}"
    # The signature covers the method and the object: the same URL is no PUT, and no other key.
    assert url.params["X-Amz-Signature"] != url.expected_signature(SECRET_KEY, method="PUT")
    assert url.params["X-Amz-Signature"] != url.expected_signature(SECRET_KEY, path="/acme/j_x-Y_1/manifest.json")


def test_every_presigned_get_tells_caches_not_to_store_the_file(monkeypatch):
    """S3 answers a GET with Last-Modified and no Cache-Control, which RFC 9111 lets any cache keep fresh for a tenth
    of the file's age (hours, for a day-old result) and hand to the URL's next holder without asking S3, after the
    URL has expired. Each URL (query results, their manifest, bulk result files) signs in ``response-cache-control:
    no-store``, which S3 answers as the file's Cache-Control (over HTTP: tests/e2e/test_presigned_urls.py)."""
    ports = signing_ports(monkeypatch, make_settings())
    result = one_file_result("acme/j_1/", "acme/j_1/part-00000.csv.gz")
    urls = [
        ports.results.presign(result, ttl_seconds=300)[0]["url"],
        ports.results.presign_key(result, "acme/j_1/manifest.json", ttl_seconds=300),
        ports.bulk.files.presign_get("spectra-results", "acme/b_1/results/successful.csv", ttl_seconds=300),
    ]
    for url in urls:
        signed = assert_sigv4_get_url(url, access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION, ttl_seconds=300)
        assert signed.params.get("response-cache-control") == NO_STORE, url


def test_the_url_lifetime_is_short_by_default_and_bounded():
    assert make_settings().presign_ttl_seconds == 300
    with pytest.raises(ValueError):
        make_settings(presign_ttl_seconds=3601)
