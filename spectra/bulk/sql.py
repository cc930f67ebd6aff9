"""The SQL a bulk job runs, as one BatchExecuteStatement (one transaction: a failure leaves the table as it was).

Every name comes from a validated identifier and is quoted; every literal is escaped the way Redshift reads string
literals (``''`` for a quote, ``\\\\`` for a backslash). Nothing the tenant sent is spliced in any other way.

insert::

    COPY target (file columns) FROM '<manifest>' MANIFEST ... MAXERROR n     -- once per compression
    SELECT <rejected rows> FROM stl_load_errors WHERE query = pg_last_copy_id()
    SELECT pg_last_copy_count()                                                -- the rows it loaded

update / upsert / delete (staging first, then one set-based change)::

    CREATE TEMP TABLE bulk_stage AS SELECT <file columns> FROM target WHERE 1 = 0
    COPY bulk_stage ... / SELECT <rejected rows> ... / SELECT pg_last_copy_count()   -- once per compression
    DELETE FROM bulk_stage WHERE <id> IS NULL OR <id> is blank               -- no id: failed, "missing external id"
    CREATE TEMP TABLE bulk_failed AS SELECT <id>, 'duplicate external id' ... HAVING count(*) > 1
    INSERT INTO bulk_failed SELECT <id>, 'not found' ... (update and delete: ids matching no visible row)
    INSERT INTO bulk_failed SELECT <id>, '<column>: missing data ...' ... (update, upsert: NULL for a NOT NULL column)
    DELETE FROM bulk_stage USING bulk_failed ...                             -- failed rows change nothing
    UPDATE target ... FROM bulk_stage | DELETE FROM target USING bulk_stage
    SELECT count(*) FROM bulk_stage                                          -- rows applied
    SELECT <id>, <outcome> ...                                               -- failed ids

upsert, after the same staging and refusals::

    CREATE TEMP TABLE bulk_created AS SELECT <row> ... WHERE NOT EXISTS (<in target>)  -- one join, before the writes
    CREATE TEMP TABLE bulk_counts AS SELECT <applied>, <created>                       -- one row
    UPDATE target ... FROM bulk_stage                                                   -- every row of each id
    INSERT INTO target SELECT ... FROM bulk_created                                     -- the new rows, no join
    SELECT applied - created FROM bulk_counts / SELECT applied FROM bulk_counts        -- rows updated, applied
    SELECT <id>, <outcome> ...                      -- failed ids, and the smaller of the created and updated ids

The outcome SELECT is run as an UNLOAD to the job's prefix when the caller gives ``outcome_url`` (as the executor
does): the result files read it from S3.

Statistics: COPY into the empty staging table refreshes its statistics (Redshift's STATUPDATE default), so the joins
after it are planned on its real size; no ANALYZE statement is needed.

Rows the tenant's row-level security hides count as "not found" (update, delete) or are inserted beside the hidden
ones (upsert): the warehouse decides what the tenant's identity may see and change, not this code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spectra.bulk.csvfiles import BulkInputError
from spectra.bulk.models import BulkJob, BulkOperation, LoadPlan, split_object

STAGE = "bulk_stage"
#: The staging table's name where a statement also names the target: no table name can be it (a hyphen is outside
#: the names a job may give, ``OBJECT_PATTERN``), so a target of any name, ``s`` included, never clashes with it.
STAGED = '"staged-row"'
FAILED = "bulk_failed"
CREATED = "bulk_created"
COUNTS = "bulk_counts"
REJECTED_ROWS = (
    "SELECT trim(filename), line_number, trim(colname), trim(err_reason) FROM stl_load_errors"
    " WHERE query = pg_last_copy_id() ORDER BY 1, 2"
)
#: In its place under ``MAXERROR 0``, where a COPY that loads rejected none: Redshift Serverless, whose rejected rows
#: ``stl_load_errors`` does not keep (:func:`max_errors`). The same columns, no rows.
NO_REJECTED_ROWS = (
    "SELECT CAST(NULL AS VARCHAR), CAST(NULL AS INTEGER), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR) WHERE FALSE"
)
#: The rows the COPY just run loaded, asked of the warehouse rather than read from its ResultRows: the Data API has
#: answered ResultRows 0 for a COPY (aws/aws-sdk#333, #356), and Redshift's COPY reports no count in its command tag.
LOADED_ROWS = "SELECT pg_last_copy_count()"
#: A failed row's reason, after its column's name, for an empty field of a NOT NULL column (Redshift's COPY words it
#: "Missing data for not-null field" in stl_load_errors).
NOT_NULL_REASON = "missing data for a NOT NULL column"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def table_name(job: BulkJob) -> str:
    schema, table = split_object(job.object)
    return f"{ident(schema)}.{ident(table)}"


def iam_role_clause(role: str) -> str:
    return "IAM_ROLE default" if role == "default" else f"IAM_ROLE {literal(role)}"


#: How a file's values are read. Redshift's COPY takes only ``YYYY-MM-DD HH:MI:SS`` timestamps (``...SSOF`` for
#: TIMESTAMPTZ) unless told ``'auto'``, which also reads ISO 8601 as exports write it (``2019-02-11T05:09:12.195Z``),
#: and it truncates a number past its column's scale (20.259 into DECIMAL(8,2) is 20.25) unless told ROUNDEC: with
#: these, a file's dates load as they would through an INSERT, and 20.259 is 20.26, as a cast makes it (COPY's
#: reference, "Data conversion parameters"). The emulator's PostgreSQL reads dates like 'auto' and rounds either way.
VALUE_OPTIONS = ("DATEFORMAT 'auto'", "TIMEFORMAT 'auto'", "ROUNDEC")


@dataclass(frozen=True)
class Manifest:
    url: str
    gzip: bool


def max_errors(configured: int, *, serverless: bool) -> int:
    """The COPY's ``MAXERROR``: the configured one on a provisioned cluster, whose ``stl_load_errors`` lists the rows
    it rejected (failedResults); 0 on Redshift Serverless, which keeps them in ``sys_load_error_detail`` under other
    query ids and not in ``stl_load_errors``, so a rejected row would go unlisted, its record reported successful.
    There a file with a bad row fails whole, saying so, and nothing is loaded."""
    return 0 if serverless else configured


def copy_statement(
    target: str,
    columns: list[str],
    manifest: Manifest,
    job: BulkJob,
    *,
    role: str,
    max_errors: int,
    listed: bool = True,
    explicit_ids: bool = False,
) -> str:
    """COPY of the manifest's files into ``target``; ``listed`` False leaves the column list out, for files whose
    columns are the table's own, in order (the statement then stays within the Data API's size for any table).
    ``explicit_ids``: the file names an IDENTITY column, which Redshift's COPY fills from the file only with
    EXPLICIT_IDS (without it, a column list naming one is refused)."""
    options = [
        iam_role_clause(role),
        "MANIFEST",
        "FORMAT AS CSV",
        f"DELIMITER {literal(job.column_delimiter.char)}",
        "IGNOREHEADER 1",
        f"MAXERROR {max_errors}",
        *VALUE_OPTIONS,
    ]
    if manifest.gzip:
        options.append("GZIP")
    if explicit_ids:
        options.append("EXPLICIT_IDS")
    cols = f" ({', '.join(map(ident, columns))})" if listed else ""
    return f"COPY {target}{cols} FROM {literal(manifest.url)} " + " ".join(options)


def check_statement_sizes(job: BulkJob, columns: Sequence[str], statements: Sequence[str], *, max_bytes: int) -> None:
    """Refuse (``too_many_columns``) a load whose batch holds a statement past the Data API's size limit, before
    anything runs. Every statement names each column of the file once or more (an update's UPDATE twice, with
    the staging table's name), so a wide table with long names passes the header check and would fail at the Data
    API, after the upload, with a statement-size error the tenant never wrote."""
    largest = max(len(statement.encode()) for statement in statements)
    if largest > max_bytes:
        raise BulkInputError(
            "too_many_columns",
            f"this {job.operation.value} of {len(columns)} columns takes a statement of {largest} bytes, past the"
            f" warehouse's {max_bytes}-byte limit: load fewer columns per job (an update or upsert leaves the"
            " columns its file does not name as they are), or use shorter column names",
        )


def load_statements(
    job: BulkJob,
    columns: list[str],
    manifests: list[Manifest],
    *,
    role: str,
    max_errors: int,
    outcome_url: str | None = None,
    not_null: Sequence[str] = (),
    table_columns: Sequence[str] = (),
    identity_columns: Sequence[str] = (),
) -> tuple[list[str], LoadPlan]:
    """The batch for an ingest job, and where in it completion finds each answer.

    ``table_columns``: the target's columns in order. An insert whose file has exactly these columns, in this order,
    names none of them in its COPY, unless the table has an IDENTITY column (``identity_columns``), which a COPY
    without a column list leaves out (Redshift's COPY reference). An insert whose file names an IDENTITY column loads
    the file's values into it (EXPLICIT_IDS), as a file exported from such a table, loaded again, asks.

    ``not_null``: the target's NOT NULL columns. An update or upsert refuses a row that would write NULL into one
    (an empty field of a non-text column), as COPY refuses it on insert, rather than fail the whole statement.

    ``outcome_url``: the per-id outcomes are UNLOADed there (CSV parts and a manifest) rather than returned as the
    last statement's result: an upsert of millions of rows lists up to half of their ids, which an UNLOAD writes in
    one pass where paging them through the Data API costs a request per page."""
    target = table_name(job)
    statements: list[str] = []
    copies: list[tuple[int, int]] = []

    loaded: list[int] = []

    def copies_into(table: str, *, listed: bool = True, explicit_ids: bool = False) -> None:
        for manifest in manifests:
            copy = copy_statement(
                table,
                columns,
                manifest,
                job,
                role=role,
                max_errors=max_errors,
                listed=listed,
                explicit_ids=explicit_ids,
            )
            statements.append(copy)
            statements.append(REJECTED_ROWS if max_errors else NO_REJECTED_ROWS)
            copies.append((len(statements) - 2, len(statements) - 1))
            statements.append(LOADED_ROWS)
            loaded.append(len(statements) - 1)

    if job.operation is BulkOperation.INSERT:
        listed = list(columns) != list(table_columns) or bool(identity_columns)
        copies_into(target, listed=listed, explicit_ids=bool(set(columns) & set(identity_columns)))
        return statements, LoadPlan(columns=columns, copies=copies, loaded=loaded)

    key = ident((job.external_id_field or "").lower())
    cols = ", ".join(map(ident, columns))
    if job.operation in (BulkOperation.UPSERT, BulkOperation.DELETE):
        # These read the target (which ids are new, which exist) and write from what they read: two upserts of one
        # table at once each found the same new ids missing and inserted them twice, and an update beside a delete
        # listed an id the delete took meanwhile as updated (under snapshot isolation, as in the emulator's READ
        # COMMITTED; under serializable isolation one fails with error 1023). The lock, held to the end of the
        # batch's transaction, makes them take turns, as AWS advises for concurrent writes; it comes before anything
        # else touches the target (taken after the staging table's read of it, two jobs each held that read's lock
        # while waiting for the other's: a deadlock), and an update's own read of the table holds the delete off
        # until it ends. Readers of the table wait for the batch (Redshift's LOCK is ACCESS EXCLUSIVE), and so do
        # those come while it waits for the lock. An update takes none: PostgreSQL asks UPDATE, DELETE or TRUNCATE
        # on the whole table to lock it, which a tenant granted UPDATE on some columns lacks (a delete's DELETE is
        # enough), and two updates of one id leave the later one's values, as any two UPDATEs do.
        statements.append(f"LOCK {target}")
    staged = cols
    if job.operation is BulkOperation.DELETE:
        # A delete reads the id alone: the file's other columns (a file exported from the table) are staged as text,
        # so a value COPY could not read as the column's type fails no row of a delete
        staged = ", ".join(
            ident(c) if ident(c) == key else f"CAST(NULL AS varchar(65535)) AS {ident(c)}" for c in columns
        )
    statements.append(f"CREATE TEMP TABLE {STAGE} AS SELECT {staged} FROM {target} WHERE 1 = 0")
    copies_into(STAGE)
    # A blank id is no id: COPY loads an empty CHAR/VARCHAR field as '' (no EMPTYASNULL), other types as NULL.
    statements.append(f"DELETE FROM {STAGE} WHERE {key} IS NULL OR trim({key}::varchar(65535)) = ''")
    statements.append(
        f"CREATE TEMP TABLE {FAILED} AS SELECT {key} AS id, 'duplicate external id'::varchar(256) AS reason"
        f" FROM {STAGE} GROUP BY {key} HAVING count(*) > 1"
    )
    if job.operation in (BulkOperation.UPDATE, BulkOperation.DELETE):
        statements.append(
            f"INSERT INTO {FAILED} SELECT DISTINCT s.{key}, 'not found' FROM {STAGE} s"
            f" WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE t.{key} = s.{key})"
            f" AND NOT EXISTS (SELECT 1 FROM {FAILED} f WHERE f.id = s.{key})"
        )
    required = [c for c in columns if c in not_null and ident(c) != key]
    if required and job.operation in (BulkOperation.UPDATE, BulkOperation.UPSERT):
        # NULL into a NOT NULL column would fail the UPDATE or INSERT, every row with it: refused row by row instead
        reasons = " ".join(f"WHEN s.{ident(c)} IS NULL THEN {literal(f'{c}: {NOT_NULL_REASON}')}" for c in required)
        nulls = " OR ".join(f"s.{ident(c)} IS NULL" for c in required)
        statements.append(
            f"INSERT INTO {FAILED} SELECT DISTINCT s.{key}, CASE {reasons} END FROM {STAGE} s WHERE ({nulls})"
            f" AND NOT EXISTS (SELECT 1 FROM {FAILED} f WHERE f.id = s.{key})"
        )
    statements.append(f"DELETE FROM {STAGE} USING {FAILED} WHERE {STAGE}.{key} = {FAILED}.id")
    updated_index = None
    if job.operation is BulkOperation.UPDATE:
        assignments = ", ".join(f"{ident(c)} = {STAGED}.{ident(c)}" for c in columns if ident(c) != key)
        statements.append(
            f"UPDATE {target} SET {assignments} FROM {STAGE} {STAGED} WHERE {target}.{key} = {STAGED}.{key}"
        )
    elif job.operation is BulkOperation.DELETE:
        statements.append(f"DELETE FROM {target} USING {STAGE} {STAGED} WHERE {target}.{key} = {STAGED}.{key}")
    else:  # upsert
        # Which staged rows are new is asked once, before the writes (after them every id exists), and they are kept
        # whole, so the INSERT below copies them as they are (joined back to the staging table by id instead, it
        # took about five times as long on the local engine: bench/README.md). The counts are kept in a one-row
        # table, so the answers below read them instead of scanning the staging table again.
        statements.append(
            f"CREATE TEMP TABLE {CREATED} AS SELECT {', '.join(f's.{ident(c)}' for c in columns)} FROM {STAGE} s"
            f" WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE t.{key} = s.{key})"
        )
        statements.append(
            f"CREATE TEMP TABLE {COUNTS} AS SELECT (SELECT count(*) FROM {STAGE}) AS applied,"
            f" (SELECT count(*) FROM {CREATED}) AS created"
        )
        # UPDATE ... FROM, then INSERT of the new ids, not MERGE: Redshift's MERGE allows no source row to match two
        # target rows (its reference's usage notes), and its example of a key held twice keeps one of the two rows.
        # The warehouse enforces no key, so a table holding an id twice would fail the job or lose a row; UPDATE ...
        # FROM sets every row of the id, as an update does. Columns the file does not name keep their values.
        changed = [c for c in columns if ident(c) != key]
        if changed:
            assignments = ", ".join(f"{ident(c)} = {STAGED}.{ident(c)}" for c in changed)
            statements.append(
                f"UPDATE {target} SET {assignments} FROM {STAGE} {STAGED} WHERE {target}.{key} = {STAGED}.{key}"
            )
        statements.append(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {CREATED}")
        statements.append(f"SELECT applied - created FROM {COUNTS}")
        updated_index = len(statements) - 1
    statements.append(
        f"SELECT applied FROM {COUNTS}" if job.operation is BulkOperation.UPSERT else f"SELECT count(*) FROM {STAGE}"
    )
    applied_index = len(statements) - 1
    # Per-id outcomes: the failed ids with their reason and, for an upsert, the smaller of the created and the updated
    # ids (whichever it is, the counts tell), so the answer stays as small as it can be. The conditions are
    # uncorrelated one-row subqueries: the branch not taken reads nothing.
    outcome = f"SELECT id::varchar(65535), reason FROM {FAILED}"
    if job.operation is BulkOperation.UPSERT:
        updated_twice = f"(SELECT (applied - created) * 2 FROM {COUNTS})"
        applied = f"(SELECT applied FROM {COUNTS})"
        outcome += (
            f" UNION ALL SELECT {key}::varchar(65535), 'created' FROM {CREATED} WHERE {updated_twice} >= {applied}"
            f" UNION ALL SELECT s.{key}::varchar(65535), 'updated' FROM {STAGE} s WHERE {updated_twice} < {applied}"
            f" AND NOT EXISTS (SELECT 1 FROM {CREATED} c WHERE c.{key} = s.{key})"
        )
    statements.append(outcome if outcome_url is None else unload_statement(outcome, outcome_url, role=role))
    plan = LoadPlan(
        columns=columns,
        copies=copies,
        loaded=loaded,
        applied_index=applied_index,
        updated_index=updated_index,
        outcome_index=len(statements) - 1,
        outcome_url=outcome_url,
    )
    return statements, plan


def unload_statement(
    query: str, destination: str, *, role: str, fmt: str = "CSV", gzip: bool = False, delimiter: str = ","
) -> str:
    """UNLOAD of a query to S3: ``fmt`` CSV parts with a header line (``gzip``: compressed; fields separated by
    ``delimiter``) or PARQUET parts, one after another (PARALLEL OFF keeps the rows in the query's order), and a
    verbose manifest that counts each part's records. Bulk query jobs and query jobs delivered by ``export``
    (spectra/delivery.py) both use it."""
    layout = "FORMAT AS PARQUET"
    if fmt != "PARQUET":
        layout = "FORMAT AS CSV HEADER" + (f" DELIMITER AS {literal(delimiter)}" if delimiter != "," else "")
        layout += " GZIP" if gzip else ""
    return (
        f"UNLOAD ({literal(query)}) TO {literal(destination)} {iam_role_clause(role)}"
        f" {layout} PARALLEL OFF MAXFILESIZE 100 MB MANIFEST VERBOSE ALLOWOVERWRITE"
    )
