"""The webhook POST against real HTTP(S) servers on 127.0.0.1: answers, timeouts, redirects, unreachable endpoints,
and the connection pinned to the checked address (Host, SNI and the certificate check still use the name)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from spectra.notify.transport import WebhookTransport
from spectra.notify.urls import UrlPolicy
from tests.fixtures.webhooks import REDIRECT
from tests.unit.fakes import fake_resolver

pytestmark = pytest.mark.integration

BODY = b'{"type":"Job Completed"}'
HEADERS = {"webhook-id": "msg_test", "webhook-timestamp": "0", "webhook-signature": "v1,x"}


def transport(timeout: float = 5, **dns) -> WebhookTransport:
    return WebhookTransport(UrlPolicy(allow_loopback=True, resolver=fake_resolver(dns)), timeout=timeout)


@pytest.mark.parametrize(("status", "ok", "error"), [(200, True, None), (204, True, None), (500, False, "HTTP 500")])
def test_the_answer_decides(webhook_receiver, status, ok, error):
    webhook_receiver.default("/hook", status)
    outcome = transport().post(webhook_receiver.url("/hook?x=1"), BODY, HEADERS)
    assert (outcome.status, outcome.ok) == (status, ok)
    assert (outcome.error or "").startswith(error or "")
    (request,) = webhook_receiver.requests("/hook")
    assert request.body == BODY and request.headers["webhook-id"] == "msg_test"
    assert request.headers["Content-Type"] == "application/json"


def test_410_is_gone(webhook_receiver):
    webhook_receiver.default("/gone", 410)
    outcome = transport().post(webhook_receiver.url("/gone"), BODY, HEADERS)
    assert outcome.gone and not outcome.ok


def test_a_redirect_is_not_followed(webhook_receiver):
    webhook_receiver.default("/moved", REDIRECT)
    outcome = transport().post(webhook_receiver.url("/moved"), BODY, HEADERS)
    assert outcome.status == REDIRECT and not outcome.ok
    assert "not followed" in outcome.error and "/elsewhere" in outcome.error
    assert [r.path for r in webhook_receiver.received] == ["/moved"]


class _AppendSlash(BaseHTTPRequestHandler):
    """A receiver that normalises its path as Django's APPEND_SLASH does: the query string comes back in Location."""

    location = "https://hooks.acme.example{path}/?{query}#top"

    def do_POST(self) -> None:
        path, _, query = self.path.partition("?")
        self.send_response(301)
        self.send_header("Location", self.location.format(path=path, query=query))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def redirected(handler, target: str):
    """One attempt at ``target`` on a local server of ``handler``: the outcome, and the server's origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_port}"
    try:
        return transport().post(origin + target, BODY, HEADERS), origin
    finally:
        server.shutdown()


def test_a_redirects_location_is_reported_without_its_query():
    """The error goes to the subscription's record, the logs and a "Subscription Disabled" event on the bus, which
    other accounts' rules may read: the receiver's token in the query string stays off them, as it does in the URL."""
    outcome, _ = redirected(_AppendSlash, "/in?token=s3cr3t")
    assert outcome.status == 301 and not outcome.ok
    assert outcome.error == "HTTP 301: redirect to https://hooks.acme.example/in/ not followed"


class _RelativeRedirect(_AppendSlash):
    """Slack's way: the same path with a slash, as a relative Location."""

    location = "{path}/?{query}"


def test_a_relative_redirect_is_reported_as_an_absolute_url_the_bus_can_cut_down():
    """A path, token and all, slipped past what cuts URLs down to their origin for the logs and the bus (found by the
    diff review): resolved against the URL, it is a URL like any other."""
    from spectra.notify.urls import origins_only

    outcome, origin = redirected(_RelativeRedirect, "/services/T0/B0/s3cr3tt0ken?x=1")
    assert outcome.error == f"HTTP 301: redirect to {origin}/services/T0/B0/s3cr3tt0ken/ not followed"
    assert origins_only(outcome.error) == f"HTTP 301: redirect to {origin} not followed"


class _SpacedRedirect(_AppendSlash):
    """A Location whose path holds what ends a URL in text (a space, quotes, angle brackets), then a token."""

    location = "/hooks b'\"<x>/s3cr3tt0ken"


def test_a_redirect_whose_path_holds_a_space_is_still_cut_down_to_its_origin():
    """What cuts URLs down to their origin reads a URL up to a space or a quote, so the token after one reached the
    logs and the bus: the Location is reported percent-encoded, one URL whole."""
    from spectra.notify.urls import origins_only

    outcome, origin = redirected(_SpacedRedirect, "/in")
    assert outcome.error == f"HTTP 301: redirect to {origin}/hooks%20b%27%22%3Cx%3E/s3cr3tt0ken not followed"
    assert origins_only(outcome.error) == f"HTTP 301: redirect to {origin} not followed"


def test_an_endpoint_that_never_answers_times_out_on_time(webhook_receiver):
    webhook_receiver.hang("/slow")
    started = time.monotonic()
    outcome = transport(timeout=0.5).post(webhook_receiver.url("/slow"), BODY, HEADERS)
    assert outcome.status is None and "timed out" in outcome.error
    assert time.monotonic() - started < 3


def test_a_blackholed_address_leaves_the_next_one_its_share_of_the_deadline(webhook_receiver, monkeypatch):
    """The addresses of a name share the attempt's one deadline: an address that never answers costs its share, and
    the next one is still reached within the deadline, rather than each taking the whole of it in turn."""
    real_connect = socket.create_connection

    def first_is_a_blackhole(address, timeout=None, *args, **kwargs):
        if address[0] == "127.0.0.2":  # a SYN that is never answered
            time.sleep(timeout)
            raise TimeoutError("timed out")
        return real_connect(address, timeout, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", first_is_a_blackhole)
    # 2 s: the black hole takes its share, 1 s, and the exchange with the second address has the other second, which
    # a loaded machine needs some of (the whole attempt took up to 0.8 s of a 1 s deadline)
    started = time.monotonic()
    outcome = transport(timeout=2, **{"receiver.test": ["127.0.0.2", "127.0.0.1"]}).post(
        f"http://receiver.test:{webhook_receiver.port}/second", BODY, HEADERS
    )
    assert outcome.ok and time.monotonic() - started < 2
    assert len(webhook_receiver.requests("/second")) == 1


def test_a_tls_handshake_dripped_over_tcp_ends_at_the_deadline():
    """A server that accepts, announces a 16 KiB handshake record and sends it a byte at a time, each byte well
    within a read timeout: the attempt still ends at its deadline."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        connection, _ = server.accept()
        with connection:
            connection.sendall(b"\x16\x03\x03\x40\x00")
            while not stop.wait(0.05):
                try:
                    connection.sendall(b"\x02")
                except OSError:
                    return

    threading.Thread(target=drip, daemon=True).start()
    try:
        started = time.monotonic()
        outcome = transport(timeout=0.5).post(f"https://127.0.0.1:{server.getsockname()[1]}/h", BODY, HEADERS)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        server.close()
    assert outcome.status is None and outcome.error == "timed out after 0.5s"
    # the drip would go on for minutes; the bound leaves room for a loaded machine's scheduling (up to 1.1 s seen)
    assert elapsed < 2.0, f"the attempt took {elapsed:.2f}s with a 0.5s deadline"


def test_an_unreachable_endpoint_is_a_failure_not_an_exception(webhook_receiver):
    port = webhook_receiver.port
    webhook_receiver.close()  # nothing listens there any more
    outcome = transport().post(f"http://127.0.0.1:{port}/hook", BODY, HEADERS)
    assert outcome.status is None and outcome.error.startswith("unreachable")


def test_the_connection_goes_to_the_checked_address_with_the_name_in_host(webhook_receiver):
    outcome = transport(**{"receiver.test": ["127.0.0.1"]}).post(
        f"http://receiver.test:{webhook_receiver.port}/named", BODY, HEADERS
    )
    assert outcome.ok
    (request,) = webhook_receiver.requests("/named")
    assert request.headers["Host"] == f"receiver.test:{webhook_receiver.port}"


def test_a_name_that_now_resolves_inside_is_refused_without_a_connection(webhook_receiver):
    outcome = transport(**{"receiver.test": ["10.0.0.7"]}).post(
        f"http://receiver.test:{webhook_receiver.port}/named", BODY, HEADERS
    )
    assert outcome.status is None and "10.0.0.7, a private address" in outcome.error
    assert webhook_receiver.received == []


def test_loopback_is_refused_unless_the_local_setting_allows_it(webhook_receiver):
    strict = WebhookTransport(UrlPolicy(allow_loopback=False), timeout=5)
    outcome = strict.post(webhook_receiver.url("/hook"), BODY, HEADERS)
    assert outcome.status is None and outcome.error.startswith("refused")
    assert webhook_receiver.received == []


# -- TLS: SNI and the certificate are checked for the name, while the socket goes to the pinned address ----------


def _certificate(name: str, directory) -> tuple[str, str, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(pem)
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path), pem


@pytest.fixture
def tls_receiver(tmp_path):
    """An HTTPS server on 127.0.0.1 with a certificate for receiver.test; records the SNI names it was asked for."""
    cert, key, pem = _certificate("receiver.test", tmp_path)
    server_names: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    trust = ssl.create_default_context(cadata=pem.decode())
    yield server.server_address[1], trust, server_names
    server.shutdown()
    server.server_close()


def test_https_is_pinned_and_verified_for_the_name(tls_receiver):
    port, trust, server_names = tls_receiver
    policy = UrlPolicy(allow_loopback=True, resolver=fake_resolver({"receiver.test": ["127.0.0.1"]}))
    outcome = WebhookTransport(policy, timeout=5, tls=trust).post(f"https://receiver.test:{port}/h", BODY, HEADERS)
    assert outcome.status == 204 and outcome.ok
    assert server_names == ["receiver.test"]


def test_a_certificate_for_another_name_fails_the_attempt(tls_receiver):
    port, trust, _ = tls_receiver
    policy = UrlPolicy(allow_loopback=True, resolver=fake_resolver({"impostor.test": ["127.0.0.1"]}))
    outcome = WebhookTransport(policy, timeout=5, tls=trust).post(f"https://impostor.test:{port}/h", BODY, HEADERS)
    assert outcome.status is None and outcome.error.startswith("TLS failed")


def test_a_fully_qualified_name_with_its_trailing_dot_is_delivered(tls_receiver):
    """The URL was accepted with its root's dot, and every attempt sent ``receiver.test.`` as SNI and checked the
    certificate for it: each failed "TLS failed" until the subscription was disabled (webhooks review)."""
    port, trust, _ = tls_receiver
    policy = UrlPolicy(allow_loopback=True, resolver=fake_resolver({"receiver.test.": ["127.0.0.1"]}))
    outcome = WebhookTransport(policy, timeout=5, tls=trust).post(f"https://receiver.test.:{port}/h", BODY, HEADERS)
    assert outcome.ok, outcome.error


# -- answers a plain HTTP server would not give: raw bytes from a socket ------------------------------------------


def raw_answer(answer: bytes, *, drip: float = 0.0, timeout: float = 5) -> tuple[object, float]:
    """One attempt against a server that reads the request and writes ``answer`` (a line at a time, ``drip``
    seconds apart, when asked): the outcome and how long the attempt took."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            for line in answer.splitlines(keepends=True) if drip else [answer]:
                if stop.wait(drip):
                    return
                try:
                    connection.sendall(line)
                except OSError:
                    return

    threading.Thread(target=serve, daemon=True).start()
    try:
        started = time.monotonic()
        outcome = transport(timeout=timeout).post(f"http://127.0.0.1:{server.getsockname()[1]}/h", BODY, HEADERS)
        return outcome, time.monotonic() - started
    finally:
        stop.set()
        server.close()


def test_interim_answers_are_read_past_to_the_final_one():
    """102 and 103 come before the answer (RFC 9110 §15.2): a receiver that sends Early Hints and then 204 took the
    delivery (http.client alone returned the 103, a failure retried until the subscription was disabled)."""
    outcome, _ = raw_answer(
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    )
    assert outcome.status == 204 and outcome.ok


def test_a_location_that_is_no_url_keeps_the_redirects_status():
    """A redirect is the receiver's answer whatever its Location: the status is kept, and the Location named as
    unparseable (its ValueError escaped as a failure of ours, logged at ERROR with no status)."""
    outcome, _ = raw_answer(b"HTTP/1.1 302 Found\r\nLocation: https://[::1/next\r\nContent-Length: 0\r\n\r\n")
    assert outcome.status == 302 and not outcome.ok
    assert outcome.error == "HTTP 302: redirect to <a URL that does not parse> not followed"


def test_a_redirect_to_another_scheme_is_named_by_its_scheme_alone():
    """Only http(s) URLs are cut down to their origin for the logs and the bus: another scheme's path, a token in
    it, is left out here."""
    outcome, _ = raw_answer(b"HTTP/1.1 302 Found\r\nLocation: slack://open/T1/B2/s3cr3t\r\nContent-Length: 0\r\n\r\n")
    assert outcome.status == 302 and outcome.error == "HTTP 302: redirect to a slack: URL not followed"


def test_an_answer_whose_headers_drip_past_the_deadline_is_a_timeout_not_its_status():
    """The watchdog's shutdown at the deadline reads as the end of the headers: the 200 before it is not an answer
    (it counted as delivered, and a 410 dripped the same way disabled the subscription)."""
    headers = b"".join(b"X-Drip-%d: 1\r\n" % n for n in range(40))
    outcome, elapsed = raw_answer(b"HTTP/1.1 200 OK\r\n" + headers + b"\r\n", drip=0.1, timeout=0.5)
    assert outcome.status is None and outcome.error == "timed out after 0.5s"
    assert elapsed < 2.0, f"the attempt took {elapsed:.2f}s with a 0.5s deadline"
