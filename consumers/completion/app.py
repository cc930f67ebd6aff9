"""Data API status changes (EventBridge → SQS) → results in S3, the job's terminal state and the project's event."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from events import StatementStatusChangeEvent
from spectra import deadline, logs
from spectra.bulk.lifecycle import complete_bulk_statement
from spectra.bulk.models import is_bulk_job_id
from spectra.lifecycle import complete_statement
from spectra.ports import get_ports

logger = Logger()
logs.install(logger)  # job_id and tenant_id on every line of a record, the domain's included (spectra/logs.py)
tracer = Tracer()
metrics = Metrics()
processor = logs.sqs_batch_processor()


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    # a result is collected within the time this invocation has left (spectra/deadline.py), not cut by the timeout;
    # Powertools passes the context when the handler was given one (always, on Lambda)
    remaining = lambda_context.get_remaining_time_in_millis() / 1000 if lambda_context is not None else None
    with logs.record(message_id=record.message_id), deadline.lasting(remaining):
        event = StatementStatusChangeEvent.model_validate_json(record.body)
        change = event.detail
        # the tenant is bound by the domain once it has read the job (spectra.lifecycle.complete_statement)
        logs.bind(job_id=change.statementName, statement_id=change.statementId, state=change.state.value)
        complete(change, ended_at=event.time.timestamp())  # the Data API sent it as the statement ended


def complete(change, *, ended_at: float | None = None) -> None:
    if is_bulk_job_id(change.statementName or ""):
        bulk_job = complete_bulk_statement(get_ports(), change)
        if bulk_job is None:  # endings are counted by the notifier
            metrics.add_metric(name="StatusEventsIgnored", unit="Count", value=1)
        logger.info(
            "status event handled", extra={"job_status": bulk_job.state.value if bulk_job is not None else None}
        )
        return
    job = complete_statement(get_ports(), change, ended_at=ended_at)
    if job is None:  # the job's ending is counted by the notifier, with every other ending (JobsCompleted ...)
        metrics.add_metric(name="StatusEventsIgnored", unit="Count", value=1)
    logger.info("status event handled", extra={"job_status": job.status.value if job is not None else None})


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
