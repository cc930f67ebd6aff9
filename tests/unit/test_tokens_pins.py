"""Page token behaviour no test held before (found by mutation testing spectra/tokens.py): the wire format a deploy
keeps, the refusal of a forged token while a replaced key is being read, the one answer every bad token gets, the
length and key-size bounds, and when the key is read again."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from types import MappingProxyType

import pytest
from botocore.exceptions import EndpointConnectionError

from spectra.errors import InvalidToken
from spectra.tokens import MAX_TOKEN_CHARS, PageTokens, SecretKey

pytestmark = pytest.mark.unit

KEY = b"k" * 32
BINDING = {"listing": "jobs", "tenant": "acme", "status": None, "limit": 20}
ARN = "arn:aws:secretsmanager:us-east-1:1:secret:page-tokens"
REFUSED = "next_token is not valid for this listing; start again without it"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _signed(body: str, binding=BINDING, key: bytes = KEY) -> str:
    """A token with any body, MAC'd as the service MACs one (README: HMAC-SHA256 over a version tag, the binding and
    the payload): what an encoder bug, or anyone holding the key, could produce."""
    binding_json = json.dumps(binding, sort_keys=True, separators=(",", ":")).encode()
    message = b"\n".join((b"spectra-page-token-v1", binding_json, body.encode("ascii")))
    return f"{body}.{_b64(hmac.new(key, message, hashlib.sha256).digest())}"


class _Secrets:
    """Secrets Manager's GetSecretValue, counting calls; ``failure`` (an exception) is raised while set."""

    def __init__(self, value: str = "a" * 64) -> None:
        self.value, self.calls, self.failure = value, 0, None

    def get_secret_value(self, SecretId):
        self.calls += 1
        if self.failure is not None:
            raise self.failure
        return {"SecretString": self.value}


def test_the_wire_format_is_the_one_tokens_signed_before_a_deploy_have():
    """README (Upgrading): page tokens signed before the deploy match after it. A token of a fixed key, payload and
    binding is pinned byte for byte, so a change to the version tag, the canonical JSON (key order, separators), the
    message's layout or the hash fails here instead of sending every client holding a token back to the first page."""
    tokens = PageTokens(KEY)
    payload = {"job_id": "j_1", "created_key": "2024-01-02T03:04:05+00:00#j_1"}  # keys out of order on purpose
    binding = {"tenant": "acme", "listing": "jobs", "status": None, "limit": 20}
    pinned = (
        "eyJjcmVhdGVkX2tleSI6IjIwMjQtMDEtMDJUMDM6MDQ6MDUrMDA6MDAjal8xIiwiam9iX2lkIjoial8xIn0"
        ".-vQsushFFywh7jf-XLDLT8HXutcJ7zfV_NA6d4XDlEM"
    )
    assert tokens.encode(payload, bound_to=binding) == pinned
    assert pinned == _signed(_b64(b'{"created_key":"2024-01-02T03:04:05+00:00#j_1","job_id":"j_1"}'), binding)
    assert tokens.decode(pinned, bound_to=binding) == payload
    # non-ASCII in the payload and the binding is \u-escaped: the signed bytes are ASCII whatever the values
    escaped = "eyJuIjoiXHUwMGU5In0.L1rziwovy_gK065XHs6IlJMRX7kvURvuNCjaoGLUPCo"
    assert tokens.encode({"n": "é"}, bound_to={"tenant": "é", "status": "ünïcode"}) == escaped


def test_a_forged_token_stays_refused_when_the_check_finds_a_replaced_key():
    """A token that does not verify makes the key be read again; that the key *changed* says nothing about the token,
    which must then verify under the new key. Accepting it because the read found a new key would let anyone resume
    any listing just after a rotation."""
    secrets = _Secrets("a" * 64)
    now = [0.0]
    tokens = PageTokens(SecretKey(secrets, ARN, clock=lambda: now[0]))
    genuine = tokens.encode({"job_id": "j_1"}, bound_to=BINDING)
    forged = PageTokens(b"an attacker's key, 32 bytes long").encode({"job_id": "j_2"}, bound_to=BINDING)
    for rotation, token, binding in ((1, forged, BINDING), (2, genuine, {**BINDING, "tenant": "globex"})):
        secrets.value = "bc"[rotation - 1] * 64
        now[0] = 30.0 * rotation
        with pytest.raises(InvalidToken):
            tokens.decode(token, bound_to=binding)
        assert secrets.calls == rotation + 1  # the key was read again, and was another: still refused


def test_a_payload_signed_with_the_key_but_not_one_encode_writes_is_refused_as_any_bad_token():
    """The MAC proves who signed a token, not that its payload is a JSON object: a body that is not base64url, not
    canonical, not JSON, nested beyond the parser's depth, or JSON but not an object is the same 400 as a forged
    token, never a 500 (module docstring: a future encoder's bug is kept away from the database)."""
    tokens = PageTokens(KEY)
    bodies = [
        "A",  # one character: no base64 length
        _b64(b'{"n":1}')[:-1] + "R",  # decodes to the same bytes as ...Q, but not its canonical spelling
        _b64(b'{"job_id": '),
        _b64(b"\xff\xfe{}"),
        _b64(b"[" * 1500),
        _b64(b'[{"job_id":"j_1"}]'),
        _b64(b'"j_1"'),
        _b64(b"null"),
    ]
    assert tokens.decode(_signed(_b64(b'{"n":1}')), bound_to=BINDING) == {"n": 1}  # the helper signs as encode does
    for body in bodies:
        with pytest.raises(InvalidToken) as refused:
            tokens.decode(_signed(body), bound_to=BINDING)
        assert refused.value.message == REFUSED, body


def test_the_mac_is_checked_before_the_payload_is_read():
    """Module docstring: the MAC, then the JSON. A token of the right shape whose MAC is not ours is refused without
    its body being decoded or parsed: a caller's bytes that are not JSON, or are nested past the parser's depth, would
    be a 500 if read first."""
    tokens = PageTokens(KEY)
    for body in ("abcd", _b64(b"[" * 1500), _b64(b'{"job_id": '), "A"):
        with pytest.raises(InvalidToken) as refused:
            tokens.decode(f"{body}.{'A' * 43}", bound_to=BINDING)
        assert refused.value.message == REFUSED


def test_macs_are_compared_in_constant_time(monkeypatch):
    """Every MAC comparison is hmac.compare_digest's, and its answer decides: a spy that says "equal" makes a forged
    token's (well-formed) payload come back, which only holds if no ``==`` decides anywhere. After a key read again
    because a token did not verify, the second comparison too."""
    secrets = _Secrets("a" * 64)
    now = [0.0]
    tokens = PageTokens(SecretKey(secrets, ARN, clock=lambda: now[0]))
    token = tokens.encode({"job_id": "j_1"}, bound_to=BINDING)
    forged = PageTokens(b"x" * 32).encode({"job_id": "j_2"}, bound_to=BINDING)
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert tokens.decode(token, bound_to=BINDING) == {"job_id": "j_1"}
    assert len(compared) == 1
    secrets.value, now[0] = "b" * 64, 30.0  # replaced: the next failing token reads it again and compares twice
    with pytest.raises(InvalidToken):
        tokens.decode(forged, bound_to=BINDING)
    assert len(compared) == 3 and all(len(a) == len(b) == 32 for a, b in compared)
    answers = iter((False, True))
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: next(answers))
    secrets.value, now[0] = "c" * 64, 60.0
    assert tokens.decode(forged, bound_to=BINDING) == {"job_id": "j_2"}  # the second comparison's answer decided


def test_the_key_is_the_secret_value_s_utf_8_bytes_exactly():
    """Every environment, and every version, must derive the same key from the secret: its SecretString encoded as
    UTF-8, nothing stripped or replaced (a token signed by one must verify in another)."""
    value = " κλειδί with spaces and ünïcode, long enough \n"
    from_secret = PageTokens(SecretKey(_Secrets(value), ARN)).encode({"n": 1}, bound_to={"t": "a"})
    assert from_secret == PageTokens(value.encode("utf-8")).encode({"n": 1}, bound_to={"t": "a"})
    assert from_secret == "eyJuIjoxfQ.X8w-NBT4yAtOml3oPiV4Li7THycFJLv6DGlZRvcBt6w"


@pytest.mark.parametrize(
    "token",
    [
        None,
        42,
        b"eyJuIjoxfQ." + b"A" * 43,
        "é." + "A" * 43,  # a MAC of the right shape after a body that is not ASCII
        "eyJuIjoxfQé." + "A" * 43,
        "." + "A" * 43,
        "eyJuIjoxfQ." + "A" * 42,
        "eyJuIjoxfQ." + "A" * 44,
        "eyJuIjoxfQ=." + "A" * 43,
        "eyJuIjoxfQ." + "A" * 42 + "=",
        "eyJuIjoxfQ/." + "A" * 43,
    ],
)
def test_what_is_not_shaped_like_a_token_is_refused_before_it_is_read(token):
    """The shape is checked first, and anything else is the same refusal: unchecked, a body of other characters than
    base64url's would reach the MAC's ASCII encoding (UnicodeEncodeError, a 500), and a value that is not a string the
    regular expression (TypeError)."""
    with pytest.raises(InvalidToken) as refused:
        PageTokens(KEY).decode(token, bound_to=BINDING)
    assert refused.value.message == REFUSED


def test_text_around_a_valid_token_makes_it_invalid():
    """Only the whole value is a token: a valid one with anything before or after it is refused."""
    tokens = PageTokens(KEY)
    token = tokens.encode({"job_id": "j_1"}, bound_to=BINDING)
    assert tokens.decode(token, bound_to=BINDING) == {"job_id": "j_1"}
    for wrapped in (f"é{token}", f"x.{token}", f"{token}\n", f"{token}.", f" {token}", f"{token}A"):
        with pytest.raises(InvalidToken):
            tokens.decode(wrapped, bound_to=BINDING)


def test_every_refusal_is_the_same_400_whatever_was_wrong():
    """Garbage, another tenant's token, another key's and a signed payload of the wrong kind get one answer, word for
    word: the client learns nothing of which check failed, and is told to start again."""
    tokens = PageTokens(KEY)
    token = tokens.encode({"job_id": "j_1"}, bound_to=BINDING)
    bad = [
        "garbage",
        token[:-1],
        token,  # decoded for another tenant below
        PageTokens(b"x" * 32).encode({"job_id": "j_1"}, bound_to=BINDING),
        _signed(_b64(b"[]")),
    ]
    answers = set()
    for candidate in bad:
        binding = {**BINDING, "tenant": "globex"} if candidate == token else BINDING
        with pytest.raises(InvalidToken) as refused:
            tokens.decode(candidate, bound_to=binding)
        answers.add((refused.value.status, refused.value.code, refused.value.message, refused.value.details))
    assert answers == {(400, "invalid_token", REFUSED, None)}


def test_a_token_as_long_as_the_api_accepts_round_trips_and_a_longer_one_is_never_issued():
    """The API takes ``next_token`` up to MAX_TOKEN_CHARS (2,048) characters: a token of exactly that length is
    issued and accepted, and ``encode`` refuses (ValueError, before any client sees it) to issue one that ``decode``
    would refuse. ``{"p":"x..."}`` of 1,503 bytes is 2,004 base64url characters, plus the dot and 43 of MAC."""
    tokens = PageTokens(KEY)
    longest = tokens.encode({"p": "x" * 1495}, bound_to=BINDING)
    assert len(longest) == MAX_TOKEN_CHARS == 2048
    assert tokens.decode(longest, bound_to=BINDING) == {"p": "x" * 1495}
    with pytest.raises(ValueError, match="would be refused by decode"):
        tokens.encode({"p": "x" * 1496}, bound_to=BINDING)


def test_a_key_shorter_than_32_bytes_signs_nothing_whoever_supplies_it():
    """A 256-bit HMAC key at least: 31 bytes are refused as the key itself, and as a secret's value read on first use
    (a secret set by hand to something short must not quietly sign tokens)."""
    with pytest.raises(ValueError, match="at least 32 bytes"):
        PageTokens(b"k" * 31)
    PageTokens(b"k" * 32).encode({}, bound_to=BINDING)
    short = PageTokens(SecretKey(_Secrets("s" * 31), ARN))
    with pytest.raises(ValueError, match="at least 32 bytes"):
        short.encode({}, bound_to=BINDING)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        short.decode(PageTokens(KEY).encode({}, bound_to=BINDING), bound_to=BINDING)
    PageTokens(SecretKey(_Secrets("s" * 32), ARN)).encode({}, bound_to=BINDING)


def test_any_mapping_is_a_payload_and_a_binding():
    """``encode`` and ``decode`` take Mappings, not only dicts; the same contents sign the same token."""
    tokens = PageTokens(KEY)
    token = tokens.encode(MappingProxyType({"job_id": "j_1"}), bound_to=MappingProxyType(BINDING))
    assert token == tokens.encode({"job_id": "j_1"}, bound_to=BINDING)
    assert tokens.decode(token, bound_to=MappingProxyType(BINDING)) == {"job_id": "j_1"}


def test_the_key_is_read_again_when_five_minutes_old_and_not_before():
    """README: each environment reads the key on first use and again every 5 minutes. Not sooner: every read is a
    Secrets Manager call on the API's path."""
    secrets = _Secrets()
    now = [0.0]
    key = SecretKey(secrets, ARN, clock=lambda: now[0])
    for at, calls in ((0.0, 1), (29.0, 1), (150.0, 1), (299.999, 1), (300.0, 2), (599.999, 2), (600.0, 3)):
        now[0] = at
        key()
        assert secrets.calls == calls, at


def test_tokens_that_do_not_verify_read_the_key_again_at_most_every_30_seconds():
    """README: sooner (at most every 30 s) when a token does not verify under the key in hand. Exactly 30 s after a
    read the next failing token reads again; a moment earlier it does not."""
    secrets = _Secrets()
    now = [0.0]
    tokens = PageTokens(SecretKey(secrets, ARN, clock=lambda: now[0]))
    forged = PageTokens(b"x" * 32).encode({"job_id": "j_1"}, bound_to=BINDING)
    for at, calls in ((0.0, 1), (29.999, 1), (30.0, 2), (59.999, 2), (60.0, 3)):
        now[0] = at
        with pytest.raises(InvalidToken):
            tokens.decode(forged, bound_to=BINDING)
        assert secrets.calls == calls, at  # at 0 the first read, just tried: the failing token does not read again


def _key_unreachable_when_read_again() -> tuple[PageTokens, str, _Secrets]:
    """Tokens whose key was read at 0 s, a token they issued, and the secrets, which cannot be reached at 300 s: the
    clock now, when the key is due to be read again."""
    secrets = _Secrets()
    now = [0.0]
    tokens = PageTokens(SecretKey(secrets, ARN, clock=lambda: now[0]))
    token = tokens.encode({"job_id": "j_1"}, bound_to=BINDING)
    secrets.failure = EndpointConnectionError(endpoint_url="https://secretsmanager.us-east-1.amazonaws.com")
    now[0] = 300.0
    return tokens, token, secrets


def test_a_connection_failure_on_reading_the_key_again_keeps_the_one_read_before():
    """The failed re-read kept the key for a ClientError; an endpoint that cannot be reached (a BotoCoreError) is the
    same outage and must not turn every listing's next page, or a forged token's 400, into a 5xx."""
    tokens, token, secrets = _key_unreachable_when_read_again()
    assert tokens.decode(token, bound_to=BINDING) == {"job_id": "j_1"}
    with pytest.raises(InvalidToken):
        tokens.decode(token[:-1] + ("A" if token[-1] != "A" else "Q"), bound_to=BINDING)
    assert secrets.calls == 2
    with pytest.raises(EndpointConnectionError):  # no key in hand yet: the failure is the caller's
        PageTokens(SecretKey(secrets, ARN)).encode({}, bound_to=BINDING)


def test_a_failed_read_of_the_key_is_logged_with_its_cause(caplog):
    """A re-read that fails is survived quietly for the caller, so the log is where an operator sees that
    Secrets Manager cannot be read (and why): a warning, with the exception."""
    tokens, token, secrets = _key_unreachable_when_read_again()
    with caplog.at_level(logging.WARNING, logger="spectra.tokens"):
        assert tokens.decode(token, bound_to=BINDING) == {"job_id": "j_1"}
    [record] = [r for r in caplog.records if r.name == "spectra.tokens"]
    assert record.levelno == logging.WARNING and "could not be read again" in record.getMessage()
    assert record.exc_info and record.exc_info[1] is secrets.failure
