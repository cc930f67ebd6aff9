"""Job store behaviour no test held before (found by a second round of mutation testing spectra/job_store.py): the
keys an idempotency record is stored under, which a deploy must keep (a key recorded by the running version is still
honoured by the next, with and without a tenant generation), and an id naming an idempotency record read as no job,
not as a broken one.

Runs on DynamoDB (moto), in a table made from template.yaml's ``JobsTable``."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from events import ResultFormat
from spectra import job_store
from spectra.job_store import JobStore
from spectra.jobs import Job, new_job_id, utcnow
from tests.fixtures.aws import table_from_template

pytestmark = pytest.mark.integration


@pytest.fixture
def dynamo(local_aws):
    """(client, job store on it, the jobs table's name)."""
    with table_from_template(local_aws, "JobsTable", "jobs-pins2-") as (client, table):
        yield client, JobStore(client, table), table


def make_job(*, key: str | None = None, generation: str | None = None) -> Job:
    at = utcnow()
    return Job(
        job_id=new_job_id(), tenant_id="acme", db_user="tenant_acme", sql="select 1", format=ResultFormat.CSV,
        created_at=at, updated_at=at, idempotency_key=key, tenant_generation=generation,
    )  # fmt: skip


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def record_of_an_earlier_deploy(client, table: str, record_id: str, job: Job) -> None:
    """An idempotency record as the running version writes it, pointing at ``job`` (already stored)."""
    client.put_item(
        TableName=table,
        Item={
            "job_id": {"S": record_id},
            "target_job_id": {"S": job.job_id},
            "fingerprint": {"S": "f1"},
            "expires_at": {"N": str(int(utcnow().timestamp()) + 3600)},
        },
    )


@pytest.mark.parametrize(
    ("generation", "record_id"),
    [(None, "idem#acme#" + sha("k1")), ("g7", "idem#acme#g7#" + sha("k1"))],
    ids=["no-generation", "generation"],
)
def test_a_key_recorded_before_a_deploy_is_still_honoured_after_it(dynamo, generation, record_id):
    """The table layout's ``idem#<tenant>#[<generation>#]<sha256(key)>``: a repeat of a request whose key the
    running version recorded is answered its first job, not made again, and a new key is recorded there too."""
    client, store, table = dynamo
    first = make_job(generation=generation)
    store.create(first)
    record_of_an_earlier_deploy(client, table, record_id, first)
    assert store.create(make_job(key="k1", generation=generation), fingerprint="f1") == (first, False)
    assert store.repeat_of(make_job(key="k1", generation=generation), fingerprint="f1") == first

    fresh, created = store.create(make_job(key="k2", generation=generation), fingerprint="f2")
    assert created
    where = "idem#acme#" + (f"{generation}#" if generation else "") + sha("k2")
    item = client.get_item(TableName=table, Key={"job_id": {"S": where}}, ConsistentRead=True)["Item"]
    assert item["target_job_id"] == {"S": fresh.job_id}


def test_a_key_of_another_generation_of_the_tenant_is_not_its_key(dynamo):
    """A tenant deleted and made again (another generation) does not get its predecessor's job for the same key."""
    _, store, _ = dynamo
    old, _ = store.create(make_job(key="k1", generation="g1"), fingerprint="f1")
    new, created = store.create(make_job(key="k1", generation="g2"), fingerprint="f1")
    assert created and new.job_id != old.job_id
    plain, created = store.create(make_job(key="k1"), fingerprint="f1")
    assert created and plain.job_id not in (old.job_id, new.job_id)


def test_an_id_naming_an_idempotency_record_is_no_job(dynamo):
    """A message or status event naming an idempotency record's id (``idem#...``) is answered no job, as a missing
    one is, not a job that fails to read; the tenant's own reads say the same."""
    _, store, _ = dynamo
    store.create(make_job(key="k1"), fingerprint="f1")
    record_id = "idem#acme#" + sha("k1")
    assert store.get(record_id) is None
    assert store.get_for_tenant("acme", record_id) is None


def test_a_key_is_held_to_the_last_second_of_its_24_hours(dynamo, monkeypatch):
    """In the second its record expires the key is still the first request's (DynamoDB refuses to overwrite it
    then): a repeat is answered the first job by create and repeat_of, not a 409 asking for a retry."""
    _, store, _ = dynamo
    made = datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
    monkeypatch.setattr(job_store, "utcnow", lambda: made)
    first, _ = store.create(make_job(key="k1"), fingerprint="f1")
    last_second = made + timedelta(hours=24, milliseconds=500)
    monkeypatch.setattr(job_store, "utcnow", lambda: last_second)
    assert store.repeat_of(make_job(key="k1"), fingerprint="f1") == first
    assert store.create(make_job(key="k1"), fingerprint="f1") == (first, False)
    monkeypatch.setattr(job_store, "utcnow", lambda: made + timedelta(hours=24, seconds=1))
    assert store.repeat_of(make_job(key="k1"), fingerprint="f1") is None
