"""``make run``: the whole pipeline on this machine, in the foreground, until Ctrl-C.

moto (S3, SQS, EventBridge, SNS, DynamoDB, Secrets Manager), the Redshift Data API emulator on an embedded
PostgreSQL, and every function of template.yaml wired as AWS wires them. Everything binds 127.0.0.1.
Ports: SPECTRA_API_PORT (default 3000), SPECTRA_AWS_PORT (4566), SPECTRA_REDSHIFT_PORT (4567); a busy port falls back to
a free one, and the banner says which. Logs: SPECTRA_LOG_LEVEL (the stack's own, default WARNING) and
SPECTRA_FUNCTION_LOG_LEVEL (the functions' Powertools logs, default WARNING; INFO shows every invocation).

The stack's resources are written to a state file (``--state``, default ``$SPECTRA_STATE_FILE`` or
``<temp>/spectra-local/spectra-local.json``), so the functions can also run in a process of their own, attached to
the moto and emulator that are already running, without provisioning again:

    .venv/bin/python -m local --functions-only --aws http://127.0.0.1:4566 --redshift http://127.0.0.1:4567
        [--state FILE] [--aws-service dynamodb=URL] [--api-port N | --no-api] [--schedule-interval S]
        [--receive-visibility S]

(``--aws-service``: a service that a moto of its own serves, as :meth:`local.aws.LocalAws.serving` sets up.)

That process can be killed (even with SIGKILL) and started again against the same queues and tables: what it had
in flight comes back through SQS (after ``--receive-visibility`` seconds, a local speed-up over the queues' own
visibility timeouts), and the reconciler's schedule picks up the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import boto3
from botocore.exceptions import EndpointConnectionError

from local import lines
from local.aws import LOCAL_CREDENTIALS, REGION, LocalAws, start_moto
from local.demo import Warehouse, seed_demo
from local.pipeline import CLUSTER_ID, attach_pipeline, start_pipeline
from local.redshift_data import EmulatorConfig, start_emulator
from local.runner.state import StackState, default_state_file, forget
from local.runner.template import DEFAULT_STACK_NAME, TemplateError
from spectra.cli import whole_number

#: The ports asked for that were taken, so a free one was used instead (the banner says so: README's commands name
#: the defaults, which would then reach whatever holds them).
_busy: list[str] = []


#: The port variables and their defaults, in the order their servers start.
_PORTS = {"SPECTRA_AWS_PORT": 4566, "SPECTRA_REDSHIFT_PORT": 4567, "SPECTRA_API_PORT": 3000}


def _asked_port(variable: str, preferred: int) -> int:
    """The port ``variable`` asks for; one that is no port stops the run in a line (main checks all of them before
    anything starts: int() and bind() answered a typo with a traceback, moto already running)."""
    raw = os.environ.get(variable, "").strip()
    try:
        port = int(raw) if raw else preferred
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise SystemExit(f"{variable}={raw!r} is not a port: give one from 1 to 65535, or 0 for any free port")
    return port


def _port(variable: str, preferred: int) -> int:
    """The port to bind, probed just before its server starts (so one an earlier server of the stack took, two
    variables naming one port, is busy too and a free one is used instead), or 0 for any free port."""
    port = _asked_port(variable, preferred)
    if port == 0:
        return 0
    with socket.socket() as probe:
        # as the servers bind: a port a stopped stack left in TIME_WAIT is free for them, a listener's is not
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            _busy.append(f"{port} ({variable})")
            return 0
    return port


def busy_note() -> str:
    """The banner's word on ports that were taken, or nothing."""
    if not _busy:
        return ""
    return (
        f"  Busy, so not used: {', '.join(_busy)}. Use the addresses above, not the defaults in README's commands"
        " (or free those ports, or set those variables).\n"
    )


def banner(stack, aws, redshift_url: str, demo) -> str:
    """What a newcomer reads: where everything listens, the demo keys, and commands that work as pasted (the AWS CLI
    is the project's own, with the local endpoint, region and dummy credentials on the same line)."""
    api = stack.api_url
    aws_cli = (
        f"AWS_ENDPOINT_URL={aws.endpoint_url} AWS_DEFAULT_REGION={aws.region} AWS_ACCESS_KEY_ID=testing "
        f"AWS_SECRET_ACCESS_KEY=testing {Path(sys.executable).parent / 'aws'}"
    )
    auth = '-H "Authorization: Bearer $SPECTRA_KEY"'
    json_body = "-H 'Content-Type: application/json'"
    ingest = stack.physical_id("IngestBucket")
    table = demo.bulk_table
    # Below, "\\" ends a shell line ("\" and a newline are printed); a lone "\" joins two source lines into one printed
    # line (inside a JSON body, where the shell would keep a backslash).
    return f"""
Spectra is running: API {api}
  local AWS endpoint (moto):   {aws.endpoint_url}   (region {aws.region}, any credentials)
  Redshift Data API emulator:  {redshift_url}   (AWS_ENDPOINT_URL_REDSHIFT_DATA)
  event bus for job events:    {stack.physical_id("JobEventBus")}
  ingest bucket (S3 drops):    {ingest}
  demo tenant "{demo.tenant_id}" key:  {demo.api_key}
  demo tenant "{demo.other_tenant_id}" key: {demo.other_api_key}
{busy_note()}
Query (SQL over REST):
  export SPECTRA_KEY={demo.api_key}
  QUERY=$(curl -s -X POST {api}/v1/queries {auth} {json_body} \\
          -d '{{"sql": "select id, item, amount from sales order by id"}}' \\
          | python3 -c 'import json, sys; print(json.load(sys.stdin)["job_id"])')
  while curl -s {api}/v1/jobs/$QUERY {auth} | grep -Eq '"status":"(QUEUED|SUBMITTED)"'; do sleep 1; done
  curl -s {api}/v1/jobs/$QUERY {auth}
  curl -s {api}/v1/jobs/$QUERY/results {auth}

Query in one call (the rows come back when the query ends within wait_timeout seconds; typed parameters):
  curl -s -X POST {api}/v1/queries {auth} {json_body} \\
       -d '{{"sql": "select item, amount from sales where amount > :min order by id", \
"parameters": [{{"name": "min", "value": 100}}], "wait_timeout": 10}}'

Load a CSV by dropping it in S3 (the "{table}" table; rows land as tenant "{demo.tenant_id}"):
  printf 'email,name,city\\nbugs@acme.test,Bugs Bunny,Burrow\\n' > new-contacts.csv
  {aws_cli} s3 cp new-contacts.csv s3://{ingest}/{demo.tenant_id}/{table}/
  curl -s "{api}/v1/bulk/jobs?limit=5" {auth}

Load with the Bulk API (Salesforce Bulk 2.0's workflow; here an upsert on email):
  JOB=$(curl -s -X POST {api}/v1/bulk/jobs {auth} {json_body} \\
        -d '{{"object": "{table}", "operation": "upsert", "externalIdFieldName": "email"}}' \\
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
  printf 'email,name,city\\nwile@acme.test,Wile E. Coyote,Mesa\\n' | curl -s -X PUT {api}/v1/bulk/jobs/$JOB/batches \\
       {auth} -H 'Content-Type: text/csv' --data-binary @-
  curl -s -X PATCH {api}/v1/bulk/jobs/$JOB {auth} {json_body} -d '{{"state": "UploadComplete"}}'
  while curl -s {api}/v1/bulk/jobs/$JOB {auth} | grep -Eq '"state":"(UploadComplete|InProgress)"'; do sleep 1; done
  curl -s {api}/v1/bulk/jobs/$JOB {auth}
  curl -s {api}/v1/bulk/jobs/$JOB/successfulResults {auth}

The API, documented: {api}/v1/docs (Swagger UI; Authorize with the key) and {api}/v1/openapi.json

Ctrl-C stops everything."""


def _positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds above 0")
    return seconds


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", type=Path, help="the stack state file (default: see above)")
    parser.add_argument("--functions-only", action="store_true", help="run only the functions, attached to a stack")
    parser.add_argument("--aws", help="the running moto endpoint (--functions-only)")
    parser.add_argument(
        "--aws-service",
        action="append",
        default=[],
        metavar="SERVICE=URL",
        help="a service served by another moto, e.g. dynamodb=http://127.0.0.1:4570 (--functions-only; repeatable)",
    )
    parser.add_argument("--redshift", help="the running Data API emulator endpoint (--functions-only)")
    # bounded as the SPECTRA_*_PORT variables are: unbounded, -1 would be a traceback, 70000 would wrap to another
    # port, and a schedule interval of -1 or nan would run the reconciler back to back
    parser.add_argument(
        "--api-port", type=whole_number(0, 65535), help="port of the API (--functions-only; default any free port)"
    )
    parser.add_argument("--no-api", action="store_true", help="do not serve the API (--functions-only)")
    parser.add_argument(
        "--schedule-interval", type=_positive_seconds, help="seconds between schedule firings (local speed-up)"
    )
    parser.add_argument(
        "--receive-visibility",
        type=whole_number(1),
        help="seconds a received message stays invisible, renewed while handled",
    )
    args = parser.parse_args(argv)
    state = args.state or default_state_file(DEFAULT_STACK_NAME)
    if state.is_dir():
        named = f"--state {state}" if args.state else f"SPECTRA_STATE_FILE={state}"
        parser.error(f"{named} is a directory: name the state file (it is written there)")
    if args.functions_only and not (args.aws and args.redshift):
        parser.error("--functions-only needs --aws and --redshift: the endpoints of the running moto and emulator")
    if not args.functions_only and (
        args.aws or args.aws_service or args.redshift or args.no_api or args.api_port is not None
    ):
        parser.error("--aws, --aws-service, --redshift, --api-port and --no-api go with --functions-only")
    if args.no_api and args.api_port is not None:
        parser.error("--api-port and --no-api: the one serves the API on a port, the other does not serve it")
    if any("=" not in entry for entry in args.aws_service):
        parser.error("--aws-service takes SERVICE=URL")
    return args


def _until_stopped() -> threading.Event:
    """An event set by SIGINT, SIGTERM or SIGHUP (the terminal closed, an SSH session dropped: unhandled, it killed
    this process without stopping the embedded PostgreSQL, left running with its data in memory). Handlers,
    installed before anything starts, rather than KeyboardInterrupt: a process started in the background inherits an
    ignored SIGINT, and Python then never raises KeyboardInterrupt."""
    stopped = threading.Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, lambda *_: stopped.set())
    return stopped


def functions_only(args: argparse.Namespace) -> int:
    """The functions of an already provisioned stack, in this process, until SIGINT or SIGTERM."""
    stopped = _until_stopped()
    try:
        state = StackState.load(args.state or default_state_file(DEFAULT_STACK_NAME))
        services = dict(entry.split("=", 1) for entry in args.aws_service)
        aws = LocalAws(endpoint_url=args.aws, region=state.region or REGION, service_endpoints=services)
        aws.export()
        stack = attach_pipeline(
            aws,
            args.redshift,
            state,
            api_port=args.api_port or 0,
            serve_api=not args.no_api,
            schedule_interval_seconds=args.schedule_interval,
            receive_visibility_seconds=args.receive_visibility,
        )
    except (TemplateError, EndpointConnectionError) as exc:
        # no stack to attach to (no state file, or its moto gone): say so in one line, not a traceback
        hint = " (is the stack's moto running there?)" if isinstance(exc, EndpointConnectionError) else ""
        print(f"python -m local --functions-only: {exc}{hint}", file=sys.stderr, flush=True)
        return 2
    try:
        api = "none" if args.no_api else stack.api_url
        print(
            f"Spectra functions are running: stack {state.stack_name}, API {api}, "
            f"{len(stack.pollers)} queue pollers, {len(stack.schedules)} schedules",
            flush=True,
        )
        while not stopped.wait(0.5):
            pass
    finally:
        print("stopping...", file=sys.stderr, flush=True)
        stack.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    lines.install()  # the functions share this process's output: each line whole (local/lines.py)
    logging.basicConfig(
        level=os.environ.get("SPECTRA_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log drowns the banner
    if args.functions_only:
        return functions_only(args)
    stopped = _until_stopped()
    for variable, preferred in _PORTS.items():
        _asked_port(variable, preferred)
    aws = start_moto(_port("SPECTRA_AWS_PORT", _PORTS["SPECTRA_AWS_PORT"]))
    aws.export()  # the emulator publishes its events to moto with these credentials
    emulator = start_emulator(
        EmulatorConfig(
            port=_port("SPECTRA_REDSHIFT_PORT", _PORTS["SPECTRA_REDSHIFT_PORT"]),
            aws_endpoint_url=aws.endpoint_url,
            region=aws.region,
        )
    )
    stack = None
    state_file = args.state or default_state_file(DEFAULT_STACK_NAME)
    try:
        # the functions log at the template's LogLevel; WARNING keeps the terminal for the banner and real trouble
        function_log_level = os.environ.get("SPECTRA_FUNCTION_LOG_LEVEL", "WARNING")
        stack = start_pipeline(
            aws,
            emulator,
            api_port=_port("SPECTRA_API_PORT", _PORTS["SPECTRA_API_PORT"]),
            parameter_overrides={"LogLevel": function_log_level},
            state_file=state_file,
            schedule_interval_seconds=args.schedule_interval,
            receive_visibility_seconds=args.receive_visibility,
        )
        from spectra.ports import get_ports

        client = boto3.client(
            "redshift-data", endpoint_url=emulator.endpoint_url, region_name=aws.region, **LOCAL_CREDENTIALS
        )
        demo = seed_demo(Warehouse(client, CLUSTER_ID), get_ports().tenants)
        print(banner(stack, aws, emulator.endpoint_url, demo), flush=True)
        while not stopped.wait(0.5):
            pass
    finally:
        with contextlib.suppress(OSError):  # the terminal is gone (SIGHUP): the stack is stopped all the same
            print("stopping...", file=sys.stderr, flush=True)
        if stack is not None:
            stack.stop()
            forget(state_file, aws.endpoint_url)  # unless a stack started since has written its own there
        emulator.stop()
        aws.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
