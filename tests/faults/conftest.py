"""The fault suite's stack: template.yaml provisioned once in the session's moto, its functions in a process of their
own (``python -m local --functions-only``) that the tests kill and start again, and a Data API emulator of its own
whose completion events can be dropped, whose request rates can be metered and whose warehouse can be taken away
(``emulator.outage``) while it runs.

Settings that make each fault recover in seconds rather than minutes, all local speed-ups of the same code paths:
the reconciler runs every second and looks at a job quiet for 2 s (``RECONCILE_AFTER_SECONDS``) and re-queues one
QUEUED for 15 s (``REQUEUE_AFTER_SECONDS``); a running slot not verified for 6 s may be reclaimed
(``SLOT_LEASE_SECONDS``); a message received by a process that then dies comes back after 4 s (the runner's
``--receive-visibility``); webhook retries wait about 1, 2, 4, 8 s. The functions log at INFO with their metrics on
(embedded-metric JSON lines), all into ``functions.log`` in the module's temporary folder.

The session stack shares moto with this one, and the rule of each routes every ``j_`` statement event of the default
bus to its own completion queue: each stack's consumer ignores the other's jobs (they are not in its table).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from local.aws import LocalAws
from local.redshift_data import Emulator, EmulatorConfig, start_emulator
from local.split_stack import SplitStack
from local.subscriber import BusSubscriber
from tests.fixtures.stack import wait_until

STACK_NAME = "spectra-faults"
FAULT_ENVIRONMENT = {
    "RECONCILE_AFTER_SECONDS": "2",
    "REQUEUE_AFTER_SECONDS": "15",
    "SLOT_LEASE_SECONDS": "6",
    "SPECTRA_FUNCTION_LOG_LEVEL": "INFO",
    "SPECTRA_FUNCTION_METRICS": "1",
}
FAULT_PARAMETERS = {
    "WebhookRetryBaseSeconds": 1,
    "WebhookRetryFactor": 2,
    "WebhookMaxAttempts": 8,
    "WebhookDisableAfterFailures": 50,
}


@pytest.fixture(scope="package")
def fault_emulator(local_aws: LocalAws) -> Iterator[Emulator]:
    """An emulator of the fault suite's own, not the session's ``redshift_emulator``: the cases change its event drop
    rate and its quotas, which no other test should meet."""
    emulator = start_emulator(EmulatorConfig(aws_endpoint_url=local_aws.endpoint_url, region=local_aws.region))
    yield emulator
    emulator.stop()


@pytest.fixture(scope="package")
def fault_stack(local_aws: LocalAws, fault_emulator: Emulator, tmp_path_factory) -> Iterator[SplitStack]:
    stack = SplitStack.provision(
        local_aws,
        fault_emulator,
        tmp_path_factory.mktemp("faults"),
        stack_name=STACK_NAME,
        parameter_overrides=FAULT_PARAMETERS,
        function_environment=FAULT_ENVIRONMENT,
        schedule_interval=1.0,
        receive_visibility=4,
    )
    stack.functions.start()
    yield stack
    stack.stop()


@pytest.fixture
def functions_running(fault_stack: SplitStack) -> SplitStack:
    """The stack with its functions process up (a test before may have left it killed)."""
    if not fault_stack.functions.running:
        fault_stack.functions.start()
    fault_stack.emulator.events.drop_rate = 0.0
    return fault_stack


@pytest.fixture
def bus(functions_running: SplitStack, local_aws: LocalAws) -> Iterator[BusSubscriber]:
    """Every event on the stack's job event bus from now on (test_faults.py, test_outage.py)."""
    subscriber = BusSubscriber(local_aws, functions_running.state.output("JobEventBus"), name_prefix="faults")
    yield subscriber
    subscriber.close()


@dataclass
class Tenant:
    """One tenant of the fault stack, over HTTP."""

    stack: SplitStack
    tenant_id: str
    api_key: str

    def request(self, method: str, path: str, *, retry_while_down: float = 0, **kwargs) -> requests.Response:
        """One request; with ``retry_while_down``, a connection that fails or hangs (the functions process is being
        killed or restarted) or a 5xx (which the API documents as safe to retry) is retried, the same request again,
        for up to that many seconds, as a client with an ``Idempotency-Key`` would."""
        headers = {"Authorization": f"Bearer {self.api_key}", **kwargs.pop("headers", {})}
        deadline = time.monotonic() + retry_while_down
        while True:
            try:
                response = requests.request(method, self.stack.api_url + path, headers=headers, timeout=30, **kwargs)
            except (requests.ConnectionError, requests.Timeout):
                if time.monotonic() > deadline:
                    raise
                wait_until(lambda: _accepts_connections(self.stack.api_url), retry_while_down, "the API to come back")
                continue
            if response.status_code < 500 or time.monotonic() > deadline:
                return response
            time.sleep(0.5)  # a backoff before the retry, not a wait for a state

    def submit(self, sql: str = "select 1 as one", **kwargs) -> str:
        response = self.request("POST", "/v1/queries", json={"sql": sql}, **kwargs)
        assert response.status_code in (200, 202), response.text
        return response.json()["job_id"]

    def subscribe(self, url: str, events=("Job Completed", "Job Failed")) -> dict:
        response = self.request("POST", "/v1/subscriptions", json={"url": url, "events": list(events)})
        assert response.status_code == 201, response.text
        return response.json()


def _accepts_connections(url: str) -> bool:
    try:
        requests.get(url + "/v1/openapi.json", timeout=10)
        return True
    except (requests.ConnectionError, requests.Timeout):
        return False


@pytest.fixture
def fault_tenant(fault_stack: SplitStack):
    def make() -> Tenant:
        tenant_id = "f" + uuid.uuid4().hex[:12]
        return Tenant(fault_stack, tenant_id, fault_stack.add_tenant(tenant_id))

    return make


def log_records(stack: SplitStack) -> list[dict]:
    """The functions' JSON log lines so far (every start of the process), embedded-metric lines included."""
    records = []
    for line in stack.functions.lines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def terminal_states(stack: SplitStack, job_ids) -> dict[str, str]:
    jobs = stack.jobs()
    return {job_id: job.status.value for job_id in job_ids if (job := jobs.get(job_id)) is not None}


def all_terminal(stack: SplitStack, job_ids) -> bool:
    states = terminal_states(stack, job_ids)
    return len(states) == len(job_ids) and all(s in ("COMPLETED", "FAILED", "CANCELLED") for s in states.values())
