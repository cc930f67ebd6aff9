"""Where notifications travel besides HTTP: the webhook delivery queue (with its dead-letter queue) and the SNS
topic of terminal job events."""

from __future__ import annotations

from typing import Any

from events import ProjectEvent, WebhookDelivery
from spectra.job_queue import message_body

#: SQS delays a message 15 minutes at most; a longer wait is taken in hops (see WebhookDelivery.not_before).
MAX_DELAY_SECONDS = 900


class DeliveryQueue:
    """The webhook delivery queue, which carries retries (a delivery's first attempt is made by the notifier,
    spectra/notify/fanout.py), and its dead-letter queue."""

    def __init__(self, client, queue_url: str, dead_letter_url: str) -> None:
        self._client = client
        self._url = queue_url
        self._dead_letter_url = dead_letter_url

    def retry(self, delivery: WebhookDelivery, delay_seconds: int) -> None:
        """Queue ``delivery`` again, visible after ``delay_seconds`` (capped at SQS's 15 minutes)."""
        self._client.send_message(
            QueueUrl=self._url,
            MessageBody=message_body(delivery),
            DelaySeconds=max(0, min(MAX_DELAY_SECONDS, delay_seconds)),
        )

    def dead_letter(self, delivery: WebhookDelivery) -> None:
        """A delivery that used every attempt: kept in the DLQ (alarmed) with its last error, for a redrive."""
        self._client.send_message(QueueUrl=self._dead_letter_url, MessageBody=message_body(delivery))


def _status_of(detail: dict[str, Any]) -> str | None:
    value = detail.get("status", detail.get("state"))
    return str(value) if value is not None else None


class EventTopic:
    """The SNS topic every terminal job event (query and bulk) goes to, with message attributes subscribers filter
    on: ``tenant_id``, ``tenant_generation`` (which tenant of that id: one deleted and created again is another),
    ``status`` (a query job's status, or a bulk job's state) and ``detail_type``."""

    def __init__(self, client, topic_arn: str) -> None:
        self._client = client
        self._arn = topic_arn

    def publish(self, event: ProjectEvent) -> str:
        attributes = {
            "tenant_id": event.detail.get("tenant_id"),
            "tenant_generation": event.detail.get("tenant_generation"),
            "status": _status_of(event.detail),
            "detail_type": event.detail_type,
        }
        subject = f"Spectra: {event.detail_type} {event.resources[0] if event.resources else ''}".strip()
        response = self._client.publish(
            TopicArn=self._arn,
            # the event as the bus carried it: keys the bus left out (replay-name, account on moto) stay out
            Message=message_body(event, by_alias=True, exclude_none=True),
            Subject=subject[:100],
            MessageAttributes={
                name: {"DataType": "String", "StringValue": str(value)}
                for name, value in attributes.items()
                if value not in (None, "")
            },
        )
        return response["MessageId"]
