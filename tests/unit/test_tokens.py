"""Page tokens (spectra/tokens.py): opaque to clients, verifiable only with the service's key and the same binding."""

from __future__ import annotations

import base64
import json

import pytest

from spectra.errors import InvalidToken
from spectra.tokens import KEY_MAX_AGE_SECONDS, MAX_TOKEN_CHARS, PageTokens, SecretKey

pytestmark = pytest.mark.unit

KEY = b"k" * 32
BINDING = {"listing": "jobs", "tenant": "acme", "status": None, "limit": 20}


def test_a_token_round_trips_for_the_same_binding_and_nothing_else():
    tokens = PageTokens(KEY)
    token = tokens.encode({"created_key": "x#j_1", "job_id": "j_1"}, bound_to=BINDING)
    assert tokens.decode(token, bound_to=dict(reversed(BINDING.items()))) == {"created_key": "x#j_1", "job_id": "j_1"}
    for change in ({"tenant": "globex"}, {"status": "FAILED"}, {"limit": 21}, {"listing": "bulk"}):
        with pytest.raises(InvalidToken):
            tokens.decode(token, bound_to={**BINDING, **change})
    with pytest.raises(InvalidToken):
        PageTokens(b"another key of at least 32 bytes!").decode(token, bound_to=BINDING)


def test_the_tenant_is_not_written_into_the_token():
    token = PageTokens(KEY).encode({"job_id": "j_1"}, bound_to={**BINDING, "tenant": "very-secret-tenant"})
    body = token.split(".")[0]
    assert b"very-secret-tenant" not in base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def test_a_payload_rewritten_and_re_encoded_by_a_client_is_refused():
    tokens = PageTokens(KEY)
    _, mac = tokens.encode({"job_id": "j_1"}, bound_to=BINDING).split(".")
    rewritten = base64.urlsafe_b64encode(json.dumps({"job_id": "j_2"}).encode()).decode().rstrip("=")
    with pytest.raises(InvalidToken):
        tokens.decode(f"{rewritten}.{mac}", bound_to=BINDING)


@pytest.mark.parametrize(
    "garbage",
    ["", ".", "abc", "abc.def", "[" * 1500, "a" * (MAX_TOKEN_CHARS + 1), "é.é", "a.b\x00", "a" * 10 + "." + "b" * 43],
)
def test_garbage_is_refused_with_the_same_answer(garbage):
    with pytest.raises(InvalidToken) as refused:
        PageTokens(KEY).decode(garbage, bound_to=BINDING)
    assert refused.value.status == 400 and refused.value.code == "invalid_token"
    assert "valid" in refused.value.message and refused.value.details is None  # no hint of what was wrong


def test_short_keys_are_refused_and_the_key_is_fetched_once_on_first_use():
    with pytest.raises(ValueError):
        PageTokens(b"short")

    class Secrets:
        calls = 0

        def get_secret_value(self, SecretId):
            Secrets.calls += 1
            return {"SecretString": "s" * 64}

    tokens = PageTokens(SecretKey(Secrets(), "arn:aws:secretsmanager:us-east-1:1:secret:page-tokens"))
    assert Secrets.calls == 0  # building the port reads nothing
    token = tokens.encode({"job_id": "j_1"}, bound_to=BINDING)
    tokens.decode(token, bound_to=BINDING)
    assert Secrets.calls == 1


def test_a_replaced_key_is_every_environments_within_minutes_and_the_old_one_stops_working():
    """Read once per process, a rotated key was used by new execution environments alone: warm ones kept the old one
    for hours, each refusing the other's tokens, and a leaked key stayed good as long (the tokens review)."""

    class Secrets:
        value, calls = "a" * 64, 0

        def get_secret_value(self, SecretId):
            Secrets.calls += 1
            return {"SecretString": Secrets.value}

    now = [0.0]
    arn = "arn:aws:secretsmanager:us-east-1:1:secret:page-tokens"
    warm, other = (PageTokens(SecretKey(Secrets(), arn, clock=lambda: now[0])) for _ in range(2))
    old = warm.encode({"job_id": "j_1"}, bound_to=BINDING)
    other.decode(old, bound_to=BINDING)
    Secrets.value = "b" * 64  # rotated
    now[0] = 10.0
    assert warm.decode(old, bound_to=BINDING) == {"job_id": "j_1"}  # both keep their key a while
    fresh = PageTokens(SecretKey(Secrets(), arn, clock=lambda: now[0]))  # a new environment reads the new one
    new = fresh.encode({"job_id": "j_2"}, bound_to=BINDING)
    now[0] = 45.0
    assert warm.decode(new, bound_to=BINDING) == {"job_id": "j_2"}  # not verified: read again, and it verifies
    with pytest.raises(InvalidToken):
        warm.decode(old, bound_to=BINDING)
    calls = Secrets.calls
    with pytest.raises(InvalidToken):  # a forged token reads the key again at most every KEY_RECHECK_SECONDS
        warm.decode(new[:-1] + ("A" if new[-1] != "A" else "Q"), bound_to=BINDING)
    assert Secrets.calls == calls
    now[0] = 10.0 + KEY_MAX_AGE_SECONDS
    with pytest.raises(InvalidToken):  # past the key's age every environment has the new one
        other.decode(old, bound_to=BINDING)
    assert other.encode({"job_id": "j_2"}, bound_to=BINDING) == new


def test_a_key_that_cannot_be_read_again_keeps_the_one_read_before():
    """Read again every few minutes, a Secrets Manager failing for a while failed every listing's next page, and a
    forged token was a 5xx instead of its 400 (the diff review). Only the first read's failure is the caller's."""
    from botocore.exceptions import ClientError

    class Secrets:
        failing, calls = False, 0

        def get_secret_value(self, SecretId):
            Secrets.calls += 1
            if Secrets.failing:
                raise ClientError({"Error": {"Code": "InternalServiceError", "Message": "boom"}}, "GetSecretValue")
            return {"SecretString": "s" * 64}

    now = [0.0]
    tokens = PageTokens(SecretKey(Secrets(), "arn:aws:secretsmanager:us-east-1:1:secret:pt", clock=lambda: now[0]))
    token = tokens.encode({"job_id": "j_1"}, bound_to=BINDING)
    Secrets.failing = True
    now[0] = KEY_MAX_AGE_SECONDS + 1.0
    assert tokens.decode(token, bound_to=BINDING) == {"job_id": "j_1"}  # the read failed: the key in hand stands
    assert tokens.encode({"job_id": "j_1"}, bound_to=BINDING) == token
    assert Secrets.calls == 2  # tried once, and not again before KEY_RECHECK_SECONDS
    for _ in range(3):  # nor for tokens that do not verify (the second diff review: each read again while failing)
        with pytest.raises(InvalidToken):
            tokens.decode(token[:-1] + ("A" if token[-1] != "A" else "Q"), bound_to=BINDING)
    assert Secrets.calls == 2
    now[0] += 31.0
    with pytest.raises(InvalidToken):
        tokens.decode(token[:-1] + ("A" if token[-1] != "A" else "Q"), bound_to=BINDING)
    with pytest.raises(ClientError):  # no key in hand: nothing to sign with
        PageTokens(SecretKey(Secrets(), "arn:aws:secretsmanager:us-east-1:1:secret:pt")).encode({}, bound_to=BINDING)


def test_without_a_configured_secret_nothing_is_signed():
    with pytest.raises(RuntimeError, match="PAGE_TOKEN_SECRET_ARN"):
        PageTokens(SecretKey(object(), "")).encode({}, bound_to=BINDING)


def test_only_the_canonical_spelling_of_a_token_is_accepted():
    """The last base64 character of the MAC carries two unused bits: every other spelling of it is refused."""
    tokens = PageTokens(b"k" * 32)
    binding = {"listing": "jobs", "tenant": "acme"}
    for n in range(64):  # enough tokens that their last characters cover every residue
        token = tokens.encode({"n": n}, bound_to=binding)
        body, mac = token.split(".")
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        value = alphabet.index(mac[-1])
        for other in (value ^ 1, value ^ 2, value ^ 3):
            respelled = f"{body}.{mac[:-1]}{alphabet[other]}"
            with pytest.raises(InvalidToken):
                tokens.decode(respelled, bound_to=binding)
        assert tokens.decode(token, bound_to=binding) == {"n": n}
