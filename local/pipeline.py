"""The project's template wired to a moto server and a Redshift Data API emulator: what ``make run``, the end-to-end
tests and the benchmarks all start, so the three cannot drift apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from local.aws import LocalAws
from local.redshift_data import Emulator
from local.runner import LocalStack

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
CLUSTER_ID = "spectra-local"


def start_pipeline(
    aws: LocalAws,
    emulator: Emulator,
    *,
    api_port: int = 0,
    parameter_overrides: dict[str, Any] | None = None,
    **stack_options: Any,
) -> LocalStack:
    """Provision template.yaml in ``aws`` and run its functions, with the Data API pointed at ``emulator``.

    The functions see only standard variables: ``AWS_ENDPOINT_URL`` (moto) and ``AWS_ENDPOINT_URL_REDSHIFT_DATA``
    (the emulator). X-Ray and CloudWatch metrics have no local endpoint, so Powertools' tracer and metrics are off.
    ``parameter_overrides`` add to (or replace) the local defaults: the cluster name, the dev stage, and webhooks
    allowed to reach receivers on this machine (``WebhookAllowLoopback``: a template parameter, not a code branch).
    """
    return LocalStack.start(
        TEMPLATE,
        aws,
        api_port=api_port,
        extra_env={
            "AWS_ENDPOINT_URL_REDSHIFT_DATA": emulator.endpoint_url,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
        },
        parameter_overrides={
            "RedshiftClusterId": CLUSTER_ID,
            "Stage": "dev",
            "WebhookAllowLoopback": "true",
            **(parameter_overrides or {}),
        },
        **stack_options,
    )
