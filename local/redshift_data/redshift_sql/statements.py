"""Parse Redshift's COPY (from S3) and UNLOAD into plain option records.

The grammar follows the Redshift reference (COPY parameters, UNLOAD); options may come in any order, ``AS`` is optional
where Redshift allows it, keywords are case-insensitive. Options that only tune the real cluster (COMPUPDATE,
REGION, IAM_ROLE, CREDENTIALS, ...) are accepted and ignored, as a local stand-in should (STATUPDATE is kept: the
emulator analyzes the loaded table as Redshift does, see copy_from_s3). Options the
emulator does not implement are refused with a message that says so, rather than silently loading different data.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from .base import RedshiftSqlError
from .lexer import ASCII_LOWER, Kind, TokenStream, tokenize

MB = 1024 * 1024
MIN_MAXFILESIZE = 5 * MB
MAX_MAXFILESIZE = int(6.2 * 1024 * MB)

# Accepted for compatibility; they only matter to a real cluster (statistics, encoding analysis, credentials).
# EXPLICIT_IDS lets a Redshift COPY fill an IDENTITY column from the file; the emulator's tables are PostgreSQL's,
# whose COPY fills every column its list names.
_IGNORED_FLAGS = {"ESCAPE", "EXPLICIT_IDS"}
_IGNORED_WITH_STRING = {"IAM_ROLE", "CREDENTIALS", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN", "REGION"}
_ON_OFF = ("ON", "OFF", "TRUE", "FALSE", "PRESET")
_NOT_IMPLEMENTED = {
    "FIXEDWIDTH",
    "JSON",
    "AVRO",
    "ORC",
    "PARQUET",
    "SHAPEFILE",
    "BZIP2",
    "LZOP",
    "ZSTD",
    "ACCEPTINVCHARS",
    "BLANKSASNULL",
    "FILLRECORD",
    "IGNOREBLANKLINES",
    "REMOVEQUOTES",
    "TRIMBLANKS",
    "TRUNCATECOLUMNS",
    "NOLOAD",
    "ENCRYPTED",
    "MASTER_SYMMETRIC_KEY",
    "KMS_KEY_ID",
    "PARTITION",
    "ADDQUOTES",
    "SSH",
}


def _not_supported(option: str, statement: str) -> RedshiftSqlError:
    return RedshiftSqlError(f"{statement} option {option} is not supported by the local Redshift emulator")


@dataclass(frozen=True)
class CopyCommand:
    """``COPY table [(columns)] FROM 's3://...' options``."""

    table: tuple[str, ...]  # [schema,] name, already case-folded as PostgreSQL would
    columns: tuple[str, ...] | None
    source: str
    csv: bool = False
    delimiter: str | None = None  # None: Redshift's default for the format ('|' text, ',' CSV)
    quote: str = '"'
    null_as: str | None = None
    ignoreheader: int = 0
    gzip: bool = False
    maxerror: int = 0
    manifest: bool = False
    emptyasnull: bool = False
    dateformat: str | None = None
    timeformat: str | None = None
    statupdate: bool | None = None  # None: Redshift's default (statistics refreshed when the table was empty)

    @property
    def effective_delimiter(self) -> str:
        return self.delimiter if self.delimiter is not None else ("," if self.csv else "|")


@dataclass(frozen=True)
class UnloadCommand:
    """``UNLOAD ('select ...') TO 's3://prefix' options``."""

    query: str
    destination: str
    format: str = "TEXT"  # TEXT (pipe-delimited), CSV, PARQUET, JSON
    header: bool = False
    delimiter: str | None = None
    null_as: str = ""
    gzip: bool = False
    parallel: bool = True
    manifest: bool = False
    manifest_verbose: bool = False
    maxfilesize: int = MAX_MAXFILESIZE
    allowoverwrite: bool = False
    cleanpath: bool = False
    extension: str | None = None
    options_seen: frozenset[str] = field(default_factory=frozenset)

    @property
    def effective_delimiter(self) -> str:
        return self.delimiter if self.delimiter is not None else ("," if self.format == "CSV" else "|")


# --------------------------------------------------------------------------------------------------------------------
# Recognising the statements


def classify(sql: str) -> str | None:
    """'COPY' for a Redshift COPY from S3, 'UNLOAD' for UNLOAD, None for anything PostgreSQL should run itself.

    PostgreSQL has its own COPY (FROM STDIN, FROM 'file', TO ...); only a COPY whose source is an ``s3://`` literal
    is Redshift's. Cheap on purpose: the executor calls this for every statement.
    """
    head = sql.lstrip()[:10].upper()
    if not (head.startswith("COPY") or head.startswith("UNLOAD") or head.startswith("--") or head.startswith("/*")):
        return None
    try:
        tokens = tokenize(sql)
    except RedshiftSqlError:
        return None
    first = tokens[0].upper
    if first == "UNLOAD":
        return "UNLOAD"
    if first == "COPY":
        for previous, token in itertools.pairwise(tokens):
            if previous.upper == "FROM" and token.kind is Kind.STRING:
                return "COPY" if token.value.lower().startswith("s3://") else None
    return None


# --------------------------------------------------------------------------------------------------------------------
# COPY


def parse_copy(sql: str) -> CopyCommand:
    stream = TokenStream(tokenize(sql))
    stream.expect_word("COPY")
    table = _parse_qualified_name(stream)
    columns = _parse_column_list(stream) if stream.peek().kind is Kind.PUNCT and stream.peek().value == "(" else None
    stream.expect_word("FROM")
    source = stream.expect_string("FROM")
    options: dict[str, object] = {}
    stream.accept_word("WITH")
    while not stream.at_end():
        _parse_copy_option(stream, options)
    return CopyCommand(table=table, columns=columns, source=source, **options)


def _option_word(stream: TokenStream, statement: str) -> str:
    """The next option's keyword; options that only carry credentials (IAM_ROLE 'arn', ...) are consumed here."""
    token = stream.peek()
    if token.kind is not Kind.WORD:
        raise stream.error(f"expected a {statement} option")
    word = stream.next().upper
    if word in _IGNORED_WITH_STRING:
        stream.accept_word("AS")
        if not stream.accept_word("DEFAULT"):
            stream.expect_string(word)
        return ""
    return word


_TEXT_OPTIONS = ("DELIMITER", "NULL")


def _parse_text_option(stream: TokenStream, word: str, options: dict[str, object]) -> None:
    """DELIMITER [AS] 'c' and NULL [AS] 's', which COPY and UNLOAD read alike."""
    stream.accept_word("AS")
    if word == "DELIMITER":
        options["delimiter"] = _single_char(stream.expect_string("DELIMITER"), "DELIMITER")
    else:
        options["null_as"] = stream.expect_string("NULL AS")


def _parse_copy_option(stream: TokenStream, options: dict[str, object]) -> None:
    word = _option_word(stream, "COPY")
    if not word:
        pass
    elif word == "STATUPDATE":
        setting = stream.accept_word(*_ON_OFF)  # bare STATUPDATE is ON
        options["statupdate"] = None if setting == "PRESET" else setting in (None, "ON", "TRUE")
    elif word == "COMPUPDATE":
        stream.accept_word(*_ON_OFF)
    elif word in ("COMPROWS", "ROUNDEC"):
        if stream.peek().kind is Kind.NUMBER:
            stream.next()
    elif word in _IGNORED_FLAGS:
        pass
    elif word == "FORMAT":
        stream.accept_word("AS")
        fmt = stream.next()
        if fmt.upper != "CSV":
            raise _not_supported(f"FORMAT {fmt.value.upper()}", "COPY")
        _parse_csv_flag(stream, options)
    elif word == "CSV":
        _parse_csv_flag(stream, options)
    elif word == "QUOTE":
        stream.accept_word("AS")
        options["quote"] = _single_char(stream.expect_string("QUOTE"), "QUOTE")
    elif word in _TEXT_OPTIONS:
        _parse_text_option(stream, word, options)
    elif word == "IGNOREHEADER":
        stream.accept_word("AS")
        options["ignoreheader"] = _non_negative_int(stream.expect_number("IGNOREHEADER"), "IGNOREHEADER")
    elif word == "MAXERROR":
        stream.accept_word("AS")
        options["maxerror"] = _non_negative_int(stream.expect_number("MAXERROR"), "MAXERROR")
    elif word in ("DATEFORMAT", "TIMEFORMAT"):
        stream.accept_word("AS")
        options[word.lower()] = _date_format(stream.expect_string(word), word)
    elif word == "ENCODING":
        stream.accept_word("AS")
        encoding = stream.next()
        if encoding.value.upper().replace("-", "") not in ("UTF8",):
            raise _not_supported(f"ENCODING {encoding.value}", "COPY")
    elif word in ("GZIP", "MANIFEST", "EMPTYASNULL"):
        options[word.lower()] = True
    elif word in _NOT_IMPLEMENTED:
        raise _not_supported(word, "COPY")
    else:
        raise RedshiftSqlError(f"syntax error at or near {word.lower()!r}: unknown COPY option")


def _parse_csv_flag(stream: TokenStream, options: dict[str, object]) -> None:
    options["csv"] = True
    if stream.accept_word("QUOTE"):
        stream.accept_word("AS")
        options["quote"] = _single_char(stream.expect_string("QUOTE"), "QUOTE")


def _date_format(value: str, option: str) -> str:
    """PostgreSQL's input parser already reads what 'auto' accepts; a fixed pattern would need a converter."""
    if value.lower() in ("auto", "yyyy-mm-dd", "yyyy-mm-dd hh:mi:ss", "yyyy-mm-ddthh:mi:ss"):
        return value
    raise _not_supported(f"{option} '{value}' (only 'auto' and ISO formats)", "COPY")


# --------------------------------------------------------------------------------------------------------------------
# UNLOAD


def parse_unload(sql: str) -> UnloadCommand:
    stream = TokenStream(tokenize(sql))
    stream.expect_word("UNLOAD")
    stream.expect_punct("(")
    query = stream.expect_string("UNLOAD")
    stream.expect_punct(")")
    stream.expect_word("TO")
    destination = stream.expect_string("TO")
    options: dict[str, object] = {}
    seen: set[str] = set()
    stream.accept_word("WITH")
    while not stream.at_end():
        seen.add(_parse_unload_option(stream, options))
    seen.discard("")  # credential-only options (IAM_ROLE ...) take no part in the combination rules
    command = UnloadCommand(query=query, destination=destination, options_seen=frozenset(seen), **options)
    _check_unload_combination(command)
    return command


def _parse_unload_option(stream: TokenStream, options: dict[str, object]) -> str:
    word = _option_word(stream, "UNLOAD")
    if not word:
        pass
    elif word == "FORMAT":
        stream.accept_word("AS")
        fmt = stream.next().upper
        if fmt not in ("CSV", "PARQUET", "JSON"):
            raise _not_supported(f"FORMAT {fmt}", "UNLOAD")
        options["format"] = fmt
    elif word in ("CSV", "PARQUET"):
        options["format"] = word
    elif word == "HEADER":
        options["header"] = True
    elif word in _TEXT_OPTIONS:
        _parse_text_option(stream, word, options)
    elif word == "GZIP":
        options["gzip"] = True
    elif word == "PARALLEL":
        value = stream.accept_word("ON", "OFF", "TRUE", "FALSE")
        options["parallel"] = value in (None, "ON", "TRUE")
    elif word == "MANIFEST":
        options["manifest"] = True
        options["manifest_verbose"] = bool(stream.accept_word("VERBOSE"))
    elif word == "MAXFILESIZE":
        options["maxfilesize"] = _parse_size(stream)
    elif word == "ROWGROUPSIZE":
        _parse_size(stream, minimum=32 * MB, maximum=512 * MB, option="ROWGROUPSIZE")
    elif word in ("ALLOWOVERWRITE", "CLEANPATH"):
        options[word.lower()] = True
    elif word == "EXTENSION":
        stream.accept_word("AS")
        options["extension"] = stream.expect_string("EXTENSION").lstrip(".")
    elif word == "ESCAPE":
        pass  # the text format is always escaped here (PostgreSQL's text format); see unload.py
    elif word in _NOT_IMPLEMENTED:
        raise _not_supported(word, "UNLOAD")
    else:
        raise RedshiftSqlError(f"syntax error at or near {word.lower()!r}: unknown UNLOAD option")
    return word


def _parse_size(
    stream: TokenStream, minimum: int = MIN_MAXFILESIZE, maximum: int = MAX_MAXFILESIZE, option: str = "MAXFILESIZE"
) -> int:
    stream.accept_word("AS")
    number = float(stream.expect_number(option))
    unit = stream.accept_word("MB", "GB") or "MB"
    size = int(number * MB * (1024 if unit == "GB" else 1))
    if not minimum <= size <= maximum:
        low, high = minimum / MB, maximum / MB
        raise RedshiftSqlError(f"{option} must be between {low:g} MB and {high / 1024:g} GB")
    return size


def _check_unload_combination(command: UnloadCommand) -> None:
    """Redshift refuses these combinations; so does the emulator, with the same reasoning."""
    if command.format == "PARQUET":
        for option in ("HEADER", "DELIMITER", "GZIP", "NULL"):
            if option in command.options_seen:
                raise RedshiftSqlError(f"UNLOAD option {option} is not supported with the PARQUET format")
    if command.format == "JSON":
        for option in ("HEADER", "DELIMITER", "NULL"):
            if option in command.options_seen:
                raise RedshiftSqlError(f"UNLOAD option {option} is not supported with the JSON format")
    if command.allowoverwrite and command.cleanpath:
        raise RedshiftSqlError("UNLOAD options ALLOWOVERWRITE and CLEANPATH cannot be used together")


# --------------------------------------------------------------------------------------------------------------------
# Shared pieces


def _parse_qualified_name(stream: TokenStream) -> tuple[str, ...]:
    parts = [_identifier(stream)]
    while stream.accept_punct("."):
        parts.append(_identifier(stream))
    if len(parts) > 3:
        raise stream.error("improper qualified name (too many dotted names)")
    return tuple(parts[-2:])  # a leading database name must be the current one; PostgreSQL resolves the rest


def _parse_column_list(stream: TokenStream) -> tuple[str, ...]:
    stream.expect_punct("(")
    columns = [_identifier(stream)]
    while stream.accept_punct(","):
        columns.append(_identifier(stream))
    stream.expect_punct(")")
    return tuple(columns)


def _identifier(stream: TokenStream) -> str:
    token = stream.peek()
    if token.kind is Kind.WORD:
        stream.next()
        return token.value.translate(ASCII_LOWER)  # fold to lower case, ASCII letters only, as PostgreSQL and Redshift
    if token.kind is Kind.IDENT:
        stream.next()
        return token.value.translate(ASCII_LOWER)  # quoted ones too: Redshift folds their ASCII letters (functions.py)
    raise stream.error("expected an identifier")


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\", "'": "'", "|": "|"}


def _single_char(value: str, option: str) -> str:
    """Decode ``'\\t'``-style and octal (``'\\011'``) escapes Redshift accepts for one-character options."""
    decoded = value
    if value.startswith("\\") and len(value) > 1:
        rest = value[1:]
        if rest in _ESCAPES:
            decoded = _ESCAPES[rest]
        elif len(rest) == 3 and all(c in "01234567" for c in rest):
            decoded = chr(int(rest, 8))
    if len(decoded) != 1:
        raise RedshiftSqlError(f"{option} must be a single character, got '{value}'")
    return decoded


def _non_negative_int(text: str, option: str) -> int:
    if not text.isdigit():
        raise RedshiftSqlError(f"{option} must be a non-negative integer, got {text}")
    return int(text)
