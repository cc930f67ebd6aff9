"""UNLOAD manifest reading behaviour no test held before (found by mutation testing spectra/unload.py): each part's key
in the bucket, its records (less the header line a CSV with HEADER counts in each part, never below none) and bytes,
missing counts read as none, and each column's name with the Data API's type name for Redshift's spelled-out one."""

from __future__ import annotations

import pytest

from spectra.unload import UnloadedFiles, read_unload_manifest

pytestmark = pytest.mark.unit


def _manifest(*entries, elements=()):
    return {"entries": list(entries), "schema": {"elements": list(elements)}}


def test_each_part_is_its_key_in_the_bucket_its_records_and_bytes_in_order():
    """s3://bucket/ is taken off each url; record_count and content_length are read as numbers."""
    document = _manifest(
        {"url": "s3://results/exports/j_1/0000_part_00", "meta": {"record_count": 3, "content_length": 120}},
        {"url": "s3://results/exports/j_1/0001_part_00", "meta": {"record_count": "5", "content_length": "77"}},
    )
    files = read_unload_manifest(document, "results", header=False).files
    assert files == [("exports/j_1/0000_part_00", 3, 120), ("exports/j_1/0001_part_00", 5, 77)]


def test_a_part_in_another_bucket_keeps_its_url():
    """Only this bucket's s3:// prefix is taken off: another bucket's url, or a longer bucket's, stays whole."""
    document = _manifest(
        {"url": "s3://other/x/0000_part_00", "meta": {"record_count": 1, "content_length": 2}},
        {"url": "s3://resultsx/y/0000_part_00", "meta": {"record_count": 1, "content_length": 2}},
    )
    files = read_unload_manifest(document, "results", header=False).files
    assert [key for key, _, _ in files] == ["s3://other/x/0000_part_00", "s3://resultsx/y/0000_part_00"]


def test_with_a_header_each_part_counts_one_record_fewer_and_never_below_none():
    """HEADER's line is in each part's record_count: 4 reads 3, 1 (the header alone) reads 0, and 0 stays 0."""
    document = _manifest(
        {"url": "s3://b/p0", "meta": {"record_count": 4, "content_length": 40}},
        {"url": "s3://b/p1", "meta": {"record_count": 1, "content_length": 10}},
        {"url": "s3://b/p2", "meta": {"record_count": 0, "content_length": 0}},
    )
    assert [records for _, records, _ in read_unload_manifest(document, "b", header=True).files] == [3, 0, 0]
    assert [records for _, records, _ in read_unload_manifest(document, "b", header=False).files] == [4, 1, 0]


def test_a_part_without_counts_has_no_records_and_no_bytes():
    """An entry without meta, or with an empty one, reads 0 records and 0 bytes."""
    document = _manifest({"url": "s3://b/p0"}, {"url": "s3://b/p1", "meta": {}})
    assert read_unload_manifest(document, "b", header=False).files == [("p0", 0, 0), ("p1", 0, 0)]


@pytest.mark.parametrize(
    ("spelled", "type_name"),
    [
        ("smallint", "int2"),
        ("integer", "int4"),
        ("bigint", "int8"),
        ("real", "float4"),
        ("double precision", "float8"),
        ("boolean", "bool"),
        ("character", "bpchar"),
        ("character varying", "varchar"),
        ("timestamp without time zone", "timestamp"),
        ("timestamp with time zone", "timestamptz"),
    ],
)
def test_each_spelled_out_type_is_told_by_the_data_apis_name(spelled, type_name):
    """The manifest's type name is reported as the Data API's typeName, as a query's result reports it."""
    document = _manifest(elements=[{"name": "c", "type": {"base": spelled}}])
    assert read_unload_manifest(document, "b", header=False).columns == [("c", type_name)]


def test_other_types_keep_their_name_and_a_column_without_one_is_varchar():
    """numeric, date and super are told as given; an element without a type or a base is varchar."""
    document = _manifest(
        elements=[
            {"name": "amount", "type": {"base": "numeric"}},
            {"name": "Day", "type": {"base": "date"}},
            {"name": "doc", "type": {"base": "super"}},
            {"name": "bare"},
            {"name": "empty", "type": {}},
        ]
    )
    assert read_unload_manifest(document, "b", header=False).columns == [
        ("amount", "numeric"),
        ("Day", "date"),
        ("doc", "super"),
        ("bare", "varchar"),
        ("empty", "varchar"),
    ]


def test_an_empty_manifest_has_no_parts_and_no_columns():
    """A document without entries or schema is no parts and no columns, not an error."""
    assert read_unload_manifest({}, "b", header=True) == UnloadedFiles(files=[], columns=[])
