"""Redshift's table design clauses that sqlglot's Redshift parser has no grammar for, so the SQL guard can read them.

Redshift prints and documents DDL with clauses that only shape how a table is stored, and the parser kept such a
statement as unparsed text (or failed on it), which the guard refuses. :class:`TableDesignGrammar` reads them into
nodes of their own, which the guard allows where it allows the table's other storage options:

- a column's ``DISTKEY`` and ``SORTKEY`` (:class:`ColumnKey`);
- a table's ``SORTKEY AUTO`` (:class:`SortKeyAuto`), ``INTERLEAVED SORTKEY (columns)`` (a
  :class:`sqlglot.exp.SortKeyProperty`, as a compound one) and ``ENCODE AUTO`` (:class:`EncodeAuto`);
- ``ALTER TABLE ... ALTER ENCODE AUTO`` and ``ALTER [COLUMN] c ENCODE e`` (:class:`AlterEncode`).

Each rule reads exactly its words and otherwise leaves the tokens to sqlglot's own rules: nothing that was refused
for another reason passes because of them. :class:`DesignWriter` writes the nodes back as Redshift spells them, for a
refusal to name one (a view's ``SORTKEY AUTO``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlglot import exp
from sqlglot.generators.redshift import RedshiftGenerator
from sqlglot.parsers.redshift import RedshiftParser
from sqlglot.tokens import TokenType

#: Redshift's compression encodings for a column (its "Compression encodings"); AUTO is the table's.
COLUMN_ENCODINGS = frozenset(
    {
        "RAW",
        "AZ64",
        "BYTEDICT",
        "DELTA",
        "DELTA32K",
        "LZO",
        "MOSTLY8",
        "MOSTLY16",
        "MOSTLY32",
        "RUNLENGTH",
        "TEXT255",
        "TEXT32K",
        "ZSTD",
    }
)


class ColumnKey(exp.Expression, exp.ColumnConstraintKind):
    """A column's own ``DISTKEY`` or ``SORTKEY`` (``this``: the keyword)."""


class SortKeyAuto(exp.Property):
    """A table's ``SORTKEY AUTO``: Redshift chooses the sort key (its default)."""

    arg_types: ClassVar[dict[str, bool]] = {}


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
    # sqlglot calls a property's parser with default=True after DEFAULT (DEFAULT CHARACTER SET): none of these
    PROPERTY_PARSERS: ClassVar[dict[str, Any]] = {
        **RedshiftParser.PROPERTY_PARSERS,
        "SORTKEY": lambda self, default=False: self._no_default(default) or self._parse_table_sortkey(),
        "INTERLEAVED": lambda self, default=False: self._no_default(default) or self._parse_interleaved_sortkey(),
        "ENCODE": lambda self, default=False: self._no_default(default) or self._parse_encode_auto(),
    }
    ALTER_ALTER_PARSERS: ClassVar[dict[str, Any]] = {
        **RedshiftParser.ALTER_ALTER_PARSERS,
        "ENCODE": lambda self: self.expression(AlterEncode(encoding=self._parse_auto())),
    }

    def _no_default(self, default: bool) -> None:
        if default:
            self.raise_error("Expecting a table option after DEFAULT")

    def _parse_auto(self) -> exp.Var:
        if not self._match_text_seq("AUTO"):
            self.raise_error("Expecting AUTO")
        return exp.var("AUTO")

    def _parse_table_sortkey(self) -> exp.SortKeyProperty | SortKeyAuto:
        if self._match_text_seq("AUTO"):
            return self.expression(SortKeyAuto())
        return self._parse_sortkey()

    def _parse_interleaved_sortkey(self) -> exp.SortKeyProperty:
        if not self._match_text_seq("SORTKEY"):
            self.raise_error("Expecting SORTKEY")
        return self._parse_sortkey()

    def _parse_encode_auto(self) -> EncodeAuto:
        self._parse_auto()
        return self.expression(EncodeAuto())

    def _parse_alter_table_alter(self) -> exp.Expr | None:
        """``ALTER [COLUMN] c ENCODE e``, with ``c`` a name and ``e`` one of :data:`COLUMN_ENCODINGS`; any other
        ALTER as sqlglot reads it."""
        index = self._index
        self._match(TokenType.COLUMN)
        name, keyword = self._curr, self._next
        if (
            name
            and keyword
            and name.token_type in self.ID_VAR_TOKENS  # a word, a quoted name, or a keyword names may be
            and keyword.token_type is TokenType.VAR
            and keyword.text.upper() == "ENCODE"
        ):
            column = self._parse_id_var()
            self._advance()
            encoding = self._curr
            if (
                encoding is None
                or encoding.token_type is not TokenType.VAR
                or encoding.text.upper() not in COLUMN_ENCODINGS
            ):
                self.raise_error(f"Expecting a column encoding ({', '.join(sorted(COLUMN_ENCODINGS))})")
            self._advance()
            return self.expression(AlterEncode(this=column, encoding=exp.var(encoding.text.upper())))
        self._retreat(index)
        return super()._parse_alter_table_alter()


class DesignWriter(RedshiftGenerator):
    """sqlglot's Redshift generator, writing the clauses above too."""

    TRANSFORMS: ClassVar[dict[type[exp.Expression], Any]] = {
        **RedshiftGenerator.TRANSFORMS,
        ColumnKey: lambda self, e: e.name,
        SortKeyAuto: lambda self, e: "SORTKEY AUTO",
        EncodeAuto: lambda self, e: "ENCODE AUTO",
        AlterEncode: lambda self, e: " ".join(
            part for part in ("ALTER", self.sql(e, "this"), "ENCODE", self.sql(e, "encoding")) if part
        ),
    }
