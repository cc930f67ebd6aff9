"""The local stack facade: one call from a SAM template to running functions, queues and an HTTP API."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from local.aws import LocalAws
from local.runner.api_gateway import ApiGateway
from local.runner.functions import EnvironmentPatch, Invocation, LocalFunction, merged_environment
from local.runner.provision import provision
from local.runner.schedules import Schedule
from local.runner.sqs_poller import SqsPoller
from local.runner.template import DEFAULT_STACK_NAME, PhysicalResource, Template, TemplateError
from local.runner.usage_plans import UsageMeter
from local.runner.wiring import build_functions, build_pollers, build_routes, build_schedules, warn_unsupported_events

log = logging.getLogger(__name__)


class LocalStack:
    """A SAM template running in this process against moto.

    Start it with :meth:`start` and always :meth:`stop` it (or use it as a context manager): it owns threads, an HTTP
    server and changes to ``os.environ`` that ``stop`` undoes.

    ``api_url`` serves every ``Api`` route at the root and under ``/<stage>/`` (see ``api_gateway.py``).
    """

    def __init__(
        self,
        *,
        template: Template,
        aws: LocalAws,
        resources: dict[str, PhysicalResource],
        functions: dict[str, LocalFunction],
        environment: EnvironmentPatch,
        pollers: list[SqsPoller],
        schedules: list[Schedule],
        gateway: ApiGateway,
    ) -> None:
        self.template = template
        self.aws = aws
        self.resources = resources
        self.functions = functions
        self.pollers = pollers
        self.schedules = schedules
        self._environment = environment
        self._gateway = gateway
        self._stopped = False

    @classmethod
    def start(
        cls,
        template_path: str | Path,
        aws: LocalAws,
        *,
        api_port: int = 0,
        extra_env: Mapping[str, str] | None = None,
        parameter_overrides: Mapping[str, Any] | None = None,
        stack_name: str = DEFAULT_STACK_NAME,
        schedule_interval_seconds: float | None = None,
        retry_visibility_seconds: int | None = 2,
        start_pollers: bool = True,
        start_schedules: bool = True,
    ) -> LocalStack:
        """Provision ``template_path`` in ``aws``, export the functions' environment and start serving.

        The process environment becomes: the functions' merged variables, then ``aws.environment()`` (the endpoint
        and credentials), then ``extra_env`` — later ones win. ``retry_visibility_seconds`` is a local speed-up for
        failed SQS messages (``None``: the queue's own visibility timeout). ``start_pollers=False`` leaves queues
        alone (tests that drive functions with :meth:`invoke`); ``schedule_interval_seconds`` replaces every schedule's
        interval.
        """
        template = Template.load(
            template_path, parameter_overrides=parameter_overrides, stack_name=stack_name, region=aws.region
        )
        resources = provision(template, aws)
        functions = build_functions(resources, template.resolver, template.directory)
        warn_unsupported_events(functions)
        variables = {
            **merged_environment(f.config for f in functions.values()),
            **aws.environment(),
            **(extra_env or {}),
        }
        environment = EnvironmentPatch(variables)
        environment.apply()
        try:
            pollers = build_pollers(
                functions, resources, template.resolver, aws, retry_visibility_seconds=retry_visibility_seconds
            )
            schedules = build_schedules(
                functions, resources, template.resolver, aws, interval_override=schedule_interval_seconds
            )
            routes = build_routes(functions, resources, template.resolver)
            for function in functions.values():
                function.handler()  # import errors surface now, not on the first message
            gateway = ApiGateway(
                routes,
                region=aws.region,
                account_id=template.resolver.account_id,
                port=api_port,
                meter=UsageMeter(aws.client("apigateway")),
            )
        except BaseException:
            environment.restore()
            raise
        stack = cls(
            template=template,
            aws=aws,
            resources=resources,
            functions=functions,
            environment=environment,
            pollers=pollers if start_pollers else [],
            schedules=schedules if start_schedules else [],
            gateway=gateway,
        )
        gateway.start()
        for worker in [*stack.pollers, *stack.schedules]:
            worker.start()
        log.info(
            "local stack %s: %d resources, %d functions, API %s",
            stack_name,
            len(resources),
            len(functions),
            stack.api_url,
        )
        return stack

    # -- what is running ------------------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return self._gateway.url

    @property
    def stack_name(self) -> str:
        return self.template.resolver.stack_name

    def physical_id(self, logical_id: str) -> str:
        try:
            return self.resources[logical_id].physical_id
        except KeyError:
            raise TemplateError(f"no resource {logical_id} in the local stack") from None

    def attribute(self, logical_id: str, name: str) -> Any:
        """What ``!GetAtt logical_id.name`` resolved to (queue ARNs, table stream ARNs, function ARNs...)."""
        return self.resources[logical_id].attribute(name)

    def outputs(self) -> dict[str, Any]:
        """The template's Outputs, resolved against the local resources (unresolvable ones are left out)."""
        outputs = {}
        resolver = self.template.resolver
        for name, output in (self.template.body.get("Outputs") or {}).items():
            condition = output.get("Condition")
            if condition and not resolver.condition(condition):
                continue
            try:
                outputs[name] = resolver.resolve(output.get("Value"))
            except TemplateError as exc:
                log.debug("output %s not available locally: %s", name, exc)
        return outputs

    def function(self, logical_id: str) -> LocalFunction:
        try:
            return self.functions[logical_id]
        except KeyError:
            raise TemplateError(f"no function {logical_id} in the local stack") from None

    def invoke(self, function_logical_id: str, event: Any) -> Any:
        """Invoke a function directly (tests, manual schedules); exceptions propagate."""
        return self.function(function_logical_id).invoke(event)

    def invocations(self, function_logical_id: str) -> int:
        return self.function(function_logical_id).invocation_count

    def invocation_log(self, function_logical_id: str) -> list[Invocation]:
        return self.function(function_logical_id).invocations()

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def stop(self, timeout: float = 10) -> None:
        """Stop pollers, schedules and the HTTP server, wait for them (bounded) and restore ``os.environ``."""
        if self._stopped:
            return
        self._stopped = True
        workers = [*self.pollers, *self.schedules]
        for worker in workers:
            worker.stop()
        deadline = time.monotonic() + timeout
        self._gateway.stop(timeout=max(0.1, deadline - time.monotonic()))
        for worker in workers:
            worker.join(max(0.1, deadline - time.monotonic()))
        stuck = [w.name for w in workers if w.alive]
        if stuck:
            log.warning(
                "local stack: %s still busy after %ss (a handler is running); left as daemon threads", stuck, timeout
            )
        for function in self.functions.values():
            function.close()
        self._environment.restore()

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
