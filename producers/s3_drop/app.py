"""Ingest bucket notifications (S3 → SQS) → bulk ingest jobs. Each S3 record is one dropped file; the job it makes
is the Bulk API's kind of job, queued for the executor. Failures are reported per message and retried.

No message is begun with less than :data:`START_MARGIN_SECONDS` of the invocation left (its Timeout is 30 s): a drop's
AWS calls (the tenant, the sidecar, the job, its message) may each be retried for up to about 30 s by a service in
trouble, and a batch that outran the Timeout came back whole, the drops already made with it (each made once, but read
and checked again). A message left fails its record (``DropsDeferred``) and comes back after the queue's visibility
timeout (three minutes), with the others left; the drops done are deleted with the batch. A message on its queue's
last receive is begun whatever the time: failed there, it would go to the dead-letter queue untried."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from events import S3Notification
from spectra import deadline, logs
from spectra.bulk.drops import DroppedObject, accept_drop
from spectra.ports import get_ports

logger = Logger()
logs.install(logger)  # job_id and tenant_id on every line of a record, the domain's included (spectra/logs.py)
tracer = Tracer()
metrics = Metrics()
processor = logs.sqs_batch_processor()

#: Seconds of the invocation that must be left to begin a message: half of the function's 30 s Timeout.
START_MARGIN_SECONDS = 15.0


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    with logs.record(message_id=record.message_id):
        # Lambda always gives it; a hand-made event (a test) may not
        receive_count = int((record.get("attributes") or {}).get("ApproximateReceiveCount") or 1)
        if not deadline.may_begin(lambda_context, START_MARGIN_SECONDS, receive_count=receive_count):
            metrics.add_metric(name="DropsDeferred", unit="Count", value=1)
            raise deadline.OutOfTime("too little of the invocation left to take the drop; it comes back")
        notification = S3Notification.model_validate_json(record.body)
        if not notification.Records:  # the s3:TestEvent S3 sends when notifications are configured
            logger.info("notification without records (%s): nothing dropped", notification.model_extra.get("Event"))
        for s3_record in notification.Records:
            if not s3_record.eventName.startswith("ObjectCreated"):
                logger.info("S3 %s of %s: not a drop", s3_record.eventName, s3_record.s3.object.key[:200])
                continue
            dropped = DroppedObject.from_notification(s3_record)
            # the tenant is the key's first segment, checked (and bound) by accept_drop
            logs.bind(s3_key=dropped.key, job_id=dropped.job_id)
            job = accept_drop(get_ports(), dropped)
            metrics.add_metric(name="DropsAccepted" if job is not None else "DropsSkipped", unit="Count", value=1)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
