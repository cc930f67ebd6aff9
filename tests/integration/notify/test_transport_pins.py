"""Webhook transport behaviour no test held before (found by mutation testing spectra/notify/transport.py): a 2xx
answer carries no error, 300 is a redirect and 400 is not, a redirect without a Location is reported as such, a TLS
receiver on the default port is sent its name alone in ``Host``, an attempt whose deadline passes as its connection is
made ends there unsent, and the answer is awaited for what is left of the deadline, not the connection's share of it.

Against real servers on 127.0.0.1; the attempt's clock is a fake one the test moves, never a sleep.
"""

from __future__ import annotations

import socket
import ssl
import threading
from types import SimpleNamespace

import pytest

from spectra.notify import transport as transport_module
from spectra.notify.transport import HttpOutcome, WebhookTransport
from spectra.notify.urls import UrlPolicy
from tests.unit.fakes import fake_resolver

pytestmark = pytest.mark.integration

BODY = b'{"type":"Job Completed"}'


class _Clock:
    """The attempt's monotonic clock: still unless a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class _Watchdog:
    """The attempt's watchdog, fired by the test when it says the deadline passes (``fire``), never by a timer."""

    fired: list[_Watchdog] = []

    def __init__(self, interval: float, function) -> None:
        self.interval, self.function, self.daemon = interval, function, False
        _Watchdog.fired.append(self)

    def start(self) -> None:
        pass

    def cancel(self) -> None:
        pass

    @classmethod
    def fire(cls) -> None:
        cls.fired[-1].function()


@pytest.fixture
def watchdog(monkeypatch, clock) -> type[_Watchdog]:
    """The attempt's watchdog, fired by ``watchdog.fire()`` alone (the clock stays where it is)."""
    _Watchdog.fired = []
    monkeypatch.setattr(transport_module, "threading", SimpleNamespace(Timer=_Watchdog, Event=threading.Event))
    return _Watchdog


@pytest.fixture
def clock(monkeypatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(transport_module, "time", SimpleNamespace(monotonic=clock.monotonic))
    return clock


class _RawServer:
    """A server on 127.0.0.1 that reads one request and writes ``answer`` as it is; ``requests`` holds what came."""

    def __init__(self, answer: bytes, tls: ssl.SSLContext | None = None, then=None) -> None:
        self.requests: list[bytes] = []
        self._then = then
        self._answer = answer
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._tls = tls
        self.port = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            connection, _ = self._socket.accept()
        except OSError:
            return
        try:
            if self._tls is not None:
                connection = self._tls.wrap_socket(connection, server_side=True)
            data = b""
            while not _whole(data):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                data += chunk
            if data:
                self.requests.append(data)
                connection.sendall(self._answer)
                if self._then is not None:
                    self._then()
                    connection.recv(1)  # until the client is gone
        except (OSError, ssl.SSLError):
            pass
        finally:
            connection.close()

    def close(self) -> None:
        self._socket.close()
        self._thread.join(5)


def _whole(request: bytes) -> bool:
    """Whether ``request`` holds its headers and all of its body."""
    head, found, body = request.partition(b"\r\n\r\n")
    if not found:
        return False
    length = next(
        (line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), b"0"
    )
    return len(body) >= int(length)


@pytest.fixture
def raw_server():
    servers: list[_RawServer] = []

    def start(answer: bytes, tls: ssl.SSLContext | None = None, then=None) -> _RawServer:
        servers.append(_RawServer(answer, tls, then))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _transport(timeout: float = 5, tls: ssl.SSLContext | None = None, **dns) -> WebhookTransport:
    return WebhookTransport(UrlPolicy(allow_loopback=True, resolver=fake_resolver(dns)), timeout=timeout, tls=tls)


# -- answers ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 299])
def test_a_2xx_answer_is_a_success_without_an_error(raw_server, status):
    """The outcome of a delivery the receiver took is its status alone: an error beside it (``HTTP 200 OK``) would be
    recorded on the subscription as if the delivery had failed."""
    server = raw_server(b"HTTP/1.1 %d Fine\r\nContent-Length: 0\r\n\r\n" % status)
    outcome = _transport().post(f"http://127.0.0.1:{server.port}/in", BODY, {})
    assert outcome == HttpOutcome(status)


@pytest.mark.parametrize(("status", "error"), [(300, "HTTP 300: redirect to ? not followed"), (400, "HTTP 400 Bad")])
def test_300_is_a_redirect_and_400_is_not(raw_server, status, error):
    """3xx answers are redirects, not followed; 400 is the receiver's refusal, reported with its reason."""
    server = raw_server(b"HTTP/1.1 %d Bad\r\nContent-Length: 0\r\n\r\n" % status)
    outcome = _transport().post(f"http://127.0.0.1:{server.port}/in", BODY, {})
    assert outcome == HttpOutcome(status, error)


def test_a_redirect_without_a_location_is_reported_as_going_nowhere_known(raw_server):
    """A 302 with no Location names no target: the record says ``?``, not the subscription's own URL as if the
    receiver had redirected to itself."""
    server = raw_server(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n")
    outcome = _transport().post(f"http://127.0.0.1:{server.port}/in?token=s3cr3t", BODY, {})
    assert outcome == HttpOutcome(302, "HTTP 302: redirect to ? not followed")


# -- the connection ------------------------------------------------------------------------------------------------


def test_an_https_receiver_on_the_default_port_is_sent_its_name_alone_in_host(raw_server, monkeypatch, tmp_path):
    """``https://receiver.test/in`` goes to port 443, and ``Host`` is ``receiver.test``, as for any HTTPS client: a
    name-based virtual host that matches the header exactly would not know ``receiver.test:443``. (The connection to
    port 443 of the checked address is carried to the local server's port.)"""
    from tests.integration.notify.test_transport import _certificate

    cert, key, pem = _certificate("receiver.test", tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    server = raw_server(b"HTTP/1.1 204 No Content\r\n\r\n", tls=server_tls)
    real_connect = socket.create_connection
    connected_to: list[tuple[str, int]] = []

    def to_the_local_server(address, *args, **kwargs):
        connected_to.append(address)
        return real_connect(("127.0.0.1", server.port), *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", to_the_local_server)
    trust = ssl.create_default_context(cadata=pem.decode())
    outcome = _transport(tls=trust, **{"receiver.test": ["127.0.0.1"]}).post("https://receiver.test/in", BODY, {})
    assert outcome == HttpOutcome(204)
    assert connected_to == [("127.0.0.1", 443)]
    (request,) = server.requests
    assert b"\r\nHost: receiver.test\r\n" in request


def test_a_deadline_that_passes_as_the_connection_is_made_ends_the_attempt_unsent(raw_server, clock, monkeypatch):
    """The connection took the whole deadline: the attempt is timed out there, and the request is not sent (it used
    to go out on a socket that no longer waited for anything, its answer lost or read as a failure of another kind)."""
    server = raw_server(b"HTTP/1.1 204 No Content\r\n\r\n")
    real_connect = socket.create_connection

    def slow_connect(*args, **kwargs):
        connected = real_connect(*args, **kwargs)
        clock.now += 10
        return connected

    monkeypatch.setattr(socket, "create_connection", slow_connect)
    outcome = _transport(timeout=10).post(f"http://127.0.0.1:{server.port}/in", BODY, {})
    assert outcome == HttpOutcome(None, "timed out after 10s")
    server.close()
    assert server.requests == []


def test_the_answer_is_awaited_for_what_is_left_of_the_deadline_not_the_connections_share(
    raw_server, clock, monkeypatch
):
    """A name with two addresses gives each connection half the deadline; once the first is connected, the answer
    may take all that is left (a receiver answering in 6 s of 10 is delivered to), not only that half."""
    server = raw_server(b"HTTP/1.1 204 No Content\r\n\r\n")
    real_connect = socket.create_connection
    sockets: list[socket.socket] = []
    timeouts: list[float | None] = []

    def connect(address, timeout=None, *args, **kwargs):
        timeouts.append(timeout)
        sockets.append(real_connect(("127.0.0.1", server.port), timeout, *args, **kwargs))
        return sockets[-1]

    monkeypatch.setattr(socket, "create_connection", connect)
    outcome = _transport(timeout=10, **{"receiver.test": ["127.0.0.1", "127.0.0.2"]}).post(
        "http://receiver.test:8080/in", BODY, {}
    )
    assert outcome == HttpOutcome(204)
    assert timeouts == [5.0]  # the first address's share of the connection
    assert sockets[0].gettimeout() == 10.0  # the answer's bound: all of the deadline still left


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (b"HTTP/1.1 199 Misc\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", HttpOutcome(204)),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n",
            HttpOutcome(101, "HTTP 101 Switching Protocols"),
        ),
    ],
    ids=["199-is-interim", "101-is-final"],
)
def test_interim_answers_end_at_199_and_101_is_final(raw_server, answer, outcome):
    """Every 1xx after 101 is read past to the answer (RFC 9110 §15.2); a 101 is the answer itself, and no success."""
    server = raw_server(answer)
    assert _transport().post(f"http://127.0.0.1:{server.port}/in", BODY, {}) == outcome


def test_an_answer_that_is_no_http_is_a_failure_named_and_cut_to_300_characters(raw_server):
    """A receiver answering garbage is one failed attempt, its error naming what came, at most 300 characters."""
    server = raw_server(b"NOT-HTTP " + b"x" * 400 + b"\r\n\r\n")
    outcome = _transport().post(f"http://127.0.0.1:{server.port}/in", BODY, {})
    assert outcome.status is None and outcome.error.startswith("no valid answer: BadStatusLine: NOT-HTTP xxx")
    assert len(outcome.error) == 300


def test_a_status_line_cut_short_by_the_deadline_is_a_timeout(raw_server, watchdog):
    """The watchdog shuts the socket while the status line is still coming: what was read is a timed-out attempt, not
    an invalid answer of the receiver's."""
    server = raw_server(b"HTTP/1.1 2", then=watchdog.fire)
    outcome = _transport(timeout=10).post(f"http://127.0.0.1:{server.port}/in", BODY, {})
    assert outcome == HttpOutcome(None, "timed out after 10s")


def _refusing_port() -> int:
    """A port of 127.0.0.1 where nothing listens: a connection there is refused."""
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    return port


@pytest.mark.parametrize("passing", ["watchdog fires", "clock passes"])
def test_a_connection_refused_as_the_deadline_passes_is_a_timeout(watchdog, clock, monkeypatch, passing):
    """The deadline passed while the first address's connection was being made, which was then refused: the
    attempt timed out, whether the watchdog has run yet or not, and the name's next address is not tried."""
    port = _refusing_port()
    real_connect = socket.create_connection
    tried: list[str] = []

    def refused_past_the_deadline(address, *args, **kwargs):
        tried.append(address[0])
        if passing == "watchdog fires":
            watchdog.fire()
        else:
            clock.now += 10
        return real_connect(("127.0.0.1", port), *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", refused_past_the_deadline)
    outcome = _transport(timeout=10, **{"receiver.test": ["127.0.0.1", "127.0.0.2"]}).post(
        f"http://receiver.test:{port}/in", BODY, {}
    )
    assert outcome == HttpOutcome(None, "timed out after 10s")
    assert tried == ["127.0.0.1"]
