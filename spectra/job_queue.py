"""The queue port: one SQS message per unit of work (a job to run, result files to write), each a versioned model
of :mod:`events`."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

#: What JSON may hold as it is but SQS and SNS do not take in a message (they take tab, LF, CR, U+0020-U+D7FF,
#: U+E000-U+FFFD and past U+FFFF; JSON escapes the control characters already): the noncharacters U+FFFE and
#: U+FFFF, which a tenant's SQL, a parameter or a database message may hold.
_UNSENDABLE = re.compile("[\ufffe\uffff]")


def message_body(message: BaseModel, **dump: Any) -> str:
    """``message`` as JSON that SQS and SNS take whatever text it carries: the characters they refuse are written as
    JSON escapes, which read back as the same text (the SendMessage that refused them answered 500)."""
    return sendable(message.model_dump_json(**dump))


def sendable(text: str) -> str:
    """JSON ``text`` with the characters SQS and SNS refuse written as escapes (twice as many bytes each: measure
    what is sent, not the model's own JSON)."""
    return _UNSENDABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", text) if not text.isascii() else text


class JobQueue:
    def __init__(self, client, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def send(self, message: BaseModel, *, delay_seconds: int = 0) -> str:
        """Queue the message; ``delay_seconds`` (at most 900) keeps it invisible that long first."""
        attributes = {"version": {"DataType": "String", "StringValue": message.version}}
        response = self._client.send_message(
            QueueUrl=self._url,
            MessageBody=message_body(message),
            MessageAttributes=attributes,
            DelaySeconds=delay_seconds,
        )
        return response["MessageId"]
