"""Typed, named query parameters: what a tenant sends, and what the Redshift Data API receives.

A tenant writes ``:name`` in its SQL and sends ``{"name": "name", "value": ...}`` with a JSON string, number, boolean
or null. The Data API binds only non-empty strings (``SqlParameter.value``: a string of at least one character,
which the warehouse converts to the type its context asks for), so each JSON type travels as follows:

* a non-empty string: as it is, untyped: the warehouse infers its type from the context (``id = :id`` compares it as
  the column's type), as it did before typed values existed; where the context says nothing (``select :x``) it is
  text;
* a boolean: the string ``true`` / ``false``, the placeholder cast to ``BOOLEAN``;
* an integer: its decimal digits, the placeholder cast to ``BIGINT`` (``DECIMAL(38,0)`` past 64 bits; more than 38
  digits is refused);
* a number with a fraction or exponent: Python's shortest round-trip spelling (``0.1``, ``1e+300``), the placeholder
  cast to ``DOUBLE PRECISION``;
* null: the placeholder is replaced by SQL ``NULL`` (the Data API has no null value). ``col = :x`` with null is never
  true, as in SQL: write ``col IS NOT DISTINCT FROM :x`` to match NULLs;
* the empty string: the placeholder is replaced by the literal ``''`` (the Data API refuses empty values).

Placeholders are found in the statement's parse tree (the SQL guard's), never with a regular expression, so ``:name``
inside a string, a quoted identifier or a comment, and ``::type`` casts, are not placeholders. A placeholder that needs
rewriting becomes ``NULL``, ``''`` or a ``CAST`` *in the statement's own text*, at the place its tokens are (each
placeholder of the tree matched to a ``:`` and name token pair): the rest of the statement, comments included, runs as
the tenant wrote it. Generating the whole statement again from the tree would not: sqlglot translates functions on
the way (``ADD_MONTHS`` into ``DATEADD``, whose month ends differ; ``DATE_PART`` into ``EXTRACT``, an integer where
Redshift's DATE_PART is a double; ``now()`` into ``GETDATE()``, a timestamp cut to seconds). Only if the tokens and
the tree disagree (a ``:`` before a name that the tree does not read as a placeholder, such as an array slice
``a[1:n]`` beside a real ``:n``) is the statement generated again from the tree, without comments. The caller checks
what runs with the guard once more, either way. A statement whose parameters are all non-empty strings runs as
written. EXPLAIN and SHOW (which the guard keeps as text) take string parameters only.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from sqlglot import exp
from sqlglot.dialects.redshift import Redshift
from sqlglot.errors import SqlglotError
from sqlglot.generators.redshift import RedshiftGenerator
from sqlglot.tokens import TokenType

from spectra.errors import InvalidParameters, PayloadTooLarge
from spectra.jobs import QueryParameter

#: What the Data API's SqlParameter name allows ([0-9a-zA-Z_]+), narrowed to SQL identifiers.
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
#: One value, as the Data API receives it: 65,535 bytes is Redshift's longest VARCHAR, so the longest value the
#: warehouse can take as one parameter.
MAX_VALUE_BYTES = 65_535
_INT64 = 2**63
_MAX_DECIMAL_DIGITS = 38

ParameterValue = StrictBool | StrictInt | StrictFloat | StrictStr | None


class TypedParameter(BaseModel):
    """A named parameter as a tenant sends it: ``:name`` in the SQL, bound by the warehouse, never spliced."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={"examples": [{"name": "min_amount", "value": 100}, {"name": "item", "value": "widget"}]},
    )

    name: str = Field(
        pattern=NAME_PATTERN,
        description="The placeholder's name without its colon: an identifier (letters, digits, _), unique "
        "(case-insensitively) in the request.",
        examples=["min_amount"],
    )
    value: ParameterValue = Field(
        description="A string (typed by its context in the SQL), an integer (BIGINT), a number (DOUBLE PRECISION), "
        "a boolean (BOOLEAN) or null (SQL NULL). At most 65,535 bytes.",
        examples=[100, "widget", 2.5, True, None],
    )

    def wire_value(self) -> str:
        """The value as the Data API receives it (a string), or "" for null (which is never sent)."""
        return wire_value(self.value)


def wire_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class BoundStatement:
    """The statement to run and its Data API parameters (every value a non-empty string)."""

    sql: str
    parameters: list[QueryParameter]


class _Generator(RedshiftGenerator):
    """sqlglot's Redshift SQL, made to say what the tenant wrote where sqlglot would translate for other dialects:

    * named placeholders as the Data API binds them (``:name``; sqlglot's Redshift inherits PostgreSQL's ``%(name)s``);
    * ``TEXT`` stays ``TEXT`` (sqlglot writes ``VARCHAR(MAX)`` for it, a longer type than Redshift's own ``TEXT``);
    * a quote in a string is doubled (``'it''s'``), never backslashed: the guard refuses ``\'``, whose meaning
      depends on a server setting; a string without backslashes is written as it was, line breaks included.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._escaped_quote_end = "''"

    def placeholder_sql(self, expression: exp.Placeholder) -> str:
        return f":{expression.name}" if expression.this else "?"

    def datatype_sql(self, expression: exp.DataType) -> str:
        if expression.is_type("text"):
            return super(RedshiftGenerator, self).datatype_sql(expression)
        return super().datatype_sql(expression)

    def escape_str(self, text: str, *args: Any, **kwargs: Any) -> str:
        if "\\" not in text and not args and not kwargs:
            return text.replace("'", "''")
        return super().escape_str(text, *args, **kwargs)


_DIALECT = Redshift()


def bind(
    statement: str, tree: exp.Expression, parameters: Iterable[TypedParameter], *, max_total_bytes: int
) -> tuple[BoundStatement, bool]:
    """Match ``parameters`` to the placeholders of ``statement`` (parsed as ``tree`` by the SQL guard) and build
    what the Data API receives. Returns the bound statement and whether its SQL was rewritten.

    400 ``invalid_parameters`` for a name given twice, placeholders whose names differ only in case, a placeholder
    with no binding, a binding with no placeholder,
    a positional placeholder (``?``, ``$1``), an integer past 38 digits, a string holding NUL (U+0000), or a typed
    value in EXPLAIN / SHOW; 413 for
    a value over :data:`MAX_VALUE_BYTES`, and for names and values over ``max_total_bytes`` together (a job is one
    DynamoDB item). Sizes are checked first: an oversized request is 413 whatever else is wrong with it.
    """
    given = list(parameters)
    _check_sizes(given, max_total_bytes)
    _check_strings(given)
    used = placeholders(tree)
    _check_placeholder_names(used)  # first: the SQL's own names, whatever values came with it
    _check_names(given)
    by_name = {p.name: p for p in given}
    unbound = [name for name in used if name not in by_name]
    unused = [p.name for p in given if p.name not in used]
    if unbound or unused:
        parts = []
        if unbound:
            parts.append("no value for " + ", ".join(f":{name}" for name in unbound))
        if unused:
            parts.append("no placeholder for " + ", ".join(unused))
        raise InvalidParameters(
            "parameters do not match the SQL: " + "; ".join(parts),
            details={"field": "parameters", "unbound": unbound, "unused": unused},
        )
    needs_rewrite = [p for p in given if not isinstance(p.value, str) or p.value == ""]
    if not needs_rewrite:
        return BoundStatement(statement, [QueryParameter(name=p.name, value=p.value) for p in given]), False
    if isinstance(tree, exp.Command):
        first = needs_rewrite[0]
        raise InvalidParameters(
            f"parameter {first.name}: {tree.name.upper()} takes non-empty string values only",
            details={"field": "parameters", "parameter": first.name},
        )
    sql = _spliced(statement, tree, by_name)
    if sql is None:  # the tokens and the tree disagree: generate the statement again from the tree
        rewritten = tree.copy()
        for node in list(rewritten.find_all(exp.Placeholder)):
            node.replace(_bound_node(node, by_name[node.name]))
        sql = _Generator(dialect=_DIALECT, comments=False).generate(rewritten)
    sent = [QueryParameter(name=p.name, value=p.wire_value()) for p in given if p.value is not None and p.value != ""]
    return BoundStatement(sql, sent), True


def check_bound_size(sql: str, max_bytes: int) -> None:
    """Refuse (413) a statement its typed values made too long for the Data API: each placeholder of a number, a
    boolean or a null is written into the SQL as a cast to its type (or ``NULL``), so SQL well under the limit as
    sent can pass it as it runs. The guard's own check of the bound statement answered "sql is N bytes" of SQL the
    client never sent (18 KB of ``:a`` placeholders sent, "174006 bytes" answered)."""
    size = len(sql.encode())
    if size > max_bytes:
        raise PayloadTooLarge(
            f"the sql is {size} bytes once its typed parameters are bound (each number, boolean or null written as a "
            f"cast to its type); the Data API takes at most {max_bytes}: send such values as strings, which are bound "
            "as they are, or use fewer placeholders",
            details={"limit": max_bytes},
        )


def _spliced(statement: str, tree: exp.Expression, by_name: dict[str, TypedParameter]) -> str | None:
    """The statement with each placeholder's text replaced by its bound SQL, the rest untouched; None when the
    ``:`` + name token pairs are not exactly the tree's placeholders (see the module's docstring)."""
    try:
        tokens = _DIALECT.tokenize(statement)
    except SqlglotError:
        return None
    spots = [
        (colon.start, name.end + 1, name.text)
        for colon, name in itertools.pairwise(tokens)
        if colon.token_type is TokenType.COLON and name.start == colon.end + 1 and name.text in by_name
    ]
    if Counter(name for *_, name in spots) != Counter(node.name for node in tree.find_all(exp.Placeholder)):
        return None
    generator = _Generator(dialect=_DIALECT, comments=False)
    pieces, done = [], 0
    for start, end, name in spots:
        text = generator.generate(_bound_node(exp.Placeholder(this=name), by_name[name]))
        # written where the placeholder was, spaced from a word before or after it: "limit:n" is one keyword and
        # a placeholder, and "limitCAST(:n AS BIGINT)" one unknown word
        before = " " if start and _glues(statement[start - 1]) and _glues(text[0]) else ""
        after = " " if end < len(statement) and _glues(text[-1]) and _glues(statement[end]) else ""
        pieces += [statement[done:start], before + text + after]
        done = end
    return "".join(pieces) + statement[done:]


def _glues(character: str) -> bool:
    """Whether two such characters side by side read as one token: letters, digits, ``_``, ``$`` and quotes."""
    return character.isalnum() or character in "_$'\""


def placeholders(tree: exp.Expression) -> list[str]:
    """The names of the statement's named placeholders, in order of first appearance, each once."""
    if isinstance(tree, exp.Command):
        return _command_placeholders(tree)
    names: dict[str, None] = {}
    for node in tree.walk():
        if (isinstance(node, exp.Placeholder) and not node.this) or isinstance(node, exp.Parameter):
            raise InvalidParameters(
                "positional placeholders (? or $1) are not supported: name each one, :name",
                details={"field": "sql"},
            )
        if isinstance(node, exp.Placeholder):
            names.setdefault(node.name)
    return list(names)


def _command_placeholders(tree: exp.Command) -> list[str]:
    """Placeholders in a statement the guard keeps as text (EXPLAIN, SHOW): ``:`` tokens followed by a name."""
    text = tree.expression.name if isinstance(tree.expression, exp.Expression) else str(tree.expression or "")
    try:
        tokens = _DIALECT.tokenize(text)
    except SqlglotError:  # the guard tokenized it already; anything it accepted tokenizes
        return []
    names: dict[str, None] = {}
    for colon, name in itertools.pairwise(tokens):
        if colon.token_type is TokenType.COLON and name.start == colon.end + 1 and name.text.isidentifier():
            names.setdefault(name.text)
    return list(names)


def _check_sizes(given: list[TypedParameter], max_total_bytes: int) -> None:
    total = 0
    for parameter in given:
        size = len(parameter.wire_value().encode())
        if size > MAX_VALUE_BYTES:
            raise PayloadTooLarge(
                f"parameter {parameter.name} is {size} bytes; one value may be at most {MAX_VALUE_BYTES}",
                details={"field": "parameters", "parameter": parameter.name, "limit": MAX_VALUE_BYTES},
            )
        total += len(parameter.name.encode()) + size
    if total > max_total_bytes:
        raise PayloadTooLarge(
            f"parameters total {total} bytes; the limit is {max_total_bytes}",
            details={"field": "parameters", "limit": max_total_bytes},
        )


def _check_strings(given: list[TypedParameter]) -> None:
    """A string holding NUL (U+0000) is refused before a job exists: no warehouse string can hold one (Redshift's
    and PostgreSQL's text types end at it, or refuse it), so the job failed at the warehouse with its message, as
    NUL in the SQL itself is a 400 (:func:`spectra.sql_guard.parse_checked`)."""
    for parameter in given:
        if isinstance(parameter.value, str) and "\x00" in parameter.value:
            raise InvalidParameters(
                f"parameter {parameter.name} holds a NUL character (U+0000), which no warehouse string can hold",
                details={"field": "parameters", "parameter": parameter.name},
            )


def _check_names(given: list[TypedParameter]) -> None:
    seen: dict[str, str] = {}
    for parameter in given:
        folded = parameter.name.lower()
        if folded in seen:
            raise InvalidParameters(
                f"parameter {parameter.name} is given twice"
                + ("" if seen[folded] == parameter.name else f" (as {seen[folded]}; names ignore case)"),
                details={"field": "parameters", "parameter": parameter.name},
            )
        seen[folded] = parameter.name


def _check_placeholder_names(used: list[str]) -> None:
    """Placeholders whose names differ only in case (``:min`` and ``:MIN``) could never each get a value: two values
    so named are refused as one name given twice (:func:`_check_names`). The SQL is refused first, saying so; it was
    answered "no value for :MIN", and the value then sent was refused as given twice, a circle."""
    seen: dict[str, str] = {}
    for name in used:
        first = seen.setdefault(name.lower(), name)
        if first != name:
            raise InvalidParameters(
                f"placeholders :{first} and :{name} differ only in case, and parameter names ignore case: give them "
                "names that differ otherwise",
                details={"field": "sql", "placeholders": [first, name]},
            )


def _bound_node(node: exp.Placeholder, parameter: TypedParameter) -> exp.Expression:
    value = parameter.value
    if value is None:
        return exp.Null()
    if isinstance(value, str):
        return exp.Literal.string("") if value == "" else node
    if isinstance(value, bool):
        kind = "BOOLEAN"
    elif isinstance(value, int):
        if -_INT64 <= value < _INT64:
            kind = "BIGINT"
        elif len(str(abs(value))) <= _MAX_DECIMAL_DIGITS:
            kind = f"DECIMAL({_MAX_DECIMAL_DIGITS}, 0)"
        else:
            raise InvalidParameters(
                f"parameter {parameter.name} has more than {_MAX_DECIMAL_DIGITS} digits, more than the warehouse's "
                "widest number; send it as a string",
                details={"field": "parameters", "parameter": parameter.name},
            )
    else:
        kind = "DOUBLE PRECISION"
    return exp.Cast(this=node.copy(), to=exp.DataType.build(kind, dialect=_DIALECT))
