"""What an UNLOAD leaves behind: its verbose manifest (``<prefix>manifest``), read into the parts and the columns.

Bulk query jobs (spectra/bulk) and query jobs delivered by ``export`` (spectra/delivery.py) read it alike. The
statement itself is :func:`spectra.bulk.sql.unload_statement`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The manifest's type names (Redshift spells them out) → the Data API's ``typeName`` our results report.
_DATA_API_TYPES = {
    "smallint": "int2",
    "integer": "int4",
    "bigint": "int8",
    "real": "float4",
    "double precision": "float8",
    "boolean": "bool",
    "character": "bpchar",
    "character varying": "varchar",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
}


@dataclass(frozen=True)
class UnloadedFiles:
    #: (key in the bucket, records, bytes) per part, in order
    files: list[tuple[str, int, int]]
    #: (name as the query gave it, Data API type name) per column
    columns: list[tuple[str, str]]


def read_unload_manifest(document: dict[str, Any], bucket: str, *, header: bool) -> UnloadedFiles:
    """The parts (keys in ``bucket``) and columns of an UNLOAD's ``MANIFEST VERBOSE``. ``header``: the parts start
    with a header line (CSV with ``HEADER``), which Redshift counts in each part's ``record_count`` ("If the HEADER
    option is specified, the row count includes the header line", UNLOAD's reference): it is left out here."""
    bucket_prefix = f"s3://{bucket}/"
    files = [
        (
            entry["url"].removeprefix(bucket_prefix),
            max(0, int(entry.get("meta", {}).get("record_count", 0)) - int(header)),
            int(entry.get("meta", {}).get("content_length", 0)),
        )
        for entry in document.get("entries", [])
    ]
    columns = [
        (element["name"], _type_name(element.get("type", {})))
        for element in document.get("schema", {}).get("elements", [])
    ]
    return UnloadedFiles(files=files, columns=columns)


def _type_name(kind: dict[str, Any]) -> str:
    base = str(kind.get("base", "varchar"))
    return _DATA_API_TYPES.get(base, base)
