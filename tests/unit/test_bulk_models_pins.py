"""Bulk job state machine behaviour no test held before (found by mutation testing spectra/bulk/models.py): a job that
ended (JobComplete, Failed, Aborted) is never moved again by the store, whatever the move asked, and each state is
entered only from the states Bulk 2.0's workflow allows (Open -> UploadComplete -> InProgress -> an end). The store
contract test reads its expectations from the transition table itself, so a move added to the table went unseen. A
table name's schema and table are each up to 127 characters, and the table too starts with a letter or _."""

from __future__ import annotations

import pytest

from spectra.bulk.models import BulkState, bulk_sources_of, split_object
from tests.unit.bulk_helpers import bulk_job
from tests.unit.fakes import FakeBulkJobStore

pytestmark = pytest.mark.unit

OPEN, QUEUED, RUNNING = BulkState("Open"), BulkState("UploadComplete"), BulkState("InProgress")
COMPLETE, FAILED, ABORTED = BulkState("JobComplete"), BulkState("Failed"), BulkState("Aborted")


ENDS = [COMPLETE, FAILED, ABORTED]
REFUSED = [(ended, target) for ended in ENDS for target in [OPEN, QUEUED, RUNNING, *ENDS]] + [
    (OPEN, COMPLETE),
    (QUEUED, COMPLETE),
]


@pytest.mark.parametrize(("source", "target"), REFUSED)
def test_the_store_refuses_a_move_the_workflow_forbids(source, target):
    """A late event, a reconciler's give-up or an abort racing the end must not reopen or rewrite a finished job: the
    store refuses every move out of JobComplete, Failed and Aborted; and only a job whose load ran ends JobComplete
    (never an Open or UploadComplete one). A refused job keeps its state."""
    store = FakeBulkJobStore()
    job, _ = store.create(bulk_job(state=source))
    assert store.transition(job.job_id, target) is None
    assert store.get(job.job_id).state is source


@pytest.mark.parametrize(
    ("target", "sources"),
    [
        (OPEN, set()),
        (QUEUED, {OPEN}),
        (RUNNING, {QUEUED}),
        (COMPLETE, {RUNNING}),
        (FAILED, {OPEN, QUEUED, RUNNING}),
        (ABORTED, {OPEN, QUEUED, RUNNING}),
    ],
)
def test_each_state_is_entered_only_from_the_states_the_workflow_allows(target, sources):
    """Open -> UploadComplete -> InProgress -> JobComplete, and Failed or Aborted from any state before an end: a job
    never skips its queue (Open straight to InProgress), never completes unstarted and never goes back."""
    assert bulk_sources_of(target) == sources


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("A" * 127, ("public", "a" * 127)),
        ("S" * 127 + ".accounts", ("s" * 127, "accounts")),
        ("sales." + "T" * 127, ("sales", "t" * 127)),
        ("_s._t9", ("_s", "_t9")),
    ],
)
def test_a_schema_or_table_of_127_characters_is_a_table_name(name, split):
    """Redshift names are up to 127 bytes: a schema or a table that long is taken (lower-cased, ``public`` when
    unqualified)."""
    assert split_object(name) == split


@pytest.mark.parametrize("name", ["a" * 128, "s" * 128 + ".t", "s." + "t" * 128, "sales.1accounts", "1sales.accounts"])
def test_a_part_of_128_characters_or_starting_with_a_digit_is_no_table_name(name):
    """A schema or table one character past 127, or starting with a digit, is refused: such a name would have to be
    quoted in SQL to mean what the tenant wrote."""
    with pytest.raises(ValueError, match="is not a table name"):
        split_object(name)
