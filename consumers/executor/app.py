"""Jobs queue → ExecuteStatement. Each record is one job (a query, or a bulk load or export); failures are reported
per record, so one bad message never holds back the batch, and throttled jobs simply come back after the visibility
timeout.

No record is begun with less than :data:`START_MARGIN_SECONDS` of the invocation left. One start against a throttling
Data API retries for up to about 30 s (``spectra.ports.Budget.QUEUE``), the function's whole Timeout, so a batch of
ten such starts ran past it. Lambda then stops the function without a word, and the whole batch comes back after the
queue's visibility timeout (three minutes), the records already done included, each message one delivery nearer the
dead-letter queue. A record left for lack of time is sent again instead (``share.send_again``: a fresh message after
about ``TenantWaitSeconds``, which decides as any redelivery does, its count of deliveries begun again) and counted
(``JobMessagesDeferred``); the records done are deleted with the batch. The margin cannot stop the record in flight
from outrunning the Timeout (one begun with 15 s left may retry for 30), whose batch then comes back as before; it
keeps the records behind a slow start from adding to it."""

from __future__ import annotations

from datetime import UTC, datetime

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from events import BulkJobQueuedMessage, parse_job_message
from spectra import deadline, logs, share
from spectra.bulk.lifecycle import start_bulk_job
from spectra.lifecycle import execute_job
from spectra.ports import get_ports

logger = Logger()
logs.install(logger)  # job_id and tenant_id on every line of a record, the domain's included (spectra/logs.py)
tracer = Tracer()
metrics = Metrics()
processor = logs.sqs_batch_processor()

#: Seconds of the invocation (the executor's Timeout is 30 s) that must be left to begin a record: half of it.
START_MARGIN_SECONDS = 15.0


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    with logs.record(message_id=record.message_id):
        # A malformed message fails into the DLQ after its retries (where `dlq show` shows it); logs.record describes
        # it without its body, which carries the tenant's SQL and parameter values.
        message = parse_job_message(record.body)
        logs.bind(job_id=message.job_id, tenant_id=message.tenant_id)
        # Powertools passes the context when the handler was given one (always, on Lambda)
        if not deadline.may_begin(lambda_context, START_MARGIN_SECONDS):  # sent again: on any receive
            share.send_again(get_ports(), message)
            metrics.add_metric(name="JobMessagesDeferred", unit="Count", value=1)
            logger.warning("too little of the invocation left to start the job: its message is sent again")
            return
        sent = record.attributes.get("SentTimestamp")  # Lambda always gives it; a hand-made event may not
        sent_at = datetime.fromtimestamp(int(sent) / 1000, tz=UTC) if sent else None
        handle_job_message(message, int(record.attributes.approximate_receive_count), sent_at=sent_at)


def handle_job_message(message, receive_count: int, *, sent_at: datetime | None = None) -> None:
    ports = get_ports()
    final_attempt = receive_count >= ports.settings.executor_max_attempts
    if receive_count > 1:
        metrics.add_metric(name="JobMessagesRedelivered", unit="Count", value=1)  # a retry: throttled or died
    if isinstance(message, BulkJobQueuedMessage):
        job = start_bulk_job(ports, message, final_attempt=final_attempt)
        started = "BulkJobsStarted"  # counted apart: the jobs-by-state chart's starts are query jobs', as its ends
    else:
        job = execute_job(
            ports, message, final_attempt=final_attempt, first_delivery=receive_count == 1, sent_at=sent_at
        )
        started = "StatementsStarted"
    metrics.add_metric(name=started if job is not None else "JobMessagesSkipped", unit="Count", value=1)
    if job is not None:
        logger.info("statement started", extra={"receive_count": receive_count})


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    with share.one_batch():  # a tenant found at its cap waits without asking again (spectra/share.py)
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
