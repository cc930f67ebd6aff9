"""The limits of one webhook delivery attempt and of what a subscription may hold, found by a review of the fan-out:
one deadline for the whole attempt, URLs that could never be sent, filters too large to store, a disable racing a
success, and the last error outliving the success after it. Sockets here are socket pairs (no network); the real
HTTP(S) side is in tests/integration/notify/test_transport.py."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime

import pytest

from events import ResultFormat
from spectra.errors import InvalidRequest
from spectra.notify import service
from spectra.notify.delivery import Outcome, deliver
from spectra.notify.fanout import plan
from spectra.notify.models import SubscriptionStatus
from spectra.notify.service import MAX_FILTER_BYTES, MAX_FILTER_VALUE_LENGTH, MAX_FILTER_VALUES
from spectra.notify.transport import HttpOutcome, WebhookTransport
from spectra.notify.urls import UrlPolicy, UrlRefused
from spectra.queries import submit_query
from tests.unit.fakes import TEST_DNS, fake_resolver, make_notify, make_ports, make_settings, with_tenants
from tests.unit.test_notify import ACME, T0, ports_with_notify, queued_delivery, sample_event, webhook_record

pytestmark = pytest.mark.unit

# -- one deadline for the whole attempt --------------------------------------------------------------------------


def test_a_name_resolving_to_many_blackholed_addresses_takes_one_deadline_not_one_per_address(monkeypatch):
    """Each address used to get the full timeout: a name with many addresses that never answer a SYN held one
    attempt (and the batch of other tenants' deliveries behind it) for minutes."""
    addresses = [f"52.94.236.{i}" for i in range(1, 11)]
    # a share of 0.1 s each: every sleep's overshoot comes out of the later addresses' shares, and with 20 ms shares
    # a loaded machine's scheduling used up the deadline before the last address had its turn
    transport = WebhookTransport(UrlPolicy(resolver=fake_resolver({"hooks.multi.example": addresses})), timeout=1.0)
    tried: list[str] = []

    def blackhole(address, timeout=None, *args, **kwargs):  # a SYN that is never answered
        tried.append(address[0])
        time.sleep(timeout)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", blackhole)
    started = time.monotonic()
    outcome = transport.post("https://hooks.multi.example/in", b"{}", {})
    elapsed = time.monotonic() - started
    assert outcome.status is None and outcome.error.startswith("timed out after 1s")
    # a timeout per address would take 10 s; the bound leaves room for a loaded machine's scheduling
    assert elapsed < 3.0, f"one attempt took {elapsed:.2f}s with a 1s deadline"
    assert tried == addresses  # the addresses shared the deadline: each had its turn


def test_a_tls_handshake_dripped_byte_by_byte_ends_at_the_deadline(monkeypatch):
    """The handshake had only the socket's per-read timeout: a server sending one byte a little more often than that
    held the attempt as long as it liked. Now the attempt's watchdog shuts the socket mid-handshake."""
    ours, theirs = socket.socketpair()

    def drip():  # a TLS record header announcing 16 KiB, then one byte every 0.1 s (each read is under the timeout)
        try:
            theirs.sendall(b"\x16\x03\x03\x40\x00")
            for _ in range(50):
                time.sleep(0.1)
                theirs.sendall(b"\x02")
        except OSError:
            pass
        finally:
            theirs.close()

    threading.Thread(target=drip, daemon=True).start()
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: ours)
    transport = WebhookTransport(UrlPolicy(resolver=fake_resolver({})), timeout=0.3)
    started = time.monotonic()
    outcome = transport.post("https://52.94.236.7/in", b"{}", {})
    elapsed = time.monotonic() - started
    assert outcome.status is None and outcome.error == "timed out after 0.3s"
    # the drip lasts 5 s; the bound leaves room for a loaded machine's scheduling
    assert elapsed < 2.0, f"one attempt took {elapsed:.2f}s with a 0.3s deadline"


def test_anything_an_attempt_raises_is_a_failed_outcome_not_an_exception(monkeypatch):
    """An exception escaping the transport failed the handler: no failure was recorded on the subscription and the
    message went round until the DLQ. Whatever one attempt meets, it is one failed attempt."""

    def unforeseen(*args, **kwargs):
        raise ValueError("something nobody foresaw")

    monkeypatch.setattr(socket, "create_connection", unforeseen)
    transport = WebhookTransport(UrlPolicy(resolver=fake_resolver(TEST_DNS)), timeout=1)
    outcome = transport.post("https://hooks.acme.example/in", b"{}", {})
    assert outcome == HttpOutcome(None, "failed: ValueError: something nobody foresaw")


# -- URLs that could never be sent -------------------------------------------------------------------------------

UNSENDABLE_URLS = {
    "non-ascii-path": "https://hooks.acme.example/h\u00e4ndler",
    "non-ascii-query": "https://hooks.acme.example/in?name=J\u00fcrgen",
    "space": "https://hooks.acme.example/my hook",
    "tab": "https://hooks.acme.example/in\tx",  # urlsplit drops tabs and newlines: the request would go elsewhere
    "newline": "https://hooks.acme.example/in\r\nX-Injected: 1",
    "nul": "https://hooks.acme.example/in\x00",
    "del": "https://hooks.acme.example/in\x7f",
    "port-0": "https://hooks.acme.example:0/in",  # used to be read as "no port" and delivered to 443
}


@pytest.mark.parametrize("url", UNSENDABLE_URLS.values(), ids=UNSENDABLE_URLS)
def test_a_url_that_could_never_be_sent_is_refused_at_creation(url):
    """``http.client`` refuses these on every attempt (a non-ASCII path even raised out of the handler): the
    tenant hears it at once, as a 400 ``url_refused``, from the subscription and from a query's callback_url."""
    ports = ports_with_notify()
    with pytest.raises(UrlRefused) as refused:
        service.create_subscription(ports, ACME, url=url, events=["Job Completed"])
    assert refused.value.status == 400 and refused.value.code == "url_refused"
    with pytest.raises(UrlRefused):
        submit_query(
            ports, ACME, sql="select 1", parameters=[], fmt=ResultFormat.JSON, callback=service.new_callback(url)
        )
    assert ports.notify.subscriptions.items == {}


def test_a_percent_encoded_url_is_accepted_as_written():
    """The refusal asks for percent-encoding; the URL is then stored and sent as the tenant wrote it."""
    url = "https://hooks.acme.example/h%C3%A4ndler?name=J%C3%BCrgen&x=a%20b"
    created, _ = service.create_subscription(ports_with_notify(), ACME, url=url, events=["Job Completed"])
    endpoint = UrlPolicy(resolver=fake_resolver(TEST_DNS)).endpoint(created.url)
    assert created.url == url and endpoint.target == "/h%C3%A4ndler?name=J%C3%BCrgen&x=a%20b"


def test_a_stored_unsendable_url_is_a_failed_attempt_counted_on_the_subscription():
    """A subscription stored before the refusal existed: its attempts are refused (the URL is checked again before
    each one) and counted like any failure, so it is disabled in time instead of filling the DLQ."""
    ports = ports_with_notify()
    stored = webhook_record("https://hooks.acme.example/h\u00e4ndler")
    ports.notify.subscriptions.create(stored)
    (delivery,) = plan(ports, sample_event()).deliveries
    assert deliver(ports, delivery, now=T0) is Outcome.RETRY_SCHEDULED
    state = ports.notify.subscriptions.get("acme", stored.subscription_id).delivery
    assert state.consecutive_failures == 1 and state.last_error.startswith("refused: the URL's path and query")
    assert ports.notify.transport.posts == []


# -- filters too large to store ----------------------------------------------------------------------------------


def test_a_filter_too_large_for_a_dynamodb_item_is_refused_as_bad_input():
    """~980 KB of filter fits the API's 1 MiB body but not DynamoDB's 400 KB item: the write failed with a 500."""
    ports = ports_with_notify()
    fields = ("status", "state", "operation", "object", "source", "format", "reason")
    huge = {field: ["x" * 7000 + str(i) for i in range(20)] for field in fields}
    with pytest.raises(InvalidRequest) as refused:
        service.create_subscription(
            ports, ACME, url="https://hooks.acme.example/in", events=["Job Completed"], filter_=huge
        )
    assert refused.value.status == 400 and "filter.status" in refused.value.message
    assert ports.notify.subscriptions.items == {}


def test_a_filter_is_bounded_by_its_values_length_and_its_whole_size():
    """Each value is compared with a detail field (at most 255 characters: a bulk job's ``schema.table``), and the
    whole filter is a small part of the subscription's item."""
    ports = ports_with_notify()

    def create(filter_, events=("Job Completed",)):
        return service.create_subscription(
            ports, ACME, url="https://hooks.acme.example/in", events=list(events), filter_=filter_
        )[0]

    with pytest.raises(InvalidRequest, match="at most 256 characters"):
        create({"object": ["a" * (MAX_FILTER_VALUE_LENGTH + 1)]})
    long_values = [f"{i:03}" + "v" * (MAX_FILTER_VALUE_LENGTH - 3) for i in range(MAX_FILTER_VALUES)]
    # the longest table names: 127 characters of schema and of table (an object filter takes table names only)
    long_tables = [f"s{i:02}" + "s" * 124 + "." + "t" * 127 for i in range(MAX_FILTER_VALUES)]
    too_big = {field: long_values for field in ("status", "state", "operation")} | {"object": long_tables}
    assert len(json.dumps(too_big)) > MAX_FILTER_BYTES
    with pytest.raises(InvalidRequest, match="bytes as JSON") as refused:
        create(too_big)
    assert refused.value.details["max_size"] == MAX_FILTER_BYTES
    at_the_limits = {"object": long_tables, "operation": ["upsert", "insert"]}
    assert create(at_the_limits, events=["Bulk Job Completed"]).filter == at_the_limits


# -- disabling and the delivery state ----------------------------------------------------------------------------


def test_a_success_between_the_last_failure_and_the_disable_keeps_the_subscription_active():
    """record_failure returns the count that reached the threshold; a concurrent delivery to the same endpoint then
    succeeds and resets it. The disable must not act on the stale count: the endpoint works, this attempt is
    retried as any other failure."""
    ports = with_tenants(
        make_ports(
            settings=make_settings(webhook_disable_after_failures=3, webhook_disable_after_seconds=0),
            notify=make_notify(),
        ),
        ACME,
    )
    sub, delivery = queued_delivery(ports)
    store = ports.notify.subscriptions
    for _ in range(2):
        store.record_failure("acme", sub.subscription_id, status=503, error="HTTP 503", at=T0)
    real_disable = store.disable

    def disable_after_a_concurrent_success(*args, **kwargs):
        store.record_success("acme", sub.subscription_id, status=200, at=datetime.now(UTC))
        return real_disable(*args, **kwargs)

    store.disable = disable_after_a_concurrent_success
    ports.notify.transport.answer(HttpOutcome(503, "HTTP 503"))
    assert deliver(ports, delivery, now=T0) is Outcome.RETRY_SCHEDULED
    stored = store.get("acme", sub.subscription_id)
    assert stored.status is SubscriptionStatus.ACTIVE and stored.delivery.consecutive_failures == 0
    assert ports.events.events == []  # no "Subscription Disabled"
    (retry,) = ports.notify.deliveries.take()
    assert retry.delivery.attempt == 2


def test_a_success_clears_last_error():
    """``last_error`` says why the last attempt failed: after a success it told of a failure long past."""
    ports = ports_with_notify()
    sub, delivery = queued_delivery(ports)
    ports.notify.transport.answer(HttpOutcome(500, "HTTP 500 Internal Server Error"), HttpOutcome(200))
    assert deliver(ports, delivery, now=T0) is Outcome.RETRY_SCHEDULED
    assert deliver(ports, delivery, now=T0) is Outcome.DELIVERED
    state = ports.notify.subscriptions.get("acme", sub.subscription_id).delivery
    assert state.last_status == 200 and state.last_error is None and state.failed_attempts == 1
