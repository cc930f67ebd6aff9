"""JWT bearer tokens (spectra.auth) against a real JWKS endpoint on 127.0.0.1, with keys made in this test run.

Every refusal is the same ``Unauthorized("invalid bearer token")``: the assertions check that no message tells a
caller which part of its token failed.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest

from spectra import auth
from spectra.auth import JwtVerifier, authenticate
from spectra.errors import Unauthorized
from spectra.tenants import KEY_PREFIX
from tests.fixtures.jwks import AUDIENCE, ISSUER, TENANT_CLAIM, b64url, ec_key, hand_made_token, public_pem, rsa_key
from tests.unit.fakes import FakeTenants, make_settings

pytestmark = pytest.mark.integration

LEEWAY = 30


@pytest.fixture(scope="module")
def verifier(identity_provider) -> JwtVerifier:
    return JwtVerifier(
        jwks_url=identity_provider.url,
        issuer=ISSUER,
        audience=AUDIENCE,
        tenant_claim=TENANT_CLAIM,
        leeway_seconds=LEEWAY,
    )


@pytest.fixture
def tenants() -> FakeTenants:
    tenants = FakeTenants()
    tenants.create_tenant("acme", db_user="tenant_acme")
    return tenants


def refused(verifier: JwtVerifier, tenants: FakeTenants, token: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        authenticate(tenants, verifier, token)
    assert caught.value.message == "invalid bearer token"


def now() -> int:
    return int(time.time())


# -- accepted -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1"])
def test_a_valid_token_names_its_tenant(identity_provider, verifier, tenants, kid):
    assert authenticate(tenants, verifier, identity_provider.token("acme", kid=kid)).tenant_id == "acme"


def test_an_audience_list_that_holds_ours_is_accepted(identity_provider, verifier, tenants):
    token = identity_provider.token("acme", aud=["another-api", AUDIENCE])
    assert authenticate(tenants, verifier, token).tenant_id == "acme"


def test_clock_skew_within_the_leeway_is_forgiven(identity_provider, verifier, tenants):
    token = identity_provider.token("acme", exp=now() - 5, nbf=now() + 5, iat=now() + 5)
    assert authenticate(tenants, verifier, token).tenant_id == "acme"


def test_api_keys_still_go_to_the_tenant_directory(verifier, tenants):
    with pytest.raises(Unauthorized, match="invalid API key"):
        authenticate(_KeyTenants(), verifier, KEY_PREFIX + "x" * 43)


def test_the_settings_turn_jwts_on_with_their_provider_and_off_without_one(identity_provider, tenants):
    assert JwtVerifier.from_settings(make_settings()) is None
    settings = make_settings(
        jwks_url=identity_provider.url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_tenant_claim=TENANT_CLAIM
    )
    verifier = JwtVerifier.from_settings(settings)
    assert authenticate(tenants, verifier, identity_provider.token("acme")).tenant_id == "acme"
    refused(verifier, tenants, identity_provider.token("acme", aud="another-api"))


class _KeyTenants(FakeTenants):
    def authenticate(self, api_key: str):
        raise Unauthorized("invalid API key")


# -- refused: the key and the algorithm -----------------------------------------------------------------------------


def test_an_unknown_kid_is_refused(identity_provider, verifier, tenants):
    refused(verifier, tenants, identity_provider.token("acme", kid="rsa-9", key=identity_provider.keys["rsa-1"]))


def test_a_made_up_kid_is_the_tokens_fault_not_an_error_for_the_operator(identity_provider, verifier, tenants, caplog):
    """Anyone can send a made-up kid: an ERROR line (the provider's trouble, alarm-level) per token would let them
    raise the operator's alarm at will."""
    token = identity_provider.token("acme", kid="made-up", key=identity_provider.keys["rsa-1"])
    with caplog.at_level(logging.INFO, logger="spectra.auth"):
        refused(verifier, tenants, token)
    assert [r.levelname for r in caplog.records if r.name == "spectra.auth"] == ["INFO"], caplog.text


def test_a_token_without_kid_is_refused(identity_provider, verifier, tenants):
    token = jwt.encode(identity_provider.claims("acme"), identity_provider.keys["rsa-1"], algorithm="RS256")
    refused(verifier, tenants, token)


def test_alg_none_is_refused(identity_provider, verifier, tenants):
    for header in ({"alg": "none", "kid": "rsa-1"}, {"alg": "None", "kid": "rsa-1"}, {"alg": "none"}):
        refused(verifier, tenants, hand_made_token(header, identity_provider.claims("acme")))


def test_hs256_signed_with_the_public_key_is_refused(identity_provider, verifier, tenants):
    """The key-confusion attack: the provider's public key, which anyone can read, used as an HMAC secret."""
    for kid in ("rsa-1", "ec-1"):
        secret = public_pem(identity_provider.keys[kid])
        token = hand_made_token({"alg": "HS256", "kid": kid}, identity_provider.claims("acme"), hmac_secret=secret)
        refused(verifier, tenants, token)


def test_an_algorithm_that_does_not_match_the_key_is_refused(identity_provider, verifier, tenants):
    # the RSA key's kid with an ES256 token made by another key, and RS512 with the right RSA key
    refused(verifier, tenants, identity_provider.token("acme", kid="rsa-1", alg="ES256", key=ec_key()))
    refused(verifier, tenants, identity_provider.token("acme", kid="rsa-1", alg="RS512"))


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1"])
def test_a_token_signed_by_another_key_under_a_known_kid_is_refused(identity_provider, verifier, tenants, kid):
    intruder = rsa_key() if kid.startswith("rsa") else ec_key()
    refused(verifier, tenants, identity_provider.token("acme", kid=kid, key=intruder))


def test_a_tampered_payload_is_refused(identity_provider, verifier, tenants):
    tenants.create_tenant("globex", db_user="tenant_globex")
    header, _, signature = identity_provider.token("acme").split(".")
    forged = base64.urlsafe_b64encode(json.dumps(identity_provider.claims("globex")).encode()).rstrip(b"=").decode()
    refused(verifier, tenants, f"{header}.{forged}.{signature}")


@pytest.mark.parametrize(
    "token", ["abc", "a.b", "a.b.c.d", "é.é.é", "a" * 9000 + ".b.c", "..", "eyJhbGciOiJSUzI1NiJ9.."]
)
def test_what_is_not_a_jwt_is_refused(verifier, tenants, token):
    refused(verifier, tenants, token)


def test_a_token_of_the_longest_length_taken_verifies_and_one_character_more_is_refused(
    identity_provider, verifier, tenants
):
    """MAX_TOKEN_BYTES (8192) is the longest token taken, before any parsing."""
    by_length = {}
    for header_pad in range(3):
        for pad in range(5600, 5800):
            token = jwt.encode(
                identity_provider.claims("acme", pad="p" * pad),
                identity_provider.keys["rsa-1"],
                algorithm="RS256",
                headers={"kid": "rsa-1", "x": "h" * header_pad},
            )
            by_length.setdefault(len(token), token)
    assert authenticate(tenants, verifier, by_length[8192]).tenant_id == "acme"
    refused(verifier, tenants, by_length[8193])


# -- refused: the claims ----------------------------------------------------------------------------------------------


# The times are offsets from the moment the token is made (parameters are built at collection, minutes earlier).
WRONG_CLAIMS = {
    "expired": {"exp": -LEEWAY - 60},
    "not yet valid": {"nbf": LEEWAY + 300},
    "issued in the future": {"iat": LEEWAY + 300},
    "never expires": {"exp": None},
    "another issuer": {"iss": "https://evil.example/"},
    "no issuer": {"iss": None},
    "another audience": {"aud": "another-api"},
    "no audience": {"aud": None},
    "no tenant": {TENANT_CLAIM: None},
    "tenant not a string": {TENANT_CLAIM: ["acme"]},
    "tenant not a tenant id": {TENANT_CLAIM: "ACME"},
    "tenant a path": {TENANT_CLAIM: "../acme"},
    "unknown tenant": {TENANT_CLAIM: "globex"},
}


@pytest.mark.parametrize("claims", WRONG_CLAIMS.values(), ids=WRONG_CLAIMS.keys())
def test_a_token_with_wrong_claims_is_refused(identity_provider, verifier, tenants, claims):
    t = now()
    claims = {k: t + v if k in ("exp", "nbf", "iat") and v is not None else v for k, v in claims.items()}
    refused(verifier, tenants, identity_provider.token("acme", **claims))


def test_the_log_says_which_part_of_a_token_failed(identity_provider, verifier, tenants, caplog):
    """The caller learns nothing; the operator's log names the reason."""
    with caplog.at_level(logging.INFO, logger="spectra.auth"):
        refused(verifier, tenants, identity_provider.token("acme", exp=now() - LEEWAY - 60))
    assert "bearer token refused: ExpiredSignatureError" in caplog.text


def test_an_inactive_tenants_token_is_refused(identity_provider, verifier, tenants):
    tenants.set_active("acme", False)
    refused(verifier, tenants, identity_provider.token("acme"))


# -- the key set: fetched, cached, and not a lever for attackers -------------------------------------------------------


def test_the_key_set_is_cached_and_made_up_kids_do_not_refetch_it(identity_provider, tenants):
    verifier = JwtVerifier(jwks_url=identity_provider.url, issuer=ISSUER, audience=AUDIENCE, tenant_claim=TENANT_CLAIM)
    before = len(identity_provider.requests)
    for _ in range(5):
        assert authenticate(tenants, verifier, identity_provider.token("acme")).tenant_id == "acme"
    for _ in range(20):
        kid = uuid.uuid4().hex
        token = identity_provider.token("acme", kid=kid, alg="RS256", key=identity_provider.keys["rsa-1"])
        refused(verifier, tenants, token)
    assert len(identity_provider.requests) - before == 1


def test_an_unreachable_identity_provider_refuses_tokens(identity_provider, tenants):
    verifier = JwtVerifier(
        jwks_url="http://127.0.0.1:9/.well-known/jwks.json",  # discard port: nothing listens
        issuer=ISSUER,
        audience=AUDIENCE,
        tenant_claim=TENANT_CLAIM,
        timeout_seconds=2,
    )
    refused(verifier, tenants, identity_provider.token("acme"))


def test_a_key_set_that_is_not_json_refuses_tokens(identity_provider, tenants):
    """A provider answering 200 with something else (an HTML error page) is a refusal (401), not an error (500)."""
    server, verifier, _ = _serving(200, b"<html>maintenance</html>", content_type="text/html")
    try:
        refused(verifier, tenants, identity_provider.token("acme"))
    finally:
        server.shutdown()


def test_jwts_are_off_without_a_verifier(identity_provider, tenants):
    refused_by_keys = _KeyTenants()
    refused_by_keys.create_tenant("acme", db_user="tenant_acme")
    with pytest.raises(Unauthorized):
        authenticate(refused_by_keys, None, identity_provider.token("acme"))


# -- the tenant's lifetime and the provider's trouble (found by the authentication review) ---------------------------


def test_a_token_issued_before_its_tenant_was_created_does_not_open_it(identity_provider, verifier):
    """API keys die with their tenant (its generation); a JWT issued to a tenant since deleted opened the tenant
    created again under the same id. Its iat tells it apart, beyond the leeway; a token without iat cannot be."""
    tenants = FakeTenants()
    tenants.create_tenant("acme", db_user="tenant_acme")
    refused(verifier, tenants, identity_provider.token("acme", iat=now() - LEEWAY - 60))
    assert authenticate(tenants, verifier, identity_provider.token("acme", iat=now() - LEEWAY + 5)).tenant_id == "acme"
    assert authenticate(tenants, verifier, identity_provider.token("acme", iat=None)).tenant_id == "acme"
    # no time at all (-1e12 is the year -29719): read as no iat, they skipped the check
    for unreadable in (-1e300, 1e300, -1e12):
        refused(verifier, tenants, identity_provider.token("acme", iat=unreadable))


def _serving(status: int, body: bytes = b"", *, content_type: str = "application/json", answer: dict | None = None):
    """A key-set endpoint answering ``status`` and ``body`` to every fetch (counted in the list returned); or, given
    ``answer``, its "status" and "body" as they are at each fetch."""
    hits: list[int] = []
    answer = answer if answer is not None else {"status": status, "body": body}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(1)
            self.send_response(answer["status"])
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(answer["body"])))
            self.end_headers()
            self.wfile.write(answer["body"])

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    verifier = JwtVerifier(
        jwks_url=f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json",
        issuer=ISSUER,
        audience=AUDIENCE,
        tenant_claim=TENANT_CLAIM,
        timeout_seconds=2,
    )
    return server, verifier, hits


def test_a_provider_in_trouble_is_not_asked_once_per_token(identity_provider, tenants, monkeypatch):
    """While the provider answered 503, every token, made-up ones included, fetched the key set again (each up to
    its timeout): now a failed fetch refuses tokens for FETCH_RETRY_SECONDS without asking."""
    server, verifier, hits = _serving(503)
    try:
        for n in range(20):
            token = identity_provider.token("acme", kid=f"made-up-{n}", key=identity_provider.keys["rsa-1"])
            refused(verifier, tenants, token)
        assert len(hits) == 1
        monkeypatch.setattr(auth, "FETCH_RETRY_SECONDS", 0)
        refused(verifier, tenants, identity_provider.token("acme"))
        assert len(hits) == 2  # asked again once the wait is over
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "jwks",
    [
        {"keys": []},
        {"error": "rate limited"},
        [],
        {"keys": [{"kty": "RSA", "kid": "rsa-1", "n": "x"}]},
        {"keys": [{"kty": "RSA", "kid": "rsa-1", "alg": ["RS256"], "n": "x", "e": "AQAB"}]},
    ],
)
def test_a_key_set_the_provider_broke_is_an_error_for_the_operator(identity_provider, tenants, caplog, jwks):
    """A key set with no usable key refuses every token as an unreachable provider does, but was logged as one more
    caller's bad token (INFO): no alarm-level line while every JWT user was refused. An "alg" that is a list made
    PyJWT raise TypeError, which escaped: every JWT request a 500 (found by a diff review)."""
    server, verifier, _ = _serving(200, json.dumps(jwks).encode())
    try:
        with caplog.at_level(logging.INFO, logger="spectra.auth"):
            refused(verifier, tenants, identity_provider.token("acme"))
        assert [r.levelname for r in caplog.records if r.name == "spectra.auth"] == ["ERROR"], caplog.text
    finally:
        server.shutdown()
        server.server_close()


def test_a_symmetric_key_in_the_key_set_signs_nothing(identity_provider, tenants):
    """A provider that publishes an HMAC ("oct") key has published its secret: anyone could sign with it, so HS256
    is refused even for a key that says it is for HS256."""
    secret = b"published-for-all-to-read-0123456789abcdef"
    jwks = {"keys": [{"kty": "oct", "kid": "hs-1", "alg": "HS256", "use": "sig", "k": b64url(secret)}]}
    server, verifier, _ = _serving(200, json.dumps(jwks).encode())
    try:
        token = jwt.encode(identity_provider.claims("acme"), secret, algorithm="HS256", headers={"kid": "hs-1"})
        refused(verifier, tenants, token)
    finally:
        server.shutdown()
        server.server_close()


def test_a_failed_refetch_for_an_unknown_kid_leaves_tokens_of_cached_keys_verifying(identity_provider, tenants):
    """During a provider outage one token with an unknown kid (made up, or a key just rotated in) makes the client
    refetch, which fails: the first cut of the 5 s wait then refused every token, those whose key the cache still
    holds too, renewable by anyone every 5 s (found by a diff review). The wait is on fetching only."""
    answer = {"status": 200, "body": json.dumps(identity_provider.jwks).encode()}
    server, verifier, hits = _serving(200, answer=answer)
    try:
        assert authenticate(tenants, verifier, identity_provider.token("acme")).tenant_id == "acme"  # cached
        answer.update(status=503, body=b"")
        verifier._jwks._last_successful_fetch -= 31  # past the client's unknown-kid cooldown
        refused(verifier, tenants, identity_provider.token("acme", kid="made-up", key=identity_provider.keys["rsa-1"]))
        assert len(hits) == 2  # the refetch, failed
        assert authenticate(tenants, verifier, identity_provider.token("acme")).tenant_id == "acme"
        assert len(hits) == 2
    finally:
        server.shutdown()
        server.server_close()
