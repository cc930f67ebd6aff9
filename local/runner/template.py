"""Load a SAM template and evaluate its intrinsic functions the way CloudFormation would.

The runner never talks to CloudFormation, so it has to do CloudFormation's work itself: read the YAML short tags, pick
parameter values, evaluate conditions, merge SAM ``Globals`` into each function and resolve ``!Ref`` / ``!GetAtt`` /
``!Sub`` against the physical resources it created in moto. Parsing is delegated to cfn-lint's loader (it understands
every short tag and is already a dev dependency); evaluation lives here because cfn-lint only lints, it never resolves.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

DEFAULT_STACK_NAME = "spectra-local"
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account: ARNs built here match the ones moto returns


class TemplateError(Exception):
    """The template cannot be run locally as written (bad syntax, unknown reference, unsupported intrinsic)."""


class _NoValue:
    """``AWS::NoValue``: removes the property (or list item) that evaluates to it."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()

# SAM resource types whose Globals section applies (the section key is the type without the prefix).
_GLOBALS_SECTIONS = {
    "AWS::Serverless::Function": "Function",
    "AWS::Serverless::Api": "Api",
    "AWS::Serverless::HttpApi": "HttpApi",
    "AWS::Serverless::SimpleTable": "SimpleTable",
    "AWS::Serverless::StateMachine": "StateMachine",
}


def _plain(value: Any) -> Any:
    """cfn-lint returns node subclasses carrying line marks; tests and deep copies want plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def load_template_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML or JSON CloudFormation/SAM template into plain Python data (short tags become ``Fn::*``)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        body = cfn_yaml.loads(text, fname=str(path))
    except Exception as exc:  # yaml raises several unrelated types; all mean the same to the caller
        raise TemplateError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(body, Mapping) or "Resources" not in body:
        raise TemplateError(f"{path} is not a CloudFormation template (no Resources section)")
    return _plain(body)


def merge_globals(global_props: Mapping[str, Any], own_props: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals merge: maps merge key by key, lists concatenate (globals first), anything else the resource wins.

    An intrinsic function (``{"Ref": ...}``, ``{"Fn::...": ...}``) counts as a scalar, like in SAM itself.
    """
    merged = copy.deepcopy(dict(global_props))
    for key, value in own_props.items():
        current = merged.get(key)
        if _is_plain_map(current) and _is_plain_map(value):
            merged[key] = merge_globals(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + copy.deepcopy(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _is_plain_map(value: Any) -> bool:
    return isinstance(value, dict) and not _intrinsic_name(value)


def _intrinsic_name(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        (key,) = value
        if key == "Ref" or key == "Condition" or key.startswith("Fn::"):
            return key
    return None


@dataclass
class Template:
    """A parsed template with Globals merged and conditional resources dropped, ready to provision."""

    path: Path
    body: dict[str, Any]
    parameters: dict[str, Any]
    resources: dict[str, dict[str, Any]]
    resolver: Resolver

    @property
    def directory(self) -> Path:
        return self.path.parent

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        parameter_overrides: Mapping[str, Any] | None = None,
        stack_name: str = DEFAULT_STACK_NAME,
        region: str = "us-east-1",
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> Template:
        path = Path(path).resolve()
        body = load_template_file(path)
        parameters = _parameter_values(body.get("Parameters") or {}, parameter_overrides or {})
        resolver = Resolver(
            parameters=parameters,
            pseudo={
                "AWS::AccountId": account_id,
                "AWS::Region": region,
                "AWS::StackName": stack_name,
                "AWS::StackId": f"arn:aws:cloudformation:{region}:{account_id}:stack/{stack_name}/local",
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
                "AWS::NotificationARNs": [],
            },
            conditions=body.get("Conditions") or {},
            mappings=body.get("Mappings") or {},
        )
        globals_ = body.get("Globals") or {}
        resources: dict[str, dict[str, Any]] = {}
        for logical_id, resource in (body.get("Resources") or {}).items():
            if not isinstance(resource, dict) or "Type" not in resource:
                raise TemplateError(f"resource {logical_id} has no Type")
            condition = resource.get("Condition")
            if condition and not resolver.condition(condition):
                continue
            resource = copy.deepcopy(resource)
            section = _GLOBALS_SECTIONS.get(resource["Type"])
            if section and section in globals_:
                resource["Properties"] = merge_globals(globals_[section], resource.get("Properties") or {})
            resource.setdefault("Properties", {})
            resources[logical_id] = resource
        return cls(path=path, body=body, parameters=parameters, resources=resources, resolver=resolver)


def _parameter_values(declared: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(overrides) - set(declared)
    if unknown:
        raise TemplateError(f"parameter overrides for undeclared parameters: {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        spec = spec or {}
        if name in overrides:
            raw = overrides[name]
        elif "Default" in spec:
            raw = spec["Default"]
        else:
            raise TemplateError(f"parameter {name} has no Default and no override")
        kind = str(spec.get("Type", "String"))
        if kind == "CommaDelimitedList" or kind.startswith("List<"):
            value: Any = raw if isinstance(raw, list) else [item.strip() for item in str(raw).split(",")]
        else:
            value = str(raw) if not isinstance(raw, bool) else str(raw).lower()
        allowed = spec.get("AllowedValues")
        if allowed and not isinstance(value, list) and value not in [str(v) for v in allowed]:
            raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")  # CloudFormation matches the whole value
        if pattern and not isinstance(value, list) and not re.fullmatch(str(pattern), value):
            raise TemplateError(f"parameter {name}={value!r} does not match {pattern}")
        if "MaxLength" in spec and not isinstance(value, list) and len(value) > int(spec["MaxLength"]):
            raise TemplateError(f"parameter {name}={value!r} is longer than {spec['MaxLength']}")
        if "MinLength" in spec and not isinstance(value, list) and len(value) < int(spec["MinLength"]):
            raise TemplateError(f"parameter {name}={value!r} is shorter than {spec['MinLength']}")
        if kind == "Number":
            _check_number(name, value, spec)
        values[name] = value
    return values


def _check_number(name: str, value: str, spec: Mapping[str, Any]) -> None:
    """CloudFormation refuses a Number parameter that is not a number or lies outside MinValue / MaxValue."""
    try:
        number = float(value)
    except ValueError:
        raise TemplateError(f"parameter {name}={value!r} is not a number") from None
    if "MinValue" in spec and number < float(spec["MinValue"]):
        raise TemplateError(f"parameter {name}={value} is below its MinValue {spec['MinValue']}")
    if "MaxValue" in spec and number > float(spec["MaxValue"]):
        raise TemplateError(f"parameter {name}={value} is above its MaxValue {spec['MaxValue']}")


@dataclass
class PhysicalResource:
    """What a logical id became: ``Ref`` gives ``physical_id``, ``GetAtt`` reads ``attributes``.

    ``status`` says what the runner did with it: ``created`` in moto, ``recorded`` (exists only in the runner, like
    functions and APIs) or ``skipped`` (no local meaning, like IAM roles). Skipped resources answer any attribute with
    a stable placeholder so that a function's environment may still mention them.
    """

    logical_id: str
    resource_type: str
    physical_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    status: str = "created"

    def attribute(self, name: str) -> Any:
        if name in self.attributes:
            return self.attributes[name]
        if self.status == "skipped":
            service = self.resource_type.split("::")[1].lower() if "::" in self.resource_type else "unknown"
            if name.endswith("Arn"):
                return f"arn:aws:{service}:::{self.physical_id}"
            return self.physical_id
        raise KeyError(name)


_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class Resolver:
    """Evaluates intrinsic functions against parameters, pseudo parameters, conditions, mappings and resources.

    Resources are registered as the provisioner creates them; referencing one that does not exist yet is an error,
    which is how a missing dependency edge shows up instead of a silently wrong value.
    """

    def __init__(
        self,
        *,
        parameters: Mapping[str, Any],
        pseudo: Mapping[str, Any],
        conditions: Mapping[str, Any],
        mappings: Mapping[str, Any],
    ) -> None:
        self.parameters = dict(parameters)
        self.pseudo = dict(pseudo)
        self._condition_defs = dict(conditions)
        self._condition_values: dict[str, bool] = {}
        self.mappings = dict(mappings)
        self.resources: dict[str, PhysicalResource] = {}
        self._functions: dict[str, Callable[[Any], Any]] = {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::If": self._if,
            "Fn::Equals": self._equals,
            "Fn::Not": lambda args: not self._bool(args[0]),
            "Fn::And": lambda args: all(self._bool(a) for a in args),
            "Fn::Or": lambda args: any(self._bool(a) for a in args),
            "Condition": lambda name: self.condition(name),
            "Fn::Select": self._select,
            "Fn::Join": self._join,
            "Fn::Split": self._split,
            "Fn::FindInMap": self._find_in_map,
            "Fn::Base64": lambda arg: base64.b64encode(str(self.resolve(arg)).encode()).decode(),
            "Fn::GetAZs": lambda arg: [f"{self.region}{zone}" for zone in "abc"],
            "Fn::ToJsonString": lambda arg: json.dumps(self.resolve(arg), separators=(",", ":")),
            "Fn::Length": lambda arg: len(self.resolve(arg)),
            "Fn::ImportValue": self._unsupported("Fn::ImportValue (cross-stack exports do not exist locally)"),
            "Fn::Cidr": self._unsupported("Fn::Cidr"),
            "Fn::Transform": self._unsupported("Fn::Transform"),
        }

    @property
    def region(self) -> str:
        return self.pseudo["AWS::Region"]

    @property
    def account_id(self) -> str:
        return self.pseudo["AWS::AccountId"]

    @property
    def stack_name(self) -> str:
        return self.pseudo["AWS::StackName"]

    def register(self, resource: PhysicalResource) -> None:
        self.resources[resource.logical_id] = resource

    def resolve(self, value: Any) -> Any:
        """Return ``value`` with every intrinsic evaluated and every ``AWS::NoValue`` removed."""
        name = _intrinsic_name(value)
        if name is not None:
            return self._functions[name](value[name])
        if isinstance(value, dict):
            resolved = {key: self.resolve(item) for key, item in value.items()}
            return {key: item for key, item in resolved.items() if item is not NO_VALUE}
        if isinstance(value, list):
            return [item for item in (self.resolve(v) for v in value) if item is not NO_VALUE]
        return value

    def condition(self, name: str) -> bool:
        if name not in self._condition_values:
            if name not in self._condition_defs:
                raise TemplateError(f"unknown condition {name}")
            self._condition_values[name] = self._bool(self._condition_defs[name])
        return self._condition_values[name]

    # -- intrinsic functions -------------------------------------------------------------------------------------

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.resources:
            return self.resources[name].physical_id
        logical_id, _, part = name.partition(".")
        api = self.resources.get(logical_id)
        if part == "Stage" and api is not None and api.resource_type == "AWS::Serverless::Api":
            return str(self.resolve(api.properties.get("StageName", "Prod")))  # SAM's reference to the API's stage
        raise TemplateError(f"!Ref {name}: no such parameter or (provisioned) resource")

    def _get_att(self, args: Any) -> Any:
        args = self.resolve(args)
        if isinstance(args, str):
            logical_id, _, attribute = args.partition(".")
        else:
            logical_id, attribute = args[0], args[1]
        resource = self.resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"!GetAtt {logical_id}.{attribute}: no such (provisioned) resource")
        try:
            return resource.attribute(attribute)
        except KeyError:
            raise TemplateError(f"!GetAtt {logical_id}.{attribute}: attribute not available locally") from None

    def _sub(self, args: Any) -> str:
        if isinstance(args, list):
            text, variables = args[0], self.resolve(args[1] if len(args) > 1 else {})
        else:
            text, variables = args, {}

        def substitute(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):  # ${!Literal} escapes a dollar-brace
                return "${" + expression[1:] + "}"
            expression = expression.strip()
            if expression in variables:
                return as_text(variables[expression])
            if "." in expression and expression.split(".", 1)[0] in self.resources:
                return as_text(self._get_att(expression))
            return as_text(self._ref(expression))

        return _SUB_VARIABLE.sub(substitute, text)

    def _if(self, args: list[Any]) -> Any:
        name, when_true, when_false = args
        return self.resolve(when_true if self.condition(name) else when_false)

    def _equals(self, args: list[Any]) -> bool:
        left, right = (self.resolve(a) for a in args)
        return as_text(left) == as_text(right)

    def _bool(self, value: Any) -> bool:
        result = self.resolve(value)
        if isinstance(result, str):
            return result.lower() == "true"
        return bool(result)

    def _select(self, args: list[Any]) -> Any:
        index, items = self.resolve(args[0]), self.resolve(args[1])
        return items[int(index)]

    def _join(self, args: list[Any]) -> str:
        delimiter, items = args[0], self.resolve(args[1])
        return delimiter.join(as_text(item) for item in items)

    def _split(self, args: list[Any]) -> list[str]:
        delimiter, text = args[0], self.resolve(args[1])
        return str(text).split(delimiter)

    def _find_in_map(self, args: list[Any]) -> Any:
        default = None
        if len(args) == 4 and isinstance(args[3], dict) and "DefaultValue" in args[3]:
            default = args[3]["DefaultValue"]
        name, top, second = (self.resolve(a) for a in args[:3])
        try:
            return self.mappings[name][as_text(top)][as_text(second)]
        except KeyError:
            if default is not None:
                return self.resolve(default)
            raise TemplateError(f"!FindInMap [{name}, {top}, {second}]: no such entry") from None

    @staticmethod
    def _unsupported(what: str) -> Callable[[Any], Any]:
        def fail(_args: Any) -> Any:
            raise TemplateError(f"{what} is not supported by the local runner")

        return fail


def as_text(value: Any) -> str:
    """CloudFormation's string coercion: booleans are lower case, numbers print as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | dict):
        raise TemplateError(f"cannot use {value!r} where CloudFormation expects a string")
    return str(value)
