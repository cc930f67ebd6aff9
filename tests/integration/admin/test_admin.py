"""python -m spectra.admin against moto: the stack's queues found through CloudFormation or the local state file,
``dlq show``, and ``redrive``'s fallback (moto has no message move tasks: the local stack's moto answers
StartMessageMoveTask 501 UnsupportedOperation, local/aws.py, which is the only kind of answer the fallback takes)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest

from local.aws import LocalAws
from spectra import admin

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(local_aws: LocalAws):
    """A CloudFormation stack in moto with a source queue and its dead-letter queue, as template.yaml pairs them."""
    name = "adm" + uuid.uuid4().hex[:8]
    template = {
        "Resources": {
            "JobsDeadLetterQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"{name}-jobs-dlq"}},
            "JobsQueue": {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "QueueName": f"{name}-jobs",
                    "RedrivePolicy": {
                        "deadLetterTargetArn": {"Fn::GetAtt": ["JobsDeadLetterQueue", "Arn"]},
                        "maxReceiveCount": 3,
                    },
                },
            },
        }
    }
    local_aws.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    sqs = local_aws.client("sqs")
    urls = {
        "JobsQueue": sqs.get_queue_url(QueueName=f"{name}-jobs")["QueueUrl"],
        "JobsDeadLetterQueue": sqs.get_queue_url(QueueName=f"{name}-jobs-dlq")["QueueUrl"],
    }
    return name, urls


def run(local_aws: LocalAws, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    session = boto3.session.Session(region_name=local_aws.region)
    return admin.main(list(argv), session=session, out=out), out.getvalue()


def test_dlq_show_lists_each_dead_letter_queue_with_its_depth_and_first_messages(local_aws, stack):
    name, urls = stack
    sqs = local_aws.client("sqs")
    for n in range(4):
        sqs.send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody=json.dumps({"job_id": f"j_{n}"}))
    status, out = run(local_aws, "--stack", name, "dlq", "show", "--peek", "2", "--json")
    assert status == 0
    (shown,) = json.loads(out)
    assert (shown["queue"], shown["source"], shown["depth"]) == ("JobsDeadLetterQueue", "JobsQueue", 4)
    assert len(shown["messages"]) == 2 and json.loads(shown["messages"][0]["body"])["job_id"].startswith("j_")
    # peeking left them where they were
    attributes = sqs.get_queue_attributes(QueueUrl=urls["JobsDeadLetterQueue"], AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "4"
    status, text = run(local_aws, "--stack", name, "dlq", "show")
    assert status == 0 and "JobsDeadLetterQueue (source JobsQueue): 4 waiting" in text


def test_dlq_show_hides_a_jobs_sql_and_parameter_values_unless_asked(local_aws, stack):
    """A jobs-queue message carries its whole job, and dlq show printed it, where the logs keep a tenant's SQL and
    values out (found by the isolation review). --full shows the body as it is."""
    name, urls = stack
    job = {
        "job_id": "j_1",
        "sql": "select * from patients where ssn = :ssn",
        "parameters": [{"name": "ssn", "value": "123-45-6789"}],
    }
    local_aws.client("sqs").send_message(
        QueueUrl=urls["JobsDeadLetterQueue"], MessageBody=json.dumps({"job_id": "j_1", "job": job})
    )
    for argv in (["--json"], []):
        status, out = run(local_aws, "--stack", name, "dlq", "show", *argv)
        assert status == 0 and "j_1" in out
        assert "patients" not in out and "123-45-6789" not in out, out
    status, out = run(local_aws, "--stack", name, "dlq", "show", "--json")
    body = json.loads(json.loads(out)[0]["messages"][0]["body"])
    assert body["job"]["sql"] == "<39 characters hidden: --full shows them>"
    assert body["job"]["parameters"] == "<1 items hidden: --full shows them>"
    status, out = run(local_aws, "--stack", name, "dlq", "show", "--json", "--full")
    assert json.loads(json.loads(out)[0]["messages"][0]["body"]) == {"job_id": "j_1", "job": job}


def test_dlq_show_hides_the_databases_messages_which_may_echo_a_value(local_aws, stack):
    """A failed job's event, and a webhook delivery's payload (JSON in a string) and last error, carry the database's
    message, which may quote a parameter's value (found by the diff review)."""
    name, urls = stack
    echo = 'invalid input syntax for type integer: "123-45-6789"'
    event = {"detail": {"job_id": "j_2", "error": {"code": "statement_failed", "message": echo}}}
    delivery = {"webhook_id": "msg_1", "payload": json.dumps({"data": event["detail"]}), "last_error": echo}
    sqs = local_aws.client("sqs")
    for body in (event, delivery):
        sqs.send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody=json.dumps(body))
    status, out = run(local_aws, "--stack", name, "dlq", "show", "--json")
    assert status == 0 and "j_2" in out and "statement_failed" in out
    assert "123-45-6789" not in out, out


def test_dlq_show_tells_a_body_that_is_not_a_json_object_by_its_size(local_aws, stack):
    """A job message cut short is no JSON and was printed as it was, SQL and values included; one nested past what
    can be read stopped dlq show with a traceback, every DLQ with it (found by the observability review)."""
    name, urls = stack
    sqs = local_aws.client("sqs")
    body = json.dumps({"job_id": "j_1", "job": {"sql": "select * from patients where ssn = '123-45-6789'"}})
    # nested deeper than any recursion limit of this process (the SQL guard raises it, to some 11,000 frames)
    for odd in (body[:-2], "[" * 100_000 + "]" * 100_000):
        sqs.send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody=odd)
    sqs.send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody=json.dumps({"job_id": "j_ok"}))
    expected = {
        f"<{len(body) - 2} characters, not a JSON object: --full shows them>",
        "<200000 characters, not a JSON object: --full shows them>",
        '{"job_id":"j_ok"}',
    }
    seen: set[str] = set()
    for _ in range(20):  # a receive may answer some of the messages only
        status, out = run(local_aws, "--stack", name, "dlq", "show", "--json", "--peek", "10")
        assert status == 0 and "123-45-6789" not in out, out
        shown = {m["body"] for m in json.loads(out)[0]["messages"]}
        assert shown <= expected
        seen |= shown
        if seen == expected:
            break
    assert seen == expected
    status, out = run(local_aws, "--stack", name, "dlq", "show", "--json", "--full", "--peek", "10")
    assert status == 0 and "123-45-6789" in out


def test_redrive_moves_every_message_back_with_its_attributes_when_move_tasks_are_unsupported(local_aws, stack):
    name, urls = stack
    sqs = local_aws.client("sqs")
    bodies = {json.dumps({"job_id": f"j_{n}"}) for n in range(23)}
    for body in bodies:
        sqs.send_message(
            QueueUrl=urls["JobsDeadLetterQueue"],
            MessageBody=body,
            MessageAttributes={"origin": {"DataType": "String", "StringValue": "test"}},
        )
    status, out = run(local_aws, "--stack", name, "redrive", "JobsDeadLetterQueue")
    assert status == 0, out
    assert "JobsDeadLetterQueue → JobsQueue: 23 messages moved (receive-send-delete, COMPLETED)" in out
    moved = []
    while messages := sqs.receive_message(
        QueueUrl=urls["JobsQueue"], MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages"):
        moved += messages
        for message in messages:
            sqs.delete_message(QueueUrl=urls["JobsQueue"], ReceiptHandle=message["ReceiptHandle"])
    assert {m["Body"] for m in moved} == bodies and len(moved) == 23
    assert all(m["MessageAttributes"]["origin"]["StringValue"] == "test" for m in moved)
    dlq = sqs.get_queue_attributes(QueueUrl=urls["JobsDeadLetterQueue"], AttributeNames=["All"])["Attributes"]
    assert dlq["ApproximateNumberOfMessages"] == dlq["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_the_source_queue_names_its_dead_letter_queue_and_the_local_state_file_works_too(local_aws, stack, tmp_path):
    _, urls = stack
    state = tmp_path / "state.json"
    resources = {lid: {"type": "AWS::SQS::Queue", "physical_id": url, "status": "created"} for lid, url in urls.items()}
    state.write_text(json.dumps({"resources": resources}))
    local_aws.client("sqs").send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody="{}")
    status, out = run(local_aws, "--state", str(state), "redrive", "JobsQueue")
    assert status == 0 and "1 message moved" in out


def test_unknown_queues_and_unknown_stacks_are_clear_errors(local_aws, stack, capsys):
    name, _ = stack
    assert run(local_aws, "--stack", name, "redrive", "NoSuchQueue")[0] == 1
    assert "its dead-letter queues are: JobsDeadLetterQueue" in capsys.readouterr().err
    assert run(local_aws, "--stack", "no-such-stack-" + name, "dlq", "show")[0] == 1
    assert "cannot list the resources of stack" in capsys.readouterr().err


def test_a_refused_call_is_a_one_line_error_not_a_traceback(local_aws, tmp_path, capsys):
    """A queue gone since the state was written is listed as gone; what cannot be done with it (or AccessDenied, or no
    credentials) is exit status 1 and the reason."""
    sqs = local_aws.client("sqs")
    url = sqs.create_queue(QueueName="adm-gone-" + uuid.uuid4().hex[:8])["QueueUrl"]
    sqs.delete_queue(QueueUrl=url)
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"resources": {"JobsQueue": {"type": "AWS::SQS::Queue", "physical_id": url}}}))
    status, out = run(local_aws, "--state", str(state), "dlq", "show")
    assert status == 0 and out.startswith(f"JobsQueue: gone (SQS has no queue {url}")
    assert run(local_aws, "--state", str(state), "redrive", "JobsQueue")[0] == 1
    err = capsys.readouterr().err
    assert err.startswith("error: JobsQueue is not a dead-letter queue") and "Traceback" not in err


@pytest.mark.parametrize("content", ["[]", '{"resources": {"JobsQueue": {"type": "AWS::SQS::Queue"}}}', '"x"'])
def test_a_state_file_of_another_shape_is_a_one_line_error(local_aws, tmp_path, capsys, content):
    """JSON, but no stack's state: it raised AttributeError or KeyError with a traceback (found by review)."""
    state = tmp_path / "state.json"
    state.write_text(content)
    assert run(local_aws, "--state", str(state), "dlq", "show")[0] == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is not a local stack's state file" in err and "Traceback" not in err


@pytest.mark.parametrize("rate", ["0", "-3", "501"])
def test_a_rate_sqs_would_refuse_is_refused_at_once(local_aws, stack, capsys, rate):
    name, _ = stack
    with pytest.raises(SystemExit) as exited:
        run(local_aws, "--stack", name, "redrive", "JobsDeadLetterQueue", "--rate", rate)
    assert exited.value.code == 2 and "between 1 and 500" in capsys.readouterr().err


@pytest.mark.parametrize("peek", ["-1", "11", "3.5"])
def test_a_peek_past_what_sqs_returns_is_refused_not_clamped(local_aws, stack, capsys, peek):
    name, _ = stack
    with pytest.raises(SystemExit) as exited:
        run(local_aws, "--stack", name, "dlq", "show", "--peek", peek)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and ("between 0 and 10" in err or "not a whole number" in err)


def _rule_dead_letter_queue(local_aws: LocalAws, tmp_path, body: str) -> tuple[Path, str, str]:
    """A local state file of NotifyQueue and a rule target's DLQ tagged to redrive to it, holding ``body``."""
    sqs = local_aws.client("sqs")
    name = "adm" + uuid.uuid4().hex[:8]
    target = sqs.create_queue(QueueName=f"{name}-notify")["QueueUrl"]
    dead_letter = sqs.create_queue(QueueName=f"{name}-rule-dlq", tags={admin.REDRIVE_TO_TAG: "NotifyQueue"})["QueueUrl"]
    sqs.send_message(QueueUrl=dead_letter, MessageBody=body)
    state = tmp_path / "state.json"
    queues = {"NotifyQueue": target, "NotifyRuleDeadLetterQueue": dead_letter}
    resources = {lid: {"type": "AWS::SQS::Queue", "physical_id": url} for lid, url in queues.items()}
    state.write_text(json.dumps({"resources": resources}))
    return state, target, dead_letter


def test_a_rule_targets_dead_letter_queue_is_shown_and_redriven_to_its_target(local_aws, tmp_path):
    """template.yaml's EventBridge target DLQs are nobody's RedrivePolicy DLQ: their tag names the queue they feed."""
    sqs = local_aws.client("sqs")
    state, target, _ = _rule_dead_letter_queue(local_aws, tmp_path, '{"detail-type": "Job Completed"}')
    status, out = run(local_aws, "--state", str(state), "dlq", "show", "--json")
    assert status == 0
    (shown,) = json.loads(out)
    assert (shown["queue"], shown["source"], shown["depth"]) == ("NotifyRuleDeadLetterQueue", "NotifyQueue", 1)
    status, out = run(local_aws, "--state", str(state), "redrive", "NotifyRuleDeadLetterQueue")
    assert status == 0 and "1 message moved (receive-send-delete" in out
    moved = sqs.receive_message(QueueUrl=target, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in moved] == ['{"detail-type": "Job Completed"}']


def test_the_readmes_local_command_works_in_a_fresh_shell(local_aws, stack, tmp_path):
    """``python -m spectra.admin dlq show`` as the README writes it, with none of the test's AWS variables: the local
    stack's state file says where its queues are."""
    _, urls = stack
    resources = {lid: {"type": "AWS::SQS::Queue", "physical_id": url, "status": "created"} for lid, url in urls.items()}
    state = tmp_path / "spectra-local" / "spectra-local.json"
    state.parent.mkdir()
    state.write_text(
        json.dumps({"aws_endpoint_url": local_aws.endpoint_url, "region": local_aws.region, "resources": resources})
    )
    local_aws.client("sqs").send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody='{"job_id": "j_1"}')
    shell = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "SPECTRA_STATE_FILE"}
    shell.update(TMPDIR=str(tmp_path), AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    done = subprocess.run(
        [sys.executable, "-m", "spectra.admin", "dlq", "show"], capture_output=True, text=True, timeout=60, env=shell
    )
    assert done.returncode == 0, done.stderr
    assert "JobsDeadLetterQueue (source JobsQueue): 1 waiting" in done.stdout


# -- what an on-call engineer meets (operations review) ---------------------------------------------------------------


def _state_with_pairs(local_aws: LocalAws, tmp_path, *bases: str) -> tuple[str, dict[str, str]]:
    """A local stack's state file naming, for each base, a source queue and its dead-letter queue."""
    sqs = local_aws.client("sqs")
    name = "adm" + uuid.uuid4().hex[:8]
    urls = {}
    for base in bases:
        dlq = sqs.create_queue(QueueName=f"{name}-{base}-dlq")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 3})
        source = sqs.create_queue(QueueName=f"{name}-{base}", Attributes={"RedrivePolicy": policy})["QueueUrl"]
        urls[f"{base}Queue"], urls[f"{base}DeadLetterQueue"] = source, dlq
    state = tmp_path / f"{name}.json"
    resources = {lid: {"type": "AWS::SQS::Queue", "physical_id": url} for lid, url in urls.items()}
    state.write_text(json.dumps({"resources": resources}))
    return str(state), urls


def test_a_queue_gone_is_named_and_the_other_dead_letter_queues_are_still_shown(local_aws, tmp_path, capsys):
    """One queue deleted out of band (or being replaced by an update) made dlq show list nothing, and redrive fail,
    with only "The specified queue does not exist." (operations review)."""
    state, urls = _state_with_pairs(local_aws, tmp_path, "Jobs", "Ingest")
    sqs = local_aws.client("sqs")
    sqs.send_message(QueueUrl=urls["IngestDeadLetterQueue"], MessageBody='{"x": 1}')
    sqs.delete_queue(QueueUrl=urls["JobsQueue"])
    status, out = run(local_aws, "--state", state, "dlq", "show")
    assert status == 0, capsys.readouterr().err
    assert "IngestDeadLetterQueue (source IngestQueue): 1 waiting" in out and "JobsQueue: gone" in out
    assert run(local_aws, "--state", state, "redrive", "JobsDeadLetterQueue")[0] == 1
    error = capsys.readouterr().err
    assert "JobsDeadLetterQueue is not a dead-letter queue" in error and f"JobsQueue ({urls['JobsQueue']})" in error


def test_a_redrive_failing_midway_says_how_many_it_moved(local_aws, tmp_path, capsys, monkeypatch):
    state, urls = _state_with_pairs(local_aws, tmp_path, "Jobs")
    sqs = local_aws.client("sqs")
    for n in range(30):
        sqs.send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody=json.dumps({"n": n}))
    moving, sent = admin.move_messages, []

    def move_messages(client, dead_letter, source, **options):
        send_message = client.send_message

        def send(**request):
            if len(sent) == 25:
                sqs.delete_queue(QueueUrl=urls["JobsQueue"])  # the source goes away under the redrive
            sent.append(request)
            return send_message(**request)

        monkeypatch.setattr(client, "send_message", send)
        return moving(client, dead_letter, source, **options)

    monkeypatch.setattr(admin, "move_messages", move_messages)
    assert run(local_aws, "--state", state, "redrive", "JobsDeadLetterQueue")[0] == 1
    error = capsys.readouterr().err
    assert error.startswith("error: 25 messages moved from JobsDeadLetterQueue to JobsQueue before:"), error


def test_a_redrive_by_hand_moves_what_the_queue_held_and_leaves_what_comes_back(local_aws, tmp_path, monkeypatch):
    """A message its consumer still fails comes back to the dead-letter queue: the fallback moved it again, lap after
    lap, and never ended (found by the operations review). Here every copy comes straight back (the "source" is the
    dead-letter queue itself): three moved, once each, and three left, visible."""
    _, urls = _state_with_pairs(local_aws, tmp_path, "Jobs")
    sqs = local_aws.client("sqs")
    for n in range(3):
        sqs.send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody=json.dumps({"n": n}))
    dead_letter = admin.Queue("JobsDeadLetterQueue", urls["JobsDeadLetterQueue"], "arn:dlq")
    back_to_itself = admin.Queue("JobsQueue", urls["JobsDeadLetterQueue"], "arn:src")
    send_message, sent = sqs.send_message, []

    def send(**request):
        sent.append(request["MessageBody"])
        assert len(sent) <= 10, "moved again and again"
        return send_message(**request)

    monkeypatch.setattr(sqs, "send_message", send)
    assert admin.move_messages(sqs, dead_letter, back_to_itself) == 3
    assert sorted(sent) == sorted(json.dumps({"n": n}) for n in range(3))
    left = sqs.get_queue_attributes(QueueUrl=urls["JobsDeadLetterQueue"], AttributeNames=["All"])["Attributes"]
    assert (left["ApproximateNumberOfMessages"], left["ApproximateNumberOfMessagesNotVisible"]) == ("3", "0")


def test_a_redrive_by_hand_moves_the_newest_dead_letters_whatever_the_operators_clock_says(
    local_aws, tmp_path, monkeypatch
):
    """Copies were told from what the queue held by a SentTimestamp later than the redrive's start on the operator's
    clock: 30 s behind SQS's, it took the newest dead letters (the ones the alarm paged about) for copies and moved
    nothing, "COMPLETED" (the operations review)."""
    _, urls = _state_with_pairs(local_aws, tmp_path, "Jobs")
    sqs = local_aws.client("sqs")
    for n in range(3):
        sqs.send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody=json.dumps({"n": n}))
    monkeypatch.setattr(admin.time, "time", lambda real=time.time: real() - 30)
    dead_letter = admin.Queue("JobsDeadLetterQueue", urls["JobsDeadLetterQueue"], "arn:dlq")
    source = admin.Queue("JobsQueue", urls["JobsQueue"], "arn:src")
    assert admin.move_messages(sqs, dead_letter, source) == 3
    left = sqs.get_queue_attributes(QueueUrl=urls["JobsQueue"], AttributeNames=["ApproximateNumberOfMessages"])
    assert left["Attributes"]["ApproximateNumberOfMessages"] == "3"


def test_a_redrive_by_hand_leaves_a_copy_its_consumer_dead_lettered_anew(local_aws, tmp_path, monkeypatch):
    """The webhook delivery dead-letters a delivery itself, a new message with an id of its own: told apart by id
    alone, such copies were moved again, and more moved than the queue held (the diff review)."""
    _, urls = _state_with_pairs(local_aws, tmp_path, "Jobs")
    sqs = local_aws.client("sqs")
    for n in range(3):
        sqs.send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody=json.dumps({"n": n}))
    send_message, to_source = sqs.send_message, []

    def send(**request):
        answer = send_message(**request)
        if request["QueueUrl"] == urls["JobsQueue"]:  # its consumer fails it and dead-letters it anew, a moment later
            to_source.append(request["MessageBody"])
            time.sleep(1.05)
            send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody=request["MessageBody"])
        return answer

    monkeypatch.setattr(sqs, "send_message", send)
    dead_letter = admin.Queue("JobsDeadLetterQueue", urls["JobsDeadLetterQueue"], "arn:dlq")
    source = admin.Queue("JobsQueue", urls["JobsQueue"], "arn:src")
    assert admin.move_messages(sqs, dead_letter, source) == 3
    assert sorted(to_source) == sorted(json.dumps({"n": n}) for n in range(3))  # each once


def test_dlq_show_keeps_a_hand_sent_body_on_one_line_without_terminal_escapes(local_aws, tmp_path):
    state, urls = _state_with_pairs(local_aws, tmp_path, "Jobs")
    body = "line one\nline two\x1b]0;owned\x07"
    local_aws.client("sqs").send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody=body)
    status, out = run(local_aws, "--state", state, "dlq", "show", "--full")
    assert status == 0 and "\x1b" not in out and "\x07" not in out
    assert out.strip().splitlines()[1].endswith("line one\\x0aline two\\x1b]0;owned\\x07")


def test_a_dead_letter_queue_whose_source_is_gone_is_still_shown(local_aws, tmp_path, capsys):
    """Its link to its source was the gone queue's RedrivePolicy: it vanished from the listing, messages and all,
    during the very incident the listing was for (diff review)."""
    state, urls = _state_with_pairs(local_aws, tmp_path, "Jobs")
    sqs = local_aws.client("sqs")
    for n in range(5):
        sqs.send_message(QueueUrl=urls["JobsDeadLetterQueue"], MessageBody=json.dumps({"n": n}))
    sqs.delete_queue(QueueUrl=urls["JobsQueue"])
    status, out = run(local_aws, "--state", state, "dlq", "show")
    assert status == 0, capsys.readouterr().err
    assert "JobsDeadLetterQueue (source gone, so none to redrive to): 5 waiting" in out and "JobsQueue: gone" in out


def test_a_rule_targets_dead_letter_queue_whose_target_is_gone_has_no_source(local_aws, tmp_path, capsys):
    """It kept the gone queue as its source, listed as if all were well, and a redrive sent to nothing (diff review)."""
    state, target, _ = _rule_dead_letter_queue(local_aws, tmp_path, "{}")
    local_aws.client("sqs").delete_queue(QueueUrl=target)
    status, out = run(local_aws, "--state", str(state), "dlq", "show")
    assert status == 0 and "NotifyRuleDeadLetterQueue (source gone, so none to redrive to): 1 waiting" in out, out
    assert run(local_aws, "--state", str(state), "redrive", "NotifyRuleDeadLetterQueue")[0] == 1
    assert "is not a dead-letter queue" in capsys.readouterr().err


def test_a_state_file_left_by_a_killed_stack_says_so(tmp_path, monkeypatch, capsys):
    """A local stack killed (not stopped) leaves its state file naming an endpoint nothing answers: the error said
    only botocore's "Could not connect to the endpoint URL". It says which state file named it now."""
    # A port held bound but not listening refuses connections, and no other worker's stack can take it meanwhile.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        state = tmp_path / "spectra-local.json"
        queue = f"http://127.0.0.1:{port}/123456789012/jobs"
        state.write_text(
            json.dumps(
                {
                    "aws_endpoint_url": f"http://127.0.0.1:{port}",
                    "region": "us-east-1",
                    "resources": {"JobsQueue": {"type": "AWS::SQS::Queue", "physical_id": queue}},
                }
            )
        )
        session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        assert admin.main(["--state", str(state), "dlq", "show"], session=session) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: Could not connect")
    assert f"state file {state} names it is not running" in error
