"""CSV file behaviour no test held before (found by mutation testing spectra/bulk/csvfiles.py): a header line the csv
module cannot read is refused with its reason rather than crashing the job's start, the limits README states for a
header (its line within the first 1 MB, its names within 256 KiB as a job keeps them) and for a record (16 MB) at their
exact bounds, how many refused names an error lists, a CR-ended file's line past the record limit, and the batch
PUT's check of a first line naming no column read with the job's own delimiter."""

from __future__ import annotations

import pytest

from spectra.bulk import csvfiles
from spectra.bulk.csvfiles import NULL, BulkInputError, read_header, records
from spectra.bulk.models import BulkOperation, ColumnDelimiter
from spectra.bulk.uploads import upload_batch
from spectra.errors import InvalidRequest
from tests.unit.fakes import make_ports
from tests.unit.test_bulk_service import acme_ports, caller, new_insert

pytestmark = pytest.mark.unit

MB = 1024 * 1024


@pytest.fixture
def files():
    return make_ports().bulk.files


def _read(files, data: bytes):
    return read_header(files, files.put("acme/b_1/uploads/accounts.csv", data), ",")


def _refused(files, data: bytes) -> BulkInputError:
    with pytest.raises(BulkInputError) as raised:
        _read(files, data)
    return raised.value


def _records(files, data: bytes, **options) -> list[tuple[int, list[str] | None]]:
    source = files.put("acme/b_1/uploads/accounts.csv", data)
    return [(r.line, r.fields) for r in records(files, source, ",", **options)]


def test_a_file_whose_lines_end_with_cr_alone_is_refused_saying_how_lines_must_end(files):
    """A file saved with classic Mac line ends (CR alone) is one line to the warehouse; the csv module cannot read its
    header, and the job fails invalid_header naming the file and the cause (not an exception on every delivery)."""
    error = _refused(files, b"email,name,city\rann@x,Ann,Oslo\rbob@x,Bob,Rome\r")
    assert error.code == "invalid_header"
    assert error.message.startswith("accounts.csv: the header line is not valid CSV: ")
    assert error.message.endswith("(lines must end with LF or CRLF, not CR alone)")


def test_a_header_line_ending_within_the_first_mb_is_read_and_one_past_it_is_refused(files):
    """README: the header line must end within the file's first 1 MB (1,048,576 bytes, its LF included). Blanks
    before a quoted name are not the name's, so such a line names two short columns."""
    line = b" " * (MB - len(b'"id",name\n')) + b'"id",name\n'
    assert len(line) == MB
    read = _read(files, line + b"1,Ann\n")
    assert (read.columns, read.rows) == (["id", "name"], True)
    error = _refused(files, b" " + line + b"1,Ann\n")
    assert (error.code, error.message) == ("invalid_header", "accounts.csv: no header line within the first 1 MB")


def test_header_names_of_exactly_256_kib_as_a_job_keeps_them_are_read_and_a_byte_more_refused(files):
    """README: a header whose names take more than 256 KiB (262,144 bytes) as the job keeps them (folded, and as
    written where that differs) fails invalid_header; at the limit itself it loads. ``id`` padded keeps 10 bytes
    folded (id, name, city) and the padded name, name and city as written."""
    padding = 262_144 - len("idnamecity") - len("idnamecity")
    assert _read(files, b"id" + b" " * padding + b",name,city\n1,Ann,Oslo\n").columns == ["id", "name", "city"]
    error = _refused(files, b"id" + b" " * (padding + 1) + b",name,city\n1,Ann,Oslo\n")
    assert error.code == "invalid_header"
    assert "take 262145 bytes" in error.message and error.message.endswith("at most 262144")


def test_an_error_lists_the_first_20_names_it_refuses_and_counts_the_rest(files):
    """A header of 25 names that are not column names: the message quotes the first 20 in the file's order and says
    how many more there are, so a wide bad header still gets a bounded answer."""
    bad = [f"bad-{n:02d}" for n in range(25)]
    error = _refused(files, (",".join(bad) + "\n" + "," * 24 + "\n").encode())
    assert error.code == "invalid_header"
    listed = ", ".join(repr(name) for name in bad[:20])
    assert error.message == (
        f"accounts.csv: header fields that are not column names: {listed}, [... 5 more]"
        " (is the column delimiter ',' right?)"
    )


def test_a_record_of_16_mb_is_read_and_one_a_character_longer_is_one_bad_record(files):
    """README: a record past 16 MB is one failed record (not read into memory); one of exactly 16 MiB characters is
    read with its fields, and the records after either still count."""
    at_limit = b"1," + b"x" * (16 * MB - 2)
    got = _records(files, b"id,note\n" + at_limit + b"\n2,ok\n")
    assert [line for line, _ in got] == [2, 3] and got[1] == (3, ["2", "ok"])
    assert got[0][1] is not None and len(got[0][1][1]) == 16 * MB - 2
    assert _records(files, b"id,note\n" + at_limit + b"x\n2,ok\n") == [(2, None), (3, ["2", "ok"])]
    ((line, fields),) = _records(files, b"id,note\n" + at_limit)  # the last line, with no LF after it
    assert line == 2 and fields is not None and fields[0] == "1"


def test_the_record_limit_is_each_records_own(files, monkeypatch):
    """A quoted record of exactly the limit (its LF included) is read with its fields after another quoted record:
    what an earlier record took is not carried over to the next. So is one of the limit left open at the file's end."""
    monkeypatch.setattr(csvfiles, "MAX_RECORD_CHARS", 64)
    second = b'2,"' + b"y" * 59 + b'"\n'
    assert len(second) == 64
    assert _records(files, b'id,note\n1,"x"\n' + second) == [(2, ["1", "x"]), (3, ["2", "y" * 59])]
    open_at_the_end = b'2,"' + b"y" * 61  # a quoted section never closed: the record ends with the file
    assert _records(files, b"id,note\n" + open_at_the_end) == [(2, ["2", "y" * 61])]


def test_an_unquoted_backslash_n_in_a_line_without_quotes_is_the_null_marker_and_its_other_fields_as_sent(files):
    """A line with no quote at all (read by the fast path): its unquoted ``\\N`` is :data:`NULL`, the fields beside it
    are their own text, ``x\\N`` among them, and a CRLF line's last ``\\N`` is the marker too."""
    data = b"id,a,b,c\r\n1,\\N,x\\N,Oslo\r\n2,b,c,\\N\r\n"
    read = [fields for _, fields in _records(files, data)]
    assert read == [["1", "\\N", "x\\N", "Oslo"], ["2", "b", "c", "\\N"]]
    assert [[field is NULL for field in fields] for fields in read] == [
        [False, True, False, False],
        [False] * 3 + [True],
    ]


def test_a_crlf_record_holding_quotes_ends_at_its_crlf_not_with_a_cr_in_its_last_field(files):
    """In a CRLF file, a record with a quoted field and an unquoted last one: the CR of its line end is not that
    field's (a CR kept there would be written back into the result files and never match the value loaded)."""
    got = _records(files, b'id,note,city\r\n1,"a, b",Oslo\r\n2,"c",\r\n')
    assert got == [(2, ["1", "a, b", "Oslo"]), (3, ["2", "c", ""])]


def test_a_line_past_the_record_limit_in_a_file_of_cr_line_ends_is_one_record_and_the_next_lines_still_count(
    files, monkeypatch
):
    """A file of CR line ends is read one CR-ended line per record (as its unprocessed records are listed): a line
    past the limit ends at its CR like the others, so the lines after it are still records of their own."""
    monkeypatch.setattr(csvfiles, "MAX_RECORD_CHARS", 64)
    monkeypatch.setattr(csvfiles, "_PIECE_CHARS", 16)
    data = b"id,note\r1,ok\r2," + b"x" * 100 + b"\r3,after\r4,last\r"
    got = _records(files, data, newline="\r")
    assert got == [(2, ["1", "ok"]), (3, None), (4, ["3", "after"]), (5, ["4", "last"])]


@pytest.mark.parametrize("first", [b";;;", b'"";""'])
def test_a_batch_whose_first_line_names_no_column_in_the_jobs_own_delimiter_is_refused_at_the_put(first):
    """A spreadsheet's empty first row exported with semicolons, for a job whose columnDelimiter is SEMICOLON, is a
    400 at the PUT as ``,,,`` is for a comma job: read with a comma it would be one field that names something, taken
    201, and the whole job would fail at UploadComplete."""
    ports = acme_ports()
    job = new_insert(ports, BulkOperation.INSERT, column_delimiter=ColumnDelimiter.SEMICOLON)
    with pytest.raises(InvalidRequest, match="names no column"):
        upload_batch(ports, caller(ports), job.job_id, first + b"\nid;name\n1;Ann\n", gzip=False)
    assert upload_batch(ports, caller(ports), job.job_id, b"id;name\n1;Ann\n", gzip=False) is not None
