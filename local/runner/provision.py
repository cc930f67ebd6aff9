"""Create a template's resources in moto, in dependency order, and record what each logical id became.

CloudFormation orders creation by the references between resources (``Ref``, ``GetAtt``, ``Sub``, ``DependsOn``);
so does this module, and it registers every physical resource with the resolver as soon as it exists so later
properties can refer to it. Resources with no local meaning (IAM, alarms, log groups, KMS, Lambda permissions...) are
skipped with a debug line; they still get a placeholder id so a reference to them resolves instead of crashing.

Functions and APIs are *recorded*, not created: the runner itself plays Lambda and API Gateway. Their names are
settled early (only their name properties count as dependencies), and the rest of their properties are resolved
after everything else exists, which breaks the usual function ↔ API ↔ authorizer reference cycles the same way
CloudFormation's own late binding does.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from local.aws import LocalAws
from local.runner.provisioners import CREATORS
from local.runner.template import PhysicalResource, Resolver, Template, TemplateError

log = logging.getLogger(__name__)

# Resource types the runner plays itself: named now, configured later by functions.py / api_gateway.py.
RECORDED_TYPES = {
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Serverless::Api": "Name",
    "AWS::Serverless::HttpApi": "Name",
}

# Whole services (and single types) that exist only for deployment: permissions, monitoring, encryption, networking.
SKIPPED_PREFIXES = (
    "AWS::IAM::",
    "AWS::CloudWatch::",
    "AWS::Logs::",
    "AWS::KMS::",
    "AWS::Lambda::",
    "AWS::ApiGateway::",
    "AWS::ApiGatewayV2::",
    "AWS::EC2::",
    "AWS::CloudFormation::",
    "AWS::Scheduler::ScheduleGroup",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::S3::BucketPolicy",
    "AWS::Events::EventBusPolicy",
    "AWS::Events::Archive",
    "AWS::Serverless::LayerVersion",
    "AWS::Serverless::Application",
    "AWS::Serverless::StateMachine",
    "AWS::SecretsManager::SecretTargetAttachment",
    "AWS::SecretsManager::RotationSchedule",
    "AWS::SecretsManager::ResourcePolicy",
    "AWS::Redshift::",
    "AWS::RedshiftServerless::",
    "AWS::CodeDeploy::",
    "AWS::XRay::",
)

IMPLICIT_API_ID = "ServerlessRestApi"  # the logical id SAM gives the API it creates for Api events without RestApiId


@dataclass
class ProvisionContext:
    """What a resource creator needs: clients on moto, the resolver, and CloudFormation-style name generation."""

    aws: LocalAws
    resolver: Resolver

    def client(self, service: str):
        return self.aws.client(service)

    @property
    def stack_name(self) -> str:
        return self.resolver.stack_name

    @property
    def region(self) -> str:
        return self.resolver.region

    @property
    def account_id(self) -> str:
        return self.resolver.account_id

    def generated_name(
        self, logical_id: str, *, max_length: int = 64, lowercase: bool = False, suffix: str = ""
    ) -> str:
        """CloudFormation's ``<stack>-<LogicalId>-<RANDOM>`` name, trimmed to the service's limit."""
        random_part = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(12))
        head = f"{self.stack_name}-{logical_id}"
        head = head[: max_length - len(random_part) - len(suffix) - 1]
        name = f"{head}-{random_part}{suffix}"
        return name.lower() if lowercase else name


Creator = Callable[[ProvisionContext, str, dict[str, Any]], PhysicalResource]


def provision(template: Template, aws: LocalAws) -> dict[str, PhysicalResource]:
    """Create every resource of ``template`` in moto; return logical id → physical resource, in creation order."""
    context = ProvisionContext(aws=aws, resolver=template.resolver)
    resources = dict(template.resources)
    if _needs_implicit_api(resources):
        resources[IMPLICIT_API_ID] = {"Type": "AWS::Serverless::Api", "Properties": {"StageName": "Prod"}}
    created: dict[str, PhysicalResource] = {}
    for logical_id in dependency_order(resources, template.resolver):
        resource = resources[logical_id]
        physical = _provision_one(context, logical_id, resource)
        template.resolver.register(physical)
        created[logical_id] = physical
    return created


def _provision_one(context: ProvisionContext, logical_id: str, resource: dict[str, Any]) -> PhysicalResource:
    resource_type = resource["Type"]
    properties = resource.get("Properties") or {}
    if resource_type in RECORDED_TYPES:
        return _record(context, logical_id, resource_type, properties)
    creator = CREATORS.get(resource_type)
    if creator is not None:
        resolved = context.resolver.resolve(properties)
        physical = creator(context, logical_id, resolved)
        log.debug("created %s %s as %s", resource_type, logical_id, physical.physical_id)
        return physical
    if resource_type.startswith(SKIPPED_PREFIXES):
        log.debug("skipping %s %s: no local meaning", resource_type, logical_id)
    else:
        log.warning(
            "resource %s has type %s, which the local runner does not support; skipped", logical_id, resource_type
        )
    return PhysicalResource(
        logical_id, resource_type, context.generated_name(logical_id), properties=properties, status="skipped"
    )


def _record(context: ProvisionContext, logical_id: str, resource_type: str, properties: dict) -> PhysicalResource:
    name_property = RECORDED_TYPES[resource_type]
    if resource_type == "AWS::Serverless::Function":
        name = context.resolver.resolve(properties.get(name_property)) or context.generated_name(logical_id)
        arn = f"arn:aws:lambda:{context.region}:{context.account_id}:function:{name}"
        return PhysicalResource(logical_id, resource_type, name, {"Arn": arn}, properties=properties, status="recorded")
    api_id = _api_id(context.stack_name, logical_id)
    attributes = {"RootResourceId": _api_id(api_id, "root")[:6], "ApiId": api_id}
    if resource_type == "AWS::Serverless::HttpApi":
        attributes["ApiEndpoint"] = f"https://{api_id}.execute-api.{context.region}.amazonaws.com"
    return PhysicalResource(logical_id, resource_type, api_id, attributes, properties=properties, status="recorded")


def _api_id(*parts: str) -> str:
    """A stable 10-character API id (lowercase alphanumeric, like API Gateway's) derived from the stack and name."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    alphabet = string.ascii_lowercase + string.digits
    return "".join(alphabet[b % len(alphabet)] for b in digest[:10])


def _needs_implicit_api(resources: dict[str, dict[str, Any]]) -> bool:
    if IMPLICIT_API_ID in resources:
        return False
    for resource in resources.values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") == "Api" and "RestApiId" not in (event.get("Properties") or {}):
                return True
    return False


# -- dependency order ------------------------------------------------------------------------------------------------


def dependency_order(resources: dict[str, dict[str, Any]], resolver: Resolver) -> list[str]:
    """Topological order of ``resources`` (template order among equals); a cycle is a template error."""
    edges = {lid: set(_dependencies(lid, res, resources, resolver)) for lid, res in resources.items()}
    order: list[str] = []
    done: set[str] = set()
    pending = list(resources)
    while pending:
        ready = [lid for lid in pending if edges[lid] <= done]
        if not ready:
            raise TemplateError(f"circular dependency between resources: {sorted(pending)}")
        for lid in ready:
            order.append(lid)
            done.add(lid)
        pending = [lid for lid in pending if lid not in done]
    return order


def _dependencies(logical_id: str, resource: dict, resources: dict, resolver: Resolver) -> Iterable[str]:
    resource_type = resource["Type"]
    properties = resource.get("Properties") or {}
    if resource_type in RECORDED_TYPES:
        scanned: Any = properties.get(RECORDED_TYPES[resource_type])
    elif resource_type in CREATORS:
        scanned = properties
    else:
        return []  # skipped: its properties are never resolved
    depends_on = resource.get("DependsOn") or []
    if isinstance(depends_on, str):
        depends_on = [depends_on]
    names = set(references(scanned)) | {d for d in depends_on if resources.get(d, {}).get("Type") in CREATORS}
    names.discard(logical_id)
    return [name for name in names if name in resources]


_SUB_NAME = re.compile(r"\$\{([^!}][^}]*)\}")


def references(value: Any) -> Iterable[str]:
    """Logical ids (or parameter names) that ``value`` mentions through Ref, GetAtt or Sub."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" and isinstance(arg, str):
                yield arg.split(".", 1)[0]  # SAM's ``!Ref Api.Stage`` depends on ``Api``
                return
            if key == "Fn::GetAtt":
                yield (arg.split(".", 1)[0] if isinstance(arg, str) else arg[0])
                return
            if key == "Fn::Sub":
                text, variables = (arg[0], arg[1] if len(arg) > 1 else {}) if isinstance(arg, list) else (arg, {})
                for name in _SUB_NAME.findall(text):
                    name = name.strip().split(".", 1)[0]
                    if name not in variables:
                        yield name
                yield from references(variables)
                return
        for item in value.values():
            yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)
