"""The SQL guard: refuse statements that could change who the tenant is or what it may do.

Isolation lives in the warehouse (each tenant is its own database user under row-level security), so the guard does
not try to decide what data a statement may touch. It closes the doors around that model: switching identity (SET
ROLE, SET SESSION AUTHORIZATION, set_config('role', ...)), changing privileges or policies (GRANT, REVOKE, users,
roles, groups, RLS policies, ownership), and moving data in or out of the warehouse with its own IAM role (COPY,
UNLOAD; bulk loads go through the Bulk API). It parses with sqlglot's Redshift dialect and works on the tree, never
on the text; what the parser does not understand is refused (fail closed), except a short list of harmless
utility commands.
"""

from __future__ import annotations

import logging

import sqlglot
from sqlglot import exp
from sqlglot.dialects.redshift import Redshift
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from spectra.errors import InvalidRequest, PayloadTooLarge, SqlRejected

# sqlglot logs a warning for every statement it keeps as an opaque Command; the guard handles those itself.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

_ALLOWED_STATEMENTS: tuple[type[exp.Expression], ...] = (
    exp.Query,  # SELECT, WITH, UNION / INTERSECT / EXCEPT
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.TruncateTable,
    exp.Analyze,
    exp.Describe,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
)
_ALLOWED_CREATE_DROP_KINDS = {"TABLE", "VIEW"}
_ALLOWED_COMMANDS = {"SHOW", "VACUUM", "ANALYZE"}
_IDENTITY_SETTINGS = {"role", "session_authorization", "session authorization"}


def check_sql(sql: str, *, max_bytes: int) -> str:
    """Return the statement, stripped, if a tenant may run it; raise a typed error that says why not."""
    statement = sql.strip()
    if not statement.strip(";").strip():
        raise InvalidRequest("sql is empty")
    size = len(statement.encode())
    if size > max_bytes:
        raise PayloadTooLarge(f"sql is {size} bytes; the limit is {max_bytes}", details={"limit": max_bytes})
    try:
        trees = [tree for tree in sqlglot.parse(statement, read="redshift") if tree is not None]
    except SqlglotError as exc:  # ParseError, and TokenError for an unclosed quote, comment or $$ body
        raise SqlRejected(f"sql could not be parsed: {_first_error(exc)}") from exc
    if len(trees) != 1:
        raise SqlRejected(f"send exactly one statement per query; found {len(trees)}")
    _check_statement(trees[0])
    return statement


def _check_statement(tree: exp.Expression) -> None:
    if isinstance(tree, exp.Command) and tree.name.upper() == "EXPLAIN":
        _check_explain(tree)
        return
    if isinstance(tree, exp.Command):
        keyword = tree.name.upper()
        if keyword not in _ALLOWED_COMMANDS:
            raise SqlRejected(
                f"{keyword} statements are not allowed (they can change identity, privileges or data access)"
            )
        return
    if isinstance(tree, exp.Create | exp.Drop):
        kind = str(tree.args.get("kind") or "").upper()
        if kind not in _ALLOWED_CREATE_DROP_KINDS:
            raise SqlRejected(f"{type(tree).__name__.upper()} {kind} is not allowed")
    elif isinstance(tree, exp.Set):
        for item in tree.expressions:
            target = item.this.this if isinstance(item.this, exp.EQ) else item.this
            if isinstance(target, exp.Expression) and target.name.lower() in _IDENTITY_SETTINGS:
                raise SqlRejected(f"SET {target.name} is not allowed: the database identity is chosen by the service")
    elif isinstance(tree, exp.Grant | exp.Revoke):
        raise SqlRejected("GRANT and REVOKE are not allowed: privileges are managed by the warehouse administrator")
    elif isinstance(tree, exp.Copy):
        raise SqlRejected("COPY is not allowed in queries: load data with the Bulk API or the ingest bucket")
    elif not isinstance(tree, _ALLOWED_STATEMENTS):
        raise SqlRejected(f"{type(tree).__name__.upper()} statements are not allowed")
    _check_functions(tree)


def _check_explain(tree: exp.Command) -> None:
    """EXPLAIN shows a plan, but EXPLAIN ANALYZE runs the statement: refuse it, and check what is explained.

    The options are read with the tokenizer (comments cannot hide an ANALYZE); the explained statement is parsed
    from the original text, so what is checked is what runs.
    """
    rest = tree.expression.name if isinstance(tree.expression, exp.Expression) else str(tree.expression or "")
    try:
        tokens = Redshift().tokenize(rest)
    except SqlglotError as exc:
        raise SqlRejected(f"sql could not be parsed: {_first_error(exc)}") from exc
    while tokens and tokens[0].text.upper() == "VERBOSE":
        tokens.pop(0)
    if not tokens:
        raise SqlRejected("EXPLAIN needs a statement to explain")
    if tokens[0].text.upper() in {"ANALYZE", "ANALYSE"} or tokens[0].token_type is TokenType.L_PAREN:
        raise SqlRejected("EXPLAIN ANALYZE and EXPLAIN options are not allowed: they run the statement")
    try:
        inner = [t for t in sqlglot.parse(rest[tokens[0].start :], read="redshift") if t is not None]
    except SqlglotError as exc:
        raise SqlRejected(f"sql could not be parsed: {_first_error(exc)}") from exc
    if len(inner) != 1:
        raise SqlRejected("EXPLAIN needs exactly one statement to explain")
    _check_statement(inner[0])


def _check_functions(tree: exp.Expression) -> None:
    for call in tree.find_all(exp.Anonymous, exp.Func):
        name = (call.name if isinstance(call, exp.Anonymous) else call.sql_name()).lower()
        if name != "set_config":
            continue
        first = call.expressions[0] if call.expressions else call.this
        # A computed setting name could be 'role'; only a literal naming something else is allowed.
        if not isinstance(first, exp.Literal) or first.this.lower() in _IDENTITY_SETTINGS:
            raise SqlRejected("set_config on the session identity is not allowed")


def _first_error(exc: SqlglotError) -> str:
    errors = getattr(exc, "errors", None) or []
    if errors:
        first = errors[0]
        return f"{first.get('description', 'syntax error')} at line {first.get('line')}, column {first.get('col')}"
    return str(exc).splitlines()[0]
