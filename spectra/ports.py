"""Wiring: the ports every function uses, built once per process from settings and boto3 clients.

boto3 reads the standard endpoint variables itself (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_REDSHIFT_DATA``, ...),
so the same code talks to AWS, LocalStack or the local stack without a branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import boto3
from botocore.config import Config

from spectra.job_queue import JobQueue
from spectra.job_store import JobStore
from spectra.publisher import EventPublisher
from spectra.results import ResultSink
from spectra.settings import Settings, get_settings
from spectra.share import RunningSlots
from spectra.tenants import TenantDirectory
from spectra.warehouse import StatementRunner

# Standard retry mode backs off on throttling; the SQS redrive is the outer retry for anything still failing.
_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)


@dataclass(frozen=True)
class Ports:
    settings: Settings
    jobs: JobStore
    tenants: TenantDirectory
    queue: JobQueue
    warehouse: StatementRunner
    results: ResultSink
    events: EventPublisher
    slots: RunningSlots
    #: the boto3 clients behind the ports, for instrumentation (call counts in benchmarks, the IAM test)
    clients: tuple = ()


def build_ports(settings: Settings, session: boto3.session.Session | None = None) -> Ports:
    session = session or boto3.session.Session()
    clients = []

    def client(name: str):
        clients.append(session.client(name, config=_CLIENT_CONFIG))
        return clients[-1]

    dynamodb = client("dynamodb")
    return Ports(
        settings=settings,
        jobs=JobStore(dynamodb, settings.jobs_table),
        tenants=TenantDirectory(dynamodb, settings.tenants_table),
        queue=JobQueue(client("sqs"), settings.jobs_queue_url),
        warehouse=StatementRunner(
            client("redshift-data"),
            database=settings.redshift_database,
            cluster_id=settings.redshift_cluster_id,
            workgroup=settings.redshift_workgroup,
        ),
        results=ResultSink(
            client("s3"),
            settings.results_bucket,
            part_max_rows=settings.result_part_max_rows,
            inline_max_rows=settings.inline_max_rows,
            inline_max_bytes=settings.inline_max_bytes,
        ),
        events=EventPublisher(client("events"), settings.event_bus_name),
        slots=RunningSlots(dynamodb, settings.tenants_table),
        clients=tuple(clients),
    )


@lru_cache(maxsize=1)
def get_ports() -> Ports:
    """The process's ports, created on first use (inside a handler, never at import)."""
    return build_ports(get_settings())
