"""Redshift table design behaviour no test held before (found by mutation testing spectra/sql_design.py): every one
of Redshift's column compression encodings is taken after ALTER COLUMN ... ENCODE and any other word is refused
naming them, a COLUMN before a table's own ALTER keyword is not read as that keyword, and the design clauses are
written back as Redshift spells them."""

from __future__ import annotations

import pytest
from sqlglot.dialects.redshift import Redshift

from spectra.errors import SqlRejected
from spectra.sql_design import DesignWriter, TableDesignGrammar
from spectra.sql_guard import check_sql

pytestmark = pytest.mark.unit

WRITER = {"allow_writes": True, "owned_schemas": ["owned"]}


def refusal(sql: str) -> SqlRejected:
    with pytest.raises(SqlRejected) as error:
        check_sql(sql, max_bytes=10_000, **WRITER)
    return error.value


@pytest.mark.parametrize(
    "encoding",
    [
        "raw",
        "az64",
        "bytedict",
        "delta",
        "delta32k",
        "lzo",
        "mostly8",
        "mostly16",
        "mostly32",
        "runlength",
        "text255",
        "text32k",
        "zstd",
    ],
)
def test_each_of_redshifts_column_encodings_is_taken_by_alter_column(encoding):
    """Redshift's documented compression encodings, in the lower case users write them: a writer may change a
    column to any of them, and the guard passes the statement on as written."""
    sql = f"ALTER TABLE owned.t ALTER COLUMN a ENCODE {encoding}"
    assert check_sql(sql, max_bytes=10_000, **WRITER) == sql
    assert check_sql(sql.upper(), max_bytes=10_000, **WRITER) == sql.upper()


@pytest.mark.parametrize("word", ["bogus", "auto", "text", "delta64k", "mostly"])
def test_another_word_after_a_columns_encode_is_refused_naming_the_encodings(word):
    """AUTO is the table's (ALTER ENCODE AUTO), not a column's; near-misses of real encodings are no encodings.
    The refusal lists what Redshift takes, so the tenant can correct the statement."""
    error = refusal(f"ALTER TABLE owned.t ALTER COLUMN a ENCODE {word}")
    assert error.details == {"reason": "syntax"}
    assert error.message.startswith(
        "sql could not be parsed: Expecting a column encoding (AZ64, BYTEDICT, DELTA, DELTA32K, LZO, MOSTLY16, "
        f"MOSTLY32, MOSTLY8, RAW, RUNLENGTH, TEXT255, TEXT32K, ZSTD) near '{word}'"
    )


@pytest.mark.parametrize(
    "action",
    ["ALTER COLUMN SORTKEY (a)", "ALTER COLUMN DISTKEY a", "ALTER COLUMN DISTSTYLE EVEN", "ALTER COLUMN ENCODE AUTO"],
)
def test_a_column_word_before_a_tables_alter_keyword_is_not_that_keyword(action):
    """ALTER SORTKEY, DISTKEY, DISTSTYLE and ENCODE AUTO are the table's; Redshift has no ALTER COLUMN form of them,
    and the guard does not read one as the table's action (the COLUMN looked at for a column's ENCODE is given
    back before sqlglot reads the rest)."""
    error = refusal(f"ALTER TABLE owned.t {action}")
    assert error.details == {"reason": "unsupported"}
    assert error.message.startswith("this form of ALTER TABLE is not allowed in queries: ")


@pytest.mark.parametrize(
    ("sql", "written"),
    [
        (
            "alter table owned.t alter column a encode zstd, alter encode auto",
            "ALTER TABLE owned.t ALTER a ENCODE ZSTD, ALTER ENCODE AUTO",
        ),
        ('ALTER TABLE owned.t ALTER "My col" ENCODE raw', 'ALTER TABLE owned.t ALTER "My col" ENCODE RAW'),
    ],
)
def test_a_columns_encode_and_the_tables_encode_auto_are_written_back_as_redshift_spells_them(sql, written):
    """DesignWriter writes what TableDesignGrammar reads: ALTER, the column if any, ENCODE and the encoding, one
    space apart and nothing empty between them (ENCODE AUTO names no column)."""
    redshift = Redshift()
    tree = TableDesignGrammar(dialect=redshift).parse(redshift.tokenize(sql), sql)[0]
    assert DesignWriter(dialect=redshift).generate(tree) == written


@pytest.mark.parametrize("key", ["DISTKEY", "SORTKEY"])
def test_a_column_key_on_an_added_column_is_refused_by_its_name(key):
    """Redshift sets a column's keys only when it creates the table: the refusal names the key the tenant wrote."""
    error = refusal(f"ALTER TABLE owned.t ADD COLUMN b int {key}")
    assert error.details == {"reason": "unsupported"}
    assert error.message.startswith(f"ALTER TABLE ... ADD COLUMN ... {key} is not allowed: ")


@pytest.mark.parametrize(
    ("sql", "near"),
    [
        ("CREATE TABLE owned.t (a int) DEFAULT ENCODE AUTO", "AUTO"),
        ("CREATE TABLE owned.t (a int) DEFAULT SORTKEY AUTO", "AUTO"),
        ("CREATE TABLE owned.t (a int) DEFAULT INTERLEAVED SORTKEY (a)", "SORTKEY"),
    ],
)
def test_a_design_clause_after_default_is_refused_as_no_table_option(sql, near):
    """DEFAULT goes before a character set or collation in other dialects: Redshift has no DEFAULT ENCODE,
    SORTKEY or INTERLEAVED, and the guard says so rather than reading the clause."""
    error = refusal(sql)
    assert error.details == {"reason": "syntax"}
    assert error.message.startswith(f"sql could not be parsed: Expecting a table option after DEFAULT near '{near}'")


@pytest.mark.parametrize(
    ("sql", "told"),
    [
        ("CREATE TABLE owned.t (a int) ENCODE zstd", "Expecting AUTO near 'zstd'"),
        ("ALTER TABLE owned.t ALTER ENCODE zstd", "Expecting AUTO near 'zstd'"),
        ("CREATE TABLE owned.t (a int) INTERLEAVED (a)", "Expecting SORTKEY near '('"),
    ],
)
def test_a_tables_encode_takes_only_auto_and_interleaved_only_a_sortkey(sql, told):
    """A table's ENCODE is AUTO (a column's encoding goes with the column), and INTERLEAVED is followed by
    SORTKEY: the refusal says which word was expected."""
    error = refusal(sql)
    assert error.details == {"reason": "syntax"}
    assert error.message.startswith(f"sql could not be parsed: {told}")
