"""Reading the Data API's CSV pages into Arrow tables (spectra.result_pages)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from spectra.result_pages import PageReader

pytestmark = pytest.mark.unit

SCHEMA = pa.schema([pa.field("t", pa.string()), pa.field("n", pa.int64())])


def test_a_value_starting_with_u_feff_keeps_it_on_every_page():
    """Arrow's CSV reader drops a UTF-8 BOM at the start of its input, which on a page is the first row's first value:
    it lost its U+FEFF, and a value of U+FEFF alone read as NULL (found by the fidelity review)."""
    pages = ["\ufeffabc,1\n\ufeffdef,2\n", "\ufeff,3\nghi,4\n", ",5\n"]
    rows = [row for table in PageReader(pages, ["t", "n"], SCHEMA, header=False) for row in table.to_pylist()]
    assert rows == [
        {"t": "\ufeffabc", "n": 1},
        {"t": "\ufeffdef", "n": 2},
        {"t": "\ufeff", "n": 3},
        {"t": "ghi", "n": 4},
        {"t": None, "n": 5},  # an empty unquoted field is NULL, as before
    ]
