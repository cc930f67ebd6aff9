"""The project's own events (bus → rule on ``source: spectra`` → SQS) → the SNS topic and one webhook delivery per
matching subscription (spectra/notify/fanout.py). The deliveries themselves are made by ``delivery.py``."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from events import ProjectEvent
from spectra.notify.fanout import fan_out
from spectra.ports import get_ports

logger = Logger()
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    event = ProjectEvent.model_validate_json(record.body)
    logger.append_keys(
        event_id=event.id,
        detail_type=event.detail_type,
        job_id=event.detail.get("job_id"),
        tenant_id=event.detail.get("tenant_id"),
    )
    result = fan_out(get_ports(), event)
    metrics.add_metric(name="WebhookDeliveriesQueued", unit="Count", value=len(result.deliveries))
    if result.published_to_topic:
        metrics.add_metric(name="TopicMessagesPublished", unit="Count", value=1)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
