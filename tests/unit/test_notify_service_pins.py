"""Pins of subscriptions as the API sees them (spectra/notify/service.py) that no test held, found by mutation testing
it: the size bound of a filter, to the byte; what the 400s and 409s of a create name in their details; the recount
after a create, which must read past a lagging replica; and how long a query's callback is kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from spectra.errors import Conflict, InvalidRequest, InvalidToken, NotFound
from spectra.notify import service
from tests.unit.fakes import make_ports, make_settings
from tests.unit.test_notify import ACME, HOOK, ports_with_notify, subscribe

pytestmark = pytest.mark.unit


def _bulk_filter_of(size: int) -> dict[str, list[str]]:
    """A filter a "Bulk Job Aborted" subscription takes but for its size: of exactly ``size`` bytes as JSON (from
    about 15 KB), each field at its 20 values, each value at most 256 characters."""
    filter_ = {
        "state": ["Aborted"] + [f"s{i:02d}".ljust(256, "s") for i in range(19)],
        "operation": ["upsert"] + [f"o{i:02d}".ljust(256, "o") for i in range(19)],
        "source": ["s3"] + [f"r{i:02d}".ljust(256, "r") for i in range(19)],
        "object": [f"crm.t{i:02d}".ljust(120, "t") for i in range(20)],
    }
    excess = len(json.dumps(filter_).encode()) - size
    for i in range(1, 20):
        cut = min(excess, 200)
        filter_["source"][i] = filter_["source"][i][: 256 - cut]
        excess -= cut
    assert excess == 0 and len(json.dumps(filter_).encode()) == size
    return filter_


def test_a_filter_of_16_kib_as_json_is_kept_and_one_a_byte_larger_refused_naming_both_sizes():
    """README's bound on a filter is 16 KiB as JSON: 16384 bytes are stored as given, 16385 are a 400 whose details
    give the size and the bound, and nothing is stored."""
    ports = ports_with_notify()
    at_most = _bulk_filter_of(16384)
    created, new = service.create_subscription(ports, ACME, url=HOOK, events=["Bulk Job Aborted"], filter_=at_most)
    assert new and created.filter == at_most
    with pytest.raises(InvalidRequest, match="filter is 16385 bytes as JSON") as refused:
        service.create_subscription(ports, ACME, url=HOOK, events=["Bulk Job Aborted"], filter_=_bulk_filter_of(16385))
    assert refused.value.details == {"size": 16385, "max_size": 16384}
    assert list(ports.notify.subscriptions.items.values()) == [created]


def test_unknown_events_are_refused_naming_them_and_the_event_types_allowed():
    """The 400 tells the client what it may list instead, not only what it got wrong."""
    with pytest.raises(InvalidRequest) as refused:
        service.create_subscription(ports_with_notify(), ACME, url=HOOK, events=["Job Completed", "Job Exploded"])
    assert refused.value.details["unknown"] == ["Job Exploded"]
    allowed = refused.value.details["allowed"]
    assert {"Job Completed", "Job Failed", "Bulk Job Aborted", "Subscription Disabled"} <= set(allowed)
    assert "Job Exploded" not in allowed


def test_a_filter_on_an_unknown_field_is_refused_naming_the_fields_allowed():
    with pytest.raises(InvalidRequest) as refused:
        service.create_subscription(
            ports_with_notify(), ACME, url=HOOK, events=["Job Completed"], filter_={"sql": ["x"], "status": ["x"]}
        )
    assert refused.value.details == {
        "unknown": ["sql"],
        "allowed": ["status", "state", "operation", "object", "source", "format", "reason"],
    }


def test_a_filter_field_a_listed_type_lacks_is_refused_naming_the_field_the_type_and_its_fields():
    with pytest.raises(InvalidRequest) as refused:
        service.create_subscription(
            ports_with_notify(), ACME, url=HOOK, events=["Bulk Job Failed"], filter_={"status": ["FAILED"]}
        )
    details = refused.value.details
    assert (details["field"], details["event_type"]) == ("status", "Bulk Job Failed")
    assert "status" not in details["fields"] and {"state", "operation", "object", "source"} <= set(details["fields"])


def test_a_filter_with_no_value_a_listed_type_holds_is_refused_naming_the_values_it_can_hold():
    with pytest.raises(InvalidRequest) as refused:
        service.create_subscription(
            ports_with_notify(), ACME, url=HOOK, events=["Job Completed"], filter_={"status": ["completed"]}
        )
    assert refused.value.details == {"field": "status", "event_type": "Job Completed", "values": ["COMPLETED"]}


def test_a_filter_value_over_256_characters_is_refused_naming_the_field_and_the_bound():
    """256 characters are taken (a bulk job's ``schema.table`` runs to 255); 257 are a 400."""
    ports = ports_with_notify()
    taken, _ = service.create_subscription(
        ports, ACME, url=HOOK, events=["Job Failed"], filter_={"format": ["csv", "x" * 256]}
    )
    assert taken.filter == {"format": ["csv", "x" * 256]}
    with pytest.raises(InvalidRequest, match="at most 256 characters") as refused:
        service.create_subscription(ports, ACME, url=HOOK, events=["Job Failed"], filter_={"format": ["x" * 257]})
    assert refused.value.details == {"field": "format", "max_length": 256}


def test_a_filter_field_takes_20_values_and_not_21():
    ports = ports_with_notify()
    twenty = ["csv"] + [f"v{i}" for i in range(19)]
    taken, _ = service.create_subscription(ports, ACME, url=HOOK, events=["Job Failed"], filter_={"format": twenty})
    assert taken.filter == {"format": twenty}
    with pytest.raises(InvalidRequest, match="1 to 20"):
        service.create_subscription(ports, ACME, url=HOOK, events=["Job Failed"], filter_={"format": [*twenty, "v19"]})


def test_a_tenant_at_its_limit_is_refused_naming_the_limit():
    ports = ports_with_notify(webhook_max_subscriptions=2)
    subscribe(ports)
    subscribe(ports)
    with pytest.raises(Conflict, match="a tenant may have 2 subscriptions") as refused:
        subscribe(ports)
    assert refused.value.details == {"limit": 2}


def _lagging(monkeypatch, store, replica):
    """``store``'s tenant listing read from a replica holding ``replica`` unless the read asks for consistency (as
    DynamoDB's ConsistentRead); the primary's listing is returned."""
    primary = store.webhooks_for_tenant

    def lagging(tenant_id, *, consistent=False):
        return primary(tenant_id) if consistent else [s for s in replica if s.tenant_id == tenant_id]

    monkeypatch.setattr(store, "webhooks_for_tenant", lagging)
    return primary


def test_the_count_after_a_create_reads_past_a_lagging_replica(monkeypatch):
    """Another request of the tenant stored the subscription that fills its limit a moment ago, and a replica has
    not had it yet: this request's first count, an eventually consistent read, finds room; the count made after its
    own put must be consistent, find the tenant over its limit and take this one back (a 409), else the tenant keeps
    one subscription more than its limit for good."""
    ports = ports_with_notify(webhook_max_subscriptions=2)
    store = ports.notify.subscriptions
    subscribe(ports)
    replica = list(store.webhooks_for_tenant("acme"))  # what a lagging replica holds from here on
    just_made = subscribe(ports)
    primary = _lagging(monkeypatch, store, replica)
    with pytest.raises(Conflict, match="a tenant may have 2 subscriptions") as refused:
        subscribe(ports)
    assert refused.value.details == {"limit": 2}
    assert {s.subscription_id for s in primary("acme")} == {replica[0].subscription_id, just_made.subscription_id}


@pytest.mark.parametrize(
    ("settings", "kept"),
    [
        # README's most: 50 attempts at most 3 h apart, jobs given up after an hour queued: 9 days and 4 hours
        (
            {
                "pending_max_age_seconds": 3600,
                "webhook_max_attempts": 50,
                "webhook_retry_max_delay_seconds": 10800,
                "callback_ttl_seconds": 604800,
            },
            timedelta(days=9, hours=4),
        ),
        # one attempt: the job's longest life (1 h queued, 24 h running, 24 h kept) and a day: 3 days and an hour
        (
            {
                "pending_max_age_seconds": 3600,
                "webhook_max_attempts": 1,
                "webhook_retry_max_delay_seconds": 10800,
                "callback_ttl_seconds": 3600,
            },
            timedelta(days=3, hours=1),
        ),
        # a longer callback_ttl_seconds wins
        (
            {
                "pending_max_age_seconds": 3600,
                "webhook_max_attempts": 50,
                "webhook_retry_max_delay_seconds": 10800,
                "callback_ttl_seconds": 30 * 86400,
            },
            timedelta(days=30),
        ),
    ],
)
def test_a_callback_is_kept_past_the_last_delivery_its_job_can_need(settings, kept):
    assert service.callback_life(make_settings(**settings)) == kept


def test_a_listing_token_signed_with_the_binding_written_out_resumes_the_listing():
    """A token is bound to {listing: subscriptions, tenant, limit}: one a deployed function signed so resumes its
    listing after a deploy. A binding renamed or emptied would refuse every token clients hold."""
    ports = ports_with_notify()
    made = sorted(subscribe(ports).subscription_id for _ in range(3))
    token = ports.page_tokens.encode(
        {"subscription_id": made[0]}, bound_to={"listing": "subscriptions", "tenant": "acme", "limit": 2}
    )
    page = service.list_subscriptions(ports, ACME, limit=2, next_token=token)
    assert [s.subscription_id for s in page.subscriptions] == made[1:] and page.next_token is None


def test_a_subscription_deleted_by_another_request_between_its_look_up_and_its_delete_is_not_found(monkeypatch):
    """Two DELETEs at once: the one whose delete finds nothing left is a 404, not a 204 for a delete it did not do."""
    ports = ports_with_notify()
    made = subscribe(ports)
    store = ports.notify.subscriptions
    read = store.get

    def read_then_deleted(tenant_id, subscription_id):
        found = read(tenant_id, subscription_id)
        store.delete(tenant_id, subscription_id)  # the other request's delete lands just after this read
        return found

    monkeypatch.setattr(store, "get", read_then_deleted)
    with pytest.raises(NotFound, match=made.subscription_id):
        service.delete_subscription(ports, ACME, made.subscription_id)


def test_a_repeat_within_60_s_of_its_create_is_counted_and_one_later_answered_as_it_is(monkeypatch):
    """Up to 60 s after its create (the API's 30 s Timeout and a margin) the creating request may still withdraw
    the subscription: a repeat then counts the tenant's subscriptions, and over its limit is told to retry. From 60 s
    and 1 us on, the creator has ended: the repeat is answered the subscription, over the limit or not."""
    ports = ports_with_notify(webhook_max_subscriptions=1)
    store = ports.notify.subscriptions
    t0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    monkeypatch.setattr(service, "utcnow", lambda: t0)
    first, _ = service.create_subscription(ports, ACME, url=HOOK, events=["Job Completed"], idempotency_key="k1")
    store.create(first.model_copy(update={"subscription_id": "sub_other"}))  # another request's, over the limit
    monkeypatch.setattr(service, "utcnow", lambda: t0 + timedelta(seconds=60))
    with pytest.raises(Conflict, match="retry"):
        service.create_subscription(ports, ACME, url=HOOK, events=["Job Completed"], idempotency_key="k1")
    monkeypatch.setattr(service, "utcnow", lambda: t0 + timedelta(seconds=60, microseconds=1))
    again, created = service.create_subscription(ports, ACME, url=HOOK, events=["Job Completed"], idempotency_key="k1")
    assert not created and again == first and again.secret == first.secret


def test_a_function_without_notification_resources_says_which_setting_it_lacks():
    """A function deployed without SUBSCRIPTIONS_TABLE names it, rather than failing on a None deep inside a call."""
    ports = make_ports(notify=None)
    with pytest.raises(RuntimeError, match="SUBSCRIPTIONS_TABLE is not set"):
        service.list_subscriptions(ports, ACME, limit=10, next_token=None)
    with pytest.raises(RuntimeError, match="SUBSCRIPTIONS_TABLE is not set"):
        service.create_subscription(ports, ACME, url=HOOK, events=["Job Completed"])


def test_a_repeat_counts_past_a_lagging_replica_before_it_is_answered(monkeypatch):
    """A repeat within 60 s of its create is answered only if a consistent count finds the tenant within its limit:
    a replica that has not had another request's subscription yet would answer it, and the tenant kept one more."""
    ports = ports_with_notify(webhook_max_subscriptions=1)
    store = ports.notify.subscriptions
    first, _ = service.create_subscription(ports, ACME, url=HOOK, events=["Job Completed"], idempotency_key="k1")
    replica = list(store.webhooks_for_tenant("acme"))
    store.create(first.model_copy(update={"subscription_id": "sub_other"}))  # another request's, not replicated yet
    primary = _lagging(monkeypatch, store, replica)
    with pytest.raises(Conflict, match="retry"):
        service.create_subscription(ports, ACME, url=HOOK, events=["Job Completed"], idempotency_key="k1")
    assert ("acme", first.subscription_id) not in store.answered  # not marked: its creator may still withdraw it
    assert [s.subscription_id for s in primary("acme")] == sorted([first.subscription_id, "sub_other"])


@pytest.mark.parametrize(("length", "taken"), [(128, True), (129, False)])
def test_a_listing_token_naming_a_subscription_id_of_128_characters_is_taken_and_129_refused(length, taken):
    ports = ports_with_notify()
    after = "sub_" + "z" * (length - 4)
    token = ports.page_tokens.encode(
        {"subscription_id": after}, bound_to={"listing": "subscriptions", "tenant": "acme", "limit": 2}
    )
    if taken:
        assert service.list_subscriptions(ports, ACME, limit=2, next_token=token).subscriptions == []
    else:
        with pytest.raises(InvalidToken):
            service.list_subscriptions(ports, ACME, limit=2, next_token=token)
