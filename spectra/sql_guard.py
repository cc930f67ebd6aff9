"""The SQL guard: the query API is read-only unless a tenant may write, and then only into the schemas it owns.

Isolation lives in the warehouse (each tenant is its own database user under row-level security), so the guard does
not decide what data a statement may read. It decides what kind of statement may run at all. It parses with sqlglot's
Redshift dialect and works on the tree, never on the text; what it does not understand is refused (fail closed).

What runs
    By default only reads: SELECT (and WITH / UNION / INTERSECT / EXCEPT), EXPLAIN without ANALYZE, and SHOW.
    A tenant flagged ``allow_writes`` may also run INSERT, UPDATE, DELETE, MERGE, TRUNCATE, SELECT ... INTO,
    CREATE TABLE / VIEW, DROP TABLE / VIEW and ALTER TABLE (add, drop, rename or retype a column, rename the table,
    change its distribution, sort key or compression, add or drop a constraint), when every object written,
    created, altered or dropped is named ``schema.object`` with the schema one of the tenant's ``owned_schemas``.
    Reading from other schemas in the same statement is fine: the warehouse's grants decide that.

Decisions where the rules could go either way
    - Unqualified write targets are refused, not resolved: they resolve through the session's ``search_path``, which
      the guard cannot see (and temporary tables shadow everything). Three-part names (``db.schema.table``) are
      refused too: the guard does not know the database the statement runs in.
    - Schema names compare as Redshift folds unquoted ones (lower case); quoted names compare exactly, so a quoted
      ``"Owned"`` never passes for ``owned``: Redshift's default folds it to ``owned`` too (and the emulator does),
      but on a cluster with ``enable_case_sensitive_identifier`` it is another schema. Refused, it is one the tenant
      can write unquoted.
    - Temporary tables, materialized views, ``CASCADE`` (it drops or truncates objects outside the owned schemas),
      ``COMMENT ON`` and DDL options sqlglot keeps as unparsed text are refused even with the flag, and so are
      objects in schemas named ``pg_...`` (the system's; ``pg_temp`` is the session's temporary one) even where the
      tenant record lists such a schema as owned.
    - Transaction control (BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT) is refused: a tenant's statements
      share a kept-alive Data API session, and a transaction left open there would hold locks and swallow later
      statements. Each statement runs in its own implicit transaction; multi-step loads belong to the Bulk API.
    - EXPLAIN checks the statement it explains with the same rules (explaining a write needs the write flag).
    - A write's clauses are Redshift's (:data:`_CLAUSES`), and so are a table's column attributes and constraints
      (:data:`_COLUMN_ATTRIBUTES`): sqlglot also reads other dialects' (RETURNING, ON CONFLICT, UPDATE ... LIMIT,
      CHECK), which are refused by name for every tenant rather than left to the warehouse.
    - A backslash before a quote in a plain string literal is refused: whether it escapes the quote depends on the
      server's ``standard_conforming_strings``, so the guard and the warehouse could disagree on where the string,
      and so the statement, ends. ``''`` means the same everywhere.
    - Unicode escapes (``U&"..."`` identifiers, ``U&'...'`` strings) are refused: PostgreSQL decodes
      ``U&"set\\005fconfig"`` to the name ``set_config``, where sqlglot reads a column ``U``, an ``&`` and a function
      named as written, so the guard would check another statement than the one that runs. Redshift documents no such
      escapes; write the characters themselves.
    - A NUL character (U+0000) anywhere is refused (``nul_character``): the warehouse reads a statement only up to
      it, so a NUL in a ``--`` comment would run the statement's first part alone, where the guard checks the whole.
      Redshift's ``@`` (absolute value) is refused (``at_sign``: sqlglot reads it as a parameter); write ``abs(x)``.
    - A ``$`` that is not a dollar quote with an ASCII tag (``$$...$$``, ``$tag$...$tag$``) or a positional ``$1``
      is refused, and so is white space other than space, tab, LF, CR, FF and VT outside quotes: PostgreSQL reads
      ``$<no-break space>$`` as a dollar quote where sqlglot reads two parameters and a string, so a DELETE the
      warehouse runs would be a string literal to the guard.
    - More generally, a statement whose code the warehouse would read elsewhere than sqlglot does is refused
      (``ambiguous_sql``): :mod:`spectra.sql_layout` reads it by PostgreSQL's lexical rules, and every character must
      be code to both or to neither. sqlglot counts ``/*/*`` as one comment (PostgreSQL nests: two), reads ``*/*``
      inside a nested comment as a close and a reopen, and the operator ``#-`` over the first dash of ``#--``: each
      can hide a DELETE in what the guard takes for a comment or a string. Only the remainder sqlglot keeps as a string
      after a statement's opening SHOW or EXPLAIN is left out (it is checked on its own): a FETCH, or a BEGIN then a
      FETCH, inside a statement makes sqlglot's tokenizer do the same, and there the "string" is code. A name
      holding ``#`` before a word (``a#set_config``) is refused too: one name to sqlglot, an operator and a call to
      the warehouse.

Refused whatever the flag
    External tables, views and schemas (they read and write S3 with the cluster's role); COPY and UNLOAD (the same);
    VACUUM, ANALYZE, LOCK and ``SELECT ... FOR UPDATE``; GRANT and REVOKE; users, roles, groups, RLS policies,
    ownership and session authorization; SET and RESET of anything (search_path, WLM slots, timeouts) and
    ``set_config(...)``; CALL, CREATE FUNCTION / PROCEDURE / LIBRARY / MODEL; CREATE, ALTER or DROP of databases and
    schemas; DROP of anything but tables and views; transaction control; cursors and prepared statements; statements
    nested in other statements (data-modifying CTEs); more than one statement per query.

Bounded work
    - Size: ``max_bytes`` (413 beyond it).
    - Nesting: before parsing, the token stream's depth of parentheses, brackets and CASE ... END is counted (the
      tokenizer is a loop, not a recursion). Deeper than ``MAX_NESTING`` (256; generated SQL needs 100 and more) is
      a 400. sqlglot's parser recurses about 25 Python frames per level (measured on sqlglot 30.30: function calls
      24, scalar subqueries 25, parentheses 21, CASE 19), so the guard raises the interpreter's recursion limit to
      what ``MAX_NESTING`` needs (frames in use + 40 per level + 1000), only ever upwards, before parsing. That is
      safe for the C stack: since Python 3.11 Python-to-Python calls do not grow it (the parser at 300 levels runs
      in a thread with a 256 KB stack). Nesting the token count does not see (chains of NOT or unary minus) still
      ends in a RecursionError at that limit, which becomes the same 400. The limit is process-wide: on Python 3.11
      C code that counts against it (``json.loads``) may then recurse about 11,000 deep before its RecursionError,
      which the 8 MB stacks of Lambda and of Python threads hold; from 3.12 C recursion has a limit of its own.
    - Time: sqlglot's Redshift parser copies the FROM clause of every SELECT to look for implicit UNNESTs, which is
      quadratic in nested derived tables (100 KB of them took 27 s); the guard's parser skips that step (SUPER
      navigation in FROM then reads as a table name, which is all the guard needs). Some constructs backtrack
      exponentially (``ARRAY[ARRAY[...]]``: 20 levels, minutes), so the parser also checks a deadline
      (``PARSE_SECONDS`` of the thread's CPU time, so a busy machine does not turn load into refusals) every few
      hundred tokens it consumes, and a statement that has not parsed by then is a 400. An ordinary statement at
      the 100 KB size limit parses in about 0.4 s.
    - The guard's own walks over the tree are iterative (sqlglot's ``walk``), never recursive.
"""

from __future__ import annotations

import itertools
import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlglot import exp
from sqlglot.dialects.redshift import Redshift
from sqlglot.errors import ErrorLevel, SqlglotError
from sqlglot.tokens import Token, TokenType

from spectra import sql_layout
from spectra.errors import InvalidRequest, PayloadTooLarge, SqlRejected
from spectra.sql_design import AlterEncode, ColumnKey, DesignWriter, EncodeAuto, SortKeyAuto, TableDesignGrammar

# sqlglot logs a warning for every statement it keeps as an opaque Command; the guard handles those itself.
logging.getLogger("sqlglot").setLevel(logging.ERROR)
logger = logging.getLogger(__name__)

MAX_NESTING = 256
#: The parser's CPU budget. 1 s refuses ordinary statements on a slow, loaded 2-core machine (a 100 KB one parses
#: in about 0.4 s on a fast one; with 1 s, a bulk query of 75 CASE columns, 47 ms alone, was refused too_complex once
#: in a loaded `make test`): 3 s keeps a valid statement from a non-deterministic 400 and still stops a backtracking
#: one (minutes unchecked) well inside the API's 29 s.
PARSE_SECONDS = 3.0
_FRAMES_PER_LEVEL = 40
_FRAMES_HEADROOM = 1_000
_DEADLINE_EVERY = 256  # tokens consumed between two looks at the clock

BULK_HINT = "write data with the Bulk API (POST /v1/bulk/jobs) or by dropping files into the ingest bucket"

_DIALECT = Redshift()
_OPENERS = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE, TokenType.CASE}
_CLOSERS = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE, TokenType.END}
_PREFIXED_STRINGS = {TokenType.NATIONAL_STRING, TokenType.UNICODE_STRING}  # N'...', U&'...'

_WRITES: tuple[type[exp.Expression], ...] = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.TruncateTable,
    exp.Create,
    exp.Drop,
    exp.Alter,
)
# The clauses each write statement has in Redshift, by sqlglot's names for them. sqlglot also reads other dialects'
# (RETURNING, ON CONFLICT, UPDATE ... ORDER BY / LIMIT, TRUNCATE ... RESTART IDENTITY, ALTER TABLE IF EXISTS): one of
# those is refused by name, as Redshift would refuse it, rather than sent to the warehouse (or run by the local
# stack's PostgreSQL, which has some of them, so that it worked locally and failed on Redshift).
_CLAUSES: dict[type[exp.Expression], frozenset[str]] = {
    exp.Insert: frozenset({"with_", "this", "expression", "default"}),
    exp.Update: frozenset({"with_", "this", "expressions", "from_", "where"}),
    exp.Delete: frozenset({"with_", "this", "using", "where", "tables"}),
    exp.Merge: frozenset({"with_", "this", "using", "on", "whens"}),
    exp.TruncateTable: frozenset({"expressions", "option"}),
    exp.Create: frozenset(
        {"this", "kind", "expression", "properties", "exists", "replace", "no_schema_binding", "clone"}
    ),
    exp.Drop: frozenset({"this", "tables", "kind", "exists", "cascade", "restrict", "materialized"}),
    exp.Alter: frozenset({"this", "kind", "actions", "options", "cascade"}),
}
_CLAUSE_NAMES = {
    "returning": "RETURNING",
    "conflict": "ON CONFLICT",
    "order": "ORDER BY",
    "limit": "LIMIT",
    "by_name": "BY NAME",
    "overwrite": "OVERWRITE",
    "identity": "RESTART / CONTINUE IDENTITY",
    "only": "ONLY",
    "exists": "IF EXISTS",
    "purge": "PURGE",
}
# Statements as sqlglot builds them. Nested anywhere but at the root (a data-modifying CTE, say), each is refused;
# EXPLAIN's argument is parsed and checked on its own.
_STATEMENTS: tuple[type[exp.Expression], ...] = (
    *_WRITES,
    exp.Copy,
    exp.Command,
    exp.Set,
    exp.Grant,
    exp.Revoke,
    exp.Analyze,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Describe,
    exp.Use,
    exp.Comment,
    exp.Cache,
    exp.Uncache,
    exp.Kill,
    exp.LoadData,
    exp.Pragma,
    exp.Refresh,
    exp.Declare,
    exp.Block,
    exp.WhileBlock,
)
# CREATE TABLE options that only shape storage. Anything else (EXTERNAL, LOCATION, TEMPORARY, MATERIALIZED, ...)
# is refused.
_CREATE_PROPERTIES: tuple[type[exp.Expression], ...] = (
    exp.BackupProperty,
    exp.DistKeyProperty,
    exp.DistStyleProperty,
    exp.SortKeyProperty,
    SortKeyAuto,
    EncodeAuto,
)
_CREATE_OPTIONS = (
    "a table may set BACKUP, DISTSTYLE, DISTKEY, a COMPOUND or INTERLEAVED SORTKEY of its columns or SORTKEY AUTO, "
    "and ENCODE AUTO or ENCODE per column"
)
_ALTER_FORMS = (
    "ALTER TABLE may add, alter, rename or drop a column or constraint, rename the table, ALTER DISTSTYLE, DISTKEY, "
    "SORTKEY or ENCODE AUTO, and ALTER COLUMN ... ENCODE"
)
# What a column or a table's constraint may be in Redshift (the table's elements as sqlglot reads them: a
# constraint of a column, or one of the table). CHECK, computed columns and the like are PostgreSQL's and others'.
_COLUMN_ATTRIBUTES: tuple[type[exp.Expression], ...] = (
    exp.Identifier,  # a column's name in CREATE TABLE t (a, b) AS SELECT ...
    exp.LikeProperty,  # CREATE TABLE t (LIKE other)
    exp.NotNullColumnConstraint,
    exp.DefaultColumnConstraint,
    exp.GeneratedAsIdentityColumnConstraint,
    exp.EncodeColumnConstraint,
    ColumnKey,
    exp.CollateColumnConstraint,
    exp.UniqueColumnConstraint,
    exp.PrimaryKeyColumnConstraint,
    exp.PrimaryKey,
    exp.Reference,
    exp.ForeignKey,
)
_COLUMN_FORMS = (
    "a column may have DEFAULT, IDENTITY, ENCODE, DISTKEY, SORTKEY, COLLATE, NOT NULL or NULL, UNIQUE, PRIMARY KEY "
    "and REFERENCES, and a table PRIMARY KEY, UNIQUE and FOREIGN KEY constraints (Redshift has no CHECK)"
)
# ALTER TABLE actions that change only the table itself. OWNER TO, ROW LEVEL SECURITY, APPEND FROM, SET LOCATION
# and friends are either kept as Commands by sqlglot or are other node types, and are refused.
_ALTER_ACTIONS: tuple[type[exp.Expression], ...] = (
    exp.ColumnDef,  # ADD COLUMN
    exp.AlterColumn,
    exp.RenameColumn,
    exp.AlterRename,
    exp.AlterDistStyle,
    exp.AlterSortKey,
    AlterEncode,
    exp.AddConstraint,
    exp.Drop,  # DROP COLUMN / CONSTRAINT, checked below
)

# Why a statement whose root sqlglot parsed is refused, by node type. Each message says what to do instead.
_REFUSALS: dict[type[exp.Expression], tuple[str, str]] = {
    exp.Copy: ("load_unload", f"COPY is not allowed in queries: it reads S3 with the cluster's role; {BULK_HINT}"),
    exp.Set: ("session", "SET is not allowed: session settings (search_path, WLM slots, timeouts) are the service's"),
    exp.Grant: ("privileges", "GRANT is not allowed: privileges are managed by the warehouse administrator"),
    exp.Revoke: ("privileges", "REVOKE is not allowed: privileges are managed by the warehouse administrator"),
    exp.Analyze: ("maintenance", "ANALYZE is not allowed: table maintenance is the warehouse administrator's"),
    exp.Transaction: ("transaction", "transaction control is not allowed: each query runs in its own transaction"),
    exp.Commit: ("transaction", "transaction control is not allowed: each query runs in its own transaction"),
    exp.Rollback: ("transaction", "transaction control is not allowed: each query runs in its own transaction"),
}
# Why an opaque Command is refused, by its first keyword.
_PARAMETERS_HINT = "a query takes values through :name placeholders in its sql and a parameters list, [{name, value}]"
_CURSORS_HINT = "there are no cursors; a result of any size pages through GET /v1/jobs/{job_id}/results"
_COMMAND_REFUSALS: dict[str, tuple[str, str]] = {
    "UNLOAD": (
        "load_unload",
        "UNLOAD is not allowed: it writes S3 with the cluster's role; results of any size come from "
        f"GET /v1/jobs/{{job_id}}/results, and {BULK_HINT}",
    ),
    "VACUUM": ("maintenance", "VACUUM is not allowed: table maintenance is the warehouse administrator's"),
    "ANALYZE": ("maintenance", "ANALYZE is not allowed: table maintenance is the warehouse administrator's"),
    "LOCK": ("maintenance", "LOCK is not allowed: explicit locks outlive the statement in a shared session"),
    "SET": ("session", "SET is not allowed: session settings (search_path, WLM slots, timeouts) are the service's"),
    "RESET": ("session", "RESET is not allowed: session settings are the service's"),
    "CALL": ("routine", "CALL is not allowed: stored procedures can run anything as their owner"),
    "GRANT": ("privileges", "GRANT is not allowed: privileges are managed by the warehouse administrator"),
    "REVOKE": ("privileges", "REVOKE is not allowed: privileges are managed by the warehouse administrator"),
    # Their next word is a name of the tenant's choosing, not part of the statement's kind: the generic message
    # below would echo it upper-cased as if a keyword ("PREPARE MYPLAN statements are not allowed").
    "PREPARE": ("unsupported", f"PREPARE is not allowed: {_PARAMETERS_HINT}"),
    "EXECUTE": ("unsupported", f"EXECUTE is not allowed: {_PARAMETERS_HINT}"),
    "DECLARE": ("unsupported", f"DECLARE is not allowed: {_CURSORS_HINT}"),
    "FETCH": ("unsupported", f"FETCH is not allowed: {_CURSORS_HINT}"),
}


@dataclass(frozen=True)
class WriteGrant:
    """What a tenant may change: nothing unless ``allow_writes``, and then only objects in ``owned_schemas``."""

    allow_writes: bool = False
    owned_schemas: frozenset[str] = frozenset()


def check_sql(sql: str, *, max_bytes: int, allow_writes: bool = False, owned_schemas: Iterable[str] = ()) -> str:
    """Return the statement, stripped, if the tenant may run it; raise a typed error that says why not.

    ``allow_writes`` and ``owned_schemas`` are the tenant's flag and the schemas it owns (lower-case names).
    Refusals are :class:`SqlRejected` with ``details={"reason": ...}``, a stable word for programs.
    """
    return parse_checked(sql, max_bytes=max_bytes, allow_writes=allow_writes, owned_schemas=owned_schemas)[0]


def parse_checked(
    sql: str, *, max_bytes: int, allow_writes: bool = False, owned_schemas: Iterable[str] = ()
) -> tuple[str, exp.Expression]:
    """:func:`check_sql`, also returning the statement's tree (for callers that work on it further, such as the
    binding of typed parameters in :mod:`spectra.parameters`, so the statement is parsed once)."""
    statement = sql.strip()
    if not statement.strip(";").strip():
        raise InvalidRequest("sql is empty")
    size = len(statement.encode())
    if size > max_bytes:
        raise PayloadTooLarge(f"sql is {size} bytes; the limit is {max_bytes}", details={"limit": max_bytes})
    if (nul := sql.find("\x00")) >= 0:  # counted in the sql as sent
        raise _rejected(
            "nul_character",
            f"sql holds a NUL character (U+0000) at character {nul + 1}: the warehouse reads a statement only up to"
            " it, so what ran would not be what was checked",
        )
    grant = WriteGrant(allow_writes, frozenset(s.lower() for s in owned_schemas) if allow_writes else frozenset())
    trees = _parse(statement)
    if not trees:  # comments alone: empty, as blanks and semicolons alone are (not two statements' refusal)
        raise InvalidRequest("sql is empty: it holds only comments")
    if len(trees) != 1:
        raise _rejected("multiple_statements", f"send exactly one statement per query; found {len(trees)}")
    _check_statement(trees[0], grant)
    return statement, trees[0]


def parse_statement(sql: str) -> exp.Expression | None:
    """One statement's tree, parsed within the guard's bounds (nesting, recursion limit, time) but not judged; None
    when it is not exactly one statement that parses. For code that reads a statement the guard accepted earlier,
    in another process (the executor's recursion limit is Python's default: a plain sqlglot parse of SQL nested 60
    levels deep, which the guard accepts, raises RecursionError there)."""
    try:
        trees = _parse(sql.strip())
    except SqlRejected:
        return None
    return trees[0] if len(trees) == 1 else None


def embeddable(sql: str) -> str:
    """The statement made fit to sit inside another (a subquery, UNLOAD's quoted query): without its trailing
    semicolons, and, when a comment follows its last token, ending with a line break, so that a trailing ``--``
    comment ends before whatever comes after it. A statement the tokenizer cannot read (the guard refused it long
    before) is returned as it is."""
    try:
        tokens = _DIALECT.tokenize(sql)
    except SqlglotError:
        return sql
    body = sql
    while tokens and tokens[-1].token_type is TokenType.SEMICOLON:
        body = sql[: tokens.pop().start]
    body = body.rstrip()
    if tokens and body[tokens[-1].end + 1 :].strip():  # a comment after the last token
        body += "\n"
    return body


def _rejected(reason: str, message: str) -> SqlRejected:
    return SqlRejected(message, details={"reason": reason})


# --- parsing, bounded -------------------------------------------------------------------------------------------


class _OutOfTime(Exception):
    pass


_shared_deadline: ContextVar[float | None] = ContextVar("spectra_sql_guard_deadline", default=None)


@contextmanager
def one_parse_budget() -> Iterator[None]:
    """The parses inside share one :data:`PARSE_SECONDS` of the thread's CPU, counted from here, where each would
    have one of its own. A query request parses its statement as sent and, once its typed parameters are bound, again
    (:func:`spectra.queries._requested_job`): a statement of 48,000 ``1+`` terms and one
    typed parameter took 3.0 s to parse, 1.2 s to bind and 3.0 s to parse again on the 2-core machine (ad hoc), an
    estimated 25 s on the API function's share of a core (512 MB: about 0.29 of a vCPU), near the 29 s API Gateway
    waits, past which a client retries (without an Idempotency-Key, into a second job)."""
    token = _shared_deadline.set(time.thread_time() + PARSE_SECONDS)
    try:
        yield
    finally:
        _shared_deadline.reset(token)


class _GuardParser(TableDesignGrammar):
    """sqlglot's Redshift parser, reading Redshift's table design clauses (:mod:`spectra.sql_design`), minus the
    quadratic implicit-UNNEST pass, plus a deadline."""

    __slots__ = ("_consumed", "_deadline")
    SUPPORTS_IMPLICIT_UNNEST = False

    def __init__(self, deadline: float) -> None:
        super().__init__(dialect=_DIALECT)
        self._deadline = deadline
        self._consumed = 0

    def _advance(self, times: int = 1) -> None:
        # Every token consumed or backtracked over passes here, so runaway backtracking meets the clock too.
        self._consumed += 1
        if self._consumed % _DEADLINE_EVERY == 0 and time.thread_time() > self._deadline:
            raise _OutOfTime
        super()._advance(times)


def _tokenize(sql: str) -> list[Token]:
    try:
        tokens = _DIALECT.tokenize(sql)
    except SqlglotError as exc:  # TokenError for an unclosed quote, comment or $$ body
        raise _rejected("syntax", f"sql could not be parsed: {_first_error(exc)}") from exc
    _check_strings(sql, tokens)
    _check_unicode_escapes(sql, tokens)
    _check_dollars(sql, tokens)
    _check_layout(sql, tokens)
    _name_placeholders(sql, tokens)
    return tokens


def _name_placeholders(sql: str, tokens: list[Token]) -> None:
    """Read a word right after a ``:`` as a placeholder's name, keywords too: sqlglot reads ``:from`` as a colon and
    the keyword FROM, so ``where d >= :from and d < :to`` would be refused as a syntax error at a ``:`` the tenant
    wrote as the Data API takes it. Only a bare word glued to its colon is a name, as the Data API and
    :func:`spectra.parameters.placeholders` read it: a string (``:'abc'``, whose token text is the word without its
    quotes) stays what it is, and ``::`` is a token of its own (a cast), untouched."""
    for colon, word in itertools.pairwise(tokens):
        if colon.token_type is TokenType.COLON and word.token_type is TokenType.IDENTIFIER:
            # sqlglot reads :"x" as the placeholder x too; the Data API reads a bare word only (bound as a
            # string it would run as a syntax error, as a number it would run, CAST(:x AS BIGINT))
            quoted = f'"{word.text}"'
            raise _rejected(
                "ambiguous_sql", f"a placeholder's name is a bare word (:{word.text}), not a quoted name (:{quoted})"
            )
        if (
            colon.token_type is TokenType.COLON
            and word.start > colon.end + 1
            and _PLACEHOLDER_NAME.fullmatch(word.text)
            and sql[word.start : word.end + 1] == word.text
        ):
            # sqlglot reads ": x" as the placeholder x, the Data API and the warehouse do not: bound here, it would
            # run as a syntax error
            raise _rejected(
                "ambiguous_sql",
                f"a placeholder's name follows its colon with no space (:{word.text}); the warehouse does not read"
                f" ': {word.text}' as one",
            )
        if (
            colon.token_type is TokenType.COLON
            and word.start == colon.end + 1
            and word.token_type is not TokenType.VAR
            and _PLACEHOLDER_NAME.fullmatch(word.text)
            and sql[word.start : word.end + 1] == word.text
        ):
            word.token_type = TokenType.VAR


#: Texts whose parse (trees, or refusal) is kept: a request reads its statement up to five times (the guard, an export's
#: checks, the query's object), each parse bounded by :data:`PARSE_SECONDS`, so one request could spend five times that
#: (14.5 s of CPU for a 167-byte export, past the API's 29 s at Lambda's share of a core). The executor reads it again
#: in another process. A text's trees take about 170 times its size in memory (17 MB for 100 KB), so what is kept is
#: bounded by the texts' total size as well.
PARSES_KEPT = 8
PARSED_CHARS_KEPT = 128 * 1024  # a 100 KB statement (the most the API takes) and some: about 22 MB of trees
_parses: OrderedDict[str, list[exp.Expression] | tuple[str, Any]] = OrderedDict()
_parses_lock = threading.Lock()


def _parse(sql: str) -> list[exp.Expression]:
    """The statements of ``sql``, parsed within the guard's bounds once per text (:data:`PARSES_KEPT`); each caller
    gets trees of its own (callers change them: a typed parameter bound in place)."""
    with _parses_lock:
        kept = _parses.get(sql)
        if kept is not None:
            _parses.move_to_end(sql)
    if kept is None:
        try:
            kept = _parse_once(sql)
        except SqlRejected as exc:
            if getattr(exc, "budget_shared", False):
                # out of a budget an earlier parse shared (one_parse_budget): the same text sent alone, or in
                # another request, might fit its own; kept, it would be refused from here
                raise
            kept = (exc.message, exc.details)  # not the exception: its traceback holds the parser's frames
        _keep(sql, kept)
    if isinstance(kept, tuple):
        raise SqlRejected(kept[0], details=kept[1])
    return [tree.copy() for tree in kept]


def _keep(sql: str, parsed: list[exp.Expression] | tuple[str, Any]) -> None:
    if len(sql) > PARSED_CHARS_KEPT:
        return
    with _parses_lock:
        _parses[sql] = parsed
        while len(_parses) > PARSES_KEPT or sum(map(len, _parses)) > PARSED_CHARS_KEPT:
            _parses.popitem(last=False)


def _parse_once(sql: str) -> list[exp.Expression]:
    tokens = _tokenize(sql)  # linear, its checks too: the deadline is the parser's, which can backtrack
    depth = _nesting(tokens)
    if depth > MAX_NESTING:
        raise _rejected("nesting", f"sql is nested {depth} levels deep; the limit is {MAX_NESTING}")
    _allow_recursion(MAX_NESTING)
    own = time.thread_time() + PARSE_SECONDS
    shared = _shared_deadline.get()
    deadline = own if shared is None else min(own, shared)
    try:
        trees = _GuardParser(deadline).parse(tokens, sql)
    except SqlglotError as exc:
        raise _rejected("syntax", f"sql could not be parsed: {_first_error(exc)}") from exc
    except RecursionError:
        raise _rejected("nesting", f"sql is nested too deeply; the limit is {MAX_NESTING} levels") from None
    except _OutOfTime:
        refusal = _rejected("too_complex", f"sql took more than {PARSE_SECONDS:g} s to parse; simplify it")
        refusal.budget_shared = deadline < own  # a budget of its own might have done: not kept for the text (_parse)
        raise refusal from None
    except Exception as exc:  # sqlglot's own bugs (a ValueError, an AttributeError): refused, never a 500
        logger.warning("sqlglot failed on a statement (%s); refused as not parsed", type(exc).__name__)
        raise _rejected("syntax", "sql could not be parsed") from None
    return [tree for tree in trees if tree is not None and not isinstance(tree, exp.Semicolon)]


def _check_strings(sql: str, tokens: list[Token]) -> None:
    """Refuse a backslash before a quote in a plain string literal: where that string ends depends on a server
    setting (standard_conforming_strings; Redshift and sqlglot read it as an escape, PostgreSQL as a backslash),
    so the guard and the warehouse could see different statements. Double the quote instead: 'it''s'."""
    for token in tokens:
        raw = sql[token.start : token.end + 1]
        if not (token.token_type in _PREFIXED_STRINGS or (token.token_type is TokenType.STRING and raw[:1] == "'")):
            continue  # not a string; or a Command's remainder, checked when SHOW or EXPLAIN looks at it
        backslashes = 0
        for char in raw[raw.index("'") + 1 : -1]:
            if char == "'" and backslashes % 2:
                raise _rejected("ambiguous_string", "write a quote inside a string as '' rather than \\'")
            backslashes = backslashes + 1 if char == "\\" else 0


def _check_unicode_escapes(sql: str, tokens: list[Token]) -> None:
    """Refuse ``U&'...'`` and ``U&"..."``: the warehouse's PostgreSQL lineage decodes the escapes (a quoted identifier
    becomes the name it spells), sqlglot does not, so the guard would judge another statement (module docstring)."""
    for index, token in enumerate(tokens):
        if token.token_type is TokenType.UNICODE_STRING:
            escaped = True
        else:
            amp, quoted = tokens[index + 1 : index + 2], tokens[index + 2 : index + 3]
            escaped = (
                token.token_type is TokenType.VAR
                and token.text.upper() == "U"
                and bool(amp and quoted)
                and amp[0].token_type is TokenType.AMP
                and amp[0].start == token.end + 1  # U&"x" only with nothing between: U & "x" is an operator
                and quoted[0].start == amp[0].end + 1
                and sql[quoted[0].start] in "\"'"
            )
        if escaped:
            raise _rejected("unicode_escape", "U& escapes are not allowed: write the characters themselves")


def _check_dollars(sql: str, tokens: list[Token]) -> None:
    """Refuse a ``$`` that is not part of a dollar-quoted string with a plain tag (``$$...$$``, ``$tag$...$tag$``).

    PostgreSQL, and so Redshift, starts a dollar quote at ``$``, any run of letters (every non-ASCII character
    counts as one), and ``$``; sqlglot gives up on a tag holding a character ``str.isspace()`` accepts, such as a
    no-break space, and reads two ``$`` parameters instead. ``SELECT $<NBSP>$ ' $<NBSP>$; DELETE ...; -- '`` would
    then be one string to the guard and a DELETE to the warehouse. Placeholders are ``:name``, so a ``$`` other than
    a positional ``$1`` (which both read alike) has no use here, and a tag outside ASCII letters, digits and ``_``
    leaves the two readings to chance.
    """
    for token, after in itertools.zip_longest(tokens, tokens[1:]):
        if token.token_type is TokenType.PARAMETER and sql.startswith("@", token.start):
            # sqlglot reads @x as a parameter, where Redshift's @ is its absolute-value operator
            raise _rejected("at_sign", "the @ (absolute value) operator is not supported: write abs(x)")
        if token.token_type is TokenType.PARAMETER and not _positional(token, after):
            raise _rejected(
                "dollar",
                "a $ is allowed only in a dollar-quoted string ($$...$$ or $tag$...$tag$); placeholders are :name",
            )
        if token.token_type is TokenType.HEREDOC_STRING:
            raw = sql[token.start : token.end + 1]
            if raw.startswith("$") and not _DOLLAR_TAG.fullmatch(raw[1 : raw.index("$", 1)]):
                raise _rejected("dollar", "a dollar quote's tag must be ASCII letters, digits and _")


def _positional(dollar: Token, after: Token | None) -> bool:
    """``$1``: a positional parameter to both readers (refused where placeholders are bound, spectra/parameters.py)."""
    return after is not None and after.start == dollar.end + 1 and after.text.isdigit()


#: A dollar quote's tag as both readers agree on it (empty, or an ASCII identifier).
_PLACEHOLDER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # as a parameter's name is written (spectra/parameters.py)
_DOLLAR_TAG = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*)?")

#: White space to ``str.isspace()``, and so to sqlglot, that PostgreSQL's scanner (and Redshift's) does not take for
#: white space (it takes space, tab, LF, CR, FF and VT): a no-break space or U+3000 separates words for the guard but
#: is a letter to the warehouse.
_ODD_SPACE = re.compile(r"[^\S \t\n\r\f\v]")


def _check_layout(sql: str, tokens: list[Token]) -> None:
    """Refuse a statement whose code the warehouse reads elsewhere than sqlglot does (:mod:`spectra.sql_layout`):
    every character is code to both readers, or to neither (white space, comments, literals). Nested comments that
    sqlglot counts otherwise (``/*/*``), an operator it reads over a comment's first dash (``#--``): text the guard
    would take for a comment or a string runs as a DELETE. White space the two disagree on (``_ODD_SPACE``, a no-break
    space between words) is such a character too, refused as ``white_space``; inside comments and quotes it is text.
    A Command's remainder (EXPLAIN, SHOW) is checked on its own."""
    try:
        warehouse = sql_layout.code_mask(sql)
    except sql_layout.Unterminated as exc:
        raise _rejected("syntax", f"sql could not be parsed: {exc}") from None
    guard, skipped = [False] * len(sql), [False] * len(sql)
    for index, token in enumerate(tokens):
        if _is_remainder(tokens, index):
            # the rest of a SHOW or EXPLAIN is one string to sqlglot, checked when SHOW or EXPLAIN looks at it; only
            # that span is skipped (a command keyword in the middle of a statement has no remainder)
            skipped[tokens[index - 1].end + 1 : token.end + 1] = [True] * (token.end - tokens[index - 1].end)
        elif token.token_type not in _QUOTED_TOKENS:
            guard[token.start : token.end + 1] = [True] * (token.end + 1 - token.start)
            _check_word(sql[token.start : token.end + 1], token)
            if token.token_type is TokenType.VAR and _NOT_A_NAME.search(token.text):
                # a#set_config is one name to sqlglot, a, the operator # and a call of set_config to the warehouse
                raise _rejected(
                    "ambiguous_sql",
                    f"the warehouse would read {token.text!r} as more than one word: put spaces around operators",
                )
    for index in range(len(sql)):
        read, seen = warehouse[index], guard[index]
        if read != seen and not skipped[index] and sql[index] not in sql_layout.SPACE:
            if _ODD_SPACE.match(sql[index]):  # a separator to sqlglot, a letter to the warehouse
                raise _rejected(
                    "white_space",
                    f"U+{ord(sql[index]):04X} outside a string is not white space to the warehouse: use a plain space",
                )
            raise _rejected(
                "ambiguous_sql",
                f"the warehouse would read the text at character {index + 1} as "
                f"{'code' if read else 'a comment or a literal'}, the guard's parser as "
                f"{'code' if seen else 'a comment or a literal'}: write it plainly (no nested comments, no comment "
                "glued to an operator)",
            )


def _is_remainder(tokens: list[Token], index: int) -> bool:
    """Whether ``tokens[index]`` is the string sqlglot made of the rest of a SHOW or EXPLAIN: a statement's first
    token is the command keyword. (sqlglot's tokenizer also does so after ``;`` or after a BEGIN anywhere, as in
    ``FROM t begin FETCH ...``: there the "string" is code the warehouse runs, and is compared like any other.)"""
    if index == 0 or tokens[index].token_type is not TokenType.STRING or tokens[index - 1].token_type not in _COMMANDS:
        return False
    return index == 1 or tokens[index - 2].token_type is TokenType.SEMICOLON  # a second statement: refused anyway


def _check_word(raw: str, token: Token) -> None:
    """Refuse a keyword or operator sqlglot made of what the warehouse reads as a name: its several words joined by
    white space the warehouse does not take for white space (``ORDER<NBSP>BY``), or letters that only Python's
    upper-casing turns into a keyword (``<long s>how`` for SHOW, ``a<long s>`` for AS, U+017F)."""
    if raw.isascii():
        return
    if _ODD_SPACE.search(raw):
        raise _rejected(
            "white_space", "white space inside a keyword is not white space to the warehouse: use a plain space"
        )
    if token.token_type is not TokenType.VAR:
        raise _rejected("ambiguous_sql", f"{raw!r} is a keyword to the guard's parser and a name to the warehouse")


#: A name starting after a ``#`` inside what sqlglot reads as one name: to PostgreSQL ``#`` is an operator.
_NOT_A_NAME = re.compile(r"#[A-Za-z_\x80-\U0010ffff]")  # not #+: searched, it would backtrack from every # (quadratic)


#: Keywords after which sqlglot keeps the rest of the statement as one string (SHOW, EXPLAIN, LOCK, ...).
_COMMANDS = frozenset(Redshift.tokenizer_class.COMMANDS)

_QUOTED_TOKENS = frozenset(
    {
        TokenType.STRING,
        TokenType.IDENTIFIER,
        TokenType.HEREDOC_STRING,
        TokenType.NATIONAL_STRING,
        TokenType.UNICODE_STRING,
        TokenType.BIT_STRING,
        TokenType.HEX_STRING,
        TokenType.BYTE_STRING,
        TokenType.RAW_STRING,
    }
)


def _nesting(tokens: list[Token]) -> int:
    """The deepest nesting of brackets and CASE ... END in the token stream (an END never takes it below zero)."""
    depth = deepest = 0
    for token in tokens:
        if token.token_type in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        elif token.token_type in _CLOSERS and depth:
            depth -= 1
    return deepest


def _allow_recursion(levels: int) -> None:
    """Let the parser recurse ``levels`` deep from here. Only ever raises the limit, so threads cannot undo it."""
    in_use, frame = 0, sys._getframe()
    while frame is not None:
        in_use, frame = in_use + 1, frame.f_back
    needed = in_use + _FRAMES_PER_LEVEL * levels + _FRAMES_HEADROOM
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)


#: sqlglot's wording of a clause left unfinished, which names its own classes ("Required keyword: 'this' missing for
#: <class 'sqlglot.expressions.query.Where'>"), and of a token it met, which it prints as its own repr.
_MISSING_PART = re.compile(r"Required keyword: '\w+' missing for <class '[\w.]+'>")
_TOKEN_REPR = re.compile(r"<Token token_type: TokenType\.(\w+), text: (.*?), line: \d+, col: .*?>")


def _first_error(exc: SqlglotError) -> str:
    """The parser's first complaint in the tenant's terms: where, and near which words, not the parser's internals."""
    errors = getattr(exc, "errors", None) or []
    if not errors:
        return str(exc).splitlines()[0]
    first = errors[0]
    description = first.get("description") or "syntax error"
    if _MISSING_PART.fullmatch(description):
        # the parser stands on the word after the gap, or on the last word when the statement stops short
        description = "something is missing " + ("before" if (first.get("end_context") or "").strip() else "after")
    else:
        description = _TOKEN_REPR.sub(
            lambda m: "the end of the statement" if m[1] == "SENTINEL" else repr(m[2]), description
        )
        description += " near"
    highlight = first.get("highlight")
    near = f" {highlight!r}" if highlight else " the start"
    return f"{description}{near} at line {first.get('line')}, column {first.get('col')}"


# --- what the statement is ---------------------------------------------------------------------------------------


def _check_statement(tree: exp.Expression, grant: WriteGrant) -> None:
    if isinstance(tree, exp.Command):
        _check_command(tree, grant)
        return
    if isinstance(tree, exp.Query):
        into = tree.args.get("into") if isinstance(tree, exp.Select) else None
        if into is not None:
            _check_select_into(into, grant)
    elif isinstance(tree, _WRITES):
        _check_write(tree, grant)
    elif type(tree) in _REFUSALS:
        raise _rejected(*_REFUSALS[type(tree)])
    elif isinstance(tree, _STATEMENTS):
        raise _rejected("unsupported", f"{_describe(tree)} statements are not allowed in queries")
    else:
        raise _rejected("unsupported", "this is not a statement the query API runs: send SELECT, WITH, EXPLAIN or SHOW")
    _check_inside(tree)


def _check_command(tree: exp.Command, grant: WriteGrant) -> None:
    """sqlglot keeps what it has no grammar for as a Command: a keyword and the rest as text. Only SHOW (which
    only reads) and EXPLAIN (whose argument is parsed and checked in turn) pass."""
    keyword = tree.name.upper()
    if keyword == "SHOW":
        tokens = _tokenize(_command_text(tree))  # a string is the only thing in a SHOW that could hide a statement
        if len(tokens) > 1 and _is_remainder(tokens, 1):  # SHOW LOCK ...: sqlglot made the rest a string again
            raise _rejected("syntax", "SHOW takes the name of a setting")
        return
    if keyword == "EXPLAIN":
        _check_explain(tree, grant)
        return
    if keyword in _COMMAND_REFUSALS:
        raise _rejected(*_COMMAND_REFUSALS[keyword])
    # The statement is refused whatever it says; its words only choose the message.
    words = [word.upper() for word in _command_text(tree).split()]
    what = " ".join([keyword, *words[:1]])
    if keyword in {"CREATE", "ALTER", "DROP"} and words[:1] == ["EXTERNAL"]:
        raise _rejected(
            "external", f"{what} is not allowed: external objects read and write S3 with the cluster's role"
        )
    if words[:1] in (["USER"], ["ROLE"], ["GROUP"]) or {
        "OWNER",
        "AUTHORIZATION",
        "POLICY",
        "PRIVILEGES",
        "SECURITY",
    } & set(words):
        raise _rejected(
            "privileges", f"{what} is not allowed: users, roles, ownership and policies are the administrator's"
        )
    if what in ("CREATE TABLE", "ALTER TABLE"):  # allowed to a writer in the forms the guard reads; this one it cannot
        if not grant.allow_writes:
            raise _rejected("read_only", f"{what} is not allowed: queries are read-only for this tenant; {BULK_HINT}")
        forms = _CREATE_OPTIONS if keyword == "CREATE" else _ALTER_FORMS
        raise _rejected("unsupported", f"this form of {what} is not allowed in queries: {forms}")
    raise _rejected("unsupported", f"{what} statements are not allowed in queries")


def _written(node: exp.Expression, limit: int = 80) -> str:
    """A table option or ALTER action as Redshift's SQL spells it, clipped, for a refusal to name; the node's kind
    where Redshift's generator writes nothing of it (a table COMMENT)."""
    writer = DesignWriter(dialect=_DIALECT, unsupported_level=ErrorLevel.IGNORE)  # one per call: it keeps state
    try:
        text = writer.generate(node).strip() or node.key.upper()
    except Exception:  # a node sqlglot's generator cannot write (its bug): named by kind, never a 500
        text = getattr(node, "key", "?").upper()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _command_text(tree: exp.Command) -> str:
    return tree.expression.name if isinstance(tree.expression, exp.Expression) else str(tree.expression or "")


def _check_explain(tree: exp.Command, grant: WriteGrant) -> None:
    """EXPLAIN shows a plan, but EXPLAIN ANALYZE runs the statement: refuse it, and check what is explained.

    The options are read with the tokenizer (comments cannot hide an ANALYZE); the explained statement is parsed
    from the original text, so what is checked is what runs.
    """
    rest = _command_text(tree)
    tokens = _tokenize(rest)
    while tokens and tokens[0].text.upper() == "VERBOSE":
        tokens.pop(0)
    if not tokens:
        raise _rejected("syntax", "EXPLAIN needs a statement to explain")
    if tokens[0].text.upper() == "EXPLAIN":
        raise _rejected("syntax", "EXPLAIN EXPLAIN is not a statement")
    if tokens[0].text.upper() in {"ANALYZE", "ANALYSE"} or tokens[0].token_type is TokenType.L_PAREN:
        raise _rejected(
            "explain_analyze", "EXPLAIN ANALYZE and EXPLAIN options are not allowed: they run the statement"
        )
    inner = _parse(rest[tokens[0].start :])
    if len(inner) != 1:
        raise _rejected("multiple_statements", "EXPLAIN needs exactly one statement to explain")
    _check_statement(inner[0], grant)


def _check_inside(tree: exp.Expression) -> None:
    """What the root's check cannot see: statements nested in it, locks, set_config anywhere, and a SELECT with no
    columns."""
    for node in tree.walk():
        if isinstance(node, exp.Select) and not node.expressions:
            # PostgreSQL answers rows of no columns, which no result format can carry; Redshift refuses it
            raise _rejected("syntax", "SELECT needs at least one column: Redshift has no empty select list")
        if node is tree:
            continue
        if isinstance(node, _STATEMENTS) and not _is_part_of_root(node):
            raise _rejected("nested_statement", f"{_describe(node)} inside another statement is not allowed")
        if isinstance(node, exp.Into) and node.parent is not tree:
            raise _rejected("nested_statement", "SELECT ... INTO is allowed only as the whole statement")
        if isinstance(node, exp.Lock):
            raise _rejected(
                "maintenance", "SELECT ... FOR UPDATE / FOR SHARE is not allowed: locks are not for queries"
            )
        # and a table alias set_config: after FROM or JOIN, sqlglot reads `X set_config(...)` as a table, its alias
        # and the alias's column list, so the refusal does not depend on the warehouse reading it as sqlglot does
        if (isinstance(node, exp.Anonymous | exp.Func) and _function_name(node) == "set_config") or (
            isinstance(node, exp.TableAlias) and node.name.lower() == "set_config"
        ):
            raise _rejected("session", "set_config is not allowed: session settings are the service's")


def _is_part_of_root(node: exp.Expression) -> bool:
    """Nodes sqlglot builds with statement types that are clauses of the root, checked with it: MERGE's WHEN ...
    THEN UPDATE / INSERT (they act on the MERGE's target) and ALTER TABLE's DROP COLUMN / CONSTRAINT."""
    if isinstance(node, exp.Update | exp.Insert) and isinstance(node.parent, exp.When):
        return not _has_table(node)
    return isinstance(node, exp.Drop) and isinstance(node.parent, exp.Alter) and node.arg_key == "actions"


def _has_table(node: exp.Expression) -> bool:
    return isinstance(node.this, exp.Table | exp.Schema)


def _function_name(node: exp.Expression) -> str:
    return (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()


def _describe(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return node.name.upper()
    name = "TRUNCATE" if isinstance(node, exp.TruncateTable) else type(node).__name__.upper()
    kind = node.args.get("kind") if isinstance(node, exp.Create | exp.Drop | exp.Alter) else None
    return f"{name} {kind.upper()}" if isinstance(kind, str) and kind else name


# --- writes ------------------------------------------------------------------------------------------------------


def _check_write(tree: exp.Expression, grant: WriteGrant) -> None:
    """Refusals that hold whatever the flag come first, so every tenant hears the real reason; then the flag;
    then where the statement writes."""
    verb = _describe(tree)
    _check_clauses(tree, verb)
    if isinstance(tree, exp.Create):
        _check_create(tree)
    elif isinstance(tree, exp.Drop):
        _check_drop(tree)
    elif isinstance(tree, exp.Alter):
        _check_alter(tree)
    elif isinstance(tree, exp.Delete) and tree.args.get("tables"):
        raise _rejected("unsupported", "DELETE of several tables at once is not allowed")
    if not grant.allow_writes:
        raise _rejected("read_only", f"{verb} is not allowed: queries are read-only for this tenant; {BULK_HINT}")
    if tree.args.get("cascade") or (isinstance(tree, exp.TruncateTable) and tree.args.get("option")):
        raise _rejected("cascade", f"{verb} ... CASCADE is not allowed: it reaches objects outside your schemas")
    for target in _targets(tree):
        _check_owned(target, grant, verb)


def _check_clauses(tree: exp.Expression, verb: str) -> None:
    clauses = _CLAUSES[type(tree)]
    for key, value in tree.args.items():
        if key not in clauses and value not in (None, False, "", []):
            clause = _CLAUSE_NAMES.get(key, key.upper())
            raise _rejected(
                "unsupported", f"{verb} ... {clause} is not allowed in queries: Redshift has no such clause"
            )
    if isinstance(tree, exp.Update) and not tree.expressions:
        raise _rejected("syntax", "UPDATE needs SET")
    if isinstance(tree, exp.Insert) and not (tree.expression or tree.args.get("default")):
        raise _rejected("syntax", "INSERT needs VALUES, a query or DEFAULT VALUES")
    if isinstance(tree, exp.Create) and tree.args.get("replace") and str(tree.args.get("kind")).upper() != "VIEW":
        raise _rejected(
            "unsupported", f"CREATE OR REPLACE {tree.args.get('kind')} is not allowed: Redshift replaces views only"
        )


def _targets(tree: exp.Expression) -> Iterator[exp.Expression | None]:
    """The objects a write statement changes (not the ones it reads)."""
    if isinstance(tree, exp.TruncateTable):
        yield from tree.expressions
    elif isinstance(tree, exp.Drop):
        yield from tree.args.get("tables") or [tree.this]
    else:
        target = tree.this
        yield target.this if isinstance(target, exp.Schema) else target
    if isinstance(tree, exp.Alter):
        # RENAME TO keeps the schema unless it names one; a named one must be owned too.
        for action in tree.args.get("actions") or []:
            if isinstance(action, exp.AlterRename) and not (
                isinstance(action.this, exp.Table) and not action.this.args.get("db")
            ):
                yield action.this


def _check_owned(target: exp.Expression | None, grant: WriteGrant, verb: str) -> None:
    if not isinstance(target, exp.Table) or not isinstance(target.this, exp.Identifier):
        raise _rejected("unsupported", f"{verb} must name a table or view")
    name = target.this.sql(dialect="redshift")  # quoted as written: "owned.t" is one name, not owned.t
    if target.args.get("catalog"):
        raise _rejected("not_owned", f"{verb} must name its object as schema.{name}, without a database")
    schema = target.args.get("db")
    if not isinstance(schema, exp.Identifier):
        raise _rejected(
            "not_owned",
            f"{verb} must name its object as schema.{name} with one of your schemas "
            f"({_owned_list(grant)}): unqualified names resolve through search_path",
        )
    folded = schema.name if schema.quoted else sql_layout.fold_name(schema.name)
    if folded.startswith("pg_"):
        # The system's names (Redshift and PostgreSQL refuse CREATE SCHEMA pg_...), never a tenant's, even listed in
        # its record: pg_temp is the session's temporary schema, whose tables outlive the query in the tenant's
        # shared session and shadow its unqualified names.
        if folded.startswith("pg_temp"):
            raise _rejected("temporary", "temporary tables are not allowed: they outlive the query in a shared session")
        raise _rejected("not_owned", f"{verb} may not change objects in the system schema {schema.name!r}")
    if folded not in grant.owned_schemas:
        raise _rejected(
            "not_owned", f"{verb} may only change objects in your schemas ({_owned_list(grant)}), not {schema.name!r}"
        )


def _owned_list(grant: WriteGrant) -> str:
    return ", ".join(sorted(grant.owned_schemas)) or "none"


def _check_select_into(into: exp.Into, grant: WriteGrant) -> None:
    if into.args.get("temporary") or into.args.get("unlogged"):
        raise _rejected("temporary", "SELECT ... INTO TEMP is not allowed: temporary tables outlive the query")
    if not grant.allow_writes:
        raise _rejected(
            "read_only", f"SELECT ... INTO is not allowed: queries are read-only for this tenant; {BULK_HINT}"
        )
    _check_owned(into.this, grant, "SELECT ... INTO")


def _check_create(tree: exp.Create) -> None:
    kind = str(tree.args.get("kind") or "").upper()
    properties = tree.args.get("properties")
    for prop in properties.expressions if properties else []:
        if isinstance(prop, exp.ExternalProperty | exp.LocationProperty):
            raise _rejected(
                "external", "external tables and views are not allowed: they use S3 with the cluster's role"
            )
    if kind not in {"TABLE", "VIEW"}:
        raise _rejected("unsupported", f"CREATE {kind or 'of this kind'} is not allowed in queries")
    for prop in properties.expressions if properties else []:
        if isinstance(prop, exp.TemporaryProperty):
            raise _rejected("temporary", "temporary tables are not allowed: they outlive the query in a shared session")
        if isinstance(prop, exp.MaterializedProperty):
            raise _rejected("unsupported", "materialized views are not allowed: their refreshes run outside any query")
        if kind == "VIEW":  # a table's options; Redshift refuses them on a view
            raise _rejected(
                "unsupported", f"CREATE VIEW option {_written(prop)} is not allowed: a view takes no options"
            )
        if not isinstance(prop, _CREATE_PROPERTIES):
            raise _rejected("unsupported", f"CREATE TABLE option {_written(prop)} is not allowed: {_CREATE_OPTIONS}")
    if tree.args.get("clone"):
        raise _rejected("unsupported", f"CREATE {kind} ... CLONE is not allowed")
    if kind == "TABLE" and isinstance(tree.this, exp.Schema):
        for element in tree.this.expressions:
            _check_table_element(element)


def _check_table_element(element: exp.Expression, *, adding: bool = False) -> None:
    """A column or table constraint in a CREATE TABLE or an ALTER TABLE ... ADD: Redshift's kinds only (sqlglot
    also reads CHECK, computed columns, a column's WITH (...) and others, which Redshift has not)."""
    if isinstance(element, exp.ColumnDef):
        attributes = [constraint.args.get("kind") for constraint in element.args.get("constraints") or []]
    else:
        attributes = element.expressions if isinstance(element, exp.Constraint) else [element]
    what = "column option" if isinstance(element, exp.ColumnDef) else "table constraint"
    for attribute in attributes:
        if attribute is None:  # CONSTRAINT name with nothing after it
            raise _rejected("syntax", f"a {what} names a constraint but says nothing of it")
        if not isinstance(attribute, _COLUMN_ATTRIBUTES):
            raise _rejected("unsupported", f"{what} {_written(attribute)} is not allowed: {_COLUMN_FORMS}")
        if adding and isinstance(attribute, ColumnKey | exp.GeneratedAsIdentityColumnConstraint):
            raise _rejected(
                "unsupported",
                f"ALTER TABLE ... ADD COLUMN ... {_written(attribute)} is not allowed: "
                "Redshift sets a column's DISTKEY, SORTKEY or IDENTITY only when it creates the table",
            )
        for reference in attribute.find_all(exp.Reference):
            if reference.args.get("options"):  # ON DELETE CASCADE, MATCH FULL: PostgreSQL's, not Redshift's
                raise _rejected(
                    "unsupported",
                    f"{what} ... {' '.join(map(str, reference.args['options']))} is not "
                    "allowed: Redshift's REFERENCES names a table and its columns only",
                )


def _check_drop(tree: exp.Drop) -> None:
    kind = str(tree.args.get("kind") or "").upper()
    if kind not in {"TABLE", "VIEW"}:
        raise _rejected("unsupported", f"DROP {kind or 'of this kind'} is not allowed in queries")
    if tree.args.get("materialized"):
        raise _rejected("unsupported", "materialized views are not allowed: their refreshes run outside any query")


def _check_alter(tree: exp.Alter) -> None:
    kind = str(tree.args.get("kind") or "").upper()
    if kind != "TABLE":
        raise _rejected("unsupported", f"ALTER {kind or 'of this kind'} is not allowed in queries")
    for option in tree.args.get("options") or []:  # table options beside the actions (TO x, LOCATION ...): none
        raise _rejected("unsupported", f"ALTER TABLE ... {_written(option)} is not allowed in queries: {_ALTER_FORMS}")
    for action in tree.args.get("actions") or []:
        if isinstance(action, exp.AlterSet) and action.args.get("location"):
            raise _rejected("external", "ALTER TABLE ... SET LOCATION is not allowed: external tables use S3")
        if not isinstance(action, _ALTER_ACTIONS):
            raise _rejected(
                "unsupported",
                f"ALTER TABLE ... {_written(action)} is not allowed in queries: {_ALTER_FORMS}",
            )
        if isinstance(action, exp.ColumnDef | exp.AddConstraint):
            for element in [action] if isinstance(action, exp.ColumnDef) else action.expressions:
                _check_table_element(element, adding=True)
        if isinstance(action, exp.Drop) and (
            str(action.args.get("kind") or "").upper() not in {"COLUMN", "CONSTRAINT"} or action.args.get("cascade")
        ):
            raise _rejected("unsupported", "ALTER TABLE ... DROP may drop a column or a constraint, without CASCADE")
