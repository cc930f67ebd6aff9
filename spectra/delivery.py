"""How a query job's result reaches its client: ``delivery`` (auto | inline | s3 | export), ``row_limit``, expiry.

* What a request may ask (:func:`request_problem`): ``inline`` returns JSON rows in the results response, so it
  takes format ``json`` only; ``export`` is an UNLOAD, which writes CSV or Parquet, binds no parameters (its query
  is a string literal) and writes the whole result (no ``row_limit``: put a LIMIT in the SQL).
* What the executor runs (:func:`statement_sql`): the job's SQL, or for ``export`` an UNLOAD of it, as the tenant,
  into the job's own prefix (``<tenant>/<job_id>/part-...``, UNLOAD's manifest at ``part-manifest``).
* What completion keeps (:func:`collect_result`): the pages through the sink for the other deliveries, or the files
  UNLOAD wrote. A failed UNLOAD fails its statement, so completion never lists its partial files (and the emulator,
  like Redshift, takes them back).
* How long it is served: ``ResultRetentionDays`` after completion (the results bucket's lifecycle deletes files
  after as many days, rounded up to the next midnight UTC, so a file always outlives the last URL to it); later,
  the results route answers 410 ``gone``, inline rows included.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any

from events import Delivery, ResultFormat
from spectra import deadline
from spectra.bulk.sql import ident, unload_statement
from spectra.errors import Gone, NotFound, PayloadTooLarge, StatementRejected, Throttled
from spectra.jobs import Job, JobResult, utcnow
from spectra.ports import Ports
from spectra.result_encoding import unique_names
from spectra.settings import Settings
from spectra.sql_layout import fold_name
from spectra.warehouse import CsvResult, StatementInfo

logger = logging.getLogger(__name__)

EXPORT_FORMATS = (ResultFormat.CSV, ResultFormat.PARQUET)
#: DynamoDB's item limit, and what the rest of a job item may take beside its SQL, parameters and columns.
ITEM_MAX_BYTES = 400 * 1024
ITEM_OVERHEAD_BYTES = 8 * 1024
#: Where, inside the job's prefix, a result goes when it is written again because a first row equal to the column
#: names, read as a header line, was data (:func:`collect_result`): never the keys a first pass writes.
REWRITTEN_FOLDER = "rewritten/"


def request_problem(
    fmt: ResultFormat, delivery: Delivery, row_limit: int | None, has_parameters: bool
) -> tuple[str, str] | None:
    """The field at fault and why, when a request's format, delivery, row limit and parameters do not go together."""
    if delivery is Delivery.INLINE and fmt is not ResultFormat.JSON:
        return "delivery", f"delivery inline returns JSON rows in the response; format {fmt.value} needs files (s3)"
    if delivery is Delivery.EXPORT:
        if fmt not in EXPORT_FORMATS:
            return "delivery", f"delivery export unloads CSV or Parquet, not {fmt.value}: ask format csv or parquet"
        if has_parameters:
            return "parameters", "delivery export cannot bind parameters (UNLOAD takes its query as text)"
        if row_limit is not None:
            return "row_limit", "delivery export writes the whole result: put a LIMIT in the SQL instead"
    return None


def export_destination(settings: Settings, job: Job) -> str:
    return f"s3://{settings.results_bucket}/{job.tenant_id}/{job.job_id}/part-"


def statement_sql(settings: Settings, job: Job, *, renamed: bool = True) -> str:
    """What the executor sends the warehouse for the job (as the tenant's identity either way). ``renamed`` False:
    without the renaming of columns named twice, which adds to an export's statement and costs time for a query of
    many columns (the API measures the statement so, a bound from below)."""
    if job.delivery is not Delivery.EXPORT:
        return job.sql
    from spectra.sql_guard import embeddable

    query = embeddable(job.sql)  # inside UNLOAD's quotes: no ';', a trailing comment ended
    return unload_statement(
        unloadable(distinct_columns(query) if renamed else query),
        export_destination(settings, job),
        role=settings.bulk_iam_role,
        fmt="PARQUET" if job.format is ResultFormat.PARQUET else "CSV",
        gzip=job.format is ResultFormat.CSV,
    )


def check_unload_size(statement: str, max_bytes: int) -> None:
    """Refuse (413) an export whose UNLOAD is past the Data API's statement limit: the guard measured the tenant's
    query, and the UNLOAD around it doubles its quotes and adds the destination and options, so a query near the
    limit passes the guard and, unrefused here, its job fails at ExecuteStatement."""
    size = len(statement.encode())
    if size > max_bytes:
        raise PayloadTooLarge(
            f"the query is {size} bytes as the UNLOAD that exports it (its quotes doubled, the destination and options"
            f" added); the Data API takes at most {max_bytes}: shorten it by {size - max_bytes} bytes",
            details={"limit": max_bytes},
        )


def distinct_columns(sql: str) -> str:
    """The query, renamed on the way out when it would name two columns alike (Parquet readers refuse a file with
    duplicate field names; UNLOAD writes the names the query gives).

    The files other deliveries write are renamed as they are written; an UNLOAD's are not ours to rename, so the
    query is: its output names are worked out as PostgreSQL does for the common cases (an alias, a column, a
    function's name as called, a cast's type, ``?column?``: :func:`_output_name`), and only when two of them
    collide (a name not worked out counting as ``?column?``) is it wrapped as ``SELECT * FROM (query) AS q(names)``
    with :func:`~spectra.result_encoding.unique_names` (such a column is then named ``?column?``). A top-level ``*``
    has names only the warehouse knows: such a query goes as it is, and completion refuses a Parquet export that
    came back with duplicate names.
    """
    names = _output_names(sql)
    # a name not worked out may be ?column? (an operator sqlglot reads as a function, a constant): counted as one,
    # it may rename an export for nothing (its names then differ from what the warehouse would say), which is better
    # than a Parquet export failed for names the warehouse gave alike
    guessed = [name or "?column?" for name in names or ()]
    if names is None or len(set(guessed)) == len(guessed):
        return sql
    aliases = ", ".join(ident(name) for name in unique_names(name or "?column?" for name in names))
    return f"SELECT * FROM ({sql}) AS spectra_export ({aliases})"  # sql: embeddable (sql_guard.embeddable)


def unloadable(sql: str) -> str:
    """The query as UNLOAD takes it. Redshift refuses a LIMIT (or OFFSET) in the outer SELECT of an UNLOAD, so a query
    that ends in one goes nested, ``SELECT * FROM (query) AS spectra_unload``, as its documentation advises: the
    limit still picks the rows (with its ORDER BY), and the files hold them in the order the warehouse reads them
    back. Bulk query jobs and ``delivery: export`` both unload."""
    from sqlglot import exp

    from spectra.sql_guard import parse_statement

    tree = parse_statement(sql)
    while tree is not None and not any(tree.args.get(clause) for clause in ("limit", "offset", "fetch")):
        # a query in parentheses, "(select ... limit 5)", is its own outer SELECT: its LIMIT is looked for inside
        tree = tree.this if isinstance(tree, exp.Subquery) else None
    return sql if tree is None else f"SELECT * FROM ({sql}) AS spectra_unload"


def unload_problem(sql: str, *, export: bool) -> str | None:
    """Why the query cannot be unloaded as the warehouse would need it, or None. UNLOAD takes a SELECT (a WITH, a set
    operation) and nothing else: an EXPLAIN, a SHOW, a write-enabled tenant's command or SELECT INTO, which the guard
    lets run elsewhere, would only fail in the warehouse with a syntax error about an UNLOAD the tenant never wrote.
    UNLOAD takes a query ending in LIMIT or OFFSET (and an export naming two columns alike) nested in a subquery
    (:func:`unloadable`, :func:`distinct_columns`), and Redshift refuses a WITH RECURSIVE clause inside a subquery
    (WITH's reference): such a job would only fail in the warehouse, so its request is refused at once. PostgreSQL, the
    local stack's warehouse, takes either, which is why this is asked here rather than left to the warehouse."""
    from sqlglot import exp

    from spectra.sql_guard import embeddable, parse_statement

    embedded = embeddable(sql)
    tree = parse_statement(embedded)
    if tree is not None and (not isinstance(tree, exp.Query) or tree.args.get("into") is not None):
        kind = str(tree.this).upper() if isinstance(tree, exp.Command) else tree.key.upper()
        kind = "SELECT INTO" if isinstance(tree, exp.Select) else "TRUNCATE" if kind == "TRUNCATETABLE" else kind
        return (
            f"{'delivery export' if export else 'a query job'} runs the statement as an UNLOAD, which takes a query"
            f" (SELECT, WITH, UNION ...), not {kind}" + (": send it with delivery inline or s3" if export else "")
        )
    if tree is None or not any(with_.args.get("recursive") for with_ in tree.find_all(exp.With)):
        return None  # asked first: working out the nesting costs more (a query of thousands of columns)
    if unloadable(distinct_columns(embedded) if export else embedded) == embedded:
        return None
    return (
        "a query with WITH RECURSIVE cannot be unloaded when it ends in LIMIT or OFFSET"
        + (" or names two columns alike" if export else "")
        + ": UNLOAD needs such a query nested in a subquery, and Redshift refuses WITH RECURSIVE there"
    )


def _output_names(sql: str) -> list[str | None] | None:
    from spectra.sql_guard import parse_statement

    # within the guard's bounds: a query it accepted parses here too; the text, for the names functions are called by
    return _query_names(parse_statement(sql), sql.strip())


def _query_names(tree, text: str) -> list[str | None] | None:
    """The names a query's columns get (None where not worked out here), or None when a top-level ``*`` hides them."""
    from sqlglot import exp

    while isinstance(tree, exp.SetOperation | exp.Subquery):
        tree = tree.left if isinstance(tree, exp.SetOperation) else tree.this  # a UNION is named by its first branch
    if not isinstance(tree, exp.Select):
        return None
    names = []
    for expression in tree.expressions:
        if isinstance(expression, exp.Star) or (isinstance(expression, exp.Column) and expression.is_star):
            return None
        names.append(_output_name(expression, text)[0])
    return names


#: The names PostgreSQL gives a cast's column when its value has no name of its own (``1::int`` is ``int4``): the
#: last part of the type's name as its grammar spells it. A type not listed leaves the name unknown.
_CAST_NAMES = {
    "INT": "int4",
    "BIGINT": "int8",
    "SMALLINT": "int2",
    "DECIMAL": "numeric",
    "DOUBLE": "float8",
    "FLOAT": "float4",
    "CHAR": "bpchar",
    "VARCHAR": "varchar",
    "BOOLEAN": "bool",
    "DATE": "date",
    "TIME": "time",
    "TIMESTAMP": "timestamp",
    "TIMESTAMPTZ": "timestamptz",
    "TEXT": "text",
    "INTERVAL": "interval",
}
#: Functions Redshift names otherwise than as called, from its documentation's examples (NVL's column is
#: ``coalesce``, GETDATE's ``timestamp``, DECODE's ``case``; SYSDATE is no call: see :func:`_function_output_name`)
_CALLED_NAMES = {"nvl": "coalesce", "getdate": "timestamp", "decode": "case"}
_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+"')


def _called(function, text: str) -> str | None:
    """The name a function was called by in ``text`` (sqlglot keeps where it was written, not how: it reads
    ``to_char`` as TimeToStr, ``lpad`` as Pad, ``strpos`` and ``position`` alike), folded; None when not written as
    a call (an operator, SQL's own syntax such as ``extract(year from d)``)."""
    start, end = function.meta.get("start"), function.meta.get("end")
    written = text[start : end + 1] if isinstance(start, int) and isinstance(end, int) else ""
    if not _NAME.fullmatch(written):
        return None
    name = written[1:-1].replace('""', '"') if written.startswith('"') else written
    return _CALLED_NAMES.get(fold_name(name), fold_name(name))


def _output_name(expression, text: str) -> tuple[str | None, int]:
    """The column name the warehouse gives an output expression, as PostgreSQL's FigureColname works it out, with
    its strength there: 2 a name of the expression's own, 1 a type's name from a cast (or ``case``), 0 none
    (``?column?``). The name is None when it is not worked out here (:func:`distinct_columns` counts it as
    ``?column?``). A function is named as it was called (:func:`_called`), as Redshift names the few it renames."""
    from sqlglot import exp

    def folded(identifier) -> str:
        # Redshift folds the ASCII letters of every name to lower case, quoted ("delimited") names too (unless a
        # cluster sets enable_case_sensitive_identifier: then "X" and "x" are renamed apart for no need, harmlessly)
        return fold_name(identifier.name)

    if isinstance(expression, exp.Alias):
        return folded(expression.args["alias"]), 2
    if isinstance(expression, exp.Column):
        return folded(expression.this), 2
    if isinstance(expression, exp.Paren | exp.Bracket | exp.Collate | exp.Window | exp.WithinGroup | exp.Filter):
        # (n) and a[1] are named n and a; a window function, count(*) FILTER (...), listagg(...) WITHIN GROUP (...)
        # after the function
        return _output_name(expression.this, text)
    if isinstance(expression, exp.Subquery):  # a scalar subquery is named as its single column
        names = _query_names(expression.this, text)
        return (names[0], 2) if names and len(names) == 1 and names[0] is not None else (None, 0)
    if isinstance(expression, exp.Dot) and isinstance(expression.expression, exp.Func):
        return _output_name(expression.expression, text)  # pg_catalog.lower(s), public.f_udf(s): the function's name
    if isinstance(expression, exp.AtTimeZone):
        return "timezone", 2  # ts AT TIME ZONE 'UTC' is timezone('UTC', ts)
    if isinstance(expression, exp.Cast):
        name, strength = _output_name(expression.this, text)
        if (name is None and not isinstance(expression.this.unnest(), exp.Boolean)) or strength == 2:
            return name, strength
        cast_name = _CAST_NAMES.get(expression.to.this.name)
        return (cast_name, 1) if cast_name else (None, 0)
    if isinstance(expression, exp.Case):  # named as its ELSE value when that has a name of its own, else case
        default = expression.args.get("default")
        name, strength = _output_name(default, text) if default is not None else ("case", 0)
        return (None, 0) if name is None else (name, 2) if strength == 2 else ("case", 1)
    if isinstance(expression, exp.Boolean):
        return None, 0  # bool where true is a cast of 't' (older PostgreSQL), ?column? where it is a constant (16)
    if isinstance(expression, exp.Literal | exp.Null | exp.Neg | exp.Not | exp.BitwiseNot | exp.In | exp.Between):
        return "?column?", 0
    if isinstance(expression, exp.Tuple):
        return "row", 2  # (1, 2)
    if isinstance(expression, exp.Interval):
        return "interval", 1
    if isinstance(expression, exp.DecodeCase):
        return "case", 1
    # last of the functions: Collate, Cast, Case and DecodeCase, above, are functions to sqlglot too
    if isinstance(expression, exp.Func | exp.Mod):
        return _function_output_name(expression, text)
    if isinstance(expression, exp.And | exp.Or) or (
        isinstance(expression, exp.Binary) and not isinstance(expression, exp.Dot)
    ):
        return "?column?", 0  # an operator: a + b, a = b, a || b, a IS NULL
    return None, 0


def _function_output_name(expression, text: str) -> tuple[str | None, int]:
    """:func:`_output_name` of a function (or ``mod``, ``%``): the name it was called by, else the name PostgreSQL
    gives the syntax sqlglot reads as one (an operator has none)."""
    from sqlglot import exp

    called = _called(expression, text)  # mod(a, b) is a call; a % b, j -> 'k' are operators sqlglot reads so
    if called is not None:
        return called, 2
    if isinstance(expression, exp.Anonymous):
        return fold_name(expression.name), 2
    if isinstance(expression, exp.Binary | exp.JSONExtract | exp.JSONExtractScalar | exp.JSONBExtract):
        return "?column?", 0
    if isinstance(expression, exp.CurrentTimestamp):
        return "timestamp", 2  # SYSDATE, as Redshift names it
    if isinstance(expression, exp.StrPosition):
        return "position", 2  # position('b' in s)
    if isinstance(expression, exp.GroupConcat):
        return "string_agg", 2  # string_agg(s, ','), which sqlglot keeps no place for (listagg has one)
    if isinstance(expression, exp.Trim):  # trim(s), trim(leading 'x' from s)
        position = str(expression.args.get("position") or "").upper()
        return {"LEADING": "ltrim", "TRAILING": "rtrim"}.get(position, "btrim"), 2
    return expression.sql_name().lower(), 2  # SQL's own syntax: extract(...), current_date, substring(...)


def inline_budget(job: Job) -> int:
    """Bytes the job's DynamoDB item has left for inline rows beside everything else it holds."""
    used = len(job.model_dump_json(exclude={"result"}).encode()) + ITEM_OVERHEAD_BYTES
    return max(ITEM_MAX_BYTES - used, 0)


#: Why a result that could not be collected in a function's time failed (spectra/deadline.py).
OUT_OF_TIME = (
    "collecting the result took longer than the function may run: ask for delivery export, whose files the warehouse"
    " writes itself"
)
#: DescribeStatement's states of a statement that has not ended.
NOT_ENDED = frozenset({"SUBMITTED", "PICKED", "STARTED"})


def collect_result(ports: Ports, job: Job, statement_id: str, info: StatementInfo | None = None) -> JobResult:
    """The finished statement's result, delivered as the job asked, with its expiry. Raises what the sink raises
    (:class:`~spectra.errors.ResultTooLarge`, :class:`~spectra.errors.ResultUnconvertible`).

    Without ``info`` (DescribeStatement's answer) the statement is not described: an export reads UNLOAD's
    manifest, anything else the result's first page, which has the row count DescribeStatement would give. Only a
    statement with no result set (a command a write-enabled tenant ran) is described then, for the rows it changed.
    """
    expires_at = utcnow() + timedelta(days=ports.settings.result_retention_days)
    if job.delivery is Delivery.EXPORT:
        # UNLOAD wrote the parts while the statement ran, and the bucket's lifecycle counts from each part's write:
        # the result expires as many days after the job was made, before any attempt started its statement, so its
        # files outlive it (the README's rule). Not from submitted_at: stamped when an attempt records the statement,
        # it can be minutes after the UNLOAD began (an attempt that died before recording it, the statement handed
        # to the next attempt through its ClientToken).
        expires_at = job.created_at + timedelta(days=ports.settings.result_retention_days)
        result = ports.results.collect_export(
            tenant_id=job.tenant_id,
            job_id=job.job_id,
            fmt=job.format,
            unload_manifest_key=f"{job.tenant_id}/{job.job_id}/part-manifest",
        )
        return result.model_copy(update={"expires_at": expires_at})
    opened = None
    if info is None:
        try:
            opened = ports.warehouse.open_result(statement_id)
            info = StatementInfo(statement_id, "FINISHED", result_rows=opened.total_rows, has_result_set=True)
        except (StatementRejected, NotFound):
            # No result set: what the command did is in DescribeStatement. AWS does not document the code of that
            # answer ("Query does not have result. Please check query status with DescribeStatement."), so both
            # are taken; a statement that is really gone is NotFound from DescribeStatement too.
            info = ports.warehouse.describe(statement_id)
            if info.status in NOT_ENDED:
                # Its event said FINISHED, and AWS does not say the result is readable by then: taken as it comes,
                # a statement still STARTED would complete its job with no rows
                raise Throttled(
                    f"statement {statement_id} is {info.status} still; its result is read again later"
                ) from None
    result = _write_pages(ports, job, info, header=None, opened=opened)
    if info.has_result_set and info.result_rows is not None and result.rows_read == info.result_rows - 1:
        # The first row equals the column names and was taken for a header line: the count says it was data. Written
        # again apart from the first pass: another handler of the statement (a copy of its event, the reconciler) may
        # have completed the job with its own second pass already, and at the same keys this one's first pass would
        # write over those files without the row; this one could then die or be throttled before writing them again,
        # and its retry, finding the job COMPLETED, would leave them so.
        result = _write_pages(ports, job, info, header=False, folder=REWRITTEN_FOLDER)
    if (
        info.has_result_set
        and None not in (result.rows_read, info.result_rows)
        and result.rows_read != info.result_rows
    ):
        logger.warning(
            "job %s: %s rows read, the warehouse reported %s", job.job_id, result.rows_read, info.result_rows
        )
    return result.model_copy(update={"expires_at": expires_at})


def _write_pages(
    ports: Ports,
    job: Job,
    info: StatementInfo,
    *,
    header: bool | None,
    opened: CsvResult | None = None,
    folder: str = "",
) -> JobResult:
    if opened is not None:
        columns, pages = opened.columns, opened.pages
    elif info.has_result_set:
        columns, pages = ports.warehouse.csv_result(info.statement_id)
    else:
        columns, pages = [], iter(())
    return ports.results.write(
        tenant_id=job.tenant_id,
        job_id=job.job_id,
        fmt=job.format,
        columns=columns,
        csv_pages=deadline.within(pages, OUT_OF_TIME),
        header=header,
        delivery=job.delivery,
        row_limit=job.row_limit,
        total_rows=info.result_rows if info.has_result_set else None,
        inline_budget=inline_budget(job),
        # rows affected by DML (-1 or 0 when the statement says none: a DDL)
        affected_rows=info.result_rows
        if not info.has_result_set and info.result_rows and info.result_rows > 0
        else None,
        folder=folder,
    )


def served_until(ports: Ports, job: Job) -> datetime | None:
    """When a finished job's result stops being served: the expiry stored with it, or sooner when
    ``ResultRetentionDays`` was lowered since. The results bucket's lifecycle follows the current setting and deletes
    files the stored expiry still promises: served until the stored expiry, their job would answer 200 with URLs that
    S3 answers 404. Counted as the stored expiry is (:func:`collect_result`): from the job's making for an export,
    whose files the UNLOAD wrote as it ran, else from the job's end, after its files were written."""
    result = job.result
    since = job.created_at if result is not None and result.delivery is Delivery.EXPORT else job.completed_at
    if result is None or result.expires_at is None or since is None:
        return result.expires_at if result is not None else None
    return min(result.expires_at, since + timedelta(days=ports.settings.result_retention_days))


def results_body(ports: Ports, job: Job) -> dict[str, Any]:
    """The results response of a COMPLETED job: inline rows, or presigned links to the files and the manifest."""
    result = job.result
    assert result is not None
    expires_at = served_until(ports, job)
    if expires_at is not None and utcnow() >= expires_at:
        raise Gone(
            f"the result of job {job.job_id} expired at {expires_at.isoformat()}; run the query again",
            details={"expired_at": expires_at.isoformat()},
        )
    ttl = ports.settings.presign_ttl_seconds
    if expires_at is not None:  # a URL never outlives the result: its files go soon after expires_at
        ttl = max(1, min(ttl, int((expires_at - utcnow()).total_seconds())))
    body: dict[str, Any] = {
        "job_id": job.job_id,
        "format": job.format.value,
        "delivery": result.delivery.value,
        "row_count": result.row_count,
        "truncated": result.truncated,
        "total_row_count": result.total_row_count,
        "columns": result.columns,
        "rows": ports.results.rows_of(result),
        "files": ports.results.presign(result, ttl_seconds=ttl),
        "manifest_url": (
            ports.results.presign_key(result, result.manifest_key, ttl_seconds=ttl)
            if result.manifest_key and result.files
            else None
        ),
        "expires_in": ttl,
        "expires_at": expires_at.isoformat() if expires_at else None,
    }
    return body
