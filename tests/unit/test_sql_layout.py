"""spectra.sql_layout: which characters PostgreSQL's scanner reads as code, the half of the guard's comparison that
sqlglot does not give (the other half is the guard's own tokens; tests/unit/test_sql_guard.py runs both)."""

from __future__ import annotations

import pytest

from spectra.sql_layout import Unterminated, code_mask

pytestmark = pytest.mark.unit


def code_of(sql: str) -> str:
    """The characters read as code, joined."""
    return "".join(char for char, code in zip(sql, code_mask(sql), strict=True) if code)


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("select 1 -- a\n, 2", "select1,2"),
        ("a /* b /* c */ d */ e", "ae"),  # nested
        ("a /*/* */ ' */ b", "ab"),  # opened twice: still in the comment after one close
        ("a /* /* */* */ b", "ab"),  # */* is a close and a star
        ("2 #-- x\n2", "2#2"),  # an operator ends at --
        ("'it''s' x", "x"),
        ("E'a\\'b' x", "x"),  # backslash escapes in E strings
        ("'a'\n'b' x", "x"),  # a string continued after a line break
        ("$t$ ' $t$ x", "x"),
        ("$\u00a0$ ' $\u00a0$ x", "x"),  # any non-ASCII character is a tag letter
        ("a$b $1 x", "a$b$1x"),
        ('"a -- b" x', "x"),
    ],
)
def test_what_the_warehouse_reads_as_code(sql, code):
    assert code_of(sql) == code


@pytest.mark.parametrize("sql", ["'open", "/* open /* */", "$t$ open", '"open'])
def test_what_the_warehouse_cannot_read_to_the_end(sql):
    with pytest.raises(Unterminated):
        code_mask(sql)
