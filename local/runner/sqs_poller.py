"""Lambda's SQS event source mapping, played by one polling thread per mapping.

It receives up to ``BatchSize`` messages (long polls of one second, so :meth:`SqsPoller.stop` returns quickly), hands
them to the function as the exact event Lambda builds, and deletes what succeeded:

- the handler returns normally → every message is deleted, except, with ``ReportBatchItemFailures``, the ones named
  in ``batchItemFailures`` (a malformed response fails the whole batch, as on Lambda);
- the handler raises → nothing is deleted and the whole batch comes back after the visibility timeout.

Messages that are not deleted are received again; moto moves them to the dead-letter queue once their receive count
reaches the queue's ``RedrivePolicy.maxReceiveCount`` (checked on this machine: moto does that during
ReceiveMessage), so the poller needs no redrive logic of its own.

Concurrency: a mapping with ``ScalingConfig.MaximumConcurrency`` gets that many pollers (never more than the
function's concurrency), each handling one batch at a time in an execution environment of its own, as Lambda scales
an SQS source; a mapping without it gets two (``wiring.DEFAULT_SQS_CONCURRENCY``: Lambda's own scaling, bounded
for a laptop; ``SPECTRA_LOCAL_SQS_CONCURRENCY`` sets another bound).

``retry_visibility_seconds`` is a local-only speed-up: failed messages get their visibility reset to that many
seconds instead of waiting out the queue's ``VisibilityTimeout`` (often minutes in a real template). ``None`` keeps the
queue's own timeout, as Lambda does.

``receive_visibility_seconds`` is the other local-only knob, for processes that get killed: messages are received
with that visibility timeout instead of the queue's, and a heartbeat renews it every third of it while their
handler runs (Lambda keeps a batch invisible for the queue's whole timeout). A batch whose process died comes back
within that many seconds, as it would on Lambda after the queue's timeout, without a test waiting minutes for it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from local.runner.functions import LocalFunction
from local.runner.template import as_text
from local.runner.worker import BackgroundWorker

log = logging.getLogger(__name__)

_MAX_RECEIVE = 10  # SQS's limit per ReceiveMessage call


class SqsPoller(BackgroundWorker):
    """One SQS event source mapping: a daemon thread that polls ``queue_url`` and invokes ``function``."""

    def __init__(
        self,
        *,
        name: str,
        function: LocalFunction,
        sqs_client,
        queue_url: str,
        queue_arn: str,
        region: str,
        batch_size: int = 10,
        batching_window_seconds: float = 0,
        report_batch_item_failures: bool = False,
        retry_visibility_seconds: int | None = None,
        receive_visibility_seconds: int | None = None,
        wait_seconds: int = 1,
    ) -> None:
        self.name = name
        self.function = function
        self._sqs = sqs_client
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.region = region
        self.batch_size = max(1, batch_size)
        self.batching_window_seconds = batching_window_seconds
        self.report_batch_item_failures = report_batch_item_failures
        self.retry_visibility_seconds = retry_visibility_seconds
        self.receive_visibility_seconds = receive_visibility_seconds
        self.wait_seconds = wait_seconds
        self.batches_done = 0  # batches fully settled (deleted or released); tests wait on it instead of sleeping
        super().__init__(f"sqs-poller-{name}")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self._receive_batch()
                if messages:
                    self._process(messages)
                    self.batches_done += 1
            except (ClientError, BotoCoreError) as exc:
                if self._stop.is_set():
                    break
                log.warning("%s: SQS call failed (%s); retrying", self.name, exc)
                self._stop.wait(1)
            except Exception:
                # A poller that dies silently looks like a stuck pipeline; keep polling and make the bug loud.
                log.exception("%s: unexpected error in the poller; retrying", self.name)
                self._stop.wait(1)

    def _receive_batch(self) -> list[dict[str, Any]]:
        """One receive, or several within ``MaximumBatchingWindowInSeconds`` for batches larger than ten."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.batching_window_seconds
        while not self._stop.is_set() and len(messages) < self.batch_size:
            request: dict[str, Any] = {
                "QueueUrl": self.queue_url,
                "MaxNumberOfMessages": min(self.batch_size - len(messages), _MAX_RECEIVE),
                "WaitTimeSeconds": self.wait_seconds if not messages else 0,
                "MessageSystemAttributeNames": ["All"],
                "MessageAttributeNames": ["All"],
            }
            if self.receive_visibility_seconds is not None:
                request["VisibilityTimeout"] = self.receive_visibility_seconds
            response = self._sqs.receive_message(**request)
            received = response.get("Messages", [])
            messages.extend(received)
            if (messages and not received) or time.monotonic() >= deadline:
                break
        return messages

    def _process(self, messages: list[dict[str, Any]]) -> None:
        event = {"Records": [self.record(m) for m in messages]}
        by_id = {m["MessageId"]: m for m in messages}
        try:
            with self._renewed(messages):
                response = self.function.invoke(event)
        except Exception:
            log.exception("%s: handler raised; the whole batch of %d will be retried", self.name, len(messages))
            self._retry_later(messages)
            return
        failed_ids = self._failed_ids(response, by_id) if self.report_batch_item_failures else set()
        if failed_ids is None:
            log.warning(
                "%s: invalid batchItemFailures response %r; the whole batch will be retried", self.name, response
            )
            self._retry_later(messages)
            return
        self._delete([m for m in messages if m["MessageId"] not in failed_ids])
        self._retry_later([by_id[i] for i in failed_ids])

    @contextmanager
    def _renewed(self, messages: list[dict[str, Any]]) -> Iterator[None]:
        """Keep ``messages`` invisible while their handler runs, when they were received for a short while."""
        seconds = self.receive_visibility_seconds
        if seconds is None:
            yield
            return
        done = threading.Event()

        def renew() -> None:
            while not done.wait(max(0.2, seconds / 3)):
                try:
                    self._change_visibility(messages, seconds)
                except (ClientError, BotoCoreError) as exc:
                    log.warning("%s: could not renew the visibility of a batch: %s", self.name, exc)

        heartbeat = threading.Thread(target=renew, name=f"{self.name}-heartbeat", daemon=True)
        heartbeat.start()
        try:
            yield
        finally:
            done.set()
            heartbeat.join()

    @staticmethod
    def _failed_ids(response: Any, by_id: dict[str, Any]) -> set[str] | None:
        """The ids the handler reported as failed; ``None`` when the response is malformed (Lambda fails the batch)."""
        if response is None:
            return set()
        if not isinstance(response, dict):
            return None
        failures = response.get("batchItemFailures")
        if failures is None:
            return set()
        ids = set()
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not identifier or identifier not in by_id:
                return None
            ids.add(identifier)
        return ids

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), _MAX_RECEIVE):
            chunk = messages[start : start + _MAX_RECEIVE]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            response = self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            for failure in response.get("Failed", []):
                log.warning("%s: could not delete a message: %s", self.name, failure)

    def _retry_later(self, messages: list[dict[str, Any]]) -> None:
        if self.retry_visibility_seconds is None or not messages:
            return
        self._change_visibility(messages, self.retry_visibility_seconds)

    def _change_visibility(self, messages: list[dict[str, Any]], seconds: int) -> None:
        for start in range(0, len(messages), _MAX_RECEIVE):
            chunk = messages[start : start + _MAX_RECEIVE]
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": seconds}
                for i, m in enumerate(chunk)
            ]
            self._sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)

    def record(self, message: dict[str, Any]) -> dict[str, Any]:
        """One SQS message in the shape Lambda puts in ``event["Records"]``."""
        attributes = {key: as_text(value) for key, value in (message.get("Attributes") or {}).items()}
        record = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": attributes,
            "messageAttributes": {
                name: _lambda_message_attribute(value)
                for name, value in (message.get("MessageAttributes") or {}).items()
            },
            "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        }
        if message.get("MD5OfMessageAttributes"):
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record


def _lambda_message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """An SQS API attribute (``BinaryValue`` as bytes) in Lambda's shape (``binaryValue`` base64-encoded)."""

    out: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": value["DataType"]}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    return out
