"""Reading tenants' CSV files (spectra.bulk.csvfiles) through the real BulkFiles on a FakeS3: the header check that
runs before anything is written, and records with the physical line each starts on (as stl_load_errors counts)."""

from __future__ import annotations

import gzip

import pytest

from spectra.bulk import csvfiles
from spectra.bulk.csvfiles import (
    HEADER_NAMES_MAX_BYTES,
    NULL,
    QUOTED_EMPTY,
    BulkInputError,
    QuotedBlank,
    TableColumn,
    check_columns,
    owner_column,
    read_header,
    records,
)
from spectra.bulk.files import CHUNK
from spectra.bulk.models import BulkOperation, SourceFile
from tests.unit.bulk_helpers import bulk_job
from tests.unit.fakes import RESULTS_BUCKET, make_ports

pytestmark = pytest.mark.unit


@pytest.fixture
def files():
    return make_ports().bulk.files


def put(files, data: bytes, name: str = "accounts.csv") -> SourceFile:
    return files.put(f"acme/b_1/uploads/{name}", data)


def header(files, data: bytes, *, delimiter: str = ",", name: str = "accounts.csv") -> list[str]:
    read = read_header(files, put(files, data, name), delimiter)
    assert read.rows, "a file with rows"
    return read.columns


def refused(files, data: bytes, *, delimiter: str = ",", name: str = "accounts.csv") -> BulkInputError:
    with pytest.raises(BulkInputError) as raised:
        header(files, data, delimiter=delimiter, name=name)
    return raised.value


# -- the header check -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"\n", b"\r\n\r\n  \n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\r\n"],
    ids=["empty", "newline", "blank-lines", "bom-only", "bom-crlf"],
)
def test_a_file_with_nothing_in_it_is_empty(files, data):
    error = refused(files, data)
    assert (error.code, error.message) == (
        "empty_file",
        "accounts.csv is empty: a header line and at least one row are needed",
    )


@pytest.mark.parametrize("data", [b"id,name\n", b"id,name", b"id,name\r\n\r\n\n", b"\xef\xbb\xbfid,name\r\n"])
def test_a_header_without_rows_is_read_as_no_rows(files, data):
    """The job decides (no_rows when none of its files has a row): one empty batch of several is no error."""
    assert read_header(files, put(files, data), ",") == (["id", "name"], False, ["id", "name"])


@pytest.mark.parametrize("data", [b"id,name\n,\n,\n", b"id,name\r\n, \r\n", b'id,name\n"",\n'])
def test_rows_of_empty_fields_are_rows(files, data):
    """A file of rows with every field empty is loaded (empty text, NULL otherwise): it was refused, "no rows"."""
    assert header(files, data) == ["id", "name"]


@pytest.mark.parametrize(
    "data",
    [b'v\n""\n', b'v\n"  "\n', b'v\r\n""\r\n', b"v\n  \n", b"v\n\t\r\n", b'v\n\n""\n\n', b'\xef\xbb\xbfv\n""'],
    ids=["empty-quoted", "blanks-quoted", "crlf", "blanks", "tab", "among-empty-lines", "bom-no-line-end"],
)
def test_a_one_column_file_of_empty_or_blank_values_has_rows(files, data):
    """Its one field is the row: ``""`` and ``"  "`` are text (a JSON job's empty strings are written so), blanks
    unquoted are blanks in a text column, NULL in another. Read through the csv module, which drops the quotes, such
    files failed ``no_rows``, though the same rows loaded beside any other (the bulk review)."""
    assert header(files, data) == ["v"]


@pytest.mark.parametrize(
    ("data", "delimiter"),
    [(b"v\n\n", ","), (b"v\r\n\r\n\n", ","), (b"id,name\n  \n\t\r\n", ","), (b"id;name\n \t \n", ";")],
    ids=["one-column-empty-line", "one-column-crlf-lines", "blank-lines", "blank-lines-semicolons"],
)
def test_empty_lines_and_blank_lines_of_several_columns_are_no_rows(files, data, delimiter):
    """A line of line breaks alone is no row, and nor, in a file of several columns, is one of blanks alone: COPY
    rejects it ("missing data") as it rejects an empty one."""
    assert read_header(files, put(files, data), delimiter).rows is False


def test_a_tab_is_a_delimiter_not_a_blank_in_a_tab_separated_file(files):
    """A line of a tab alone is a row of two empty fields there (empty text, NULL otherwise), as ``,`` is in CSV."""
    assert header(files, b"id\tname\n\t\n", delimiter="\t") == ["id", "name"]


@pytest.mark.parametrize(
    "data",
    [
        b"id,name\n1,a\n",
        b"id,name\r\n1,a\r\n",  # CRLF: no \r left on the last name
        b"\xef\xbb\xbfid,name\n1,a\n",  # a BOM is not part of the first name
        b'"ID" , Name \n1,a\n',  # quoted, spaced, upper case: the warehouse folds names
        b"id,name\n1,a",  # no final line break
    ],
)
def test_the_header_is_read_as_the_warehouse_names_columns(files, data):
    assert header(files, data) == ["id", "name"]


@pytest.mark.parametrize("data", [b"\nid,name\n1,a\n", b"  \r\nid\r\n1\r\n", b",,\n1,2,3\n"])
def test_a_first_line_without_names_is_refused_not_taken_for_a_header_of_no_columns(files, data):
    error = refused(files, data)
    assert error.code == "invalid_header"
    assert error.message == "accounts.csv: the first line has no column names; it must be the header line"


def test_blanks_around_a_quoted_header_name_are_not_the_names_as_in_a_row(files):
    assert header(files, b'name, "email" ,\t"City"\n1,2,3\n') == ["name", "email", "city"]
    assert header(files, b'name\t "email" \n1\t2\n', delimiter="\t") == ["name", "email"]


@pytest.mark.parametrize("data", [b'id,"n\n"\n1,2\n', b'"id\r\n",n\r\n1,2\r\n', b'id,"n\r"\n1,2\n'])
def test_a_header_field_holding_a_line_break_is_refused(files, data):
    """The load skips one line (IGNOREHEADER 1): the rest of such a header, and the rows after it up to the next
    quote, became one failed record, the job JobComplete (found by the drop door review)."""
    error = refused(files, data)
    assert error.code == "invalid_header" and "holds a line break" in error.message


def test_a_wrong_delimiter_is_named_in_the_message(files):
    error = refused(files, b"id;name\n1;a\n")
    assert error.code == "invalid_header"
    assert "'id;name'" in error.message and "column delimiter ','" in error.message
    assert header(files, b"id;name\n1;a\n", delimiter=";") == ["id", "name"]
    assert refused(files, b"id,name\n1,a\n", delimiter="\t").code == "invalid_header"


def test_columns_named_twice_are_refused_with_their_names(files):
    error = refused(files, b"id,name,ID,city,name\n1,a,2,b,c\n")
    assert error.code == "duplicate_columns"
    assert error.message.endswith("columns named twice: id, name")


def test_a_header_of_60000_columns_named_alike_is_refused_naming_the_duplicate(files):
    """Duplicates were found with list.count per column: 60,000 columns named ``ab`` (a 180 KB header line, its
    names within what a job keeps) took over a minute, a 1 MB line of them half an hour, so the executor timed out
    on each delivery (the other jobs of its batch with it), the message went to the DLQ and the job held its tenant's
    slot for an hour. They are counted once now (milliseconds; not a timed test: speed is for bench/)."""
    data = b",".join([b"id", *[b"ab"] * 60_000]) + b"\n1\n"
    error = refused(files, data)
    assert error.code == "duplicate_columns"
    assert error.message.endswith("columns named twice: ab")


def test_a_header_whose_names_pass_what_a_job_keeps_is_refused_naming_the_limit(files):
    """A job keeps the names folded, and as written where that differs (the diff review: counting them twice even
    when they are the same refused wide tables Redshift loads and the job's record holds)."""
    names = [f"column_{n:04d}_" + "x" * 115 for n in range(1_600)]  # Redshift's most, 127 bytes each: 203 KB
    assert len(header(files, (",".join(names) + "\n" + "," * 1_599 + "\n").encode())) == 1_600
    written = [name.title() for name in names]  # kept twice: as written (Column_...) and folded
    error = refused(files, (",".join(written) + "\n" + "," * 1_599 + "\n").encode())
    assert error.code == "invalid_header"
    assert f"take {2 * 1_600 * 127} bytes" in error.message and f"at most {HEADER_NAMES_MAX_BYTES}" in error.message


def test_a_header_name_outside_ascii_is_not_folded_into_an_ascii_column(files):
    """Found by the names review: str.lower folds the Kelvin sign (U+212A) to an ASCII k, so a header naming the
    column "\u212aey", another column to Redshift (which folds only A-Z), loaded into the column key."""
    error = refused(files, "\u212aey,name\n1,Ann\n".encode())
    assert error.code == "invalid_header" and "'\u212aey'" in error.message
    assert header(files, b"KEY,name\n1,Ann\n") == ["key", "name"]


def test_invalid_utf8_in_the_header_is_refused_but_in_a_row_it_is_the_rows_problem(files):
    error = refused(files, b"id,n\xffme\n1,a\n")
    assert (error.code, error.message) == ("invalid_header", "accounts.csv: the header line is not valid UTF-8")
    assert header(files, b"id,name\n1,B\xffd\n") == ["id", "name"]


def test_a_first_row_the_csv_module_cannot_read_is_that_rows_problem_not_the_headers(files):
    assert header(files, b"email,name\nann@x,A\rnn\nbob@x,B\n") == ["email", "name"]  # a CR alone in row 1


def test_an_empty_header_field_is_not_a_column(files):
    error = refused(files, b"id,,name\n1,2,3\n")
    assert error.code == "invalid_header" and "''" in error.message


def test_gzip_files_are_read_through_and_a_bad_one_says_so(files):
    assert header(files, gzip.compress(b"id,name\n1,a\n"), name="a.csv.gz") == ["id", "name"]
    concatenated = gzip.compress(b"id,name\n") + gzip.compress(b"1,a\n")  # what `cat a.gz b.gz` makes
    assert header(files, concatenated, name="b.csv.gz") == ["id", "name"]

    error = refused(files, b"id,name\n1,a\n", name="plain.csv.gz")
    # named as its tenant knows it, not by the results bucket's URL (the CSV review: an API batch's error showed it)
    assert error.code == "bad_gzip" and error.message.startswith("plain.csv.gz is not a valid gzip file")
    assert "s3://" not in error.message
    truncated = gzip.compress(b"id,name\n" + b"1,a\n" * 1000)[:-20]
    error = refused(files, truncated, name="cut.csv.gz")
    assert error.code == "bad_gzip" and error.message == "cut.csv.gz is not a complete gzip file (it ends early)"
    with pytest.raises(BulkInputError, match=r"^gone\.csv was deleted before the job read it$"):
        read_header(files, SourceFile(bucket=RESULTS_BUCKET, key="acme/b_1/uploads/gone.csv"), ",")


def test_nul_padding_after_a_gzip_member_is_refused_by_name(files):
    """A tool that writes whole blocks pads the file with NUL bytes, which ``gzip -dc`` skips but the load's COPY
    reads as a member that is no gzip: the job fails bad_gzip before any load, saying what is wrong with the file
    ('incorrect header check' said nothing of the padding; the CSV review)."""
    padded = gzip.compress(b"id,name\n1,a\n") + b"\0" * 512
    error = refused(files, padded, name="padded.csv.gz")
    assert (error.code, error.message) == (
        "bad_gzip",
        "padded.csv.gz is not a valid gzip file: NUL bytes follow its gzip data (padding)",
    )
    error = refused(files, gzip.compress(b"id,name\n1,a\n") + b"\0\0garbage", name="junk.csv.gz")
    assert error.code == "bad_gzip" and "padding" not in error.message


def test_gzip_sent_as_plain_csv_is_told_so(files):
    """Dropped named .csv, or PUT to an upload URL asked without gzip: the job said only that the header line was
    not UTF-8 (found by the diff review; the batch route refuses such a body at once)."""
    error = refused(files, gzip.compress(b"id,name\n1,a\n"), name="plain.csv")
    assert error.code == "invalid_header" and "plain.csv is gzip data sent as plain CSV" in error.message


def test_gzip_that_inflates_a_thousandfold_comes_out_a_chunk_at_a_time(files):
    source = put(files, gzip.compress(b"id,note\n" + b"x" * (16 * CHUNK)), "bomb.csv.gz")
    sizes = [len(piece) for piece in files.chunks(source)]
    assert sum(sizes) == 8 + 16 * CHUNK and max(sizes) <= CHUNK


def test_only_the_head_of_a_large_file_is_read(files):
    # a first row larger than the 1 MB head, inside quotes: still a header and a row, not a CSV error
    assert header(files, b'id,note\n1,"' + b"x\n" * 700_000 + b'"\n') == ["id", "note"]
    error = refused(files, b"a" * (1024 * 1024 + 10))  # no line break within the first 1 MB
    assert error.code == "invalid_header" and "first 1 MB" in error.message


def test_a_file_that_is_gone_fails_with_a_reason_rather_than_an_exception(files):
    gone = SourceFile(bucket=files.ingest_bucket, key="acme/accounts/gone.csv")
    with pytest.raises(BulkInputError) as raised:
        read_header(files, gone, ",")
    assert raised.value.code == "file_not_found"
    assert "gone.csv" in raised.value.message


# -- columns against the table --------------------------------------------------------------------------------------

TABLE = [TableColumn("id", required=True), TableColumn("name", required=True), TableColumn("city", required=False)]


def check(operation: BulkOperation, header_names: list[str], **fields) -> None:
    check_columns(bulk_job(operation, **fields), header_names, TABLE)


def test_columns_the_table_lacks_are_named():
    with pytest.raises(BulkInputError) as raised:
        check(BulkOperation.INSERT, ["id", "name", "shoe_size", "hat"])
    assert (raised.value.code, raised.value.message) == (
        "unknown_columns",
        "columns not in table accounts: shoe_size, hat",
    )


@pytest.mark.parametrize("operation", [BulkOperation.INSERT, BulkOperation.UPSERT])
def test_inserting_operations_need_every_required_column(operation):
    with pytest.raises(BulkInputError) as raised:
        check(operation, ["id", "city"])
    assert raised.value.code == "missing_columns"
    assert raised.value.message.endswith("missing from the file: name")
    check(operation, ["name", "id"])  # order does not matter, optional columns may be left out


@pytest.mark.parametrize("operation", [BulkOperation.UPDATE, BulkOperation.UPSERT, BulkOperation.DELETE])
def test_the_external_id_must_be_in_the_file(operation):
    with pytest.raises(BulkInputError) as raised:
        check(operation, ["id", "name"], external_id_field="name_x")
    assert raised.value.code == "missing_columns"
    assert "'name_x'" in raised.value.message and "externalIdFieldName" in raised.value.message


def test_update_and_delete_need_no_required_columns_but_an_update_needs_something_to_set():
    check(BulkOperation.DELETE, ["id"])
    check(BulkOperation.UPDATE, ["id", "city"])
    with pytest.raises(BulkInputError) as raised:
        check(BulkOperation.UPDATE, ["id"])
    assert raised.value.code == "missing_columns" and "nothing to update" in raised.value.message


# -- records and their lines ----------------------------------------------------------------------------------------


def lines(files, data: bytes, delimiter: str = ",", name: str = "accounts.csv") -> list[tuple[int, list[str] | None]]:
    return [(r.line, r.fields) for r in records(files, put(files, data, name), delimiter)]


def test_records_start_on_their_physical_line_and_quoted_line_breaks_span_lines(files):
    data = b'id,note\n1,"a\nb"\n2,plain\n\n3,"x\r\ny\r\nz"\n4,last'
    assert lines(files, data) == [
        (2, ["1", "a\nb"]),
        (4, ["2", "plain"]),
        (5, [""]),  # a blank line is a record too: COPY rejects it (several columns) or loads it (one)
        (6, ["3", "x\r\ny\r\nz"]),
        (9, ["4", "last"]),
    ]


def test_blanks_around_a_quoted_field_are_not_its_value_as_copy_reads_it(files):
    """Redshift ignores spaces and tabs between a delimiter and a quote (the emulator too): an external id
    `` "m2" `` is m2. Blanks with text beside them, or inside the quotes, are the value's; a tab delimiter is no
    blank."""
    data = b'id,note,n\n "m2" ,\t"x y"\t,1\n" a ", "b" c,2\n "a" "b" ,"",3\n'
    assert lines(files, data) == [(2, ["m2", "x y", "1"]), (3, [" a ", " b c", "2"]), (4, ["a b", "", "3"])]
    assert lines(files, b'id\tn\n "m2"\t\t"x"\n', delimiter="\t") == [(2, ["m2", "", "x"])]


def test_an_unquoted_backslash_n_is_copys_null_marker_and_a_quoted_one_text(files):
    """Both are the string ``\\N``; only the unquoted one is :data:`NULL` (the result files write each as sent)."""
    data = b'id,a,b\n\\N,"\\N",x\\N\n"1"\\N,\\N,"\\N"\n'
    read = [r.fields for r in records(files, put(files, data, "accounts.csv"), ",")]
    assert read == [["\\N", "\\N", "x\\N"], ["1\\N", "\\N", "\\N"]]
    assert [[field is NULL for field in fields] for fields in read] == [[True, False, False], [False, True, False]]


def test_a_quoted_empty_field_is_told_from_an_empty_one(files):
    """Both are the empty string; only ``""`` (blanks around its quotes or not) is :data:`QUOTED_EMPTY`."""
    data = b'id,a,b\n1,"", "" \n"",,x""\n'
    read = [r.fields for r in records(files, put(files, data, "accounts.csv"), ",")]
    assert read == [["1", "", ""], ["", "", "x"]]
    quoted = [[field is QUOTED_EMPTY for field in fields] for fields in read]
    assert quoted == [[False, True, True], [True, False, False]]


def test_a_quoted_field_of_blanks_is_told_from_the_same_blanks_unquoted(files):
    """Unquoted, blanks are NULL in a column that is not text; quoted, they are text (the bulk semantics review)."""
    data = b'id,a,b\n1,"  ",  \n" \t", "\t" ,x\n'
    read = [r.fields for r in records(files, put(files, data, "accounts.csv"), ",")]
    assert read == [["1", "  ", "  "], [" \t", "\t", "x"]]
    assert [[isinstance(field, QuotedBlank) for field in fields] for fields in read] == [
        [False, True, False],
        [True, True, False],
    ]


def test_crlf_files_count_one_line_per_crlf_and_a_bom_changes_nothing(files):
    assert lines(files, b"\xef\xbb\xbfid,name\r\n1,a\r\n\r\n2,b\r\n") == [(2, ["1", "a"]), (3, [""]), (4, ["2", "b"])]


def test_lines_end_at_lf_only_as_copy_counts_them(files):
    """A CR starts no line (stl_load_errors would name the wrong record otherwise): inside quotes or out, it is data,
    which the warehouse loads or rejects."""
    data = b'id,note\n1,"a\rb"\n2,x\ry\n3,ok\r\n'
    assert lines(files, data) == [(2, ["1", "a\rb"]), (3, ["2", "x\ry"]), (4, ["3", "ok"])]


def test_a_quote_anywhere_opens_a_quoted_section_as_copy_reads_it(files):
    """COPY reads 12" Pipe as the start of a quoted section running to the next quote: one record over three lines,
    the one the warehouse loaded (or rejected) at line 2. Python's csv module would see three records."""
    data = b'id,note,city\n1,12" Pipe,Oslo\n2,Bob,Rome\n3,6" Nail,Pisa\n4,"say ""hi""",x\n5,"",\n'
    assert lines(files, data) == [
        (2, ["1", "12 Pipe,Oslo\n2,Bob,Rome\n3,6 Nail", "Pisa"]),
        (5, ["4", 'say "hi"', "x"]),
        (6, ["5", "", ""]),
    ]


def test_an_open_quote_at_the_end_takes_the_rest_of_the_file_as_one_record(files):
    data = b'id,note\n1,ok\n2,"never closed\n3,x\n'
    assert lines(files, data) == [(2, ["1", "ok"]), (3, ["2", "never closed\n3,x\n"])]


def test_a_record_past_the_size_limit_is_one_bad_record_and_the_rest_still_count(files, monkeypatch):
    monkeypatch.setattr(csvfiles, "MAX_RECORD_CHARS", 64)
    got = lines(files, b'id,note\n1,ok\n2,"' + b"x\n" * 50 + b'"\n3,after\n')
    assert got == [(2, ["1", "ok"]), (3, None), (54, ["3", "after"])]


def test_a_line_past_the_size_limit_is_never_held_and_its_quotes_still_count(files, monkeypatch):
    monkeypatch.setattr(csvfiles, "MAX_RECORD_CHARS", 64)
    monkeypatch.setattr(csvfiles, "_PIECE_CHARS", 16)
    held = []
    text = type(files).text

    class Watched:  # the text stream, each line read from it measured
        def __init__(self, stream) -> None:
            self.stream = stream

        def readline(self, size: int = -1) -> str:
            line = self.stream.readline(size)
            held.append(len(line))
            return line

        def __enter__(self):
            return self

        def __exit__(self, *_) -> None:
            self.stream.close()

    monkeypatch.setattr(type(files), "text", lambda self, source, **options: Watched(text(self, source, **options)))
    long_plain = b"2," + b"x" * 1000 + b"\n"
    long_opening = b'3,"' + b"y" * 1000 + b"\n"  # opens a quoted section that the next line closes
    data = b"id,note\n1,ok\n" + long_plain + long_opening + b'still inside",z\n4,after\n'
    assert lines(files, data) == [(2, ["1", "ok"]), (3, None), (4, None), (6, ["4", "after"])]
    assert max(held) <= 65


def test_rows_keep_bytes_that_are_not_utf8_as_sent(files):
    ((line, fields),) = lines(files, b"id,name\n1,B\xffd\n")
    assert (line, fields) == (2, ["1", "B\udcffd"])
    assert fields[1].encode("utf-8", "surrogateescape") == b"B\xffd"


def test_records_of_gzip_files_and_other_delimiters(files):
    data = gzip.compress(b'id\tname\n1\tAnn\n2\t"B\tC"\n')
    assert lines(files, data, delimiter="\t", name="t.csv.gz") == [(2, ["1", "Ann"]), (3, ["2", "B\tC"])]


def test_records_are_streamed_across_read_chunks(files, monkeypatch):
    monkeypatch.setattr("spectra.bulk.files.CHUNK", 3)  # every record and quoted break straddles a chunk
    data = b'id,note\n1,"a\nb"\n2,"c""d"\n3,\xc3\xa9t\xc3\xa9\n'
    assert lines(files, data) == [(2, ["1", "a\nb"]), (4, ["2", 'c"d']), (5, ["3", "été"])]


@pytest.mark.parametrize(
    ("name", "default", "setting", "owner"),
    [
        ("owner", None, "owner", True),  # BULK_OWNER_COLUMN names it
        ("loaded_by", "CURRENT_USER", "owner", True),  # PostgreSQL's way of showing DEFAULT current_user
        ("loaded_by", '"current_user"()', "", True),
        ("loaded_by", "USER", "", True),  # PostgreSQL 10+ shows DEFAULT user so
        ("loaded_by", "CURRENT_ROLE", "", True),
        ("owner_id", "current_user_id", "", True),  # Redshift's numeric id of the user
        ("id", "nextval('user_seq'::regclass)", "", False),
        ("note", "'current_user'::character varying", "owner", False),  # a string that only spells the words
        ("owner", None, "", False),
        ("city", "'Oslo'::character varying", "owner", False),
    ],
)
def test_a_column_that_says_whose_the_row_is_is_found(name, default, setting, owner):
    assert owner_column(name, default, setting) is owner


@pytest.mark.parametrize("operation", [op for op in BulkOperation if op is not BulkOperation.DELETE])
def test_a_file_naming_the_owner_column_is_refused_for_every_operation_that_writes(operation):
    table = [*TABLE, TableColumn("owner", required=False, owner=True)]
    with pytest.raises(BulkInputError) as raised:
        check_columns(bulk_job(operation, external_id_field="id"), ["id", "name", "owner"], table)
    assert raised.value.code == "owner_column" and "owner of accounts" in raised.value.message


def test_a_delete_file_exported_from_the_table_may_name_the_owner_column_but_not_be_keyed_on_it():
    """A delete reads the id alone and writes no column: a file exported from the table, its owner column included,
    was refused whole (the semantics review). Keyed on the owner column, one record would stand for every row the
    tenant owns: refused still."""
    table = [*TABLE, TableColumn("owner", required=False, owner=True)]
    check_columns(bulk_job(BulkOperation.DELETE, external_id_field="id"), ["id", "name", "owner"], table)
    with pytest.raises(BulkInputError) as raised:
        check_columns(bulk_job(BulkOperation.DELETE, external_id_field="owner"), ["owner"], table)
    assert raised.value.code == "owner_column"


@pytest.mark.parametrize("operation", [BulkOperation.INSERT, BulkOperation.UPSERT])
def test_an_owner_column_without_a_default_says_the_table_cannot_be_inserted_into(operation):
    """The demo's sales table (owner NOT NULL, no default): a file without the column was told to add it
    (missing_columns), and the same file with it was told to leave it out (owner_column)."""
    nullable = TableColumn("owner", required=False, owner=True, defaulted=False)  # diff review: loaded with no owner
    table = [*TABLE, TableColumn("owner", required=True, owner=True, defaulted=False)]
    for sent in (["id", "name"], ["id", "name", "owner"]):
        with pytest.raises(BulkInputError) as raised:
            check_columns(bulk_job(operation, external_id_field="id"), sent, [*TABLE, nullable])
        assert raised.value.code == "owner_column" and "no default" in raised.value.message
        with pytest.raises(BulkInputError) as raised:
            check_columns(bulk_job(operation, external_id_field="id"), sent, table)
        assert raised.value.code == "owner_column"
        assert "no default" in raised.value.message and "cannot be inserted into accounts" in raised.value.message
    # an update or a delete never writes the column: nothing to refuse
    check_columns(bulk_job(BulkOperation.UPDATE, external_id_field="id"), ["id", "name"], table)
    check_columns(bulk_job(BulkOperation.DELETE, external_id_field="id"), ["id"], table)


@pytest.mark.parametrize("data", [b"sf__Id,name\n1,a\n", b"name,SF__CREATED\na,1\n", b"name, sf__error \na,1\n"])
def test_a_column_named_as_a_result_files_own_is_refused(files, data):
    """Found by the names review: a table's column ``sf__id`` named in a file came back in successfulResults under
    ``sf__Id, sf__Created, sf__Id, ...``, and a client reading the file by name (csv.DictReader, jsforce) took the
    record's value for the job's id, or the job's for the record's."""
    error = refused(files, data)
    assert error.code == "invalid_header" and "sf__Id, sf__Created and sf__Error" in error.message
