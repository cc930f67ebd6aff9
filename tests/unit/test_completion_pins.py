"""Completion function behaviour no test held before (found by mutation testing consumers/completion/app.py): the
keys its record's lines carry (the job's id, the statement and its state), the time the status event says the
statement ended handed on to the domain, the invocation's remaining time bounding the work, and StatusEventsIgnored
counted once for an event about no job it can end."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from consumers.completion import app as completion
from spectra import deadline, logs
from tests.unit.fakes import make_ports, metrics_counted, serving

pytestmark = pytest.mark.unit

SAMPLE = Path(__file__).resolve().parents[2] / "events" / "samples" / "redshift_statement_status_change.json"


@pytest.fixture
def ports(monkeypatch):
    yield from serving(monkeypatch, completion, make_ports())


def status_event(statement_name: str = "j_Qm9ZcW1uT3pLd0xZb3FXcA") -> SQSRecord:
    event = json.loads(SAMPLE.read_text())  # FINISHED, at 2026-11-22T10:14:26Z
    event["detail"]["statementName"] = statement_name
    return SQSRecord({"messageId": "m1", "body": json.dumps(event)})


def spy(monkeypatch) -> list[dict]:
    seen = []

    def complete_statement(ports, change, *, ended_at=None):
        seen.append({"keys": logs.current(), "ended_at": ended_at, "left": deadline.left()})

    monkeypatch.setattr(completion, "complete_statement", complete_statement)
    return seen


def test_a_records_lines_carry_the_job_the_statement_and_its_state(ports, monkeypatch):
    seen = spy(monkeypatch)
    completion.record_handler(status_event())
    assert seen[0]["keys"] == {
        "message_id": "m1",
        "job_id": "j_Qm9ZcW1uT3pLd0xZb3FXcA",
        "statement_id": "d2a9c5a4-36b1-4bb2-a8f5-5a8e0b0f6c11",
        "state": "FINISHED",
    }


def test_the_statement_ended_when_its_status_event_says(ports, monkeypatch):
    seen = spy(monkeypatch)
    completion.record_handler(status_event())
    assert seen[0]["ended_at"] == datetime(2026, 11, 22, 10, 14, 26, tzinfo=UTC).timestamp()


def test_the_work_lasts_the_invocations_remaining_time_less_the_margin(ports, monkeypatch):
    """90 s left to the invocation: 80 s for the work, counted down from there."""
    seen = spy(monkeypatch)
    monkeypatch.setattr(deadline, "_clock", lambda: 1000.0)  # time stands still
    context = SimpleNamespace(get_remaining_time_in_millis=lambda: 90_000)
    completion.record_handler(status_event(), context)
    assert seen[0]["left"] == 80.0
    completion.record_handler(status_event(), None)  # called without a context: no bound
    assert seen[1]["left"] is None


def test_an_event_about_no_job_is_counted_ignored_once(ports):
    completion.record_handler(status_event("j_Qm9ZcW1uT3pLd0xZb3FXcA"))
    assert metrics_counted(completion) == {"StatusEventsIgnored": (1, "Count")}


def test_an_event_about_no_bulk_job_is_counted_ignored_once(ports):
    completion.record_handler(status_event("b_Qm9ZcW1uT3pLd0xZb3FXcA"))
    assert metrics_counted(completion) == {"StatusEventsIgnored": (1, "Count")}
