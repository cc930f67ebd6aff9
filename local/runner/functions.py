"""The template's functions, run in this process as Lambda would run them.

Each ``AWS::Serverless::Function`` becomes a :class:`LocalFunction`: its handler is imported from its ``CodeUri``
(a folder relative to the template, put on ``sys.path`` like the root of the Lambda deployment package) and invoked
with a realistic :class:`LambdaContext`, so Powertools' ``inject_lambda_context`` and friends behave as in AWS.

Environment. Functions run in threads of one process and ``os.environ`` is process-global, so there is one
environment for all of them: Globals + each function's own ``Environment.Variables``, resolved, merged once at start.
If two functions set the same variable to *different* values the runner refuses to start
(:class:`EnvironmentConflict`): silently picking one would make one of them talk to the wrong resource. The project's
functions share their settings by design (one settings model), so in practice this only catches template mistakes.
Per-function runtime variables (``AWS_LAMBDA_FUNCTION_NAME`` and the like) are *not* exported for the same reason;
read them from the context object instead, which is per invocation.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.runner.template import PhysicalResource, Resolver, TemplateError, as_text

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 3  # Lambda's defaults when the template says nothing
DEFAULT_MEMORY_MB = 128


class EnvironmentConflict(TemplateError):
    """Two functions need different values for one variable, which in-process execution cannot honour."""


class LambdaContext:
    """The context object the Python Lambda runtime passes to a handler, with the same attributes and method."""

    def __init__(self, *, function_name: str, function_arn: str, memory_mb: int, timeout_seconds: float) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function_arn
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class Invocation:
    """One call of a function, kept for tests and benchmarks: what went in, what came out, how long it took."""

    request_id: str
    event: Any
    started_at: float
    duration_ms: float = 0.0
    result: Any = None
    error: str | None = None


@dataclass
class FunctionConfig:
    """The parts of an ``AWS::Serverless::Function`` the runner needs, with intrinsics resolved."""

    logical_id: str
    name: str
    arn: str
    handler: str
    code_root: Path
    runtime: str | None
    timeout_seconds: float
    memory_mb: int
    environment: dict[str, str]
    events: dict[str, dict[str, Any]]


class LocalFunction:
    """A function ready to invoke: imports its handler lazily and keeps a thread-safe invocation log."""

    def __init__(self, config: FunctionConfig, *, keep_invocations: int = 1000) -> None:
        self.config = config
        self._handler: Callable[[Any, Any], Any] | None = None
        self._lock = threading.Lock()
        self._count = 0
        self._log: list[Invocation] = []
        self._keep = keep_invocations

    @property
    def logical_id(self) -> str:
        return self.config.logical_id

    @property
    def invocation_count(self) -> int:
        with self._lock:
            return self._count

    def invocations(self) -> list[Invocation]:
        """The most recent invocations (a copy), oldest first."""
        with self._lock:
            return list(self._log)

    def handler(self) -> Callable[[Any, Any], Any]:
        with self._lock:
            if self._handler is None:
                self._handler = import_handler(self.config.handler, self.config.code_root)
            return self._handler

    def invoke(self, event: Any) -> Any:
        """Call the handler as Lambda would; exceptions propagate to the caller (the event source decides)."""
        handler = self.handler()
        context = LambdaContext(
            function_name=self.config.name,
            function_arn=self.config.arn,
            memory_mb=self.config.memory_mb,
            timeout_seconds=self.config.timeout_seconds,
        )
        record = Invocation(request_id=context.aws_request_id, event=event, started_at=time.time())
        with self._lock:
            self._count += 1
            self._log.append(record)
            del self._log[: -self._keep]
        start = time.perf_counter()
        try:
            record.result = handler(event, context)
            return record.result
        except BaseException as exc:
            record.error = "".join(traceback.format_exception_only(exc)).strip()
            raise
        finally:
            record.duration_ms = (time.perf_counter() - start) * 1000
            if record.duration_ms > self.config.timeout_seconds * 1000:
                # A thread cannot be killed, so the timeout is reported, not enforced.
                log.warning(
                    "%s ran %.0f ms, longer than its Timeout of %ss: it would have timed out on Lambda",
                    self.logical_id,
                    record.duration_ms,
                    self.config.timeout_seconds,
                )


_path_lock = threading.Lock()


def import_handler(handler: str, code_root: Path) -> Callable[[Any, Any], Any]:
    """Import ``pkg.module.func`` with ``code_root`` on ``sys.path``, as Lambda does with the package root."""
    module_name, _, attribute = handler.rpartition(".")
    if not module_name:
        raise TemplateError(f"Handler {handler!r} is not of the form module.function")
    root = str(code_root.resolve())
    with _path_lock:
        if root not in sys.path:
            sys.path.insert(0, root)
    module = importlib.import_module(module_name)
    origin = Path(getattr(module, "__file__", "") or "").resolve()
    if code_root.resolve() not in origin.parents:
        # Two functions with different CodeUris but the same module name cannot share one interpreter.
        raise TemplateError(
            f"Handler {handler!r}: module {module_name} was already imported from {origin}, not from {code_root}"
        )
    function = getattr(module, attribute, None)
    if not callable(function):
        raise TemplateError(f"Handler {handler!r}: {module_name} has no callable {attribute}")
    return function


def function_config(physical: PhysicalResource, resolver: Resolver, template_dir: Path) -> FunctionConfig | None:
    """Resolve a recorded function's properties; ``None`` (with a warning) when it cannot run in-process."""
    props = physical.properties
    if props.get("PackageType") == "Image" or "InlineCode" in props:
        log.warning("function %s: image and inline-code functions do not run locally; skipped", physical.logical_id)
        return None
    runtime = resolver.resolve(props.get("Runtime"))
    if runtime and not str(runtime).startswith("python"):
        log.warning("function %s: runtime %s does not run in this interpreter; skipped", physical.logical_id, runtime)
        return None
    code_uri = resolver.resolve(props.get("CodeUri", "."))
    if not isinstance(code_uri, str):  # {Bucket, Key}: a deployment artefact, nothing to import locally
        log.warning("function %s: CodeUri %r is not a local folder; skipped", physical.logical_id, code_uri)
        return None
    variables = resolver.resolve((props.get("Environment") or {}).get("Variables") or {})
    return FunctionConfig(
        logical_id=physical.logical_id,
        name=physical.physical_id,
        arn=physical.attributes["Arn"],
        handler=resolver.resolve(props["Handler"]),
        code_root=(template_dir / code_uri).resolve(),
        runtime=runtime,
        timeout_seconds=float(resolver.resolve(props.get("Timeout", DEFAULT_TIMEOUT_SECONDS))),
        memory_mb=int(resolver.resolve(props.get("MemorySize", DEFAULT_MEMORY_MB))),
        environment={key: as_text(value) for key, value in variables.items()},
        events=props.get("Events") or {},
    )


def merged_environment(functions: Iterable[FunctionConfig]) -> dict[str, str]:
    """One environment for every function; a variable with two different values is an :class:`EnvironmentConflict`."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for function in functions:
        for key, value in function.environment.items():
            if key in merged and merged[key] != value:
                raise EnvironmentConflict(
                    f"{owner[key]} and {function.logical_id} set {key} to different values "
                    f"({merged[key]!r} vs {value!r}); functions share one process environment locally"
                )
            merged.setdefault(key, value)
            owner.setdefault(key, function.logical_id)
    return merged


@dataclass
class EnvironmentPatch:
    """Applies variables to ``os.environ`` and puts the previous values back on :meth:`restore`."""

    variables: Mapping[str, str]
    _saved: dict[str, str | None] = field(default_factory=dict)

    def apply(self) -> None:
        for key, value in self.variables.items():
            self._saved.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def restore(self) -> None:
        for key, previous in self._saved.items():
            if previous is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = previous
        self._saved.clear()
