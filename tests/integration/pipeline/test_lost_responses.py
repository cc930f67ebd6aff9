"""A DynamoDB write applied whose answer was lost, then sent again by botocore (a read timeout, a reset connection,
a 500 after the write): the retry of a *conditional* UpdateItem is refused by the item the first attempt wrote, and
the caller sees only that refusal. The stores take such a refusal for their own write when the item already holds
everything the write sets, its ``updated_at`` to the microsecond included (``spectra.dynamo._own_write``).
TransactWriteItems needs none of this: botocore fills its ClientRequestToken once for all its attempts.

Found by the AWS failures review, whose reproductions these are (turned to assert the right behaviour): taken for
another writer's, a bulk job's own ending left its running slot held and announced nothing, a client's own
``UploadComplete`` queued no load, and a client's own cancel of a queued job was answered 409 "already ended".
:class:`LostResponse` wraps a real DynamoDB client (moto) and, for the calls a test picks, applies the request,
drops its answer and sends it again: what the caller of a botocore client sees in that case.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from events import JobStatus, ResultFormat, StatementState, StatementStatusChange
from spectra.bulk.lifecycle import complete_bulk_statement
from spectra.bulk.models import BulkState, KeyedBatch
from spectra.bulk.service import change_state
from spectra.bulk.store import BulkJobStore
from spectra.bulk.uploads import upload_batch
from spectra.job_store import JobStore
from spectra.jobs import utcnow
from spectra.queries import cancel_job, submit_query
from spectra.slots import RunningSlots
from spectra.tenants import Caller
from tests.fixtures.aws import table_from_template
from tests.fixtures.stack import record_job
from tests.unit.bulk_helpers import bulk_job
from tests.unit.fakes import make_ports

pytestmark = pytest.mark.integration

ACME = Caller(tenant_id="acme", db_user="tenant_acme")


class LostResponse:
    """A DynamoDB client whose ``update_item`` calls matching a picked predicate are applied twice, the caller getting
    the second attempt's answer (its first answer lost, botocore retried). Each pick fires once."""

    def __init__(self, client) -> None:
        self._client = client
        self.picks: list = []
        self.fired: list[dict] = []

    def lose_next(self, pick) -> None:
        self.picks.append(pick)

    def update_item(self, **kwargs):
        for pick in self.picks:
            if pick(kwargs):
                self.picks.remove(pick)
                self._client.update_item(**kwargs)  # applied; its answer is lost on the way back
                self.fired.append(kwargs)
                break
        return self._client.update_item(**kwargs)  # botocore's retry: the same request again

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.fixture
def dynamo(local_aws):
    with (
        table_from_template(local_aws, "JobsTable", "jobs-lost-") as (client, jobs_table),
        table_from_template(local_aws, "TenantsTable", "tenants-lost-") as (_, tenants_table),
        table_from_template(local_aws, "BulkJobsTable", "bulk-lost-") as (_, bulk_table),
    ):
        lossy = LostResponse(client)
        ports = make_ports(jobs=JobStore(lossy, jobs_table), slots=RunningSlots(lossy, tenants_table))
        ports.tenants.create_tenant("acme", db_user="tenant_acme")
        bulk = ports.bulk.__class__(
            jobs=BulkJobStore(lossy, bulk_table), files=ports.bulk.files, results_queue=ports.bulk.results_queue
        )
        ports = ports.__class__(**{**ports.__dict__, "bulk": bulk})
        yield ports, lossy


def _writes_state(state: str):
    """Picks the conditional UpdateItem that moves an item to ``state``."""
    return lambda request: (
        {"S": state} in request.get("ExpressionAttributeValues", {}).values()
        and request.get("UpdateExpression", "").startswith("SET")
    )


def test_a_bulk_ending_whose_answer_was_lost_releases_its_slot_and_announces_itself(dynamo):
    ports, lossy = dynamo
    job = bulk_job(state=BulkState.IN_PROGRESS, files=[])
    job = job.model_copy(update={"tenant_id": "acme", "statement_id": "st-1", "abort_requested_at": utcnow()})
    ports.bulk.jobs.create(job)
    assert ports.slots.claim("acme", job.job_id, limit=1).taken
    assert ports.slots.park("acme", "b_waiting", limit=1, now=1.0)
    lossy.lose_next(_writes_state("Aborted"))
    change = StatementStatusChange(statementId="st-1", statementName=job.job_id, state=StatementState.ABORTED)
    ended = complete_bulk_statement(ports, change)
    assert lossy.fired, "no answer was lost"
    assert ended is not None and ended.state is BulkState.ABORTED
    assert job.job_id not in ports.slots.holders("acme")  # its slot given back ...
    assert [m.job_id for m in ports.queue.messages] == ["b_waiting"]  # ... to the job waiting for it
    assert ports.events.types() == ["Bulk Job Aborted"]


def test_an_upload_complete_whose_answer_was_lost_queues_the_load(dynamo):
    ports, lossy = dynamo
    job = bulk_job(state=BulkState.OPEN, created_at=utcnow(), updated_at=utcnow())
    ports.bulk.jobs.create(job)
    ports.bulk.files.put(f"acme/{job.job_id}/uploads/20260101T000000000000-abcd.csv", b"id\n1\n")
    ports.bulk.jobs.count_upload(job.job_id)
    lossy.lose_next(_writes_state("UploadComplete"))
    answered = change_state(ports, ACME, job.job_id, "UploadComplete")
    assert lossy.fired, "no answer was lost"
    assert answered.state is BulkState.UPLOAD_COMPLETE
    assert [m.job_id for m in ports.queue.messages] == [job.job_id]  # the load starts now, not at the reconciler


def test_a_cancel_of_a_queued_job_whose_answer_was_lost_is_answered_and_announced(dynamo):
    ports, lossy = dynamo
    job = record_job(ports, "acme", "select 1")
    lossy.lose_next(_writes_state("CANCELLED"))
    cancelled = cancel_job(ports, ACME, job.job_id)
    assert lossy.fired, "no answer was lost"
    assert cancelled.status is JobStatus.CANCELLED  # the client's own cancel, not a 409 "already ended"
    assert ports.events.types() == ["Job Cancelled"]


def test_a_write_refused_by_another_writers_ending_is_still_refused(dynamo):
    """The other side: an ending that finds the job ended by someone else's write (same state, another moment) is
    refused as before, so only one of two racing endings settles the job."""
    ports, _ = dynamo
    job = bulk_job(state=BulkState.IN_PROGRESS, files=[])
    job = job.model_copy(update={"tenant_id": "acme", "statement_id": "st-1"})
    ports.bulk.jobs.create(job)
    assert ports.bulk.jobs.transition(job.job_id, BulkState.ABORTED, expected={BulkState.IN_PROGRESS}) is not None
    assert ports.bulk.jobs.transition(job.job_id, BulkState.ABORTED, expected={BulkState.IN_PROGRESS}) is None


def test_a_batch_counted_at_the_limit_whose_answer_was_lost_is_counted_once(dynamo):
    """count_upload at the job's last allowed batch: its retry was refused by its own count, and the batch it had
    just stored was taken back with a 400 "has had its N batches"."""
    ports, lossy = dynamo
    job = bulk_job(state=BulkState.OPEN, created_at=utcnow(), updated_at=utcnow())
    ports.bulk.jobs.create(job)
    lossy.lose_next(lambda request: "ADD #counter" in request.get("UpdateExpression", ""))
    counted = ports.bulk.jobs.count_upload(job.job_id, limit=1)
    assert lossy.fired, "no answer was lost"
    assert counted is not None and counted.uploads == 1


def test_a_keyed_batch_counted_whose_answer_was_lost_is_counted_once(dynamo):
    """count_upload under an Idempotency-Key's name: its retry is refused by the name it had just recorded, which is
    its own write (its updated_at), not a copy of the request that counted first."""
    ports, lossy = dynamo
    job = bulk_job(state=BulkState.OPEN, created_at=utcnow(), updated_at=utcnow())
    ports.bulk.jobs.create(job)
    lossy.lose_next(lambda request: "ADD #uploads" in request.get("UpdateExpression", ""))
    batch = KeyedBatch(key=f"acme/{job.job_id}/uploads/1.csv", digest="d")
    counted = ports.bulk.jobs.count_upload(job.job_id, limit=1, keyed=("k", batch))
    assert lossy.fired, "no answer was lost"
    assert counted is not None and (counted.uploads, counted.keyed_batches) == (1, {"k": batch})


def test_a_results_lease_whose_answer_was_lost_is_the_writers_own(dynamo):
    """Found by the diff review: the lease set no updated_at, so its refused retry was not taken as its own; the bulk
    results consumer that had just taken it wrote nothing, and the files waited for the lease to run out (16
    minutes), the run after counting a lost writer."""
    ports, lossy = dynamo
    job = bulk_job(state=BulkState.JOB_COMPLETE, files=[], created_at=utcnow(), updated_at=utcnow())
    job = job.model_copy(update={"results_ready": False})
    ports.bulk.jobs.create(job)
    lossy.lose_next(lambda request: "results_writer_until" in request.get("ExpressionAttributeNames", {}).values())
    until = int(utcnow().timestamp()) + 960
    leased = ports.bulk.jobs.lease_results(job, until=until)
    assert lossy.fired, "no answer was lost"
    assert leased is not None and leased.results_writer_until == until


def test_a_keyless_job_written_before_its_create_failed_is_withdrawn(dynamo):
    """A PutItem applied, its answer lost, botocore's last attempt throttled: the client is answered 503 and retries
    (another job), so the job written must not stay QUEUED for the reconciler to run it too (README walk)."""
    ports, lossy = dynamo
    client = lossy._client

    def landed_then_throttled(**kwargs):
        client.put_item(**kwargs)  # applied; its answer lost, then the retry throttled
        lossy.fired.append(kwargs)
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "PutItem")

    lossy.put_item = landed_then_throttled
    with pytest.raises(ClientError):
        submit_query(ports, ACME, sql="select 1", parameters=[], fmt=ResultFormat.JSON)
    assert lossy.fired, "no write landed"
    assert ports.jobs.get(lossy.fired[0]["Item"]["job_id"]["S"]) is None
    assert ports.jobs.list_for_tenant("acme", limit=10).jobs == []
    assert ports.jobs.pending_before(utcnow() + timedelta(days=1), limit=10).jobs == []


def test_withdrawing_leaves_a_job_that_has_moved_on(dynamo):
    """Only a QUEUED job without a statement is deleted: one a cancel ended, or an executor started, stays."""
    ports, _ = dynamo
    job = record_job(ports, "acme", "select 1")
    cancel_job(ports, ACME, job.job_id)
    ports.jobs.withdraw(job.job_id)
    ports.jobs.withdraw("j_never_written")
    assert ports.jobs.get(job.job_id).status is JobStatus.CANCELLED


def test_a_keyed_batch_whose_lost_answer_raced_another_batch_is_kept(dynamo, monkeypatch):
    """The diff review: a keyed batch's count applied, its answer lost, and another client's batch of the same job
    counted before botocore's retry (parallel uploads): the retry's refusal is not taken for its own (updated_at
    moved), so the PUT read its own key in keyed_batches as "a copy counted first" and took back the object it had
    just stored, the very one the record names: answered 201, its rows were never loaded."""
    ports, lossy = dynamo
    job = bulk_job(state=BulkState.OPEN, created_at=utcnow(), updated_at=utcnow()).model_copy(
        update={"tenant_id": "acme"}
    )
    ports.bulk.jobs.create(job)
    other = []

    def lost_then_another_batch(**kwargs):
        if "#keyed.#name" in kwargs.get("UpdateExpression", "") and not other:
            lossy._client.update_item(**kwargs)  # applied; its answer is lost
            other.append(upload_batch(ports, ACME, job.job_id, b"id\n2\n", gzip=False))  # counted in between
            lossy.fired.append(kwargs)
        return lossy._client.update_item(**kwargs)  # botocore's retry

    monkeypatch.setattr(lossy, "update_item", lost_then_another_batch)
    stored = upload_batch(ports, ACME, job.job_id, b"id\n1\n", gzip=False, idempotency_key="k")
    monkeypatch.undo()
    assert lossy.fired and other
    closed = change_state(ports, ACME, job.job_id, "UploadComplete")
    assert sorted(f.key for f in closed.files) == sorted([stored.key, other[0].key])
