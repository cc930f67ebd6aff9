"""Webhook delivery queue → one signed POST per message, then the next attempt, the DLQ or a disabled subscription
(spectra/notify/delivery.py). A failed attempt is not a failed record: its retry is a new, delayed message."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from events import WebhookDelivery
from spectra import logs
from spectra.notify.delivery import deliver
from spectra.ports import get_ports

logger = Logger()
logs.install(logger)  # job_id and tenant_id on every line of a record, the domain's included (spectra/logs.py)
tracer = Tracer()
metrics = Metrics()
processor = logs.sqs_batch_processor()


def record_handler(record: SQSRecord) -> None:
    with logs.record(message_id=record.message_id):
        message = WebhookDelivery.model_validate_json(record.body)
        logs.bind(
            webhook_id=message.webhook_id,
            subscription_id=message.subscription_id,
            tenant_id=message.tenant_id,
            job_id=message.job_id,
            attempt=message.attempt,
        )
        outcome = deliver(get_ports(), message)
        metrics.add_metric(name=f"Webhook{outcome.value.title().replace('_', '')}", unit="Count", value=1)
        logger.info("webhook delivery attempt", extra={"outcome": outcome.value})


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
