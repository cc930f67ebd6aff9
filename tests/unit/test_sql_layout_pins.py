"""spectra.sql_layout behaviour no test held before (found by mutation testing spectra/sql_layout.py): which characters
PostgreSQL's scanner reads as code around prefixed strings (N, B, X, U&), backslashes, doubled quotes, strings
continued after a line break, dollar quotes (``$$`` above all), comments, and a statement that ends just after a
string, a comment or a ``$``; and how a name is folded."""

from __future__ import annotations

import pytest

from spectra.sql_layout import Unterminated, code_mask, fold_name
from tests.unit.test_sql_layout import code_of

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("N'a' x", "x"),
        ("N'' x", "x"),  # empty strings: the prefix is 2 characters, the quote included
        ("X'' x", "x"),
        ("U&'' x", "x"),
        ("n'a' x", "x"),
        ("N'\\' x", "x"),  # a national string takes no backslash escapes
        ("B'01' x", "x"),
        ("b'01' x", "x"),
        ("X'1f' x", "x"),
        ("x'1f' x", "x"),
        ("U&'d\\0061t' x", "x"),
        ("u&'a' x", "x"),
        ('U&"a b" x', "x"),
        ("U&'\\' UESCAPE '!'", "UESCAPE"),  # backslash is no quote escape in a U& string
    ],
)
def test_a_prefixed_string_and_its_prefix_are_not_code(sql, code):
    """N'', B'', X'' and U&'' strings (either case) are literals, their prefix letters included."""
    assert code_of(sql) == code


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("'\\' x", "x"),  # a plain string ends at the quote after a backslash
        ('"\\" x', "x"),  # so does an identifier
        ("E'\\'' x", "x"),  # an E string's \' is a quote inside it
        ("E'\\\\' x", "x"),  # and \\ a backslash
        ("E'a''\\'' x", "x"),  # '' inside an E string does not end it
        ("'' x", "x"),
        ("'a''' x", "x"),
        ('"""a" x', "x"),  # an identifier opening with a doubled quote
        ("'a',b", ",b"),
    ],
)
def test_where_a_string_or_identifier_ends(sql, code):
    """Backslash escapes only in E strings; a doubled quote inside any string or identifier; code right after."""
    assert code_of(sql) == code


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("E'a'\n'\\'' x", "x"),  # the continuation is still an E string: \' does not end it
        ("E'a'\r'\\'' x", "x"),
        ("E'a' \n'\\'' x", "x"),
        ("E'a'  \t\n \n'\\'' x", "x"),
        ("E'a' -- c\n'\\'' x", "x"),  # a comment may stand before the line break
        ("E'a' -- cd\n'\\'' x", "x"),
        ("E'a' -- X\n'\\'' x", "x"),
    ],
)
def test_a_string_continued_after_a_line_break_keeps_its_escapes(sql, code):
    """A string followed, across white space holding a line break, by another is one string of the first's kind."""
    assert code_of(sql) == code


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("E'a' '\\' x", "x"),  # no line break: the second string is a plain one
        ("'a'\nX 'b'", "X"),  # a letter before the quote: no continuation
        ("select 'a'\nfrom t", "selectfromt"),
    ],
)
def test_a_string_is_not_continued_without_a_line_break_and_a_quote(sql, code):
    """Only a quote after white space holding a line break continues a string."""
    assert code_of(sql) == code


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("select 'a' ", "select"),
        ("select 'a'\n", "select"),
        ("select 'a' -- end", "select"),
        ("select 1 -- end", "select1"),
        ("a $", "a$"),
        ("a $t", "a$t"),
    ],
)
def test_a_statement_may_end_just_after_a_string_a_comment_or_a_dollar(sql, code):
    """Trailing white space, a comment to the end of the text or a last ``$`` are read, not run past."""
    assert code_of(sql) == code


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("$$ ' $$ x", "x"),
        ("$$a$$ x", "x"),
        ("$$$$ x", "x"),  # an empty body
        ("$t$$t$ x", "x"),
        ("$_$ ' $_$ x", "x"),  # _ may be a tag's first character
        ("$1$ x", "$1$x"),  # a digit may not: $1 is a parameter
        ("$a b$ x", "$ab$x"),  # a tag holds no space: $ then names
        ("x$a$ , y", "x$a$,y"),  # a $ after a letter is part of the name
    ],
)
def test_dollar_quotes(sql, code):
    """``$$`` and ``$tag$`` quotes, and the ``$`` that opens none."""
    assert code_of(sql) == code


def test_a_dollar_quote_with_a_tag_the_text_never_repeats_is_unterminated():
    """``$a$`` after a space opens a quote; closed nowhere, the warehouse cannot read the statement."""
    with pytest.raises(Unterminated):
        code_mask("x $a$ , y")


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("1 -- aXb\n2", "12"),
        ("1 -- a\r2", "12"),  # CR ends a comment too
        ("1 --\n2", "12"),
        ("1 -- \n2", "12"),
        ("a /* */b", "ab"),
        ("a /* /**/ */ b", "ab"),
        ("a /* /*/ x */ */ b", "ab"),  # /*/ opens a comment and is no close
    ],
)
def test_comments(sql, code):
    """A line comment ends at LF or CR, whatever it holds; block comments nest, code resumes right after."""
    assert code_of(sql) == code


def test_upper_case_letters_are_code():
    """Every letter, X included, is code outside quotes."""
    assert code_of("SELECT MAX(X) FROM T") == "SELECTMAX(X)FROMT"


def test_fold_name_lowers_ascii_letters_only():
    """A-Z fold to a-z; other letters (the Kelvin sign, an accented capital) are left as they are."""
    assert fold_name("Sales_\u212a_\u00c9A") == "sales_\u212a_\u00c9a"
