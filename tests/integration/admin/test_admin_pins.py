"""spectra.admin behaviour no test held before (found by mutation testing spectra/admin.py): a dead-letter body that
is a JSON array has each item's SQL and values hidden, a value that is neither text nor a list is told as one item;
show() hides them unless asked; a peek asked for more than SQS returns asks for 10; and ``redrive`` waits for its
message move task unless given --no-wait. On moto, with the queues of test_admin.py's ``stack`` fixture; SQS's message
move tasks, which moto lacks, answered through tests/fixtures/aws.py's ``Faulty``."""

from __future__ import annotations

import io
import json

import boto3
import pytest
from botocore.exceptions import ClientError

from spectra import admin
from tests.fixtures.aws import Faulty
from tests.integration.admin.test_admin import run, stack  # noqa: F401  (the fixture, used by name)

pytestmark = pytest.mark.integration


def test_a_body_that_is_a_json_array_has_each_items_sql_and_values_hidden(local_aws, stack):  # noqa: F811
    """A batch of jobs sent as one JSON array was shown as null, its job ids lost with its SQL; a parameter value
    that is a number is told as one item."""
    name, urls = stack
    body = [{"job_id": "j_1", "sql": "select 1", "parameters": 7}, {"job_id": "j_2"}]
    local_aws.client("sqs").send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody=json.dumps(body))
    status, out = run(local_aws, "--stack", name, "dlq", "show", "--json")
    assert status == 0
    assert json.loads(json.loads(out)[0]["messages"][0]["body"]) == [
        {
            "job_id": "j_1",
            "sql": "<8 characters hidden: --full shows them>",
            "parameters": "<1 items hidden: --full shows them>",
        },
        {"job_id": "j_2"},
    ]


def test_show_called_without_full_hides_a_jobs_sql(local_aws, stack):  # noqa: F811
    """show() is the library's dlq show: a caller that does not ask for full bodies gets them hidden."""
    _, urls = stack
    sqs = local_aws.client("sqs")
    sqs.send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody=json.dumps({"job_id": "j_1", "sql": "select 1"}))
    (shown,) = admin.show(sqs, admin.describe_queues(sqs, urls), peek_count=1)
    assert json.loads(shown["messages"][0]["body"]) == {
        "job_id": "j_1",
        "sql": "<8 characters hidden: --full shows them>",
    }


def test_a_peek_for_more_than_sqs_returns_asks_for_ten(local_aws, stack):  # noqa: F811
    """ReceiveMessage takes at most 10: a caller asking peek for 15 gets up to 10, not a refusal."""
    _, urls = stack
    sqs = Faulty(local_aws.client("sqs"))
    asked = []
    sqs.faults["receive_message"] = lambda real, kwargs: asked.append(kwargs["MaxNumberOfMessages"]) or real(**kwargs)
    for n in range(12):
        sqs.send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody=json.dumps({"job_id": f"j_{n}"}))
    queues = admin.describe_queues(sqs, urls)
    messages = admin.peek(sqs, queues["JobsDeadLetterQueue"], 15)
    assert asked == [10] and 1 <= len(messages) <= 10


def _with_move_tasks(local_aws, monkeypatch, statuses: list[str]) -> boto3.session.Session:
    """A session whose SQS client answers StartMessageMoveTask with task h-1 and ListMessageMoveTasks with it in each
    of ``statuses`` in turn (moto has no message move tasks)."""
    session = boto3.session.Session(region_name=local_aws.region)
    real_client = session.client
    listed = iter(statuses)

    def client(name, **kwargs):
        made = real_client(name, **kwargs)
        if name != "sqs":
            return made
        sqs = Faulty(made)
        sqs.faults["start_message_move_task"] = lambda real, request: {"TaskHandle": "h-1"}
        sqs.faults["list_message_move_tasks"] = lambda real, request: {
            "Results": [{"TaskHandle": "h-1", "Status": next(listed), "ApproximateNumberOfMessagesMoved": 4}]
        }
        return sqs

    monkeypatch.setattr(session, "client", client)
    return session


def test_redrive_waits_for_its_message_move_task_unless_told_not_to(local_aws, stack, monkeypatch):  # noqa: F811
    """redrive says how many messages its task moved once it ended; with --no-wait, that its task runs on."""
    name, _ = stack
    out = io.StringIO()
    session = _with_move_tasks(local_aws, monkeypatch, ["COMPLETED"])
    assert admin.main(["--stack", name, "redrive", "JobsDeadLetterQueue"], session=session, out=out) == 0
    assert out.getvalue() == "JobsDeadLetterQueue → JobsQueue: 4 messages moved (message-move-task, COMPLETED)\n"
    out = io.StringIO()
    session = _with_move_tasks(local_aws, monkeypatch, [])
    assert admin.main(["--stack", name, "redrive", "JobsDeadLetterQueue", "--no-wait"], session=session, out=out) == 0
    assert (
        out.getvalue() == "JobsDeadLetterQueue → JobsQueue: a task runs on (handle h-1) (message-move-task, RUNNING)\n"
    )


def test_a_task_being_cancelled_on_the_queue_is_reported_and_nothing_is_moved_by_hand(local_aws, stack):  # noqa: F811
    """SQS answers a second task on a queue with UnsupportedOperation too: one still CANCELLING is running, so the
    fallback, which would move the same messages beside it, is not taken."""
    _, urls = stack
    sqs = Faulty(local_aws.client("sqs"))
    sqs.send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody=json.dumps({"job_id": "j_1"}))

    def unsupported(real, request):
        error = {"Error": {"Code": "UnsupportedOperation", "Message": "a task runs"}}
        raise ClientError(error, "StartMessageMoveTask")

    sqs.faults["start_message_move_task"] = unsupported
    sqs.faults["list_message_move_tasks"] = lambda real, request: {
        "Results": [{"TaskHandle": "h-9", "Status": "CANCELLING", "ApproximateNumberOfMessagesMoved": 2}]
    }
    queues = admin.describe_queues(sqs, urls)
    with pytest.raises(admin.AdminError, match="a message move task already runs on JobsDeadLetterQueue"):
        admin.redrive(sqs, queues["JobsDeadLetterQueue"])
    attributes = sqs.get_queue_attributes(QueueUrl=urls["JobsDeadLetterQueue"], AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "1"


def test_a_peek_of_0_shows_the_depth_and_asks_sqs_for_nothing(local_aws, stack):  # noqa: F811
    """--peek 0 is taken: the queue's depth with no messages, and no ReceiveMessage (which takes 1 to 10)."""
    _, urls = stack
    sqs = Faulty(local_aws.client("sqs"))
    sqs.send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody=json.dumps({"job_id": "j_1"}))
    asked = []
    sqs.faults["receive_message"] = lambda real, kwargs: asked.append(kwargs) or real(**kwargs)
    (shown,) = admin.show(sqs, admin.describe_queues(sqs, urls), peek_count=0)
    assert (shown["depth"], shown["messages"], asked) == (1, [], [])
