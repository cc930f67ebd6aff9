"""Who is calling: an API key, or a JWT bearer token from the configured identity provider, → the active tenant.

API keys (``spk_...``) are looked up in the tenant directory (:mod:`spectra.tenants`). Any other bearer token is a
JWT when JWTs are configured (``JWKS_URL``, see :class:`~spectra.settings.Settings`), and is accepted only if:

- its header names (``kid``) a signing key of the provider's JWKS, and its ``alg`` is RS256 or ES256 and the one that
  key is for. So ``none``, HS256 signed with the public key as the secret, or an RSA key used as ES256 are refused;
- its signature verifies with that key;
- ``iss`` and ``aud`` equal the configured issuer and audience, ``exp`` is present and not past, and ``nbf`` and
  ``iat``, when present, are not in the future, each with a small leeway for clock skew (``JWT_LEEWAY_SECONDS``);
- the tenant claim (``JWT_TENANT_CLAIM``) names a tenant that exists and is active, and its ``iat``, when present, is
  not before that tenant was created (less the leeway): a token issued to a tenant since deleted does not open one
  created again under the same id, as its API keys do not (a token without ``iat`` cannot be told apart).

Every refusal is the same :class:`~spectra.errors.Unauthorized` ("invalid bearer token"): the caller learns nothing
about which part failed; the log says which, for the operator.

The key set is fetched with PyJWT's :class:`jwt.PyJWKClient` and cached per process for ``JWKS_CACHE_SECONDS``, so a
key the provider withdraws stops working within that time. A token with an unknown ``kid`` makes the client fetch the
set again at most once per cooldown (30 s), so a stream of made-up key ids cannot turn into a stream of fetches. An
identity provider that cannot be reached, or serves a key set that cannot be used, refuses its tokens (401, logged
as an error) rather than failing open, and is not asked again for ``FETCH_RETRY_SECONDS`` (tokens whose key the cached
set holds verify meanwhile): while it is down, every token needing a fetch would otherwise be one, each up to its
timeout.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from spectra.errors import Unauthorized
from spectra.settings import Settings
from spectra.tenants import KEY_PREFIX, TENANT_ID_PATTERN, Tenant, TenantDirectory

logger = logging.getLogger(__name__)

#: Asymmetric algorithms only: with a public JWKS, a symmetric one would let anyone who reads the key sign tokens.
ALGORITHMS = ("RS256", "ES256")
_TENANT_ID = re.compile(TENANT_ID_PATTERN)
# Three base64url segments; what else comes in a bearer header is not a JWT and is refused before any parsing.
_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
MAX_TOKEN_BYTES = 8192
#: How long a failed key-set fetch refuses tokens without asking the provider again.
FETCH_RETRY_SECONDS = 5


@dataclass(frozen=True)
class VerifiedToken:
    tenant_id: str
    issued_at: datetime | None  # its iat, if it has one


class _KeySetClient(jwt.PyJWKClient):
    """PyJWT's client, not asking a provider whose last fetch failed again for ``FETCH_RETRY_SECONDS``: while it is
    down, every token needing a fetch (an unknown ``kid`` past the client's cooldown, an expired cache) would be one,
    each up to its timeout. Tokens whose key the cached set still holds verify meanwhile."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._failed_at: float | None = None  # monotonic time of the last failed fetch

    def fetch_data(self):
        failed = self._failed_at
        if failed is not None and time.monotonic() - failed < FETCH_RETRY_SECONDS:
            raise jwt.PyJWKClientConnectionError("the key set could not be fetched a moment ago")
        try:
            data = super().fetch_data()
        except Exception:
            self._failed_at = time.monotonic()
            raise
        self._failed_at = None
        return data


class JwtVerifier:
    """Checks tokens of one identity provider and says which tenant a valid one names."""

    def __init__(
        self,
        *,
        jwks_url: str,
        issuer: str,
        audience: str,
        tenant_claim: str,
        leeway_seconds: int = 30,
        jwks_cache_seconds: int = 60,
        timeout_seconds: float = 5,
    ) -> None:
        self._jwks = _KeySetClient(
            jwks_url, cache_jwk_set=True, lifespan=jwks_cache_seconds, timeout=timeout_seconds, cooldown_duration=30
        )
        self._issuer = issuer
        self._audience = audience
        self._tenant_claim = tenant_claim
        self._leeway = leeway_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtVerifier | None:
        """The verifier the settings describe, or None when JWTs are off (no ``JWKS_URL``)."""
        if not settings.jwks_url:
            return None
        return cls(
            jwks_url=settings.jwks_url,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            tenant_claim=settings.jwt_tenant_claim,
            leeway_seconds=settings.jwt_leeway_seconds,
            jwks_cache_seconds=settings.jwks_cache_seconds,
        )

    @property
    def leeway(self) -> timedelta:
        return timedelta(seconds=self._leeway)

    def tenant_id(self, token: str) -> str:
        """The tenant id a valid token names; Unauthorized for anything else."""
        return self.verify(token).tenant_id

    def verify(self, token: str) -> VerifiedToken:
        """What a valid token says (its tenant id and issue time); Unauthorized for anything else."""
        if len(token) > MAX_TOKEN_BYTES or not _COMPACT_JWS.fullmatch(token):
            raise _refused("not a compact JWS")
        try:
            key = self._signing_key(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", self._tenant_claim]},
            )
        except jwt.PyJWTError as exc:
            raise _refused(f"{type(exc).__name__}: {exc}") from None
        tenant_id = claims[self._tenant_claim]
        if not isinstance(tenant_id, str) or not _TENANT_ID.fullmatch(tenant_id):
            raise _refused("the tenant claim is not a tenant id")
        issued_at = _issued_at(claims.get("iat"))
        return VerifiedToken(tenant_id=tenant_id, issued_at=issued_at)

    def _signing_key(self, token: str):
        """The key the token names, from the provider's key set. A set that cannot be fetched or used (unreachable,
        not JSON, no usable keys) is the provider's trouble, not the token's: logged as an error, and not fetched
        again for FETCH_RETRY_SECONDS. A key id the set does not have is the token's (an INFO line)."""
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
        # ValueError: not JSON; TypeError: a key PyJWT cannot read (an "alg" that is a list)
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError, ValueError, TypeError) as exc:
            _provider_failed(exc)
        except jwt.PyJWKClientError as exc:
            if "Unable to find a signing key" in str(exc):
                raise
            _provider_failed(exc)  # "did not return a JSON object", no signing keys, ...
        return key


def _issued_at(iat) -> datetime | None:
    """A token's ``iat`` as a time, None when it has none: PyJWT has checked it is a number, or a string of one (it
    reads ``"1700000000"``). One that is no time (``-1e300``, NaN) is refused: read as none, it would skip the check
    that the token was not issued before its tenant was created."""
    if iat is None:
        return None
    try:
        return datetime.fromtimestamp(float(iat), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise _refused("the token's iat is not a time") from None


def _provider_failed(exc: Exception):
    logger.error("JWKS unreachable or unusable, token refused: %s: %s", type(exc).__name__, exc)
    raise _refused(None) from None


def authenticate(tenants: TenantDirectory, jwt_verifier: JwtVerifier | None, token: str) -> Tenant:
    """The active tenant behind a bearer token: an API key, or a JWT when a verifier is configured."""
    if token.startswith(KEY_PREFIX) or jwt_verifier is None:
        return tenants.authenticate(token)
    verified = jwt_verifier.verify(token)
    tenant = tenants.get(verified.tenant_id)
    if tenant is None or not tenant.active:
        raise _refused("the token's tenant does not exist or is inactive")
    if verified.issued_at is not None and verified.issued_at < tenant.created_at - jwt_verifier.leeway:
        raise _refused("the token was issued before its tenant was created (to a tenant since deleted)")
    return tenant


def _refused(reason: str | None) -> Unauthorized:
    if reason:
        logger.info("bearer token refused: %s", reason)
    return Unauthorized("invalid bearer token")
