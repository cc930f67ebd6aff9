"""Result sink behaviour no test held before (found by mutation testing spectra/results.py): the inline limits at
their exact bounds (the JSON's bytes, and the stored form's bytes against the room on the job record), counted the
same however the rows were paged), the rows a results answer serves for each kind of result, and the columns a
Parquet export's refusal for names alike names."""

from __future__ import annotations

import json

import pytest

from events import Delivery, ResultFormat
from spectra.errors import DuplicateColumns, ResultTooLarge
from spectra.jobs import JobResult
from spectra.results import ResultSink, inline_rows
from tests.unit.fakes import FakeS3
from tests.unit.test_results import NUMBERED, decoded, numbers, write

pytestmark = pytest.mark.unit

#: Two rows, as two pages: their JSON is [[0,"v0"],[1,"v1"]], 19 bytes; gzipped and base64-encoded, 52 bytes.
TWO_PAGES = [numbers(1), numbers(1, 1)]
TWO_ROWS = [[0, "v0"], [1, "v1"]]
#: The column list the job record holds beside the rows: [{"name": "i", ...}, {"name": "v", ...}], 65 bytes.
COLUMN_LIST_BYTES = 65


def _two_rows(delivery: Delivery, pages=TWO_PAGES, budget: int | None = None, **limits):
    """The two rows written as a JSON result under ``limits`` and, when given, an ``inline_budget``."""
    options = {} if budget is None else {"inline_budget": budget}
    return write(pages, columns=NUMBERED, fmt=ResultFormat.JSON, delivery=delivery, options=options, **limits)


@pytest.mark.parametrize("pages", [TWO_PAGES, [numbers(2)]], ids=["two pages", "one page"])
def test_rows_whose_json_is_exactly_inline_max_bytes_go_inline(pages):
    """inline_max_bytes holds the JSON array the client receives, brackets and commas between pages included: 19
    bytes of JSON under a limit of 19 come back inline, the rows in order, and nothing is written to S3."""
    result, s3, _ = _two_rows(Delivery.AUTO, pages=pages, inline_max_bytes=19)
    assert (result.inline, result.bytes, result.row_count) == (True, 19, 2)
    assert inline_rows(result) == TWO_ROWS
    assert s3.requests == []


def test_rows_one_byte_past_inline_max_bytes_go_to_files_or_are_refused_inline():
    """A limit of 18 bytes does not hold the 19 bytes of JSON: ``auto`` delivers the two rows as a file, ``inline``
    fails result_too_large saying the size it reached, and the bytes, not the rows, even when the rows are exactly
    inline_max_rows."""
    result, s3, _ = _two_rows(Delivery.AUTO, inline_max_bytes=18)
    assert (result.inline, result.delivery, result.row_count) == (False, Delivery.S3, 2)
    assert decoded(s3, result.files[0].key, ResultFormat.JSON, NUMBERED) == TWO_ROWS
    with pytest.raises(ResultTooLarge) as refused:
        _two_rows(Delivery.INLINE, inline_max_bytes=18, inline_max_rows=2)
    assert "(at least 19 bytes of JSON; inline holds at most 18 bytes)" in refused.value.message
    assert refused.value.message.endswith("or set a row_limit")
    assert refused.value.details == {"inline_max_rows": 2, "inline_max_bytes": 18}


def test_stored_rows_exactly_the_room_left_on_the_job_record_go_inline():
    """The stored form (52 bytes) against the record's room less the column list (65 bytes): a budget of 117 leaves
    exactly 52 and the rows go inline; 116 leaves 51, and ``auto`` writes a file while ``inline`` is refused saying
    the stored size and the room."""
    exact, s3, _ = _two_rows(Delivery.AUTO, budget=52 + COLUMN_LIST_BYTES)
    assert (exact.inline, len(exact.inline_rows), inline_rows(exact)) == (True, 52, TWO_ROWS)
    assert s3.requests == []

    short, s3, _ = _two_rows(Delivery.AUTO, budget=51 + COLUMN_LIST_BYTES)
    assert (short.inline, short.row_count) == (False, 2)
    assert decoded(s3, short.files[0].key, ResultFormat.JSON, NUMBERED) == TWO_ROWS
    with pytest.raises(ResultTooLarge) as refused:
        _two_rows(Delivery.INLINE, budget=51 + COLUMN_LIST_BYTES)
    assert "(52 bytes as the job record stores it" in refused.value.message
    assert refused.value.details["record_room_bytes"] == 51


def test_the_rows_served_are_the_job_records_the_old_manifests_or_none_for_files():
    """What a results answer's ``rows`` holds: an inline result's rows from the job record (no S3 request); a small
    result written before deliveries existed (``inline`` set, rows in its manifest) the manifest's rows; a result
    delivered as files no rows, and its manifest is not read for them."""
    inline, s3, sink = _two_rows(Delivery.AUTO)
    assert sink.rows_of(inline) == TWO_ROWS
    assert s3.requests == []

    files, s3, sink = _two_rows(Delivery.S3)
    written = list(s3.requests)
    assert sink.rows_of(files) is None
    assert s3.requests == written

    s3.put_object(Bucket="results", Key="acme/j_0/manifest.json", Body=b'{"rows": [[7, "old"]], "row_count": 1}')
    old = JobResult(
        bucket="results",
        prefix="acme/j_0/",
        manifest_key="acme/j_0/manifest.json",
        files=[],
        row_count=1,
        bytes=12,
        columns=[{"name": "i", "type": "int8"}, {"name": "v", "type": "varchar"}],
        inline=True,
    )
    assert sink.rows_of(old) == [[7, "old"]]
    with pytest.raises(ValueError, match="result is not inline"):
        sink.read_inline(files)


def test_a_parquet_export_refused_for_names_alike_names_only_those():
    """Columns x, y, x: the refusal names x, in its message and its details, and not y, which needs no alias."""
    s3 = FakeS3()
    manifest = {
        "entries": [{"url": "s3://results/acme/j_1/part-000", "meta": {"content_length": 10, "record_count": 1}}],
        "schema": {"elements": [{"name": name, "type": {"base": "integer"}} for name in ("x", "y", "x")]},
    }
    s3.put_object(Bucket="results", Key="acme/j_1/part-manifest", Body=json.dumps(manifest).encode())
    with pytest.raises(DuplicateColumns) as refused:
        ResultSink(s3, "results").collect_export(
            tenant_id="acme", job_id="j_1", fmt=ResultFormat.PARQUET, unload_manifest_key="acme/j_1/part-manifest"
        )
    assert refused.value.details == {"columns": ["x"]}
    assert "more than one column named x;" in refused.value.message
    assert ("results", "acme/j_1/manifest.json") not in s3.objects


@pytest.mark.parametrize("delivery", [Delivery.AUTO, Delivery.S3])
def test_a_row_limit_that_keeps_one_row_of_a_page_keeps_that_row(delivery):
    """row_limit 6 over pages of 5 rows: the sixth row, the only one the second page gives, is delivered, and the
    third page is never fetched."""
    fetched: list[int] = []
    pages = map(lambda start: fetched.append(start) or numbers(5, start), range(0, 15, 5))  # fetched as read
    result, s3, _ = write(
        pages, columns=NUMBERED, fmt=ResultFormat.JSON, delivery=delivery, options={"row_limit": 6, "total_rows": 15}
    )
    rows = inline_rows(result) if result.inline else decoded(s3, result.files[0].key, ResultFormat.JSON, NUMBERED)
    assert rows == [[i, f"v{i}"] for i in range(6)]
    assert (result.row_count, result.truncated, result.total_row_count) == (6, True, 15)
    assert fetched == [0, 5]
