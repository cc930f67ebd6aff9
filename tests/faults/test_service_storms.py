"""AWS services misbehaving for a while under load, bounded in time: moto answers a service's requests with the
error AWS sends (``local.aws.failing``: status, body and headers botocore reads as that error) while a burst of 100
small jobs arrives from one tenant with a webhook, then recovers. Afterwards every job has exactly one terminal state
and one terminal transition, its events on the bus are its outcome's (at least once), one webhook per job (by
``webhook-id``); the tenant's next job runs (no running slot held); a dead letter, if any, is redriven as README's
Operations says and finds nothing left to do; and clients were answered 503 with ``Retry-After``, never 500, while a
service they need failed.

The services fail in turn during one burst (the case's docstring), so one burst's time covers them all. Dead letters
are possible here where AWS would have none: the local stack gives a failed message back after 2 s (the runner's
``retry_visibility_seconds``) where AWS waits the queue's visibility timeout (minutes), so a queue's five receives
fit inside a 20 s storm.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from local.aws import dynamodb_error, json_error, s3_error
from local.subscriber import BusSubscriber
from spectra import admin
from tests.faults.conftest import all_terminal, log_records, terminal_states
from tests.faults.test_faults import signed_payload, whole
from tests.fixtures.stack import wait_until
from tests.fixtures.webhooks import WebhookReceiver

pytestmark = pytest.mark.faults

BURST = 100
#: every dead-letter queue the query pipeline can leave a message in (the rules' own included)
DEAD_LETTER_QUEUES = [
    "JobsDeadLetterQueue",
    "StatementEventsDeadLetterQueue",
    "StatementEventsRuleDeadLetterQueue",
    "NotifyDeadLetterQueue",
    "NotifyRuleDeadLetterQueue",
    "WebhookDeliveryDeadLetterQueue",
]
#: the queues the pipeline's functions read and write (SQS fails on these, not on the test's own subscriber queue)
PIPELINE_QUEUES = ["JobsQueue", "StatementEventsQueue", "NotifyQueue", "WebhookDeliveryQueue"]


@pytest.fixture
def bus(functions_running, local_aws):
    subscriber = BusSubscriber(local_aws, functions_running.state.output("JobEventBus"), name_prefix="storms")
    yield subscriber
    subscriber.close()


@pytest.fixture
def receiver():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


class Clients:
    """The burst as clients send it: each job with an ``Idempotency-Key``, repeated on a 503 after the
    ``Retry-After`` it names (capped: the case is bounded), every tenth as a one-call query (``wait_timeout``), and
    a client reading its jobs meanwhile; every answer kept."""

    def __init__(self, tenant) -> None:
        self.tenant = tenant
        self.answers: list[tuple[str, int, str | None, str]] = []  # (request, status, Retry-After, body) of each 5xx
        self.statuses: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _send(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            response = self.tenant.request(method, path, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise AssertionError(f"{method} {path}: the API did not answer: {exc!r}") from exc
        with self._lock:
            self.statuses[f"{method} {response.status_code}"] += 1
            if response.status_code >= 500:
                self.answers.append(
                    (f"{method} {path}", response.status_code, response.headers.get("Retry-After"), response.text)
                )
        return response

    def submit(self, n: int, fmt: str) -> str:
        body = {"sql": f"select {n} as n", "format": fmt, **({"wait_timeout": 2} if n % 10 == 0 else {})}
        key = f"storm-{n}-{uuid.uuid4().hex}"
        deadline = time.monotonic() + 120
        while True:
            response = self._send("POST", "/v1/queries", json=body, headers={"Idempotency-Key": key})
            if response.status_code in (200, 202):
                return response.json()["job_id"]
            assert response.status_code in (429, 503) and time.monotonic() < deadline, (n, response.text)
            time.sleep(min(float(response.headers.get("Retry-After") or 1), 2))  # the backoff the answer asks for

    def burst(self, size: int, fmt=lambda n: "json", *, reading: list[str] = ()) -> list[str]:
        """``size`` jobs submitted by 8 clients while another reads the jobs in ``reading`` over and over."""
        done = threading.Event()

        def read() -> None:
            while not done.is_set():
                for job_id in reading:
                    self._send("GET", f"/v1/jobs/{job_id}")

        with ThreadPoolExecutor(9) as pool:
            reader = pool.submit(read)
            try:
                return list(pool.map(lambda n: self.submit(n, fmt(n)), range(size)))
            finally:
                done.set()
                reader.result()

    def unanswered_5xx(self) -> list[tuple[str, int, str | None, str]]:
        """5xx answers that were not a 503 with a ``Retry-After``."""
        return [answer for answer in self.answers if answer[1] != 503 or not answer[2]]


def dead_letters(stack, local_aws) -> dict[str, int]:
    sqs = local_aws.client("sqs")
    depths = {}
    for name in DEAD_LETTER_QUEUES:
        url = stack.state.output(name)
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        depths[name] = int(attributes["Attributes"]["ApproximateNumberOfMessages"])
    return depths


def redrive(stack, local_aws, grown: list[str]) -> None:
    """What README's Operations tells the operator to do with a dead letter: ``spectra.admin``'s redrive, to its
    source queue (the rules' DLQs by hand, as it does)."""
    sqs = local_aws.client("sqs")
    urls = {lid: r["physical_id"] for lid, r in stack.state.resources.items() if r.get("type") == "AWS::SQS::Queue"}
    queues = admin.describe_queues(sqs, urls)
    for name in grown:
        peeked = sqs.receive_message(QueueUrl=stack.state.output(name), MaxNumberOfMessages=10, VisibilityTimeout=0)
        print(f"dead-lettered in {name}:", [m["Body"][:600] for m in peeked.get("Messages", [])], flush=True)
        print("redriven:", admin.redrive(sqs, admin.find_dead_letter_queue(queues, name), poll_seconds=0.5))


def queues_idle(stack, local_aws, names) -> bool:
    sqs = local_aws.client("sqs")
    for name in names:
        attributes = sqs.get_queue_attributes(
            QueueUrl=stack.state.output(name),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        if (
            attributes["ApproximateNumberOfMessages"] != "0"
            or attributes["ApproximateNumberOfMessagesNotVisible"] != "0"
        ):
            return False
    return True


def terminal_transitions(stack, jobs) -> Counter[str]:
    """How many times each job was ended (the domain logs each terminal transition once, with the job's key)."""
    wanted = set(jobs)
    return Counter(
        r["job_id"]
        for r in log_records(stack)
        if r.get("message") in ("job completed", "job failed", "job cancelled") and r.get("job_id") in wanted
    )


def webhook_ids(receiver, secret: str) -> dict[str, set[str]]:
    """The ``webhook-id``s of the deliveries the receiver took (2xx), by job."""
    ids: dict[str, set[str]] = defaultdict(set)
    for request in receiver.received:
        if request.status == 200:
            ids[signed_payload(secret, request)["data"]["job_id"]].add(request.headers["webhook-id"])
    return ids


def settle_and_check(
    stack, local_aws, bus, receiver, tenant, secret: str, jobs: list[str], clients: Clients, dead_before: dict
) -> None:
    """What every storm must leave: see the module's docstring."""
    started = time.monotonic()
    assert len(set(jobs)) == len(jobs) == BURST  # a repeated submit made no second job
    wait_until(lambda: all_terminal(stack, jobs), 240, f"{BURST} jobs to end after the storm")
    states = terminal_states(stack, jobs)
    print("terminal states:", Counter(states.values()), "client answers:", dict(clients.statuses), flush=True)
    assert terminal_transitions(stack, jobs) == dict.fromkeys(jobs, 1)

    # on the bus: the job's own outcome, of one type (at least once: README "Decisions")
    def announced() -> dict[str, list[str]]:
        found: dict[str, list[str]] = defaultdict(list)
        for event in bus.received():
            if event["detail"].get("job_id") in states:
                found[event["detail"]["job_id"]].append(event["detail-type"])
        return found

    events = wait_until(lambda: whole(announced(), BURST), 90, "every job's event on the bus")
    expected = {"COMPLETED": "Job Completed", "FAILED": "Job Failed", "CANCELLED": "Job Cancelled"}
    assert all(set(types) == {expected[states[j]]} for j, types in events.items()), events
    print("copies of an event on the bus:", sum(len(types) - 1 for types in events.values()), flush=True)

    # one webhook per job, deduplicated by webhook-id
    webhooks = wait_until(lambda: whole(webhook_ids(receiver, secret), BURST), 120, "a webhook for every job")
    assert set(webhooks) == set(jobs) and all(len(ids) == 1 for ids in webhooks.values())

    # no running slot held: the tenant's next job runs and ends
    after = tenant.submit("select 'after' as next")
    wait_until(lambda: all_terminal(stack, [after]), 60, "the tenant's next job to run after the storm")
    assert terminal_states(stack, [after]) == {after: "COMPLETED"}

    # A dead letter is redriven, as README's Operations says, and must find nothing left to do: no job ended again,
    # no second webhook-id, nothing dead-lettered again.
    grown = [name for name, depth in dead_letters(stack, local_aws).items() if depth > dead_before[name]]
    if grown:
        redrive(stack, local_aws, grown)
        sources = [name.replace("RuleDeadLetterQueue", "Queue").replace("DeadLetterQueue", "Queue") for name in grown]
        wait_until(lambda: queues_idle(stack, local_aws, sources), 60, "the redriven messages to be handled")
        assert terminal_states(stack, jobs) == states
        assert terminal_transitions(stack, jobs) == dict.fromkeys(jobs, 1)
        assert {job: ids for job, ids in webhook_ids(receiver, secret).items() if job in webhooks} == webhooks
    assert dead_letters(stack, local_aws) == dead_before
    assert clients.unanswered_5xx() == [], clients.unanswered_5xx()[:5]
    print(f"settled and checked in {time.monotonic() - started:.0f} s", flush=True)


def at(seconds: float, local_aws, fault) -> threading.Timer:
    """``fault()`` set ``seconds`` from now (its builder reads the clock then: its ``until`` counts from there)."""
    timer = threading.Timer(seconds, lambda: local_aws.fail(fault()))
    timer.start()
    return timer


@pytest.mark.timeout(800)  # above its waits' sum, so a slow run says what it waited for
def test_aws_services_throttling_and_failing_in_turn_mid_burst(
    functions_running, fault_tenant, bus, receiver, local_aws
):
    """From the burst's start: DynamoDB (every table) throttling (ProvisionedThroughputExceededException,
    ThrottlingException) or failing (InternalServerError) half its requests for 20 s, all of them (500) from 3 s to
    11 s; S3 answering SlowDown to every request on the results bucket from 8 s for 30 s, while half the jobs write
    CSV files there; then, as the burst's last ten jobs arrive, SQS (the pipeline's queues) failing every request
    (500) for 4 s, S3 SlowDown again for 20 s and EventBridge (the job event bus) for 20 s and until it has failed a
    job's event.
    A client new to the authorizer arrives at 5 s, a second after the tenants table starts failing every request
    for 16 s."""
    stack = functions_running
    tenant = fault_tenant()
    secret = tenant.subscribe(receiver.url(f"/storm/{tenant.tenant_id}"))["secret"]
    clients = Clients(tenant)
    dead_before = dead_letters(stack, local_aws)
    warm = clients.burst(5)  # the functions' first calls, before the storm
    queues = [stack.state.output(name).rsplit("/", 1)[-1] for name in PIPELINE_QUEUES]
    bucket, event_bus = stack.state.output("ResultsBucket"), stack.state.output("JobEventBus")
    # A client the authorizer has not seen (its answer is cached per key) arrives as the tenants table fails every
    # read for 16 s: the authorizer's reads of it give up. Made before the storm: its tenant is written to DynamoDB.
    newcomer = Clients(fault_tenant())
    tenants_table = stack.state.output("TenantsTable")
    arrived: list[str] = []
    timers: list[threading.Timer] = []
    started = time.monotonic()
    try:  # from the first fault on: whatever fails, the faults and their timers end with the test (recover())
        local_aws.fail(
            dynamodb_error("ProvisionedThroughputExceededException", seconds=20, fraction=0.3),
            dynamodb_error("ThrottlingException", seconds=20, fraction=0.15),
            dynamodb_error("InternalServerError", status=500, seconds=20, fraction=0.1),
        )
        timers += [
            at(3, local_aws, lambda: dynamodb_error("InternalServerError", status=500, seconds=8)),
            at(8, local_aws, lambda: s3_error("SlowDown", seconds=30, resource=bucket)),
            at(
                4,
                local_aws,
                lambda: dynamodb_error("InternalServerError", status=500, seconds=16, resource=tenants_table),
            ),
        ]
        # a second after the table fails (a timer of its own, started the same moment: it could go first)
        arriving = threading.Timer(5, lambda: arrived.append(newcomer.submit(0, "json")))
        timers.append(arriving)
        arriving.start()
        jobs = warm + clients.burst(BURST - len(warm) - 10, fmt=lambda n: "csv" if n % 2 else "json", reading=warm)
        for timer in timers:
            timer.join()
        # the burst's last ten jobs arrive as their queues and their events' bus fail
        local_aws.fail(
            *(json_error("sqs", "InternalError", seconds=4, resource=queue) for queue in queues),
            s3_error("SlowDown", seconds=20, resource=bucket),
            json_error("events", "InternalException", seconds=300, resource=event_bus),  # until recover()
        )
        tail_started = time.monotonic()
        jobs += clients.burst(10, fmt=lambda n: "csv" if n % 2 else "json")  # S3 SlowDown again: some write there
        # EventBridge fails for 20 s, and on until it has failed some job's event: when the jobs end, and so are
        # announced, is the machine's speed (a CI run announced none in the 20 s, and the storm failed nothing). S3's
        # storm must end first: CSV jobs it holds keep their tenant's running slots, and a run whose slots they all
        # held announced nothing while S3 failed until the end.
        wait_until(
            lambda: (
                time.monotonic() - tail_started >= 20
                and any(operation.startswith("events:") for operation in local_aws.failures())
            ),
            180,
            "EventBridge's storm to fail a job's event",
        )
    finally:
        for timer in timers:
            timer.cancel()
        failed = local_aws.recover()
    print(f"storm over after {time.monotonic() - started:.0f} s; requests it failed:", dict(failed), flush=True)
    print("the newcomer's answers:", dict(newcomer.statuses), flush=True)
    assert newcomer.unanswered_5xx() == [], newcomer.unanswered_5xx()
    # it met the failing authorizer (a 503) and got its job once the table answered (a failure in its timer's thread
    # would only be a warning: the storm review)
    assert len(arrived) == 1 and newcomer.statuses["POST 503"] >= 1, (arrived, dict(newcomer.statuses))
    for service in ("dynamodb", "s3", "sqs", "events"):  # each storm did happen
        assert any(operation.startswith(service + ":") for operation in failed), service
    settle_and_check(stack, local_aws, bus, receiver, tenant, secret, jobs, clients, dead_before)
    assert set(terminal_states(stack, jobs).values()) == {"COMPLETED"}  # trouble that passed failed no good job
    store = stack.jobs()
    assert all(store.get(j).result is not None for j in jobs)  # each completed with its result, in S3 or inline
