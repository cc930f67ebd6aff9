"""DynamoDB refuses a single-item write to an item a transaction is writing at that moment
(``TransactionConflictException``), and cancels a transaction that meets another or is throttled
(``TransactionCanceledException`` with ``TransactionConflict`` or a throttling reason). botocore's standard mode
retries neither. A job's item and a tenant's slots item are written both ways (a cancel, a claim, a park alone; a job's
end with its slot's release in one transaction), so: a DELETE at the moment its job ended answered 500, a claim that
met another job's end sent its message round again, and an idempotent submit that DynamoDB throttled was a 409
"conflict" (found by the AWS failures review, whose reproductions these are).

:class:`~tests.fixtures.dynamodb.Conflicting` stands between a real DynamoDB (moto) and the project's own clients
(``build_ports``, the real wiring): it answers the next requests a test scripts with DynamoDB's error, and passes
every other to moto.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from events import JobStatus
from spectra.errors import Unavailable, passing_trouble
from spectra.jobs import utcnow
from spectra.ports import Budget, build_ports
from tests.fixtures.aws import table_from_template
from tests.fixtures.dynamodb import CONFLICT, Conflicting, cancelled
from tests.fixtures.stack import record_job
from tests.unit.fakes import make_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def conflicting(local_aws, monkeypatch):
    with (
        table_from_template(local_aws, "JobsTable", "jobs-conflict-") as (client, jobs_table),
        table_from_template(local_aws, "TenantsTable", "tenants-conflict-") as (_, tenants_table),
    ):
        proxy = Conflicting(client.meta.endpoint_url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.url)
        session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
        settings = make_settings(jobs_table=jobs_table, tenants_table=tenants_table)

        def ports(budget: Budget):
            return build_ports(settings, session=session, budget=budget)

        ports(Budget.QUEUE).tenants.create_tenant("acme", db_user="tenant_acme")
        yield proxy, ports
        proxy.close()


def keyed_job(ports, key: str):
    job = record_job(ports, tenant_id="acme")  # a job as the API makes it, then one under an idempotency key
    return job.model_copy(update={"job_id": job.job_id + "k", "idempotency_key": key})


def test_a_write_that_meets_a_transaction_on_its_item_is_tried_again_not_a_500(conflicting):
    """A cancel's write of a job whose end (a transaction with its slot) was being written at that moment."""
    proxy, ports = conflicting
    api = ports(Budget.CLIENT)
    job = record_job(api, tenant_id="acme")
    proxy.script("UpdateItem", CONFLICT, times=2)
    asked = api.jobs.update(job.job_id, [JobStatus.QUEUED], cancel_requested_at=utcnow())
    assert asked is not None and asked.cancel_requested_at is not None
    assert proxy.seen["UpdateItem"] == 3  # two refusals, then the write
    proxy.script("UpdateItem", CONFLICT, times=5)
    with pytest.raises(ClientError) as refused:  # past the client budget's three tries: passing trouble, a 503
        api.jobs.update(job.job_id, [JobStatus.QUEUED], cancel_requested_at=None)
    assert passing_trouble(refused.value)
    assert proxy.seen["UpdateItem"] == 3
    proxy.script("UpdateItem", CONFLICT, times=5)  # a queue's consumer tries six times
    assert ports(Budget.QUEUE).jobs.update(job.job_id, [JobStatus.QUEUED], cancel_requested_at=None) is not None
    assert proxy.seen["UpdateItem"] == 6


def test_a_transaction_cancelled_by_a_conflict_alone_is_tried_again_and_one_a_condition_refused_is_not(conflicting):
    proxy, ports = conflicting
    api = ports(Budget.CLIENT)
    job = keyed_job(api, "k1")
    proxy.script("TransactWriteItems", cancelled("None", "TransactionConflict"), times=1)
    assert api.jobs.create(job, fingerprint="f") == (job, True)
    assert proxy.seen["TransactWriteItems"] == 2
    proxy.script("TransactWriteItems", cancelled("ConditionalCheckFailed", "None"), times=0)
    again = job.model_copy(update={"job_id": job.job_id + "2"})
    assert api.jobs.create(again, fingerprint="f") == (job, False)  # the key's record refused it: its job answered
    assert proxy.seen["TransactWriteItems"] == 1


def test_an_idempotent_submit_that_dynamodb_keeps_throttling_is_a_503_not_a_409(conflicting):
    proxy, ports = conflicting
    api = ports(Budget.CLIENT)
    proxy.script("TransactWriteItems", cancelled("ThrottlingError", "None"), times=3)
    with pytest.raises(Unavailable):
        api.jobs.create(keyed_job(api, "k2"), fingerprint="f")
    assert proxy.seen["TransactWriteItems"] == 3
