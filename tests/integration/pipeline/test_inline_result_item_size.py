"""The largest inline result of the largest job still fits its DynamoDB item: inline rows get what the item has left
beside the SQL, the parameters and the column list, with 8 KB to spare (README). Budgeted without the column list,
a job of 99 KB of SQL, 60 KB of parameters and 250 long column names passed 400 KB on its terminal write."""

from __future__ import annotations

import json
import random
import string
from datetime import UTC, datetime

import pytest

from events import Delivery, JobStatus, ResultFormat
from spectra.delivery import ITEM_MAX_BYTES, inline_budget
from spectra.dynamo import to_item
from spectra.job_store import JobStore
from spectra.jobs import Job, JobResult, QueryParameter, utcnow
from spectra.results import ResultSink
from spectra.slots import RunningSlots
from spectra.warehouse import Column
from tests.fixtures.aws import table_from_template
from tests.unit.fakes import FakeS3, item_size

pytestmark = pytest.mark.integration

#: printable ASCII a CSV field and a JSON string take as they are (no quote, backslash, comma)
ALPHABET = [c for c in string.printable if c not in '"\\,\t\n\r\x0b\x0c']


def wide_inline_job() -> tuple[Job, JobResult]:
    """A job with 99 KB of SQL and 60 KB of parameters whose result (250 columns named with 100 characters) is the
    largest that still goes inline."""
    now = datetime.now(UTC)
    job = Job(
        job_id="j_" + "A" * 22,
        tenant_id="acme",
        db_user="tenant_acme",
        sql="select * from wide where k in (:p0) -- " + "x" * 99_000,  # within MAX_SQL_BYTES (100 KB)
        parameters=[QueryParameter(name=f"p{i}", value="v" * 600) for i in range(100)],  # ~60 KB (< 64 KB)
        format=ResultFormat.JSON,
        delivery=Delivery.AUTO,
        created_at=now,
        updated_at=now,
    )
    columns = [Column(f"c{i:03d}_" + "n" * 96, "varchar") for i in range(250)]  # 250 columns, 100-char names
    rng = random.Random(7)

    def page(rows: int, width: int) -> str:
        cells = lambda: "".join(rng.choices(ALPHABET, k=width))  # noqa: E731
        return "".join(",".join(cells() for _ in columns) + "\n" for _ in range(rows))

    budget = inline_budget(job)
    best = None
    for rows in range(1, 400):  # the largest result that still goes inline
        result = ResultSink(FakeS3(), "results").write(
            tenant_id="acme",
            job_id=job.job_id,
            fmt=ResultFormat.JSON,
            columns=columns,
            csv_pages=[page(rows, 24)],
            delivery=Delivery.AUTO,
            inline_budget=budget,
        )
        if not result.inline:
            break
        best = result
    assert best is not None and best.inline
    return job, best


def test_a_wide_inline_result_of_a_large_job_fits_its_dynamodb_item():
    job, best = wide_inline_job()
    finished = job.model_copy(update={"result": best})
    item = to_item({**finished.model_dump(mode="json"), "created_key": "x" * 60, "expires_at": 1, "pending_shard": "0"})
    assert item_size(item) <= ITEM_MAX_BYTES, (item_size(item), inline_budget(job), len(best.inline_rows))


def test_the_completion_write_of_that_job_succeeds_on_dynamodb(local_aws):
    """The terminal transaction, on moto, which refuses an item past 400 KB (ValidationException)."""
    job, best = wide_inline_job()
    with (
        table_from_template(local_aws, "JobsTable", "jobs-rv-") as (client, jobs_table),
        table_from_template(local_aws, "TenantsTable", "tenants-rv-") as (_, tenants_table),
    ):
        jobs, slots = JobStore(client, jobs_table), RunningSlots(client, tenants_table)
        jobs.create(job)
        assert slots.claim("acme", job.job_id, limit=5).taken
        running = jobs.transition(job.job_id, JobStatus.SUBMITTED, expected={JobStatus.QUEUED}, statement_id="st-1")
        done = jobs.finish(
            running,
            JobStatus.COMPLETED,
            release=slots.releasing("acme", job.job_id),
            announced=True,
            result=best,
            completed_at=utcnow(),
        )
        assert done.job is not None, done


def test_rows_that_barely_compress_go_inline_while_their_json_is_within_the_limit():
    """Inline's limit is 256 KiB of JSON as the client gets it (README); the record stores it gzipped and
    base64-encoded, which for random tokens is larger than the JSON. That stored form was held to the JSON's limit:
    250 KB of JSON was refused inline as "at least 277328 bytes of JSON" (the result delivery review). It is held to
    the room the record has, and the record still fits its item."""
    now = datetime.now(UTC)
    job = Job(
        job_id="j_" + "B" * 22,
        tenant_id="acme",
        db_user="tenant_acme",
        sql="select token from tokens",
        format=ResultFormat.JSON,
        delivery=Delivery.INLINE,
        created_at=now,
        updated_at=now,
    )
    rng = random.Random(11)
    page = "".join("".join(rng.choices(ALPHABET, k=62_000)) + "\n" for _ in range(4))
    result = ResultSink(FakeS3(), "results").write(
        tenant_id="acme",
        job_id=job.job_id,
        fmt=ResultFormat.JSON,
        columns=[Column("token", "varchar")],
        csv_pages=[page],
        delivery=Delivery.INLINE,
        inline_budget=inline_budget(job),
    )
    assert result.inline and result.bytes <= 256 * 1024 < len(result.inline_rows)
    finished = job.model_copy(update={"result": result})
    item = to_item({**finished.model_dump(mode="json"), "created_key": "x" * 60, "expires_at": 1, "pending_shard": "0"})
    assert item_size(item) <= ITEM_MAX_BYTES


def test_rows_whose_stored_form_passes_the_records_room_are_refused_naming_that_room():
    """The diff review of the mend above: refused for the stored form, the job said inline holds at most the record's
    room, in bytes of JSON, and ``details.inline_max_bytes`` carried that room rather than inline's limit."""
    from spectra.errors import ResultTooLarge

    rng = random.Random(5)
    page = "".join("".join(rng.choices(ALPHABET, k=4_000)) + "\n" for _ in range(6))
    columns = [Column("token", "varchar")]

    def write(budget: int | None):
        return ResultSink(FakeS3(), "results").write(
            tenant_id="acme",
            job_id="j_" + "C" * 22,
            fmt=ResultFormat.JSON,
            columns=columns,
            csv_pages=[page],
            delivery=Delivery.INLINE,
            inline_budget=budget,
        )

    unbounded = write(None)
    assert len(unbounded.inline_rows) > unbounded.bytes  # random tokens: larger stored than as JSON
    room = unbounded.bytes + 100  # the JSON fits, the stored form does not
    with pytest.raises(ResultTooLarge) as refused:
        write(room + len(json.dumps([c.as_dict() for c in columns]).encode()))
    assert "as the job record stores it, gzipped and base64-encoded" in refused.value.message
    assert f"at most {room} bytes so, the room left on the job's record" in refused.value.message
    assert refused.value.details["inline_max_bytes"] == 256 * 1024
    assert refused.value.details["record_room_bytes"] == room
