"""A statement's CSV pages (GetStatementResultV2) → Arrow tables typed from the Data API's column metadata.

The pages follow PostgreSQL's COPY CSV convention (RFC 4180 quoting): NULL is an empty unquoted field, an empty
string is ``""``, a value holding the delimiter, a quote, a carriage return or a line feed is quoted. Everything
else is taken as it comes, control characters included. The special floats come as ``NaN``, ``Infinity`` and
``-Infinity`` and are read as such, not as NULL.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from spectra.warehouse import Column


def arrow_type(column: Column):
    """The Arrow type for a Redshift column type; anything unusual stays text rather than failing a job."""
    import pyarrow as pa

    name = column.type_name.lower()
    if name in {"int2", "smallint"}:
        return pa.int16()
    if name in {"int4", "int", "integer", "serial"}:
        return pa.int32()
    if name in {"int8", "bigint", "bigserial"}:
        return pa.int64()
    if name in {"float4", "real"}:
        return pa.float32()
    if name in {"float8", "float", "double precision"}:
        return pa.float64()
    if name in {"bool", "boolean"}:
        return pa.bool_()
    if name in {"numeric", "decimal"} and column.precision and 0 < column.precision <= 38:
        return pa.decimal128(column.precision, column.scale or 0)
    if name == "date":
        return pa.date32()
    if name in {"timestamp", "timestamp without time zone"}:
        return pa.timestamp("us")
    if name in {"timestamptz", "timestamp with time zone"}:
        return pa.timestamp("us", tz="UTC")
    return pa.string()


class PageReader:
    """Arrow tables, one per CSV page. ``header``: whether the first page starts with a header line; None takes a
    first record equal to the column names for one, and says so in :attr:`guessed_header` (the caller can then
    count the rows against the statement's own count: see :mod:`spectra.lifecycle`)."""

    def __init__(self, pages: Iterable[str], sent_names: list[str], schema, header: bool | None) -> None:
        self._pages = pages
        self._sent_names = sent_names
        self._schema = schema
        self._header = header
        self.guessed_header = False

    def __iter__(self) -> Iterator:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        names = self._schema.names
        common = dict(strings_can_be_null=True, quoted_strings_can_be_null=False, null_values=[""])
        typed = pacsv.ConvertOptions(column_types=self._schema, true_values=_TRUE, false_values=_FALSE, **common)
        text = pacsv.ConvertOptions(column_types=pa.schema([pa.field(n, pa.string()) for n in names]), **common)
        first = True
        for page in self._pages:
            if first:
                first = False
                page = self._without_header(page)
            if not page:
                continue
            data = page.encode()
            options = dict(
                read_options=pacsv.ReadOptions(column_names=names, block_size=max(1 << 20, len(data) + 1)),
                # an empty line is a row of one NULL, not nothing
                parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            )
            try:
                table = pacsv.read_csv(io.BytesIO(data), convert_options=typed, **options)
            except pa.ArrowInvalid:
                # A value the typed parse cannot read (an exotic timestamp, say): read the page as text and cast
                # column by column, so one odd value costs that column its type, never the job its rows.
                table = _cast_or_text(pacsv.read_csv(io.BytesIO(data), convert_options=text, **options), self._schema)
            yield table

    def _without_header(self, page: str) -> str:
        if self._header is False:
            return page
        record, rest = _first_record(page)
        if self._header or (record is not None and record == self._sent_names):
            self.guessed_header = self._header is None
            return rest
        return page


def _first_record(page: str) -> tuple[list[str] | None, str]:
    """The page's first CSV record and the text after it (quoted line breaks, CR alone included, stay inside the
    record). None when the first record is not readable as CSV: then it is no header line."""
    consumed = 0

    def lines() -> Iterator[str]:
        nonlocal consumed
        for line in io.StringIO(page, newline=""):  # keeps each line's own ending: \n, \r\n or \r
            consumed += len(line)
            yield line

    try:
        record = next(csv.reader(lines()), None)
    except csv.Error:  # a field past csv's size limit, say: a header line never is
        return None, page
    return record, page[consumed:]


def _cast_or_text(table, schema):
    """Cast each column to its type where possible; the rest stays text, so one odd value never fails a job."""
    import pyarrow as pa

    arrays = []
    for column, field in zip(table.columns, schema, strict=True):
        try:
            arrays.append(_bool_from_text(column) if pa.types.is_boolean(field.type) else column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            arrays.append(column)
    return pa.table(arrays, names=schema.names)


_TRUE = ["t", "true", "TRUE", "True", "1"]
_FALSE = ["f", "false", "FALSE", "False", "0"]


def _bool_from_text(column):
    """Booleans as the CSV reader reads them (Arrow's string cast knows only "true"/"false")."""
    import pyarrow as pa
    import pyarrow.compute as pc

    truth = pc.is_in(column, value_set=pa.array(_TRUE))
    known = pc.or_(truth, pc.is_in(column, value_set=pa.array(_FALSE)))
    if not pc.all(pc.or_(known, pc.is_null(column))).as_py():
        raise pa.ArrowInvalid("not a boolean")
    return pc.if_else(pc.is_null(column), pa.scalar(None, pa.bool_()), truth)
