"""What a provisioned stack is made of, written down so another process can run its functions without provisioning.

CloudFormation keeps a stack's physical ids in the stack; moto keeps no such record for the runner (it creates each
resource with the service's own API), and provisioning again would create a second set of queues and tables with
new random names. So the process that provisions writes a state file: the template, the stack name, the region,
the parameter values it was loaded with, the moto endpoint, and for every logical id its type, physical id,
attributes and status. :func:`attach` rebuilds the resolver from it: every ``Ref`` and ``GetAtt`` gives what it gave
in the first process, so a second process (``python -m local --functions-only``) polls the same queues and writes
to the same tables, and can be killed and started again against the same state.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from local.runner.provision import IMPLICIT_API_ID, RECORDED_TYPES
from local.runner.template import PhysicalResource, Template, TemplateError

STATE_VERSION = 1


def default_state_file(stack_name: str) -> Path:
    """Where ``python -m local`` writes its state and ``--functions-only`` reads it unless told otherwise:
    ``$SPECTRA_STATE_FILE``, else ``<temp dir>/spectra-local/<stack name>.json``."""
    explicit = os.environ.get("SPECTRA_STATE_FILE")
    if explicit:
        return Path(explicit)
    return Path(tempfile.gettempdir()) / "spectra-local" / f"{stack_name}.json"


@dataclass
class StackState:
    template: str
    stack_name: str
    region: str
    aws_endpoint_url: str
    parameter_overrides: dict[str, Any]
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: int = STATE_VERSION

    @classmethod
    def of(
        cls, template: Template, aws_endpoint_url: str, resources: dict[str, PhysicalResource], overrides: dict
    ) -> StackState:
        return cls(
            template=str(template.path),
            stack_name=template.resolver.stack_name,
            region=template.resolver.region,
            aws_endpoint_url=aws_endpoint_url,
            parameter_overrides={key: value for key, value in overrides.items()},
            resources={
                logical_id: {
                    "type": physical.resource_type,
                    "physical_id": physical.physical_id,
                    "attributes": physical.attributes,
                    "status": physical.status,
                }
                for logical_id, physical in resources.items()
            },
        )

    def save(self, path: str | Path) -> Path:
        """Write atomically (a reader never sees half a file), readable by the owner only: it names every resource."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2, default=str) + "\n", encoding="utf-8")
        temporary.chmod(0o600)
        temporary.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> StackState:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TemplateError(
                f"no stack state at {path}: start the stack first (python -m local), or pass --state"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TemplateError(f"stack state {path} is not JSON: {exc}") from None
        except OSError as exc:  # a directory, a file it may not read
            raise TemplateError(f"stack state {path} cannot be read: {exc.strerror or exc}") from None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            version = data.get("version") if isinstance(data, dict) else None
            raise TemplateError(f"stack state {path} has version {version}, expected {STATE_VERSION}")
        try:
            return cls(**data)
        except TypeError as exc:  # written by hand, or cut short: fields missing or unknown
            raise TemplateError(f"stack state {path} is not a stack's state: {exc}") from None

    def output(self, logical_id: str) -> str:
        """The physical id of ``logical_id`` (what ``!Ref`` gives)."""
        try:
            return self.resources[logical_id]["physical_id"]
        except KeyError:
            raise TemplateError(f"no resource {logical_id} in the stack state of {self.stack_name}") from None


def forget(path: str | Path, aws_endpoint_url: str) -> bool:
    """Remove the state file at ``path`` if it still describes the stack on ``aws_endpoint_url`` (a stack started
    later may have written its own there since): a stopped stack's file sent the admin CLI and ``--functions-only``
    to an endpoint nothing serves any more."""
    path = Path(path)
    try:
        if StackState.load(path).aws_endpoint_url != aws_endpoint_url:
            return False
        path.unlink()
    except (TemplateError, OSError):
        return False
    return True


def load_template(state: StackState) -> Template:
    """The state's template, loaded as the first process loaded it (same stack name, region and parameters)."""
    return Template.load(
        state.template,
        parameter_overrides=state.parameter_overrides,
        stack_name=state.stack_name,
        region=state.region,
    )


def attach(template: Template, state: StackState) -> dict[str, PhysicalResource]:
    """The physical resources of ``state``, registered with ``template``'s resolver as provisioning would have.

    Created resources get their properties resolved (as the provisioner keeps them: rules name their targets by
    ARN); recorded and skipped ones keep the template's own, as provisioning leaves them.
    """
    missing = set(template.resources) - set(state.resources)
    if missing:
        raise TemplateError(
            f"the template has resources the stack state of {state.stack_name} lacks: {sorted(missing)}; "
            "the template changed since the stack was provisioned, so provision it again"
        )
    physical: dict[str, PhysicalResource] = {}
    for logical_id, recorded in state.resources.items():
        resource = PhysicalResource(
            logical_id,
            recorded["type"],
            recorded["physical_id"],
            dict(recorded.get("attributes") or {}),
            status=recorded.get("status", "created"),
        )
        template.resolver.register(resource)
        physical[logical_id] = resource
    for logical_id, resource in physical.items():
        properties = (template.resources.get(logical_id) or {}).get("Properties") or {}
        if logical_id == IMPLICIT_API_ID and not properties:
            properties = {"StageName": "Prod"}  # what provisioning gave the API SAM creates implicitly
        if resource.status == "created" and resource.resource_type not in RECORDED_TYPES:
            properties = template.resolver.resolve(properties)
        resource.properties = properties
    return physical
