"""Bulk results function behaviour no test held before (found by mutation testing consumers/bulk_results/app.py): the
keys its record's lines carry (the job's and the tenant's ids) and what it counts for the dashboard, one
BulkResultsWritten per job whose files it wrote and one BulkResultsSkipped per request with nothing owed."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from consumers.bulk_results import app
from spectra import logs
from tests.unit.fakes import make_ports, metrics_counted, serving

pytestmark = pytest.mark.unit

BODY = json.dumps({"version": "1", "job_id": "b_pRjygKnCzFyhBtviYhvyAg", "tenant_id": "acme"})


@pytest.fixture
def ports(monkeypatch):
    yield from serving(monkeypatch, app, make_ports())


def test_a_request_for_a_job_owing_nothing_is_counted_skipped(ports):
    """The job is unknown here: nothing to write."""
    app.record_handler(SQSRecord({"messageId": "m1", "body": BODY}))
    assert metrics_counted(app) == {"BulkResultsSkipped": (1, "Count")}


def test_a_job_whose_files_were_written_is_counted_and_its_lines_carry_its_keys(ports, monkeypatch):
    seen = []

    def write_owed_results(ports, message):
        seen.append(logs.current())
        return SimpleNamespace(job_id=message.job_id)

    monkeypatch.setattr(app, "write_owed_results", write_owed_results)
    app.record_handler(SQSRecord({"messageId": "m1", "body": BODY}))
    assert metrics_counted(app) == {"BulkResultsWritten": (1, "Count")}
    assert seen == [{"message_id": "m1", "job_id": "b_pRjygKnCzFyhBtviYhvyAg", "tenant_id": "acme"}]
