"""The project's own events (bus → rule on ``source: spectra`` → SQS) → the SNS topic and one webhook delivery per
matching subscription (spectra/notify/fanout.py). Each delivery's first attempt is made here; its retries are made
by ``delivery.py``, from the delivery queue.

A batch is handled in three steps, as the delivery function handles its own: each event is read and its
subscriptions with it (:func:`spectra.notify.fanout.plan`), then the batch's first attempts are POSTed at once, up to
``MAX_POSTS_AT_ONCE`` (receivers that time out hold the batch about one ``WEBHOOK_TIMEOUT_SECONDS``, not once per
event behind them; attempts past that many are queued for the delivery function), then each event in its turn
settles its attempts and is published (:func:`spectra.notify.fanout.finish`).

No event is begun with less than :data:`START_MARGIN_SECONDS` of the invocation left (its Timeout is 60 s): one
event's fan-out makes a few AWS calls, each retried for up to about 30 s by a service in trouble, and the batch's
POSTs come after every event is read. A batch that outran the Timeout came back whole, every event already fanned
out sent and published again. An event left fails its record (``EventsDeferred``) and comes back after the queue's
visibility timeout (six minutes), with the others left; the events done are deleted with the batch. An event on
its queue's last receive is begun whatever the time: failed there, it would go to the dead-letter queue untried."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from events import BULK_EVENT_DETAIL_TYPES, JOB_EVENT_DETAIL_TYPES, BulkJobEventDetail, JobEventDetail, ProjectEvent
from spectra import deadline, logs
from spectra.notify.fanout import Plan, finish, plan, send_first_attempts
from spectra.notify.transport import HttpOutcome
from spectra.ports import get_ports

logger = Logger()
logs.install(logger)  # job_id and tenant_id on every line of a record, the domain's included (spectra/logs.py)
tracer = Tracer()
metrics = Metrics()
processor = logs.sqs_batch_processor()

#: Seconds of the invocation that must be left to begin an event: half of the notifier's 60 s Timeout.
START_MARGIN_SECONDS = 30.0


@dataclass
class _Prepared:
    """One record between the steps: its event read and planned, or what stopped it (raised again in its turn, so
    the batch processor reports it), and its attempts' answers."""

    event: ProjectEvent | None = None
    detail: JobEventDetail | BulkJobEventDetail | None = None
    planned: Plan | None = None
    failure: Exception | None = None
    answers: list[HttpOutcome | None] | None = None


def _prepare_record(record: SQSRecord, lambda_context: LambdaContext | None) -> _Prepared:
    prepared = _Prepared()
    with logs.job_keys(message_id=record.message_id):  # the failure's line is written in the record's turn
        try:
            # Lambda always gives it; a hand-made event (a test) may not
            receive_count = int((record.get("attributes") or {}).get("ApproximateReceiveCount") or 1)
            if not deadline.may_begin(lambda_context, START_MARGIN_SECONDS, receive_count=receive_count):
                metrics.add_metric(name="EventsDeferred", unit="Count", value=1)
                raise deadline.OutOfTime("too little of the invocation left to fan the event out; it comes back")
            prepared.event = ProjectEvent.model_validate_json(record.body)
            _bind(prepared.event)
            # before anything is sent: a record failed after it would send it all again
            prepared.detail = read_detail(prepared.event)
            prepared.planned = plan(get_ports(), prepared.event)
        except Exception as exc:
            prepared.failure = exc
    return prepared


def _send(batch: list[_Prepared]) -> None:
    """The batch's first attempts at once (:func:`spectra.notify.fanout.send_first_attempts`: one round of POSTs);
    each record gets its own answers back, None for an attempt it queues for the delivery function instead."""
    planned = [p for p in batch if p.planned is not None]
    attempts = [a for p in planned for a in p.planned.attempts]
    answers = send_first_attempts(get_ports(), attempts) if attempts else []  # no ports for a batch of unreadables
    for prepared in planned:
        count = len(prepared.planned.attempts)
        prepared.answers, answers = answers[:count], answers[count:]


def _bind(event: ProjectEvent) -> None:
    logs.bind(
        event_id=event.id,
        detail_type=event.detail_type,
        job_id=event.detail.get("job_id"),
        tenant_id=event.detail.get("tenant_id"),
    )


def record_handler(
    record: SQSRecord, lambda_context: LambdaContext | None = None, batch: dict[str, _Prepared] | None = None
) -> None:
    """Finishes a record of the batch, prepared and sent by :func:`lambda_handler`. Called alone (no ``batch``) it
    prepares and sends the record first, a batch of one."""
    prepared = (batch or {}).get(record.message_id)
    if prepared is None:
        prepared = _prepare_record(record, lambda_context)
        _send([prepared])
    with logs.record(message_id=record.message_id):
        if prepared.event is not None:
            _bind(prepared.event)
        if prepared.failure is not None:
            raise prepared.failure
        result = finish(get_ports(), prepared.planned, prepared.answers or [])
        for outcome in result.outcomes:
            metrics.add_metric(name=f"Webhook{outcome.value.title().replace('_', '')}", unit="Count", value=1)
        if result.published_to_topic:
            metrics.add_metric(name="TopicMessagesPublished", unit="Count", value=1)
        detail = prepared.detail
        if isinstance(detail, JobEventDetail):
            for stage, milliseconds in stage_latencies(detail).items():
                metrics.add_metric(name=stage, unit="Milliseconds", value=milliseconds)
            # the dashboard's jobs by state: counted here, where every ending passes, whoever wrote it (the completion
            # consumer, the executor refusing a statement, the API cancelling a queued job, the reconciler)
            metrics.add_metric(name=f"Jobs{detail.status.value.title()}", unit="Count", value=1)
        elif isinstance(detail, BulkJobEventDetail):  # bulk jobs likewise, the API's aborts included
            metrics.add_metric(name=f"BulkJobs{detail.state}", unit="Count", value=1)
        logger.info(
            "event fanned out",
            extra={"deliveries": len(result.deliveries), "outcomes": [o.value for o in result.outcomes]},
        )


def read_detail(event: ProjectEvent) -> JobEventDetail | BulkJobEventDetail | None:
    """A job event's detail as this version reads it, for the dashboard's figures; None for other events, and for a
    detail it cannot read (a field or value from a newer producer, in a rolling deploy): that event is still fanned
    out, as it came, without figures. Read after the fan-out, it failed the record once its webhooks were sent and
    it was published, so each of the queue's receives sent it all again before it went to the DLQ."""
    try:
        if event.detail_type in JOB_EVENT_DETAIL_TYPES.values():
            return JobEventDetail.model_validate(event.detail)
        if event.detail_type in BULK_EVENT_DETAIL_TYPES.values():
            return BulkJobEventDetail.model_validate(event.detail)
    except ValidationError as exc:
        logger.warning("event %s: detail not counted on the dashboard: %s", event.id, logs.unreadable(exc))
    return None


#: The time a job spent in each stage, from the timestamps its terminal event carries (the dashboard's "latency by
#: stage"): waiting to start (the jobs queue and the tenant's running cap), running (statement, completion event,
#: result), and end to end (submit → terminal). Every terminal query job event passes here once (copies aside).
STAGES = {
    "JobQueuedMs": ("created_at", "submitted_at"),
    "JobRunningMs": ("submitted_at", "completed_at"),
    "JobTotalMs": ("created_at", "completed_at"),
}


def stage_latencies(detail: JobEventDetail) -> dict[str, float]:
    latencies = {}
    for name, (start, end) in STAGES.items():
        began, ended = getattr(detail, start), getattr(detail, end)
        if began is not None and ended is not None:
            latencies[name] = max(0.0, (ended - began).total_seconds() * 1000)
    return latencies


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    records = map(SQSRecord, event.get("Records") or [])
    batch = {record.message_id: _prepare_record(record, context) for record in records}
    _send(list(batch.values()))
    handler = functools.partial(record_handler, batch=batch)
    return process_partial_response(event=event, record_handler=handler, processor=processor, context=context)
