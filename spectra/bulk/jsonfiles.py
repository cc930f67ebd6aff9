"""JSON batches of a ``contentType: "JSON"`` ingest job, stored as the CSV every bulk load reads.

A batch is a JSON array of objects (``[{"email": "...", "name": "..."}, ...]``) or JSON Lines (one object a line), in
UTF-8, gzip accepted. It is checked and rewritten when it is uploaded (the API holds the whole request anyway: 4 MiB
at most), so a batch the load could not read is a 400 naming the record, never a job that fails later, and the load,
its accounting and its result files are the CSV job's, unchanged (result files are CSV, as Bulk 2.0's are).

The CSV it becomes: a header of the records' keys, sorted (so batches whose records give them in other orders agree),
then one line a record. Every record of a batch has the same keys (a load writes one set of columns: a key left out
of one record would have written NULL over that column in an update, where Bulk API 1.0's JSON leaves it alone), and
the job's batches must agree, as a CSV job's headers must (the load says which differs). Values:

- a string as it is, quoted (``""`` for an empty one, which a VARCHAR column loads as '');
- a number as its JSON text, untouched (no float rounding: ``0.1``, ``12345678901234567890``);
- ``true`` / ``false`` as those words; an object or array as its compact JSON text (a SUPER or VARCHAR column);
- ``null`` as an unquoted ``\\N``, COPY's default NULL AS: NULL in any column, where an empty field would load '' into
  a VARCHAR. A string that is exactly ``\\N`` is sent quoted; COPY matches NULL AS on the field's text, so Redshift may
  read it as NULL too (the emulator does not): avoid that one string.

Refused with a 400 that says where: a body that is not UTF-8 JSON (a UTF-8 BOM is skipped), a NaN or Infinity, a key
given twice in one object, a record that is not an object, a record whose keys differ from the first's, no records,
and a gzip body that inflates past ``max_bytes``.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Iterator
from typing import Any

from spectra.errors import InvalidRequest, PayloadTooLarge

#: Media types a JSON batch may be sent as (and application/octet-stream, which the job's contentType decides)
JSON_MEDIA_TYPES = ("application/json", "application/x-ndjson", "application/jsonl", "application/x-jsonlines")
_NULL = b"\\N"


class _Number(str):
    """A JSON number's text, kept as written."""


def as_csv(body: bytes, *, gzip: bool, max_bytes: int) -> bytes:
    """The batch's records as CSV (module docstring), or a 400 saying what was wrong and where."""
    text = _text(_inflated(body, max_bytes) if gzip else body)
    records = list(_records(text))
    if not records:
        raise InvalidRequest("the batch has no records: send a JSON array of objects, or one object a line")
    keys = sorted(records[0][1])  # one order for every batch of the job, whatever order each record gives
    if not keys:
        raise InvalidRequest(f"{records[0][0]} has no fields")
    out = io.BytesIO()
    out.write(b",".join(_field(key) for key in keys) + b"\n")
    for where, record in records:
        if len(record) != len(keys) or set(record) != set(keys):
            extra, missing = sorted(set(record) - set(keys)), sorted(set(keys) - set(record))
            said = "; ".join(
                part for part in (f"not in the first: {', '.join(extra)}" if extra else "", _missing(missing)) if part
            )
            raise InvalidRequest(
                f"{where} has other fields than the first record ({said}): every record of a batch has the same"
                " fields, as a CSV file's rows have its header's columns",
                details={"record": where},
            )
        out.write(b",".join(_value(record[key]) for key in keys) + b"\n")
    return out.getvalue()


def _missing(missing: list[str]) -> str:
    return f"missing: {', '.join(missing)}" if missing else ""


def _inflated(body: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise InvalidRequest(f"Content-Encoding is gzip but the body is not gzip data ({exc})") from None
    if len(data) > max_bytes or inflater.unconsumed_tail:
        raise PayloadTooLarge(
            f"the batch inflates past {max_bytes} bytes: send it in smaller batches", details={"limit": max_bytes}
        )
    if not inflater.eof:
        raise InvalidRequest("the gzip data ends before its end: the batch was cut short")
    return data


def _text(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"the batch is not UTF-8 (byte {exc.start}): JSON is sent in UTF-8") from None
    return text.removeprefix("\ufeff")


def _records(text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each record with where it is (``record 3`` of an array, ``line 3`` of JSON Lines), as parsed."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        document = _parse(text, "the batch")
        if not isinstance(document, list):
            raise InvalidRequest("the batch is not a JSON array of objects")
        for n, record in enumerate(document, 1):
            yield _object(record, f"record {n}")
        return
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 may stand in a JSON string
        if line.strip():
            yield _object(_parse(line, f"line {n}"), f"line {n}")


def _parse(text: str, where: str) -> Any:
    try:
        return json.loads(
            text,
            parse_float=_Number,
            parse_int=_Number,
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_keys,
        )
    except _Refused as exc:
        raise InvalidRequest(f"{where}: {exc}") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidRequest(f"{where} is not JSON ({exc})") from None


class _Refused(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON: send a number, or null")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _Refused(f"the key {twice!r} is given twice in one object")
    return record


def _object(record: Any, where: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(record, dict):
        raise InvalidRequest(f"{where} is not a JSON object: each record is an object of field names and values")
    return where, record


def _field(text: str) -> bytes:
    return b'"' + text.replace('"', '""').encode() + b'"'


def _value(value: Any) -> bytes:
    if value is None:
        return _NULL
    if isinstance(value, _Number):
        return str.__str__(value).encode()
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, str):
        return _field(value)
    return _field(_compact(value))


def _compact(value: Any) -> str:
    """An object or array as compact JSON text, its numbers as they were written."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{_compact(key)}:{_compact(inner)}" for key, inner in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_compact(inner) for inner in value) + "]"
    if isinstance(value, _Number):
        return str.__str__(value)
    return json.dumps(value, ensure_ascii=False)  # a string, true, false or null
