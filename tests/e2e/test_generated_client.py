"""A client generated from the served OpenAPI document (openapi-python-client, into the test's tmp dir) calls every
operation of the API on the local stack and reads each answer as the document's model says."""

from __future__ import annotations

import importlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.bulk import csv_bytes
from tests.fixtures.stack import wait_until

pytestmark = pytest.mark.e2e

PACKAGE = "spectra_generated_client"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


class GeneratedClient:
    """The generated package, with each operation found by its method and path (its module names derive from
    operation ids, which are Powertools' to choose)."""

    def __init__(self, root: Path, base_url: str, token: str) -> None:
        sys.path.insert(0, str(root.parent))
        self.package = importlib.import_module(PACKAGE)
        self.models = importlib.import_module(f"{PACKAGE}.models")
        self.types = importlib.import_module(f"{PACKAGE}.types")
        self.client = self.package.AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)
        self.operations: dict[tuple[str, str], str] = {}
        for module in root.glob("api/*/*.py"):
            text = module.read_text()
            method = re.search(r'"method": "(\w+)"', text)
            url = re.search(r'"url": "([^"]+)"', text)
            if method and url:
                name = ".".join(module.relative_to(root.parent).with_suffix("").parts)
                self.operations[(method.group(1).upper(), url.group(1))] = name
        self.called: set[tuple[str, str]] = set()

    def call(self, method: str, path: str, expect: int | tuple[int, ...], **kwargs: Any) -> Any:
        """Call the operation ``method path`` (the document's path template) and return its parsed answer."""
        module = importlib.import_module(self.operations[(method, path)])
        response = module.sync_detailed(client=self.client, **kwargs)
        expected = expect if isinstance(expect, tuple) else (expect,)
        assert response.status_code in expected, (method, path, response.status_code, response.content[:500])
        self.called.add((method, path))
        return response.parsed


@pytest.fixture
def generated(bulk_tenant, tmp_path):
    tenant = bulk_tenant()
    document = requests.get(f"{tenant.api.base_url}/v1/openapi.json", timeout=10).text
    (tmp_path / "openapi.json").write_text(document)
    root = tmp_path / PACKAGE
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # ruff formats it
    run = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(tmp_path / "openapi.json"), "--meta", "none", "--output-path",
         str(root)],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert run.returncode == 0 and root.is_dir(), run.stdout + run.stderr
    client = GeneratedClient(root, tenant.api.base_url, tenant.api.api_key)
    yield tenant, client
    sys.path.remove(str(tmp_path))
    for name in [name for name in sys.modules if name.startswith(PACKAGE)]:
        del sys.modules[name]


def test_a_generated_client_calls_every_operation(generated, webhook_receiver):
    tenant, gen = generated
    m = gen.models
    documented = {
        (method.upper(), path)
        for path, operations in requests.get(f"{tenant.api.base_url}/v1/openapi.json", timeout=10)
        .json()["paths"]
        .items()
        for method in operations
    }
    assert set(gen.operations) == documented  # every operation was generated

    # -- queries and jobs
    request = m.QueryRequest(
        sql="select :n as n, :s as s",
        parameters=[m.TypedParameter(name="n", value=41), m.TypedParameter(name="s", value=None)],
        wait_timeout=25,
    )
    answer = gen.call("POST", "/v1/queries", 200, body=request)
    assert isinstance(answer, m.QueryAnswer) and answer.status == m.JobStatus.COMPLETED
    assert answer.results.rows == [[41, None]]
    job_id = answer.job_id
    assert gen.call("GET", "/v1/jobs/{job_id}", 200, job_id=job_id).row_count == 1
    assert job_id in [job.job_id for job in gen.call("GET", "/v1/jobs", 200).jobs]
    assert gen.call("GET", "/v1/jobs/{job_id}/results", 200, job_id=job_id).rows == [[41, None]]
    slow = gen.call("POST", "/v1/queries", 202, body=m.QueryRequest(sql="select pg_sleep(30)"))
    wait_until(lambda: tenant.api.job(slow.job_id)["status"] == "SUBMITTED", 30, "the slow job to start")
    # 202 while the statement is being stopped; 200 if the warehouse's ABORTED event has ended the job already
    cancelled = gen.call("DELETE", "/v1/jobs/{job_id}", (202, 200), job_id=slow.job_id)
    assert cancelled.cancel_requested is True or cancelled.status == m.JobStatus.CANCELLED

    # -- bulk: an upsert through the API door, then its result files
    created = gen.call(
        "POST",
        "/v1/bulk/jobs",
        201,
        body=m.CreateBulkJob(object_=tenant.table, operation=m.BulkOperation.UPSERT, external_id_field_name="email"),
    )
    bulk_id = created.id
    batch = csv_bytes([["email", "name", "city"], ["bugs@acme.test", "Bugs Bunny", "Burrow"]])
    gen.call(
        "PUT",
        "/v1/bulk/jobs/{job_id}/batches",
        201,
        job_id=bulk_id,
        body=gen.types.File(payload=io.BytesIO(batch), mime_type="application/octet-stream"),
    )
    upload = gen.call("POST", "/v1/bulk/jobs/{job_id}/uploads", 200, job_id=bulk_id, body=m.UploadUrlRequest())
    assert upload.url.startswith("http")
    closed = m.ChangeBulkJobState.from_dict({"state": "UploadComplete"})
    gen.call("PATCH", "/v1/bulk/jobs/{job_id}", 200, job_id=bulk_id, body=closed)
    done = wait_until(
        lambda: (info := gen.call("GET", "/v1/bulk/jobs/{job_id}", 200, job_id=bulk_id)).results_ready and info,
        60,
        "the bulk job to end",
    )
    assert done.state == m.BulkState.JOBCOMPLETE and done.number_records_processed == 1
    loaded = gen.call("GET", "/v1/bulk/jobs/{job_id}/successfulResults", 200, job_id=bulk_id)
    assert "bugs@acme.test" in loaded
    gen.call("GET", "/v1/bulk/jobs/{job_id}/failedResults", 200, job_id=bulk_id)
    gen.call("GET", "/v1/bulk/jobs/{job_id}/unprocessedrecords", 200, job_id=bulk_id)
    gen.call("GET", "/v1/bulk/jobs/{job_id}/unprocessedRecords", 200, job_id=bulk_id)
    assert bulk_id in [record.id for record in gen.call("GET", "/v1/bulk/jobs", 200).records]
    export = gen.call(
        "POST",
        "/v1/bulk/jobs",
        201,
        body=m.CreateBulkJob(operation=m.BulkOperation.QUERY, query=f"select email from {tenant.table}"),
    )
    wait_until(
        lambda: gen.call("GET", "/v1/bulk/jobs/{job_id}", 200, job_id=export.id).state == m.BulkState.JOBCOMPLETE,
        60,
        "the export to end",
    )
    assert "bugs@acme.test" in gen.call("GET", "/v1/bulk/jobs/{job_id}/results", 200, job_id=export.id)
    drop = gen.call("POST", "/v1/bulk/uploads", 200, body=m.DropUploadRequest(object_=tenant.table))
    assert drop.key.startswith(f"{tenant.tenant_id}/")

    # -- subscriptions
    subscription = gen.call(
        "POST",
        "/v1/subscriptions",
        201,
        body=m.CreateSubscription(
            url=webhook_receiver.url("/hooks/generated"), events=[m.CreateSubscriptionEventsItem.JOB_COMPLETED]
        ),
    )
    assert subscription.secret.startswith("whsec_")
    assert subscription.events == [m.SubscriptionViewEventsItem.JOB_COMPLETED]  # the closed set binds an enum
    path = "/v1/subscriptions/{subscription_id}"
    assert gen.call("GET", path, 200, subscription_id=subscription.id).status == m.SubscriptionStatus.ACTIVE
    assert [s.id for s in gen.call("GET", "/v1/subscriptions", 200).subscriptions] == [subscription.id]
    gen.call("DELETE", path, 204, subscription_id=subscription.id)

    assert gen.called == documented
    assert tenant.api.wait(slow.job_id, timeout=30)["status"] == "CANCELLED"
