"""spectra.admin's redrive through SQS message move tasks, the exact requests checked with botocore's Stubber (moto
has no message move tasks; tests/integration/admin covers the fallback on moto)."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from spectra import admin

pytestmark = pytest.mark.unit

SOURCE_ARN = "arn:aws:sqs:us-east-1:123456789012:spectra-JobsQueue"
DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:spectra-JobsDeadLetterQueue"


@pytest.fixture
def queues():
    source = admin.Queue("JobsQueue", "https://sqs/123/spectra-JobsQueue", SOURCE_ARN, DLQ_ARN)
    dead_letter = admin.Queue("JobsDeadLetterQueue", "https://sqs/123/spectra-JobsDeadLetterQueue", DLQ_ARN)
    dead_letter.source = source
    return source, dead_letter


@pytest.fixture
def sqs():
    client = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_a_message_move_task_is_started_and_followed_to_its_end(queues, sqs):
    _, dead_letter = queues
    client, stubber = sqs
    expected = {"SourceArn": DLQ_ARN, "DestinationArn": SOURCE_ARN, "MaxNumberOfMessagesPerSecond": 50}
    stubber.add_response("start_message_move_task", {"TaskHandle": "h-1"}, expected)
    listing = {"SourceArn": DLQ_ARN, "MaxResults": 10}
    running = {"TaskHandle": "h-1", "Status": "RUNNING", "ApproximateNumberOfMessagesMoved": 3}
    stubber.add_response("list_message_move_tasks", {"Results": [running]}, listing)
    done = {**running, "Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 7}
    stubber.add_response("list_message_move_tasks", {"Results": [done]}, listing)
    waits = []
    result = admin.redrive(client, dead_letter, rate=50, sleep=waits.append)
    assert (result.method, result.moved, result.status, result.task_handle) == (
        "message-move-task",
        7,
        "COMPLETED",
        "h-1",
    )
    assert waits == [2.0]  # polled once more after RUNNING


def test_no_wait_returns_the_running_task(queues, sqs):
    _, dead_letter = queues
    client, stubber = sqs
    stubber.add_response(
        "start_message_move_task", {"TaskHandle": "h-2"}, {"SourceArn": DLQ_ARN, "DestinationArn": SOURCE_ARN}
    )
    result = admin.redrive(client, dead_letter, wait=False)
    assert (result.moved, result.status, result.task_handle) == (None, "RUNNING", "h-2")


def test_a_failed_task_is_an_error_with_its_reason(queues, sqs):
    _, dead_letter = queues
    client, stubber = sqs
    stubber.add_response("start_message_move_task", {"TaskHandle": "h-3"})
    failed = {"TaskHandle": "h-3", "Status": "FAILED", "FailureReason": "AccessDenied on the destination"}
    stubber.add_response("list_message_move_tasks", {"Results": [failed]})
    with pytest.raises(admin.AdminError, match="ended FAILED: AccessDenied on the destination"):
        admin.redrive(client, dead_letter, sleep=lambda _: None)


def test_a_refusal_for_a_reason_is_not_taken_for_an_unsupported_operation(queues, sqs):
    """Only "no such operation" falls back to moving messages by hand; a denied or invalid request is reported."""
    _, dead_letter = queues
    client, stubber = sqs
    stubber.add_client_error("start_message_move_task", "AccessDenied", "not allowed", 403)
    with pytest.raises(admin.AdminError, match="StartMessageMoveTask refused"):
        admin.redrive(client, dead_letter)


@pytest.mark.parametrize(
    ("code", "status", "message", "unsupported"),
    [
        ("AWS.SimpleQueueService.UnsupportedOperation", 400, "", True),
        ("UnsupportedOperation", 400, "", True),
        ("InvalidAction", 400, "", True),
        ("UnsupportedOperation", 501, "The start_message_move_task action has not been implemented", True),
        ("NotImplemented", 501, "", True),
        ("500", 500, "<!doctype html> Internal Server Error", False),
        ("InternalError", 500, "try again", False),
        ("AccessDenied", 403, "", False),
        ("ResourceNotFoundException", 400, "", False),
    ],
)
def test_what_counts_as_unsupported(code, status, message, unsupported):
    from botocore.exceptions import ClientError

    error = ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "X"
    )
    assert admin.is_unsupported(error) is unsupported


def test_a_task_already_running_is_reported_and_never_doubled_by_the_fallback(queues, sqs):
    """SQS may refuse a second task on the same queue with an UnsupportedOperation code: the listing shows the
    endpoint has move tasks, so the running one is named and nothing is moved by hand (no receive is stubbed)."""
    _, dead_letter = queues
    client, stubber = sqs
    message = "There is already a task running. Only one active task is allowed for a source queue arn at a given time."
    stubber.add_client_error("start_message_move_task", "AWS.SimpleQueueService.UnsupportedOperation", message, 400)
    running = {"TaskHandle": "h-4", "Status": "RUNNING", "ApproximateNumberOfMessagesMoved": 12}
    stubber.add_response("list_message_move_tasks", {"Results": [running]}, {"SourceArn": DLQ_ARN, "MaxResults": 10})
    with pytest.raises(admin.AdminError, match=r"already runs on JobsDeadLetterQueue .*12 messages moved.*h-4"):
        admin.redrive(client, dead_letter)


def test_a_source_with_two_dead_letter_queues_names_both_instead_of_picking_one():
    """NotifyQueue has its own DLQ and its EventBridge rule's: redriving by the source's name took the first by
    logical id and left the rule DLQ's events where they were."""
    source = admin.Queue("NotifyQueue", "https://sqs/123/NotifyQueue", "arn:q:notify", "arn:q:notify-dlq")
    own = admin.Queue("NotifyDeadLetterQueue", "https://sqs/123/NotifyDeadLetterQueue", "arn:q:notify-dlq")
    rule = admin.Queue("NotifyRuleDeadLetterQueue", "https://sqs/123/NotifyRuleDeadLetterQueue", "arn:q:rule-dlq")
    own.source = source
    rule.source, rule.of_rule = source, True
    queues = {q.logical_id: q for q in (own, source, rule)}
    with pytest.raises(admin.AdminError, match="NotifyDeadLetterQueue and NotifyRuleDeadLetterQueue"):
        admin.find_dead_letter_queue(queues, "NotifyQueue")
    assert admin.find_dead_letter_queue(queues, "NotifyRuleDeadLetterQueue") is rule
    del queues["NotifyRuleDeadLetterQueue"]
    assert admin.find_dead_letter_queue(queues, "NotifyQueue") is own


def test_a_peek_long_polls_so_a_few_messages_are_seen():
    """A short poll samples some of SQS's servers and may answer none of a few messages: dlq show printed "2 waiting"
    over an empty peek (operations review)."""

    class Recording:
        calls: list[dict] = []

        def receive_message(self, **request):
            self.calls.append(request)
            return {"Messages": []}

    sqs = Recording()
    admin.peek(sqs, admin.Queue("JobsDeadLetterQueue", "https://sqs.example/1/dlq"), 3)
    assert sqs.calls[0]["WaitTimeSeconds"] >= 1


def test_ctrl_c_while_a_redrive_waits_says_the_task_runs_on(capsys):
    """A KeyboardInterrupt traceback told the operator nothing of the task, which runs on (operations review)."""

    class Running:
        def start_message_move_task(self, **request):
            return {"TaskHandle": "h-1"}

        def list_message_move_tasks(self, **request):
            return {"Results": [{"TaskHandle": "h-1", "Status": "RUNNING"}]}

    def interrupted(seconds):
        raise KeyboardInterrupt

    source = admin.Queue("JobsQueue", "https://sqs.example/1/src", "arn:src")
    dead_letter = admin.Queue("JobsDeadLetterQueue", "https://sqs.example/1/dlq", "arn:dlq", source=source)
    try:
        result = admin.redrive(Running(), dead_letter, sleep=interrupted)
    except KeyboardInterrupt:
        pytest.fail("the interrupt escaped: the operator is not told that task h-1 runs on")
    assert (result.status, result.moved, result.task_handle, result.interrupted) == ("RUNNING", None, "h-1", True)


def test_a_redrive_by_hand_stopped_midway_says_how_many_it_moved():
    """A refused receive, or Ctrl-C, after some messages were moved came out as a bare error or a traceback, with no
    count (diff review)."""
    from botocore.exceptions import ClientError

    class Sqs:
        def __init__(self, stop):
            self.received, self.stop = 0, stop

        def receive_message(self, **request):
            self.received += 1
            if self.received == 3:
                raise self.stop
            return {
                "Messages": [{"MessageId": f"m{self.received}", "Body": "{}", "ReceiptHandle": f"r{self.received}"}]
            }

        def send_message(self, **request):
            return {"MessageId": f"sent{self.received}"}

        def delete_message(self, **request):
            return {}

        def get_queue_attributes(self, **request):
            return {"Attributes": {"ApproximateNumberOfMessages": "5"}}

    source = admin.Queue("JobsQueue", "https://sqs.example/1/src", "arn:src")
    dead_letter = admin.Queue("JobsDeadLetterQueue", "https://sqs.example/1/dlq", "arn:dlq", source=source)
    throttled = ClientError({"Error": {"Code": "RequestThrottled", "Message": "Rate exceeded"}}, "ReceiveMessage")
    for stop, why in ((throttled, "Rate exceeded"), (KeyboardInterrupt(), "interrupted")):
        with pytest.raises(
            admin.AdminError, match=f"^2 messages moved from JobsDeadLetterQueue to JobsQueue before: .*{why}"
        ):
            admin.move_messages(Sqs(stop), dead_letter, source)


def test_a_redrive_by_hand_goes_on_past_a_receive_of_copies_that_came_back_and_leaves_them_visible():
    """SQS returns a queue's messages in no order: a receive holding only a copy the redrive sent, failed again and
    back, ended the redrive with four of the five messages the queue held still in it (the diff review). A copy is
    known by the id its send was answered (SQS keeps a message's id as it moves it to the dead-letter queue)."""

    class Sqs:
        def __init__(self):
            self.old = [{"MessageId": f"m{n}", "Body": f"{n}", "ReceiptHandle": f"o{n}"} for n in range(5)]
            back = {"MessageId": "copy-of-0", "Body": "0", "ReceiptHandle": "b0"}
            self.answers = [self.old[:1], [back], self.old[1:], [back], []]
            self.sent, self.visible_again = [], []

        def get_queue_attributes(self, **request):
            return {"Attributes": {"ApproximateNumberOfMessages": "5"}}

        def receive_message(self, **request):
            return {"Messages": self.answers.pop(0)}

        def send_message(self, **request):
            self.sent.append(request["MessageBody"])
            return {"MessageId": f"copy-of-{request['MessageBody']}"}

        def delete_message(self, **request):
            pass

        def change_message_visibility(self, **request):
            self.visible_again.append(request["ReceiptHandle"])

    source = admin.Queue("JobsQueue", "https://sqs.example/1/src", "arn:src")
    dead_letter = admin.Queue("JobsDeadLetterQueue", "https://sqs.example/1/dlq", "arn:dlq", source=source)
    sqs = Sqs()
    assert admin.move_messages(sqs, dead_letter, source) == 5
    assert sqs.sent == ["0", "1", "2", "3", "4"] and sqs.visible_again == ["b0"]


def test_ctrl_c_during_a_redrive_by_hand_exits_130(capsys, monkeypatch):
    """As Ctrl-C while a move task is waited for: it exited 1, as a refusal does (diff review)."""
    source = admin.Queue("NotifyQueue", "https://sqs.example/1/src", "arn:src")
    dead_letter = admin.Queue("NotifyRuleDeadLetterQueue", "https://sqs.example/1/dlq", "arn:dlq", source=source)
    dead_letter.of_rule = True

    def stack_queues(args, session):
        return {}, {}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    class Sqs:
        receive_message = staticmethod(interrupted)

        def get_queue_attributes(self, **request):
            return {"Attributes": {"ApproximateNumberOfMessages": "1"}}

    class Session:
        def client(self, *args, **kwargs):
            return Sqs()

    monkeypatch.setattr(admin, "stack_queues", stack_queues)
    monkeypatch.setattr(admin, "describe_queues", lambda sqs, urls: {q.logical_id: q for q in (source, dead_letter)})
    assert admin.main(["redrive", "NotifyRuleDeadLetterQueue"], session=Session()) == 130
    assert capsys.readouterr().err.startswith("error: 0 messages moved from NotifyRuleDeadLetterQueue to NotifyQueue")


@pytest.mark.parametrize("command", [["dlq", "show"], ["redrive", "JobsDeadLetterQueue"]])
def test_ctrl_c_before_anything_moves_is_one_line_and_130(command, capsys, monkeypatch):
    """Ctrl-C while the queues were listed or peeked printed a KeyboardInterrupt traceback (operations walk)."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(admin, "stack_queues", interrupted)
    assert admin.main(command, session=object()) == 130
    err = capsys.readouterr().err
    assert err.startswith("error: interrupted") and "Traceback" not in err


def test_a_gone_queues_json_entry_has_the_keys_of_the_others():
    jobs = admin.Queue("JobsQueue", "https://sqs.example/1/src", gone=True)
    dead_letter = admin.Queue("IngestDeadLetterQueue", "https://sqs.example/1/dlq", "arn:dlq")
    dead_letter.source = admin.Queue("IngestQueue", "https://sqs.example/1/ingest", "arn:ingest")
    listed, gone = admin.show(None, {"JobsQueue": jobs, "IngestDeadLetterQueue": dead_letter}, peek_count=3)[-2:]
    assert set(gone) - {"gone"} == set(listed) and gone["gone"] is True


def test_no_stack_named_and_no_local_state_file_says_where_it_looked(tmp_path, monkeypatch, capsys):
    """README's local command (``dlq show``, no --stack or --state) with no local stack running answered only "name
    the stack", as if the local stack were not its default: the error names the state file it looked for."""
    missing = tmp_path / "spectra-local" / "spectra-local.json"
    monkeypatch.setenv("SPECTRA_STATE_FILE", str(missing))
    monkeypatch.delenv("SPECTRA_STACK", raising=False)
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    assert admin.main(["dlq", "show"], session=session) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ")
    assert f"no local stack's state file at {missing}" in error
    assert "--stack NAME" in error


def test_copies_sent_anew_are_told_from_the_second_after_the_first_sends_answer_on_sqss_clock():
    """The fallback redrive takes a dead letter stamped from this SentTimestamp on (milliseconds) for a copy it sent
    itself: the whole second after the answer's ``Date``, so a message sent during that answer's second is no copy.
    An answer without a readable ``Date`` gives none (copies are then known by their message ids alone)."""

    def answer(date):
        return {"MessageId": "m-1", "ResponseMetadata": {"HTTPHeaders": {} if date is None else {"date": date}}}

    assert admin._second_after(answer("Sat, 05 Dec 2026 10:00:00 GMT")) == 1_796_464_801_000
    assert admin._second_after(answer("Sat, 05 Dec 2026 10:00:00 +0100")) == 1_796_461_201_000
    assert admin._second_after(answer(None)) is None
    assert admin._second_after(answer("yesterday")) is None
    assert admin._second_after({"MessageId": "m-1"}) is None
