"""Result encoding behaviour no test held before (found by mutation testing spectra/result_encoding.py): a backslash
in text survives every JSON output, the year 1 AD stays AD in CSV beside a BC date, a column of a type the encoder
has no case for is still escaped JSON text, a table of no columns gives one JSON row per row, and one of no rows
gives no bytes."""

from __future__ import annotations

import csv
import gzip
import io

import pyarrow as pa
import pytest

from events import Delivery, ResultFormat
from spectra.result_encoding import json_arrays, json_lines, json_values
from spectra.results import inline_rows
from spectra.warehouse import Column
from tests.unit.test_results import BUCKET, NUMBERED, decoded, write

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("value", ["C:\\new\\table", "\\", '\\"', "\\u0041", "ends in \\"])
def test_a_backslash_in_text_survives_inline_rows_and_json_lines(value):
    """A backslash is escaped in JSON text: written bare, ``C:\\new`` would read back with a line break in it, ``\\"``
    would end the string early, and ``\\u0041`` would read back as ``A``."""
    quoted = '"' + value.replace('"', '""') + '"'
    page = f"1,{quoted}\n"
    inline, _, _ = write([page], columns=NUMBERED, fmt=ResultFormat.JSON, delivery=Delivery.INLINE)
    assert inline_rows(inline) == [[1, value]]
    lines, s3, _ = write([page], columns=NUMBERED, fmt=ResultFormat.JSONL)
    assert decoded(s3, lines.files[0].key, ResultFormat.JSONL, NUMBERED) == [[1, value]]


def test_the_year_1_ad_stays_ad_in_csv_beside_a_bc_value():
    """A column holding a BC value is spelled value by value with its era; the year 1 AD (the first year after 1 BC,
    with no year 0 between them) keeps its own spelling, not ``0000-... BC``."""
    columns = [Column("d", "date"), Column("ts", "timestamp")]
    page = "0001-03-15,0001-01-01 00:00:00\n0001-03-15 BC,0001-12-31 23:59:59 BC\n0044-03-15 BC,2026-03-01 12:00:00\n"
    result, s3, _ = write([page], columns=columns, fmt=ResultFormat.CSV)
    text = gzip.decompress(s3.body(BUCKET, result.files[0].key)).decode()
    assert list(csv.reader(io.StringIO(text)))[1:] == [
        ["0001-03-15", "0001-01-01 00:00:00"],
        ["0001-03-15 BC", "0001-12-31 23:59:59 BC"],
        ["0044-03-15 BC", "2026-03-01 12:00:00"],
    ]


def test_a_table_of_no_columns_is_one_empty_object_or_array_per_row():
    """The JSON encoders take a table without columns (the guard refuses a SELECT of none, but the encoders do not
    rely on it): every row is ``{}`` in JSON Lines and ``[]`` in inline rows, none dropped and nothing raised."""
    table = pa.table({"a": [1, 2, 3]}).select([])
    assert b"".join(bytes(buffer) for buffer in json_lines(table)) == b"{}\n{}\n{}\n"
    assert json_arrays(table) == b"[],[],[]"


def test_a_table_of_no_rows_is_no_bytes():
    """A page of no rows adds nothing to a JSON Lines file or to the inline rows (not even a separator)."""
    table = pa.table({"n": pa.array([], pa.int64()), "s": pa.array([], pa.string())})
    assert list(json_lines(table)) == []
    assert json_arrays(table) == b""


def test_a_column_of_a_type_without_a_case_of_its_own_is_escaped_json_text():
    """A column of a type the encoder does not name (here dictionary-encoded text) is its text, quoted and escaped
    like any string, rather than failing the job or writing a quote or a line break bare."""
    column = pa.array(['say "hi"\n', None, "C:\\x"]).dictionary_encode()
    assert json_values(column).to_pylist() == ['"say \\"hi\\"\\n"', "null", '"C:\\\\x"']
