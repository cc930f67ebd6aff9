"""A small tokenizer for the Redshift statements PostgreSQL lacks (COPY ... FROM 's3://...', UNLOAD).

Why not sqlglot's tokenizer: its Redshift dialect swallows everything after ``UNLOAD`` into one opaque token and
drops backslashes from literals (``NULL AS '\\N'`` comes back as ``'N'``), and both matter here. The grammar of these
two statements is tiny (words, numbers, string literals, parentheses, commas, dots), so a dedicated scanner is shorter
and exact: it walks the text once, character by character, and never pattern-matches the statement as a whole.

String literals follow Redshift: ``''`` and ``\\'`` are an embedded quote, ``\\\\`` a backslash; any other backslash
sequence is kept as written (``'\\N'`` stays two characters, ``'\\t'`` is decoded later by the option that takes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .base import RedshiftSqlError

#: Redshift folds the ASCII letters of names, quoted ones too, and nothing else (its "Names and identifiers").
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class Kind(Enum):
    WORD = "word"  # unquoted identifier or keyword
    IDENT = "quoted identifier"
    STRING = "string literal"
    NUMBER = "number"
    PUNCT = "punctuation"
    END = "end of statement"


@dataclass(frozen=True)
class Token:
    kind: Kind
    value: str  # WORD: as written; IDENT/STRING: unescaped content; NUMBER/PUNCT: as written
    position: int

    @property
    def upper(self) -> str:
        return self.value.upper() if self.kind is Kind.WORD else ""

    def describe(self) -> str:
        if self.kind is Kind.END:
            return "end of statement"
        return f"{self.kind.value} {self.value!r}" if self.kind is not Kind.PUNCT else repr(self.value)


_PUNCTUATION = "(),.;=*"


def tokenize(sql: str) -> list[Token]:
    """Split ``sql`` into tokens, skipping whitespace and comments; the list ends with one END token."""
    tokens: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace():
            i += 1
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = n if newline < 0 else newline + 1
        elif sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        elif ch == "'":
            value, i_next = _read_string(sql, i)
            tokens.append(Token(Kind.STRING, value, i))
            i = i_next
        elif ch == '"':
            value, i_next = _read_quoted_identifier(sql, i)
            tokens.append(Token(Kind.IDENT, value, i))
            i = i_next
        elif ch.isdigit():
            j = i
            while j < n and (sql[j].isdigit() or sql[j] == "."):
                j += 1
            tokens.append(Token(Kind.NUMBER, sql[i:j], i))
            i = j
        elif ch.isalpha() or ch == "_":
            j = i
            while j < n and (sql[j].isalnum() or sql[j] in "_$"):
                j += 1
            tokens.append(Token(Kind.WORD, sql[i:j], i))
            i = j
        elif ch in _PUNCTUATION:
            tokens.append(Token(Kind.PUNCT, ch, i))
            i += 1
        else:
            raise RedshiftSqlError(f"syntax error at or near {ch!r} (position {i + 1})")
    tokens.append(Token(Kind.END, "", n))
    return tokens


def _skip_block_comment(sql: str, start: int) -> int:
    """Block comments nest in PostgreSQL and Redshift; return the index just past the closing ``*/``."""
    depth, i = 0, start
    while i < len(sql):
        if sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    raise RedshiftSqlError("unterminated /* comment")


def _read_string(sql: str, start: int) -> tuple[str, int]:
    out: list[str] = []
    i = start + 1
    while i < len(sql):
        ch = sql[i]
        if ch == "'":
            if sql.startswith("''", i):
                out.append("'")
                i += 2
                continue
            return "".join(out), i + 1
        if ch == "\\" and i + 1 < len(sql) and sql[i + 1] in "'\\":
            out.append(sql[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    raise RedshiftSqlError(f"unterminated quoted string at position {start + 1}")


def _read_quoted_identifier(sql: str, start: int) -> tuple[str, int]:
    out: list[str] = []
    i = start + 1
    while i < len(sql):
        if sql[i] == '"':
            if sql.startswith('""', i):
                out.append('"')
                i += 2
                continue
            return "".join(out), i + 1
        out.append(sql[i])
        i += 1
    raise RedshiftSqlError(f"unterminated quoted identifier at position {start + 1}")


class TokenStream:
    """A cursor over tokens with the few look-ahead helpers a recursive-descent parser needs."""

    def __init__(self, tokens: list[Token]):
        self._tokens = tokens
        self._i = 0

    def peek(self, offset: int = 0) -> Token:
        return self._tokens[min(self._i + offset, len(self._tokens) - 1)]

    def next(self) -> Token:
        token = self.peek()
        self._i = min(self._i + 1, len(self._tokens) - 1)
        return token

    def at_word(self, *words: str) -> bool:
        return self.peek().upper in words

    def accept_word(self, *words: str) -> str | None:
        """Consume the next token if it is one of ``words``; return it upper-cased."""
        if self.at_word(*words):
            return self.next().upper
        return None

    def accept_punct(self, ch: str) -> bool:
        token = self.peek()
        if token.kind is Kind.PUNCT and token.value == ch:
            self.next()
            return True
        return False

    def expect_word(self, word: str) -> None:
        if not self.accept_word(word):
            raise self.error(f"expected {word}")

    def expect_punct(self, ch: str) -> None:
        if not self.accept_punct(ch):
            raise self.error(f"expected {ch!r}")

    def expect_string(self, what: str) -> str:
        token = self.peek()
        if token.kind is not Kind.STRING:
            raise self.error(f"{what} expects a quoted string")
        self.next()
        return token.value

    def expect_number(self, what: str) -> str:
        token = self.peek()
        if token.kind is not Kind.NUMBER:
            raise self.error(f"{what} expects a number")
        self.next()
        return token.value

    def at_end(self) -> bool:
        """True at the end, ignoring trailing semicolons."""
        while self.accept_punct(";"):
            pass
        return self.peek().kind is Kind.END

    def error(self, message: str) -> RedshiftSqlError:
        token = self.peek()
        return RedshiftSqlError(f"syntax error at or near {token.describe()}: {message}")
