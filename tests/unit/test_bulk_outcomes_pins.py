"""Bulk result files: behaviour no test held before (found by mutation testing spectra/bulk/outcomes.py): a job's own
column delimiter in its result files; ids matched as the warehouse prints them (smallint, nchar, a VARCHAR's blanks
past its length); records of batches whose headers name a column twice, or of a CR-only batch, listed as sent; an
upsert planned before updated rows were counted; and the warning of result files that do not add up. (The UNLOAD's
header line not taken for an outcome is pinned by test_bulk_lifecycle.py's update test.)"""

from __future__ import annotations

import logging

import pytest

from spectra.bulk.lifecycle import complete_bulk_statement, start_bulk_job
from spectra.bulk.models import BulkCounts, BulkOperation, BulkState, ColumnDelimiter
from spectra.bulk.outcomes import as_printed
from tests.unit.fakes import result_file
from tests.unit.test_bulk_lifecycle import (
    HEADER,
    UPSERT_FILE,
    bulk_ports_with,
    finish_update,
    gone_before_its_results,
    queued,
    result_rows,
    started,
    stored,
    unload_outcomes,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def ports():
    return bulk_ports_with()


def test_a_semicolon_jobs_result_files_are_written_with_its_own_delimiter(ports):
    """A job's columnDelimiter is its result files' too (Bulk 2.0): a SEMICOLON job's successful and failed rows,
    header line included, are separated by ';', so a client reads them with the delimiter it sent, and a failed row
    sent again loads in the same job settings."""
    body = b"id;name;city\n1;Ann;Oslo\n9;Nobody;Rome\n"
    job = started(ports, BulkOperation.UPDATE, body, column_delimiter=ColumnDelimiter.SEMICOLON)
    finish_update(ports, job, applied=1, outcomes=[["9", "not found"]])
    assert result_file(ports, job.job_id, "successful") == b"sf__Id;sf__Created;id;name;city\n1;false;1;Ann;Oslo\n"
    assert result_file(ports, job.job_id, "failed") == b"sf__Id;sf__Error;id;name;city\n9;not found;9;Nobody;Rome\n"


@pytest.mark.parametrize(
    ("external_id", "type_name", "length", "printed"),
    [
        (" 7", "smallint", None, "7"),
        ("+007", "smallint", None, "7"),
        ("x  ", "nchar", None, "x"),
        ("x  ", "nchar(3)", None, "x  "),
        ("abc  ", "varchar", 3, "abc"),
        ("abc  d", "varchar", 3, "abc  d"),
    ],
)
def test_ids_are_matched_as_the_warehouse_prints_them(external_id, type_name, length, printed):
    """The catalog names a column's type smallint or nchar as well as int2 or bpchar: a smallint id prints as its
    number and an nchar id without its trailing blanks; a VARCHAR(3) id of ``abc`` and blanks is stored cut to
    ``abc`` (other characters past the length are a rejected row, as sent). Printed otherwise, a record the warehouse
    refused by its printed id would be looked up under another and listed successful. A type the module does not
    know is left as written."""
    assert as_printed(external_id, type_name, length) == printed


def test_records_of_a_batch_whose_header_names_a_column_twice_are_listed_as_sent(ports):
    """A batch naming a column twice cannot be placed by name (which of its two values is the city?): its records are
    listed in unprocessedrecords as sent, every value kept, rather than one of the two dropped."""
    message = queued(ports, BulkOperation.INSERT, HEADER + b"1,Ann,Oslo\n", b"id,city,City\n2,Bergen,Tromso\n")
    start_bulk_job(ports, message)
    job = stored(ports, message.job_id)
    assert (job.state, job.error.code) == (BulkState.FAILED, "duplicate_columns")
    assert result_rows(ports, job.job_id, "unprocessed") == [
        ["id", "name", "city"],
        ["1", "Ann", "Oslo"],
        ["2", "Bergen", "Tromso"],
    ]


def test_result_files_that_do_not_add_up_are_a_warning_naming_the_job(ports, caplog):
    """Besides the job's results_mismatch error, the operator's log has a warning naming the job and both counts."""
    job = started(ports, BulkOperation.INSERT, HEADER + b"1,Ann,Oslo\n")
    gone_before_its_results(ports, job)
    with caplog.at_level(logging.WARNING, logger="spectra.bulk.outcomes"):
        complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 1, 1: []}))
    [warning] = [r for r in caplog.records if r.name == "spectra.bulk.outcomes" and "result files count" in r.message]
    assert warning.levelname == "WARNING" and job.job_id in warning.getMessage()


def test_a_cr_only_batchs_records_are_listed_one_per_line_as_its_author_sees_them(ports):
    """A batch whose lines end in CR alone fails its header check and is never loaded: its records are listed in
    unprocessedrecords one per CR-ended line, each in its columns, not as one long record the way an LF reader
    sees the file."""
    message = queued(ports, BulkOperation.INSERT, b"id,name,city\r1,Ann,Oslo\r2,Bob,Rome\r")
    start_bulk_job(ports, message)
    job = stored(ports, message.job_id)
    assert job.state is BulkState.FAILED
    assert result_rows(ports, job.job_id, "unprocessed") == [
        ["id", "name", "city"],
        ["1", "Ann", "Oslo"],
        ["2", "Bob", "Rome"],
    ]


def test_an_upsert_planned_before_updated_rows_were_counted_lists_its_created_ids_as_created(ports):
    """A plan recorded before upserts counted their updated rows has no updated count (the job's created is
    unknown); its outcome SELECT listed the created ids, so a listed id is sf__Created true and the others false,
    rather than the result files failing to be written."""
    job = started(ports, BulkOperation.UPSERT, UPSERT_FILE, object="accounts")
    updated_index = job.plan.updated_index
    job = ports.bulk.jobs.update(
        job.job_id, [BulkState.IN_PROGRESS], plan=job.plan.model_copy(update={"updated_index": None})
    )
    plan = job.plan
    answers = {plan.copies[0][0]: 6, plan.copies[0][1]: [], updated_index: [["2"]], plan.applied_index: [["3"]]}
    answers[plan.outcome_index] = unload_outcomes(ports, job, [["4", "duplicate external id"], ["5", "created"]])
    done = complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, answers))
    assert done.counts == BulkCounts(processed=6, failed=3, created=None)
    successful = result_rows(ports, job.job_id, "successful")[1:]
    assert {row[0]: row[1] for row in successful} == {"1": "false", "2": "false", "5": "true"}


@pytest.mark.parametrize("type_name", ["numeric", "decimal"])
def test_a_decimal_id_is_matched_with_its_columns_scale_whichever_name_the_catalog_gives(type_name):
    """A DECIMAL(10,2) column prints 4 as 4.00 under either of its type's names: looked up as 4, a record the
    warehouse refused by its id would be listed successful."""
    assert as_printed("4", type_name, None, 2) == "4.00"
