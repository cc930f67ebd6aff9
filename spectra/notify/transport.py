"""The webhook POST: to the address the URL policy checked (pinned), never following redirects, within a deadline.

The standard library's ``http.client`` with the connection made by hand: the socket goes to the checked address,
while ``Host``, TLS SNI and the certificate check use the URL's host name, so a receiver behind a CDN or a name-based
virtual host works and a DNS answer that changes after the check cannot redirect the request. Responses are not
read past their status line and headers: a receiver's body is of no use to us and could be arbitrarily large.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from dataclasses import dataclass

from spectra.notify.urls import Endpoint, UrlPolicy, UrlRefused

USER_AGENT = "Spectra-Webhooks/1"


@dataclass(frozen=True)
class HttpOutcome:
    """One attempt: the HTTP status (None when there was no answer) and, unless it succeeded, why not."""

    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        """410: the receiver says the endpoint is gone for good and asks us to stop."""
        return self.status == 410


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, endpoint: Endpoint, address: str, timeout: float) -> None:
        super().__init__(endpoint.host, endpoint.port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, endpoint: Endpoint, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(endpoint.host, endpoint.port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        try:
            self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise


class WebhookTransport:
    """POSTs webhook bodies. ``timeout`` bounds the whole attempt (connect, send, status line and headers)."""

    def __init__(self, policy: UrlPolicy, *, timeout: float, tls: ssl.SSLContext | None = None) -> None:
        self.policy = policy
        self.timeout = timeout
        # the system's trust store and hostname checking; tests pass a context that trusts their own certificate
        self._tls = tls or ssl.create_default_context()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> HttpOutcome:
        try:
            endpoint = self.policy.endpoint(url)  # checked again now: DNS may have changed since the subscription
        except UrlRefused as exc:
            return HttpOutcome(None, f"refused: {exc.message}")
        unreachable = "unreachable"
        for address in endpoint.addresses:
            connection = self._connection(endpoint, address)
            try:
                connection.connect()
            except TimeoutError:
                unreachable = f"connecting to {address} timed out after {self.timeout:g}s"
                continue
            except ssl.SSLError as exc:
                return HttpOutcome(None, f"TLS failed: {exc.reason or exc}")
            except OSError as exc:
                unreachable = f"unreachable: {exc.strerror or exc}"
                continue
            return self._exchange(connection, endpoint, body, headers)
        return HttpOutcome(None, unreachable)

    def _connection(self, endpoint: Endpoint, address: str) -> http.client.HTTPConnection:
        if endpoint.scheme == "https":
            return _PinnedHTTPSConnection(endpoint, address, self.timeout, self._tls)
        return _PinnedHTTPConnection(endpoint, address, self.timeout)

    def _exchange(
        self, connection: http.client.HTTPConnection, endpoint: Endpoint, body: bytes, headers: dict[str, str]
    ) -> HttpOutcome:
        # The socket timeout bounds each read; this timer bounds them all, so a receiver dripping its answer one byte
        # at a time cannot hold the delivery past the deadline.
        expired = threading.Event()

        def abort() -> None:
            expired.set()
            if connection.sock is not None:
                with contextlib.suppress(OSError):
                    connection.sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(self.timeout, abort)
        timer.daemon = True
        timer.start()
        try:
            connection.request(
                "POST",
                endpoint.target,
                body=body,
                headers={"User-Agent": USER_AGENT, "Content-Type": "application/json", **headers},
            )
            response = connection.getresponse()
            status, reason, location = response.status, response.reason, response.getheader("Location")
        except TimeoutError:
            return HttpOutcome(None, f"timed out after {self.timeout:g}s")
        except (http.client.HTTPException, OSError) as exc:
            if expired.is_set():
                return HttpOutcome(None, f"timed out after {self.timeout:g}s")
            return HttpOutcome(None, f"no valid answer: {type(exc).__name__}: {exc}"[:300])
        finally:
            timer.cancel()
            connection.close()
        if 200 <= status < 300:
            return HttpOutcome(status)
        if 300 <= status < 400:
            return HttpOutcome(status, f"HTTP {status}: redirect to {location or '?'} not followed"[:300])
        return HttpOutcome(status, f"HTTP {status} {reason}".strip()[:300])
