"""Result page behaviour no test held before (found by mutation testing spectra/result_pages.py): every spelling of a
boolean the reader takes, on a typed page and on one that fell back to text; a boolean column holding something else
keeping its rows as text; a NULL in a one-column result (an empty line) kept as a row; a page past Arrow's default
block size read whole; a first value past the csv module's field limit not costing the first page its rows; a
timestamptz whose offset has seconds; a BC date either side of the leap day; NUMERIC(1) as a decimal."""

from __future__ import annotations

import csv

import pyarrow as pa
import pytest

from spectra.result_pages import PageReader, arrow_type
from spectra.warehouse import Column

pytestmark = pytest.mark.unit

# Days since 1970-01-01 of 1 January 1 BC (year 0, a leap year in the proleptic Gregorian calendar Arrow counts in):
# 1 January 1 AD is day -719162, and year 0 has 366 days.
FIRST_DAY_OF_1_BC = -719162 - 366


def _rows(pages, schema, header=False):
    """Every row of every table the reader yields, with the reader and the tables' column types."""
    reader = PageReader(pages, schema.names, schema, header=header)
    tables = list(reader)
    return [row for table in tables for row in table.to_pylist()], [table.schema.types for table in tables], reader


BOOLS = pa.schema([pa.field("ts", pa.timestamp("us")), pa.field("b", pa.bool_())])
SPELLINGS = [("t", True), ("true", True), ("TRUE", True), ("True", True), ("1", True)]
SPELLINGS += [("f", False), ("false", False), ("FALSE", False), ("False", False), ("0", False), ("", None)]


@pytest.mark.parametrize("odd_page", [False, True], ids=["typed page", "page read as text"])
def test_every_boolean_spelling_reads_as_a_boolean(odd_page):
    """t/true/TRUE/True/1 and f/false/FALSE/False/0 are booleans and an empty field NULL, whether the page reads typed
    or falls back to text because another column holds a value Arrow cannot read (a timestamp of 'infinity'): the
    boolean column keeps its type and its values either way."""
    stamp = "infinity" if odd_page else "2026-03-01 12:00:00"
    page = "".join(f"{stamp},{text}\n" for text, _ in SPELLINGS)
    rows, types, _ = _rows([page], BOOLS)
    assert [row["b"] for row in rows] == [value for _, value in SPELLINGS]
    assert types == [[pa.string() if odd_page else pa.timestamp("us"), pa.bool_()]]


def test_a_boolean_column_with_another_value_keeps_every_row_as_text():
    """A value that is no boolean ('yes') costs its column the type on that page, never a row: the column is the
    warehouse's text, the others keep theirs."""
    schema = pa.schema([pa.field("n", pa.int32()), pa.field("b", pa.bool_())])
    rows, types, _ = _rows(["1,t\n2,yes\n3,\n"], schema)
    assert rows == [{"n": 1, "b": "t"}, {"n": 2, "b": "yes"}, {"n": 3, "b": None}]
    assert types == [[pa.int32(), pa.string()]]


def test_a_first_value_past_the_csv_modules_field_limit_keeps_the_first_page():
    """Whether the first page starts with a header line is guessed with Python's csv module, whose field limit (128
    KiB, or the 16 MiB spectra.bulk.csvfiles sets for the whole process) a SUPER value can pass: such a first record
    is no header, and the page is read whole."""
    big = "x" * (csv.field_size_limit() + 1)
    schema = pa.schema([pa.field("s", pa.string()), pa.field("n", pa.int64())])
    rows, _, reader = _rows([f"{big},1\ns,2\n"], schema, header=None)
    assert rows == [{"s": big, "n": 1}, {"s": "s", "n": 2}]
    assert reader.guessed_header is False


def test_a_timestamptz_whose_offset_has_seconds_is_read_to_the_second():
    """PostgreSQL writes a local mean time offset with its seconds (+00:53:28 for Prague before 1891); Arrow's cast
    does not read it, and the value is read by the service, the offset's seconds included."""
    schema = pa.schema([pa.field("tz", pa.timestamp("us", tz="UTC"))])
    rows, types, _ = _rows(["1900-01-01 00:00:07+00:53:28\n1900-01-01 00:00:07-00:53:28\n"], schema)
    assert types == [[pa.timestamp("us", tz="UTC")]]
    assert [row["tz"].isoformat() for row in rows] == ["1899-12-31T23:06:39+00:00", "1900-01-01T00:53:35+00:00"]


def test_a_bc_date_either_side_of_the_leap_day_counts_it():
    """1 BC is year 0, a leap year: its 28 February, 29 February and 1 March are consecutive days, and its 31
    December is the day before 1 January 1 AD."""
    schema = pa.schema([pa.field("d", pa.date32())])
    page = "0001-01-01 BC\n0001-02-28 BC\n0001-02-29 BC\n0001-03-01 BC\n0001-12-31 BC\n0001-01-01\n"
    [table] = PageReader([page], ["d"], schema, header=False)
    assert table.schema.types == [pa.date32()]
    days = [day - FIRST_DAY_OF_1_BC for day in table.column("d").cast(pa.int32()).to_pylist()]
    assert days == [0, 58, 59, 60, 365, 366]


def test_the_narrowest_numeric_is_a_decimal():
    """NUMERIC(1) and NUMERIC(1, 1) are decimals like any precision from 1 to 38, not text."""
    assert arrow_type(Column("c", "numeric", 1, 0)) == pa.decimal128(1, 0)
    assert arrow_type(Column("c", "decimal", 1, 1)) == pa.decimal128(1, 1)


def test_a_null_in_a_one_column_result_is_a_row():
    """A one-column row holding NULL is an empty line on the page: it is a row of NULL, not nothing, so a result
    never comes back shorter than the query's."""
    schema = pa.schema([pa.field("s", pa.string())])
    rows, _, _ = _rows(["a\n\nb\n", "\n"], schema)
    assert rows == [{"s": "a"}, {"s": None}, {"s": "b"}, {"s": None}]


def test_a_page_past_arrows_block_size_is_read_whole():
    """Arrow's CSV reader reads in blocks of 1 MiB by default: a quoted CRLF whose CR ends one block lost its LF, and a
    value longer than two blocks failed the page. A page is read in one block, so both come back as they were."""
    schema = pa.schema([pa.field("s", pa.string()), pa.field("n", pa.int64())])
    # the CR at the block's last byte: the reader's input is a BOM (3 bytes), the quote, then the value
    at_boundary = "a" * ((1 << 20) - 5) + "\r\nb"
    longer = ("x" * 38 + "\r\n") * (3 << 20 >> 5)
    for value in (at_boundary, longer):
        rows, types, _ = _rows([f'"{value}",1\nz,2\n'], schema)
        assert rows == [{"s": value, "n": 1}, {"s": "z", "n": 2}]
        assert types == [[pa.string(), pa.int64()]]
