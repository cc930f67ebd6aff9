"""Opaque, tamper-evident page tokens: where a listing resumes, signed with a key only the service holds.

A token is ``<payload>.<mac>``, both base64url without padding. The payload is the position as compact JSON; the MAC
is HMAC-SHA256 over a version tag, the *binding* and the payload. The binding is everything that defines the listing
the token continues (the tenant, the filter, the page size, which listing): it is not written into the token, the
decoder supplies it from the request it serves. So a token replayed by another tenant, or with another filter or
limit, fails exactly like a forged or truncated one, and nothing in it was chosen by the caller.

``decode`` checks the length and the characters, then the MAC (constant time), then reads the JSON: a bad token is
:class:`~spectra.errors.InvalidToken` (400) before anything else happens, and callers validate the payload's shape
too (a MAC proves we wrote it, a shape check keeps a future encoder's bug away from the database). The payload is
readable (base64 is not encryption): it holds only the caller's own position, and clients must treat it as opaque.

One class serves every listing (jobs now, bulk jobs next): each passes its own binding, including a listing name,
so a token of one listing never resumes another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from spectra.errors import InvalidToken

logger = logging.getLogger(__name__)

#: The longest token accepted; the API's query parameter has the same limit.
MAX_TOKEN_CHARS = 2048
MIN_KEY_BYTES = 32
_VERSION = b"spectra-page-token-v1"
_MAC_CHARS = 43  # 32 bytes of HMAC-SHA256 in base64url without padding
_SHAPE = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_TOKEN_CHARS - _MAC_CHARS - 1}}}\.[A-Za-z0-9_-]{{{_MAC_CHARS}}}")
_REFUSED = "next_token is not valid for this listing; start again without it"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    """Strict: only the canonical spelling decodes. base64 leaves the last character's low bits unused, so without
    this check a token with that character changed (B for A, say) would decode to the same bytes and be accepted."""
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(raw) != text:
        raise ValueError("not canonical base64url")
    return raw


def _canonical(value: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


class PageTokens:
    """Sign and check page tokens with one HMAC key.

    ``key`` is the key itself or a callable that returns it (a :class:`SecretKey`), called on first use, so building
    the ports reads no secret and functions that never page never fetch it.
    """

    def __init__(self, key: bytes | Callable[[], bytes]) -> None:
        self._source = key
        self._key: bytes | None = key if isinstance(key, bytes) else None
        if self._key is not None:
            _check_key(self._key)

    def encode(self, payload: Mapping[str, Any], *, bound_to: Mapping[str, Any]) -> str:
        body = _b64(_canonical(payload))
        token = f"{body}.{_b64(self._mac(body, bound_to))}"
        if len(token) > MAX_TOKEN_CHARS:
            raise ValueError(f"a page token of {len(token)} characters would be refused by decode")
        return token

    def decode(self, token: str, *, bound_to: Mapping[str, Any]) -> dict[str, Any]:
        """The payload ``encode`` signed for this same binding; :class:`InvalidToken` for anything else."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not _SHAPE.fullmatch(token):
            raise InvalidToken(_REFUSED)
        body, _, mac = token.partition(".")
        try:
            expected = _unb64(mac)
        except (binascii.Error, ValueError):
            raise InvalidToken(_REFUSED) from None
        if not hmac.compare_digest(expected, self._mac(body, bound_to)):
            # signed, perhaps, under a key replaced since this process read its own (a rotation another execution
            # environment saw first): read the key again, at most every KEY_RECHECK_SECONDS, and check once more
            reread = getattr(self._source, "reread", None)
            if reread is None or not reread() or not hmac.compare_digest(expected, self._mac(body, bound_to)):
                raise InvalidToken(_REFUSED)
        try:
            payload = json.loads(_unb64(body))
        except (binascii.Error, ValueError, RecursionError):
            raise InvalidToken(_REFUSED) from None
        if not isinstance(payload, dict):
            raise InvalidToken(_REFUSED)
        return payload

    def _mac(self, body: str, bound_to: Mapping[str, Any]) -> bytes:
        message = b"\n".join((_VERSION, _canonical(bound_to), body.encode("ascii")))
        return hmac.new(self._signing_key(), message, hashlib.sha256).digest()

    def _signing_key(self) -> bytes:
        if self._key is not None:
            return self._key
        key = self._source()  # type: ignore[operator]
        _check_key(key)
        return key


def _check_key(key: bytes) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"a page token key needs at least {MIN_KEY_BYTES} bytes")


#: How long a process signs and checks with the key it read before reading it again: a value replaced in Secrets
#: Manager (a rotation, a leaked key) is the only key every execution environment takes within this time.
KEY_MAX_AGE_SECONDS = 300
#: The least time between two reads of the key that a token failing to verify asks for (:meth:`SecretKey.reread`).
KEY_RECHECK_SECONDS = 30


class SecretKey:
    """A signing key kept in Secrets Manager (its ``SecretString``), read on first use and again once the value read is
    :data:`KEY_MAX_AGE_SECONDS` old. Read once per process, a value replaced (README: rotating it invalidates
    outstanding tokens) would be used by new execution environments alone, while warm ones signed and checked with the
    old one for hours, each refusing the other's tokens, and a leaked key would stay good as long.

    ``client`` is a boto3 Secrets Manager client. The template creates the secret with a generated value and grants
    ``secretsmanager:GetSecretValue`` on it to the function that signs tokens, and to no other.
    """

    def __init__(self, client, secret_id: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._secret_id = secret_id
        self._clock = clock
        self._lock = threading.Lock()
        self._value: bytes | None = None
        self._read_at = 0.0
        self._tried_at = 0.0  # the last read tried, whether or not it got the key

    def __call__(self) -> bytes:
        with self._lock:
            if self._value is None or (self._clock() - self._read_at >= KEY_MAX_AGE_SECONDS and self._may_try()):
                self._read()
            return self._value  # type: ignore[return-value]

    def reread(self) -> bool:
        """Read the key again unless a read was tried within :data:`KEY_RECHECK_SECONDS` (a token that does not
        verify: a forged one, or one signed under a key another environment read first); whether the key changed."""
        with self._lock:
            if self._value is not None and not self._may_try():
                return False
            before = self._value
            self._read()
            return self._value != before

    def _may_try(self) -> bool:
        return self._clock() - self._tried_at >= KEY_RECHECK_SECONDS

    def _read(self) -> None:
        """Read the key; a failed read with a key in hand keeps it, and is tried again :data:`KEY_RECHECK_SECONDS`
        later: otherwise Secrets Manager failing for a while would fail every listing's next page, and answer a forged
        token with a 5xx instead of its 400."""
        if not self._secret_id:
            raise RuntimeError("PAGE_TOKEN_SECRET_ARN is not set: no key to sign page tokens with")
        self._tried_at = self._clock()
        try:
            secret = self._client.get_secret_value(SecretId=self._secret_id)
        except (ClientError, BotoCoreError):
            if self._value is None:
                raise
            logger.warning("the page token key could not be read again; the one read before stands", exc_info=True)
            return
        self._value = secret["SecretString"].encode("utf-8")
        self._read_at = self._clock()
