"""API Gateway Lambda authorizers (TOKEN and REQUEST), with API Gateway's caching and policy evaluation.

The runner reproduces what a client sees in AWS, because that is what tests should pin down:

- the identity source (``Identity.Header`` for TOKEN, ``Identity.Headers`` / ``QueryStrings`` for REQUEST) missing →
  401 ``Unauthorized`` without calling the function;
- the function raising ``Exception("Unauthorized")`` → 401; raising anything else, running past its Timeout or
  returning a malformed answer → 500 (API Gateway's AUTHORIZER_CONFIGURATION_ERROR);
- a policy that does not allow ``execute-api:Invoke`` on the method ARN (or denies it) → 403;
- allowed → ``principalId`` and the ``context`` map (values stringified, as API Gateway does) reach the integration in
  ``requestContext.authorizer``.

Answers are cached per identity source value for ``ReauthorizeEvery`` seconds (default 300, 0 disables), and — exactly
like API Gateway — the cached *policy* is evaluated against each new method ARN, so a policy that only names the first
resource denies the next one. That is a classic production surprise worth reproducing locally.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from local.runner.functions import LocalFunction

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 300


@dataclass
class AuthDecision:
    """The outcome of authorizing one request: an HTTP status to return, or 200 with the authorizer context."""

    status: int
    message: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    usage_key: str | None = None  # the answer's ``usageIdentifierKey`` (usage plans with ApiKeySourceType AUTHORIZER)

    @property
    def allowed(self) -> bool:
        return self.status == 200


UNAUTHORIZED = AuthDecision(401, "Unauthorized")
FORBIDDEN = AuthDecision(403, "User is not authorized to access this resource")
MISCONFIGURED = AuthDecision(500, None)


@dataclass
class AuthorizerRequest:
    """What an authorizer sees of one HTTP request (built by the gateway)."""

    method_arn: str
    headers: dict[str, str]
    query: dict[str, str]
    request_event: dict[str, Any]  # the REQUEST-type event minus type/methodArn


class LambdaAuthorizer:
    """One entry of an API's ``Auth.Authorizers``, backed by a local function."""

    def __init__(
        self,
        *,
        name: str,
        function: LocalFunction | None,
        payload_type: str = "TOKEN",
        identity: dict[str, Any] | None = None,
    ) -> None:
        identity = identity or {}
        self.name = name
        self.function = function
        self.payload_type = payload_type.upper()
        if self.payload_type == "TOKEN":
            self.headers = [identity.get("Header", "Authorization")]
            self.query_strings: list[str] = []
        else:
            self.headers = list(identity.get("Headers") or [])
            self.query_strings = list(identity.get("QueryStrings") or [])
        validation = identity.get("ValidationExpression")
        self.validation = re.compile(validation) if validation else None
        has_identity = bool(self.headers or self.query_strings)
        self.ttl = int(identity.get("ReauthorizeEvery", DEFAULT_TTL_SECONDS)) if has_identity else 0
        self._cache: dict[tuple[str, ...], tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.calls = 0

    def authorize(self, request: AuthorizerRequest) -> AuthDecision:
        identity = self._identity(request)
        if identity is None:
            return UNAUTHORIZED
        if self.validation is not None and not self.validation.fullmatch(identity[0]):
            return UNAUTHORIZED
        answer = self._cached(identity)
        if answer is None:
            if self.function is None:
                return MISCONFIGURED
            event = self._event(request, identity)
            started = time.perf_counter()
            try:
                with self._lock:
                    self.calls += 1
                answer = self.function.invoke_bounded(event)  # past its Timeout, Lambda's error: a 500
            except Exception as exc:
                if str(exc) == "Unauthorized":
                    return UNAUTHORIZED
                log.exception("authorizer %s failed", self.name)
                return MISCONFIGURED
            if not _well_formed(answer):
                log.warning("authorizer %s returned a malformed response: %r", self.name, answer)
                return MISCONFIGURED
            answer = {**answer, "_latency_ms": int((time.perf_counter() - started) * 1000)}
            self._store(identity, answer)
        return self._decide(answer, request.method_arn)

    def _identity(self, request: AuthorizerRequest) -> tuple[str, ...] | None:
        lowered = {key.lower(): value for key, value in request.headers.items()}
        values = [lowered.get(name.lower()) for name in self.headers]
        values += [request.query.get(name) for name in self.query_strings]
        if any(not value for value in values):
            return None
        return tuple(values)  # type: ignore[arg-type]

    def _cached(self, identity: tuple[str, ...]) -> dict[str, Any] | None:
        if self.ttl <= 0:
            return None
        with self._lock:
            entry = self._cache.get(identity)
            if entry and entry[0] > time.monotonic():
                return entry[1]
            self._cache.pop(identity, None)
        return None

    def _store(self, identity: tuple[str, ...], answer: dict[str, Any]) -> None:
        if self.ttl > 0:
            with self._lock:
                self._cache[identity] = (time.monotonic() + self.ttl, answer)

    def _event(self, request: AuthorizerRequest, identity: tuple[str, ...]) -> dict[str, Any]:
        if self.payload_type == "TOKEN":
            return {"type": "TOKEN", "authorizationToken": identity[0], "methodArn": request.method_arn}
        return {"type": "REQUEST", "methodArn": request.method_arn, **request.request_event}

    @staticmethod
    def _decide(answer: dict[str, Any], method_arn: str) -> AuthDecision:
        if not policy_allows(answer["policyDocument"], method_arn):
            return FORBIDDEN
        context: dict[str, Any] = {}
        for key, value in (answer.get("context") or {}).items():
            if isinstance(value, dict | list):
                log.warning("authorizer context %s is not a string, number or boolean", key)
                return MISCONFIGURED
            # API Gateway hands context values to a proxy integration as strings.
            context[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        context["principalId"] = str(answer["principalId"])
        context["integrationLatency"] = answer.get("_latency_ms", 0)
        usage_key = answer.get("usageIdentifierKey")
        return AuthDecision(200, context=context, usage_key=str(usage_key) if usage_key else None)


def _well_formed(answer: Any) -> bool:
    return (
        isinstance(answer, dict)
        and "principalId" in answer
        and isinstance(answer.get("policyDocument"), dict)
        and (answer.get("context") is None or isinstance(answer["context"], dict))
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str) -> re.Pattern[str]:
    # DOTALL: a path may hold any character (a %0A in a path parameter decodes to a newline), and IAM's * matches it
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.DOTALL)


def _matches(patterns: list[str], value: str) -> bool:
    return any(_wildcard(pattern).fullmatch(value) for pattern in patterns)


def policy_allows(policy: dict[str, Any], method_arn: str) -> bool:
    """IAM evaluation for one action: an explicit Deny wins, otherwise some Allow must match."""
    allowed = False
    for statement in _as_list(policy.get("Statement")):
        actions = [str(a) for a in _as_list(statement.get("Action"))]
        resources = [str(r) for r in _as_list(statement.get("Resource"))]
        if not (_matches(actions, "execute-api:Invoke") and _matches(resources, method_arn)):
            continue
        effect = str(statement.get("Effect", "")).capitalize()
        if effect == "Deny":
            return False
        if effect == "Allow":
            allowed = True
    return allowed
