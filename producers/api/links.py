"""The API's own URLs in its answers (``links``, ``Location``, ``contentUrl``, ``nextRecordsUrl``), written as paths
from the host's root, so that a client resolving them against the URL it called (RFC 3986) reaches the API.

A REST API answers under a prefix the Lambda event's ``path`` does not show: ``/<stage>`` on the execute-api URL the
template's ``ApiUrl`` output gives (``requestContext.path`` is then ``/<stage>`` + ``path``), nothing on a custom
domain mapped at its root (the two paths are equal). The prefix is what ``requestContext.path`` has in front of
``path``. (A custom domain's base path mapping hands the function a ``path`` that still holds the base path, which the
API's routes would have to strip first; it is not a layout this template deploys.) It is
bound per request (:func:`served_under`, around the resolver) and read where a URL is written (:func:`api_path`); an
answer built outside a request (a test, a tool) has no prefix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_prefix: ContextVar[str] = ContextVar("api_path_prefix", default="")


def path_prefix(event: dict[str, Any]) -> str:
    """What the request's path as sent has in front of the API's own path: ``/<stage>`` or ``""``.

    A path sent with a trailing slash or a doubled one (``/dev/v1/queries/``, ``/dev/v1//queries``) is routed as the
    API's own, so both paths are compared with runs of slashes made one and a trailing one dropped: compared as they
    came, they did not match, the prefix was lost, and the answer's URLs led outside the stage (API Gateway's 403)."""
    path = _squeezed(event.get("path") or "")
    as_sent = _squeezed((event.get("requestContext") or {}).get("path") or "")
    if path and as_sent.endswith(path):
        return as_sent[: -len(path)].rstrip("/")
    return ""


def _squeezed(path: str) -> str:
    return re.sub("/{2,}", "/", path).rstrip("/")


@contextmanager
def served_under(event: dict[str, Any]) -> Iterator[None]:
    token = _prefix.set(path_prefix(event))
    try:
        yield
    finally:
        _prefix.reset(token)


def api_path(path: str) -> str:
    """``path`` (``/v1/...``) as a client of this request reaches it."""
    return _prefix.get() + path
