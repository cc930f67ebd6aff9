"""Pins of the notifier's fan-out (spectra/notify/fanout.py) that no test held, found by mutation testing it: an
event naming no tenant, a function without a delivery queue or a topic, an event's generation that is not one, and
what the topic gets of events that are not terminal."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from spectra.notify.fanout import fan_out
from spectra.tenants import Caller
from tests.unit.fakes import make_notify, make_ports, make_settings
from tests.unit.test_notify import ports_with_notify, sample_event, subscribe

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("tenant_id", [None, "", 7])
def test_an_event_naming_no_tenant_reaches_no_webhook_and_says_so(tenant_id, caplog):
    """A terminal event without a usable tenant id queues nothing, still goes to the topic, and the warning names
    the event and its type, from the fan-out's own logger."""
    ports = ports_with_notify()
    subscribe(ports)
    event = sample_event(tenant_id=tenant_id)
    with caplog.at_level(logging.WARNING, logger="spectra.notify.fanout"):
        result = fan_out(ports, event)
    assert result.deliveries == [] and ports.notify.deliveries.queued == []
    assert result.published_to_topic and ports.notify.topic.published == [event]
    (record,) = [r for r in caplog.records if r.name == "spectra.notify.fanout"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == f"event {event.id} (Job Completed) names no tenant; no webhooks"


def test_a_function_without_a_delivery_queue_refuses_an_event_with_deliveries_before_publishing_it():
    """The whole event is retried: nothing reaches the topic ahead of the webhooks it owes."""
    ports = ports_with_notify()
    subscribe(ports)
    ports = without(ports, deliveries=None)
    refusal = r"^this function has no delivery queue \(WEBHOOK_DELIVERY_QUEUE_URL is not set\)$"
    with pytest.raises(RuntimeError, match=refusal):
        fan_out(ports, sample_event())
    assert ports.notify.topic.published == []


def test_a_function_without_a_delivery_queue_fans_out_an_event_that_no_subscription_hears():
    ports = ports_with_notify()
    ports = without(ports, deliveries=None)
    result = fan_out(ports, sample_event())
    assert result.deliveries == [] and result.published_to_topic


def test_a_function_without_a_topic_queues_the_webhooks_of_a_terminal_event_and_publishes_nothing():
    ports = ports_with_notify()
    made = subscribe(ports)
    ports = without(ports, topic=None)
    result = fan_out(ports, sample_event())
    assert [d.subscription_id for d in result.deliveries] == [made.subscription_id]
    assert not result.published_to_topic


def test_an_event_that_is_not_terminal_is_not_published_to_the_topic():
    ports = ports_with_notify()
    subscribe(ports, events=("Subscription Disabled",))
    fan_out(ports, sample_event("subscription_disabled_event.json"))
    assert ports.notify.topic.published == []


@pytest.mark.parametrize("generation", ["", 7])
def test_an_event_whose_generation_is_not_one_goes_to_the_tenants_current_generation(generation):
    """An empty or non-string ``tenant_generation`` (a newer producer's) is read as none, as a missing one is."""
    ports = with_recreated_acme()
    successor = Caller.of(ports.tenants.get("acme"))
    new = subscribe(ports, caller=successor)
    result = fan_out(ports, sample_event(tenant_id="acme", tenant_generation=generation))
    assert [d.subscription_id for d in result.deliveries] == [new.subscription_id]


def with_recreated_acme():
    ports = make_ports(settings=make_settings(), notify=make_notify())
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.tenants.delete_tenant("acme")
    ports.tenants.create_tenant("acme", db_user="tenant_acme_2")
    return ports


def without(ports, **notify_ports):
    """``ports`` as a function lacking some of the notification resources (its subscriptions kept)."""
    return dataclasses.replace(ports, notify=dataclasses.replace(ports.notify, **notify_ports))
