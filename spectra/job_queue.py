"""The queue port: one SQS message per unit of work (a job to run, result files to write), each a versioned model
of :mod:`events`."""

from __future__ import annotations

from pydantic import BaseModel


class JobQueue:
    def __init__(self, client, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def send(self, message: BaseModel, *, delay_seconds: int = 0) -> str:
        """Queue the message; ``delay_seconds`` (at most 900) keeps it invisible that long first."""
        attributes = {"version": {"DataType": "String", "StringValue": message.version}}
        response = self._client.send_message(
            QueueUrl=self._url,
            MessageBody=message.model_dump_json(),
            MessageAttributes=attributes,
            DelaySeconds=delay_seconds,
        )
        return response["MessageId"]
