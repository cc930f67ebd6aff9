"""At-least-once delivery: duplicates run nothing twice, poison messages end in the DLQ, nothing is lost."""

import json
import threading
import uuid

import pytest

from events import JobQueuedMessage, JobStatus
from spectra.jobs import utcnow
from spectra.ports import get_ports
from tests.fixtures.stack import record_job, wait_until

pytestmark = pytest.mark.integration


def sqs_event(body: str, queue_arn: str) -> dict:
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "handle",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
        ]
    }


def test_the_same_message_delivered_twice_runs_one_statement(spectra_stack, redshift_data, job_tenant):
    job = record_job(get_ports(), job_tenant, "select 42 as answer")
    body = JobQueuedMessage(job_id=job.job_id, tenant_id=job.tenant_id).model_dump_json()
    queue_arn = spectra_stack.attribute("JobsQueue", "Arn")

    # twice at the same moment, then once more after the first ones finished
    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(spectra_stack.invoke("ExecutorFunction", sqs_event(body, queue_arn)))
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    results.append(spectra_stack.invoke("ExecutorFunction", sqs_event(body, queue_arn)))
    assert all(result == {"batchItemFailures": []} for result in results), results

    statements = redshift_data.list_statements(StatementName=job.job_id, RoleLevel=False, Status="ALL")["Statements"]
    assert len(statements) == 1, statements
    done = wait_until(lambda: (j := get_ports().jobs.get(job.job_id)).status.is_terminal and j, 30, "the job to end")
    assert done.status is JobStatus.COMPLETED
    assert done.statement_id == statements[0]["Id"]
    assert done.result.row_count == 1


def test_a_poison_message_ends_in_the_dead_letter_queue(spectra_stack, local_aws):
    sqs = local_aws.client("sqs")
    poison = json.dumps({"version": "1", "job_id": ""})  # fails validation on every delivery
    sqs.send_message(QueueUrl=spectra_stack.physical_id("JobsQueue"), MessageBody=poison)
    dlq = spectra_stack.physical_id("JobsDeadLetterQueue")

    def in_dlq():
        messages = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        return [m for m in messages if m["Body"] == poison]

    assert wait_until(in_dlq, 60, "the poison message in the DLQ")


def test_a_message_for_a_cancelled_job_runs_nothing(spectra_stack, redshift_data, job_tenant):
    job = record_job(get_ports(), job_tenant, "select 1")
    get_ports().jobs.transition(job.job_id, JobStatus.CANCELLED, completed_at=utcnow())
    body = JobQueuedMessage(job_id=job.job_id, tenant_id=job.tenant_id).model_dump_json()
    result = spectra_stack.invoke("ExecutorFunction", sqs_event(body, spectra_stack.attribute("JobsQueue", "Arn")))
    assert result == {"batchItemFailures": []}
    assert redshift_data.list_statements(StatementName=job.job_id, RoleLevel=False, Status="ALL")["Statements"] == []
