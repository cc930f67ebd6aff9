"""A batch of the webhook delivery queue through the delivery function's handler, on fakes: the POSTs go out side by
side, everything else (reads, writes, metrics, log lines) stays in the handler's thread, and a record that fails
fails alone. The same on the local stack, with real SQS records and HTTP: tests/integration/notify/."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from spectra import logs
from spectra.notify.fanout import plan
from spectra.notify.transport import HttpOutcome
from tests.unit.test_notify import ACME, GLOBEX, ports_with_notify, sample_event, subscribe

pytestmark = pytest.mark.unit

NAMESPACE = "RedshiftSpectra"


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "delivery", 512, "r1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:delivery"


def queued(ports, subscriptions: list[tuple]) -> list[dict]:
    """One SQS record per (caller, url) subscription, each a delivery of its tenant's event (as a failed first
    attempt's retry comes to the delivery function), in that order."""
    for caller, url in subscriptions:
        subscribe(ports, caller=caller, url=url)
    deliveries = [d for tenant in ("acme", "globex") for d in plan(ports, sample_event(tenant_id=tenant)).deliveries]
    assert len(deliveries) == len(subscriptions)
    return [
        {"messageId": f"m{n}", "receiptHandle": f"r{n}", "body": d.model_dump_json(), "eventSource": "aws:sqs"}
        for n, d in enumerate(deliveries)
    ]


@pytest.fixture
def handler(monkeypatch):
    """The delivery function's module, its metrics flushed into stdout under the template's namespace."""
    from consumers.notifier import delivery as app

    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE)  # the template's Globals
    monkeypatch.setattr(app.metrics, "namespace", NAMESPACE)
    return app


def emitted(out: str, metric: str) -> float:
    lines = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    return sum(v for line in lines for v in line.get(metric, []))


def test_the_posts_of_a_batch_are_in_flight_at_once_and_the_rest_stays_in_the_handlers_thread(
    handler, monkeypatch, capsys, caplog
):
    """Found by the hostile-tenant review: a batch's deliveries were sent one after another, so one tenant's receivers
    that time out (10 s each) held every other tenant's delivery queued behind them in the batch. Each POST here
    waits until all three are under way: sent one after another, the first waits alone and the barrier breaks.
    Handling whole records in threads was tried and reverted (metrics and log keys are per thread on the local
    stack): the writes of the delivery state and the metrics must come from the handler's own thread, and a line
    the transport writes from its thread still names its delivery."""
    ports = ports_with_notify()
    records = queued(
        ports,
        [
            (ACME, "https://hooks.acme.example/a"),
            (ACME, "https://hooks.acme.example/b"),
            (GLOBEX, "https://52.94.236.5/g"),
        ],
    )
    all_under_way = threading.Barrier(len(records), timeout=30)
    transport, store = ports.notify.transport, ports.notify.subscriptions
    post, record_success, add_metric = transport.post, store.record_success, handler.metrics.add_metric
    posted_from, written_from, counted_from = set(), set(), set()

    def post_once_all_are_under_way(url, body, headers):
        posted_from.add(threading.get_ident())
        logging.getLogger("spectra.notify.transport").info("posting to %s", url)
        try:
            all_under_way.wait()
        except threading.BrokenBarrierError:
            return HttpOutcome(None, "the POSTs of the batch were not in flight at once")
        return post(url, body, headers)

    def record_success_noting_the_thread(*args, **kwargs):
        written_from.add(threading.get_ident())
        return record_success(*args, **kwargs)

    def add_metric_noting_the_thread(**kwargs):
        counted_from.add(threading.get_ident())
        return add_metric(**kwargs)

    monkeypatch.setattr(transport, "post", post_once_all_are_under_way)
    monkeypatch.setattr(store, "record_success", record_success_noting_the_thread)
    monkeypatch.setattr(handler.metrics, "add_metric", add_metric_noting_the_thread)
    monkeypatch.setattr(handler, "get_ports", lambda: ports)
    caplog.set_level(logging.INFO, logger="spectra.notify.transport")
    caplog.handler.addFilter(logs.KEYS)  # the keys on each line, as on the function's own handler

    answer = handler.lambda_handler({"Records": records}, Context())

    assert answer == {"batchItemFailures": []}
    assert sorted(p.url for p in transport.posts) == [
        "https://52.94.236.5/g",
        "https://hooks.acme.example/a",
        "https://hooks.acme.example/b",
    ]
    assert len(posted_from) == 3 and threading.get_ident() not in posted_from
    assert written_from == counted_from == {threading.get_ident()}  # the delivery state and metrics: the handler's
    by_subscription = {s.subscription_id: s.url for s in store.items.values()}
    posting = [r for r in caplog.records if r.getMessage().startswith("posting to ")]
    assert len(posting) == 3  # each with the keys of the record it was prepared for, though sent from a thread:
    assert all(r.getMessage() == f"posting to {by_subscription[r.subscription_id]}" for r in posting)
    assert [s.delivery.delivered for s in store.items.values()] == [1, 1, 1]
    assert emitted(capsys.readouterr().out, "WebhookDelivered") == 3  # flushed: added in the handler's thread


def test_a_record_that_cannot_be_prepared_gets_no_post_and_one_that_cannot_be_settled_fails_alone(
    handler, monkeypatch, capsys, caplog
):
    """A record whose message cannot be read, or whose subscription cannot be read, is a failed record and sends
    nothing; one whose settling raises after its POST is a failed record too (its retry sends it again, with the
    same webhook-id: at least once). The other records of the batch are delivered and counted."""
    ports = ports_with_notify()
    records = queued(
        ports,
        [
            (ACME, "https://hooks.acme.example/unread"),
            (ACME, "https://hooks.acme.example/unsettled"),
            (GLOBEX, "https://52.94.236.5/fine"),
        ],
    )
    unread, unsettled, fine = records
    store = ports.notify.subscriptions
    get, record_success = store.get, store.record_success
    by_url = {s.url: s.subscription_id for s in store.items.values()}

    def get_failing_for_one(tenant_id, subscription_id):
        if subscription_id == by_url["https://hooks.acme.example/unread"]:
            raise RuntimeError("the subscriptions table said no")
        return get(tenant_id, subscription_id)

    def record_success_failing_for_one(tenant_id, subscription_id, **kwargs):
        if subscription_id == by_url["https://hooks.acme.example/unsettled"]:
            raise RuntimeError("the subscriptions table said no again")
        return record_success(tenant_id, subscription_id, **kwargs)

    monkeypatch.setattr(store, "get", get_failing_for_one)
    monkeypatch.setattr(store, "record_success", record_success_failing_for_one)
    monkeypatch.setattr(handler, "get_ports", lambda: ports)
    garbled = {
        "messageId": "m-garbled",
        "receiptHandle": "r",
        "body": '{"not": "a delivery"}',
        "eventSource": "aws:sqs",
    }

    caplog.handler.addFilter(logs.KEYS)  # the record's keys on each line, as on the function's own handler

    answer = handler.lambda_handler({"Records": [garbled, unread, unsettled, fine]}, Context())

    failed = [f["itemIdentifier"] for f in answer["batchItemFailures"]]
    assert failed == ["m-garbled", unread["messageId"], unsettled["messageId"]]
    posted = sorted(p.url for p in ports.notify.transport.posts)
    assert posted == ["https://52.94.236.5/fine", "https://hooks.acme.example/unsettled"]
    lines = [r for r in caplog.records if r.getMessage().startswith("record failed")]
    assert [r.message_id for r in lines] == failed  # one line each, in the record's turn, with its keys
    assert [getattr(r, "tenant_id", None) for r in lines] == [None, "acme", "acme"]
    assert emitted(capsys.readouterr().out, "WebhookDelivered") == 1
    assert fine["messageId"] not in failed
