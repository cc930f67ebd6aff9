"""Every Data API completion event lost: jobs still finish, and announce it, through the scheduled reconciler.

This module runs a stack of its own ("spectra-lost-events") on the session's moto server, with its own Data API
emulator that drops every completion event (``event_drop_rate=1.0``), the reconciler's schedule at 0.5 s and its
threshold at 1 s. Two stacks cannot serve requests at once in one process: the functions read one ``os.environ`` and
share the process-wide ``get_settings`` / ``get_ports`` caches. So while this module runs, the process environment
is this stack's (the session stack sits idle), and the caches are emptied when the stack starts and again after it
stops, when ``LocalStack.stop`` has put the session stack's environment back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import pytest

from local.aws import LocalAws
from local.demo import Warehouse, add_tenant
from local.pipeline import CLUSTER_ID, start_pipeline
from local.redshift_data import EmulatorConfig, start_emulator
from local.runner import LocalStack
from local.subscriber import BusSubscriber
from spectra.ports import get_ports
from spectra.settings import get_settings
from tests.fixtures.redshift import redshift_data_client
from tests.fixtures.stack import ApiClient

pytestmark = pytest.mark.e2e

STACK_NAME = "spectra-lost-events"


def _forget_process_caches() -> None:
    get_settings.cache_clear()
    get_ports.cache_clear()


@pytest.fixture(scope="module")
def lossy_stack(local_aws: LocalAws) -> Iterator[tuple[LocalStack, Warehouse]]:
    emulator = start_emulator(
        EmulatorConfig(aws_endpoint_url=local_aws.endpoint_url, region=local_aws.region, event_drop_rate=1.0)
    )
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("RECONCILE_AFTER_SECONDS", "1")  # the template leaves it to the settings' default
            stack = start_pipeline(
                local_aws,
                emulator,
                stack_name=STACK_NAME,
                schedule_interval_seconds=0.5,
                retry_visibility_seconds=1,
            )
            _forget_process_caches()
            try:
                yield stack, Warehouse(redshift_data_client(emulator.endpoint_url), CLUSTER_ID)
            finally:
                stack.stop()
    finally:
        # after the environment is the session stack's again (the monkeypatch is undone): a background worker
        # that cached settings in between would otherwise keep this module's thresholds
        _forget_process_caches()
        emulator.stop()


@pytest.fixture(scope="module")
def tenant(lossy_stack) -> ApiClient:
    stack, warehouse = lossy_stack
    tenant_id = "t" + uuid.uuid4().hex[:12]
    db_user = f"tenant_{tenant_id}"
    key = add_tenant(warehouse, get_ports().tenants, tenant_id, db_user=db_user)
    return ApiClient(stack.api_url, key, tenant_id, db_user)


@pytest.fixture(scope="module")
def job_events(lossy_stack, local_aws: LocalAws) -> Iterator[Callable[[str, str], dict]]:
    """A subscriber's rule on this stack's bus. Yields ``wait_for(job_id, detail_type)``."""
    stack, _ = lossy_stack
    subscriber = BusSubscriber(local_aws, stack.physical_id("JobEventBus"), name_prefix="lost-sub")
    yield lambda job_id, detail_type: subscriber.wait_for(job_id, detail_type, timeout=20)
    subscriber.close()


def test_jobs_finish_and_announce_it_without_a_single_completion_event(lossy_stack, tenant, job_events):
    stack, warehouse = lossy_stack
    table = f"lost_{tenant.tenant_id}"
    warehouse.run(
        f"CREATE TABLE {table} (id int, item varchar(32))",
        f"INSERT INTO {table} VALUES (1, 'anvil'), (2, 'rocket skates')",
        f'GRANT SELECT ON {table} TO "{tenant.db_user}"',
    )
    ok = tenant.submit(f"select id, item from {table} order by id")["job_id"]
    broken = tenant.submit("select * from no_such_table_lost_events")["job_id"]

    completed = tenant.wait(ok, timeout=20)
    assert completed["status"] == "COMPLETED", completed
    assert completed["row_count"] == 2
    rows = tenant.request("GET", f"/v1/jobs/{ok}/results").json()["rows"]
    assert rows == [[1, "anvil"], [2, "rocket skates"]]
    assert job_events(ok, "Job Completed")["detail"]["row_count"] == 2

    failed = tenant.wait(broken, timeout=20)
    assert failed["status"] == "FAILED", failed
    assert failed["error"]["code"] == "statement_failed"
    assert "no_such_table_lost_events" in failed["error"]["message"]
    assert job_events(broken, "Job Failed")["detail"]["error"] == failed["error"]

    # No event of these jobs reached the completion consumer: the schedule did all of it. (Events of other stacks'
    # statements may: each stack's rule takes every job statement's event on the default bus, and a job an earlier
    # test left running, the session stack's, can end while this module runs.)
    handled = json.dumps([invocation.event for invocation in stack.invocation_log("CompletionFunction")])
    assert ok not in handled and broken not in handled
    assert stack.invocations("ReconcilerFunction") > 0
    assert all(i.error is None for i in stack.invocation_log("ReconcilerFunction"))
