"""Redshift's type names PostgreSQL lacks, as the PostgreSQL types that hold the same values.

Redshift's "Data types" and "Character types" reference:

- ``VARCHAR(MAX)`` (and ``CHARACTER VARYING(MAX)``, ``NVARCHAR(MAX)``) is 65,535 bytes, ``CHAR(MAX)`` 4,096: PostgreSQL
  takes no ``MAX``, so they become ``varchar(65535)`` and ``char(4096)`` (the emulator measures characters where
  Redshift measures bytes, as for any length);
- ``NVARCHAR`` and ``NCHAR`` are Redshift's names for ``VARCHAR`` and ``CHAR`` (PostgreSQL has neither), with
  Redshift's defaults when no length is given: ``varchar(256)`` and ``char(1)``;
- ``VARBYTE``, ``VARBINARY`` and ``BINARY VARYING`` (a length optional) become ``bytea``, PostgreSQL's binary type,
  which takes no length;
- ``COLLATE CASE_SENSITIVE`` is PostgreSQL's default and is left out; ``COLLATE CASE_INSENSITIVE`` is refused with
  :class:`RedshiftSqlError` saying why: the embedded PostgreSQL is built without ICU, so it has no collation that
  compares without case (PostgreSQL's own message would be that the collation does not exist).

:func:`translate_type_names` rewrites only those tokens (a CREATE TABLE's columns, a cast, an ALTER COLUMN ...
TYPE) and leaves every other character of the statement as written.
"""

from __future__ import annotations

import re

from sqlglot.dialects.redshift import Redshift
from sqlglot.errors import SqlglotError
from sqlglot.tokens import Token, TokenType

from .base import RedshiftSqlError
from .functions import apply_edits
from .table_design import CONSTRAINTS, DDL, upper_word

#: Words of their own that may need a rewrite; a statement without them (the common case) is never tokenized.
_WORDS = ("MAX", "NVARCHAR", "NCHAR", "VARBYTE", "VARBINARY", "VARYING", "CASE_SENSITIVE", "CASE_INSENSITIVE")
_MENTIONED = re.compile(
    r"\(\s*MAX\s*\)|\b(?:NVARCHAR|NCHAR|VARBYTE|VARBINARY|BINARY\s+VARYING|CASE_(?:IN)?SENSITIVE)\b", re.IGNORECASE
)
_VARYING = {"VARCHAR", "CHARACTER VARYING", "CHAR VARYING", "NVARCHAR"}
_FIXED = {"CHAR", "CHARACTER", "NCHAR", "BPCHAR"}
_RENAMED = {"NVARCHAR": ("varchar", "varchar(256)"), "NCHAR": ("char", "char(1)")}
_BINARY = {"VARBYTE", "VARBINARY", "BINARY VARYING"}
_NAMES = _VARYING | _FIXED | _BINARY
_NOT_COLUMNS = {"", *CONSTRAINTS}  # what else starts a list's item


def translate_type_names(sql: str) -> str:
    """``sql`` with Redshift's type names PostgreSQL lacks written as PostgreSQL's; unchanged when it has none.

    A type with its length in parentheses is rewritten wherever it is written (no function has these names); a
    bare ``NVARCHAR``, ``NCHAR``, ``VARBYTE`` or ``VARBINARY`` only where a type must be (after ``::``, or after a
    column's name in a CREATE TABLE's or ALTER TABLE's column), since elsewhere it may be a column or an alias."""
    upper = sql.upper()
    if not any(word in upper for word in _WORDS):
        return sql  # the common case: no tokenizing at all
    if not DDL.match(sql) and "::" not in sql and not any(word in upper for word in ("CAST", "COLLATE")):
        return sql  # outside DDL a type is written only in a cast (an INSERT's values naming one are data)
    if not _MENTIONED.search(sql):
        return sql
    try:
        tokens = Redshift().tokenize(sql)
    except SqlglotError:
        return sql
    if not tokens:
        return sql  # comments only
    typed = _column_types(sql, tokens)
    edits = []
    for i, token in enumerate(tokens):
        collation = _collation(sql, tokens, i)
        if collation == "CASE_SENSITIVE":
            edits.append((token.start, tokens[i + 1].end, ""))
        elif collation == "CASE_INSENSITIVE":
            raise RedshiftSqlError(
                "COLLATE CASE_INSENSITIVE is not available on the local stack: its PostgreSQL is built without ICU, "
                "which a collation that compares without case needs (compare lower(a) = lower(b) instead)"
            )
        name = " ".join(token.text.upper().split())
        if name not in _NAMES or sql[token.start] == '"' or (i and tokens[i - 1].token_type is TokenType.DOT):
            continue
        length = _length(tokens, i + 1)
        end = tokens[i + 3].end if length is not None else token.end
        if length == "MAX" and name in _VARYING:
            edits.append((token.start, end, "varchar(65535)"))
        elif length == "MAX" and name in _FIXED:
            edits.append((token.start, end, "char(4096)"))
        elif name in _RENAMED and length is not None:
            edits.append((token.start, end, f"{_RENAMED[name][0]}({length})"))
        elif name in _BINARY and length is not None:
            edits.append((token.start, end, "bytea"))
        elif (name in _RENAMED or name in _BINARY) and (i in typed or tokens[i - 1].token_type is TokenType.DCOLON):
            edits.append((token.start, end, _RENAMED[name][1] if name in _RENAMED else "bytea"))
    return apply_edits(sql, edits)


def _collation(sql: str, tokens: list[Token], i: int) -> str | None:
    """The collation ``COLLATE`` at ``tokens[i]`` names, when it is one of Redshift's two (as a word or quoted)."""
    if tokens[i].token_type is not TokenType.COLLATE or i + 1 >= len(tokens):
        return None
    if i + 2 < len(tokens) and tokens[i + 2].token_type is TokenType.DOT:
        return None  # a qualified name
    name = tokens[i + 1].text.upper()
    return name if name in ("CASE_SENSITIVE", "CASE_INSENSITIVE") else None


def _column_types(sql: str, tokens: list[Token]) -> set[int]:
    """Where a column's type is written in DDL: after each column's name in the column list of ``CREATE TABLE name
    (...)``, after ``ADD [COLUMN] name`` and after ``ALTER [COLUMN] name TYPE`` (not in a CREATE TABLE AS's or a view's
    query, where a word after a name is its alias)."""
    words = [upper_word(sql, token, quoted=True) for token in tokens]
    typed: set[int] = set()
    if words[:1] == ["CREATE"] and "TABLE" in words[1:4]:
        opening = next((i for i, t in enumerate(tokens) if t.token_type is TokenType.L_PAREN), None)
        if opening is None or "AS" in words[2:opening]:
            return typed
        depth = 0
        for i in range(opening, len(tokens) - 1):
            kind = tokens[i].token_type
            if kind in (TokenType.L_PAREN, TokenType.R_PAREN):
                depth += 1 if kind is TokenType.L_PAREN else -1
                if depth == 0:
                    break
            if depth == 1 and kind in (TokenType.L_PAREN, TokenType.COMMA) and words[i + 1] not in _NOT_COLUMNS:
                typed.add(i + 2)  # ( name TYPE, name TYPE ...
    elif words[:2] == ["ALTER", "TABLE"]:
        for i, word in enumerate(words):
            if word == "ADD" and i + 1 < len(words) and words[i + 1] not in _NOT_COLUMNS:
                typed.add(i + 3 if words[i + 1] == "COLUMN" else i + 2)
            if word == "TYPE" and i >= 2 and words[i - 1]:
                typed.add(i + 1)
    return typed


def _length(tokens: list[Token], i: int) -> str | None:
    """``(n)`` or ``(MAX)`` at ``tokens[i]``: n or MAX; None when no length follows."""
    if i + 2 >= len(tokens) or tokens[i].token_type is not TokenType.L_PAREN:
        return None
    inside, closing = tokens[i + 1], tokens[i + 2]
    if closing.token_type is not TokenType.R_PAREN:
        return None
    if inside.token_type is TokenType.NUMBER:
        return inside.text
    return "MAX" if inside.text.upper() == "MAX" else None
