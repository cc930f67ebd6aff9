"""Request body and parameter reading behaviour no test held before (found by mutation testing producers/api/body.py):
the byte bounds of a text and a base64 body, where a JSON error is said to be, whole numbers in a query string written
otherwise than in the digits 0-9, and the charsets a CSV batch may declare."""

from __future__ import annotations

import base64
import json

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from producers.api import app as api
from producers.api import bulk as bulk_routes
from producers.api.body import read_json_body
from spectra.bulk.models import BulkOperation
from spectra.bulk.service import NewJob, create_job
from spectra.errors import InvalidJson, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from spectra.tenants import Caller
from tests.unit.fakes import make_ports

pytestmark = pytest.mark.unit


def _event(body: str | None, *, b64: bool = False, headers: dict | None = None) -> APIGatewayProxyEvent:
    headers = {"Content-Type": "application/json"} if headers is None else headers
    return APIGatewayProxyEvent({"body": body, "isBase64Encoded": b64, "headers": headers, "httpMethod": "POST"})


def test_a_text_body_of_exactly_the_limit_in_bytes_is_read_and_one_byte_more_is_413():
    """The limit counts UTF-8 bytes, not characters: a 10-byte body is read under a 10-byte limit; an 11-byte one,
    although only 10 characters (an e acute is two bytes), is a 413 saying the limit."""
    assert read_json_body(_event('"abcdefgh"'), max_bytes=10) == "abcdefgh"
    assert read_json_body(_event('"\u00e9bcdefg"'), max_bytes=10) == "\u00e9bcdefg"
    with pytest.raises(PayloadTooLarge) as raised:
        read_json_body(_event('"\u00e9bcdefgh"'), max_bytes=10)
    assert raised.value.status == 413 and raised.value.details == {"limit": 10}


@pytest.mark.parametrize("size", [9, 10, 11, 12])
def test_a_base64_body_of_up_to_the_limit_is_read_whatever_its_padding(size):
    """API Gateway base64-encodes a body that is not UTF-8 text: a body of up to the limit is read however many
    characters its encoding takes (16 for 10 and 11 bytes), not refused by the check made before decoding."""
    text = '"' + "a" * (size - 2) + '"'
    encoded = base64.b64encode(text.encode()).decode()
    assert read_json_body(_event(encoded, b64=True), max_bytes=12) == "a" * (size - 2)
    assert read_json_body(_event(encoded, b64=True), max_bytes=size) == "a" * (size - 2)
    with pytest.raises(PayloadTooLarge):
        read_json_body(_event(encoded, b64=True), max_bytes=size - 1)


def test_a_base64_body_too_long_to_fit_is_413_before_it_is_decoded():
    """Past what the limit's base64 could be, the body is refused as too large without being decoded: a 413, not
    the 400 "not readable" its characters would get."""
    with pytest.raises(PayloadTooLarge) as raised:
        read_json_body(_event("!" * 20, b64=True), max_bytes=10)
    assert raised.value.details == {"limit": 10}
    with pytest.raises(PayloadTooLarge):
        read_json_body(_event("e" * 20, b64=True), max_bytes=10)  # valid base64 of 15 bytes


def test_a_json_error_says_where_it_is():
    """A syntax error names its character position and the parser's reason; bytes that are not UTF-8 name the
    first bad byte's position."""
    with pytest.raises(InvalidJson) as raised:
        read_json_body(_event('{"a": }'), max_bytes=100)
    assert raised.value.details == {"position": 6, "reason": "Expecting value"}
    bad = base64.b64encode(b'{"sql": "\xff"}').decode()
    with pytest.raises(InvalidJson) as raised:
        read_json_body(_event(bad, b64=True), max_bytes=100)
    assert raised.value.details == {"position": 9}


@pytest.mark.parametrize("body", [{"sql": "select 1"}, 5, ["x"]])
@pytest.mark.parametrize("b64", [False, True])
def test_a_body_that_is_not_a_string_is_a_400_not_readable(body, b64):
    """An event whose body is no string (only a caller other than API Gateway sends one) is a 400 saying the body is
    not readable, not a 500 from reading it."""
    with pytest.raises(InvalidRequest) as raised:
        read_json_body(APIGatewayProxyEvent({"body": body, "isBase64Encoded": b64, "headers": {}}), max_bytes=100)
    assert raised.value.status == 400 and raised.value.message == "the request body is not readable"


def test_json_nested_64_levels_is_read_and_65_is_refused_saying_64():
    """The API reads 64 levels of nesting; the 65th is a 400 invalid_json giving the limit, 64."""
    value = read_json_body(_event("[" * 63 + "[1]" + "]" * 63), max_bytes=1000)
    for _ in range(63):
        (value,) = value
    assert value == [1]
    with pytest.raises(InvalidJson) as raised:
        read_json_body(_event("[" * 64 + "[1]" + "]" * 64), max_bytes=1000)
    assert raised.value.details == {"limit": 64} and "(64 levels)" in raised.value.message


def test_a_refused_content_type_or_encoding_is_said_back_cut_to_200_characters():
    """The 415 says the Content-Type or Content-Encoding refused, its first 200 characters of a longer one."""
    content_type = "text/plain; x=" + "a" * 286
    with pytest.raises(UnsupportedMediaType) as raised:
        read_json_body(_event("{}", headers={"Content-Type": content_type}), max_bytes=100)
    assert raised.value.status == 415 and raised.value.details == {"content_type": "text/plain; x=" + "a" * 186}
    encoding = "x-" + "b" * 298
    with pytest.raises(UnsupportedMediaType) as raised:
        read_json_body(_event("{}", headers={"Content-Encoding": encoding}), max_bytes=100)
    assert raised.value.details == {"content_encoding": "x-" + "b" * 198}


@pytest.fixture
def fake_api(monkeypatch):
    """The API handler on fake ports with the tenant acme (no request here reaches AWS)."""
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    monkeypatch.setattr(api, "get_ports", lambda budget: ports)
    monkeypatch.setattr(bulk_routes, "get_ports", lambda budget: ports)

    def call(method, path, *, query=None, body=None, content_type="application/json"):
        proxy = {
            "httpMethod": method,
            "path": path,
            "resource": path,
            "headers": {"Content-Type": content_type},
            "multiValueHeaders": {"Content-Type": [content_type]},
            "queryStringParameters": query,
            "multiValueQueryStringParameters": {name: [value] for name, value in query.items()} if query else None,
            "body": body,
            "isBase64Encoded": False,
            "requestContext": {"requestId": "r1", "authorizer": {"tenant_id": "acme"}, "stage": "v1"},
        }
        answer = api.app.resolve(proxy, None)
        return answer["statusCode"], json.loads(answer["body"]) if answer.get("body") else None

    call.ports = ports
    return call


@pytest.mark.parametrize("limit", ["+1", "1_0", " 5", "5 ", "5\u00a0"])
def test_a_limit_written_otherwise_than_in_the_digits_0_to_9_is_a_400(fake_api, limit):
    """Python's int reads +1, 1_0 and digits padded with spaces as numbers and Powertools' validation took them; the
    document's integer is none of them, so each is a 400 naming the parameter and saying how to write it."""
    status, answer = fake_api("GET", "/v1/jobs", query={"limit": limit})
    assert (status, answer["error"]["code"]) == (400, "invalid_request"), answer
    assert answer["error"]["details"] == [
        {
            "loc": ["query", "limit"],
            "msg": "Input should be a whole number written in the digits 0-9 alone",
            "type": "int_parsing",
        }
    ]


@pytest.mark.parametrize("limit", ["\uff15", "\u0665"])
def test_a_limit_in_another_scripts_digits_is_a_400(fake_api, limit):
    """A full-width 5 or an Arabic-Indic 5 is no limit either: one 400 for the parameter."""
    status, answer = fake_api("GET", "/v1/jobs", query={"limit": limit})
    assert (status, answer["error"]["code"]) == (400, "invalid_request"), answer
    assert [d["loc"] for d in answer["error"]["details"]] == [["query", "limit"]]


def test_a_listing_whose_whole_numbers_are_digits_or_absent_is_answered(fake_api):
    """Only whole-number parameters are held to digits: a status filter with no limit, or a limit in digits, lists."""
    for query in ({"limit": "5"}, {"status": "QUEUED"}, {"status": "QUEUED", "limit": "100"}, None):
        status, answer = fake_api("GET", "/v1/jobs", query=query)
        assert status == 200 and answer["jobs"] == [], (query, answer)


def test_an_odd_whole_number_is_said_with_the_requests_other_errors(fake_api):
    """Refused with another parameter Powertools refuses, both are listed; a value Powertools refuses itself (1.5)
    or -0, below the minimum of 1, is said once, in Powertools' words."""
    status, answer = fake_api("GET", "/v1/jobs", query={"limit": "+1", "status": "NOT_A_STATUS"})
    assert status == 400, answer
    assert sorted(tuple(d["loc"]) for d in answer["error"]["details"]) == [("query", "limit"), ("query", "status")]
    for limit, said_as in (("1.5", "int_parsing"), ("-0", "greater_than_equal")):
        status, answer = fake_api("GET", "/v1/jobs", query={"limit": limit})
        assert status == 400, answer
        [said] = answer["error"]["details"]
        assert said["loc"] == ["query", "limit"] and said["type"] == said_as and "digits 0-9" not in said["msg"]


def test_max_records_written_otherwise_than_in_digits_is_a_400(fake_api):
    """maxRecords (an optional whole number) is held to digits too."""
    status, answer = fake_api("GET", "/v1/bulk/jobs/b_x/results", query={"maxRecords": "+10"})
    assert status == 400, answer
    assert [d["loc"] for d in answer["error"]["details"]] == [["query", "maxRecords"]]


@pytest.mark.parametrize(
    ("charset", "status"),
    [("utf-8", 201), ("UTF8", 201), ("us-ascii", 201), ("ascii", 201), ("latin-1", 415), ("", 415)],
)
def test_a_csv_batch_may_say_it_is_ascii(fake_api, charset, status):
    """ASCII is UTF-8 too: a batch sent as text/csv; charset=us-ascii or ascii is stored (201) as a UTF-8 one is; a
    batch in another charset, or with an empty one, is a 415."""
    ports = fake_api.ports
    job = create_job(
        ports, Caller.of(ports.tenants.get("acme")), NewJob(object="accounts", operation=BulkOperation.INSERT)
    )[0]
    got, answer = fake_api(
        "PUT",
        f"/v1/bulk/jobs/{job.job_id}/batches",
        body="id,name\n1,Ann\n",
        content_type=f"text/csv; charset={charset}",
    )
    assert got == status, answer
