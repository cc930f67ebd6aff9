"""JSON batch behaviour no test held before (found by mutation testing spectra/bulk/jsonfiles.py): a pretty-printed
array read as any other, an empty array refused as having no records, README's limits at their bounds (a record of
exactly 100,000 values, a batch of exactly 1,000,000 '[' characters, a gzip batch inflating to exactly its limit), and
the memory those limits keep: a gzip bomb is not inflated past its limit, and a record of too many objects stops being
read at the limit, as one of too many numbers does."""

from __future__ import annotations

import csv
import gzip
import io
import json
import tracemalloc
import zlib
from collections.abc import Callable

import pytest

from spectra.bulk.jsonfiles import MAX_BATCH_ARRAYS, MAX_RECORD_VALUES, as_csv
from spectra.errors import InvalidRequest, PayloadTooLarge

pytestmark = pytest.mark.unit


def rows(body: bytes, *, zipped: bool = False, max_bytes: int = 8 << 20) -> list[list[str]]:
    return list(csv.reader(io.StringIO(as_csv(body, gzip=zipped, max_bytes=max_bytes).decode(), newline="")))


def peak_bytes(call: Callable[[], object]) -> int:
    """The most memory Python held while ``call`` ran (it is expected to raise PayloadTooLarge)."""
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge):
            call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def test_a_pretty_printed_array_is_read_as_a_compact_one():
    """json.dumps(records, indent=2), what most tools write, puts a line break and spaces after the array's '[':
    its records are read as the compact array's are."""
    records = [{"id": 1, "name": "Ann"}, {"id": 2, "name": "Bob"}]
    expected = [["id", "name"], ["1", "Ann"], ["2", "Bob"]]
    assert rows(json.dumps(records, indent=2).encode()) == expected
    assert rows(b"[ \t\r\n" + json.dumps(records).encode()[1:]) == expected


@pytest.mark.parametrize("body", [b"[]", b"[ ]", b" [\n]\n"])
def test_an_empty_array_is_refused_as_a_batch_of_no_records(body):
    """An empty array says what is wrong (no records), not that record 1 is not JSON."""
    with pytest.raises(InvalidRequest) as refused:
        as_csv(body, gzip=False, max_bytes=1 << 20)
    assert refused.value.message.startswith("the batch has no records")


@pytest.mark.parametrize(
    ("value", "kind"),
    [(b"0", "numbers"), (b"{}", "objects"), (b"[]", "arrays"), (b'"ab"', "strings"), (b"true", "literals")],
)
def test_a_record_of_exactly_the_values_it_may_hold_is_rewritten(value, kind):
    """README: a record holding more than 100,000 values in its objects and arrays is a 413. Exactly 100,000 (its id,
    its array and the array's 99,998 items) is rewritten whole, whatever the items; one item more is refused."""

    def batch(count: int) -> bytes:
        return b'[{"id": 1, "v": []}, {"id": 2, "v": [' + b",".join([value] * count) + b"]}]"

    out = rows(batch(MAX_RECORD_VALUES - 2))
    assert len(out) == 3 and out[2][1].count(value.decode()) == MAX_RECORD_VALUES - 2, kind
    with pytest.raises(PayloadTooLarge, match="record 2 holds more than 100,000 values"):
        as_csv(batch(MAX_RECORD_VALUES - 1), gzip=False, max_bytes=8 << 20)


def test_a_batch_of_exactly_the_brackets_it_may_hold_is_read():
    """README: a batch of more than 1,000,000 '[' characters is a 413 before it is read; brackets in strings count.
    Exactly 1,000,000 (the array's own and 999,999 in a string) is read and the string kept whole."""
    assert MAX_BATCH_ARRAYS == 1_000_000
    out = rows(b'[{"a": "' + b"[" * (MAX_BATCH_ARRAYS - 1) + b'"}]')
    assert out == [["a"], ["[" * (MAX_BATCH_ARRAYS - 1)]]
    with pytest.raises(PayloadTooLarge, match="the batch holds 1,000,001 '\\[' characters"):
        as_csv(b'[{"a": "' + b"[" * MAX_BATCH_ARRAYS + b'"}]', gzip=False, max_bytes=8 << 20)


def test_a_gzip_batch_inflating_to_exactly_its_limit_is_read_and_one_byte_more_is_refused():
    """The limit is what the batch may inflate to, every member together: exactly that many bytes are read."""
    first, second = b'{"a": "x"}\n', b'{"a": "' + b"y" * 100 + b'"}\n'
    limit = len(first) + len(second)
    body = gzip.compress(first) + gzip.compress(second)
    assert rows(body, zipped=True, max_bytes=limit) == [["a"], ["x"], ["y" * 100]]
    assert rows(gzip.compress(first + second), zipped=True, max_bytes=limit) == [["a"], ["x"], ["y" * 100]]
    for short in (body, gzip.compress(first + second)):
        with pytest.raises(PayloadTooLarge, match=f"inflates past {limit - 1} bytes") as error:
            as_csv(short, gzip=True, max_bytes=limit - 1)
        assert error.value.details == {"limit": limit - 1}


def test_a_gzip_bomb_is_not_inflated_past_the_limit():
    """64 MiB of zeros in about 64 KB of gzip: refused having inflated no more than the limit (1 MiB here), not
    inflated whole and measured after."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    bomb = b"".join(deflater.compress(chunk) for _ in range(64)) + deflater.flush()
    assert peak_bytes(lambda: as_csv(bomb, gzip=True, max_bytes=1 << 20)) < 16 << 20


def test_a_record_of_millions_of_objects_stops_before_it_is_read_whole():
    """Objects are counted as they are read, as numbers are: a record of 2 million empty objects (6 MB of text)
    is refused at the limit, not held whole (each a Python dict) and counted after."""
    body = gzip.compress(b'[{"v": [' + b"{}," * 2_000_000 + b"{}]}]")
    assert peak_bytes(lambda: as_csv(body, gzip=True, max_bytes=8 << 20)) < 64 << 20


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (b'"ok \\ud800 then"', "the batch holds '\\ud800', which is not text"),
        (b'"ok \\udc00\\udc01\\udc02 then"', "the batch holds '\\udc00' (3 in a row), which is not text"),
    ],
)
def test_a_lone_surrogate_is_named_by_itself_and_its_run(value, said):
    """The refusal names the first lone surrogate of the value (not the value's text before it) and how many stand
    together."""
    with pytest.raises(InvalidRequest) as refused:
        as_csv(b'[{"a": "fine"}, {"a": ' + value + b"}]", gzip=False, max_bytes=1 << 20)
    assert refused.value.message == said


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'[{"a": 1}, {"b": 1}]', "record 2"),  # other fields than the first record's
        (b'{"first name": 1}', "line 1"),  # keys that are no column names
    ],
)
def test_a_refused_record_is_named_in_the_errors_details(body, where):
    """A client reads which record to mend from the error's details, not only its message."""
    with pytest.raises(InvalidRequest) as refused:
        as_csv(body, gzip=False, max_bytes=1 << 20)
    assert refused.value.details == {"record": where}


def test_a_batch_of_exactly_the_values_it_may_hold_is_read_and_one_more_is_refused(monkeypatch):
    """The batch's limit counts as a record's does (here 1,000: a record {"a": 0} counts 2, {"a": [0]} counts 3):
    exactly the limit is read, one value more is a 413 naming the record that passed it."""
    from spectra.bulk import jsonfiles

    monkeypatch.setattr(jsonfiles, "MAX_BATCH_VALUES", 1_000)
    assert len(rows(b"\n".join([b'{"a": [0]}'] * 2 + [b'{"a": 0}'] * 497))) == 500  # 6 + 994
    with pytest.raises(PayloadTooLarge, match="more than 1,000 values in its records \\(by line 500\\)"):
        as_csv(b"\n".join([b'{"a": 0}'] * 499 + [b'{"a": [0]}']), gzip=False, max_bytes=1 << 20)  # 998 + 3


def test_an_object_of_several_fields_is_written_as_its_compact_json():
    """An object value (a SUPER column's) is its compact JSON text: fields in their order, separated by commas."""
    body = b'{"o": {"b": 1, "a": [true, {"x": null, "y": "z"}], "c": {}}}'
    text = rows(body)[1][0]
    assert text == '{"b":1,"a":[true,{"x":null,"y":"z"}],"c":{}}'
    assert json.loads(text) == json.loads(body)["o"]


@pytest.mark.parametrize("after", [b"x", b"]", b","])
def test_one_character_after_the_array_is_refused(after):
    """Anything but blanks after the array's end is refused, a single character as much as more."""
    with pytest.raises(InvalidRequest, match="not JSON after record 1"):
        as_csv(b'[{"a": 1}]' + after, gzip=False, max_bytes=1 << 20)


def test_objects_nested_deeper_than_allowed_are_refused_as_arrays_are():
    """README: a value nests at most 100 objects or arrays one in another; objects alone count as arrays do."""

    def nested(depth: int) -> bytes:
        return b'{"a": ' + b'{"k": ' * depth + b"1" + b"}" * depth + b"}"

    assert rows(nested(100))[1][0] == '{"k":' * 100 + "1" + "}" * 100
    with pytest.raises(InvalidRequest, match="nested too deep: at most 100"):
        as_csv(nested(101), gzip=False, max_bytes=1 << 20)
