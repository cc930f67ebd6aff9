"""Query job page behaviour no test held before (found by mutation testing spectra/bulk/pages.py): a page may fill its
byte budget exactly, in either line ending and when a part's last record has no line break; a lone record may fill
what Lambda can answer exactly, and the 422 past it gives the record's size and the room it had; a locator's wire
format is kept across a deploy; and every locator the service did not write gets the one answer that says to start
again."""

from __future__ import annotations

import pytest

from spectra.bulk import pages
from spectra.bulk.models import BulkOperation, BulkState, ExportFile, LineEnding
from spectra.bulk.pages import _binding, decode_locator, encode_locator, read_page
from spectra.errors import InvalidRequest, RecordTooLarge
from tests.unit.bulk_helpers import bulk_job
from tests.unit.fakes import make_ports
from tests.unit.test_bulk_pages import BIG, TOKENS, csv_bytes, exported, parsed, read_all, rows

pytestmark = pytest.mark.unit

HEADER = b"id,note\n"


@pytest.fixture
def files():
    return make_ports().bulk.files


def _page_bytes(records: list[list[str]], ending: LineEnding = LineEnding.LF) -> int:
    """What ``records`` take on a page: each line (UNLOAD's, which ends in LF) in the job's line ending."""
    return sum(len(csv_bytes([record])) - 1 + len(ending.chars) for record in records)


@pytest.mark.parametrize("ending", [LineEnding.LF, LineEnding.CRLF])
def test_a_page_may_fill_its_byte_budget_to_the_byte_and_no_further(files, ending):
    """A record that brings the page (in the job's line ending) exactly to the budget is on it; one that would pass
    the budget by a byte starts the next page."""
    data = rows(6)
    job = exported(files, [data]).model_copy(update={"line_ending": ending})
    budget = _page_bytes([["id", "note"], *data[:2]], ending)
    for max_bytes, first_records in [(budget, 2), (budget - 1, 1)]:
        pages = read_all(files, job, max_records=1000, max_bytes=max_bytes)
        assert pages[0].records == first_records, max_bytes
        assert len(pages[0].body) == _page_bytes([["id", "note"], *data[:first_records]], ending)
        assert all(len(p.body) <= max_bytes for p in pages)
        assert [r for p in pages for r in parsed(p)] == data


def test_a_parts_last_record_without_a_line_break_counts_the_one_the_page_gives_it(files):
    """UNLOAD's part may end without a line break; on the page the record ends in one like the others, and that line
    ending counts against the budget: a budget one byte short of it puts the record on the next page."""
    data = rows(3)
    job = exported(files, [data], trailing_newline=False)
    whole = _page_bytes([["id", "note"], *data])
    pages = read_all(files, job, max_records=1000, max_bytes=whole - 1)
    assert [p.records for p in pages] == [2, 1]
    assert all(len(p.body) <= whole - 1 for p in pages)
    assert [r for p in pages for r in parsed(p)] == data


def test_a_lone_record_may_fill_the_page_to_the_byte_and_one_byte_more_is_the_422(files, monkeypatch):
    """A record alone is served while the page (its header line and the record) is at most ALONE_MAX_BYTES; past
    that, the 422 gives the record's size with its line ending and the room a page had for it beside the header."""
    monkeypatch.setattr("spectra.bulk.pages.ALONE_MAX_BYTES", 300)
    room = 300 - len(HEADER)
    fits, past = ["1", "x" * (room - len("1,\n"))], ["2", "y" * (room + 1 - len("2,\n"))]
    job = exported(files, [[fits, past, ["3", "after"]]])
    page = read_page(files, TOKENS, job, locator=None, max_records=1000, max_bytes=120)
    assert (len(page.body), parsed(page)) == (300, [fits])
    with pytest.raises(RecordTooLarge) as refused:
        read_page(files, TOKENS, job, locator=page.locator, max_records=1000, max_bytes=120)
    details = refused.value.details
    assert (details["record_bytes"], details["page_max_bytes"]) == (room + 1, room)
    after = read_page(files, TOKENS, job, locator=details["locator_after"], max_records=1000, max_bytes=BIG)
    assert parsed(after) == [["3", "after"]] and after.locator is None


def test_a_lone_record_is_served_up_to_the_most_lambda_can_answer(files):
    """A page of one record goes base64 (4/3) in Lambda's 6 MiB answer beside 16 KiB of envelope and headers: the
    page may be that big to the byte (README: about 4.7 MB), and a record one byte longer is the 422."""
    most = pages.ALONE_MAX_BYTES
    assert most * 4 / 3 + 16 * 1024 <= 6 * 1024 * 1024 < (most + 3) * 4 / 3 + 16 * 1024
    room = most - len(HEADER)
    fits, past = ["1", "x" * (room - len("1,\n"))], ["2", "y" * (room + 1 - len("2,\n"))]
    job = exported(files, [[fits, past]])
    page = read_page(files, TOKENS, job, locator=None, max_records=1000, max_bytes=1 << 16)
    assert (len(page.body), page.records) == (most, 1)
    with pytest.raises(RecordTooLarge) as refused:
        read_page(files, TOKENS, job, locator=page.locator, max_records=1000, max_bytes=1 << 16)
    assert refused.value.details["page_max_bytes"] == room


def test_a_locator_signed_before_a_deploy_reads_on_after_it():
    """README (Upgrading): a client holding a Sforce-Locator across a deploy reads on. A locator of a fixed key, job
    and position is pinned byte for byte, so a change to what it carries or what it is bound to fails here instead of
    sending every client in the middle of a job's results back to its first page."""
    job = bulk_job(
        BulkOperation.QUERY,
        state=BulkState.JOB_COMPLETE,
        job_id="b_AAAAAAAAAAAAAAAAAAAAAA",
        query="select 1",
        export_files=[ExportFile(key="k0", rows=1, bytes=100), ExportFile(key="k1", rows=1, bytes=100)],
    )
    pinned = "eyJvZmZzZXQiOjE3LCJwYXJ0IjoxfQ.H8pVVxtFuIpiOBsRKHqOY6FZZk9PoyeUnD15MKf-mZc"
    assert decode_locator(TOKENS, pinned, job) == (1, 17)
    assert encode_locator(TOKENS, job, 1, 17) == pinned


def test_every_locator_the_service_did_not_write_gets_one_answer_saying_to_start_again(files):
    """README: a locator from before locators were bound to their job's making is a 400 saying 'start again without
    it'. A forged one and ones signed but pointing just outside the export (an offset of -1, one byte past a part's
    end, a part past the last) get that same answer, word for word: nothing tells a caller which check it failed."""
    job = exported(files, [rows(3)])
    size = job.export_files[0].bytes
    signed = [
        TOKENS.encode({"part": p, "offset": o}, bound_to=_binding(job)) for p, o in [(0, -1), (0, size + 1), (1, 0)]
    ]
    answers = set()
    for locator in ("garbage", *signed):
        with pytest.raises(InvalidRequest) as refused:
            decode_locator(TOKENS, locator, job)
        answers.add(str(refused.value))
    assert len(answers) == 1
    assert "start again without it" in answers.pop()
