"""An independent check of SigV4 presigned S3 URLs, written from AWS's documentation ("Authenticating Requests:
Using Query Parameters"), not from botocore, so a test compares two implementations. moto checks neither the
signature nor the expiry of a presigned URL, so this is what stands in for S3's own check."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlsplit


@dataclass(frozen=True)
class PresignedUrl:
    host: str
    path: str
    params: dict[str, str]

    @classmethod
    def parse(cls, url: str) -> PresignedUrl:
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
        params = dict(pairs)
        assert len(params) == len(pairs), f"repeated query parameters in {url}"
        return cls(host=parts.netloc, path=parts.path, params=params)

    @property
    def scope(self) -> tuple[str, str, str, str, str]:
        """(access key id, date, region, service, terminator) from X-Amz-Credential."""
        access_key, date, region, service, terminator = self.params["X-Amz-Credential"].split("/")
        return access_key, date, region, service, terminator

    @property
    def signed_at(self) -> datetime:
        return datetime.strptime(self.params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    def expected_signature(
        self, secret_key: str, *, method: str = "GET", path: str | None = None, headers: dict[str, str] | None = None
    ) -> str:
        """The signature S3 would compute for ``method`` on ``path`` (this URL's unless given), sent with ``headers``
        beside the host (each of them one the URL must sign)."""
        _, date, region, service, terminator = self.scope
        query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(self.params.items()) if k != "X-Amz-Signature")
        sent = {"host": self.host, **{name.lower(): value.strip() for name, value in (headers or {}).items()}}
        signed_headers = self.params["X-Amz-SignedHeaders"]
        assert signed_headers == ";".join(sorted(sent)), f"the URL signs {signed_headers}, not {sorted(sent)}"
        canonical_headers = "".join(f"{name}:{sent[name]}\n" for name in sorted(sent))
        canonical_request = "\n".join(
            [method, path or self.path, query, canonical_headers, signed_headers, "UNSIGNED-PAYLOAD"]
        )
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                self.params["X-Amz-Date"],
                f"{date}/{region}/{service}/{terminator}",
                hashlib.sha256(canonical_request.encode()).hexdigest(),
            ]
        )
        key = ("AWS4" + secret_key).encode()
        for part in (date, region, service, terminator):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def assert_sigv4_get_url(url: str, *, access_key: str, secret_key: str, region: str, ttl_seconds: int) -> PresignedUrl:
    """The URL is SigV4 (no SigV2 parameter), signs only the host header, lives ``ttl_seconds``, is scoped to
    ``region``'s S3 with ``access_key``, and carries the signature S3 would expect for a GET of its own path."""
    presigned = PresignedUrl.parse(url)
    params = presigned.params
    assert not {"AWSAccessKeyId", "Signature", "Expires"} & set(params), f"SigV2 parameters in {url}"
    assert params["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert params["X-Amz-Expires"] == str(ttl_seconds)
    assert params["X-Amz-SignedHeaders"] == "host"
    assert presigned.scope == (access_key, presigned.signed_at.strftime("%Y%m%d"), region, "s3", "aws4_request")
    assert abs((datetime.now(UTC) - presigned.signed_at).total_seconds()) < 300
    assert params["X-Amz-Signature"] == presigned.expected_signature(secret_key)
    return presigned
