"""WSGI middleware for the local stack's servers (moto, the Data API emulator): callers on this machine only, not
the web pages its browser shows.

Binding to 127.0.0.1 keeps other machines out, not a page: a page may send requests to 127.0.0.1, and moto answers
every origin's preflight with that origin allowed (its own CORS), so a page's ``fetch()`` could read and write every
table, bucket and queue of the stack. A DNS-rebinding page (its name re-resolved to 127.0.0.1) is even same-origin
with a server, and the emulator runs SQL as any database user, superuser included, as the Data API does for a caller
IAM allows. So a request is refused (403) when:

- its ``Host`` is not a loopback name (``127.0.0.1``, ``[::1]``, ``localhost`` or a ``*.localhost`` name, which
  browsers resolve to loopback themselves): a rebinding page's requests carry its own name;
- it carries an ``Origin`` other than the server's own: browsers send one with every cross-origin request (and every
  POST), SDKs and command-line tools send none.

And no answer carries ``Access-Control-*`` headers, so a browser lets no other origin read one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

LOOPBACK_NAMES = ("127.0.0.1", "[::1]", "localhost")


def loopback_host(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.lower().rstrip(".")
    return name in LOOPBACK_NAMES or name.endswith(".localhost")


def local_callers_only(app: Callable) -> Callable:
    """``app`` behind the checks above."""

    def middleware(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST", "")
        origin = environ.get("HTTP_ORIGIN")
        if not loopback_host(host):
            return _refuse(start_response, f"Host {host!r} is not a loopback name: the local stack serves this machine")
        if origin is not None and origin.lower() != f"http://{host}".lower():
            return _refuse(start_response, f"requests from web pages ({origin}) are not served by the local stack")

        def without_cors(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            kept = [(name, value) for name, value in headers if not name.lower().startswith("access-control-")]
            return start_response(status, kept, exc_info) if exc_info else start_response(status, kept)

        return app(environ, without_cors)

    return middleware


def _refuse(start_response: Callable, message: str) -> list[bytes]:
    body = json.dumps({"__type": "AccessDeniedException", "message": message}).encode()
    start_response("403 Forbidden", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
