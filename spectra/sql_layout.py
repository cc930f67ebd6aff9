"""Which characters of a statement the warehouse reads as code, by PostgreSQL's lexical rules (Redshift's lineage).

The SQL guard (:mod:`spectra.sql_guard`) judges sqlglot's reading of a statement. Wherever that reading and the
warehouse's split the text differently, text the guard took for a comment or a string runs as code, or the reverse:
``$<no-break space>$`` is a dollar quote to PostgreSQL and two parameters to sqlglot; ``/*/*`` opens two nested
comments to PostgreSQL and one to sqlglot; ``#--`` is an operator ``#`` and a comment to PostgreSQL, and the
operator ``#-`` and a minus to sqlglot. Rather than chase each such split, the guard compares the two readings
character by character (:func:`code_mask`) and refuses a statement on which they disagree.

The rules followed here are PostgreSQL 16's scanner (``scan.l``), as far as they decide what is code:

- white space is space, tab, LF, CR, FF and VT (VT from PostgreSQL 17; 16 refuses it, so nothing runs either way);
  anything else outside quotes and comments is code;
- ``--`` starts a comment to the end of the line (LF or CR) anywhere outside a literal, glued to an operator too;
  ``/*`` starts a block comment anywhere outside a literal, and block comments nest;
- ``'...'`` (with ``''``), ``E'...'`` (backslash escapes), ``N'...'``, ``B'...'`` and ``X'...'`` strings; a string
  continued by another after a line break; ``"..."`` identifiers; ``U&'...'`` and ``U&"..."``;
- ``$tag$...$tag$`` dollar quotes, whose tag is letters, digits (not first) and ``_``, every non-ASCII character
  counting as a letter; a ``$`` after a letter is part of a name, ``$1`` a parameter.
"""

from __future__ import annotations

#: PostgreSQL's white space (scan.l ``space``).
SPACE = frozenset(" \t\n\r\f\v")

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_name(name: str) -> str:
    """A name as the warehouse folds it: A-Z to lower case, nothing else (``str.lower`` folds all of Unicode: the
    Kelvin sign's ``KX`` became ``kx``). Redshift folds quoted names so too, by default ("Names and identifiers")."""
    return name.translate(_ASCII_LOWER)


def _name_start(char: str) -> bool:
    return (char.isascii() and (char.isalpha() or char == "_")) or not char.isascii()


def _name_part(char: str) -> bool:
    return _name_start(char) or (char.isascii() and char.isdigit()) or char == "$"


def _tag_part(char: str) -> bool:
    return _name_start(char) or (char.isascii() and char.isdigit())


class Unterminated(ValueError):
    """A string, identifier, dollar quote or comment the warehouse would read to the end without closing."""


def code_mask(sql: str) -> list[bool]:
    """For each character, whether the warehouse reads it as code (True), or as white space, a comment, or the body
    or quotes of a literal (False). Raises :class:`Unterminated` where the warehouse would fail to read it at all."""
    code = [False] * len(sql)
    at, end = 0, len(sql)
    while at < end:
        char = sql[at]
        if char in SPACE:
            at += 1
        elif sql.startswith("--", at):
            while at < end and sql[at] not in "\n\r":
                at += 1
        elif sql.startswith("/*", at):
            at = _block_comment(sql, at)
        elif (quoted := _literal_start(sql, at)) is not None:
            at = _literal(sql, at, *quoted)
        elif char == "$":
            at = _dollar(sql, at, code)
        elif _name_start(char):
            while at < end and _name_part(sql[at]):
                code[at] = True
                at += 1
        else:
            code[at] = True
            at += 1
    return code


def _block_comment(sql: str, at: int) -> int:
    """Past the (nested) block comment starting at ``at``."""
    depth, at = 1, at + 2
    while depth:
        if at >= len(sql):
            raise Unterminated("a /* comment is not closed")
        if sql.startswith("/*", at):
            depth, at = depth + 1, at + 2
        elif sql.startswith("*/", at):
            depth, at = depth - 1, at + 2
        else:
            at += 1
    return at


def _literal_start(sql: str, at: int) -> tuple[int, str, bool, bool] | None:
    """A literal starting at ``at``: (prefix length, quote, backslash escapes, doubled quotes), or None."""
    head = sql[at : at + 3].lower()
    if head.startswith("'"):
        return 1, "'", False, True
    if head.startswith('"'):
        return 1, '"', False, True
    if head.startswith("e'"):
        return 2, "'", True, True
    if head.startswith("n'"):
        return 2, "'", False, True
    if head[:2] in ("b'", "x'"):
        return 2, "'", False, False
    if head in ("u&'", 'u&"'):
        return 3, head[2], False, True
    return None


def _literal(sql: str, at: int, prefix: int, quote: str, escapes: bool, doubled: bool) -> int:
    """Past the literal starting at ``at`` (and the strings that continue it after a line break)."""
    at += prefix
    while True:
        if at >= len(sql):
            raise Unterminated(f"a {quote}...{quote} literal is not closed")
        char = sql[at]
        if (escapes and char == "\\") or (char == quote and doubled and sql.startswith(quote * 2, at)):
            at += 2  # an escaped character, or a doubled quote
        elif char == quote:
            at += 1
            if quote == "'" and (again := _continued(sql, at)) is not None:
                at = again + 1
                continue
            return at
        else:
            at += 1


def _continued(sql: str, at: int) -> int | None:
    """The quote of a string continuing the one that ended at ``at``: after white space holding a line break."""
    seen_break = False
    while at < len(sql):
        if sql[at] in " \t\f\v":
            at += 1
        elif sql[at] in "\n\r":
            seen_break, at = True, at + 1
        elif sql.startswith("--", at):
            while at < len(sql) and sql[at] not in "\n\r":
                at += 1
        else:
            break
    return at if seen_break and at < len(sql) and sql[at] == "'" else None


def _dollar(sql: str, at: int, code: list[bool]) -> int:
    """Past a dollar quote starting at ``at``, or past the ``$`` as code."""
    after = at + 1
    if after < len(sql) and (sql[after] == "$" or _name_start(sql[after])):
        close = after
        while close < len(sql) and sql[close] != "$" and _tag_part(sql[close]):
            close += 1
        if close < len(sql) and sql[close] == "$":
            tag = sql[at : close + 1]
            found = sql.find(tag, close + 1)
            if found < 0:
                raise Unterminated(f"a {tag} dollar quote is not closed")
            return found + len(tag)
    code[at] = True
    return after
