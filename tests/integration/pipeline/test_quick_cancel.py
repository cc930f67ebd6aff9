"""The cancel a one-call query makes after its wait, against a Data API that throttles every request: it must give up
within the seconds the wait leaves (3 s before the API function's timeout). The standard client retried it for up to
18 s, so API Gateway answered 5xx instead of the job (found by the listings review)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from spectra.errors import Throttled
from spectra.ports import build_ports
from tests.unit.fakes import make_settings

pytestmark = pytest.mark.integration


class _Throttling(BaseHTTPRequestHandler):
    requests = 0

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).requests += 1
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def throttling_data_api(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Throttling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_REDSHIFT_DATA", f"http://127.0.0.1:{server.server_address[1]}")
    _Throttling.requests = 0
    yield _Throttling
    server.shutdown()
    server.server_close()


def test_a_quick_cancel_asks_once_and_gives_up_within_the_seconds_a_request_has_left(throttling_data_api):
    session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
    warehouse = build_ports(make_settings(), session=session).warehouse
    started = time.monotonic()
    with pytest.raises(Throttled):
        warehouse.cancel("stmt-1", quick=True)
    assert time.monotonic() - started < 3
    assert throttling_data_api.requests == 1
    throttling_data_api.requests = 0
    with pytest.raises(Throttled):  # any other caller keeps the standard client's retries
        warehouse.cancel("stmt-1")
    assert throttling_data_api.requests == 6  # the first try and 5 retries


def test_a_quick_cancel_that_cannot_reach_the_data_api_is_a_refusal_to_try_again(monkeypatch):
    """The quick client's one attempt made no connection: surely not sent, Throttled (the one-call answer's
    cancel_failed); the standard client's retried errors are left as they are (an earlier attempt may have gone out)."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_REDSHIFT_DATA", f"http://127.0.0.1:{port}")
    session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
    warehouse = build_ports(make_settings(), session=session).warehouse
    with pytest.raises(Throttled, match="unreachable") as refused:
        warehouse.cancel("stmt-1", quick=True)
    assert str(port) not in refused.value.message  # a tenant reads it: by its kind, not botocore's URL (leak review)
