"""``make run``: the whole pipeline on this machine, in the foreground, until Ctrl-C.

moto (S3, SQS, EventBridge, SNS, DynamoDB, Secrets Manager), the Redshift Data API emulator on an embedded
PostgreSQL, and every function of template.yaml wired as AWS wires them. Everything binds 127.0.0.1.
Ports: SPECTRA_API_PORT (default 3000), SPECTRA_AWS_PORT (4566), SPECTRA_REDSHIFT_PORT (4567); a busy port falls back to
a free one, and the banner says which. Logs: SPECTRA_LOG_LEVEL (the stack's own, default WARNING) and
SPECTRA_FUNCTION_LOG_LEVEL (the functions' Powertools logs, default WARNING; INFO shows every invocation).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading

import boto3

from local.aws import LOCAL_CREDENTIALS, start_moto
from local.demo import Warehouse, seed_demo
from local.pipeline import CLUSTER_ID, start_pipeline
from local.redshift_data import EmulatorConfig, start_emulator


def _port(variable: str, preferred: int) -> int:
    port = int(os.environ.get(variable, preferred))
    if port == 0:
        return 0
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


def main() -> int:
    # Handlers for both signals, installed before anything starts, rather than KeyboardInterrupt: a process started
    # in the background inherits an ignored SIGINT, and Python then never raises KeyboardInterrupt.
    stopped = threading.Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda *_: stopped.set())
    logging.basicConfig(
        level=os.environ.get("SPECTRA_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log drowns the banner
    aws = start_moto(_port("SPECTRA_AWS_PORT", 4566))
    aws.export()  # the emulator publishes its events to moto with these credentials
    emulator = start_emulator(
        EmulatorConfig(port=_port("SPECTRA_REDSHIFT_PORT", 4567), aws_endpoint_url=aws.endpoint_url, region=aws.region)
    )
    stack = None
    try:
        # the functions log at the template's LogLevel; WARNING keeps the terminal for the banner and real trouble
        function_log_level = os.environ.get("SPECTRA_FUNCTION_LOG_LEVEL", "WARNING")
        stack = start_pipeline(
            aws,
            emulator,
            api_port=_port("SPECTRA_API_PORT", 3000),
            parameter_overrides={"LogLevel": function_log_level},
        )
        from spectra.ports import get_ports

        client = boto3.client(
            "redshift-data", endpoint_url=emulator.endpoint_url, region_name=aws.region, **LOCAL_CREDENTIALS
        )
        demo = seed_demo(Warehouse(client, CLUSTER_ID), get_ports().tenants)
        api = stack.api_url
        print(
            f"""
Spectra is running: API {api}
  local AWS endpoint (moto):   {aws.endpoint_url}   e.g. AWS_ENDPOINT_URL={aws.endpoint_url} aws sqs list-queues
  Redshift Data API emulator:  {emulator.endpoint_url}   (AWS_ENDPOINT_URL_REDSHIFT_DATA)
  event bus for job events:    {stack.physical_id("JobEventBus")}
  demo tenant "{demo.tenant_id}" key:  {demo.api_key}
  demo tenant "{demo.other_tenant_id}" key: {demo.other_api_key}

Try it:
  export SPECTRA_KEY={demo.api_key}
  curl -s -X POST {api}/v1/queries -H "Authorization: Bearer $SPECTRA_KEY" \\
       -H 'Content-Type: application/json' -d '{{"sql": "select id, item, amount from sales order by id"}}'
  curl -s {api}/v1/jobs/<job_id> -H "Authorization: Bearer $SPECTRA_KEY"
  curl -s {api}/v1/jobs/<job_id>/results -H "Authorization: Bearer $SPECTRA_KEY"
  curl -s {api}/v1/openapi.json

Ctrl-C stops everything.""",
            flush=True,
        )
        while not stopped.wait(0.5):
            pass
    finally:
        print("stopping...", file=sys.stderr, flush=True)
        if stack is not None:
            stack.stop()
        emulator.stop()
        aws.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
