"""Query job behaviour no test held before (found by mutation testing spectra/jobs.py): the shape of a job id (README:
``j_`` and 128 random bits, URL-safe), the milliseconds a finished job's event says it took, and that an export,
which no row_limit cuts, is not said to be truncated."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta

import pytest

from events import Delivery, JobStatus, ResultFormat
from spectra import jobs
from spectra.jobs import new_job_id, utcnow
from spectra.lifecycle import complete_statement, execute_job
from tests.unit.fakes import make_ports
from tests.unit.test_lifecycle import COLUMNS, queued

pytestmark = pytest.mark.unit


def _acme_ports():
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    return ports


def test_a_job_id_is_j_and_128_random_bits_in_22_url_safe_characters():
    """README: job ids are ``j_`` + 128 random bits, URL-safe (they double as the Data API's StatementName and
    ClientToken): 22 base64url characters without padding that decode to 16 bytes, none repeated over many ids."""
    ids = [new_job_id() for _ in range(200)]
    for job_id in ids:
        assert re.fullmatch(r"j_[A-Za-z0-9_-]{22}", job_id), job_id
        assert len(base64.urlsafe_b64decode(job_id[2:] + "==")) == 16
    assert len(set(ids)) == 200


def test_a_finished_jobs_event_says_how_long_it_took_in_milliseconds(monkeypatch):
    """A job made 2.345 s before its completion is announced with duration_ms 2345: milliseconds from created_at to
    completed_at, truncated."""
    ports = _acme_ports()
    end = utcnow() + timedelta(seconds=10)
    monkeypatch.setattr(jobs, "utcnow", lambda: end)  # the clock submitted_at and completed_at are stamped by
    begun = end - timedelta(seconds=2, milliseconds=345)
    message = queued(ports)
    ports.jobs.update(message.job_id, [JobStatus.QUEUED], created_at=begun)
    job = execute_job(ports, message)
    done = complete_statement(ports, ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n"]))
    assert (done.created_at, done.completed_at) == (begun, end)
    [event] = ports.events.events
    assert event.detail.duration_ms == 2345


def test_an_export_is_not_said_to_be_truncated():
    """An export's UNLOAD writes every row (a row_limit is refused for it): its job, as the API shows it, and its Job
    Completed event say truncated false, with total_row_count the rows its part holds (its records but the header
    line)."""
    ports = _acme_ports()
    job = execute_job(ports, queued(ports, delivery=Delivery.EXPORT, format=ResultFormat.CSV, parameters=[]))
    bucket = ports.settings.results_bucket
    parts = [{"url": f"s3://{bucket}/acme/{job.job_id}/part-000", "meta": {"content_length": 9, "record_count": 2}}]
    manifest = {"entries": parts, "schema": {"elements": [{"name": "n", "type": {"base": "integer"}}]}}
    ports.bulk.files.client.put_object(
        Bucket=bucket, Key=f"acme/{job.job_id}/part-manifest", Body=json.dumps(manifest).encode()
    )
    done = complete_statement(ports, ports.warehouse.finish(job.statement_id))
    assert done.status is JobStatus.COMPLETED and done.result.delivery is Delivery.EXPORT
    stored = ports.jobs.get(job.job_id).result
    # the part's 2 records are its header line and 1 row (Redshift counts a CSV part's header in record_count)
    assert (stored.truncated, stored.row_count, stored.total_row_count) == (False, 1, 1)
    [event] = ports.events.events
    assert (event.detail.truncated, event.detail.row_count, event.detail.total_row_count) == (False, 1, 1)


def test_a_job_not_yet_ended_has_no_duration():
    """A job still queued or running has no completed_at, and so no duration_ms (None, not an error): the event
    publisher reads it from whatever job it is given."""
    ports = _acme_ports()
    message = queued(ports)
    assert ports.jobs.get(message.job_id).duration_ms is None
    running = execute_job(ports, message)
    assert running.status is JobStatus.SUBMITTED and running.duration_ms is None
