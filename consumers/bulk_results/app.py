"""Bulk results queue → the result files of a large ingest job (successful, failed, unprocessed), written after the
job ended so its load's end is not held up by them. Reported per record; a failure comes back to be retried."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from events import BulkResultsRequested
from spectra import logs
from spectra.bulk.lifecycle import write_owed_results
from spectra.ports import get_ports

logger = Logger()
logs.install(logger)  # job_id and tenant_id on every line of a record, the domain's included (spectra/logs.py)
tracer = Tracer()
metrics = Metrics()
processor = logs.sqs_batch_processor()


def record_handler(record: SQSRecord) -> None:
    with logs.record(message_id=record.message_id):
        message = BulkResultsRequested.model_validate_json(record.body)
        logs.bind(job_id=message.job_id, tenant_id=message.tenant_id)
        job = write_owed_results(get_ports(), message)
        metrics.add_metric(
            name="BulkResultsWritten" if job is not None else "BulkResultsSkipped", unit="Count", value=1
        )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
