"""The local stack facade: one call from a SAM template to running functions, queues and an HTTP API."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from local.aws import LocalAws
from local.runner.api_gateway import ApiGateway
from local.runner.functions import EnvironmentPatch, Invocation, LocalFunction, merged_environment
from local.runner.provision import provision
from local.runner.schedules import Schedule
from local.runner.sqs_poller import SqsPoller
from local.runner.state import StackState, attach, load_template
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
        gateway: ApiGateway | None,
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
        receive_visibility_seconds: int | None = None,
        state_file: str | Path | None = None,
    ) -> LocalStack:
        """Provision ``template_path`` in ``aws``, export the functions' environment and start serving.

        The process environment becomes: the functions' merged variables, then ``aws.environment()`` (the endpoint
        and credentials), then ``extra_env`` — later ones win. ``retry_visibility_seconds`` is a local speed-up for
        failed SQS messages (``None``: the queue's own visibility timeout). ``start_pollers=False`` leaves queues
        alone (tests that drive functions with :meth:`invoke`); ``schedule_interval_seconds`` replaces every schedule's
        interval. ``receive_visibility_seconds`` (local only) keeps received messages invisible for that long, renewed
        while their handler runs, so the batches of a killed process come back in seconds rather than after the
        queue's visibility timeout. ``state_file`` records the provisioned resources (:mod:`local.runner.state`) for
        :meth:`attach` in another process.
        """
        template = Template.load(
            template_path, parameter_overrides=parameter_overrides, stack_name=stack_name, region=aws.region
        )
        resources = provision(template, aws)
        if state_file is not None:
            StackState.of(template, aws.endpoint_url, resources, dict(parameter_overrides or {})).save(state_file)
        return cls._launch(
            template,
            aws,
            resources,
            api_port=api_port,
            extra_env=extra_env,
            schedule_interval_seconds=schedule_interval_seconds,
            retry_visibility_seconds=retry_visibility_seconds,
            receive_visibility_seconds=receive_visibility_seconds,
            start_pollers=start_pollers,
            start_schedules=start_schedules,
        )

    @classmethod
    def attach(
        cls,
        state: StackState,
        aws: LocalAws,
        *,
        api_port: int = 0,
        serve_api: bool = True,
        extra_env: Mapping[str, str] | None = None,
        schedule_interval_seconds: float | None = None,
        retry_visibility_seconds: int | None = 2,
        receive_visibility_seconds: int | None = None,
        start_pollers: bool = True,
        start_schedules: bool = True,
    ) -> LocalStack:
        """Run the functions of a stack another process provisioned (its :class:`StackState`), against the same
        moto: nothing is created, every queue, table and bus is the one that process made. ``serve_api=False``
        leaves the API to someone else (only the event sources and schedules run here)."""
        template = load_template(state)
        resources = attach(template, state)
        _check_resources_exist(aws, resources)
        return cls._launch(
            template,
            aws,
            resources,
            api_port=api_port,
            serve_api=serve_api,
            extra_env=extra_env,
            schedule_interval_seconds=schedule_interval_seconds,
            retry_visibility_seconds=retry_visibility_seconds,
            receive_visibility_seconds=receive_visibility_seconds,
            start_pollers=start_pollers,
            start_schedules=start_schedules,
        )

    @classmethod
    def _launch(
        cls,
        template: Template,
        aws: LocalAws,
        resources: dict[str, PhysicalResource],
        *,
        api_port: int,
        extra_env: Mapping[str, str] | None,
        schedule_interval_seconds: float | None,
        retry_visibility_seconds: int | None,
        receive_visibility_seconds: int | None,
        start_pollers: bool,
        start_schedules: bool,
        serve_api: bool = True,
    ) -> LocalStack:
        stack_name = template.resolver.stack_name
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
                functions,
                resources,
                template.resolver,
                aws,
                retry_visibility_seconds=retry_visibility_seconds,
                receive_visibility_seconds=receive_visibility_seconds,
            )
            schedules = build_schedules(
                functions, resources, template.resolver, aws, interval_override=schedule_interval_seconds
            )
            routes = build_routes(functions, resources, template.resolver)
            for function in functions.values():
                function.handler()  # import errors surface now, not on the first message
            gateway = (
                None
                if not serve_api
                else ApiGateway(
                    routes,
                    region=aws.region,
                    account_id=template.resolver.account_id,
                    port=api_port,
                    meter=UsageMeter(aws.client("apigateway")),
                )
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
        if gateway is not None:
            gateway.start()
        for worker in [*stack.pollers, *stack.schedules]:
            worker.start()
        log.info(
            "local stack %s: %d resources, %d functions, API %s",
            stack_name,
            len(resources),
            len(functions),
            stack.api_url if gateway is not None else "not served here",
        )
        return stack

    # -- what is running ------------------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        if self._gateway is None:
            raise TemplateError("this stack does not serve the API (attached with serve_api=False)")
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
        if self._gateway is not None:
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


def _check_resources_exist(aws: LocalAws, resources: dict[str, PhysicalResource]) -> None:
    """Fail clearly when the state names queues this moto does not have (it was restarted, or is another one)."""
    sqs = aws.client("sqs")
    for resource in resources.values():
        if resource.resource_type == "AWS::SQS::Queue" and resource.status == "created":
            try:
                sqs.get_queue_attributes(QueueUrl=resource.physical_id, AttributeNames=["QueueArn"])
            except ClientError as exc:
                raise TemplateError(
                    f"queue {resource.logical_id} of the stack state ({resource.physical_id}) is not in the AWS "
                    f"endpoint {aws.endpoint_url}: {exc}. Was it restarted? Start the stack again."
                ) from None
