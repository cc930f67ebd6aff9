"""DynamoDB plumbing behaviour no test held before (found by mutation testing spectra/dynamo.py): which refusals are
tried again and how long a retry waits, the second an item expires, the fixed width of index times, and a reconciler's
batch read across several pending shards (every shard's share, "more" when one was left unread, and a shard's read
resumed where DynamoDB cut a page short).

Runs on DynamoDB (moto), in a table made from template.yaml's ``JobsTable``; the retry handler is driven through
botocore's own event system on a real client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from events import JobStatus, ResultFormat
from spectra import dynamo
from spectra.dynamo import StateTable, expired, index_time, passing_refusal, retry_passing_refusals
from tests.fixtures.aws import Faulty, table_from_template

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def cancelled(*codes: str | None) -> dict:
    return {
        "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
        "CancellationReasons": [{"Code": code} if code else {} for code in codes],
    }


# -- which refusals pass when tried again ------------------------------------------------------------------------------


def test_a_single_write_that_met_a_transaction_may_pass_when_tried_again():
    assert passing_refusal({"Error": {"Code": "TransactionConflictException", "Message": "conflict"}})


def test_a_transaction_cancelled_only_for_conflicts_and_throttling_may_pass_when_tried_again():
    """Items the cancellation did not concern come back as Code None (or without a code): they do not count."""
    assert passing_refusal(cancelled("None", "TransactionConflict", None, "ThrottlingError"))
    assert passing_refusal(cancelled("ProvisionedThroughputExceeded", "RequestLimitExceeded"))
    assert passing_refusal(
        cancelled("TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded")
    )


def test_a_transaction_a_condition_refused_is_not_tried_again():
    assert not passing_refusal(cancelled("TransactionConflict", "ConditionalCheckFailed"))
    assert not passing_refusal(cancelled("ConditionalCheckFailed", "None"))
    # ... nor one that gives no reason, nor any other error
    assert not passing_refusal(cancelled("None", None))
    assert not passing_refusal({"Error": {"Code": "ConditionalCheckFailedException", "Message": "no"}})


def _retry_client(local_aws, monkeypatch, attempts_budget: int, *, jitter=lambda low, high: high):
    """A DynamoDB client with a retry budget of ``attempts_budget`` tries and :func:`retry_passing_refusals`
    registered, its jitter drawn by ``jitter`` (at the top of its range unless told)."""
    monkeypatch.setattr(dynamo.random, "uniform", jitter)
    client = local_aws.client(
        "dynamodb", config=Config(retries={"mode": "standard", "total_max_attempts": attempts_budget})
    )
    retry_passing_refusals(client)
    return client


def _delay(client, error: dict, attempts: int) -> float | None:
    """The wait botocore is told before trying again an UpdateItem that failed with ``error`` (None: not again)."""
    parsed = {**error, "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": {}}}
    _, delay = client.meta.events.emit_until_response(
        "needs-retry.dynamodb.UpdateItem",
        response=(AWSResponse("http://dynamodb", 400, {}, None), parsed),
        endpoint=None,
        operation=client.meta.service_model.operation_model("UpdateItem"),
        attempts=attempts,
        caught_exception=None,
        request_dict={"context": {}},
    )
    return delay


CONFLICT = {"Error": {"Code": "TransactionConflictException", "Message": "conflict"}}


def test_a_passing_refusal_is_tried_again_with_a_backoff_that_doubles_up_to_a_second(local_aws, monkeypatch):
    """Jittered up to 0.1 s after the first try, 0.2 s after the second, doubling, and never more than 1 s."""
    client = _retry_client(local_aws, monkeypatch, 10)
    assert [_delay(client, CONFLICT, n) for n in (1, 2, 3, 4, 5, 9)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_a_retrys_wait_is_jittered_down_to_nothing(local_aws, monkeypatch):
    """Full jitter: the wait is drawn from 0 s up to its cap, so racing writers spread out."""
    client = _retry_client(local_aws, monkeypatch, 10, jitter=lambda low, high: low)
    assert [_delay(client, CONFLICT, n) for n in (1, 5)] == [0, 0]


def test_a_passing_refusal_is_tried_again_only_within_the_clients_retry_budget(local_aws, monkeypatch):
    client = _retry_client(local_aws, monkeypatch, 3)
    assert _delay(client, CONFLICT, 2) == 0.2
    assert _delay(client, CONFLICT, 3) is None
    assert _delay(client, cancelled("ConditionalCheckFailed"), 1) is None


# -- expiry and index times ----------------------------------------------------------------------------------------


def test_an_item_expires_the_second_after_its_expires_at():
    """An item is still there during the second its expires_at names, and gone from the next one."""
    at = int(T0.timestamp())
    assert not expired({"expires_at": at}, T0 + timedelta(microseconds=999_999))
    assert expired({"expires_at": at}, T0 + timedelta(seconds=1))
    assert not expired({"other": 1}, T0 + timedelta(days=10_000))


def test_index_times_are_one_width_in_utc_so_they_sort_as_the_times_they_name():
    assert index_time(T0) == "2024-05-01T12:00:00.000000Z"
    assert index_time(datetime(2024, 5, 1, 14, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))) == (
        "2024-05-01T12:00:00.000005Z"
    )


# -- the pending index across shards -------------------------------------------------------------------------------


@pytest.fixture
def sharded(local_aws):
    """(client, a StateTable of three pending shards on a fresh jobs table)."""
    with table_from_template(local_aws, "JobsTable", "dynamo-pins-") as (client, table):
        yield client, StateTable(client, table, key="job_id", pending_shards=3)


def pend(client, table: str, job_id: str, shard: str, seconds: int) -> None:
    client.put_item(
        TableName=table,
        Item={
            "job_id": {"S": job_id},
            "status": {"S": "QUEUED"},
            "pending_shard": {"S": shard},
            "pending_since": {"S": index_time(T0 + timedelta(seconds=seconds))},
        },
    )


def test_a_batch_takes_each_shards_share_oldest_first(sharded):
    """A batch of 4 over three shards reads up to 2 (4 / 3 rounded up) from each shard in turn, longest quiet first,
    until the batch is full, and says more are waiting."""
    client, states = sharded
    for job_id, shard, seconds in [
        ("j_a0", "0", 5), ("j_b0", "0", 1), ("j_c0", "0", 3),
        ("j_a1", "1", 2), ("j_b1", "1", 4), ("j_c1", "1", 0),
        ("j_a2", "2", 6),
    ]:  # fmt: skip
        pend(client, states.name, job_id, shard, seconds)
    page = states.pending_before(T0 + timedelta(hours=1), limit=4)
    assert [job.job_id for job in page.jobs] == ["j_b0", "j_c0", "j_c1", "j_a1"]
    assert page.jobs[0].pending_since == T0 + timedelta(seconds=1)
    assert page.more


def test_a_batch_full_before_the_last_shard_says_more_are_waiting(sharded):
    """Three shards and a batch of 2: one from each of the first two shards, the third left unread, and ``more``
    says so though every shard read came back short."""
    client, states = sharded
    pend(client, states.name, "j_0", "0", 0)
    pend(client, states.name, "j_1", "1", 1)
    pend(client, states.name, "j_2", "2", 2)
    page = states.pending_before(T0 + timedelta(hours=1), limit=2)
    assert [job.job_id for job in page.jobs] == ["j_0", "j_1"]
    assert page.more


def test_a_batch_with_room_for_everything_reads_every_shard_and_says_no_more(sharded):
    client, states = sharded
    pend(client, states.name, "j_0", "0", 0)
    pend(client, states.name, "j_2", "2", 2)
    pend(client, states.name, "j_late", "1", 7200)  # quiet since after the cutoff
    page = states.pending_before(T0 + timedelta(hours=1), limit=9)
    assert [job.job_id for job in page.jobs] == ["j_0", "j_2"]
    assert not page.more


def test_a_shard_read_that_dynamodb_cut_short_resumes_where_it_stopped(sharded):
    """DynamoDB may end a page before its ``Limit`` (a query reads at most 1 MB): the shard's read goes on from the
    page's LastEvaluatedKey until it has its share, each job once and in order. Here every page is cut to one item."""
    client, states = sharded
    for job_id, shard, seconds in [("j_a", "0", 1), ("j_b", "0", 2), ("j_c", "0", 3), ("j_d", "1", 0)]:
        pend(client, states.name, job_id, shard, seconds)
    pages = []

    def one_item_pages(query, kwargs):
        pages.append(kwargs)
        return query(**{**kwargs, "Limit": 1})

    faulty = Faulty(client)
    faulty.faults["query"] = one_item_pages
    states.client = faulty
    page = states.pending_before(T0 + timedelta(hours=1), limit=6)
    assert [job.job_id for job in page.jobs] == ["j_a", "j_b", "j_d"]
    # shard 0: two wanted, one found, then one more from where the first page stopped; shards 1 and 2: the whole
    # shard in one page, which says so (no LastEvaluatedKey)
    assert [(q["ExpressionAttributeValues"][":shard"]["S"], q["Limit"], "ExclusiveStartKey" in q) for q in pages] == [
        ("0", 2, False),
        ("0", 1, True),
        ("1", 2, False),
        ("2", 2, False),
    ]
    assert page.more


# -- state changes -------------------------------------------------------------------------------------------------


def test_a_state_change_writes_an_enum_as_its_value_and_a_time_as_iso(sharded):
    """Callers may hand the enum itself (a status, a format) rather than its value: the item holds the value."""
    client, states = sharded
    pend(client, states.name, "j_1", "0", 0)
    item = states.update("j_1", ["QUEUED"], {"status": JobStatus.FAILED, "format": ResultFormat.CSV, "ended_at": T0})
    assert (item["status"], item["format"], item["ended_at"]) == ("FAILED", "csv", "2024-05-01T12:00:00+00:00")
    assert states.get("j_1")["status"] == "FAILED"


def test_a_count_with_no_state_allowed_is_refused_and_counts_nothing(sharded):
    client, states = sharded
    pend(client, states.name, "j_1", "0", 0)
    assert states.increment("j_1", [], "result_attempts") is None
    assert "result_attempts" not in states.get("j_1")
    assert states.increment("j_1", ["QUEUED"], "result_attempts")["result_attempts"] == 1
