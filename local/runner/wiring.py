"""Turn a provisioned template into running parts: functions, SQS pollers, schedules and the API gateway.

Kept apart from the facade so each SAM event type's translation (properties → runtime object) reads in one place.
Event types the design does not use locally (EventBridgeRule, CloudWatchEvent, S3, SNS, HttpApi... targeting a function
directly) are reported with a warning: the project routes all of those through queues.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from local.aws import LocalAws
from local.runner.api_gateway import INTEGRATION_TIMEOUT_SECONDS, RestApi, Route
from local.runner.authorizers import LambdaAuthorizer
from local.runner.functions import LocalFunction, function_config
from local.runner.provision import IMPLICIT_API_ID
from local.runner.schedules import Schedule, interval_seconds
from local.runner.sqs_poller import SqsPoller
from local.runner.template import PhysicalResource, Resolver, TemplateError

log = logging.getLogger(__name__)


def build_functions(
    resources: dict[str, PhysicalResource], resolver: Resolver, template_dir: Path
) -> dict[str, LocalFunction]:
    functions = {}
    for logical_id, physical in resources.items():
        if physical.resource_type != "AWS::Serverless::Function":
            continue
        config = function_config(physical, resolver, template_dir)
        if config is not None:
            functions[logical_id] = LocalFunction(config)
    return functions


def _events(function: LocalFunction, resolver: Resolver, *types: str):
    for name, event in function.config.events.items():
        if event.get("Type") in types:
            yield name, event["Type"], resolver.resolve(event.get("Properties") or {})


def warn_unsupported_events(functions: dict[str, LocalFunction]) -> None:
    supported = {"SQS", "Schedule", "ScheduleV2", "Api"}
    for function in functions.values():
        for name, event in function.config.events.items():
            if event.get("Type") not in supported:
                log.warning(
                    "function %s: event %s of type %s is not run locally (route it through an SQS queue)",
                    function.logical_id,
                    name,
                    event.get("Type"),
                )


# -- SQS -------------------------------------------------------------------------------------------------------------


def build_pollers(
    functions: dict[str, LocalFunction],
    resources: dict[str, PhysicalResource],
    resolver: Resolver,
    aws: LocalAws,
    *,
    retry_visibility_seconds: int | None,
    receive_visibility_seconds: int | None = None,
) -> list[SqsPoller]:
    queue_urls = {
        r.attributes["Arn"]: r.physical_id for r in resources.values() if r.resource_type == "AWS::SQS::Queue"
    }
    pollers = []
    for function in functions.values():
        for name, _type, props in _events(function, resolver, "SQS"):
            if str(props.get("Enabled", True)).lower() == "false":
                continue
            queue_arn = props["Queue"]
            queue_url = queue_urls.get(queue_arn)
            sqs = aws.client("sqs")
            if queue_url is None:  # a queue from outside the template: find it by name
                queue_url = sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"]
            concurrency = sqs_concurrency(props, function)
            for index in range(concurrency):
                pollers.append(
                    SqsPoller(
                        name=f"{function.logical_id}.{name}" + (f"#{index + 1}" if concurrency > 1 else ""),
                        function=function,
                        sqs_client=sqs,
                        queue_url=queue_url,
                        queue_arn=queue_arn,
                        region=resolver.region,
                        batch_size=int(props.get("BatchSize", 10)),
                        batching_window_seconds=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                        report_batch_item_failures="ReportBatchItemFailures"
                        in (props.get("FunctionResponseTypes") or []),
                        retry_visibility_seconds=retry_visibility_seconds,
                        receive_visibility_seconds=receive_visibility_seconds,
                    )
                )
    return pollers


#: Batches at once for an SQS mapping without ``ScalingConfig.MaximumConcurrency`` (Lambda starts such a mapping at
#: five and adds up to 300 a minute while the queue has messages; a laptop stops much sooner). Two by default: the
#: stack of ``make run`` and of the tests runs its functions in one process with moto, the emulator and the tests'
#: own clients, all under one interpreter lock, and there five made every flood job's completion take CPU from the
#: rest (the flooding-tenant test's neighbour missed its 10 s in full runs; it meets it at two).
#: ``SPECTRA_LOCAL_SQS_CONCURRENCY`` sets it otherwise: the burst benchmark runs the functions in a process of their
#: own beside moto in its own, at five, where the completion consumer no longer makes a finished job's slot wait for
#: one of two pollers (it drained 8 jobs/s at two and 12 at five, 300 jobs on the same machine minutes apart).
DEFAULT_SQS_CONCURRENCY = 2
SQS_CONCURRENCY_VARIABLE = "SPECTRA_LOCAL_SQS_CONCURRENCY"


def sqs_concurrency(props: dict[str, Any], function: LocalFunction) -> int:
    """How many batches of one SQS mapping run at once: ``ScalingConfig.MaximumConcurrency`` if the template sets it,
    else a laptop's bound on Lambda's own scaling (:data:`DEFAULT_SQS_CONCURRENCY`, or
    ``$SPECTRA_LOCAL_SQS_CONCURRENCY``); never past the function's concurrency."""
    scaling = props.get("ScalingConfig") or {}
    default = int(os.environ.get(SQS_CONCURRENCY_VARIABLE) or DEFAULT_SQS_CONCURRENCY)
    wanted = int(scaling.get("MaximumConcurrency", default))
    return max(1, min(wanted, function.concurrency))


# -- schedules -------------------------------------------------------------------------------------------------------


def build_schedules(
    functions: dict[str, LocalFunction],
    resources: dict[str, PhysicalResource],
    resolver: Resolver,
    aws: LocalAws,
    *,
    interval_override: float | None,
) -> list[Schedule]:
    region, account = resolver.region, resolver.account_id
    schedules = []
    for function in functions.values():
        for name, event_type, props in _events(function, resolver, "Schedule", "ScheduleV2"):
            expression = props.get("Schedule") or props.get("ScheduleExpression")
            enabled = str(props.get("Enabled", True)).lower() != "false" and props.get("State", "ENABLED") != "DISABLED"
            if not expression or not enabled:
                continue
            if expression.startswith("at("):
                log.warning("function %s: one-off schedule %s is not run locally", function.logical_id, expression)
                continue
            rule_name = props.get("Name") or f"{resolver.stack_name}-{function.logical_id}{name}"
            if event_type == "ScheduleV2":
                arn = f"arn:aws:scheduler:{region}:{account}:schedule/default/{rule_name}"
            else:
                arn = f"arn:aws:events:{region}:{account}:rule/{rule_name}"
            schedules.append(
                Schedule(
                    name=f"{function.logical_id}.{name}",
                    interval=interval_override or interval_seconds(expression),
                    fire=function.invoke,
                    rule_arn=arn,
                    account_id=account,
                    region=region,
                    custom_input=_input(props.get("Input")),
                )
            )
    schedules.extend(_scheduled_rules(resources, resolver, aws, interval_override))
    return schedules


def _input(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _scheduled_rules(
    resources: dict[str, PhysicalResource], resolver: Resolver, aws: LocalAws, interval_override: float | None
) -> list[Schedule]:
    """``AWS::Events::Rule`` with a ScheduleExpression: moto never fires those, so deliver to their SQS targets here."""
    queue_urls = {
        r.attributes["Arn"]: r.physical_id for r in resources.values() if r.resource_type == "AWS::SQS::Queue"
    }
    schedules = []
    for physical in resources.values():
        props = physical.properties
        if physical.resource_type != "AWS::Events::Rule" or not props.get("ScheduleExpression"):
            continue
        if props.get("State", "ENABLED") != "ENABLED":
            continue
        targets = [(queue_urls.get(t["Arn"]), t.get("Input")) for t in props.get("Targets", [])]
        targets = [(url, custom) for url, custom in targets if url]
        if not targets:
            continue
        sqs = aws.client("sqs")

        def fire(event: Any, targets=targets, sqs=sqs) -> None:
            for url, custom in targets:
                sqs.send_message(QueueUrl=url, MessageBody=custom if custom is not None else json.dumps(event))

        schedules.append(
            Schedule(
                name=physical.logical_id,
                interval=interval_override or interval_seconds(props["ScheduleExpression"]),
                fire=fire,
                rule_arn=physical.attributes["Arn"],
                account_id=resolver.account_id,
                region=resolver.region,
            )
        )
    return schedules


# -- API -------------------------------------------------------------------------------------------------------------


def build_routes(
    functions: dict[str, LocalFunction], resources: dict[str, PhysicalResource], resolver: Resolver
) -> list[Route]:
    by_arn = {f.config.arn: f for f in functions.values()}
    apis: dict[str, RestApi] = {}  # api id (what RestApiId resolves to) → api
    for physical in resources.values():
        if physical.resource_type == "AWS::Serverless::Api":
            apis[physical.physical_id] = _rest_api(physical, resolver, by_arn)
        elif physical.resource_type == "AWS::Serverless::HttpApi":
            log.warning("HttpApi %s is recorded but not served locally (REST Api events only)", physical.logical_id)
    implicit = resources.get(IMPLICIT_API_ID)
    routes = []
    for function in functions.values():
        for name, _type, props in _events(function, resolver, "Api"):
            api_id = props.get("RestApiId") or (implicit.physical_id if implicit else None)
            api = apis.get(api_id)
            if api is None:
                raise TemplateError(f"function {function.logical_id}: event {name} refers to an unknown RestApiId")
            auth = props.get("Auth") or {}
            authorizer = auth.get("Authorizer", api.default_authorizer)
            if authorizer in ("NONE", "AWS_IAM"):
                if authorizer == "AWS_IAM":
                    log.warning("route %s %s: AWS_IAM auth is not checked locally", props["Method"], props["Path"])
                authorizer = None
            method = str(props["Method"]).upper()
            key_required = str(auth.get("ApiKeyRequired", api.api_key_required)).lower() == "true"
            timeout = float(props.get("TimeoutInMillis", INTEGRATION_TIMEOUT_SECONDS * 1000)) / 1000
            routes.append(
                Route(
                    api,
                    props["Path"],
                    method,
                    function,
                    authorizer,
                    api_key_required=key_required,
                    timeout_seconds=timeout,
                )
            )
    _check_overlaps(routes)
    return routes


def _check_overlaps(routes: list[Route]) -> None:
    seen: dict[tuple[str, str], Route] = {}
    for route in routes:
        key = ("/".join("{}" if s.startswith("{") else s for s in route.segments), route.method)
        if key in seen and seen[key].api is not route.api:
            log.warning("route %s %s is declared by two APIs; the first one wins locally", route.method, route.path)
        seen.setdefault(key, route)


def _rest_api(physical: PhysicalResource, resolver: Resolver, by_arn: dict[str, LocalFunction]) -> RestApi:
    props = resolver.resolve(physical.properties)
    auth = props.get("Auth") or {}
    authorizers = {}
    for name, spec in (auth.get("Authorizers") or {}).items():
        if "FunctionArn" not in spec:
            log.warning(
                "API %s: authorizer %s is not a Lambda authorizer; requests pass unchecked", physical.logical_id, name
            )
            continue
        function = by_arn.get(spec["FunctionArn"])
        if function is None:
            log.warning("API %s: authorizer %s has no local function", physical.logical_id, name)
        authorizers[name] = LambdaAuthorizer(
            name=name,
            function=function,
            payload_type=spec.get("FunctionPayloadType", "TOKEN"),
            identity=spec.get("Identity"),
        )
    default = auth.get("DefaultAuthorizer")
    if default == "AWS_IAM" or (default and default not in authorizers):
        log.warning("API %s: default authorizer %s is not checked locally", physical.logical_id, default)
        default = None
    return RestApi(
        logical_id=physical.logical_id,
        api_id=physical.physical_id,
        stage=str(props.get("StageName", "Prod")),
        authorizers=authorizers,
        default_authorizer=default,
        authorize_preflight=str(auth.get("AddDefaultAuthorizerToCorsPreflight", True)).lower() != "false",
        cors=_cors_headers(props.get("Cors")),
        binary_media_types=list(props.get("BinaryMediaTypes") or []),
        gateway_responses=dict(props.get("GatewayResponses") or {}),
        api_key_required=str(auth.get("ApiKeyRequired", False)).lower() == "true",
        api_key_source=str(props.get("ApiKeySourceType", "HEADER")),
    )


def _cors_headers(cors: Any) -> dict[str, str] | None:
    """SAM's ``Cors`` (a quoted origin, or a map of quoted values) as preflight response headers."""
    if not cors:
        return None
    if isinstance(cors, str):
        cors = {"AllowOrigin": cors}

    def unquote(value: Any) -> str:
        return str(value).strip().strip("'")

    headers = {"Access-Control-Allow-Origin": unquote(cors.get("AllowOrigin", "'*'"))}
    names = {
        "AllowMethods": "Access-Control-Allow-Methods",
        "AllowHeaders": "Access-Control-Allow-Headers",
        "MaxAge": "Access-Control-Max-Age",
    }
    for key, header in names.items():
        if key in cors:
            headers[header] = unquote(cors[key])
    if str(cors.get("AllowCredentials", False)).lower() == "true":
        headers["Access-Control-Allow-Credentials"] = "true"
    return headers
