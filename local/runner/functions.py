"""The template's functions, run in this process as Lambda would run them.

Each ``AWS::Serverless::Function`` becomes a :class:`LocalFunction`: its handler is imported from its ``CodeUri``
(a folder relative to the template, put on ``sys.path`` like the root of the Lambda deployment package) and invoked
with a realistic :class:`LambdaContext`, so Powertools' ``inject_lambda_context`` and friends behave as in AWS.

Execution environments. On Lambda one execution environment handles one event at a time, and concurrent events get
environments of their own, each with its own copy of the handler module: module-level objects (a Powertools
resolver's ``current_event``, a ``BatchProcessor``'s batch, anything a handler keeps between lines) are never seen by
two events at once. The runner does the same: each :class:`ExecutionEnvironment` loads its own copy of the handler
module (under a unique module name), an invocation takes an idle environment or creates one, up to the function's
concurrency (``ReservedConcurrentExecutions``, else :data:`DEFAULT_CONCURRENCY`), and otherwise waits for one to
become free. Environments are reused, warm, as Lambda reuses them. What the handler module *imports* is shared by
every environment, as it is inside one Lambda process: the domain library, its cached settings and boto3 clients
(which are thread-safe). Per-request state a library keeps on its own classes is made per thread, so per invocation
(:func:`isolate_library_state`: Powertools' ``BaseRouter.current_event``, the ``Logger``'s keys and the ``Metrics``
metric set).

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
import importlib.util
import itertools
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from local.runner.template import NO_VALUE, PhysicalResource, Resolver, TemplateError, as_text

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 3  # Lambda's defaults when the template says nothing
DEFAULT_MEMORY_MB = 128
#: Concurrent environments of a function without ReservedConcurrentExecutions. Lambda's unreserved pool is far larger;
#: locally every environment is a thread of one process on a laptop, and more than this only queues for the CPU.
DEFAULT_CONCURRENCY = 10


class TaskTimedOut(Exception):
    """A synchronous caller stopped waiting: at the function's Timeout (Lambda's "Task timed out after N seconds"), or
    at its own limit (``callers_limit``: API Gateway's 29 s)."""

    def __init__(self, message: str, *, callers_limit: bool) -> None:
        super().__init__(message)
        self.callers_limit = callers_limit


#: Per thread: the event a bounded invocation waits on until its handler starts (:meth:`LocalFunction.invoke_bounded`)
_bounded = threading.local()


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
    environment: int = 0  # which execution environment of the function handled it (1, 2, ...)
    finished_at: float | None = None  # None while it runs


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
    reserved_concurrency: int | None = None


class _PerThread:
    """A class attribute with one value per thread (see :func:`isolate_library_state`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: Any) -> Any:
        try:
            return getattr(_library_state, self.name)
        except AttributeError:
            raise AttributeError(self.name) from None

    def __set__(self, instance: Any, value: Any) -> None:
        setattr(_library_state, self.name, value)


class _PerThreadDict(MutableMapping):
    """A dict with one content per thread, for state a library keeps in a dict on a class (see
    :func:`isolate_library_state`)."""

    def __init__(self) -> None:
        self._threads = threading.local()

    def _own(self) -> dict:
        try:
            return self._threads.value
        except AttributeError:
            self._threads.value = {}
            return self._threads.value

    def __getitem__(self, key: Any) -> Any:
        return self._own()[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._own()[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._own()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._own())

    def __len__(self) -> int:
        return len(self._own())


class _PerThreadLogFormat:
    """Powertools' ``LambdaPowertoolsFormatter.log_format`` (the keys every line carries: the Lambda context's,
    ``append_keys``'), one dict per thread (see :func:`isolate_library_state`). A thread starts from the dict last set
    by any thread (``__init__``, or ``clear_state``, which every handler here runs at each invocation)."""

    def __get__(self, formatter: Any, owner: Any) -> Any:
        if formatter is None:
            return self
        threads = formatter.__dict__.get("_log_format_threads")
        if threads is None:  # a formatter made before isolation kept its dict on the instance
            self.__set__(formatter, formatter.__dict__.pop("log_format", {}))
            threads = formatter.__dict__["_log_format_threads"]
        value = getattr(threads, "value", None)
        if value is None:
            value = threads.value = dict(formatter.__dict__["_log_format_last"])
        return value

    def __set__(self, formatter: Any, value: Any) -> None:
        threads = formatter.__dict__.setdefault("_log_format_threads", threading.local())
        formatter.__dict__["_log_format_last"] = value
        threads.value = value


_library_state = threading.local()
_isolated = False


def isolate_library_state() -> None:
    """Make the per-request state libraries keep on *classes* one per thread, so per environment.

    On Lambda every execution environment is a process of its own, so even state a library keeps on a class is the
    environment's. Here environments are threads of one process and share every class; copying the handler module
    does not help when the library writes to its own class. Powertools' event handler does: ``resolve`` stores the
    request in ``BaseRouter.current_event`` and ``BaseRouter.lambda_context`` (class attributes read by every resolver
    and router), so two concurrent requests, each in its own environment, could still read each other's event. An
    invocation runs wholly on the thread that took its environment, so one value per thread is one per invocation.
    Powertools' ``Logger`` is another: a service's loggers share one formatter, which holds the keys of the line
    (``function_name``, ``function_request_id``, appended keys), so a line could name another function's invocation.
    Powertools' ``Metrics`` is the third: every instance adds to the dicts on the class, and a flush serialises,
    prints and then clears them, so a function's metrics went out in another's line, and one added while another
    function printed (the print lets other threads run) was cleared unprinted. Its metric, dimension and metadata
    dicts become one per thread (each invocation adds, flushes and clears its own); default dimensions, set once
    for a process, stay shared. This must run before the first ``Metrics`` is made: each keeps the dicts it found.
    """
    global _isolated
    with _path_lock:
        if _isolated:
            return
        _isolated = True
        try:
            from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
        except ImportError:  # pragma: no cover - a template without Powertools
            return
        names = ("current_event", "lambda_context")
        base_meta = type(BaseRouter)

        class PerThreadState(base_meta):  # type: ignore[misc, valid-type]
            def __setattr__(cls, name: str, value: Any) -> None:
                if cls is BaseRouter and name in names:
                    setattr(_library_state, name, value)
                else:
                    super().__setattr__(name, value)

        for name in names:
            type.__setattr__(BaseRouter, name, _PerThread(name))
        BaseRouter.__class__ = PerThreadState

        from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

        LambdaPowertoolsFormatter.log_format = _PerThreadLogFormat()  # type: ignore[assignment, misc]

        from aws_lambda_powertools.metrics.metrics import Metrics

        for name in ("_metrics", "_dimensions", "_metadata"):
            setattr(Metrics, name, _PerThreadDict())


@dataclass
class ExecutionEnvironment:
    """One Lambda execution environment: its own copy of the handler module, handling one event at a time."""

    index: int
    module: ModuleType
    handler: Callable[[Any, Any], Any]
    invocations: int = 0


class LocalFunction:
    """A function ready to invoke: a pool of execution environments (see the module doc) and a thread-safe
    invocation log."""

    def __init__(self, config: FunctionConfig, *, keep_invocations: int = 1000) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._count = 0
        self._log: list[Invocation] = []
        self._keep = keep_invocations
        self._overran: list[Invocation] = []  # every invocation past the Timeout, never trimmed
        self._running_records: dict[int, Invocation] = {}  # the invocations running now, by id()
        self._idle: list[ExecutionEnvironment] = []
        self._all: list[ExecutionEnvironment] = []
        self._creating = 0
        self._waiting = 0
        self._freed = threading.Condition(self._lock)

    @property
    def concurrency(self) -> int:
        """How many events the function handles at once: its reserved concurrency, else the local default."""
        reserved = self.config.reserved_concurrency
        return DEFAULT_CONCURRENCY if reserved is None else max(1, reserved)

    @property
    def environments(self) -> int:
        """Execution environments created so far (busy or idle)."""
        with self._lock:
            return len(self._all)

    @property
    def waiting(self) -> int:
        """Invocations waiting for an environment because the function is at its concurrency."""
        with self._lock:
            return self._waiting

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

    def overran(self, *, now: float | None = None) -> list[Invocation]:
        """Every invocation that ran past the function's Timeout (Lambda would have stopped it), however long ago,
        and those still running past it (the log of :meth:`invocations` keeps only the latest)."""
        now = time.time() if now is None else now
        limit = self.config.timeout_seconds
        with self._lock:
            running = [r for r in self._running_records.values() if now - r.started_at > limit]
            return [*self._overran, *running]

    def handler(self) -> Callable[[Any, Any], Any]:
        """The handler of an idle environment, creating the first one if needed (so import errors surface early).
        Calling it directly bypasses the one-event-at-a-time rule: use :meth:`invoke`."""
        environment = self._take()
        self._give_back(environment)
        return environment.handler

    def _take(self) -> ExecutionEnvironment:
        """An idle environment, or a new one while under the concurrency; otherwise wait for one to be freed."""
        with self._lock:
            while not self._idle and len(self._all) + self._creating >= self.concurrency:
                self._waiting += 1
                try:
                    self._freed.wait()
                finally:
                    self._waiting -= 1
            if self._idle:
                return self._idle.pop()
            self._creating += 1
            index = len(self._all) + self._creating
        try:
            isolate_library_state()
            module, handler = load_handler(self.config.handler, self.config.code_root, f"{self.logical_id}-{index}")
        except BaseException:
            with self._lock:
                self._creating -= 1
                self._freed.notify()
            raise
        environment = ExecutionEnvironment(index=index, module=module, handler=handler)
        with self._lock:
            self._creating -= 1
            self._all.append(environment)
        return environment

    def _give_back(self, environment: ExecutionEnvironment) -> None:
        with self._lock:
            self._idle.append(environment)
            self._freed.notify()

    def close(self) -> None:
        """Forget the environments (their module copies leave ``sys.modules``); a later invoke starts cold."""
        with self._lock:
            for environment in self._all:
                sys.modules.pop(environment.module.__name__, None)
            self._all.clear()
            self._idle.clear()

    def invoke(self, event: Any) -> Any:
        """Call the handler as Lambda would, in an environment of its own; exceptions propagate to the caller (the
        event source decides)."""
        environment = self._take()
        try:
            return self._invoke_in(environment, event)
        finally:
            self._give_back(environment)

    def invoke_bounded(self, event: Any, *, seconds: float | None = None) -> Any:
        """:meth:`invoke` as a synchronous caller (API Gateway) sees it on Lambda: the answer within the function's
        Timeout from its handler's start, and within the caller's own ``seconds`` from now, else :class:`TaskTimedOut`.
        Lambda starts a handler at once; here a call may first wait for an environment, which its Timeout does not
        count (without a caller's limit, that wait is bounded by the Timeout too). A thread cannot be stopped, so the
        handler runs on in its environment, which stays taken until it ends, and :meth:`overran` lists it. Without
        this, an authorizer that Lambda would have stopped at 10 s answered after 15 (its SDK still retrying) and let
        the request through where AWS refuses it (the service storms' fault test)."""
        timeout = self.config.timeout_seconds
        callers_deadline = None if seconds is None else time.monotonic() + seconds
        started, answer = threading.Event(), Future()

        def run() -> None:
            _bounded.started = started  # set by _invoke_in as the handler starts
            try:
                answer.set_result(self.invoke(event))
            except BaseException as exc:  # the caller's to see, as invoke's are
                answer.set_exception(exc)

        def left(deadline: float) -> float:
            return max(0.0, deadline - time.monotonic())

        threading.Thread(target=run, name=f"{self.logical_id}-invoke", daemon=True).start()
        if not started.wait(timeout if callers_deadline is None else left(callers_deadline)):
            raise TaskTimedOut("no environment free in time", callers_limit=callers_deadline is not None)
        functions_deadline = time.monotonic() + timeout
        deadline = functions_deadline if callers_deadline is None else min(functions_deadline, callers_deadline)
        # wait(), not answer.result(timeout): a handler's own TimeoutError (socket.timeout is one) is its error
        if not wait([answer], timeout=left(deadline)).done:
            raise TaskTimedOut(f"no answer within {timeout:.2f} seconds", callers_limit=deadline != functions_deadline)
        return answer.result()

    def _invoke_in(self, environment: ExecutionEnvironment, event: Any) -> Any:
        handler = environment.handler
        environment.invocations += 1
        context = LambdaContext(
            function_name=self.config.name,
            function_arn=self.config.arn,
            memory_mb=self.config.memory_mb,
            timeout_seconds=self.config.timeout_seconds,
        )
        record = Invocation(
            request_id=context.aws_request_id, event=event, started_at=time.time(), environment=environment.index
        )
        with self._lock:
            self._count += 1
            self._log.append(record)
            del self._log[: -self._keep]
            self._running_records[id(record)] = record
        if (started := getattr(_bounded, "started", None)) is not None:
            started.set()
        start = time.perf_counter()
        try:
            record.result = handler(event, context)
            return record.result
        except BaseException as exc:
            record.error = "".join(traceback.format_exception_only(exc)).strip()
            raise
        finally:
            record.duration_ms = (time.perf_counter() - start) * 1000
            overran = record.duration_ms > self.config.timeout_seconds * 1000
            with self._lock:  # one step, so that a check never sees it in neither list
                record.finished_at = time.time()
                del self._running_records[id(record)]
                if overran:
                    self._overran.append(record)
            if overran:
                # A thread cannot be killed, so the timeout is reported, not enforced.
                log.warning(
                    "%s ran %.0f ms, longer than its Timeout of %ss: it would have timed out on Lambda",
                    self.logical_id,
                    record.duration_ms,
                    self.config.timeout_seconds,
                )


_path_lock = threading.Lock()
_copies = itertools.count(1)


def load_handler(handler: str, code_root: Path, environment: str) -> tuple[ModuleType, Callable[[Any, Any], Any]]:
    """A fresh copy of the handler's module (``pkg.module`` of ``pkg.module.func``, found with ``code_root`` on
    ``sys.path`` as Lambda finds it in the package root) and its handler function.

    The copy is registered as ``pkg.module#<environment>-<n>``: its parent package is the real one, so relative and
    absolute imports inside it resolve to the modules every environment shares, while its own globals are its own.
    """
    module_name, _, attribute = handler.rpartition(".")
    if not module_name:
        raise TemplateError(f"Handler {handler!r} is not of the form module.function")
    root = str(code_root.resolve())
    with _path_lock:
        if root not in sys.path:
            sys.path.insert(0, root)
        try:
            spec = importlib.util.find_spec(module_name)  # imports the parent packages, not the module itself
        except ModuleNotFoundError:
            spec = None
    if spec is None or not spec.origin or not spec.loader:
        raise TemplateError(f"Handler {handler!r}: no module {module_name} under {code_root}")
    origin = Path(spec.origin).resolve()
    if code_root.resolve() not in origin.parents:
        # Two functions with different CodeUris but the same module name cannot share one interpreter.
        raise TemplateError(
            f"Handler {handler!r}: module {module_name} was already imported from {origin}, not from {code_root}"
        )
    name = f"{module_name}#{environment}-{next(_copies)}"
    copy_spec = importlib.util.spec_from_file_location(
        name, origin, submodule_search_locations=spec.submodule_search_locations
    )
    assert copy_spec is not None and copy_spec.loader is not None
    module = importlib.util.module_from_spec(copy_spec)
    sys.modules[name] = module  # dataclasses and pydantic resolve annotations through sys.modules[__module__]
    try:
        copy_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    function = getattr(module, attribute, None)
    if not callable(function):
        sys.modules.pop(name, None)
        raise TemplateError(f"Handler {handler!r}: {module_name} has no callable {attribute}")
    return module, function


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
        reserved_concurrency=_reserved_concurrency(resolver.resolve(props.get("ReservedConcurrentExecutions"))),
    )


def _reserved_concurrency(value: Any) -> int | None:
    if value is None or value is NO_VALUE:
        return None
    return int(value)


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
