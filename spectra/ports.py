"""Wiring: the ports every function uses, built once per process from settings and boto3 clients.

boto3 reads the standard endpoint variables itself (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_REDSHIFT_DATA``, ...),
so the same code talks to AWS, LocalStack or the local stack without a branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cache

import boto3
from botocore.config import Config

from spectra.auth import JwtVerifier
from spectra.bulk.files import BulkFiles
from spectra.bulk.store import BulkJobStore
from spectra.dynamo import retry_passing_refusals
from spectra.job_queue import JobQueue
from spectra.job_store import JobStore
from spectra.notify.channels import DeliveryQueue, EventTopic
from spectra.notify.store import SubscriptionStore
from spectra.notify.transport import WebhookTransport
from spectra.notify.urls import UrlPolicy
from spectra.publisher import EventPublisher
from spectra.results import ResultSink
from spectra.settings import Settings, get_settings
from spectra.share import RunningSlots
from spectra.tenants import TenantDirectory
from spectra.tokens import PageTokens, SecretKey
from spectra.waits import WaitLeases
from spectra.warehouse import StatementRunner


class Budget(StrEnum):
    """How long a function's AWS calls keep trying, by who waits for its answer (:func:`get_ports`)."""

    #: A queue's consumer, a schedule: six tries in standard retry mode, backing off up to 20 s between (at most
    #: about 30 s in all), and the queue's redelivery is the outer retry for what still fails.
    QUEUE = "queue"
    #: An API request or the authorizer, whose caller API Gateway holds (29 s, the authorizer's 10 s Timeout): three
    #: tries, at most 1 s then 2 s of backoff, then the client's 503 with Retry-After. The queue's budget spent one
    #: failing call's retries for up to 30 s: a one-call query against a failing table was API Gateway's 504
    #: after 29 s, and the authorizer ran past its Timeout (tests/e2e/test_client_budget.py).
    CLIENT = "client"


#: The budgets differ in tries alone: a call that hangs is cut off by the caller's own limit either way (the API's
#: 504, the authorizer's Timeout), and shorter read timeouts would cut off a slow large upload too.
_BUDGETS = {
    Budget.QUEUE: Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30),
    Budget.CLIENT: Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=30),
}
#: For a call a client waits for within the few seconds an API request has left (the cancel after a one-call query's
#: wait, which leaves 3 s): one try, short timeouts. The standard client tries six times with backoff between
#: (tests/integration/pipeline/test_quick_cancel.py counts both), which against a throttling Data API can outlast
#: API Gateway's 29 s: the client got a 5xx instead of its job.
_QUICK_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=1, read_timeout=1.5)


@dataclass(frozen=True)
class BulkPorts:
    """What bulk jobs use beside the shared ports: their store, their files, and the queue of result-file work."""

    jobs: BulkJobStore
    files: BulkFiles
    results_queue: JobQueue


@dataclass(frozen=True)
class NotifyPorts:
    """What notifications use: the subscriptions, where a webhook may point, and (in the consumers that need them)
    the delivery queue, the SNS topic and the HTTP transport."""

    subscriptions: SubscriptionStore
    urls: UrlPolicy
    transport: WebhookTransport
    deliveries: DeliveryQueue | None = None
    topic: EventTopic | None = None


@dataclass(frozen=True)
class Ports:
    settings: Settings
    jobs: JobStore
    tenants: TenantDirectory
    queue: JobQueue
    warehouse: StatementRunner
    results: ResultSink
    events: EventPublisher
    #: signs and checks the API's page tokens; its key is read from Secrets Manager on first use
    page_tokens: PageTokens
    #: each tenant's running statements (spectra/share.py)
    slots: RunningSlots
    #: each tenant's one-call queries waiting (spectra/waits.py)
    waits: WaitLeases
    #: None in a function the template gives no bulk resources
    bulk: BulkPorts | None = None
    #: the boto3 clients behind the ports, for instrumentation (call counts in benchmarks, the IAM test)
    clients: tuple = ()
    #: JWT bearer tokens beside API keys (spectra/auth.py); None while JWTs are not configured
    jwt: JwtVerifier | None = None
    #: None in a function the template gives no notification resources
    notify: NotifyPorts | None = None


def build_ports(
    settings: Settings, session: boto3.session.Session | None = None, budget: Budget = Budget.QUEUE
) -> Ports:
    session = session or boto3.session.Session()
    clients = []
    base = _BUDGETS[budget]

    def client(name: str, config: Config | None = None):
        clients.append(session.client(name, config=base.merge(config) if config else base))
        return clients[-1]

    dynamodb = client("dynamodb")
    retry_passing_refusals(dynamodb)
    sqs = client("sqs")
    # SigV4 for presigned URLs too (botocore still presigns with SigV2 unless told; AWS requires SigV4), on the
    # bucket's regional virtual host (auto addressing presigns for the global one, which a bucket outside us-east-1
    # may answer with a redirect the signature does not survive; in us-east-1, too, unless told). IP endpoints stay
    # path-style.
    regional = {"addressing_style": "virtual", "us_east_1_regional_endpoint": "regional"}
    s3 = client("s3", Config(signature_version="s3v4", s3=regional))
    bulk = None
    if settings.bulk_jobs_table:
        bulk = BulkPorts(
            jobs=BulkJobStore(dynamodb, settings.bulk_jobs_table),
            files=BulkFiles(s3, results_bucket=settings.results_bucket, ingest_bucket=settings.ingest_bucket),
            results_queue=JobQueue(sqs, settings.bulk_results_queue_url),
        )
    notify = None
    if settings.subscriptions_table:
        urls = UrlPolicy(allow_loopback=settings.webhook_allow_loopback)
        notify = NotifyPorts(
            subscriptions=SubscriptionStore(dynamodb, settings.subscriptions_table),
            urls=urls,
            transport=WebhookTransport(urls, timeout=settings.webhook_timeout_seconds),
            deliveries=DeliveryQueue(sqs, settings.webhook_delivery_queue_url, settings.webhook_dead_letter_queue_url)
            if settings.webhook_delivery_queue_url
            else None,
            topic=EventTopic(client("sns"), settings.notify_topic_arn) if settings.notify_topic_arn else None,
        )
    return Ports(
        settings=settings,
        jobs=JobStore(dynamodb, settings.jobs_table),
        tenants=TenantDirectory(dynamodb, settings.tenants_table, settings.subscriptions_table or None),
        queue=JobQueue(sqs, settings.jobs_queue_url),
        warehouse=StatementRunner(
            client("redshift-data"),
            quick_client=client("redshift-data", _QUICK_CONFIG),
            database=settings.redshift_database,
            cluster_id=settings.redshift_cluster_id,
            workgroup=settings.redshift_workgroup,
        ),
        results=ResultSink(
            s3,
            settings.results_bucket,
            part_max_rows=settings.result_part_max_rows,
            inline_max_rows=settings.inline_max_rows,
            inline_max_bytes=settings.inline_max_bytes,
        ),
        events=EventPublisher(client("events"), settings.event_bus_name),
        page_tokens=PageTokens(SecretKey(client("secretsmanager"), settings.page_token_secret_arn)),
        slots=RunningSlots(dynamodb, settings.tenants_table),
        waits=WaitLeases(dynamodb, settings.tenants_table),
        bulk=bulk,
        clients=tuple(clients),
        jwt=JwtVerifier.from_settings(settings),
        notify=notify,
    )


def get_ports(budget: Budget = Budget.QUEUE) -> Ports:
    """The process's ports for ``budget`` (:class:`Budget`: the API and the authorizer ask for ``CLIENT``), created on
    first use (inside a handler, never at import). On Lambda a process is one function's, so it builds one; the local
    runner's process, all functions', builds both. ``get_ports.cache_clear()`` forgets them."""
    return _built(Budget(budget))


@cache
def _built(budget: Budget) -> Ports:  # one cache key per budget, however get_ports was called
    return build_ports(get_settings(), budget=budget)


get_ports.cache_clear = _built.cache_clear  # type: ignore[attr-defined]
