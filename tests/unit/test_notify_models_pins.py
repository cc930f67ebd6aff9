"""Pins of subscription models (spectra/notify/models.py) that no test held, found by mutation testing it: the id a
query's callback is found under and the one job it takes, the webhook-id of an event that names no resource, the
compact body posted, the one state a bulk event type can be filtered on, how a filter treats a missing field and a
schema-qualified object, and the shape of subscription ids and webhook-ids."""

from __future__ import annotations

import json
import re

import pytest

from events import ProjectEvent
from events.catalog import SAMPLES
from spectra.errors import InvalidRequest
from spectra.notify import service
from spectra.notify.fanout import fan_out
from spectra.notify.models import event_key, new_subscription_id, webhook_id, webhook_payload
from tests.unit.test_notify import ACME, disabled_with_its_event_lost, ports_with_notify, sample_event

pytestmark = pytest.mark.unit

JOB = "j_Qm9ZcW1uT3pLd0xZb3FXcA"


def test_a_query_callback_is_shown_under_cbk_and_its_job_id():
    """README: ``GET /v1/subscriptions/cbk_<job id>`` shows how a query's callback went; the bare job id is no
    subscription."""
    ports = ports_with_notify()
    callback = service.new_callback("https://hooks.acme.example/cb")
    service.register_callback(ports, callback, caller=ACME, job_id=JOB)
    shown = service.get_subscription(ports, ACME, "cbk_j_Qm9ZcW1uT3pLd0xZb3FXcA")
    assert shown.subscription_id == "cbk_j_Qm9ZcW1uT3pLd0xZb3FXcA" and shown.job_id == JOB
    (delivery,) = fan_out(ports, sample_event()).deliveries
    assert delivery.subscription_id == "cbk_j_Qm9ZcW1uT3pLd0xZb3FXcA"


def _without_resources(event_id: str) -> ProjectEvent:
    body = json.loads((SAMPLES / "job_completed_event.json").read_text())
    body["resources"] = []
    body["id"] = event_id
    return ProjectEvent.model_validate(body)


def test_an_event_naming_no_resource_is_told_apart_by_its_eventbridge_id():
    """With no resource to name the event, its EventBridge id is what identifies it: two copies of one id share a
    webhook-id, and another id is another event."""
    assert event_key(_without_resources("11111111-2222-3333-4444-555555555555")) == (
        "11111111-2222-3333-4444-555555555555"
    )
    ports = ports_with_notify()
    service.create_subscription(
        ports, ACME, url="https://hooks.acme.example/in", events=["Job Completed"], filter_=None
    )
    ids = [fan_out(ports, _without_resources(event_id)).deliveries[0].webhook_id for event_id in ("e-1", "e-1", "e-2")]
    assert ids[0] == ids[1] != ids[2]


def test_a_callback_accepts_the_end_of_its_own_job_only():
    """A callback asked of one query takes that job's end and no other job's, whatever finds it."""
    callback = service.new_callback("https://hooks.acme.example/cb")
    ports = ports_with_notify()
    service.register_callback(ports, callback, caller=ACME, job_id=JOB)
    stored = service.get_subscription(ports, ACME, "cbk_j_Qm9ZcW1uT3pLd0xZb3FXcA")
    assert stored.accepts("Job Completed", {"job_id": JOB, "status": "COMPLETED"})
    assert not stored.accepts("Job Completed", {"job_id": "j_another", "status": "COMPLETED"})
    assert not stored.accepts("Job Completed", {"status": "COMPLETED"})


def test_the_body_posted_is_compact_json_in_the_standard_webhooks_shape():
    """The body is written without spaces (it rides in an SQS message of bounded size, and is what the signature
    covers): type, timestamp in UTC with a Z, and the detail as data."""
    event = ProjectEvent.model_validate(
        {
            "version": "0",
            "id": "e-1",
            "detail-type": "Job Completed",
            "source": "spectra",
            "account": "123456789012",
            "time": "2026-11-22T10:14:27Z",
            "region": "us-east-1",
            "resources": ["j_1"],
            "detail": {"job_id": "j_1", "rows": [1, 2]},
        }
    )
    assert webhook_payload(event) == (
        '{"type":"Job Completed","timestamp":"2026-11-22T10:14:27Z","data":{"job_id":"j_1","rows":[1,2]}}'
    )


def _bulk_subscription_to_object(name: str):
    """A "Bulk Job Completed" subscription, made through the service, filtered on one ``object``."""
    return service.create_subscription(
        ports_with_notify(),
        ACME,
        url="https://hooks.acme.example/in",
        events=["Bulk Job Completed"],
        filter_={"object": [name]},
    )[0]


def test_an_event_without_the_filtered_field_is_not_accepted_even_by_a_filter_naming_none():
    """A filtered field the detail lacks keeps the event out: it is not read as the text 'None', which is a table a
    filter on ``object`` may name."""
    sub = _bulk_subscription_to_object("None")
    assert sub.accepts("Bulk Job Completed", {"object": "none"})
    assert not sub.accepts("Bulk Job Completed", {"state": "Completed"})


def test_a_bulk_subscription_filters_on_the_one_state_its_event_type_has():
    """A "Bulk Job Completed" event's state is always JobComplete: a filter on another state would keep every such
    event out, so it is refused; JobComplete is taken."""
    ports = ports_with_notify()
    with pytest.raises(InvalidRequest, match=r"filter\.state lists no value"):
        service.create_subscription(
            ports,
            ACME,
            url="https://hooks.acme.example/in",
            events=["Bulk Job Completed"],
            filter_={"state": ["Failed"]},
        )
    created, _ = service.create_subscription(
        ports,
        ACME,
        url="https://hooks.acme.example/in",
        events=["Bulk Job Completed"],
        filter_={"state": ["JobComplete"]},
    )
    assert created.filter == {"state": ["JobComplete"]}


def test_a_webhook_id_is_msg_and_26_base32_characters_of_its_subscription_type_and_event():
    """The webhook-id receivers deduplicate by: ``msg_`` and 26 characters, the same for the same subscription,
    event type and event."""
    assert webhook_id("sub_a", "Job Completed", "j_1") == "msg_WY5LC57ORAWSRVH3YCFSSTFNZP"
    assert len(webhook_id("sub_b", "Job Failed", "j_2")) == 30


def test_a_new_subscription_id_is_sub_and_128_random_bits():
    """``sub_`` and 22 URL-safe characters (16 random bytes): ids no one can guess, none repeated."""
    ids = {new_subscription_id() for _ in range(200)}
    assert len(ids) == 200
    for made in ids:
        assert re.fullmatch(r"sub_[A-Za-z0-9_-]{22}", made), made


def test_an_object_filter_tells_schema_and_table_apart_by_the_dot():
    """``ab.c`` (table c of schema ab) is another table than ``a.bc``: a filter on one does not take the other."""
    sub = _bulk_subscription_to_object("ab.c")
    assert sub.accepts("Bulk Job Completed", {"object": "AB.C"})
    assert not sub.accepts("Bulk Job Completed", {"object": "a.bc"})


def test_a_subscription_is_shown_with_its_kind_and_status_by_name():
    """A callback reads as kind ``callback``, and a subscription a 410 stopped as status ``disabled`` (README)."""
    ports = ports_with_notify()
    service.register_callback(ports, service.new_callback("https://hooks.acme.example/cb"), caller=ACME, job_id=JOB)
    assert service.get_subscription(ports, ACME, "cbk_" + JOB).model_dump(mode="json")["kind"] == "callback"
    ports = ports_with_notify()
    sub, _ = disabled_with_its_event_lost(ports)
    shown = service.get_subscription(ports, ACME, sub.subscription_id).model_dump(mode="json")
    assert (shown["status"], shown["disabled_reason"]) == ("disabled", "gone")
