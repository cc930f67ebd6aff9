"""Query job result pages (spectra.bulk.pages) read from UNLOAD part files on a FakeS3 through the real BulkFiles:
records cut whole whatever the read chunks, pages of exactly ``maxRecords``, and locators signed for their job, so
none can be forged into another part, past the end of one, into the middle of a record, or into another job."""

from __future__ import annotations

import base64
import csv
import io
import random
from datetime import timedelta

import pytest

from spectra.bulk import pages
from spectra.bulk.models import BulkOperation, BulkState, ColumnDelimiter, ExportFile
from spectra.bulk.pages import Unkept, _binding, _records, decode_locator, encode_locator, read_page
from spectra.errors import InvalidRequest, RecordTooLarge
from spectra.tokens import PageTokens
from tests.unit.bulk_helpers import bulk_job
from tests.unit.fakes import make_ports

pytestmark = pytest.mark.unit

COLUMNS = ["id", "note"]
BIG = 1 << 30


def csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)  # quotes what needs it, as UNLOAD's CSV does
    return out.getvalue().encode()


def rows(n: int, start: int = 0) -> list[list[str]]:
    """Rows with the awkward cases mixed in: line breaks and quotes inside quoted fields, empty fields, commas."""
    notes = ["line\none", 'say "hi"', "", "a,b", "plain", '"\n"', "crlf\r\ninside", "é"]
    return [[str(start + i), notes[(start + i) % len(notes)]] for i in range(n)]


TOKENS = PageTokens(b"k" * 32)


@pytest.fixture
def files():
    return make_ports().bulk.files


def exported(files, parts: list[list[list[str]]], *, trailing_newline: bool = True):
    """A finished query job whose UNLOAD wrote ``parts`` (each with its header line)."""
    job = bulk_job(BulkOperation.QUERY, state=BulkState.JOB_COMPLETE, query="select id, note from t")
    export_files = []
    for n, part in enumerate(parts):
        body = csv_bytes([COLUMNS, *part])
        if not trailing_newline:
            body = body.removesuffix(b"\n")
        key = f"acme/{job.job_id}/export/part_{n:04d}_part_00"
        files.put(key, body)
        export_files.append(ExportFile(key=key, rows=len(part), bytes=len(body)))
    return job.model_copy(update={"export_files": export_files, "export_columns": COLUMNS})


def read_all(files, job, *, max_records: int, max_bytes: int = BIG):
    pages, locator = [], None
    while True:
        page = read_page(files, TOKENS, job, locator=locator, max_records=max_records, max_bytes=max_bytes)
        pages.append(page)
        assert len(pages) < 1000, "the locators do not move on"
        locator = page.locator
        if locator is None:
            return pages


def parsed(page) -> list[list[str]]:
    got = list(csv.reader(io.StringIO(page.body.decode(), newline="")))
    assert got[0] == COLUMNS  # every page starts with the header line
    assert len(got) - 1 == page.records
    return got[1:]


# -- cutting records ------------------------------------------------------------------------------------------------

SAMPLE = csv_bytes([COLUMNS, *rows(8)]) + b'9,"no newline at the end'


def test_records_are_whole_whatever_the_chunks():
    expected = list(_records(iter([SAMPLE]), keep_at_most=BIG))
    assert b"".join(expected) == SAMPLE
    assert len(expected) == 10  # the header, 8 rows, and the unfinished last one
    assert expected[1] == b'0,"line\none"\n' and expected[6] == b'5,"""\n"""\n'
    for cut in range(1, len(SAMPLE)):
        assert list(_records(iter([SAMPLE[:cut], SAMPLE[cut:]]), keep_at_most=BIG)) == expected, cut
    assert list(_records(iter(bytes([b]) for b in SAMPLE), keep_at_most=BIG)) == expected


def test_a_record_past_what_is_kept_is_its_size_alone_whatever_the_chunks():
    expected = list(_records(iter([SAMPLE]), keep_at_most=BIG))
    kept = [record if len(record) <= 12 else Unkept(len(record), record.endswith(b"\n")) for record in expected]
    assert set(map(type, kept)) == {bytes, Unkept}
    assert kept[-1] == Unkept(len(b'9,"no newline at the end'), line_break=False)
    for cut in range(1, len(SAMPLE)):
        assert list(_records(iter([SAMPLE[:cut], SAMPLE[cut:]]), keep_at_most=12)) == kept, cut
    assert list(_records(iter(bytes([b]) for b in SAMPLE), keep_at_most=12)) == kept


def cut_byte_by_byte(data: bytes, keep_at_most: int) -> list[bytes | Unkept]:
    """The records as the definition reads, a byte at a time: a line break ends one where the quotes before it in the
    record are even; the last may have no line break."""
    records, start, quotes = [], 0, 0
    for at, byte in enumerate(data):
        if byte == ord('"'):
            quotes += 1
        elif byte == ord("\n") and quotes % 2 == 0:
            records.append(data[start : at + 1])
            start, quotes = at + 1, 0
    if start < len(data):
        records.append(data[start:])
    return [r if len(r) <= keep_at_most else Unkept(len(r), line_break=r.endswith(b"\n")) for r in records]


def test_records_are_those_cut_byte_by_byte_whatever_the_bytes_chunks_and_room():
    """Random records of a, commas, quotes, line breaks and the shapes that once cost a step a few bytes (a field of
    \\n"" over and over, of "" or of ""\\n), read in every two chunks (a cut between the quotes of "", or between a
    closing quote and its line break), in random chunks (empty ones too) and a byte at a time, kept or not."""
    rng = random.Random(43)
    pieces = [b"a", b",", b'"', b"\n", b'\n""', b'""', b'"\n"', b'""\n']
    for _ in range(400):
        data = b"".join(rng.choices(pieces, k=rng.randrange(24)))
        keep_at_most = rng.choice((rng.randrange(8), rng.randrange(len(data) + 2)))
        expected = cut_byte_by_byte(data, keep_at_most)
        for cut in range(len(data) + 1):
            assert list(_records(iter([data[:cut], data[cut:]]), keep_at_most=keep_at_most)) == expected, (data, cut)
        for _ in range(5):
            cuts = sorted(rng.choices(range(len(data) + 1), k=rng.randrange(8)))
            chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
            assert list(_records(iter(chunks), keep_at_most=keep_at_most)) == expected, (chunks, keep_at_most)
        one_by_one = (bytes([b]) for b in data)
        assert list(_records(one_by_one, keep_at_most=keep_at_most)) == expected, (data, keep_at_most)


# -- pages ----------------------------------------------------------------------------------------------------------


def test_25_records_in_pages_of_10_are_exactly_3_pages_that_reassemble(files):
    data = rows(25)
    job = exported(files, [data[:7], data[7:18], data[18:]])  # pages cut across part boundaries
    pages = read_all(files, job, max_records=10)
    assert [p.records for p in pages] == [10, 10, 5]
    assert [p.locator is None for p in pages] == [False, False, True]
    assert [r for p in pages for r in parsed(p)] == data


def test_an_exact_multiple_ends_without_an_empty_last_page(files):
    data = rows(20)
    for parts in ([data], [data[:10], data[10:]], [data[:15], data[15:]]):
        pages = read_all(files, exported(files, parts), max_records=10)
        assert [p.records for p in pages] == [10, 10], parts
        assert [r for p in pages for r in parsed(p)] == data


def test_parts_without_rows_and_an_empty_export(files):
    data = rows(5)
    pages = read_all(files, exported(files, [data[:3], [], data[3:]]), max_records=10)
    assert [p.records for p in pages] == [5]
    assert parsed(pages[0]) == data

    (empty,) = read_all(files, exported(files, [[]]), max_records=10)
    assert (empty.body, empty.records, empty.locator) == (b"id,note\n", 0, None)


def test_a_part_without_a_final_line_break_still_gives_whole_lines(files):
    data = rows(6)
    pages = read_all(files, exported(files, [data[:3], data[3:]], trailing_newline=False), max_records=2)
    assert [p.records for p in pages] == [2, 2, 2]
    assert [r for p in pages for r in parsed(p)] == data


def test_the_byte_budget_cuts_pages_early_and_loses_nothing(files):
    data = rows(40)
    job = exported(files, [data[:25], data[25:]])
    pages = read_all(files, job, max_records=1000, max_bytes=120)
    assert len(pages) > 3
    assert all(len(p.body) <= 120 for p in pages)  # a record that would pass the budget starts the next page
    assert [r for p in pages for r in parsed(p)] == data


def test_a_record_larger_than_the_budget_is_a_page_of_its_own(files):
    data = rows(5)
    data[2][1] = "x" * 500
    pages = read_all(files, exported(files, [data]), max_records=1000, max_bytes=120)
    assert [parsed(p) for p in pages] == [data[:2], data[2:3], data[3:]]


def test_a_record_no_page_can_carry_is_a_422_naming_where_to_read_on(files, monkeypatch):
    """A record past Lambda's answer even alone (base64 past 6 MB) was a 502 on every try, the job's later records
    unreadable (found by the fuzzing review)."""
    monkeypatch.setattr("spectra.bulk.pages.ALONE_MAX_BYTES", 300)
    data = rows(7)
    data[2][1] = "x" * 500  # in the middle of a part
    data[4][1] = "y" * 500  # the last of its part
    data[6][1] = "z" * 500  # the last of all
    job = exported(files, [data[:5], data[5:]])
    first = read_page(files, TOKENS, job, locator=None, max_records=1000, max_bytes=120)
    assert parsed(first) == data[:2]
    seen, locator = [], first.locator
    for expected_next in (data[3:4], data[5:6], None):
        with pytest.raises(RecordTooLarge) as refused:
            read_page(files, TOKENS, job, locator=locator, max_records=1000, max_bytes=120)
        details = refused.value.details
        assert refused.value.status == 422 and details["record_bytes"] > 500 and details["page_max_bytes"] < 300
        locator = details["locator_after"]
        if expected_next is None:
            assert locator == "null"
            break
        page = read_page(files, TOKENS, job, locator=locator, max_records=1000, max_bytes=120)
        assert parsed(page) == expected_next
        seen += parsed(page)
        locator = page.locator
    assert seen == [data[3], data[5]]


def test_a_record_of_a_hundred_megabytes_costs_a_page_of_memory_and_the_rest_stays_readable(files, monkeypatch):
    """Cut as it arrived, such a record (a row of many full VARCHAR(65535) columns of quotes, each doubled in CSV) was
    copied once per chunk and held whole, five times over: past the API function's memory or time on every GET, so
    the 422 naming where to read on never came (the bulk query review)."""
    import tracemalloc

    monkeypatch.setattr("spectra.bulk.pages.ALONE_MAX_BYTES", 1 << 20)
    huge = '"' * (50 << 20)  # 100 MB once CSV doubles the quotes
    job = exported(files, [[["2", huge], ["3", "after"]]])  # first: read without a range, which FakeS3 would copy
    del huge
    tracemalloc.start()
    try:
        with pytest.raises(RecordTooLarge) as refused:
            read_page(files, TOKENS, job, locator=None, max_records=1000, max_bytes=1 << 16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # tracemalloc counts every thread of the process: a test worker that ran a local stack's file before this one
    # keeps its pollers, whose retries took the peak to 11 MiB once. The record held whole would be 100 MB and more.
    assert peak < 32 << 20, f"{peak / (1 << 20):.0f} MiB held for one record"
    assert refused.value.details["record_bytes"] == len("2,") + 2 + (100 << 20) + 1  # its line, quoted, and LF
    after = read_page(files, TOKENS, job, locator=refused.value.details["locator_after"], max_records=10, max_bytes=BIG)
    assert parsed(after) == [["3", "after"]] and after.locator is None


@pytest.mark.parametrize(
    "field",
    [b"\n" * 1_000_000, b'\n""' * 333_333, b'""' * 500_000, b'""\n' * 333_333],
    ids=["line breaks", "line breaks and quotes", "quotes", "quotes and line breaks"],
)
def test_a_field_of_a_million_line_breaks_or_quotes_costs_a_few_searches_a_chunk(monkeypatch, field):
    """Cut at every line break inside the quotes, such a record took about a second a megabyte: past the API's 29 s
    for a 30 MB one, so the 422 naming where to read on never came (the diff review); cut quote to quote, one of
    line breaks and doubled quotes still took half a second a megabyte. Counted here by the searches made, not timed:
    a few a chunk, none per line break or quote inside the field."""
    searches = []

    class Counted(bytes):
        def find(self, sub, *args):
            searches.append(sub)
            return bytes.find(self, sub, *args)

        def count(self, sub, *args):
            searches.append(sub)
            return bytes.count(self, sub, *args)

    class CountedPattern:
        def match(self, *args):
            searches.append(pattern)
            return pattern.match(*args)

    pattern = pages._OUTSIDE_QUOTES
    monkeypatch.setattr(pages, "_OUTSIDE_QUOTES", CountedPattern())
    body = b'1,"' + field + b'"\n2,x\n'
    chunks = [Counted(body[i : i + (1 << 16)]) for i in range(0, len(body), 1 << 16)]
    records = list(_records(iter(chunks), keep_at_most=1 << 10))
    assert records == [Unkept(len(body) - len(b"2,x\n"), line_break=True), b"2,x\n"]
    assert len(searches) < 5 * len(chunks) + 10


def test_a_one_column_null_is_passed_on_as_the_blank_line_the_unload_wrote(files):
    """README: in a one-column result NULL is a blank line and '' is "" (COPY's convention), and pages keep both."""
    job = bulk_job(BulkOperation.QUERY, state=BulkState.JOB_COMPLETE, query="select v from t")
    body = b'v\na\n\n""\nb\n'
    key = f"acme/{job.job_id}/export/part_0000_part_00"
    files.put(key, body)
    job = job.model_copy(
        update={"export_files": [ExportFile(key=key, rows=4, bytes=len(body))], "export_columns": ["v"]}
    )
    page = read_page(files, TOKENS, job, locator=None, max_records=10, max_bytes=BIG)
    assert (page.body, page.records, page.locator) == (body, 4, None)


def test_pages_are_the_same_when_every_read_is_a_few_bytes(files, monkeypatch):
    data = rows(25)
    job = exported(files, [data[:12], data[12:]])
    expected = [p.body for p in read_all(files, job, max_records=4)]
    monkeypatch.setattr("spectra.bulk.files.CHUNK", 5)  # quoted line breaks fall across reads
    assert [p.body for p in read_all(files, job, max_records=4)] == expected


def test_a_later_page_starts_where_its_locator_points_with_a_ranged_read(files):
    data = rows(9)
    job = exported(files, [data])
    first = read_page(files, TOKENS, job, locator=None, max_records=4, max_bytes=BIG)
    files.client.requests.clear()
    second = read_page(files, TOKENS, job, locator=first.locator, max_records=4, max_bytes=BIG)
    assert parsed(second) == data[4:8]
    assert files.client.requests == [("GetObject", job.export_files[0].key)]


# -- locators -------------------------------------------------------------------------------------------------------


def test_a_job_unloaded_before_its_parts_followed_its_delimiter_keeps_commas_in_its_header(files):
    """A TAB job unloaded in commas (before the UNLOAD took columnDelimiter) is served with a comma header, as its
    records are: a TAB header over comma records read as one column. One that records its parts' delimiter gets it."""
    old = exported(files, [rows(2)]).model_copy(update={"column_delimiter": ColumnDelimiter.TAB})
    [page] = read_all(files, old, max_records=10)
    assert page.body.startswith(b"id,note\n0,")
    tabbed = old.model_copy(update={"export_delimiter": ColumnDelimiter.TAB})
    assert read_all(files, tabbed, max_records=10)[0].body.startswith(b"id\tnote\n")


def test_locators_round_trip_within_the_export(files):
    job = exported(files, [rows(3), rows(3, start=3)])
    size = job.export_files[1].bytes
    for part, offset in [(0, 0), (0, 17), (1, 0), (1, size)]:
        locator = encode_locator(TOKENS, job, part, offset)
        assert len(locator) <= 256  # the API's bound on the query parameter
        assert "=" not in locator and "/" not in locator and "+" not in locator  # safe in a query string
        assert decode_locator(TOKENS, locator, job) == (part, offset)


def old_style(text: str) -> str:
    """A locator as they were before they were signed: the position in base64, which anyone could write."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "locator",
    [
        "null",  # the last page's header value is not a locator
        "!!!",
        old_style("0.0"),  # a position, unsigned
        old_style("0.17"),
        "w6k",  # base64 of bytes that are not ASCII
        "x" * 300,
    ],
)
def test_a_locator_not_signed_for_the_job_is_refused(files, locator):
    job = exported(files, [rows(3), rows(3, start=3)])
    with pytest.raises(InvalidRequest):
        decode_locator(TOKENS, locator, job)
    with pytest.raises(InvalidRequest):
        read_page(files, TOKENS, job, locator=locator, max_records=10, max_bytes=BIG)


def test_a_locator_is_bound_to_its_job_and_key_and_to_positions_inside_the_export(files):
    job = exported(files, [rows(3), rows(3, start=3)])
    other = exported(files, [rows(3), rows(3, start=3)])
    locator = read_page(files, TOKENS, job, locator=None, max_records=2, max_bytes=BIG).locator
    assert decode_locator(TOKENS, locator, job) == (0, job.export_files[0].bytes - len(csv_bytes([rows(3)[2]])))
    for refused in (
        lambda: decode_locator(TOKENS, locator, other),  # another job's, of the same tenant
        lambda: decode_locator(TOKENS, locator, job.model_copy(update={"tenant_id": "globex"})),
        # the same id made again (an Idempotency-Key reused once the first job's record expired)
        lambda: decode_locator(TOKENS, locator, job.model_copy(update={"created_at": job.created_at + timedelta(1)})),
        lambda: decode_locator(PageTokens(b"r" * 32), locator, job),  # a key since rotated
        lambda: decode_locator(TOKENS, locator[:-1] + ("A" if locator[-1] != "A" else "B"), job),
    ):
        with pytest.raises(InvalidRequest):
            refused()
    # signed, but pointing outside the export (a shape check past the signature: a future encoder's bug)
    for part, offset in [(2, 0), (-1, 0), (0, -5), (0, job.export_files[0].bytes + 1), ("0", 0), (0, 1.5)]:
        with pytest.raises(InvalidRequest):
            decode_locator(TOKENS, TOKENS.encode({"part": part, "offset": offset}, bound_to=_binding(job)), job)


def test_a_lone_record_may_fill_what_lambda_can_answer():
    """A page of one record goes base64 (4/3) in Lambda's 6 MiB answer with its envelope: a 4.3 MB record fits, and
    was served before the 422 came (found by the diff review)."""
    from spectra.bulk.pages import ALONE_MAX_BYTES

    assert ALONE_MAX_BYTES > 4 * 1024 * 1024 and ALONE_MAX_BYTES * 4 / 3 + 16 * 1024 <= 6 * 1024 * 1024
