"""Map the cheap Redshift-only functions to PostgreSQL, leaving every other statement byte for byte unchanged.

Two tiers, both triggered only when the statement's tokens (not its text: a word inside a string literal or a comment
does not count) name a Redshift-only function:

1. token-level rewrites, which keep the rest of the statement exactly as written:
   ``GETDATE()`` -> start of the current statement, seconds precision, as ``timestamp`` (Redshift's GETDATE);
   ``PG_LAST_COPY_ID()`` -> the query id of the session's last COPY (-1 when there was none), which keys its rows in
   ``stl_load_errors``; ``PG_LAST_COPY_COUNT()`` -> the rows it loaded (0 when there was none);
   ``SYSDATE`` -> start of the current transaction, as ``timestamp`` (Redshift's SYSDATE);
   ``NVL(`` -> ``COALESCE(``, ``LEN(`` -> ``LENGTH(``;
2. for functions whose arguments must be rearranged (NVL2, DECODE, DATEADD, DATEDIFF, CHARINDEX, CONVERT_TIMEZONE) or
   that PostgreSQL has under another form (LISTAGG: ``string_agg(x, sep ORDER BY ...)``, its separator '' when none
   is given, as Redshift's; MEDIAN: ``percentile_cont(0.5) WITHIN GROUP (ORDER BY x)``), sqlglot transpiles
   the statement from Redshift to PostgreSQL. If sqlglot cannot, the tier-1 result is returned and PostgreSQL reports
   the unknown function, which is the honest answer.
"""

from __future__ import annotations

import itertools
import logging
from typing import ClassVar

from sqlglot import exp
from sqlglot.dialects.dialect import groupconcat_sql
from sqlglot.dialects.postgres import Postgres
from sqlglot.dialects.redshift import Redshift
from sqlglot.errors import SqlglotError
from sqlglot.tokens import Token, TokenType

from .lexer import ASCII_LOWER
from .load_errors import LAST_COPY_COUNT_SETTING, LAST_COPY_SETTING

logger = logging.getLogger(__name__)

GETDATE_SQL = "date_trunc('second', statement_timestamp())::timestamp"
SYSDATE_SQL = "transaction_timestamp()::timestamp"
LAST_COPY_ID_SQL = f"coalesce(nullif(current_setting('{LAST_COPY_SETTING}', true), '')::integer, -1)"
LAST_COPY_COUNT_SQL = f"coalesce(nullif(current_setting('{LAST_COPY_COUNT_SETTING}', true), '')::bigint, 0)"
_NO_ARGUMENT_CALLS = {
    "GETDATE": GETDATE_SQL,
    "PG_LAST_COPY_ID": LAST_COPY_ID_SQL,
    "PG_LAST_COPY_COUNT": LAST_COPY_COUNT_SQL,
}
_RENAMES = {"NVL": "COALESCE", "LEN": "LENGTH"}
_NEEDS_TRANSPILE = {"NVL2", "DECODE", "DATEADD", "DATEDIFF", "CHARINDEX", "LISTAGG", "MEDIAN", "CONVERT_TIMEZONE"}
_ALL_NAMES = {*_NO_ARGUMENT_CALLS, "SYSDATE", *_RENAMES, *_NEEDS_TRANSPILE}
_NAME_TOKENS = {TokenType.VAR}


def translate_functions(sql: str) -> str:
    """``sql`` with Redshift-only functions mapped to PostgreSQL and quoted names folded to lower case as Redshift
    folds them; unchanged when it needs neither (or on any doubt)."""
    upper = sql.upper()
    quoted = '"' in sql and any("A" <= c <= "Z" for c in sql)
    if not quoted and not any(name in upper for name in _ALL_NAMES):
        return sql  # the common case: no tokenizing at all
    try:
        tokens = Postgres().tokenize(sql)
    except SqlglotError:
        return sql
    edits, needs_transpile = _plan(sql, tokens)
    if quoted:
        edits = sorted(edits + _folded_names(sql, tokens))
    rewritten = apply_edits(sql, edits)
    if needs_transpile:
        try:
            trees = _parsed_with_placeholders(rewritten)
            return ";\n".join(_KEEPING_PLACEHOLDERS.generate(tree) for tree in trees if tree is not None)
        except SqlglotError as error:
            logger.debug("sqlglot could not transpile, leaving Redshift functions to PostgreSQL: %s", error)
    return rewritten


def _parsed_with_placeholders(sql: str) -> list:
    """``sql`` parsed as Redshift, a word glued to a ``:`` read as a placeholder's name even when it is a keyword:
    sqlglot reads ``:from`` as a colon and FROM, which the Data API binds as the parameter ``from``."""
    dialect = Redshift()
    tokens = dialect.tokenize(sql)
    for colon, word in itertools.pairwise(tokens):
        bare = sql[word.start : word.end + 1] == word.text  # not quoted: :'abc' is a colon and a string
        if colon.token_type is TokenType.COLON and word.start == colon.end + 1 and word.text.isidentifier() and bare:
            word.token_type = TokenType.VAR
    return dialect.parser().parse(tokens, sql)


class _PostgresKeepingPlaceholders(Postgres):
    """PostgreSQL as sqlglot writes it, but for named placeholders, written ``:name`` as the Data API binds them (and
    ``bind_parameters`` after this finds them): sqlglot writes ``%(name)s``, with which a statement using DATEDIFF or
    DECODE beside a parameter would lose every value."""

    class Generator(Postgres.Generator):
        TRANSFORMS: ClassVar[dict] = {
            **Postgres.Generator.TRANSFORMS,
            exp.GroupConcat: lambda self, e: groupconcat_sql(
                self, _listed(e), func_name="STRING_AGG", within_group=False
            ),
        }

        def placeholder_sql(self, expression) -> str:
            return f":{expression.name}" if expression.this else super().placeholder_sql(expression)

        def withingroup_sql(self, expression) -> str:
            # LISTAGG(x, sep) WITHIN GROUP (ORDER BY y) is PostgreSQL's string_agg(x, sep ORDER BY y), which takes
            # no WITHIN GROUP (sqlglot writes one)
            listed, order = expression.this, expression.expression
            if isinstance(listed, exp.GroupConcat) and isinstance(order, exp.Order):
                listed = _listed(listed)
                listed.set("this", exp.Order(this=listed.this, expressions=[o.copy() for o in order.expressions]))
                return self.sql(listed)
            return super().withingroup_sql(expression)

        def is_sql(self, expression) -> str:
            # NVL2(:x, ...) and DECODE(:x, NULL, ...) become ":x IS NULL", where PostgreSQL cannot tell a parameter
            # sent as text without a type ("could not determine data type of parameter $1"): typed as text (a Data
            # API parameter is never NULL, so the answer is the same)
            tested = expression.this
            if isinstance(tested, exp.Placeholder) and tested.this:
                expression = expression.copy()
                expression.set("this", exp.cast(tested.copy(), "text"))
            return super().is_sql(expression)


_KEEPING_PLACEHOLDERS = _PostgresKeepingPlaceholders()


def _listed(listagg: exp.GroupConcat) -> exp.GroupConcat:
    """A copy of LISTAGG as PostgreSQL's string_agg needs it: a separator ('' when none was given, Redshift's default)
    and, for LISTAGG(DISTINCT x, sep), whose separator sqlglot reads into the DISTINCT, that separator back out."""
    listed = listagg.copy()
    distinct = listed.this
    if isinstance(distinct, exp.Distinct) and len(distinct.expressions) == 2 and not listed.args.get("separator"):
        listed.set("separator", distinct.expressions[1].pop())
    if not listed.args.get("separator"):
        listed.set("separator", exp.Literal.string(""))
    return listed


def _plan(sql: str, tokens: list[Token]) -> tuple[list[tuple[int, int, str]], bool]:
    """Edits as (start, end_inclusive, replacement) and whether a function needs a full transpile."""
    edits: list[tuple[int, int, str]] = []
    needs_transpile = False
    for i, token in enumerate(tokens):
        if token.token_type not in _NAME_TOKENS or sql[token.start] == '"':
            continue  # quoted identifiers are never functions
        name = token.text.upper()
        previous = tokens[i - 1] if i else None
        if previous is not None and previous.token_type in (TokenType.DOT, TokenType.DCOLON):
            continue  # a qualified name (x.len) or a type, not our function
        following = tokens[i + 1 : i + 3]
        is_call = bool(following) and following[0].token_type is TokenType.L_PAREN
        no_arguments = is_call and len(following) == 2 and following[1].token_type is TokenType.R_PAREN
        if name in _NO_ARGUMENT_CALLS and no_arguments:
            edits.append((token.start, following[1].end, _NO_ARGUMENT_CALLS[name]))
        elif name == "SYSDATE" and not is_call:
            edits.append((token.start, token.end, SYSDATE_SQL))
        elif name in _RENAMES and is_call:
            edits.append((token.start, token.end, _RENAMES[name]))
        elif name in _NEEDS_TRANSPILE and is_call and not _is_postgres_decode(name, tokens, i):
            needs_transpile = True
    return edits, needs_transpile


def _folded_names(sql: str, tokens: list[Token]) -> list[tuple[int, int, str]]:
    """Quoted ("delimited") names with their ASCII letters in lower case: "ASCII letters in standard and delimited
    identifiers are case-insensitive and are folded to lowercase in the database" (Redshift's "Names and
    identifiers"), where PostgreSQL keeps a quoted name's case, so ``"Email"`` named a column Email locally and email
    on Redshift. (A cluster may set enable_case_sensitive_identifier; the emulator plays the default.)"""
    edits = []
    for token in tokens:
        if token.token_type is TokenType.IDENTIFIER and sql[token.start] == '"':
            text = sql[token.start : token.end + 1]
            folded = text.translate(ASCII_LOWER)
            if folded != text:
                edits.append((token.start, token.end, folded))
    return edits


def _is_postgres_decode(name: str, tokens: list[Token], i: int) -> bool:
    """PostgreSQL's own decode(data, format) has two arguments; Redshift's DECODE at least three."""
    if name != "DECODE":
        return False
    depth, commas = 0, 0
    for token in tokens[i + 1 :]:
        if token.token_type is TokenType.L_PAREN:
            depth += 1
        elif token.token_type is TokenType.R_PAREN:
            depth -= 1
            if depth == 0:
                break
        elif token.token_type is TokenType.COMMA and depth == 1:
            commas += 1
    return commas < 2


def apply_edits(sql: str, edits: list[tuple[int, int, str]]) -> str:
    """``sql`` with each (start, end inclusive, replacement) made, in order of position (they do not overlap)."""
    out, position = [], 0
    for start, end, replacement in edits:
        out.append(sql[position:start])
        out.append(replacement)
        position = end + 1
    out.append(sql[position:])
    return "".join(out)
