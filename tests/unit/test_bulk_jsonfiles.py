"""spectra/bulk/jsonfiles.py: a JSON batch rewritten as the CSV a bulk load reads, and what it refuses (with where)."""

from __future__ import annotations

import csv
import gzip
import io

import pytest

from spectra.bulk.jsonfiles import as_csv
from spectra.errors import BadGzip, InvalidRequest, PayloadTooLarge

pytestmark = pytest.mark.unit


def rows(body: bytes, *, zipped: bool = False, max_bytes: int = 1 << 20) -> list[list[str]]:
    return list(csv.reader(io.StringIO(as_csv(body, gzip=zipped, max_bytes=max_bytes).decode(), newline="")))


def test_values_keep_their_text_and_null_is_copys_null_marker():
    body = (
        b'[{"s": "a \\"q\\", b", "e": "", "n": null, "f": 0.10, "i": 12345678901234567890, "t": true, "x": false,'
        b' "o": {"k": [1, 2.50, "v", null]}}]'
    )
    out = as_csv(body, gzip=False, max_bytes=1 << 20).decode()
    header, line = out.splitlines()
    assert header == '"e","f","i","n","o","s","t","x"'  # sorted keys, quoted
    assert line == '"",0.10,12345678901234567890,\\N,"{""k"":[1,2.50,""v"",null]}","a ""q"", b",true,false'


def test_json_lines_and_an_array_give_the_same_csv_whatever_order_each_record_gives_its_keys():
    array = b'[{"b": 1, "a": "x"}, {"a": "y", "b": 2}]'
    lines = b'\xef\xbb\xbf{"a": "x", "b": 1}\r\n\n{"b": 2, "a": "y"}\n'  # a BOM, CRLF and a blank line
    assert rows(array) == rows(lines) == [["a", "b"], ["x", "1"], ["y", "2"]]
    assert rows(gzip.compress(lines), zipped=True) == rows(array)


def test_a_line_separator_inside_a_string_does_not_split_a_json_lines_record():
    body = '{"a": "one\u2028two\u2029three"}\n'.encode()
    assert rows(body) == [["a"], ["one\u2028two\u2029three"]]


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"a": 1}\n{"b": 1}', "line 2 has other fields than the first record (not in the first: b; missing: a)"),
        (b'[{"a": 1, "b": 2}, {"a": 1}]', "record 2 has other fields than the first record (missing: b)"),
        (b'[{"a": 1}, "x"]', "record 2 is not a JSON object"),
        (b'{"a": 1, "a": 2}', "line 1: the key 'a' is given twice"),
        (b'{"a": Infinity}', "line 1: Infinity is not a JSON number"),
        (b'{"a": 1', "line 1 is not JSON"),
        (b'{"a": 1}]', "line 1 is not JSON"),
        (b"{}", "line 1 has no fields"),
        (b"  \n ", "the batch has no records"),
        (b'{"a": "\xff"}', "the batch is not UTF-8 (byte 7)"),
        (b'{"a": 1}', None),
    ],
)
def test_what_the_load_could_not_read_is_refused_naming_where(body, said):
    if said is None:
        assert rows(body) == [["a"], ["1"]]
        return
    with pytest.raises(InvalidRequest) as refused:
        as_csv(body, gzip=False, max_bytes=1 << 20)
    assert said in refused.value.message


def test_a_gzip_batch_that_inflates_past_the_bound_or_is_cut_short_is_refused():
    big = gzip.compress(b'{"a": "' + b"x" * 5000 + b'"}')
    with pytest.raises(PayloadTooLarge, match="inflates past 1000 bytes"):
        as_csv(big, gzip=True, max_bytes=1000)
    with pytest.raises(BadGzip, match="cut short"):  # 400 bad_gzip, as a CSV batch's (spectra.bulk.service)
        as_csv(gzip.compress(b'{"a": 1}')[:-6], gzip=True, max_bytes=1000)
    with pytest.raises(BadGzip, match="not gzip data"):
        as_csv(b"\x1f\x8b\x08\x00garbage-garbage", gzip=True, max_bytes=1000)
    with pytest.raises(BadGzip, match="not gzip data"):  # NUL padding after the member
        as_csv(gzip.compress(b'{"a": 1}') + b"\0" * 64, gzip=True, max_bytes=1000)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'[{"a": "\\ud800"}]', "which is not text"),  # a lone surrogate escape (found by the diff review: a 500)
        (b'{"\\udfff": 1}', "keys that are not column names"),
        (b'[{"a": ' + b"[" * 101 + b"]" * 101 + b"}]", "nested too deep: at most 100"),  # parsed, too deep to write
        (b'[{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}]", "nested too deep"),  # too deep to parse
        (b'{"first name": 1}', "line 1: keys that are not column names: 'first name'"),
        (b'{"Email": 1, "email": 2}', "line 1: columns named twice: email"),
        (b'{"sf__Id": 1}', "sf__id: the result files name their own columns"),
        (b'[{"a": 1}] [', "not JSON after record 1"),
        (b"[] x", "something follows its array"),
        (b'[{"a": 1} {"a": 2}]', "not JSON after record 1"),
    ],
)
def test_what_a_load_would_fail_on_or_no_text_holds_is_refused_at_upload(body, said):
    with pytest.raises(InvalidRequest) as refused:
        as_csv(body, gzip=False, max_bytes=1 << 20)
    assert said in refused.value.message


def test_every_gzip_member_is_read_as_copy_reads_them_all():
    """Found by the diff review: only the first member was inflated, and the records of the others were dropped."""
    body = gzip.compress(b'{"a": 1}\n') + gzip.compress(b'{"a": 2}\n')
    assert rows(body, zipped=True) == [["a"], ["1"], ["2"]]
    with pytest.raises(PayloadTooLarge):
        as_csv(body, gzip=True, max_bytes=12)  # the two members together pass it


def test_a_null_external_id_is_a_missing_one_and_other_nulls_are_null():
    """Found by the diff review: the id's \\N read back in the result files as an id, listed as successful."""
    out = as_csv(b'{"Email": null, "name": null}', gzip=False, max_bytes=1 << 20, key="email").decode()
    assert out.splitlines() == ['"Email","name"', ",\\N"]


def test_a_value_nested_as_deep_as_allowed_is_kept_whole():
    nested = b"[" * 100 + b"1" + b"]" * 100
    assert rows(b'{"a": ' + nested + b"}") == [["a"], [nested.decode()]]


def test_batches_naming_their_keys_in_other_orders_or_cases_give_one_header_once_folded():
    first = as_csv(b'{"Name": "a", "email": "b"}', gzip=False, max_bytes=1 << 20).decode().splitlines()[0]
    second = as_csv(b'{"email": "b", "name": "a"}', gzip=False, max_bytes=1 << 20).decode().splitlines()[0]
    assert first.lower() == second.lower() == '"email","name"'


def test_keys_are_read_as_the_load_reads_a_header_spaces_around_them_and_all():
    """Found by the last review: a key with spaces around it was checked stripped but sorted and matched raw, so its
    null id was \\N again, and two batches told apart only by such spaces were 201s whose job then failed."""
    out = as_csv(b'{" Email ": null, "name": "x"}', gzip=False, max_bytes=1 << 20, key="email").decode()
    assert out.splitlines() == ['" Email ","name"', ',"x"']
    first = as_csv(b'{" b": 1, "a": 2}', gzip=False, max_bytes=1 << 20).decode().splitlines()[0]
    second = as_csv(b'{"b": 1, "a": 2}', gzip=False, max_bytes=1 << 20).decode().splitlines()[0]
    assert first.replace(" ", "") == second == '"a","b"'


@pytest.mark.parametrize(
    ("value", "kind"),
    [(b"0", "numbers"), (b"{}", "objects"), (b"[]", "arrays"), (b'"ab"', "strings"), (b"true", "literals")],
)
def test_a_record_of_more_values_than_the_rewrite_holds_is_refused_naming_it(value, kind):
    """One record of 4 million numbers (8 KB gzipped) took the API function to 1 GB, past its 512 MB, as Python
    objects and then their compact text (found by the JSON review). At the limit, a record is rewritten; past it, a
    413 names the record. Numbers and objects are counted as they are read, so such a record stops early."""
    from spectra.bulk.jsonfiles import MAX_RECORD_VALUES

    def batch(count: int) -> bytes:
        return b'[{"id": 1, "v": []}, {"id": 2, "v": [' + b",".join([value] * count) + b"]}]"

    out = rows(batch(MAX_RECORD_VALUES - 10), max_bytes=8 << 20)
    assert len(out) == 3 and out[2][1].count(value.decode()) == MAX_RECORD_VALUES - 10, kind
    with pytest.raises(PayloadTooLarge, match="record 2 holds more than 100,000 values") as error:
        as_csv(batch(MAX_RECORD_VALUES + 1), gzip=False, max_bytes=8 << 20)
    assert error.value.details == {"record": "record 2", "limit": MAX_RECORD_VALUES}


def test_a_record_of_millions_of_numbers_stops_before_it_is_read_whole():
    import tracemalloc

    body = gzip.compress(b'[{"v": [' + b"0," * 4_000_000 + b"0]}]")  # 8 MB of text in 8 KB
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge):
            as_csv(body, gzip=True, max_bytes=8 << 20 + 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20  # the inflated text (two copies: bytes and str) and 100,000 numbers; 1 GB before


def test_the_limit_counts_each_value_once():
    """An object's number and object values were counted by their own hooks and again as the object's: a record of
    33,000 objects of two fields (99,002 values with the record's own two) was refused as past 100,000 (the diff
    review)."""
    items = b",".join([b'{"sku": "a", "qty": 1}'] * 33_000)
    assert len(rows(b'[{"id": 1, "items": [' + items + b"]}]", max_bytes=8 << 20)) == 2
    with pytest.raises(PayloadTooLarge, match="more than 100,000 values"):
        as_csv(b'[{"id": 1, "items": [' + items + b"," + items + b"]}]", gzip=False, max_bytes=8 << 20)


def test_a_batch_of_more_arrays_than_it_may_hold_is_refused_before_it_is_read():
    """Arrays are counted once their record is read: 8 MiB of nested or empty arrays took the function to 500 MB
    first (the diff review). The batch's '[' characters are counted before anything is read."""
    from spectra.bulk.jsonfiles import MAX_BATCH_ARRAYS

    body = gzip.compress(b'[{"v": ' + b"[" * 2_000_000 + b"]" * 2_000_000 + b"}]")
    with pytest.raises(PayloadTooLarge, match="the batch holds 2,000,001 '\\[' characters") as error:
        as_csv(body, gzip=True, max_bytes=8 << 20)
    assert error.value.details == {"limit": MAX_BATCH_ARRAYS}


@pytest.mark.parametrize(
    "body",
    [
        b'[{"1' + b"x" * 1_000_000 + b'": 0}]',  # one bad key of a megabyte
        b"[{" + b",".join(b'"k %d": 0' % n for n in range(50_000)) + b"}]",  # 50,000 bad keys
        b'[{"a": 0}, {"a": 0, ' + b",".join(b'"x%d": 0' % n for n in range(50_000)) + b"}]",  # 50,000 extra keys
        b'[{"a": "' + b"\\ud800" * 200_000 + b'"}]',  # a run of lone surrogates
    ],
)
def test_an_error_names_a_bounded_part_of_what_it_refuses(body):
    """The message quoted every bad name, extra key or surrogate whole: a few hundred KB of gzip came back as an
    answer past Lambda's 6 MiB, which API Gateway turns into a 502 (the JSON review). It names the first 20, each cut
    to 100 characters, and how many more there are."""
    with pytest.raises(InvalidRequest) as refused:
        as_csv(body, gzip=False, max_bytes=8 << 20)
    assert len(refused.value.message) < 4000, refused.value.message[:300]


def test_a_batch_of_more_values_than_it_may_hold_in_all_is_refused_before_it_is_rewritten(monkeypatch):
    """Records each just under MAX_RECORD_VALUES, 8 MiB of them in 8 KB of gzip, took 6 s of a core to rewrite, past
    the API's 29 s on a Lambda's fraction of one (the JSON review): the batch's values are counted in all, as a
    record's are (here with a limit of 1,000: a record of one field counts 2, its object and its value)."""
    from spectra.bulk import jsonfiles

    assert jsonfiles.MAX_BATCH_VALUES >= 2 * 1_000_000  # a million records of one field each fit
    monkeypatch.setattr(jsonfiles, "MAX_BATCH_VALUES", 1_000)
    record = b'{"a": [' + b"0," * 99 + b"0]}"  # 100 numbers, and the object with its one field
    with pytest.raises(PayloadTooLarge, match="more than 1,000 values in its records \\(by record 10\\)") as error:
        as_csv(b"[" + b",".join([record] * 10) + b"]", gzip=False, max_bytes=1 << 20)
    assert error.value.details == {"record": "record 10", "limit": 1_000}
    assert len(rows(b"\n".join([b'{"a": 0}'] * 500))) == 501
