"""The event publisher port: the project's versioned events onto its EventBridge bus."""

from __future__ import annotations

from pydantic import BaseModel

from events import EVENT_SOURCE
from spectra.job_queue import message_body


class PublishFailed(RuntimeError):
    """EventBridge accepted the call but not the entry; the caller retries (the message goes back to its queue)."""


class EventPublisher:
    def __init__(self, client, bus_name: str, *, source: str = EVENT_SOURCE) -> None:
        self._client = client
        self._bus = bus_name
        self._source = source

    def publish(self, detail_type: str, detail: BaseModel, *, resources: list[str] | None = None) -> str:
        response = self._client.put_events(
            Entries=[
                {
                    "EventBusName": self._bus,
                    "Source": self._source,
                    "DetailType": detail_type,
                    "Detail": message_body(detail),
                    "Resources": resources or [],
                }
            ]
        )
        entry = response["Entries"][0]
        if response.get("FailedEntryCount") or "EventId" not in entry:
            raise PublishFailed(f"{detail_type}: {entry.get('ErrorCode')}: {entry.get('ErrorMessage')}")
        return entry["EventId"]
