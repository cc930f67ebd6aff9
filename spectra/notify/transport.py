"""The webhook POST: to the address the URL policy checked (pinned), never following redirects, within a deadline.

The standard library's ``http.client`` with the connection made by hand: the socket goes to the checked address,
while ``Host``, TLS SNI and the certificate check use the URL's host name, so a receiver behind a CDN or a name-based
virtual host works and a DNS answer that changes after the check cannot redirect the request. Responses are not
read past their status line and headers: a receiver's body is of no use to us and could be arbitrarily large.

One attempt has one deadline (``timeout``, 10 s on AWS), measured on the monotonic clock from its start: the
connections to the name's addresses, the TLS handshake and the request with its answer each get only what is left of
it, and a watchdog shuts the socket when it passes, since a socket timeout bounds each read alone and a receiver
dripping its handshake or its answer a byte at a time would otherwise hold the attempt (and the batch of other
tenants' deliveries the function is working through) for minutes. The addresses of a name share what is left, so
one that never answers costs its share and the next still has its turn. (The name's lookup, made first by the URL
policy, counts against the deadline but cannot be interrupted: the resolver bounds it.) An attempt past its deadline,
or one that fails in any way, is a failed :class:`HttpOutcome` with no status, counted on the subscription like any
failure: nothing an attempt meets escapes :meth:`WebhookTransport.post`.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

from spectra.notify.urls import UNPARSEABLE, Endpoint, UrlPolicy, UrlRefused, origin, without_query

USER_AGENT = "Spectra-Webhooks/1"

logger = logging.getLogger(__name__)


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


class _Deadline:
    """The end of one attempt on the monotonic clock; each step asks how much is left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self._at - time.monotonic())


class _FinalResponse(http.client.HTTPResponse):
    """A response read past its interim answers: ``http.client`` skips a ``100 Continue`` alone, and would take a
    ``102 Processing`` or ``103 Early Hints`` for the final answer (a delivery the receiver accepted counted as a
    failure, retried and in the end disabling the subscription). RFC 9110 §15.2: a client reads past any number of
    them. ``101 Switching Protocols`` is final (and no answer to a POST a receiver accepted)."""

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()
            if not 101 < status < 200:  # 100 is skipped by ``begin`` itself
                return version, status, reason
            http.client.parse_headers(self.fp)  # the interim answer's headers, of no use to us


class _PinnedHTTPConnection(http.client.HTTPConnection):
    response_class = _FinalResponse

    def __init__(self, endpoint: Endpoint, address: str, deadline: _Deadline, connect_timeout: float) -> None:
        super().__init__(endpoint.host, endpoint.port, timeout=connect_timeout)
        self._address = address
        self._deadline = deadline

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self._next_step()

    def _next_step(self) -> None:
        """Each read of the next step waits at most what is left (the watchdog bounds the step as a whole)."""
        left = self._deadline.left()
        if not left:
            raise TimeoutError("the attempt's deadline passed")
        self.sock.settimeout(left)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = http.client.HTTPS_PORT  # ``Host`` leaves out the port when it is this one

    def __init__(
        self, endpoint: Endpoint, address: str, deadline: _Deadline, connect_timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(endpoint, address, deadline, connect_timeout)
        self._tls = context

    def connect(self) -> None:
        super().connect()
        # wrap first, handshake after: from here on ``self.sock`` is the socket the watchdog shuts
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self.host, do_handshake_on_connect=False)
        self._next_step()
        self.sock.do_handshake()


class WebhookTransport:
    """POSTs webhook bodies. ``timeout`` bounds the whole attempt (connect, TLS, send, status line and headers)."""

    def __init__(self, policy: UrlPolicy, *, timeout: float, tls: ssl.SSLContext | None = None) -> None:
        self.policy = policy
        self.timeout = timeout
        # the system's trust store and hostname checking; tests pass a context that trusts their own certificate
        self._tls = tls or ssl.create_default_context()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> HttpOutcome:
        """One attempt, never longer than ``timeout``; whatever goes wrong is a failed outcome, not an exception."""
        deadline = _Deadline(self.timeout)
        try:
            return self._attempt(url, body, headers, deadline)
        except Exception as exc:  # a bug or a case not foreseen: still one failed attempt, recorded and retried
            logger.exception("webhook attempt to %s failed unexpectedly", origin(url))
            return HttpOutcome(None, f"failed: {type(exc).__name__}: {exc}"[:300])

    def _attempt(self, url: str, body: bytes, headers: dict[str, str], deadline: _Deadline) -> HttpOutcome:
        try:
            endpoint = self.policy.endpoint(url)  # checked again now: DNS may have changed since the subscription
        except UrlRefused as exc:
            return HttpOutcome(None, f"refused: {exc.message}")
        timed_out = HttpOutcome(None, f"timed out after {deadline.seconds:g}s")
        current: list[http.client.HTTPConnection] = []  # the connection the watchdog shuts, once there is one
        expired = threading.Event()

        def abort() -> None:
            expired.set()
            if current and current[-1].sock is not None:
                with contextlib.suppress(OSError):  # the socket's own shutdown, under TLS too: the read then ends
                    socket.socket.shutdown(current[-1].sock, socket.SHUT_RDWR)

        # A socket timeout bounds each read; this timer bounds them all (the TLS handshake and the answer included).
        watchdog = threading.Timer(deadline.left(), abort)
        watchdog.daemon = True
        watchdog.start()
        try:
            unreachable = "unreachable"
            for index, address in enumerate(endpoint.addresses):
                if not deadline.left():
                    return timed_out
                # the addresses left share what is left, so one black hole does not cost the others their turn
                share = deadline.left() / (len(endpoint.addresses) - index)
                connection = self._connection(endpoint, address, deadline, share)
                current.append(connection)
                try:
                    connection.connect()
                except TimeoutError:
                    connection.close()
                    if expired.is_set() or not deadline.left():
                        return timed_out
                    unreachable = f"connecting to {address} timed out after {share:.2g}s"
                    continue
                except (ssl.SSLError, OSError) as exc:
                    connection.close()
                    if expired.is_set():
                        return timed_out
                    if isinstance(exc, ssl.SSLError):
                        return HttpOutcome(None, f"TLS failed: {exc.reason or exc}")
                    unreachable = f"unreachable: {exc.strerror or exc}"
                    continue
                return self._exchange(connection, endpoint, body, headers, expired, timed_out)
            return HttpOutcome(None, unreachable)
        finally:
            watchdog.cancel()

    def _connection(
        self, endpoint: Endpoint, address: str, deadline: _Deadline, connect_timeout: float
    ) -> http.client.HTTPConnection:
        if endpoint.scheme == "https":
            return _PinnedHTTPSConnection(endpoint, address, deadline, connect_timeout, self._tls)
        return _PinnedHTTPConnection(endpoint, address, deadline, connect_timeout)

    def _exchange(
        self,
        connection: http.client.HTTPConnection,
        endpoint: Endpoint,
        body: bytes,
        headers: dict[str, str],
        expired: threading.Event,
        timed_out: HttpOutcome,
    ) -> HttpOutcome:
        try:
            connection.request(
                "POST",
                endpoint.target,
                body=body,
                headers={"User-Agent": USER_AGENT, "Content-Type": "application/json", **headers},
            )
            response = connection.getresponse()
            status, reason, location = response.status, response.reason, response.getheader("Location")
            if expired.is_set():
                # the watchdog's shutdown ends a header dripped past the deadline as if it were the last one: the
                # status read before it is a timed-out attempt's, not an answer (a 2xx or a 410 taken late)
                return timed_out
        except TimeoutError:
            return timed_out
        except (http.client.HTTPException, OSError) as exc:
            if expired.is_set():
                return timed_out
            return HttpOutcome(None, f"no valid answer: {type(exc).__name__}: {exc}"[:300])
        finally:
            connection.close()
        if 200 <= status < 300:
            return HttpOutcome(status)
        if 300 <= status < 400:
            # the error reaches the subscription's record, the logs and a disabled event on the bus: a Location
            # that keeps the receiver's query string (a slash appended, /in?token=X → /in/?token=X) keeps its token
            # (resolved against the URL first: a relative Location, "/services/T/B/<token>/", is a path, token and
            # all, which only an absolute URL lets the logs and the bus cut down to its origin)
            return HttpOutcome(status, f"HTTP {status}: redirect to {_target(endpoint, location)} not followed"[:300])
        return HttpOutcome(status, f"HTTP {status} {reason}".strip()[:300])


#: What a reported Location keeps as it is: URL syntax (and escapes already there), not what ends a URL in text.
_KEPT_IN_LOCATION = "/:@!$&()*+,;=%[]~"


def _target(endpoint: Endpoint, location: str | None) -> str:
    """A redirect's Location for the record, resolved against the URL and without its query (kept neither in the
    logs nor on the bus); one that does not parse as a URL (``https://[::1/x``) is named as such: it is still the
    receiver's answer, with its status, not a failure of ours. A Location of another scheme than http(s) is named
    by its scheme alone."""
    if not location:
        return "?"
    try:
        target = urljoin(endpoint.url, location)
        scheme = urlsplit(target).scheme.lower()
    except ValueError:
        return UNPARSEABLE
    if scheme not in ("http", "https"):
        # what cuts URLs down to their origin for the logs and the bus reads http(s) alone: another scheme's path
        # (slack://open/T1/B2/<token>) would reach them whole
        return f"a {scheme}: URL" if scheme.isalnum() else UNPARSEABLE
    # percent-encoded, one URL whole: what cuts URLs down to their origin reads one up to a space or a quote, so a
    # path's token after one (``/hooks b/<token>``) would reach the logs and the bus
    return quote(without_query(target), safe=_KEPT_IN_LOCATION)
