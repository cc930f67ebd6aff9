"""Pins of the message and event contracts (events/) that no test held, found by mutation testing events/models.py,
events/catalog.py and events/schema_writer.py: where a job's error message is cut, that errors and messages are not
changed once made, that only the Data API's own events are statement status changes, how a jobs-queue body is told
apart by its kind, the job a webhook delivery names in the logs, what an S3 body must hold, and how
``python -m events.schema_writer`` rewrites the schema files and the registry's copies in template.yaml."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from events import (
    BulkJobQueuedMessage,
    ErrorInfo,
    JobQueuedMessage,
    S3Notification,
    StatementStatusChangeEvent,
    WebhookDelivery,
    parse_job_message,
    schema_writer,
)
from events.catalog import REGISTRY_SCHEMAS, SAMPLES, SCHEMAS

pytestmark = pytest.mark.unit


# -- ErrorInfo ---------------------------------------------------------------------------------------------------------


def test_an_error_message_of_2000_characters_is_kept_whole():
    """2,000 characters is the most a job's error carries: a message of exactly that length is not cut."""
    message = "x" * 1999 + "y"
    assert ErrorInfo(code="statement_failed", message=message).message == message


def test_an_error_message_of_2001_characters_is_cut_to_2000_ending_with_the_mark():
    """One character more and the message is its first 1,994 characters and ' [...]': 2,000 in all, still valid."""
    message = "".join(chr(ord("a") + i % 26) for i in range(2001))
    cut = ErrorInfo(code="statement_failed", message=message).message
    assert cut == message[:1994] + " [...]"
    assert len(cut) == 2000


def test_a_long_error_message_read_back_from_a_stored_job_is_cut_too():
    """The cut is made on reading as well as on making: an error stored longer (before the cut existed) is read."""
    stored = json.dumps({"code": "statement_failed", "message": "z" * 5000})
    error = ErrorInfo.model_validate_json(stored)
    assert error.message == "z" * 1994 + " [...]"


def test_an_error_is_not_changed_once_made():
    """An error is a value shared by the job, its events and notifications: setting a field is refused."""
    error = ErrorInfo(code="statement_failed", message="boom")
    with pytest.raises(ValidationError):
        error.message = "other"
    assert error == ErrorInfo(code="statement_failed", message="boom")
    assert hash(error) == hash(ErrorInfo(code="statement_failed", message="boom"))


def test_a_message_is_not_changed_once_made():
    """A queue message is sent as made: setting a field (a retry's attempt, a job id) is refused; a change is a copy."""
    message = JobQueuedMessage(job_id="j_1", tenant_id="acme")
    with pytest.raises(ValidationError):
        message.job_id = "j_2"
    delivery = _delivery("{}")
    with pytest.raises(ValidationError):
        delivery.attempt = 2
    assert (message.job_id, delivery.attempt) == ("j_1", 1)


def test_an_error_message_that_is_no_string_is_refused_not_cut():
    with pytest.raises(ValidationError):
        ErrorInfo(code="statement_failed", message=["a"] * 2001)


# -- the Data API's events -------------------------------------------------------------------------------------------


def test_only_the_data_apis_own_events_are_statement_status_changes():
    """The completion queue reads events of source aws.redshift-data; another source's event of the same shape is
    refused, not taken as a statement's end."""
    event = json.loads((SAMPLES / "redshift_statement_status_change.json").read_text())
    assert StatementStatusChangeEvent.model_validate(event).source == "aws.redshift-data"
    for source in ("spectra", "aws.redshift"):
        with pytest.raises(ValidationError):
            StatementStatusChangeEvent.model_validate({**event, "source": source})


# -- jobs-queue messages -----------------------------------------------------------------------------------------------


def test_a_jobs_queue_message_without_kind_is_a_query_jobs():
    message = parse_job_message(json.dumps({"version": "1", "job_id": "j_1", "tenant_id": "acme"}))
    assert type(message) is JobQueuedMessage
    assert (message.job_id, message.tenant_id) == ("j_1", "acme")


def test_a_jobs_queue_message_of_kind_bulk_is_a_bulk_jobs():
    message = parse_job_message(json.dumps({"kind": "bulk", "job_id": "b_1", "tenant_id": "acme"}))
    assert type(message) is BulkJobQueuedMessage
    assert (message.job_id, message.tenant_id) == ("b_1", "acme")


@pytest.mark.parametrize("kind", ["copy", "", "Bulk"])
def test_a_jobs_queue_message_of_another_kind_is_refused_naming_it(kind):
    """Only a message with no ``kind`` at all is a query job's; any other kind (an empty one too) is refused."""
    body = {"version": "1", "job_id": "j_1", "tenant_id": "acme", "kind": kind}
    with pytest.raises(ValueError, match=f"does not run: {kind!r}"):
        parse_job_message(json.dumps(body))


def test_a_jobs_queue_body_that_is_no_object_is_refused_as_invalid():
    """A JSON list or string is no message: refused as invalid (a ValueError), not an AttributeError."""
    for body in ('["bulk"]', '"bulk"'):
        with pytest.raises(ValidationError):
            parse_job_message(body)


@pytest.mark.parametrize(("field", "most"), [("job_id", 64), ("tenant_id", 128)])
def test_a_jobs_queue_message_takes_ids_up_to_their_bound(field, most):
    body = {"job_id": "j_1", "tenant_id": "acme"}
    assert getattr(JobQueuedMessage(**{**body, field: "a" * most}), field) == "a" * most
    for bad in ("", "a" * (most + 1)):
        with pytest.raises(ValidationError):
            JobQueuedMessage(**{**body, field: bad})


# -- webhook deliveries ------------------------------------------------------------------------------------------------


def _delivery(payload: str, **fields) -> WebhookDelivery:
    return WebhookDelivery(
        webhook_id="msg_1",
        tenant_id="acme",
        subscription_id="sub_1",
        event_type="Job Completed",
        payload=payload,
        **fields,
    )


def test_a_webhook_delivery_names_the_job_of_its_payload():
    assert _delivery(json.dumps({"type": "Job Completed", "data": {"job_id": "j_7"}})).job_id == "j_7"


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[1, 2]",
        json.dumps({"data": ["j_7"]}),
        json.dumps({"data": {"subscription_id": "sub_1"}}),
        json.dumps({"data": {"job_id": 7}}),
    ],
)
def test_a_webhook_delivery_without_a_job_id_string_in_its_payload_names_none(payload):
    """A payload not JSON, not an object, with ``data`` no object or without a string ``job_id`` names no job."""
    assert _delivery(payload).job_id is None


def test_a_webhook_delivery_is_first_attempt_one_and_never_attempt_zero():
    assert _delivery("{}").attempt == 1
    with pytest.raises(ValidationError):
        _delivery("{}", attempt=0)


# -- S3 notifications --------------------------------------------------------------------------------------------------


def test_the_s3_test_event_is_an_s3_notification_without_records():
    body = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "ingest"}
    assert S3Notification.model_validate(body).Records == []


@pytest.mark.parametrize(
    "body",
    [{}, {"Records": []}, {"Event": "s3:ObjectCreated:Put"}, {"Type": "Notification", "Message": "{}"}],
)
def test_a_body_with_neither_records_nor_the_test_event_is_refused(body):
    with pytest.raises(ValidationError, match="neither Records nor the s3:TestEvent"):
        S3Notification.model_validate(body)


# -- schema writer -----------------------------------------------------------------------------------------------------


def _template(stale: dict[str, str]) -> str:
    """A template holding each registry schema's resource, its Content block the given text (8 spaces in)."""
    parts = ["Resources:\n"]
    for name, text in stale.items():
        parts.append(f"  {name.replace('@', '')}:\n    Type: AWS::EventSchemas::Schema\n    Properties:\n")
        parts.append(f"      SchemaName: {name}\n      Type: JSONSchemaDraft4\n      Content: |\n")
        parts.extend(f"        {line}\n" for line in text.split("\n"))
    return "".join(parts) + "Outputs:\n  Done:\n    Value: 1\n"


def test_render_template_replaces_a_stale_registry_schema_of_any_length_and_keeps_what_follows():
    """Each ``Content: |`` block after ``SchemaName: <name>`` becomes its schema file's JSON, 8 spaces in, whatever
    it held; the lines after it are kept."""
    schemas = {filename: json.dumps({"name": filename, "x": [1, 2]}, indent=2) + "\n" for filename in SCHEMAS_FILES}
    stale = {name: "{}" if i % 2 else '{\n  "old": 1,\n  "older": 2,\n  "oldest": 3\n}' for i, name in NAMES}
    updated = schema_writer.render_template(_template(stale), schemas)
    fresh = {name: schemas[filename].rstrip("\n") for name, filename in REGISTRY_SCHEMAS.items()}
    assert updated == _template(fresh)
    assert updated.endswith("Outputs:\n  Done:\n    Value: 1\n")


def test_render_template_refuses_a_template_without_a_registry_schema_naming_it():
    """A registry schema the template does not hold is refused by its name, not skipped."""
    missing = NAMES[0][1]
    others = {name: "{}" for _, name in NAMES[1:]}
    with pytest.raises(ValueError, match=f"declares no schema {missing} with a 'Content: \\|' block"):
        schema_writer.render_template(_template(others), {f: "{}\n" for f in SCHEMAS_FILES})


def test_the_schema_writer_writes_every_schema_file_and_the_templates_registry(tmp_path, monkeypatch, capsys):
    """``python -m events.schema_writer`` writes each schema file and brings the template's registry up to date,
    saying what it wrote; a second run leaves the template as it is and says nothing of it."""
    template = tmp_path / "template.yaml"
    template.write_text(_template({name: "{}" for _, name in NAMES}))
    monkeypatch.setattr(schema_writer, "SCHEMAS", tmp_path / "schemas")
    monkeypatch.setattr(schema_writer, "TEMPLATE", template)
    schema_writer.main()
    written = {p.name: p.read_text() for p in (tmp_path / "schemas").iterdir()}
    assert written == {p.name: p.read_text() for p in SCHEMAS.glob("*.json")}
    fresh = {name: (SCHEMAS / filename).read_text().rstrip("\n") for name, filename in REGISTRY_SCHEMAS.items()}
    assert template.read_text() == _template(fresh)
    assert f"updated the schema registry in {template}" in capsys.readouterr().out
    schema_writer.main()
    assert "updated the schema registry" not in capsys.readouterr().out
    assert template.read_text() == _template(fresh)


SCHEMAS_FILES = sorted(REGISTRY_SCHEMAS.values())
NAMES = list(enumerate(REGISTRY_SCHEMAS))


def test_python_m_events_schema_writer_rewrites_a_stale_schema_file(tmp_path):
    """The module run as ``python -m events.schema_writer`` (as its docstring and the stale-schema test say to) writes
    the files: here a copy of the package and template, one schema file emptied and one registry copy stale."""
    root = Path(schema_writer.__file__).resolve().parents[1]
    shutil.copytree(root / "events", tmp_path / "events", ignore=shutil.ignore_patterns("__pycache__"))
    template = (root / "template.yaml").read_text()
    name, filename = NAMES[0][1], REGISTRY_SCHEMAS[NAMES[0][1]]
    fresh = schema_writer.render_template(template, schema_writer.render())
    (tmp_path / "template.yaml").write_text(
        schema_writer.render_template(template, {**schema_writer.render(), filename: "{}\n"})
    )
    (tmp_path / "events" / "schemas" / "job_queued_message.v1.json").write_text("{}\n")
    run = subprocess.run(
        [sys.executable, "-m", "events.schema_writer"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert (tmp_path / "events" / "schemas" / "job_queued_message.v1.json").read_text() == (
        SCHEMAS / "job_queued_message.v1.json"
    ).read_text()
    assert (tmp_path / "template.yaml").read_text() == fresh, name
    assert "updated the schema registry" in run.stdout
