"""Arrow tables of a result → the bytes each format holds, column by column (no Python object per value).

Values the formats cannot hold as the warehouse returned them are spelled so that nothing is lost and nothing is
confused with NULL:

* **JSON** (inline rows and JSON Lines files): integers as JSON numbers with every digit (an int8 past 2^53 is
  exact in the text; see the README for JavaScript clients), floats as the shortest text that reads back as the
  same float (a ``real`` as the shortest that reads back as the same ``real``: ``0.1``, not ``0.10000000149011612``),
  the special floats as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (strict JSON has no token for
  them, and ``null`` is SQL NULL), decimals as exact strings, dates and timestamps as ISO 8601 strings (timestamptz
  in UTC, ``+00:00``), text with JSON's escapes. The line breaks Python's ``str.splitlines`` also honours (U+0085,
  U+2028, U+2029) are escaped too, so a JSON Lines reader that splits on them still sees one row per line.
* **CSV**: PostgreSQL's COPY spelling: NULL an empty field, an empty string ``""``, the special floats ``NaN``,
  ``Infinity`` and ``-Infinity``, decimals in plain digits (never ``5.0E-7``), booleans ``t`` / ``f``, dates and
  timestamps as the warehouse prints them (``2026-01-02 03:04:05.5+00``, ``0044-03-15 BC``).
* **Parquet** holds NaN and the infinities natively, and a TIME as a time of day in microseconds, as an export's
  UNLOAD writes it (:func:`parquet_times_of_day`).

The JSON encoder builds each column's JSON text with Arrow compute kernels and joins the columns row-wise in one
more kernel; the rows then sit back to back in one Arrow buffer, which is written out as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from decimal import Decimal

#: Characters JSON requires escaped (U+0000..U+001F), plus the ones Python's ``str.splitlines`` breaks lines on.
_MUST_ESCAPE = [chr(code) for code in range(0x20)] + ["\x85", "\u2028", "\u2029"]
_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_ESCAPE_CLASS = "[\x00-\x1f\x85\u2028\u2029]"


def unique_names(names: Iterable[str]) -> list[str]:
    """Distinct names, keeping every name the query gave: a repeat becomes ``<name>_<n>`` with the smallest n
    (from 2) that the query does not use itself and no earlier column took.

    ``SELECT 1 AS a, 2 AS a_2, 3 AS a`` gives ``a, a_2, a_3``; ``SELECT 1, 1`` two ``?column?`` columns, the second
    ``?column?_2``.
    """
    names = list(names)
    taken = set(names)
    seen: set[str] = set()
    tried: dict[str, int] = {}  # per name, the n to try next: every smaller one is taken (taken only grows)
    out = []
    for name in names:
        if name in seen:
            n = tried.get(name, 2)
            while f"{name}_{n}" in taken:
                n += 1
            tried[name] = n + 1
            name = f"{name}_{n}"
            taken.add(name)
        seen.add(name)
        out.append(name)
    return out


# -- JSON -----------------------------------------------------------------------------------------------------------


def json_values(column):
    """One JSON text per value of an Arrow column (``null`` for NULL), as an Arrow string array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = _quoted(_json_escaped(column))
    elif pa.types.is_integer(kind):
        text = pc.cast(column, pa.string())
    elif pa.types.is_boolean(kind):
        text = pc.if_else(column, "true", "false")
    elif pa.types.is_floating(kind):
        # Arrow writes negative zero "-0", which JSON readers take for the integer 0: the sign would be lost
        text = pc.cast(column, pa.string())
        text = pc.if_else(pc.equal(text, "-0"), "-0.0", text)
        text = _special_floats(column, text, nan='"NaN"', inf='"Infinity"', ninf='"-Infinity"')
    elif pa.types.is_timestamp(kind):
        text = _quoted(iso_timestamps(column))
    elif pa.types.is_decimal(kind):
        text = _quoted(decimal_strings(column))  # exact, in plain digits
    elif pa.types.is_date(kind):
        text = _quoted(pc.cast(column, pa.string()))  # ISO, as Arrow casts them
    else:  # not a type results.arrow_type gives; kept as text rather than failing a job
        text = _quoted(_json_escaped(pc.cast(column, pa.string())))
    return pc.fill_null(text, "null")


def json_lines(table) -> list:
    """The table as JSON Lines (one object per row, keys in column order): a list of Arrow buffers to write out."""
    parts: list = []
    for i, (name, column) in enumerate(zip(table.column_names, table.columns, strict=True)):
        parts.append(("{" if i == 0 else ",") + json.dumps(name) + ":")
        parts.append(json_values(column))
    return _row_buffers(table.num_rows, [*parts, "}\n"] if parts else ["{}\n"])


def json_arrays(table) -> bytes:
    """The table's rows as JSON arrays, comma-separated (the inside of the inline ``rows`` array)."""
    parts: list = []
    for i, column in enumerate(table.columns):
        parts.append("[" if i == 0 else ",")
        parts.append(json_values(column))
    buffers = _row_buffers(table.num_rows, [*parts, "],"] if parts else ["[],"])
    return b"".join(bytes(buffer) for buffer in buffers)[:-1]  # less the last row's separator


def _row_buffers(num_rows: int, parts: list) -> list:
    """Join the parts element-wise (one string per row) and return the rows' bytes as Arrow buffers, back to back."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if num_rows == 0:
        return []
    if all(isinstance(part, str) for part in parts):  # no columns: the same text on every row
        return [pa.py_buffer("".join(parts).encode() * num_rows)]
    rows = pc.binary_join_element_wise(*parts, "")
    chunks = rows.chunks if isinstance(rows, pa.ChunkedArray) else [rows]
    return [_values_buffer(chunk) for chunk in chunks if len(chunk)]


def _values_buffer(chunk):
    """The bytes of a string array's values, in order, without copying them out one by one."""
    import pyarrow as pa

    offsets = pa.Array.from_buffers(pa.int32(), len(chunk) + 1, [None, chunk.buffers()[1]], offset=chunk.offset)
    start, end = offsets[0].as_py(), offsets[len(chunk)].as_py()
    return chunk.buffers()[2].slice(start, end - start)


def _quoted(text):
    import pyarrow.compute as pc

    return pc.binary_join_element_wise('"', text, '"', "")


def _json_escaped(text):
    """JSON string contents: backslash and quote always; the control characters only when the column has any."""
    import pyarrow.compute as pc

    text = pc.replace_substring(text, "\\", "\\\\")
    text = pc.replace_substring(text, '"', '\\"')
    if pc.any(pc.match_substring_regex(text, _ESCAPE_CLASS)).as_py():
        for char in _MUST_ESCAPE:
            text = pc.replace_substring(text, char, _SHORT_ESCAPES.get(char, f"\\u{ord(char):04x}"))
    return text


def _special_floats(column, text, *, nan: str, inf: str, ninf: str):
    """``text`` with NaN and the infinities of ``column`` spelled as given (only looked at when there are any)."""
    import pyarrow.compute as pc

    if not _any_special(column):
        return text
    infinite = pc.if_else(pc.greater(column, 0), inf, ninf)
    return pc.if_else(pc.is_nan(column), nan, pc.if_else(pc.is_inf(column), infinite, text))


def _timestamp_text(column):
    """Arrow's text of a timestamp column (a timestamptz's ending in ``Z``), and whether any value has a fraction of a
    second: then every value is written with six digits, else none (a safe cast to seconds, refused by a fraction;
    Arrow's cast to text is an order of magnitude faster than ``strftime``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pc.cast(column.cast(pa.timestamp("s", column.type.tz)), pa.string()), False
    except pa.ArrowInvalid:
        return pc.cast(column, pa.string()), True


def iso_timestamps(column):
    """ISO 8601 text of a timestamp column: ``2026-01-02T03:04:05``, ``.ffffff`` on values with a fraction of a
    second, ``+00:00`` after a timestamptz."""
    import pyarrow.compute as pc

    tz = column.type.tz
    text, fractions = _timestamp_text(column)
    if fractions:  # the date and time parts hold no ".", so this is the fraction
        text = pc.replace_substring(text, ".000000", "")
    # the first space, not the 11th character: a year before 1 or after 9999 is longer ("-0043-03-15 ...")
    text = pc.replace_substring(text, " ", "T", max_replacements=1)
    if tz:  # Arrow writes UTC as a trailing "Z"
        text = pc.utf8_replace_slice(text, start=-1, stop=1 << 30, replacement="+00:00")
    return text


# -- CSV ------------------------------------------------------------------------------------------------------------

# pyarrow's CSV writer quotes every string and no other value, so outside quotes a field is a bare token.
_CSV_TOKEN = re.compile(rb'("(?:[^"]|"")*")|(?<![^,\n])(nan|inf|-inf|-?[0-9]+(?:\.[0-9]+)?E[-+]?[0-9]+)(?![^,\n])')
_PG_FLOATS = {b"nan": b"NaN", b"inf": b"Infinity", b"-inf": b"-Infinity"}


def decimal_strings(column):
    """Decimals as exact text in plain digits, as the warehouse prints them: Arrow's cast writes ``5.0E-7`` for
    0.00000050 and ``0E-8`` for a numeric(18,8) zero (an exponent below -6); PostgreSQL and Redshift never do. Only
    a column holding such a value takes the detour through Python's Decimal."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.cast(column, pa.string())
    if not _any_exponent(text):
        return text
    return pa.array([None if value is None else _plain(value) for value in text.to_pylist()], pa.string())


def _plain(decimal_text: str) -> str:
    return format(Decimal(decimal_text), "f") if "E" in decimal_text else decimal_text


def has_exponent_decimals(table) -> bool:
    """Whether a decimal column holds a value Arrow's CSV writer would spell with an exponent."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return any(pa.types.is_decimal(c.type) and _any_exponent(pc.cast(c, pa.string())) for c in table.columns)


def _any_exponent(decimal_text) -> bool:
    """Whether Arrow's text of a decimal column spells any value with an exponent (``5.0E-7``)."""
    import pyarrow.compute as pc

    return bool(pc.any(pc.match_substring(decimal_text, "E")).as_py())


def postgres_booleans(table):
    """``table`` with its boolean columns as ``t`` / ``f`` text, as the warehouse spells them in CSV (COPY, and an
    export's UNLOAD): pyarrow's writer says ``true`` / ``false``, so the same result read two ways across
    deliveries. NULL stays NULL."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not any(pa.types.is_boolean(column.type) for column in table.columns):
        return table
    columns = [pc.if_else(c, "t", "f") if pa.types.is_boolean(c.type) else c for c in table.columns]
    return pa.table(columns, names=table.column_names)


def postgres_datetimes(table):
    """``table`` with its date and timestamp columns as the warehouse's text (COPY, and an export's UNLOAD):
    ``2026-01-02 03:04:05``, a fraction of a second without its trailing zeros, ``+00`` after a timestamptz, ``BC``
    after a year before 1. pyarrow's writer says ``2026-01-02 03:04:05.000000Z`` and ``-0043-03-15``: written so, the
    same result would read differently delivered s3 or export, and a BC date would not load back. NULL stays NULL."""
    import pyarrow as pa

    if not any(pa.types.is_timestamp(c.type) or pa.types.is_date(c.type) for c in table.columns):
        return table
    columns = [
        _postgres_datetime(c) if pa.types.is_timestamp(c.type) or pa.types.is_date(c.type) else c for c in table.columns
    ]
    return pa.table(columns, names=table.column_names)


def _postgres_datetime(column):
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_timestamp(column.type):
        tz = column.type.tz
        text, fractions = _timestamp_text(column)
        if fractions:  # the fraction's trailing zeros, and its point when none is left
            text = pc.replace_substring_regex(text, r"(\.\d*?)0+(Z?)$", r"\1\2")
            text = pc.replace_substring_regex(text, r"\.(Z?)$", r"\1")
        if tz:  # Arrow writes UTC as a trailing "Z"
            text = pc.binary_join_element_wise(pc.utf8_slice_codeunits(text, 0, -1), pa.scalar("+00"), "")
    else:
        text = pc.cast(column, pa.string())
    if not pc.any(pc.less(pc.year(column), 1)).as_py():
        return text
    # Arrow counts years astronomically (0 is 1 BC, -43 is 44 BC); PostgreSQL writes the era after the value
    return pa.array([None if v is None else _bc(v) for v in text.to_pylist()], pa.string())


def parquet_times_of_day(table, names: frozenset[str]):
    """``table`` with the named columns (the warehouse's TIME, read as its text: ``12:34:56.5``) as Parquet's time of
    day in microseconds, the type an export's UNLOAD gives them, so a result reads the same delivered s3 or export.
    A page holding a value no time of day can hold (Redshift's ``24:00:00``) keeps that column as the warehouse wrote
    it: its rows are all kept, in a part of its own (a Parquet file has one schema)."""
    import pyarrow as pa

    if not names:
        return table
    columns = [
        _time_of_day(column) if name in names and pa.types.is_string(column.type) else column
        for name, column in zip(table.column_names, table.columns, strict=True)
    ]
    return pa.table(columns, names=table.column_names)


def _time_of_day(text):
    import pyarrow as pa
    import pyarrow.compute as pc

    # Arrow reads a time of day only as part of a timestamp, whose date the second cast drops again
    on_epoch = pc.binary_join_element_wise(pa.scalar("1970-01-01 "), text, "")
    try:
        return on_epoch.cast(pa.timestamp("us")).cast(pa.time64("us"))
    except pa.ArrowInvalid:
        return text


def _bc(text: str) -> str:
    year, rest = text[1:].split("-", 1) if text.startswith("-") else text.split("-", 1)
    astronomical = -int(year) if text.startswith("-") else int(year)
    return text if astronomical >= 1 else f"{1 - astronomical:04d}-{rest} BC"


def has_special_floats(table) -> bool:
    import pyarrow as pa

    return any(pa.types.is_floating(column.type) and _any_special(column) for column in table.columns)


def _any_special(column) -> bool:
    """Whether a float column holds NaN or an infinity (NULLs are skipped)."""
    import pyarrow.compute as pc

    return bool(pc.any(pc.invert(pc.is_finite(column))).as_py())


def postgres_floats(csv_text: bytes) -> bytes:
    """pyarrow's ``nan`` / ``inf`` / ``-inf`` in CSV text as PostgreSQL spells them (``NaN``, ``Infinity``,
    ``-Infinity``), and its decimals written with an exponent (``5.0E-7``: a capital E, where floats get a small one)
    in plain digits; quoted strings are matched whole first, so text that merely looks like those is kept."""
    return _CSV_TOKEN.sub(_postgres_token, csv_text)


def _postgres_token(match: re.Match[bytes]) -> bytes:
    quoted, token = match.group(1), match.group(2)
    if quoted:
        return quoted
    return _PG_FLOATS.get(token) or _plain(token.decode()).encode()
