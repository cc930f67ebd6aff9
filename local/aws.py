"""AWS emulation for the local stack: moto in server mode on 127.0.0.1.

One moto server serves every service the project touches (S3, SQS, EventBridge, SNS, DynamoDB, Secrets Manager) on one
port. Application code reaches it through the standard ``AWS_ENDPOINT_URL`` variable, exactly as it would reach
LocalStack or AWS itself: there is no local-mode branch anywhere else. Where one server's interpreter lock is what a
load queues for (the burst benchmark), DynamoDB can be served by a moto of its own (:meth:`LocalAws.serving`),
reached through boto3's ``AWS_ENDPOINT_URL_DYNAMODB``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs

import boto3
from moto.moto_server.werkzeug_app import create_backend_app
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from local import moto_dynamodb, moto_s3, moto_speedups
from local.loopback import local_callers_only

REGION = "us-east-1"
# moto accepts any credentials; fixed ones keep the local stack independent of whatever ~/.aws holds.
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass
class LocalAws:
    """A running moto server and a factory for clients pointed at it."""

    endpoint_url: str
    region: str = REGION
    #: services served by another moto (service name → its endpoint), as AWS serves each service apart
    service_endpoints: dict[str, str] = field(default_factory=dict)
    _server: ThreadedMotoServer | None = field(default=None, repr=False)
    _process: subprocess.Popen | None = field(default=None, repr=False)
    _others: list[LocalAws] = field(default_factory=list, repr=False)

    def client(self, service: str, **kwargs):
        return boto3.client(
            service,
            endpoint_url=self.service_endpoints.get(service, self.endpoint_url),
            region_name=self.region,
            **LOCAL_CREDENTIALS,
            **kwargs,
        )

    def serving(self, service: str, other: LocalAws) -> LocalAws:
        """This moto with ``service`` answered by ``other`` (a moto of its own, stopped with this one). Services
        that deliver to each other (S3 and EventBridge to SQS and SNS) stay together; DynamoDB, which the project
        never wires to another service, can go apart, and its requests then stop queueing for the same interpreter
        lock as everything else's."""
        self.service_endpoints[service] = other.endpoint_url
        self._others.append(other)
        return self

    def environment(self) -> dict[str, str]:
        """The variables that point boto3 (and the aws CLI) at this server, and at the services served apart
        (boto3's ``AWS_ENDPOINT_URL_<SERVICE>``)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            **{
                f"AWS_ENDPOINT_URL_{name.upper().replace('-', '_')}": url
                for name, url in self.service_endpoints.items()
            },
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": LOCAL_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": LOCAL_CREDENTIALS["aws_secret_access_key"],
        }

    def export(self) -> None:
        """Point this process's boto3 clients at the server (the local stack runs functions in-process)."""
        os.environ.update(self.environment())

    @property
    def pid(self) -> int:
        """The process serving moto: this one, or the one :func:`start_moto_process` started."""
        return self._process.pid if self._process is not None else os.getpid()

    def requests_served(self) -> Counter[str]:
        """How many requests of each ``service:Operation`` this moto and the ones serving apart have answered since
        they started (:func:`counted`): the burst benchmark reads it before and after a burst."""
        return self._counts(CALLS_PATH)

    def _endpoints(self) -> list[str]:
        """This moto's URL and the ones serving apart (:meth:`serving`)."""
        return [self.endpoint_url, *(other.endpoint_url for other in self._others)]

    def _counts(self, path: str, method: str = "GET") -> Counter[str]:
        """The counts by ``service:Operation`` that ``path`` answers on every endpoint, added up."""
        counts: Counter[str] = Counter()
        for url in self._endpoints():
            with urllib.request.urlopen(urllib.request.Request(url + path, method=method), timeout=10) as answer:
                counts.update(json.load(answer))
        return counts

    def fail(self, *faults: ServiceFault) -> None:
        """Make this moto (and the ones serving apart) answer requests with ``faults`` (:func:`failing`) until each
        one's ``until``; added to those already set."""
        body = json.dumps({"faults": [asdict(fault) for fault in faults]}).encode()
        for url in self._endpoints():
            request = urllib.request.Request(url + FAULTS_PATH, data=body, method="POST")
            urllib.request.urlopen(request, timeout=10).close()

    def recover(self) -> Counter[str]:
        """Take every fault :meth:`fail` set away; the requests they failed, by ``service:Operation``."""
        return self._counts(FAULTS_PATH, "DELETE")

    def failures(self) -> Counter[str]:
        """The requests the faults have failed so far, by ``service:Operation``, the faults left as they are."""
        return self._counts(FAULTS_PATH)

    def pid_of(self, service: str) -> int:
        """The process serving ``service``: the other moto's when :meth:`serving` moved it there, else :attr:`pid`."""
        url = self.service_endpoints.get(service)
        return next((other.pid for other in self._others if other.endpoint_url == url), self.pid)

    def stop(self) -> None:
        for other in self._others:
            other.stop()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._process is not None:
            self._process.stdin.close()  # the server's signal to stop (see main)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


def unsupported_operations(app):
    """WSGI middleware: an action moto has not implemented is answered 501 ``UnsupportedOperation`` (a JSON error
    botocore reads), as AWS answers an operation a service does not support, instead of moto's bare HTML 500 page,
    which a client cannot tell from a fault worth retrying. Callers with a fallback for missing features (SQS
    message move tasks in ``spectra.admin``) can then take it."""

    def middleware(environ, start_response):
        try:
            return app(environ, start_response)
        except NotImplementedError as exc:
            body = json.dumps({"__type": "UnsupportedOperation", "message": str(exc)}).encode()
            start_response(
                "501 Not Implemented",
                [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(body)))],
            )
            return [body]

    return middleware


#: Where a local moto answers ``GET`` with the requests it has served, by ``service:Operation`` (:func:`counted`).
#: No AWS API has this path.
CALLS_PATH = "/_spectra/calls"


def counted(app):
    """WSGI middleware: count each request by ``service:Operation`` and answer ``GET`` :data:`CALLS_PATH` with the
    counts, so a benchmark reports the calls a run made from the run itself. The service comes from the request's
    SigV4 credential scope; the operation from ``X-Amz-Target`` (JSON protocols: DynamoDB, SQS, EventBridge), else a
    form body's or the query string's ``Action`` (SNS), else the method (S3's REST calls, e.g. ``s3:PUT``)."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def middleware(environ, start_response):
        if environ.get("PATH_INFO") == CALLS_PATH and environ.get("REQUEST_METHOD") == "GET":
            with lock:
                body = json.dumps(counts).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        name = _operation(environ)
        with lock:
            counts[name] += 1
        return app(environ, start_response)

    return middleware


#: Where a local moto takes the faults :func:`failing` answers with (``POST {"faults": [...]}`` adds,
#: ``GET`` answers how many requests they failed, ``DELETE`` that too and takes them all away). No AWS API has this
#: path.
FAULTS_PATH = "/_spectra/faults"


@dataclass(frozen=True)
class ServiceFault:
    """A service misbehaving for a while: its requests (those naming ``resource``, when given: a table, a bucket, a
    queue, an event bus) answered ``status`` with ``body`` and ``headers``, as AWS sends the error, a ``fraction`` of
    them at random, until ``until`` (epoch seconds). Build one with :func:`dynamodb_error`, :func:`s3_error`,
    :func:`json_error`."""

    service: str  # as SigV4 scopes it: dynamodb, s3, sqs, events, sns
    status: int
    body: str
    headers: dict[str, str]
    until: float
    fraction: float = 1.0
    resource: str | None = None


def dynamodb_error(code: str, *, seconds: float, status: int = 400, **options) -> ServiceFault:
    """DynamoDB's error: ``ProvisionedThroughputExceededException`` and ``ThrottlingException`` are 400s,
    ``InternalServerError`` a 500; botocore reads the code after the ``#`` of ``__type``."""
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": f"{code} (local fault)"})
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "local-fault"}
    return ServiceFault("dynamodb", status, body, headers, until=time.time() + seconds, **options)


def json_error(service: str, code: str, *, seconds: float, status: int = 500, **options) -> ServiceFault:
    """An error of a JSON-protocol service (SQS's ``InternalError``, EventBridge's ``InternalException``); SQS,
    which spoke the query protocol before, also names its code in ``x-amzn-query-error``, as AWS does."""
    body = json.dumps({"__type": code, "message": f"{code} (local fault)"})
    headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": "local-fault"}
    if service == "sqs":
        headers["x-amzn-query-error"] = f"{code};{'Receiver' if status >= 500 else 'Sender'}"
    return ServiceFault(service, status, body, headers, until=time.time() + seconds, **options)


def s3_error(code: str = "SlowDown", *, seconds: float, status: int = 503, **options) -> ServiceFault:
    """S3's XML error: ``SlowDown`` is a 503 ("Please reduce your request rate.")."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>Please reduce your request rate.</Message>"
        "<RequestId>local-fault</RequestId><HostId>local-fault</HostId></Error>"
    )
    headers = {"Content-Type": "application/xml", "x-amz-request-id": "local-fault"}
    return ServiceFault("s3", status, body, headers, until=time.time() + seconds, **options)


def failing(app):
    """WSGI middleware: requests a :class:`ServiceFault` set through :data:`FAULTS_PATH` matches are answered with
    its error instead of moto's answer, so the fault suite can have DynamoDB throttle a table, S3 answer SlowDown on
    a bucket or SQS and EventBridge fail on their side for a while, as AWS services do, and watch the pipeline ride
    it out. A request is matched by its SigV4 service and, for a fault naming a resource, by that name in its path,
    host or body; the body is read (and put back for moto) only then."""
    faults: list[ServiceFault] = []
    failed: Counter[str] = Counter()
    lock = threading.Lock()

    def answer(start_response, status: int, body: bytes, headers: dict[str, str]):
        start_response(f"{status} {HTTPStatus(status).phrase}", [*headers.items(), ("Content-Length", str(len(body)))])
        return [body]

    def middleware(environ, start_response):
        if environ.get("PATH_INFO") == FAULTS_PATH:
            method = environ.get("REQUEST_METHOD")
            with lock:
                if method == "POST":
                    length = int(environ.get("CONTENT_LENGTH") or 0)
                    faults.extend(ServiceFault(**f) for f in json.loads(environ["wsgi.input"].read(length))["faults"])
                    return answer(start_response, 200, b"{}", {"Content-Type": "application/json"})
                if method in ("GET", "DELETE"):
                    body = json.dumps(failed).encode()
                    if method == "DELETE":
                        faults.clear()
                        failed.clear()
                    return answer(start_response, 200, body, {"Content-Type": "application/json"})
        with lock:
            now = time.time()
            faults[:] = [fault for fault in faults if fault.until > now]
            candidates = list(faults)
        if not candidates:
            return app(environ, start_response)
        service = _service(environ)
        candidates = [fault for fault in candidates if fault.service == service]
        if not candidates:
            return app(environ, start_response)
        named = environ.get("HTTP_HOST", "") + environ.get("PATH_INFO", "") + "?" + environ.get("QUERY_STRING", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length and any(fault.resource and not _names(named, fault.resource) for fault in candidates):
            # a body of a known length is read and put back for moto; one without (chunked) is left alone, unread,
            # and names no resource: reading it by a length it does not have would store an empty object
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            named += body.decode("utf-8", "replace")
        for fault in candidates:
            if (fault.resource is None or _names(named, fault.resource)) and random.random() < fault.fraction:
                operation = _operation(environ)
                if length:  # read what the client sent before answering, so the server does not reset on it
                    environ["wsgi.input"].read(length)
                with lock:
                    failed[operation] += 1
                return answer(start_response, fault.status, fault.body.encode(), fault.headers)
        return app(environ, start_response)

    return middleware


def _names(text: str, resource: str) -> bool:
    """Whether ``text`` names ``resource`` whole (table ``jobs`` is not named by ``jobs-archive``)."""
    return re.search(rf"(?<![\w.-]){re.escape(resource)}(?![\w.-])", text) is not None


#: Content types a client sends for a form, which moto's S3 takes a PUT's body for
FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def s3_puts_kept_whole(app):
    """WSGI middleware: an S3 PUT sent with a form's Content-Type reaches moto as ``application/octet-stream``. S3
    stores a PUT's body whatever its type; moto's S3 parses such a body as a form, stores an empty object and answers
    200. curl sends ``application/x-www-form-urlencoded`` with ``--data-binary`` unless told otherwise, so a file PUT
    that way to a drop URL became a job failed "empty" on the local stack where AWS would have loaded it. The object
    is stored as ``application/octet-stream`` (what S3 would keep, the form's type, says nothing true of the bytes)."""

    def middleware(environ, start_response):
        if (
            environ.get("REQUEST_METHOD") == "PUT"
            and environ.get("CONTENT_TYPE", "").lower().startswith(FORM_CONTENT_TYPES)
            and _service(environ) in ("s3", "unsigned")  # SigV2: boto3's default for an S3 URL
        ):
            environ["CONTENT_TYPE"] = "application/octet-stream"
        return app(environ, start_response)

    return middleware


def presigned_headers_sent(app):
    """WSGI middleware: a presigned request without a header its URL signs is refused 403 ``SignatureDoesNotMatch``,
    as S3 refuses it (the signature covers each header named in ``X-Amz-SignedHeaders``, so one left out changes
    what S3 computes). moto checks no signature, and took such a PUT: a drop URL's file put without the answer's
    ``x-amz-meta-*`` headers loaded as an insert where its URL signed an upsert, and an upload URL put twice without
    its ``If-None-Match: *`` was written twice, where AWS refuses both. The headers' values are not checked (that
    needs the signer's secret key): the mistake this catches is leaving them out, as the README's "send the
    returned headers" warns against."""

    def middleware(environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""))
        signed = query.get("X-Amz-SignedHeaders", [""])[0]
        missing = [name for name in signed.lower().split(";") if name and _header(environ, name) is None]
        if not missing or "X-Amz-Signature" not in query:
            return app(environ, start_response)
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>The request'
            " signature we calculated does not match the signature you provided. Check your key and signing method."
            f" (the URL signs these headers, which the request did not send: {', '.join(missing)})</Message></Error>"
        ).encode()
        start_response("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
        return [body]

    return middleware


def _header(environ, name: str) -> str | None:
    """A request header's value by its lower-case name, as WSGI keeps it (``CONTENT_TYPE``, ``HTTP_X_AMZ_...``)."""
    key = name.upper().replace("-", "_")
    return environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}")


def _service(environ) -> str:
    """The service a request is for, from its SigV4 credential scope (a header's, or a presigned URL's); "unsigned"
    for a request without one (anonymous, or signed the older way, SigV2)."""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    scope = (
        authorization.partition("Credential=")[2]
        or parse_qs(environ.get("QUERY_STRING", "")).get("X-Amz-Credential", [""])[0]
    )
    parts = scope.split(",")[0].split("/")
    return parts[3] if len(parts) > 3 else "unsigned"


def _operation(environ) -> str:
    service = _service(environ)
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return f"{service}:{target.rpartition('.')[2]}"
    action = parse_qs(environ.get("QUERY_STRING", "")).get("Action")
    length = environ.get("CONTENT_LENGTH")
    if action is None and length and environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        body = environ["wsgi.input"].read(int(length))
        environ["wsgi.input"] = io.BytesIO(body)  # read once here, and again by moto
        action = parse_qs(body.decode("utf-8", "replace")).get("Action")
    return f"{service}:{action[0] if action else environ.get('REQUEST_METHOD', '?')}"


class _MotoServer(ThreadedMotoServer):
    failed: BaseException | None = None

    def _server_entry(self) -> None:  # moto's own, with the middleware around its application
        app = moto_speedups.RoutingCache(create_backend_app)
        app = counted(unsupported_operations(app))
        app = local_callers_only(presigned_headers_sent(s3_puts_kept_whole(failing(app))))
        try:
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=moto_speedups.RequestHandler
            )
        except BaseException as exc:  # werkzeug exits the thread (SystemExit) when the port is taken
            # moto's start() waits for the ready event with no timeout: unset, the process hung for good, deaf to
            # Ctrl-C (a second `make run` binding the port between its probe and moto's bind)
            self.failed = exc
            self._server_ready_event.set()
            return
        self._server_ready_event.set()
        self._server.serve_forever()


def start_moto(port: int = 0) -> LocalAws:
    """Start moto on 127.0.0.1 (``port=0``: any free port) and return once it accepts requests."""
    # moto logs every request through werkzeug at INFO; keep its warnings, drop the request log.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto_dynamodb.install()  # DynamoDB's transactions, not moto's (local/moto_dynamodb.py)
    moto_speedups.install()  # its hot paths made cheaper, answers unchanged (local/moto_speedups.py)
    moto_s3.install()  # object events carry S3's sequencer (local/moto_s3.py)
    server = _MotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    if server.failed is not None:
        raise RuntimeError(f"moto could not serve on 127.0.0.1:{port} (is the port taken?): {server.failed!r}")
    actual_port = server._server.server_port  # moto exposes no public accessor for a port chosen by the OS
    return LocalAws(endpoint_url=f"http://127.0.0.1:{actual_port}", _server=server)


def start_moto_process(port: int = 0) -> LocalAws:
    """:func:`start_moto` in a process of its own (``python -m local.aws``), which stops when this one closes its
    stdin or dies. AWS's services run apart from their callers; a moto in the caller's process shares one
    interpreter lock with everything else there (the Data API emulator, the clients), which is what a burst of
    requests then queues for (``bench/bench_burst.py``)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "local.aws", "--port", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    if not line.startswith(_READY):
        process.kill()
        raise RuntimeError(f"moto did not start: {line!r}")
    return LocalAws(endpoint_url=line[len(_READY) :].strip(), _process=process)


_READY = "moto serving on "


def main(argv: list[str] | None = None) -> None:
    """Serve moto until stdin closes (the parent process stopped it, or died)."""
    parser = argparse.ArgumentParser(description="moto for the local stack, until stdin closes")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    aws = start_moto(args.port)
    print(_READY + aws.endpoint_url, flush=True)
    try:
        sys.stdin.read()
    finally:
        aws.stop()


if __name__ == "__main__":
    main()
