"""A stack whose functions run in a process of their own: this process holds moto and the Data API emulator and
provisions template.yaml once; ``python -m local --functions-only`` (a :class:`FunctionsProcess`) runs every function
against them, and can be killed and started again. The fault tests and the burst benchmark use it.

This process never sets the functions' environment or touches the ``get_settings`` / ``get_ports`` caches: it reads
the stack through ports built here from the state's physical ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from local.aws import LOCAL_CREDENTIALS, LocalAws
from local.demo import Warehouse, add_tenant
from local.functions_process import FunctionsProcess
from local.pipeline import CLUSTER_ID, provision_pipeline
from local.redshift_data import Emulator
from local.runner.state import StackState
from spectra.job_store import JobStore
from spectra.share import UsagePlans
from spectra.tenants import TenantDirectory


@dataclass
class SplitStack:
    aws: LocalAws
    emulator: Emulator
    state: StackState
    functions: FunctionsProcess
    warehouse: Warehouse

    @classmethod
    def provision(
        cls,
        aws: LocalAws,
        emulator: Emulator,
        workdir: str | Path,
        *,
        stack_name: str,
        parameter_overrides: Mapping[str, Any] | None = None,
        function_environment: Mapping[str, str] | None = None,
        schedule_interval: float | None = None,
        receive_visibility: int | None = 5,
    ) -> SplitStack:
        """Create the stack's resources and prepare (not start) its functions process; logs go to
        ``<workdir>/functions.log``."""
        workdir = Path(workdir)
        state_file = workdir / f"{stack_name}.state.json"
        state = provision_pipeline(
            aws, state_file, stack_name=stack_name, parameter_overrides=dict(parameter_overrides or {})
        )
        functions = FunctionsProcess(
            aws_url=aws.endpoint_url,
            aws_services=aws.service_endpoints,
            redshift_url=emulator.endpoint_url,
            state_file=state_file,
            log_path=workdir / "functions.log",
            environment=function_environment,
            schedule_interval=schedule_interval,
            receive_visibility=receive_visibility,
        )
        data_api = boto3.client(
            "redshift-data", endpoint_url=emulator.endpoint_url, region_name=aws.region, **LOCAL_CREDENTIALS
        )
        return cls(
            aws=aws, emulator=emulator, state=state, functions=functions, warehouse=Warehouse(data_api, CLUSTER_ID)
        )

    @property
    def api_url(self) -> str:
        return self.functions.api_url

    def tenants(self) -> TenantDirectory:
        return TenantDirectory(
            self.aws.client("dynamodb"), self.state.output("TenantsTable"), self.state.output("SubscriptionsTable")
        )

    def jobs(self) -> JobStore:
        return JobStore(self.aws.client("dynamodb"), self.state.output("JobsTable"))

    def add_tenant(self, tenant_id: str, **options: Any) -> str:
        """A tenant of this stack (database user, usage-plan key in this stack's plans, record); its API key."""
        plans = UsagePlans.by_name(self.aws.client("apigateway"), [self.state.stack_name])
        return add_tenant(
            self.warehouse, self.tenants(), tenant_id, db_user=f"tenant_{tenant_id}", usage_plans=plans, **options
        )

    def stop(self) -> None:
        self.functions.stop()
