"""Webhook delivery queue → one signed POST per message, then the next attempt, the DLQ or a disabled subscription
(spectra/notify/delivery.py). The queue carries retries of the notifier's first attempts, and the first attempts a
notifier batch had more of than it sends at once. A failed attempt is not a failed record: its retry is a new,
delayed message.

A batch's POSTs go out side by side (``send_all``, which says why they alone go to threads): each record is read and
prepared first, then every POST is sent at once, then the batch processor settles each record with its POST's answer.
A record that cannot be read or prepared gets no POST and is reported failed in its turn, as any failed record.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from events import WebhookDelivery
from spectra import logs
from spectra.notify.delivery import Attempt, Outcome, prepare, send_all, settle
from spectra.notify.transport import HttpOutcome
from spectra.ports import get_ports

logger = Logger()
logs.install(logger)  # job_id and tenant_id on every line of a record, the domain's included (spectra/logs.py)
tracer = Tracer()
metrics = Metrics()
processor = logs.sqs_batch_processor()


@dataclass
class _Prepared:
    """One record between the steps: its message, what preparing it gave (an outcome needing no POST, or the attempt
    to send), what stopped it (raised again in its turn, so the batch processor reports it), and its POST's answer."""

    message: WebhookDelivery | None = None
    step: Outcome | Attempt | None = None
    failure: Exception | None = None
    answer: HttpOutcome | None = None


def _prepare_record(record: SQSRecord) -> _Prepared:
    prepared = _Prepared()
    with logs.job_keys(message_id=record.message_id):  # the failure's line is written in the record's turn
        try:
            prepared.message = WebhookDelivery.model_validate_json(record.body)
            _bind(prepared.message)
            prepared.step = prepare(get_ports(), prepared.message)
        except Exception as exc:
            prepared.failure = exc
    return prepared


def _send(batch: list[_Prepared]) -> None:
    """Every prepared attempt's POST at once; each answer lands on its record."""
    ready = [p for p in batch if isinstance(p.step, Attempt)]
    if ready:
        answers = send_all(get_ports(), [p.step for p in ready])
        for prepared, answer in zip(ready, answers, strict=True):
            prepared.answer = answer


def record_handler(record: SQSRecord, batch: dict[str, _Prepared] | None = None) -> None:
    """Settles a record of the batch, prepared and sent by :func:`lambda_handler`. Called alone (no ``batch``) it
    prepares and sends the record first, a batch of one."""
    prepared = (batch or {}).get(record.message_id)
    if prepared is None:
        prepared = _prepare_record(record)
        _send([prepared])
    with logs.record(message_id=record.message_id):
        if prepared.message is not None:
            _bind(prepared.message)
        if prepared.failure is not None:
            raise prepared.failure
        step = prepared.step
        outcome = step if isinstance(step, Outcome) else settle(get_ports(), step, prepared.answer)
        metrics.add_metric(name=f"Webhook{outcome.value.title().replace('_', '')}", unit="Count", value=1)
        logger.info("webhook delivery attempt", extra={"outcome": outcome.value})


def _bind(message: WebhookDelivery) -> None:
    logs.bind(
        webhook_id=message.webhook_id,
        subscription_id=message.subscription_id,
        tenant_id=message.tenant_id,
        job_id=message.job_id,
        attempt=message.attempt,
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    batch = {record.message_id: _prepare_record(record) for record in map(SQSRecord, event.get("Records") or [])}
    _send(list(batch.values()))
    handler = functools.partial(record_handler, batch=batch)
    return process_partial_response(event=event, record_handler=handler, processor=processor, context=context)
