"""Redshift's table design clauses that sqlglot's Redshift parser has no grammar for, so the SQL guard can read them.

Redshift prints and documents DDL with clauses that only shape how a table is stored, and the parser kept such a
statement as unparsed text (or failed on it), which the guard refuses. :class:`TableDesignGrammar` reads them into
nodes of their own, which the guard allows where it allows the table's other storage options:

- a column's ``DISTKEY`` and ``SORTKEY`` (:class:`ColumnKey`);
- a table's ``SORTKEY AUTO`` (a :class:`sqlglot.exp.SortKeyProperty` of ``AUTO``), ``INTERLEAVED SORTKEY (columns)``
  (one of those columns) and ``ENCODE AUTO`` (:class:`EncodeAuto`);
- ``ALTER TABLE ... ALTER ENCODE AUTO`` and ``ALTER [COLUMN] c ENCODE e`` (:class:`AlterEncode`).

Each rule reads exactly its words and otherwise leaves the tokens to sqlglot's own rules: nothing that was refused
for another reason passes because of them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlglot import exp
from sqlglot.parsers.redshift import RedshiftParser
from sqlglot.tokens import TokenType


class ColumnKey(exp.Expression, exp.ColumnConstraintKind):
    """A column's own ``DISTKEY`` or ``SORTKEY`` (``this``: the keyword)."""


class EncodeAuto(exp.Property):
    """A table's ``ENCODE AUTO``: Redshift chooses each column's compression (its default)."""

    arg_types: ClassVar[dict[str, bool]] = {}


class AlterEncode(exp.Expression):
    """``ALTER ENCODE AUTO`` (no ``this``) or ``ALTER [COLUMN] c ENCODE e`` (``this``: the column): compression
    only."""

    arg_types: ClassVar[dict[str, bool]] = {"this": False, "encoding": True}


class TableDesignGrammar(RedshiftParser):
    """sqlglot's Redshift parser, reading the clauses above too."""

    __slots__ = ()

    CONSTRAINT_PARSERS: ClassVar[dict[str, Any]] = {
        **RedshiftParser.CONSTRAINT_PARSERS,
        "DISTKEY": lambda self: self.expression(ColumnKey(this=exp.var("DISTKEY"))),
        "SORTKEY": lambda self: self.expression(ColumnKey(this=exp.var("SORTKEY"))),
    }
    PROPERTY_PARSERS: ClassVar[dict[str, Any]] = {
        **RedshiftParser.PROPERTY_PARSERS,
        "SORTKEY": lambda self: self._parse_table_sortkey(),
        "INTERLEAVED": lambda self: self._parse_interleaved_sortkey(),
        "ENCODE": lambda self: self._parse_encode_auto(),
    }
    ALTER_ALTER_PARSERS: ClassVar[dict[str, Any]] = {
        **RedshiftParser.ALTER_ALTER_PARSERS,
        "ENCODE": lambda self: self.expression(AlterEncode(encoding=self._parse_auto())),
    }

    def _parse_auto(self) -> exp.Var:
        if not self._match_text_seq("AUTO"):
            self.raise_error("Expecting AUTO")
        return exp.var("AUTO")

    def _parse_table_sortkey(self) -> exp.SortKeyProperty:
        if self._match_text_seq("AUTO"):
            return self.expression(exp.SortKeyProperty(this=exp.var("AUTO")))
        return self._parse_sortkey()

    def _parse_interleaved_sortkey(self) -> exp.SortKeyProperty:
        if not self._match_text_seq("SORTKEY"):
            self.raise_error("Expecting SORTKEY")
        return self._parse_sortkey()

    def _parse_encode_auto(self) -> EncodeAuto:
        self._parse_auto()
        return self.expression(EncodeAuto())

    def _parse_alter_table_alter(self) -> exp.Expr | None:
        if not self._match_texts(self.ALTER_ALTER_PARSERS, advance=False):
            index = self._index
            self._match(TokenType.COLUMN)
            column = self._parse_field(any_token=True)
            if column is not None and self._match_text_seq("ENCODE"):
                encoding = self._parse_var(any_token=True)
                if encoding is not None:
                    return self.expression(AlterEncode(this=column, encoding=encoding))
            self._retreat(index)
        return super()._parse_alter_table_alter()
