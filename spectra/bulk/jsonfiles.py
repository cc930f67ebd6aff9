"""JSON batches of a ``contentType: "JSON"`` ingest job, stored as the CSV every bulk load reads.

A batch is a JSON array of objects (``[{"email": "...", "name": "..."}, ...]``) or JSON Lines (one object a line), in
UTF-8, gzip accepted. It is checked and rewritten when it is uploaded (the API holds the whole request anyway: 4 MiB
at most), so a batch the load could not read is a 400 naming the record, never a job that fails later, and the load,
its accounting and its result files are the CSV job's, unchanged (result files are CSV, as Bulk 2.0's are).

The CSV it becomes: a header of the records' keys, sorted as the warehouse folds names (so that batches whose records
give them in other orders, or cases, agree), then one line a record. Every record of a batch has the same keys (a load
writes one set of columns: a key left out of one record would have written NULL over that column in an update, where
Bulk API 1.0's JSON leaves it alone), and the job's batches must agree, as a CSV job's headers must (the load says
which differs). The keys are checked as a CSV header's names are when its job loads (column names, none twice once
folded, none of the result files' own ``sf__`` columns), here, when the batch is uploaded. Values:

- a string as it is, quoted (``""`` for an empty one, which a VARCHAR column loads as '');
- a number as its JSON text, untouched (no float rounding: ``0.1``, ``12345678901234567890``);
- ``true`` / ``false`` as those words; an object or array as its compact JSON text (a SUPER or VARCHAR column);
- ``null`` as an unquoted ``\\N``, COPY's default NULL AS: NULL in any column, where an empty field would load '' into
  a VARCHAR. A string that is exactly ``\\N`` is sent quoted; COPY matches NULL AS on the field's text, so Redshift may
  read it as NULL too (the emulator does not): avoid that one string. In an update, upsert or delete, the external
  id's null is an empty field, the missing id of a CSV job (failed "missing external id"); an insert stages nothing on
  its id, so there it is NULL like any other (refused by a NOT NULL column: the record fails, listed in
  failedResults).

Refused with a 400 that says where: a body that is not UTF-8 JSON (a UTF-8 BOM is skipped), a NaN or Infinity, a key
given twice in one object, a lone surrogate escape, nesting past the parser's depth, a record that is not an object,
a record whose keys differ from the first's or are no column names, no records, and a gzip body (every member of it)
that inflates past ``max_bytes``. A NUL in a string is the load's to refuse: its record fails, listed in failedResults.
"""

from __future__ import annotations

import io
import json
import re
import zlib
from collections.abc import Iterator
from typing import Any

from spectra.bulk.csvfiles import NULL, BulkInputError, header_columns, shown
from spectra.errors import BadGzip, InvalidRequest, PayloadTooLarge
from spectra.sql_layout import fold_name
from spectra.strict_json import refuse_constant, unique_keys

#: Media types a JSON batch may be sent as (and application/octet-stream, which the job's contentType decides)
JSON_MEDIA_TYPES = ("application/json", "application/x-ndjson", "application/jsonl", "application/x-jsonlines")
_NULL = NULL.encode()  # the marker the result files read back as NULL (spectra.bulk.csvfiles)
#: Objects and arrays one in another a value may hold (a SUPER value's, say); deeper is refused
MAX_NESTING = 100
#: Values a record may hold in its objects and arrays: the rewrite holds each as a Python object (a number written in 2
#: bytes takes about 100), so one record of 4 million numbers (8 KB gzipped) would take a 512 MB function to 1 GB.
#: Numbers, objects and objects' values are counted as they are read, which stops such a record early; arrays' other
#: items once it has been read.
MAX_RECORD_VALUES = 100_000
#: '[' characters a batch may hold: its arrays take memory before their record is counted (each about 100 bytes)
MAX_BATCH_ARRAYS = 1_000_000
#: Values a batch may hold in all, counted as a record's are: the rewrite's time grows with them, and 8 MiB of
#: records each just under MAX_RECORD_VALUES (8 KB gzipped) take 6 s of a core, past the API's 29 s on a Lambda's
#: fraction of one. A million records of one field each (about 2 million) still fit.
MAX_BATCH_VALUES = 4_000_000


class _Number(str):
    """A JSON number's text, kept as written."""


def as_csv(body: bytes, *, gzip: bool, max_bytes: int, key: str | None = None) -> bytes:
    """The batch's records as CSV (module docstring), or a 400 saying what was wrong and where. ``key``: the
    external id column of a job that stages rows on it (update, upsert, delete), whose null is written as an empty
    field, the missing id a CSV job's empty field is (COPY's ``\\N`` there would read back in the result files as an
    id). The records are read and written one at a time, so no more than the text and the CSV are held, and a record
    holds at most :data:`MAX_RECORD_VALUES` values."""
    text = _text(_inflated(body, max_bytes) if gzip else body)
    if (brackets := text.count("[")) > MAX_BATCH_ARRAYS:
        # arrays are counted only once their record is read (no decoder hook sees them): 8 MiB of nested or empty
        # arrays would take the function to 500 MB before the count refused them
        raise PayloadTooLarge(
            f"the batch holds {brackets:,} '[' characters (arrays, or brackets in strings); at most"
            f" {MAX_BATCH_ARRAYS:,}: send it in smaller batches",
            details={"limit": MAX_BATCH_ARRAYS},
        )
    out = io.BytesIO()
    keys: list[str] = []
    id_keys: set[str] = set()
    try:
        for where, record in _Reader().records(text):
            if not keys:
                keys = _header(where, record)
                id_keys = {name for name in keys if fold_name(name.strip()) == key}
                out.write(b",".join(_field(name) for name in keys) + b"\n")
            elif len(record) != len(keys) or set(record) != set(keys):
                raise _differs(where, record, keys)
            out.write(b",".join(_value(record[name], key=name in id_keys) for name in keys) + b"\n")
    except UnicodeEncodeError as exc:  # a lone surrogate escape ("\\ud800"): no UTF-8 text holds it
        run = exc.object[exc.start : exc.end]
        more = f" ({len(run)} in a row)" if len(run) > 1 else ""
        raise InvalidRequest(f"the batch holds {run[0]!r}{more}, which is not text") from None
    except RecursionError:
        raise InvalidRequest("a value is nested too deep") from None
    if not keys:
        raise InvalidRequest("the batch has no records: send a JSON array of objects, or one object a line")
    return out.getvalue()


def _header(where: str, record: dict[str, Any]) -> list[str]:
    """The first record's keys as the batch's columns: sorted as the warehouse folds them (so that batches whose
    records name them in other orders, or cases, agree), and checked as a CSV header's names are when it loads."""
    if not record:
        raise InvalidRequest(f"{where} has no fields")
    keys = list(record)
    try:
        columns = header_columns(where, keys, delimiter=None)  # folded, and stripped as the load strips them
    except BulkInputError as exc:
        raise InvalidRequest(str(exc), details={"record": where}) from None
    return [name for _, name in sorted(zip(columns, keys, strict=True))]


def _differs(where: str, record: dict[str, Any], keys: list[str]) -> InvalidRequest:
    extra, missing = sorted(set(record) - set(keys)), sorted(set(keys) - set(record))
    said = "; ".join(part for part in (f"not in the first: {shown(extra)}" if extra else "", _missing(missing)) if part)
    return InvalidRequest(
        f"{where} has other fields than the first record ({said}): every record of a batch has the same fields, as"
        " a CSV file's rows have its header's columns",
        details={"record": where},
    )


def _missing(missing: list[str]) -> str:
    return f"missing: {shown(missing)}" if missing else ""


def _inflated(body: bytes, max_bytes: int) -> bytes:
    """Every gzip member of the body (a CSV job's COPY reads them all), inflated to ``max_bytes`` at most."""
    parts: list[bytes] = []
    size, rest = 0, body
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing
        try:
            part = inflater.decompress(rest, max_bytes + 1 - size)
        except zlib.error as exc:
            raise BadGzip(f"Content-Encoding is gzip but the body is not gzip data ({exc})") from None
        size += len(part)
        if size > max_bytes or inflater.unconsumed_tail:
            raise PayloadTooLarge(
                f"the batch inflates past {max_bytes} bytes: send it in smaller batches", details={"limit": max_bytes}
            )
        if not inflater.eof:
            raise BadGzip("the gzip data ends before its end: the batch was cut short")
        parts.append(part)
        rest = inflater.unused_data
    return b"".join(parts)


def _text(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"the batch is not UTF-8 (byte {exc.start}): JSON is sent in UTF-8") from None
    return text.removeprefix("\ufeff")


def _too_many(where: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{where} holds more than {MAX_RECORD_VALUES:,} values in its objects and arrays, more than a JSON batch's"
        " rewrite holds: send such values in a CSV batch (a field of JSON text), or split them",
        details={"record": where, "limit": MAX_RECORD_VALUES},
    )


def _count_items(value: Any, where: str) -> int:
    """Refuse a record whose objects and arrays hold more than :data:`MAX_RECORD_VALUES` values in all (the decoder's
    hooks see no array, so an array's strings, literals and arrays are counted here): before its compact text, a
    second copy of each, is made."""
    items, stack = 0, [value]
    while stack:
        inner = stack.pop()
        items += len(inner)
        if items > MAX_RECORD_VALUES:
            raise _too_many(where)
        stack.extend(v for v in (inner.values() if isinstance(inner, dict) else inner) if isinstance(v, dict | list))
    return items


_SPACE = re.compile(r"[ \t\n\r]*")


class _Reader:
    """One batch's records, read one at a time, each counted as it is read (:data:`MAX_RECORD_VALUES`; a reader of
    its own per batch: the local stack runs requests side by side in one process)."""

    def __init__(self) -> None:
        self._left = 0  # set for each record (_decode)
        self._batch_left = MAX_BATCH_VALUES
        self._where = ""
        self._decoder = json.JSONDecoder(
            parse_float=self._number,
            parse_int=self._number,
            parse_constant=refuse_constant,
            object_pairs_hook=self._fields,
        )

    def _number(self, text: str) -> _Number:
        self._left -= 1
        if self._left < 0:
            raise _too_many(self._where)
        return _Number(text)

    def _fields(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # the object itself, and its values but numbers and objects, counted as they were read (counted twice, a
        # record of 25,000 objects of two fields would be refused as past 100,000)
        left = self._left - 1 - len(pairs)
        for _, value in pairs:
            if value.__class__ is _Number or value.__class__ is dict:
                left += 1
        self._left = left
        if left < 0:
            raise _too_many(self._where)
        return unique_keys(pairs)

    def records(self, text: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each record with where it is (``record 3`` of an array, ``line 3`` of JSON Lines), parsed one at a time."""
        start = _SPACE.match(text).end()
        if text.startswith("[", start):
            yield from self._array(text, start + 1)
            return
        for n, line in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 may stand in a JSON string
            if line.strip():
                yield _object(self._parse(line, f"line {n}"), f"line {n}")

    def _array(self, text: str, at: int) -> Iterator[tuple[str, dict[str, Any]]]:
        at = _SPACE.match(text, at).end()
        if text.startswith("]", at):
            if text[at + 1 :].strip():
                raise InvalidRequest("the batch is not JSON: something follows its array")
            return
        n = 0
        while True:
            n += 1
            where = f"record {n}"
            value, at = self._decode(text, at, where)
            yield _object(value, where)
            at = _SPACE.match(text, at).end()
            if text.startswith(",", at):
                at = _SPACE.match(text, at + 1).end()
                continue
            if text.startswith("]", at) and not text[at + 1 :].strip():
                return
            raise InvalidRequest(f"the batch is not JSON after {where}: a comma or the array's end was expected")

    def _parse(self, text: str, where: str) -> Any:
        value, end = self._decode(text, _SPACE.match(text).end(), where)
        if text[end:].strip():
            raise InvalidRequest(f"{where} is not JSON: something follows its value")
        return value

    def _decode(self, text: str, at: int, where: str) -> tuple[Any, int]:
        self._left, self._where = MAX_RECORD_VALUES + 1, where  # the record is an object the limit does not count
        try:
            value, end = self._decoder.raw_decode(text, at)
            counted = MAX_RECORD_VALUES + 1 - self._left
            if end - at > MAX_RECORD_VALUES:  # shorter, it cannot hold that many: each item takes a character at least
                counted = max(counted, _count_items(value, where))
            self._batch_left -= counted
            if self._batch_left < 0:
                raise PayloadTooLarge(
                    f"the batch holds more than {MAX_BATCH_VALUES:,} values in its records (by {where}): send it in"
                    " smaller batches",
                    details={"record": where, "limit": MAX_BATCH_VALUES},
                )
            return value, end
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{where} is not JSON ({exc.msg})") from None
        except RecursionError:
            raise InvalidRequest(f"{where} is nested too deep") from None
        except ValueError as exc:  # spectra.strict_json's refusals: a key twice, NaN or Infinity
            raise InvalidRequest(f"{where}: {exc}") from None


def _object(record: Any, where: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(record, dict):
        raise InvalidRequest(f"{where} is not a JSON object: each record is an object of field names and values")
    return where, record


def _field(text: str) -> bytes:
    return b'"' + text.replace('"', '""').encode() + b'"'


def _value(value: Any, *, key: bool = False) -> bytes:
    if value is None:
        return b"" if key else _NULL
    if isinstance(value, _Number):
        return str.__str__(value).encode()
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, str):
        return _field(value)
    return _field(_compact(value))


def _compact(value: Any, depth: int = 1) -> str:
    """An object or array as compact JSON text, its numbers as they were written; nested at most
    :data:`MAX_NESTING` deep (deeper would be a RecursionError, or not, by the process's stack)."""
    if isinstance(value, dict | list) and depth > MAX_NESTING:
        raise InvalidRequest(f"a value is nested too deep: at most {MAX_NESTING} objects or arrays one in another")
    if isinstance(value, dict):
        return "{" + ",".join(f"{_compact(k, depth)}:{_compact(v, depth + 1)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_compact(inner, depth + 1) for inner in value) + "]"
    if isinstance(value, _Number):
        return str.__str__(value)
    return json.dumps(value, ensure_ascii=False)  # a string, true, false or null
