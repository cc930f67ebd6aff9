"""Result sink behaviour no test held before (found by mutation testing spectra/results.py, a second sample after
test_results_pins.py): an upload closed twice (as Python closes a file object again when it is collected) sends its
object once; a page that cannot be converted fails the job saying the format and the converter's reason, apart;
each format's files are named and labelled with the Content-Type their URL answers, an empty result's one file too."""

from __future__ import annotations

import gc
import gzip

import pytest

from events import Delivery, ResultFormat
from spectra.errors import ResultUnconvertible
from spectra.results import S3Upload
from tests.unit.fakes import FakeS3
from tests.unit.test_results import NUMBERED, write

pytestmark = pytest.mark.unit


def test_an_upload_closed_again_or_collected_sends_its_object_once():
    """A small upload's close is its one PutObject; closing it again, and its collection after, send nothing more."""
    s3 = FakeS3()
    upload = S3Upload(s3, "results", "acme/j_1/part-00000.csv.gz", "application/gzip")
    upload.write(b"one,two\n")
    upload.close()
    upload.close()
    del upload
    gc.collect()
    assert s3.requests == [("PutObject", "acme/j_1/part-00000.csv.gz")]
    assert s3.body("results", "acme/j_1/part-00000.csv.gz") == b"one,two\n"


def test_a_page_that_cannot_be_converted_says_the_format_then_the_reason():
    """A row of three fields for two columns: the job's error names csv, then a colon and pyarrow's own reason."""
    with pytest.raises(ResultUnconvertible) as refused:
        write(["1,a,one too many\n"], columns=NUMBERED, fmt=ResultFormat.CSV, delivery=Delivery.S3)
    assert refused.value.message.startswith("the result could not be converted to csv: ")
    assert "Expected 2 columns, got 3" in refused.value.message


@pytest.mark.parametrize(
    ("fmt", "name", "content_type"),
    [
        (ResultFormat.CSV, "part-00000.csv.gz", "application/gzip"),
        (ResultFormat.JSONL, "part-00000.jsonl.gz", "application/gzip"),
        (ResultFormat.JSON, "part-00000.jsonl.gz", "application/gzip"),
        (ResultFormat.PARQUET, "part-00000.parquet", "application/vnd.apache.parquet"),
    ],
)
def test_each_formats_file_is_named_and_labelled_as_its_bytes_are(fmt, name, content_type):
    """CSV and JSON Lines files are gzip (README: their URL answers application/gzip, not text); Parquet is
    application/vnd.apache.parquet; the manifest is application/json."""
    result, s3, _ = write(["1,a\n"], columns=NUMBERED, fmt=fmt, delivery=Delivery.S3)
    assert [f.key for f in result.files] == [f"acme/j_1/{name}"]
    assert s3.objects[("results", f"acme/j_1/{name}")]["ContentType"] == content_type
    assert s3.objects[("results", "acme/j_1/manifest.json")]["ContentType"] == "application/json"


def test_an_empty_results_one_file_is_named_as_a_first_part_is():
    """No rows: the one file is acme/j_1/part-00000.csv.gz (as the first part of any result), holding the header."""
    result, s3, _ = write([], columns=NUMBERED, fmt=ResultFormat.CSV, delivery=Delivery.S3)
    assert [(f.key, f.rows) for f in result.files] == [("acme/j_1/part-00000.csv.gz", 0)]
    assert gzip.decompress(s3.body("results", "acme/j_1/part-00000.csv.gz")) == b'"i","v"\n'
