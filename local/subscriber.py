"""A subscriber to the project's bus, set up as any consumer of Spectra's events would: an EventBridge rule on
``source: spectra`` routed to a queue of its own. A thread drains the queue and notes when each event landed, so
tests can wait for one event (bounded) and benchmarks can time them."""

from __future__ import annotations

import json
import threading
import time
import uuid

from local.aws import LocalAws


class BusSubscriber:
    def __init__(self, aws: LocalAws, bus: str, *, name_prefix: str = "sub") -> None:
        self._sqs, self._events, self._bus = aws.client("sqs"), aws.client("events"), bus
        self._name = f"{name_prefix}-{uuid.uuid4().hex[:8]}"
        self._queue_url = self._sqs.create_queue(QueueName=self._name)["QueueUrl"]
        queue_arn = self._sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self._events.put_rule(Name=self._name, EventBusName=bus, EventPattern=json.dumps({"source": ["spectra"]}))
        self._events.put_targets(Rule=self._name, EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
        self._received: list[tuple[float, dict]] = []  # (perf_counter at arrival, event)
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name=self._name, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            response = self._sqs.receive_message(QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            arrived = time.perf_counter()
            for message in response.get("Messages", []):
                with self._changed:
                    self._received.append((arrived, json.loads(message["Body"])))
                    self._changed.notify_all()
                self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _find(self, job_id: str, detail_type: str | None) -> tuple[float, dict] | None:
        return next(
            (
                (at, event)
                for at, event in self._received
                if event["detail"].get("job_id") == job_id and detail_type in (None, event["detail-type"])
            ),
            None,
        )

    def wait_for(self, job_id: str, detail_type: str | None = None, timeout: float = 30) -> dict:
        """The job's event (of ``detail_type``, if given); AssertionError after ``timeout`` seconds."""
        return self.arrival(job_id, detail_type, timeout)[1]

    def arrival(self, job_id: str, detail_type: str | None = None, timeout: float = 30) -> tuple[float, dict]:
        """When (``time.perf_counter()``) the job's event arrived, and the event."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._find(job_id, detail_type) is not None, timeout):
                raise AssertionError(f"no {detail_type or 'event'} for job {job_id} within {timeout}s")
            found = self._find(job_id, detail_type)
        assert found is not None
        return found

    def received(self) -> list[dict]:
        """Every event received so far (a copy), in arrival order."""
        with self._changed:
            return [event for _, event in self._received]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._events.remove_targets(Rule=self._name, EventBusName=self._bus, Ids=["queue"])
        self._events.delete_rule(Name=self._name, EventBusName=self._bus)
        self._sqs.delete_queue(QueueUrl=self._queue_url)
