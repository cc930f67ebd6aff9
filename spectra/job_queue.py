"""The jobs queue port: one SQS message per job to run."""

from __future__ import annotations

from events import JobQueuedMessage


class JobQueue:
    def __init__(self, client, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def send(self, message: JobQueuedMessage, *, delay_seconds: int = 0) -> str:
        """Queue the message; ``delay_seconds`` (at most 900) keeps it invisible that long first."""
        attributes = {"version": {"DataType": "String", "StringValue": message.version}}
        response = self._client.send_message(
            QueueUrl=self._url,
            MessageBody=message.model_dump_json(),
            MessageAttributes=attributes,
            DelaySeconds=delay_seconds,
        )
        return response["MessageId"]
