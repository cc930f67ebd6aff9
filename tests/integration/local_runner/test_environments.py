"""One event at a time per execution environment: concurrent invocations never share a handler module's state."""

import json
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import wait_for

pytestmark = pytest.mark.integration


def test_concurrent_invocations_get_environments_of_their_own(start_stack):
    stack = start_stack("environments", start_pollers=False, start_schedules=False)
    group = uuid.uuid4().hex
    parties = 4
    events = [{"request": f"r{i}", "group": group, "parties": parties} for i in range(parties)]
    with ThreadPoolExecutor(parties) as pool:
        answers = list(pool.map(lambda event: stack.invoke("Remember", event), events))
    # All four held their request on the module at the same moment (the barrier), and each still saw its own.
    assert [a["seen"] for a in answers] == [a["request"] for a in answers] == ["r0", "r1", "r2", "r3"]
    assert len({a["environment"] for a in answers}) == parties
    assert len({inv.environment for inv in stack.invocation_log("Remember")}) == parties
    function = stack.function("Remember")
    assert function.environments == parties

    # Warm environments are reused, as Lambda reuses them: one more call creates no fifth copy.
    again = stack.invoke("Remember", {"request": "r4", "group": uuid.uuid4().hex, "parties": 1})
    assert again["seen"] == "r4" and again["environment"] in {a["environment"] for a in answers}
    assert function.environments == parties


def test_reserved_concurrency_makes_invocations_wait_for_the_one_environment(start_stack):
    stack = start_stack("environments", start_pollers=False, start_schedules=False)
    function = stack.function("Serial")
    assert function.concurrency == 1
    meeting = sys.modules["handlers.meeting"]  # the module every environment shares
    group = uuid.uuid4().hex
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(stack.invoke, "Serial", {"request": "a", "group": group})
        wait_for(lambda: meeting.entered.get(group) == 1, what="the first invocation to be inside the handler")
        second = pool.submit(stack.invoke, "Serial", {"request": "b", "group": group})
        wait_for(lambda: function.waiting == 1, what="the second invocation to wait for an environment")
        assert meeting.entered[group] == 1  # it waits outside the handler, not inside beside the first
        meeting.gate(group).set()
        answers = [first.result(timeout=20), second.result(timeout=20)]
    assert [a["seen"] for a in answers] == ["a", "b"]
    assert answers[0]["environment"] == answers[1]["environment"]
    assert function.environments == 1
    assert [inv.environment for inv in stack.invocation_log("Serial")] == [1, 1]


def test_an_sqs_mapping_runs_up_to_its_maximum_concurrency_of_batches_at_once(start_stack, local_aws):
    stack = start_stack("environments", start_schedules=False)
    assert sorted(p.name for p in stack.pollers) == [f"Scaled.Work#{i}" for i in (1, 2, 3)]
    group = uuid.uuid4().hex
    sqs = local_aws.client("sqs")
    for i in range(3):  # three batches of one that only finish together: they must run in three environments
        sqs.send_message(
            QueueUrl=stack.physical_id("Work"),
            MessageBody=json.dumps({"request": f"m{i}", "group": group, "parties": 3}),
        )
    wait_for(
        lambda: (
            len(stack.invocation_log("Scaled")) == 3
            and all(inv.result is not None for inv in stack.invocation_log("Scaled"))
        ),
        timeout=20,
        what="three batches to meet",
    )
    assert len({inv.environment for inv in stack.invocation_log("Scaled")}) == 3


def test_powertools_resolvers_never_see_each_others_request(start_stack):
    stack = start_stack("environments", start_pollers=False, start_schedules=False)
    group, parties = uuid.uuid4().hex, 4

    def request(i: int) -> dict:
        event = {
            "resource": "/items/{item}",
            "path": f"/items/i{i}",
            "httpMethod": "GET",
            "headers": {},
            "queryStringParameters": {"group": group, "n": str(parties)},
            "pathParameters": {"item": f"i{i}"},
            "requestContext": {"stage": "v1", "path": f"/v1/items/i{i}", "requestId": f"r{i}"},
            "body": None,
            "isBase64Encoded": False,
        }
        return json.loads(stack.invoke("Resolver", event)["body"])

    with ThreadPoolExecutor(parties) as pool:
        answers = list(pool.map(request, range(parties)))
    assert answers == [{"item": f"i{i}", "seen": f"/items/i{i}"} for i in range(parties)]


def test_powertools_loggers_never_carry_each_others_keys(start_stack):
    stack = start_stack("environments", start_pollers=False, start_schedules=False)
    group, parties = uuid.uuid4().hex, 4

    def invoke(i: int) -> dict:
        return stack.invoke("Logged", {"item": f"i{i}", "group": group, "n": parties})

    with ThreadPoolExecutor(parties) as pool:
        answers = list(pool.map(invoke, range(parties)))
    assert [a["item"] for a in answers] == [f"i{i}" for i in range(parties)]
    assert all(a["request_id"] == a["own_request_id"] for a in answers)  # each line names its own invocation
    assert len({a["request_id"] for a in answers}) == parties


def test_powertools_metrics_never_carry_each_others_metrics(start_stack):
    stack = start_stack("environments", start_pollers=False, start_schedules=False)
    group, parties = uuid.uuid4().hex, 4

    def invoke(i: int) -> list[str]:
        return stack.invoke("Metered", {"item": f"I{i}", "group": group, "n": parties})

    with ThreadPoolExecutor(parties) as pool:
        answers = list(pool.map(invoke, range(parties)))
    assert answers == [[f"ItemI{i}"] for i in range(parties)]  # each flush prints its own metric, and only it
