"""Result delivery behaviour no test held before (found by mutation testing spectra/delivery.py): which exports are
renamed for columns the warehouse would name alike (a cast of a named column, intervals, DECODE, SYSDATE beside
GETDATE, a VALUES list left as it is), where a result written again goes (rewritten/), the room a job's DynamoDB item
leaves for inline rows (README's 400 KB with 8 KB to spare), the request options refused together, and when a result
stored without its completion time stops being served."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events import Delivery, JobStatus, ResultFormat
from spectra.delivery import collect_result, distinct_columns, inline_budget, request_problem, results_body
from spectra.errors import Gone
from spectra.jobs import Job, JobResult, utcnow
from spectra.warehouse import Column, DatabaseIdentity
from tests.unit.fakes import make_ports, make_settings

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _job(**fields) -> Job:
    values = {
        "job_id": "j_1",
        "tenant_id": "acme",
        "db_user": "tenant_acme",
        "sql": "select 1",
        "format": ResultFormat.JSON,
        "delivery": Delivery.AUTO,
        "created_at": NOW,
        "updated_at": NOW,
    }
    return Job(**(values | fields))


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("select a::int, a from t", '("a", "a_2")'),  # a cast keeps its column's name
        ("select interval '1 day', interval '2 days'", '("interval", "interval_2")'),
        ("select decode(a, 1, 'x'), decode(b, 2, 'y') from t", '("case", "case_2")'),
        ("select sysdate, getdate()", '("timestamp", "timestamp_2")'),
        ('select "lower"(a), lower(b) from t', '("lower", "lower_2")'),  # a function called by its quoted name
        # an interval and a DECODE are named by a cast around them; SYSDATE, a name of its own, is not
        ("select interval '1 day'::text, 'a'::text", '("text", "text_2")'),
        ("select decode(a, 1, 'x')::text, 'b'::text from t", '("text", "text_2")'),
        ("select sysdate::date, getdate()", '("timestamp", "timestamp_2")'),
        ("select (case when x then a else b end)::int, b from t", '("b", "b_2")'),  # a CASE is named by its ELSE
        ("select (ts at time zone 'UTC')::date, ts at time zone 'UTC' from t", '("timezone", "timezone_2")'),
    ],
)
def test_an_export_whose_columns_the_warehouse_names_alike_is_renamed(sql, names):
    """Redshift names these pairs alike (a Parquet file of them is refused by its readers), so the export's query is
    wrapped with distinct names."""
    assert distinct_columns(sql) == f"SELECT * FROM ({sql}) AS spectra_export {names}"


@pytest.mark.parametrize("sql", ["values (1, 2), (3, 4)", "select x::text, y::text from t", "select sysdate, now()"])
def test_an_export_whose_columns_are_named_apart_or_not_known_here_goes_as_it_is(sql):
    """A VALUES list's names are not worked out here (its rows are no columns), and a cast of a named column or two
    different functions are named apart: the query is not wrapped."""
    assert distinct_columns(sql) == sql


def test_inline_rows_get_what_400_kb_leaves_beside_the_job_and_8_kb():
    """README: a job's DynamoDB item holds at most 400 KB; inline rows get what the rest of the job leaves, with 8 KB
    to spare."""
    job = _job(sql="select 1 -- " + "x" * 100_000)
    rest = len(job.model_dump_json(exclude={"result"}).encode())
    assert inline_budget(job) == 409_600 - 8_192 - rest


def test_a_job_whose_sql_fills_its_item_leaves_no_room_for_inline_rows():
    job = _job(sql="select 1 -- " + "x" * 405_000)
    assert inline_budget(job) == 0


@pytest.mark.parametrize("fmt", [ResultFormat.CSV, ResultFormat.PARQUET, ResultFormat.JSONL])
def test_inline_delivery_of_anything_but_json_is_refused_on_the_delivery_field(fmt):
    field, message = request_problem(fmt, Delivery.INLINE, None, False)
    assert field == "delivery"
    assert f"format {fmt.value} needs files (s3)" in message


@pytest.mark.parametrize("delivery", [Delivery.INLINE, Delivery.AUTO, Delivery.S3])
def test_json_with_parameters_and_a_row_limit_goes_with_any_delivery_but_export(delivery):
    assert request_problem(ResultFormat.JSON, delivery, 5, True) is None


def _completed(ports, *, expires_at, completed_at, delivery=Delivery.INLINE, created_at=NOW) -> Job:
    result = JobResult(
        bucket="results",
        prefix="acme/j_1/",
        manifest_key=None,
        files=[],
        row_count=0,
        bytes=0,
        columns=[],
        inline=delivery is Delivery.INLINE,
        delivery=delivery,
        expires_at=expires_at,
    )
    return _job(status=JobStatus.COMPLETED, result=result, completed_at=completed_at, created_at=created_at)


def test_a_result_stored_without_its_completion_time_is_gone_after_its_stored_expiry():
    """A completed job with no completed_at still stops being served at the expiry stored with its result."""
    ports = make_ports()
    job = _completed(ports, expires_at=utcnow() - timedelta(seconds=5), completed_at=None)
    with pytest.raises(Gone):
        results_body(ports, job)


def test_a_first_row_that_spells_the_column_names_is_written_again_under_rewritten():
    """README: a first row equal to the column names, taken for a header line until the row count says it was data,
    is written again with its files and manifest under ``rewritten/`` in the job's prefix, every row kept."""
    ports = make_ports()
    statement_id = _finished(ports, ["n\nx\n"], 2)
    result = collect_result(ports, _job(format=ResultFormat.CSV, delivery=Delivery.S3), statement_id)
    assert result.row_count == 2
    assert [f.key[: len("acme/j_1/rewritten/")] for f in result.files] == ["acme/j_1/rewritten/"]
    assert result.manifest_key.startswith("acme/j_1/rewritten/")


def _finished(ports, pages: list[str], rows: int) -> str:
    statement_id = ports.warehouse.execute(
        "select n from t", identity=DatabaseIdentity(db_user="tenant_acme"), name="j_1", client_token="j_1"
    )
    ports.warehouse.finish(statement_id, columns=[Column("n", "varchar")], pages=pages, rows=rows)
    return statement_id


def test_a_result_whose_first_row_is_data_is_written_once_at_the_jobs_prefix():
    ports = make_ports()
    statement_id = _finished(ports, ["a\nb\n"], 2)
    result = collect_result(ports, _job(format=ResultFormat.CSV, delivery=Delivery.S3), statement_id)
    assert result.row_count == 2
    assert [f.key for f in result.files] == ["acme/j_1/part-00000.csv.gz"]
    assert result.manifest_key == "acme/j_1/manifest.json"
    assert [key for _, key in ports.results._s3.requests] == ["acme/j_1/part-00000.csv.gz", "acme/j_1/manifest.json"]


def test_rows_that_do_not_fit_beside_a_large_job_in_its_item_go_to_s3():
    """A job of 390 KB of SQL leaves its DynamoDB item no room for 20 KB of rows: an auto delivery writes them to
    files rather than inline (an item past 400 KB fails its terminal write)."""
    ports = make_ports()
    statement_id = _finished(ports, ["".join(f"{i:0200d}\n" for i in range(100))], 100)
    job = _job(sql="select n from t -- " + "x" * 390_000)
    result = collect_result(ports, job, statement_id)
    assert (result.inline, result.delivery, result.row_count) == (False, Delivery.S3, 100)


def test_an_export_is_gone_retention_days_after_its_job_was_made_not_after_it_ended():
    """UNLOAD writes an export's files while it runs, and the bucket deletes them ResultRetentionDays (lowered here to
    2) after: an export made 2 days and an hour ago, ended 2 hours later, is gone, whatever its stored expiry says."""
    ports = make_ports(settings=make_settings(result_retention_days=2))
    now = utcnow()
    job = _completed(
        ports,
        expires_at=now + timedelta(days=5),
        completed_at=now - timedelta(days=2) + timedelta(hours=1),
        created_at=now - timedelta(days=2, hours=1),
        delivery=Delivery.EXPORT,
    )
    with pytest.raises(Gone):
        results_body(ports, job)
