"""The project's template wired to a moto server and a Redshift Data API emulator: what ``make run``, the end-to-end
tests and the benchmarks all start, so the three cannot drift apart."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from local.aws import LocalAws
from local.redshift_data import Emulator
from local.runner import LocalStack
from local.runner.state import StackState

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
CLUSTER_ID = "spectra-local"


def local_parameters(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The template parameters of every local stack: the cluster name, the dev stage, webhooks allowed to reach
    receivers on this machine (``WebhookAllowLoopback``: a template parameter, not a code branch), and each tenant's
    cap on one-call queries waiting sized to the local API's ten environments (``TenantMaxWaits`` 4: a tenant at its
    cap leaves six to the others; on AWS the default 20 is sized to Lambda's 1,000), then ``overrides``."""
    return {
        "RedshiftClusterId": CLUSTER_ID,
        "Stage": "dev",
        "WebhookAllowLoopback": "true",
        "TenantMaxWaits": LOCAL_TENANT_MAX_WAITS,
        **(overrides or {}),
    }


#: The local stack's TenantMaxWaits (see local_parameters).
LOCAL_TENANT_MAX_WAITS = "4"


def function_environment(redshift_url: str) -> dict[str, str]:
    """What the functions see beside the template's variables: the Data API endpoint, and Powertools' tracer and
    metrics off (X-Ray and CloudWatch have no local endpoint; ``SPECTRA_FUNCTION_METRICS=1`` keeps the metrics, which
    then print as CloudWatch embedded-metric JSON lines, as on Lambda); ``SPECTRA_FUNCTION_LOG_LEVEL`` sets the
    functions' log level."""
    metrics_on = os.environ.get("SPECTRA_FUNCTION_METRICS", "") not in ("", "0")
    environment = {
        "AWS_ENDPOINT_URL_REDSHIFT_DATA": redshift_url,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "false" if metrics_on else "true",
    }
    if os.environ.get("SPECTRA_FUNCTION_LOG_LEVEL"):  # beats the template's LogLevel, as make run's banner says
        environment["POWERTOOLS_LOG_LEVEL"] = os.environ["SPECTRA_FUNCTION_LOG_LEVEL"]
    return environment


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
        extra_env=function_environment(emulator.endpoint_url),
        parameter_overrides=local_parameters(parameter_overrides),
        **stack_options,
    )


def provision_pipeline(
    aws: LocalAws,
    state_file: str | Path,
    *,
    stack_name: str,
    parameter_overrides: dict[str, Any] | None = None,
) -> StackState:
    """Create template.yaml's resources in ``aws`` and write their state, without running anything: the functions
    run in another process (``python -m local --functions-only``), which a test may kill and start again."""
    from local.runner.provision import provision
    from local.runner.template import Template

    overrides = local_parameters(parameter_overrides)
    template = Template.load(TEMPLATE, parameter_overrides=overrides, stack_name=stack_name, region=aws.region)
    resources = provision(template, aws)
    state = StackState.of(template, aws.endpoint_url, resources, overrides)
    state.save(state_file)
    return state


def attach_pipeline(
    aws: LocalAws, redshift_url: str, state: StackState, *, api_port: int = 0, **stack_options: Any
) -> LocalStack:
    """Run template.yaml's functions against a stack another process provisioned (``state``), with the Data API at
    ``redshift_url``: what ``python -m local --functions-only`` starts."""
    return LocalStack.attach(
        state, aws, api_port=api_port, extra_env=function_environment(redshift_url), **stack_options
    )
