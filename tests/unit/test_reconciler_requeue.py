"""The reconciler: what the mutation review (rv-mutants7) found the suite let change unnoticed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from spectra.jobs import utcnow
from spectra.reconciliation import reconcile
from tests.unit.fakes import make_ports, make_settings
from tests.unit.test_lifecycle import queued

pytestmark = pytest.mark.unit


def test_a_requeued_job_is_not_requeued_again_before_requeue_after():
    """Re-queueing moves the job to the back of the pending index, which also spaces its next re-queue by
    ``requeue_after_seconds`` (300). Mutant R09 (no mark_checked after the send): a QUEUED job whose message was lost
    was queued again on every run (each minute), its executor's message never given the time to arrive."""
    ports = make_ports(settings=make_settings(tenant_cache_seconds=0))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    queued(ports)  # its message was lost
    start = utcnow()
    assert reconcile(ports, now=start + timedelta(minutes=6)).requeued == 1
    later = reconcile(ports, now=start + timedelta(minutes=7))
    assert (later.requeued, len(ports.queue.messages)) == (0, 1)
    assert reconcile(ports, now=start + timedelta(minutes=12)).requeued == 1  # its turn again, 5 minutes on
