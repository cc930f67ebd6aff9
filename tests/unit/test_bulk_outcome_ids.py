"""Bulk result files: what the mutation review (rv-mutants7) found the suite let change unnoticed."""

from __future__ import annotations

import pytest

from spectra.bulk.lifecycle import complete_bulk_statement
from spectra.bulk.models import BulkCounts, BulkOperation
from tests.unit.test_bulk_lifecycle import bulk_ports_with, finish_update, result_rows, started

pytestmark = pytest.mark.unit


@pytest.fixture
def ports():
    return bulk_ports_with()


def test_an_external_id_column_named_in_another_case_in_the_header_still_keys_the_records(ports):
    """Salesforce files name the column ``Id``; the job's externalIdFieldName is folded to ``id``, and the header check
    folds the file's names alike. Mutant O25 (header names not folded): no record was keyed, so a record the
    warehouse found no row for was listed successful, with an empty sf__Id."""
    job = started(ports, BulkOperation.UPDATE, b"ID,name,city\n1,Ann,Oslo\n9,Nobody,Rome\n")
    done = finish_update(ports, job, applied=1, outcomes=[["9", "not found"]])
    assert done.counts == BulkCounts(processed=2, failed=1, created=0)
    assert result_rows(ports, job.job_id, "failed")[1:] == [["9", "not found", "9", "Nobody", "Rome"]]
    assert result_rows(ports, job.job_id, "successful")[1:] == [["1", "false", "1", "Ann", "Oslo"]]


def test_an_integer_id_that_is_not_a_number_is_listed_with_copys_rejection(ports):
    """COPY rejects the line of an integer id written ``x``; its result files list it failed. Mutant O01 (every id of
    an integer column read as a number): int('x') raised, and no result file of the job was ever written."""
    ports.warehouse.add_table("public", "accounts", ["id", "name", "city"], types={"id": "int4"})
    job = started(ports, BulkOperation.UPDATE, b"id,name,city\n1,Ann,Oslo\nx,Bad,Rome\n")
    url = job.files[0].url
    answers = {
        job.plan.copies[0][0]: 1,
        job.plan.copies[0][1]: [[url, "3", "id", "Invalid digit"]],
        job.plan.applied_index: [["1"]],
    }
    from tests.unit.test_bulk_lifecycle import unload_outcomes

    answers[job.plan.outcome_index] = unload_outcomes(ports, job, [])
    complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, answers))
    assert result_rows(ports, job.job_id, "failed")[1:] == [["x", "id: Invalid digit", "x", "Bad", "Rome"]]
    assert result_rows(ports, job.job_id, "successful")[1:] == [["1", "false", "1", "Ann", "Oslo"]]
