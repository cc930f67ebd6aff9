"""The served OpenAPI document: valid, and complete enough to read and to generate clients from (every operation
summarised, described and answering with models; every model field described with examples that fit it)."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from producers.api.app import _ERROR_CODES, openapi_document

pytestmark = pytest.mark.unit

DOCUMENT = openapi_document()
OPERATIONS = [
    (method.upper(), path, operation)
    for path, operations in DOCUMENT["paths"].items()
    for method, operation in operations.items()
]
SCHEMAS = DOCUMENT["components"]["schemas"]


def test_the_document_is_valid_openapi():
    validate(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.1")


def test_bearer_keys_secure_every_operation():
    assert DOCUMENT["components"]["securitySchemes"]["apiKey"]["scheme"].lower() == "bearer"
    assert DOCUMENT["security"] == [{"apiKey": []}]
    assert all("security" not in operation for _, _, operation in OPERATIONS)  # none opts out


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_every_operation_is_summarised_described_and_answers_with_its_models(method, path, operation):
    assert operation.get("summary") and not operation["summary"].startswith(method), "a summary of its own"
    assert len(operation.get("description") or "") > 20
    responses = operation["responses"]
    successes = [status for status in responses if status.startswith(("2", "3"))]
    assert successes, "a documented success"
    for status in successes:
        if status in ("204", "303"):
            assert "content" not in responses[status]
            continue
        content = responses[status]["content"]
        assert all(media.get("schema") for media in content.values()), status
    for status, answer in responses.items():
        if status.startswith(("4", "5")):
            assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    # the gateway's own answers, on every operation
    assert {"401", "403", "429", "500"} <= set(responses)
    # validation failures are 400: a 422 is only the bulk query results' record_too_large (found by a diff review)
    if "422" in responses:
        assert responses["422"]["content"]["application/json"]["example"]["error"]["code"] == "record_too_large"


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_each_error_answer_has_its_own_example(method, path, operation):
    # the gateway's answers shared one content object, so each showed the last example written: 500's internal_error;
    # the 502 had none (no code written for it)
    for status, answer in operation["responses"].items():
        if int(status) >= 400 and "content" in answer:
            example = answer["content"]["application/json"]["example"]["error"]
            assert (example["code"], example["message"]) == (_ERROR_CODES[status], answer["description"]), status


def test_the_headers_the_api_sends_are_declared():
    def headers(method, path, status):
        return set(DOCUMENT["paths"][path][method]["responses"][status].get("headers", {}))

    assert all("Retry-After" in headers(m.lower(), p, "429") for m, p, _ in OPERATIONS)  # the README promises it
    assert {"Sforce-Locator", "Sforce-NumberOfRecords"} <= headers("get", "/v1/bulk/jobs/{job_id}/results", "200")
    for method, path, status in [
        ("post", "/v1/queries", "202"),
        ("post", "/v1/queries", "200"),
        ("post", "/v1/bulk/jobs", "201"),
        ("post", "/v1/bulk/jobs", "200"),
        ("post", "/v1/subscriptions", "201"),
        ("post", "/v1/subscriptions", "200"),  # an Idempotency-Key's repeat: sent, and was not declared
        ("get", "/v1/bulk/jobs/{job_id}/successfulResults", "303"),
    ]:
        assert "Location" in headers(method, path, status), (method, path, status)


def test_what_a_post_creates_can_be_followed_by_its_links():
    # the fuzzer's stateful phase (and a client) reached no bulk job or subscription of its own without them
    for path, status, parameter in [
        ("/v1/queries", "202", "job_id"),
        ("/v1/bulk/jobs", "201", "job_id"),
        ("/v1/subscriptions", "201", "subscription_id"),
    ]:
        links = DOCUMENT["paths"][path]["post"]["responses"][status].get("links")
        assert links and all(set(link["parameters"]) == {parameter} for link in links.values()), path


def test_no_declared_error_that_a_route_cannot_give():
    def statuses(method, path):
        return set(DOCUMENT["paths"][path][method]["responses"])

    # creating or listing names no existing job: no 404; listing changes nothing: no 409 (a create's 409 is only an
    # Idempotency-Key used for another request)
    for method, path in [("post", "/v1/bulk/jobs"), ("get", "/v1/bulk/jobs"), ("post", "/v1/bulk/uploads")]:
        assert "404" not in statuses(method, path), path
    assert "409" not in statuses("get", "/v1/bulk/jobs") | statuses("post", "/v1/bulk/uploads")
    assert "Idempotency-Key" in DOCUMENT["paths"]["/v1/bulk/jobs"]["post"]["responses"]["409"]["description"]
    assert not {"404", "409"} & statuses("get", "/v1/jobs")
    assert "409" not in statuses("get", "/v1/jobs/{job_id}")
    assert "404" not in statuses("post", "/v1/subscriptions")
    assert "409" not in statuses("get", "/v1/subscriptions/{subscription_id}")


@pytest.mark.parametrize(
    ("method", "path"), [("put", "/v1/bulk/jobs/{job_id}/batches"), ("post", "/v1/bulk/jobs/{job_id}/uploads")]
)
def test_a_batch_and_an_upload_url_take_an_idempotency_key(method, path):
    """A client whose answer was lost retries the batch with its key; the document says so, and that the key with
    another request is a 409."""
    operation = DOCUMENT["paths"][path][method]
    assert ("idempotency-key", "header") in [(p["name"], p["in"]) for p in operation["parameters"]]
    assert "Idempotency-Key" in operation["description"]
    assert "Idempotency-Key" in operation["responses"]["409"]["description"]


def test_an_empty_batch_is_not_a_valid_body():
    # the service refuses an empty batch (400 "the batch is empty"), so the document may not call one valid: an API
    # fuzzer sending a schema-valid empty body was refused
    content = DOCUMENT["paths"]["/v1/bulk/jobs/{job_id}/batches"]["put"]["requestBody"]["content"]
    for media in ("text/csv", "application/octet-stream"):
        assert content[media]["schema"]["minLength"] == 1, media


def _fields():
    for name, schema in SCHEMAS.items():
        for field, spec in (schema.get("properties") or {}).items():
            yield name, field, spec


FIELDS = list(_fields())


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_every_model_says_what_it_is(name):
    assert SCHEMAS[name].get("description"), name


@pytest.mark.parametrize(("name", "field", "spec"), FIELDS, ids=[f"{n}.{f}" for n, f, _ in FIELDS])
def test_every_field_is_described_with_examples_that_fit_it(name, field, spec):
    assert spec.get("description"), f"{name}.{field} has no description"
    assert spec.get("examples"), f"{name}.{field} has no examples"
    registry = Registry().with_resource("urn:doc", Resource(contents=DOCUMENT, specification=DRAFT202012))
    validator = Draft202012Validator(
        {"$ref": f"urn:doc#/components/schemas/{name}/properties/{field}"}, registry=registry
    )
    for example in spec["examples"]:
        assert not list(validator.iter_errors(example)), f"{name}.{field}: example {example!r} does not fit"


def test_a_subscriptions_secret_is_said_to_come_again_to_a_repeated_post():
    """Found by the clocks review: the secret was "in the answer to POST only, never again", yet a repeat of the POST
    with the same Idempotency-Key answers it again (README, Webhooks), as a client whose answer was lost needs."""
    description = SCHEMAS["SubscriptionView"]["properties"]["secret"]["description"]
    assert "never again" not in description and "same Idempotency-Key" in description


def test_request_bodies_have_examples():
    for name in ("QueryRequest", "TypedParameter", "CreateBulkJob"):
        assert SCHEMAS[name].get("examples"), name


def test_the_bulk_job_examples_are_jobs_the_service_creates():
    """Swagger UI's "Try it out" pre-fills the body's first example; without whole examples it merged every field's
    into an upsert with a query, which the service refused (found by the newcomer review)."""
    from producers.api.bulk_models import CreateBulkJob
    from spectra.bulk.service import create_job
    from spectra.tenants import Caller
    from tests.unit.fakes import make_ports

    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.warehouse.add_table("public", "contacts", ["email", "name"])
    operations = set()
    for example in SCHEMAS["CreateBulkJob"]["examples"]:
        job, _ = create_job(
            ports, Caller.of(ports.tenants.get("acme")), CreateBulkJob.model_validate(example).new_job()
        )
        operations.add(job.operation.value)
    assert operations == {"upsert", "query"}


def test_a_bulk_jobs_api_version_is_a_number_as_bulk_2s():
    """Salesforce sends apiVersion as a number (58.0), which typed Bulk 2.0 clients decode; "1" failed them."""
    from producers.api.bulk_models import BulkJobInfo
    from tests.unit.bulk_helpers import bulk_job

    assert SCHEMAS["BulkJobInfo"]["properties"]["apiVersion"]["type"] == "number"
    assert '"apiVersion":1.0' in BulkJobInfo.of(bulk_job()).model_dump_json()


def test_the_bulk_query_results_declare_their_record_too_large_422():
    """Powertools' 422s are taken out; the route's own stayed out with them, so a generated client could not read
    its locator_after (found by the diff review)."""
    from producers.api.app import openapi_document

    answers = openapi_document()["paths"]["/v1/bulk/jobs/{job_id}/results"]["get"]["responses"]
    assert answers["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    others = [p for p, ops in openapi_document()["paths"].items() for o in ops.values() if "422" in o["responses"]]
    assert others == ["/v1/bulk/jobs/{job_id}/results"]


def _fits(name: str, body: object) -> bool:
    registry = Registry().with_resource("urn:doc", Resource(contents=DOCUMENT, specification=DRAFT202012))
    validator = Draft202012Validator({"$ref": f"urn:doc#/components/schemas/{name}"}, registry=registry)
    return not list(validator.iter_errors(body))


@pytest.mark.parametrize(
    "body",
    [
        {"url": "https://hooks.example.com/x", "events": ["job completed"]},
        {"url": "https://hooks.example.com/x", "events": ["Job Completed"], "filter": {"tenant_id": ["acme"]}},
        {"url": "https://hooks.example.com/x", "events": ["Job Completed"], "filter": {"status": []}},
        {"url": "https://hooks.example.com/x", "events": ["Job Completed"], "filter": {"status": ["x" * 257]}},
    ],
)
def test_a_subscription_the_service_refuses_for_its_events_or_filter_does_not_fit_the_document(body):
    """The event types and filter fields are closed sets, and the filter's values bounded: the document said any
    string, so a client bound to it sent what the service answers 400 (the contract review)."""
    from spectra.errors import InvalidRequest
    from spectra.notify import service

    assert not _fits("CreateSubscription", body)
    with pytest.raises(InvalidRequest):
        service._check_events(body["events"])
        service._check_filter(body.get("filter"))
    valid = {"url": "https://hooks.example.com/x", "events": ["Job Completed"], "filter": {"status": ["FAILED"]}}
    assert _fits("CreateSubscription", valid)


def test_integer_bounds_are_the_whole_numbers_the_models_set():
    """Powertools keeps bounds as floats: row_limit's 2^63 - 1 came out 2^63, which a client validating against the
    document sent and the API refused (the HTTP edge review)."""
    from jsonschema import Draft202012Validator

    row_limit = DOCUMENT["components"]["schemas"]["QueryRequest"]["properties"]["row_limit"]["anyOf"][0]
    assert (row_limit["minimum"], row_limit["maximum"]) == (1, 2**63 - 1)
    assert all(isinstance(row_limit[bound], int) for bound in ("minimum", "maximum"))
    assert not Draft202012Validator(row_limit).is_valid(2**63) and Draft202012Validator(row_limit).is_valid(2**63 - 1)
    bounds = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "integer":
                bounds.extend(node[b] for b in ("minimum", "maximum") if b in node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(DOCUMENT)
    assert bounds and all(isinstance(bound, int) for bound in bounds)
