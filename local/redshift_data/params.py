"""Named SQL parameters (``:name``) to psycopg placeholders, without ever splicing values into SQL.

The Data API binds ``Parameters=[{"name": "id", "value": "42"}]`` to ``:id`` and lets the engine infer the type from
the context (values always travel as strings). psycopg sends Python ``str`` as an *unknown*-typed parameter, so
PostgreSQL infers the type exactly the same way. The scanner below skips string literals, quoted identifiers,
comments, dollar-quoted bodies and ``::`` casts, so only real placeholders are replaced; every literal ``%`` is doubled
because psycopg treats ``%`` as its own placeholder syntax once parameters are passed.
"""

from __future__ import annotations

import re

from .errors import ValidationException

_NAME = re.compile(r"[A-Za-z0-9_]+")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def bind_parameters(query: str, parameters: dict[str, str]) -> tuple[str, list[str]]:
    """Return ``(psycopg_query, values)``; raise ValidationException when the SQL uses a parameter not given."""
    out: list[str] = []
    values: list[str] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c == "'":
            end = _end_of_quoted(query, i, "'", backslash=i > 0 and query[i - 1] in "eE")
            out.append(query[i:end].replace("%", "%%"))
            i = end
        elif c == '"':
            end = _end_of_quoted(query, i, '"', backslash=False)
            out.append(query[i:end].replace("%", "%%"))
            i = end
        elif query.startswith("--", i):
            end = query.find("\n", i)
            end = n if end < 0 else end
            out.append(query[i:end].replace("%", "%%"))
            i = end
        elif query.startswith("/*", i):
            end = _end_of_block_comment(query, i)
            out.append(query[i:end].replace("%", "%%"))
            i = end
        elif c == "$" and not _in_identifier(query, i) and (m := _DOLLAR_TAG.match(query, i)):
            close = query.find(m.group(0), m.end())
            end = n if close < 0 else close + len(m.group(0))
            out.append(query[i:end].replace("%", "%%"))
            i = end
        elif query.startswith("::", i):
            out.append("::")
            i += 2
        elif c == ":" and (m := _NAME.match(query, i + 1)):
            name = m.group(0)
            if name not in parameters:
                raise ValidationException(
                    f"The SQL uses parameter :{name} but no value was given for it in Parameters."
                )
            out.append(" %s ")  # spaced: LIMIT:n is LIMIT $1, not LIMIT$1 (psycopg writes %s as $1)
            values.append(parameters[name])
            i = m.end()
        elif c == "%":
            out.append("%%")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out), values


def _in_identifier(query: str, i: int) -> bool:
    """Whether the ``$`` at ``i`` is part of a name (``a$b$``, a legal identifier), not a dollar quote's start."""
    return i > 0 and (query[i - 1].isalnum() or query[i - 1] in "_$")


def _end_of_quoted(query: str, start: str | int, quote: str, backslash: bool) -> int:
    i, n = int(start) + 1, len(query)
    while i < n:
        c = query[i]
        if backslash and c == "\\":
            i += 2
            continue
        if c == quote:
            if i + 1 < n and query[i + 1] == quote:  # doubled quote is an escaped quote
                i += 2
                continue
            return i + 1
        i += 1
    return n


def _end_of_block_comment(query: str, start: int) -> int:
    depth, i, n = 0, start, len(query)
    while i < n:
        if query.startswith("/*", i):
            depth += 1
            i += 2
        elif query.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n
