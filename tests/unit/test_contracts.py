"""Every sample in events/ is a real AWS shape and parses with its model; the JSON Schemas are current."""

import json

import pytest

from events.catalog import SAMPLE_MODELS, SAMPLES, SCHEMAS
from events.models import JobStatus, StatementState, StatementStatusChangeEvent
from events.schema_writer import render

pytestmark = pytest.mark.unit


def test_every_sample_file_has_a_model():
    assert sorted(p.name for p in SAMPLES.glob("*.json")) == sorted(SAMPLE_MODELS)


@pytest.mark.parametrize("filename", sorted(SAMPLE_MODELS))
def test_sample_parses(filename):
    model = SAMPLE_MODELS[filename]
    parsed = model.model_validate_json((SAMPLES / filename).read_text())
    assert parsed.model_dump(by_alias=True)


def test_statement_event_fields():
    event = StatementStatusChangeEvent.model_validate_json(
        (SAMPLES / "redshift_statement_status_change_failed.json").read_text()
    )
    assert event.detail_type == "Redshift Data Statement Status Change"
    assert event.detail.state is StatementState.FAILED
    assert event.detail.rows == -1


def test_unknown_message_version_is_refused():
    body = json.loads((SAMPLES / "job_queued_message.json").read_text())
    from events.models import JobQueuedMessage

    with pytest.raises(ValueError):
        JobQueuedMessage.model_validate({**body, "version": "2"})


@pytest.mark.parametrize("filename", sorted(SAMPLE_MODELS))
def test_every_message_and_event_is_read_with_fields_a_newer_producer_added(filename):
    """Found by the version skew review: a deploy replaces functions one at a time, and the queue messages forbade
    fields they did not know, so a webhook delivery queued by a notifier that added ``subscription_created_at`` failed
    the older delivery function five times into its dead-letter queue (no tenant got a webhook until a redrive), and
    a job message carrying ``job`` did the same to an older executor. Every message and event takes a field added
    later, at its top, in its detail and in a nested error, and reads as it did without it."""
    body = json.loads((SAMPLES / filename).read_text())
    later = {**body, "added_later": {"any": "shape"}}
    if isinstance(body.get("detail"), dict):
        later["detail"] = {**body["detail"], "added_later": 1}
        if isinstance(body["detail"].get("error"), dict):
            later["detail"]["error"] = {**body["detail"]["error"], "hint": "added later too"}
    model = SAMPLE_MODELS[filename]
    # kept: a reader that sends the message on (a delivery's retry) sends them on too (found by the diff review)
    sent_on = json.loads(model.model_validate(later).model_dump_json(by_alias=True))
    if "detail" in later:  # an event: its envelope is EventBridge's (and S3's, Redshift's), its detail ours
        sent_on.pop("added_later", None)
        assert sent_on["detail"].pop("added_later") == 1
        assert "hint" not in (sent_on["detail"].get("error") or {})  # an error is answered to tenants: dropped
    elif not filename.startswith("s3"):
        assert sent_on.pop("added_later") == {"any": "shape"}
    sent_on.pop("added_later", None)
    assert sent_on == json.loads(model.model_validate(body).model_dump_json(by_alias=True))


def _extras(value, where: str = "") -> list[str]:
    """Every field a parsed model holds that its class does not declare, at any depth."""
    from pydantic import BaseModel

    found = []
    if isinstance(value, BaseModel):
        found += [f"{where}.{name}" for name in (value.model_extra or {})]
        for name in type(value).model_fields:
            found += _extras(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found += _extras(item, f"{where}[{i}]")
    return found


@pytest.mark.parametrize("filename", sorted(name for name in SAMPLE_MODELS if not name.startswith(("redshift", "s3"))))
def test_the_samples_carry_no_field_their_model_does_not_know(filename):
    """The models keep fields they do not know (above), so a misspelt or stale field in a sample no longer fails its
    parse; it fails here (found by the diff review). AWS's own events (Redshift's, S3's) carry fields the project
    does not model."""
    parsed = SAMPLE_MODELS[filename].model_validate_json((SAMPLES / filename).read_text())
    assert _extras(parsed) == []


def test_a_job_whose_stored_parameters_carry_a_field_added_later_is_read():
    """QueryParameter is stored on every job: a field added to it must not make older code fail to read the job."""
    from spectra.jobs import QueryParameter

    assert QueryParameter.model_validate({"name": "x", "value": "1", "type": "int"}) == QueryParameter(
        name="x", value="1"
    )


def test_a_job_message_of_a_kind_this_version_does_not_know_is_refused():
    """Found by the diff review: with fields it does not know kept, a message of a newer kind read as a query job's,
    which no job store holds, so the executor dropped it; refused, it waits in the DLQ for a redrive."""
    from events.models import parse_job_message

    body = json.loads((SAMPLES / "bulk_job_queued_message.json").read_text())
    with pytest.raises(ValueError, match="kind"):
        parse_job_message(json.dumps({**body, "kind": "copy"}))
    assert parse_job_message(json.dumps(body)).kind == "bulk"


def test_schemas_are_current():
    for filename, text in render().items():
        assert (SCHEMAS / filename).read_text() == text, f"run: python -m events.schema_writer ({filename} is stale)"


def test_terminal_states():
    assert {s for s in JobStatus if s.is_terminal} == {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}


def test_the_template_schema_registry_holds_the_committed_event_schemas():
    """template.yaml's AWS::EventSchemas::Schema resources carry exactly events/schemas' files: one per event schema
    (those with x-amazon-events-source), the same JSON. `python -m events.schema_writer` rewrites both."""
    from cfnlint.decode import decode

    from events.catalog import REGISTRY_SCHEMAS
    from events.schema_writer import TEMPLATE, render_template

    body, matches = decode(str(TEMPLATE))
    assert not matches, matches
    schemas = {
        r["Properties"]["SchemaName"]: r["Properties"]
        for r in body["Resources"].values()
        if r["Type"] == "AWS::EventSchemas::Schema"
    }
    assert sorted(schemas) == sorted(REGISTRY_SCHEMAS)
    event_files = {f.name for f in SCHEMAS.glob("*.json") if "x-amazon-events-source" in json.loads(f.read_text())}
    assert event_files == set(REGISTRY_SCHEMAS.values())
    for name, filename in REGISTRY_SCHEMAS.items():
        properties = schemas[name]
        assert json.loads(properties["Content"]) == json.loads((SCHEMAS / filename).read_text()), name
        assert properties["Type"] == "JSONSchemaDraft4"
        assert properties["RegistryName"] == {"Fn::GetAtt": ["EventSchemaRegistry", "RegistryName"]}
    text = TEMPLATE.read_text()
    assert render_template(text, render()) == text, "run: python -m events.schema_writer"


def test_job_events_name_their_job_in_resources():
    from events.catalog import SAMPLE_MODELS as models

    for filename, model in models.items():
        if filename.endswith("_event.json") and "detail" in model.model_fields and "redshift" not in filename:
            event = json.loads((SAMPLES / filename).read_text())
            assert event["resources"] == [event["detail"].get("job_id") or event["detail"]["subscription_id"]]


@pytest.mark.parametrize(
    "filename", ["job_failed_event.json", "bulk_job_failed_event.json", "subscription_disabled_event.json"]
)
def test_an_event_published_before_events_named_their_tenant_generation_still_parses(filename):
    body = json.loads((SAMPLES / filename).read_text())
    del body["detail"]["tenant_generation"]
    assert SAMPLE_MODELS[filename].model_validate(body).detail.tenant_generation is None


PUBLISHED = {
    "job_event_detail.v1.json": ["job_completed_event.json", "job_failed_event.json", "job_cancelled_event.json"],
    "bulk_job_event_detail.v1.json": ["bulk_job_completed_event.json", "bulk_job_failed_event.json"],
    "subscription_disabled_detail.v1.json": ["subscription_disabled_event.json"],
}


@pytest.mark.parametrize("schema_file", sorted(PUBLISHED))
def test_published_schemas_take_fields_added_within_their_version(schema_file):
    """Fields are added within a version (tenant_generation was): a subscriber validating with the registry's schema,
    or with bindings generated from it, must take them. The schemas said additionalProperties false, so every event
    published since that field came was refused by the schema subscribers had (found by the events review)."""
    from jsonschema import Draft202012Validator

    from events.catalog import REGISTRY_SCHEMAS

    assert schema_file in REGISTRY_SCHEMAS.values()
    validator = Draft202012Validator(json.loads((SCHEMAS / schema_file).read_text()))
    for sample in PUBLISHED[schema_file]:
        detail = json.loads((SAMPLES / sample).read_text())["detail"]
        validator.validate(detail)
        later = {**detail, "added_later": {"any": "shape"}}
        if isinstance(detail.get("error"), dict):
            later["error"] = {**detail["error"], "hint": "added later too"}
        validator.validate(later)


@pytest.mark.parametrize("schema_file", sorted(PUBLISHED))
def test_published_schemas_pin_their_version_under_the_draft_the_registry_declares(schema_file):
    """template.yaml declares the registry's schemas JSONSchemaDraft4, which has no ``const``: pydantic's
    ``const: "1"`` pinned nothing for a draft-4 validator, which took ``version: "2"`` (found by the events review).
    The pin is a one-value ``enum``, which both drafts read."""
    from jsonschema import Draft4Validator, Draft202012Validator

    schema = json.loads((SCHEMAS / schema_file).read_text())
    assert '"const"' not in json.dumps(schema)
    for validator in (Draft4Validator(schema), Draft202012Validator(schema)):
        for sample in PUBLISHED[schema_file]:
            detail = json.loads((SAMPLES / sample).read_text())["detail"]
            assert validator.is_valid(detail)
            assert not validator.is_valid({**detail, "version": "2"})


@pytest.mark.parametrize(
    ("schema_file", "field", "ends"),
    [
        ("job_event_detail.v1.json", "status", {"COMPLETED", "FAILED", "CANCELLED"}),
        ("bulk_job_event_detail.v1.json", "state", {"JobComplete", "Failed", "Aborted"}),
    ],
)
def test_a_job_events_schema_allows_only_the_endings_it_carries(schema_file, field, ends):
    """Job events are about a job's end: the schema offered QUEUED and SUBMITTED (bulk: any string), which no event
    carries, to validators and generated bindings (found by the events review)."""
    schema = json.loads((SCHEMAS / schema_file).read_text())
    assert set(schema["properties"][field]["enum"]) == ends


def test_the_webhook_delivery_sample_is_what_the_code_sends_for_its_event():
    """The delivery sample is job_completed_event.json's: its payload is what webhook_payload makes of that event."""
    from events.models import ProjectEvent
    from spectra.notify.models import webhook_payload

    sample = json.loads((SAMPLES / "webhook_delivery_message.json").read_text())
    event = ProjectEvent.model_validate(json.loads((SAMPLES / "job_completed_event.json").read_text()))
    assert json.loads(sample["payload"]) == json.loads(webhook_payload(event))


def test_the_readmes_events_section_names_every_detail_type_on_the_bus():
    """It named the three query job types only (events review)."""
    import re
    from pathlib import Path

    from events import SUBSCRIBABLE_EVENT_TYPES

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = re.search(r"^## Events\n(.*?)^## ", readme, re.S | re.M).group(1)
    assert [t for t in SUBSCRIBABLE_EVENT_TYPES if f"`{t}`" not in section] == []


def test_every_message_and_event_is_made_with_fields_its_model_declares():
    """The models take fields they do not know (a newer producer's, in a rolling deploy), so a misspelt keyword where
    the project itself makes one (``tenant_generaton=``) would be sent as it is while the field meant stays empty
    (found by the diff review). Every call of a contract model's constructor in the code names declared fields."""
    import ast
    from pathlib import Path

    from events import models

    contracts = {
        name: model
        for name, model in vars(models).items()
        if isinstance(model, type) and issubclass(model, models._Contract) and model is not models._Contract
    }
    root = Path(__file__).resolve().parents[2]
    misspelt = []
    for package in ("spectra", "producers", "consumers", "events", "local"):
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                model = contracts.get(name)
                if model is None:
                    continue
                known = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
                misspelt += [
                    f"{path.relative_to(root)}:{node.lineno} {name}({kw.arg}=)"
                    for kw in node.keywords
                    if kw.arg is not None and kw.arg not in known
                ]
    assert len(contracts) >= 8
    assert misspelt == []


def test_every_copy_of_a_model_names_fields_it_declares():
    """``model_copy(update=...)`` validates nothing: a misspelt key (a webhook delivery's retry made with ``atempt=``)
    is kept as an extra and sent, the field meant left as it was (found by the diff review). Every literal key of such
    a call in the code is a field of the model copied, here: of some model the project defines."""
    import ast
    import importlib
    from pathlib import Path

    from pydantic import BaseModel

    root = Path(__file__).resolve().parents[2]
    keys = []
    for package in ("spectra", "producers", "consumers", "events"):
        for path in (root / package).rglob("*.py"):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "model_copy":
                    for keyword in node.keywords:
                        if keyword.arg == "update" and isinstance(keyword.value, ast.Dict):
                            importlib.import_module(module.removesuffix(".__init__"))
                            keys += [
                                (f"{path.relative_to(root)}:{node.lineno}", key.value)
                                for key in keyword.value.keys
                                if isinstance(key, ast.Constant)
                            ]

    def models(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from models(sub)

    declared = {name for model in models(BaseModel) for name in model.model_fields}
    assert len(keys) >= 5
    assert [(where, key) for where, key in keys if key not in declared] == []


def _shape(value):
    """A JSON value's keys at every depth (lists by their items), its leaves left out."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return None


@pytest.mark.parametrize("filename", sorted(name for name in SAMPLE_MODELS if not name.startswith(("redshift", "s3"))))
def test_the_samples_carry_every_field_their_model_writes(filename):
    """The samples are what subscribers copy and generate bindings from: each carries every field its model writes
    (the Failed and Cancelled samples lacked ``truncated`` and ``total_row_count`` for a while, which every such event
    carries, and a model's defaults hid it from the tests above; found by the notifications review)."""
    sample = json.loads((SAMPLES / filename).read_text())
    written = json.loads(SAMPLE_MODELS[filename].model_validate(sample).model_dump_json(by_alias=True))
    if "detail" in sample:  # an event: its envelope is EventBridge's (replay-name only on a replay), its detail ours
        sample, written = sample["detail"], written["detail"]
    assert _shape(sample) == _shape(written)
