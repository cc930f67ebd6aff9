"""Operator commands: the stack's dead-letter queues (see them, send their messages back), and its tenants.

    python -m spectra.admin [--stack NAME | --state FILE] dlq show [--peek N] [--json] [--full]
    python -m spectra.admin [--stack NAME | --state FILE] redrive QUEUE [--rate N] [--no-wait]
    python -m spectra.admin [--stack NAME | --state FILE] tenants|keys ...   (spectra/tenant_admin.py)

**Which queues.** The stack says: with ``--stack`` (default ``$SPECTRA_STACK``), CloudFormation's resources of the
deployed stack (``ListStackResources``: every ``AWS::SQS::Queue`` by logical id, its physical id being the queue URL);
with ``--state``, the state file the local stack writes (``python -m local``; default
``<temp>/spectra-local/spectra-local.json``). A queue is a dead-letter queue when another queue of the stack names it
in its ``RedrivePolicy``; that queue is its source. ``QUEUE`` is a logical id (``JobsDeadLetterQueue``, or the source's,
``JobsQueue``), a queue name or a URL. The dead-letter queue of an EventBridge rule's target names the target queue
in its tag ``spectra:redrive-to`` (template.yaml); it holds the events as that queue would have had them, and is
redriven by hand (below), since SQS's message move tasks only move a queue's own dead-letter queue.

**dlq show** lists every dead-letter queue with its source, its depth (visible and in flight) and a peek at its first
messages (received with a visibility timeout of 0, so they stay where they are; their receive count goes up by one),
with a job's SQL and parameter values hidden (``--full`` shows the bodies as they are), as the logs keep them out.

**redrive** moves a dead-letter queue's messages back to its source with SQS's message move task
(``StartMessageMoveTask``, then ``ListMessageMoveTasks`` until it ends, unless ``--no-wait``); ``--rate`` caps the
messages moved per second. Where the endpoint answers that message move tasks are not supported (moto, some
SQS-compatible services: an ``UnsupportedOperation``-like code or HTTP 501; the local stack's moto answers so,
local/aws.py; ``ListMessageMoveTasks`` too, since SQS may answer a second task on a queue with such a code), and only
then, it moves them itself: receive, send to the source with the same body and message attributes, delete, until the
queue is empty. A message is deleted only after its copy was sent, so a failure midway leaves a message in both queues
at worst, never in neither; the consumers are idempotent.

Credentials and endpoints are boto3's own (``AWS_PROFILE``, ``AWS_ENDPOINT_URL``...), except that a local stack's
state file names the endpoint and region of its queues (:func:`state_endpoint`). Exit status 0, or 1 with the
reason on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from pydantic import ValidationError

from spectra import tenant_admin
from spectra.cli import whole_number
from spectra.dynamo import retry_passing_refusals
from spectra.errors import SpectraError
from spectra.identity import TenantIdentities
from spectra.share import UsagePlans
from spectra.tenants import TenantDirectory

#: Error codes by which an SQS endpoint says it has no message move tasks.
UNSUPPORTED_CODES = {
    "UnsupportedOperation",
    "AWS.SimpleQueueService.UnsupportedOperation",
    "InvalidAction",
    "NotImplemented",
    "UnknownOperationException",
    "UnknownOperation",
}
TERMINAL_TASK_STATES = {"COMPLETED", "FAILED", "CANCELLED"}
ACTIVE_TASK_STATES = {"RUNNING", "CANCELLING"}
#: The tag of an EventBridge rule target's dead-letter queue: the logical id of the queue its events were for
REDRIVE_TO_TAG = "spectra:redrive-to"
_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3})


class AdminError(Exception):
    """What the operator is told, on stderr, with exit status 1."""


class Interrupted(AdminError):
    """The operator stopped the command (Ctrl-C) midway: told what was done, with exit status 130, as a shell reports
    an interrupted command."""


@dataclass
class Queue:
    logical_id: str
    url: str
    arn: str = ""
    dead_letter_arn: str | None = None  # from its RedrivePolicy
    source: Queue | None = None  # set on a dead-letter queue: the queue whose messages it keeps
    #: a rule target's DLQ (tagged spectra:redrive-to): SQS moves only a queue's own DLQ, so this one by hand
    of_rule: bool = False
    attributes: dict[str, str] = field(default_factory=dict)
    #: in the stack's resources, but SQS has no such queue (deleted by hand, or being replaced by an update)
    gone: bool = False

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def depth(self) -> int:
        return int(self.attributes.get("ApproximateNumberOfMessages", 0))

    @property
    def in_flight(self) -> int:
        return int(self.attributes.get("ApproximateNumberOfMessagesNotVisible", 0))


# -- which queues ----------------------------------------------------------------------------------------------------


def queues_from_stack(cloudformation, stack_name: str) -> dict[str, str]:
    """Logical id → queue URL of a deployed stack's queues."""
    urls = {}
    try:
        for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name):
            for resource in page["StackResourceSummaries"]:
                if resource["ResourceType"] == "AWS::SQS::Queue" and resource.get("PhysicalResourceId"):
                    urls[resource["LogicalResourceId"]] = resource["PhysicalResourceId"]
    except ClientError as exc:
        raise AdminError(f"cannot list the resources of stack {stack_name}: {exc}") from None
    return urls


def queues_from_state(path: str | Path) -> dict[str, str]:
    """Logical id → queue URL from the local stack's state file (local/runner/state.py)."""
    try:
        state = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdminError(f"cannot read the stack state {path}: {exc}") from None
    try:
        return {
            logical_id: resource["physical_id"]
            for logical_id, resource in state.get("resources", {}).items()
            if resource.get("type") == "AWS::SQS::Queue" and resource.get("status", "created") == "created"
        }
    except (AttributeError, KeyError, TypeError) as exc:  # JSON, but not a stack's state
        raise AdminError(f"{path} is not a local stack's state file ({type(exc).__name__}: {exc})") from None


def describe_queues(sqs, urls: dict[str, str]) -> dict[str, Queue]:
    """Every queue with its attributes; dead-letter queues linked to their source. A queue SQS no longer has is
    kept, marked ``gone``: the others are still shown (a dead-letter queue whose source is gone has no source)."""
    queues = {}
    for logical_id, url in sorted(urls.items()):
        try:
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        except ClientError as exc:
            if not _no_such_queue(exc):
                raise
            queues[logical_id] = Queue(logical_id, url, gone=True)
            continue
        policy = json.loads(attributes.get("RedrivePolicy") or "{}")
        queues[logical_id] = Queue(
            logical_id, url, attributes["QueueArn"], policy.get("deadLetterTargetArn"), attributes=attributes
        )
    by_arn = {queue.arn: queue for queue in queues.values() if not queue.gone}
    for queue in queues.values():
        dead_letter = by_arn.get(queue.dead_letter_arn or "")
        if dead_letter is not None:
            dead_letter.source = queue
    for queue in queues.values():
        if queue.gone:
            continue
        try:
            target = sqs.list_queue_tags(QueueUrl=queue.url).get("Tags", {}).get(REDRIVE_TO_TAG)
        except ClientError as exc:
            if not _no_such_queue(exc):
                raise
            queue.gone = True
            continue
        if queue.source is None and target in queues and not queues[target].gone:
            queue.source, queue.of_rule = queues[target], True
    return queues


def _no_such_queue(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


def gone_queues(queues: dict[str, Queue]) -> list[Queue]:
    return [queue for queue in queues.values() if queue.gone]


def dead_letter_queues(queues: dict[str, Queue]) -> list[Queue]:
    return [queue for queue in queues.values() if queue.source is not None]


def orphaned_queues(queues: dict[str, Queue]) -> list[Queue]:
    """While a queue of the stack is gone: the queues left with neither a source nor a dead-letter queue of their own
    (every source queue of the template has one), that is, the dead-letter queues of the gone sources, whose link was
    the gone queue's ``RedrivePolicy``. They are shown (they may hold messages), with no source to redrive to."""
    if not gone_queues(queues):
        return []
    sources = {queue.source.logical_id for queue in queues.values() if queue.source is not None}
    return [
        queue
        for queue in queues.values()
        if not queue.gone and queue.source is None and not queue.dead_letter_arn and queue.logical_id not in sources
    ]


def find_dead_letter_queue(queues: dict[str, Queue], wanted: str) -> Queue:
    """The dead-letter queue ``wanted`` names: its logical id, name or URL, or its source's when the source has one.
    A source with two (its own and its EventBridge rule's) is refused with both names: redriving one of them
    silently would leave the other's messages where they are."""
    for queue in queues.values():
        if wanted in (queue.logical_id, queue.name, queue.url, queue.arn):
            if queue.source is not None:
                return queue
            found = [q for q in queues.values() if q.source is queue]
            if len(found) == 1:
                return found[0]
            if found:
                names = " and ".join(q.logical_id for q in found)
                raise AdminError(f"{wanted} has {len(found)} dead-letter queues, {names}: name the one to redrive")
            raise AdminError(f"{wanted} is not a dead-letter queue and has none{_gone_note(queues)}")
    known = ", ".join(q.logical_id for q in dead_letter_queues(queues))
    raise AdminError(f"no queue {wanted} in the stack; its dead-letter queues are: {known}{_gone_note(queues)}")


def _gone_note(queues: dict[str, Queue]) -> str:
    gone = gone_queues(queues)
    if not gone:
        return ""
    names = ", ".join(f"{q.logical_id} ({q.url})" for q in gone)
    return f" (queues of the stack that SQS no longer has, so their dead-letter queues have no source: {names})"


# -- dlq show --------------------------------------------------------------------------------------------------------


def peek(sqs, queue: Queue, count: int, *, full: bool = False) -> list[dict[str, Any]]:
    """Up to ``count`` messages, left in the queue (visibility timeout 0); unless ``full``, with a job's SQL and
    parameter values left out (:func:`without_tenant_data`)."""
    if count <= 0:
        return []
    response = sqs.receive_message(
        QueueUrl=queue.url,
        MaxNumberOfMessages=min(count, 10),
        VisibilityTimeout=0,
        WaitTimeSeconds=1,  # a short poll samples some of SQS's servers and may answer none of a few messages
        MessageSystemAttributeNames=["All"],
    )
    return [
        {
            "message_id": message["MessageId"],
            "sent_at": _timestamp(message.get("Attributes", {}).get("SentTimestamp")),
            "receive_count": int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
            "body": message["Body"] if full else without_tenant_data(message["Body"]),
        }
        for message in response.get("Messages", [])
    ]


#: What a message body may carry of a tenant's data, kept out of ``dlq show`` as spectra/logs.py keeps it out of log
#: lines: a job's SQL and its parameter values (a jobs-queue message carries its whole job), and the database's
#: messages, which may echo a value (``invalid input syntax for integer: "123-45-6789"``: a job event's error, a
#: webhook delivery's last error).
_TENANT_DATA = ("sql", "parameters", "message", "last_error", "errorMessage")
#: Fields that hold a JSON document as a string (a webhook delivery's payload): read as JSON, hidden within.
_NESTED_JSON = ("payload",)


def without_tenant_data(body: str) -> str:
    """``body`` with the values of :data:`_TENANT_DATA` (at any depth, inside :data:`_NESTED_JSON` strings too)
    replaced by what they were. A body that is not a JSON object or array (cut short, sent by hand, nested past
    what can be read) is told by its size, as the logs tell it: it may be a job's SQL all the same."""
    try:
        document = json.loads(body)
        if isinstance(document, dict | list):
            return json.dumps(_hide(document), separators=(",", ":"))
    except (ValueError, RecursionError):
        pass
    return f"<{len(body)} characters, not a JSON object: --full shows them>"


def _hide(node: Any) -> Any:
    if isinstance(node, list):
        return [_hide(item) for item in node]
    if not isinstance(node, dict):
        return node
    shown = {}
    for key, value in node.items():
        if key in _TENANT_DATA and value:
            size = len(value) if isinstance(value, str | list) else 1
            shown[key] = f"<{size} {'characters' if isinstance(value, str) else 'items'} hidden: --full shows them>"
        elif key in _NESTED_JSON and isinstance(value, str):
            shown[key] = without_tenant_data(value)
        else:
            shown[key] = _hide(value)
    return shown


def _timestamp(milliseconds: str | None) -> str | None:
    if not milliseconds:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(milliseconds) / 1000))


def show(sqs, queues: dict[str, Queue], *, peek_count: int, full: bool = False) -> list[dict[str, Any]]:
    """Each dead-letter queue with its depth and first messages; then each queue SQS no longer has (``gone``)."""
    shown: list[dict[str, Any]] = [
        {
            "queue": queue.logical_id,
            "source": queue.source.logical_id if queue.source else None,
            "url": queue.url,
            "depth": queue.depth,
            "in_flight": queue.in_flight,
            # an empty queue is not peeked: each peek waits up to a second
            "messages": peek(sqs, queue, peek_count, full=full) if queue.depth or queue.in_flight else [],
        }
        for queue in [*dead_letter_queues(queues), *orphaned_queues(queues)]
    ]
    gone = [  # the keys of the others, so a reader of the JSON can take every entry alike
        {
            "queue": queue.logical_id,
            "source": None,
            "url": queue.url,
            "depth": None,
            "in_flight": None,
            "messages": [],
            "gone": True,
        }
        for queue in gone_queues(queues)
    ]
    return shown + gone


# -- redrive ---------------------------------------------------------------------------------------------------------


@dataclass
class Redrive:
    queue: str
    source: str
    method: str  # "message-move-task" or "receive-send-delete"
    moved: int | None  # None while a task runs on (--no-wait)
    status: str
    task_handle: str | None = None
    interrupted: bool = False  # the operator stopped waiting (Ctrl-C): the task runs on


def is_unsupported(exc: ClientError) -> bool:
    """Whether the endpoint says it has no such operation, rather than refusing this call for a reason (a 500 is a
    fault, not an answer: it is reported, never taken for "unsupported")."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in UNSUPPORTED_CODES or status == 501


def redrive(
    sqs,
    dead_letter: Queue,
    *,
    rate: int | None = None,
    wait: bool = True,
    poll_seconds: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Redrive:
    """Move ``dead_letter``'s messages back to its source: a message move task, or the fallback (module doc)."""
    source = dead_letter.source
    if source is None:
        raise AdminError(f"{dead_letter.logical_id} is no queue's dead-letter queue")
    if dead_letter.of_rule:
        moved = move_messages(sqs, dead_letter, source, rate=rate, sleep=sleep)
        return Redrive(dead_letter.logical_id, source.logical_id, "receive-send-delete", moved, "COMPLETED")
    request: dict[str, Any] = {"SourceArn": dead_letter.arn, "DestinationArn": source.arn}
    if rate:
        request["MaxNumberOfMessagesPerSecond"] = rate
    try:
        handle = sqs.start_message_move_task(**request)["TaskHandle"]
    except ClientError as exc:
        # SQS answers some refusals (a task already running on the queue) with UnsupportedOperation too: only an
        # endpoint that has no message move tasks at all gets the fallback, which beside a running task would move
        # the same messages twice over
        tasks = move_tasks(sqs, dead_letter) if is_unsupported(exc) else []
        if tasks is not None:
            active = next((t for t in tasks if t.get("Status") in ACTIVE_TASK_STATES), None)
            if active is not None:
                raise AdminError(
                    f"a message move task already runs on {dead_letter.logical_id} ({active['Status']}, "
                    f"{_messages(active.get('ApproximateNumberOfMessagesMoved', 0))} moved so far, task "
                    f"{active.get('TaskHandle')}): wait for it to end, or cancel it (CancelMessageMoveTask)"
                ) from None
            raise AdminError(f"StartMessageMoveTask refused: {exc}") from None
        moved = move_messages(sqs, dead_letter, source, rate=rate, sleep=sleep)
        return Redrive(dead_letter.logical_id, source.logical_id, "receive-send-delete", moved, "COMPLETED")
    if not wait:
        return Redrive(dead_letter.logical_id, source.logical_id, "message-move-task", None, "RUNNING", handle)
    try:
        return _wait_for_task(sqs, dead_letter, source, handle, poll_seconds=poll_seconds, sleep=sleep)
    except KeyboardInterrupt:  # the operator stopped waiting: the task does not stop with us
        return Redrive(
            dead_letter.logical_id, source.logical_id, "message-move-task", None, "RUNNING", handle, interrupted=True
        )


def _wait_for_task(
    sqs, dead_letter: Queue, source: Queue, handle: str, *, poll_seconds: float, sleep: Callable[[float], None]
) -> Redrive:
    while True:
        tasks = sqs.list_message_move_tasks(SourceArn=dead_letter.arn, MaxResults=10)["Results"]
        task = next((t for t in tasks if t.get("TaskHandle") == handle), tasks[0] if tasks else None)
        if task is None:
            raise AdminError(f"the message move task of {dead_letter.logical_id} is not listed")
        if task["Status"] in TERMINAL_TASK_STATES:
            if task["Status"] != "COMPLETED":
                reason = task.get("FailureReason", "no reason given")
                raise AdminError(f"the message move task of {dead_letter.logical_id} ended {task['Status']}: {reason}")
            moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
            return Redrive(dead_letter.logical_id, source.logical_id, "message-move-task", moved, "COMPLETED", handle)
        sleep(poll_seconds)


def move_tasks(sqs, dead_letter: Queue) -> list[dict[str, Any]] | None:
    """The queue's recent message move tasks, or None where the endpoint has no message move tasks."""
    try:
        return sqs.list_message_move_tasks(SourceArn=dead_letter.arn, MaxResults=10)["Results"]
    except ClientError as exc:
        if is_unsupported(exc):
            return None
        raise AdminError(f"ListMessageMoveTasks refused: {exc}") from None


def move_messages(
    sqs, dead_letter: Queue, source: Queue, *, rate: int | None = None, sleep: Callable[[float], None] = time.sleep
) -> int:
    """The fallback: receive, send to the source, delete, until a receive finds nothing. Each message is received
    for 60 s, longer than a send and a delete take, so no other reader sees it meanwhile.

    It moves at most the messages the queue held when it began, as a message move task does, and none that came
    since: a message its consumer still fails comes back here, and would be moved again, lap after lap, so a redrive of
    a dozen messages would never end and would count each many times. A copy is known by its ``MessageId`` (a queue
    moving it to its dead-letter queue keeps it), or, sent here anew (the webhook delivery dead-letters a delivery
    itself), by a ``SentTimestamp`` from the second after the redrive's first send on, on SQS's clock (that send's
    answer's ``Date``): on the operator's, 30 s behind SQS's, it would take the newest dead letters for copies and move
    nothing, "COMPLETED"; and with the id alone telling copies apart, a copy sent anew would be moved again. Such a copy
    is kept received (out of the way of the receives that look for the rest) and made visible again at the end. It stops
    when a receive finds nothing, or nothing but copies seen already."""
    moved = 0
    sent: set[str] = set()  # the ids of the copies this redrive sent
    began: int | None = None  # SentTimestamp from which a message is a copy sent anew
    returned: dict[str, str] = {}  # copies this redrive sent that came back: message id → receipt handle
    try:
        held = _held(sqs, dead_letter)

        def came_since(message: dict[str, Any]) -> bool:
            stamp = message.get("Attributes", {}).get("SentTimestamp")
            return message["MessageId"] in sent or (began is not None and stamp is not None and int(stamp) >= began)

        while moved < held:
            started = time.monotonic()
            received = sqs.receive_message(
                QueueUrl=dead_letter.url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=60,
                WaitTimeSeconds=1,
                MessageAttributeNames=["All"],
                AttributeNames=["SentTimestamp"],
            ).get("Messages", [])
            messages = [m for m in received if not came_since(m)]
            back = [m for m in received if came_since(m)]
            if not messages and all(m["MessageId"] in returned for m in back):
                return moved
            returned.update((m["MessageId"], m["ReceiptHandle"]) for m in back)
            for message in messages:
                send: dict[str, Any] = {"QueueUrl": source.url, "MessageBody": message["Body"]}
                if message.get("MessageAttributes"):
                    send["MessageAttributes"] = message["MessageAttributes"]
                answer = sqs.send_message(**send)
                sent.add(answer["MessageId"])
                began = began or _second_after(answer)
                sqs.delete_message(QueueUrl=dead_letter.url, ReceiptHandle=message["ReceiptHandle"])
                moved += 1
            if rate:
                sleep(max(0.0, len(messages) / rate - (time.monotonic() - started)))
    except (ClientError, BotoCoreError, KeyboardInterrupt) as exc:
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
        raise (Interrupted if isinstance(exc, KeyboardInterrupt) else AdminError)(
            f"{_messages(moved)} moved from {dead_letter.logical_id} to {source.logical_id} before: {why} (a message"
            " whose copy was sent but not deleted returns to the dead-letter queue in 60 s, so it may be in both: the"
            " consumers are idempotent; run the redrive again to move the rest)"
        ) from None
    finally:
        for handle in returned.values():  # the copies that came back: visible again, for the operator
            with contextlib.suppress(ClientError, BotoCoreError):
                sqs.change_message_visibility(QueueUrl=dead_letter.url, ReceiptHandle=handle, VisibilityTimeout=0)
    return moved


def _held(sqs, queue: Queue) -> int:
    """How many messages the queue holds, in flight ones too (SQS's approximate counts)."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
        attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
    )


def _second_after(answer: dict[str, Any]) -> int | None:
    """The second after SQS answered, on its clock (the answer's ``Date``, whole seconds), in milliseconds as
    ``SentTimestamp`` counts: a message sent from then on was sent after the answer. None without a ``Date``."""
    date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return (int(parsedate_to_datetime(date).timestamp()) + 1) * 1000 if date else None
    except (TypeError, ValueError):
        return None


# -- the command line ------------------------------------------------------------------------------------------------


def _messages(count: int) -> str:
    return f"{count} message" if count == 1 else f"{count} messages"


def _default_state_file() -> Path:
    """Where ``python -m local`` writes its state (local/runner/state.py's ``default_state_file``; the deployed
    library cannot import the local stack)."""
    explicit = os.environ.get("SPECTRA_STATE_FILE")
    return Path(explicit) if explicit else Path(tempfile.gettempdir()) / "spectra-local" / "spectra-local.json"


def locate(args: argparse.Namespace) -> tuple[Path | None, str | None]:
    """Which stack the command is about: a local stack's state file, or a deployed stack's name."""
    stack = args.stack or os.environ.get("SPECTRA_STACK")
    state = args.state or (None if stack else _default_state_file())
    if state is not None and (args.state or state.exists()):
        return state, None
    if stack:
        return None, stack
    # neither named: the local stack's state file was the default, and is not there (no stack running, or one
    # stopped, which removes it): said with its path, or README's local command would answer only "name the stack"
    raise AdminError(
        f"no local stack's state file at {state} (python -m local, make run, writes it while it runs); "
        "name the stack: --stack NAME (or SPECTRA_STACK) for a deployed one, --state FILE for a local one"
    )


def stack_queues(args: argparse.Namespace, session: boto3.session.Session) -> tuple[dict[str, str], dict[str, Any]]:
    """The stack's queues (logical id → URL), and the options of the SQS client that reaches them."""
    state, stack = locate(args)
    if state is not None:
        return queues_from_state(state), state_endpoint(state, session)
    return queues_from_stack(session.client("cloudformation", config=_CLIENT_CONFIG), stack), {}


def stack_tenants(
    args: argparse.Namespace, session: boto3.session.Session
) -> tuple[TenantDirectory, UsagePlans, dict[str, Any], TenantIdentities | None]:
    """The stack's tenant directory and usage plans, the options of the clients that reach them, and what the
    stack's executor takes for a tenant identity."""
    state, stack = locate(args)
    if state is not None:
        resources, options = tenant_admin.resources_from_state(state), state_endpoint(state, session)
    else:
        cloudformation = session.client("cloudformation", config=_CLIENT_CONFIG)
        resources, options = tenant_admin.resources_from_stack(cloudformation, stack), {}
    dynamodb = session.client("dynamodb", config=_CLIENT_CONFIG, **options)
    retry_passing_refusals(dynamodb)  # a delete's transaction with the slots item meets the tenant's jobs' ends
    apigateway = session.client("apigateway", config=_CLIENT_CONFIG, **options)
    tenants = TenantDirectory(dynamodb, resources.tenants_table, resources.subscriptions_table)
    if resources.plan_ids is not None:
        plans = UsagePlans(apigateway, resources.plan_ids)
    else:
        plans = UsagePlans.by_name(apigateway, stack_names=[resources.stack_name])
    return tenants, plans, options, resources.identities


def state_endpoint(path: Path, session: boto3.session.Session) -> dict[str, Any]:
    """A local stack's state file names the endpoint and region its queues live at (local/runner/state.py), so the
    command needs no AWS_ENDPOINT_URL; that endpoint (moto) takes any credentials, so where none are configured it
    gets placeholder ones rather than failing before the first request."""
    state = json.loads(Path(path).read_text(encoding="utf-8"))
    options: dict[str, Any] = {}
    if state.get("aws_endpoint_url"):
        options = {"endpoint_url": state["aws_endpoint_url"], "region_name": state.get("region") or None}
        if session.get_credentials() is None:
            options.update(aws_access_key_id="local", aws_secret_access_key="local")
    return options


def main(argv: list[str] | None = None, *, session: boto3.session.Session | None = None, out=sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m spectra.admin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", help="a deployed stack's name (default $SPECTRA_STACK)")
    parser.add_argument("--state", type=Path, help="the local stack's state file")
    commands = parser.add_subparsers(dest="command", required=True)
    dlq = commands.add_parser("dlq", help="the dead-letter queues")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    show_parser = dlq_commands.add_parser("show", help="every dead-letter queue: depth and a peek at its messages")
    show_parser.add_argument("--peek", type=_peek, default=3, help="messages to show per queue (0-10, default 3)")
    show_parser.add_argument("--json", action="store_true", help="JSON instead of text")
    show_parser.add_argument("--full", action="store_true", help="bodies as they are, a job's SQL and values too")
    redrive_parser = commands.add_parser("redrive", help="move a dead-letter queue's messages back to its source")
    redrive_parser.add_argument("queue", help="the dead-letter queue (or its source): logical id, name or URL")
    redrive_parser.add_argument("--rate", type=_rate, help="messages per second at most (1-500, as SQS takes it)")
    redrive_parser.add_argument("--no-wait", action="store_true", help="start the move task and return")
    tenant_admin.add_commands(commands)
    args = parser.parse_args(argv)
    session = session or boto3.session.Session()
    client_options: dict[str, Any] = {}
    try:
        if args.command in tenant_admin.COMMANDS:
            tenants, plans, client_options, identities = stack_tenants(args, session)
            return tenant_admin.run(args, tenants, plans, out, identities)
        urls, client_options = stack_queues(args, session)
        sqs = session.client("sqs", config=_CLIENT_CONFIG, **client_options)
        queues = describe_queues(sqs, urls)
        if args.command == "dlq":
            report = show(sqs, queues, peek_count=args.peek, full=args.full)
            print(json.dumps(report, indent=2) if args.json else _show_text(report), file=out)
        else:
            result = redrive(sqs, find_dead_letter_queue(queues, args.queue), rate=args.rate, wait=not args.no_wait)
            if result.moved is not None:
                moved = _messages(result.moved) + " moved"
            else:  # the handle is what CancelMessageMoveTask takes
                moved = f"a task runs on (handle {result.task_handle})" if result.task_handle else "a task runs on"
                if result.interrupted:
                    moved = "no longer waited for: " + moved
            print(f"{result.queue} → {result.source}: {moved} ({result.method}, {result.status})", file=out)
            if result.interrupted:
                return 130  # as a shell reports an interrupted command: a script does not carry on as if done
    except EndpointConnectionError as exc:
        # a local stack's state file names its endpoint; a stack killed rather than stopped leaves the file behind
        if client_options.get("endpoint_url"):
            state = args.state or _default_state_file()
            exc = f"{exc}: the local stack whose state file {state} names it is not running (killed, its file left)"
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (AdminError, ClientError, BotoCoreError) as exc:  # a refusal (AccessDenied, a queue gone, no credentials)
        print(f"error: {exc}", file=sys.stderr)  # is said in one line, not a traceback
        return 130 if isinstance(exc, Interrupted) else 1
    except (SpectraError, ValidationError, ValueError) as exc:  # a tenant command refused (taken, unknown, invalid)
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C outside a move (listing the queues, peeking, starting a task): one line too
        print(
            "error: interrupted (a peek changes nothing; a message move task, if one was being started, shows in "
            "SQS's ListMessageMoveTasks)",
            file=sys.stderr,
        )
        return 130
    return 0


def _one_line(exc: Exception) -> str:
    """A refusal as one line: pydantic's field errors each with their field, not its multi-line report."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, error['loc'])) or 'tenant'}: {error['msg']}" for error in exc.errors())
    return str(exc)


#: --rate: SQS's MaxNumberOfMessagesPerSecond takes 1 to 500 (the fallback keeps the same bound)
_rate = whole_number(1, 500)
#: --peek: ReceiveMessage returns at most 10 messages
_peek = whole_number(0, 10)


#: Characters a terminal acts on (line breaks, escape sequences): a hand-sent body's are shown as \\xNN
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _show_text(report: list[dict[str, Any]]) -> str:
    lines = []
    for queue in report:
        if queue.get("gone"):
            lines.append(
                f"{queue['queue']}: gone (SQS has no queue {queue['url']}; its dead-letter queue, if any, "
                "is listed without a source)"
            )
            continue
        source = queue["source"] or "gone, so none to redrive to"
        lines.append(f"{queue['queue']} (source {source}): {queue['depth']} waiting, {queue['in_flight']} in flight")
        for message in queue["messages"]:
            body = _CONTROL.sub(lambda c: f"\\x{ord(c.group()):02x}", message["body"])  # one line, no escapes
            body = body if len(body) <= 160 else body[:157] + "..."
            lines.append(
                f"  {message['message_id']} sent {message['sent_at']}, received {message['receive_count']}x: {body}"
            )
    return "\n".join(lines) or "no dead-letter queues"


if __name__ == "__main__":
    sys.exit(main())
