"""A statement's CSV pages (GetStatementResultV2) → Arrow tables typed from the Data API's column metadata.

The pages follow PostgreSQL's COPY CSV convention (RFC 4180 quoting): NULL is an empty unquoted field, an empty
string is ``""``, a value holding the delimiter, a quote, a carriage return or a line feed is quoted. Everything
else is taken as it comes, control characters included. The special floats come as ``NaN``, ``Infinity`` and
``-Infinity`` and are read as such, not as NULL.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
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


#: Redshift's TIME (without time zone). Read as text like any type :func:`arrow_type` does not type: JSON and CSV
#: carry the warehouse's own spelling (``12:34:56.5``); a Parquet file gets a time of day (spectra/results.py).
TIME_OF_DAY_TYPES = frozenset({"time", "time without time zone"})


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
            # Arrow's CSV reader drops a UTF-8 BOM at the start of its input: a page's first value that begins with
            # U+FEFF would lose it, and one that is only U+FEFF would read as NULL. One of ours goes first, for the
            # reader to drop.
            data = codecs.BOM_UTF8 + page.encode()
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
            arrays.append(_cast(column, field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            arrays.append(column)
    return pa.table(arrays, names=schema.names)


def _cast(column, type_):
    import pyarrow as pa

    if pa.types.is_boolean(type_):
        return _bool_from_text(column)
    try:
        return column.cast(type_)
    except pa.ArrowInvalid:
        if pa.types.is_timestamp(type_) or pa.types.is_date32(type_):
            return _times_from_text(column, type_)
        raise


#: PostgreSQL's and Redshift's text of a date or timestamp, years before 1 (``... BC``) and past 9999 included, which
#: Arrow's cast does not read: ``0044-03-15 12:00:00.5+00 BC``.
_TIME_TEXT = re.compile(
    r"(\d{4,})-(\d\d)-(\d\d)(?: (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?)?"
    r"(?:([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?)?( BC)?"
)


def _times_from_text(column, type_):
    """A date or timestamp column whose page holds a value Arrow's cast cannot read, read value by value, so one BC
    date neither costs its neighbours their type nor makes a Parquet part of another schema than the others. A
    year past 9999 and any other text (PostgreSQL's ``infinity``) raise: the column then stays text, as the
    warehouse wrote it."""
    import pyarrow as pa

    values = []
    for text in column.to_pylist():
        match = _TIME_TEXT.fullmatch(text) if text is not None else None
        if text is not None and (match is None or len(match[1]) > 4):
            # a year past 9999 stays text: Arrow writes years past 32767 wrongly (or fails), its microseconds end
            # in 294247 where Redshift's timestamps go on to 294276, and ISO 8601 would want it signed
            raise pa.ArrowInvalid(f"not a date or timestamp of years 9999 BC to 9999: {text[:40]!r}")
        values.append(_epoch_value(match, pa.types.is_date32(type_)) if match else None)
    return pa.array(values, type=pa.int32() if pa.types.is_date32(type_) else pa.int64()).cast(type_)


def _epoch_value(match: re.Match, date: bool) -> int:
    """Days (``date``) or microseconds since 1970-01-01 of a :data:`_TIME_TEXT` match, in the proleptic Gregorian
    calendar with year 0 for 1 BC, as Arrow and ISO 8601 count."""
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m, off_s, bc = match.groups()
    days = _days_from_civil(1 - int(year) if bc else int(year), int(month), int(day))
    if date:
        return days
    seconds = days * 86400 + int(hour or 0) * 3600 + int(minute or 0) * 60 + int(second or 0)
    if sign:
        offset = int(off_h) * 3600 + int(off_m or 0) * 60 + int(off_s or 0)
        seconds -= offset if sign == "+" else -offset
    return seconds * 1_000_000 + int((fraction or "").ljust(6, "0"))


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 (Howard Hinnant's ``days_from_civil``, any year)."""
    year -= month <= 2
    era = year // 400  # floor division: Hinnant's C++ writes (y - 399) / 400 for negative years
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


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
