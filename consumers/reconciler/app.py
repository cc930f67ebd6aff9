"""Schedule (every minute) → one sweep of the pending jobs: the backstop for lost Data API completion events and
lost queue messages. The sweep's rules live in :mod:`spectra.reconciliation`; this only bounds it in time and
reports what it did."""

from __future__ import annotations

import time

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from spectra import deadline as time_left
from spectra import logs
from spectra.ports import get_ports
from spectra.reconciliation import reconcile

logger = Logger()
logs.install(logger)  # job_id and tenant_id on each job's lines, the domain's included (spectra/logs.py)
tracer = Tracer()
metrics = Metrics()

#: Stop starting new jobs this long before Lambda's timeout: finishing one job can mean writing a large result.
SAFETY_MARGIN_SECONDS = 20.0

_METRICS = {
    "completed": "ReconciledJobs",
    "requeued": "RequeuedJobs",
    "expired": "ExpiredJobs",
    "errors": "ReconcileErrors",
}


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    remaining = context.get_remaining_time_in_millis() / 1000
    deadline = time.monotonic() + max(0.0, remaining - SAFETY_MARGIN_SECONDS)
    with time_left.lasting(remaining):  # a result it collects is cut off in time too (spectra/deadline.py)
        summary = reconcile(get_ports(), deadline=deadline).as_dict()
    for field, name in _METRICS.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=summary[field])
    # 1 for a run that stopped before the end of its pages: throttled by the Data API, or out of its time (query jobs
    # take half of it first, then what the bulk sweep leaves). Runs that keep stopping leave jobs behind: alarmed
    # (template.yaml).
    stopped = summary["throttled"] or summary["out_of_time"]
    metrics.add_metric(name="ReconcileStoppedEarly", unit=MetricUnit.Count, value=int(stopped))
    logger.info("reconciled", extra={"summary": summary})
    return summary
