"""The Bulk API's state machine where the executor, completion and the reconciler meet: gzip input that inflates past
what one call can write, a reconciler run killed mid-job, an executor re-run after its first attempt's load
committed (the request side's races are in test_bulk_service.py)."""

from __future__ import annotations

import pytest

from spectra.bulk import lifecycle
from spectra.bulk.downloads import job_results
from spectra.bulk.lifecycle import complete_bulk_statement, start_bulk_job
from spectra.bulk.models import BulkOperation, BulkState
from spectra.bulk.outcomes import KINDS
from spectra.bulk.service import change_state
from spectra.bulk.uploads import upload_batch
from spectra.errors import Conflict, StartUnderWay, Throttled
from tests.unit.fakes import INGEST_BUCKET, RESULTS_BUCKET, make_ports, make_settings, result_file
from tests.unit.test_bulk_service import CSV, caller, new_insert

pytestmark = pytest.mark.unit


def _dropped(body: bytes = b"id,name,city\n1,Ann,Oslo\n"):
    """Ports with tenant acme, its table ``accounts`` and a file dropped at ``acme/accounts/a.csv`` (``body``)
    accepted as a job: the ports, the file's key and the job's queue message."""
    from events import BulkJobQueuedMessage
    from spectra.bulk.drops import DroppedObject, accept_drop
    from tests.unit.fakes import INGEST_BUCKET

    ports = make_ports(settings=make_settings())
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.warehouse.add_table("public", "accounts", ["id", "name", "city"])
    key = "acme/accounts/a.csv"
    etag = ports.bulk.files.client.put_object(Bucket=INGEST_BUCKET, Key=key, Body=body)["ETag"]
    job = accept_drop(ports, DroppedObject(INGEST_BUCKET, key, len(body), etag))
    return ports, key, BulkJobQueuedMessage(job_id=job.job_id, tenant_id="acme")


def test_inline_result_files_are_sized_by_what_the_load_reads_not_by_compressed_bytes():
    """The completion consumer (90 s) and the reconciler (90 s) write a job's result files inline when its input is
    at most bulk_inline_results_max_bytes (16 MiB) -- counted in *compressed* bytes. A gzip batch under the limit
    that inflates past it (deflate reaches ~1000:1) is written inline all the same: here 64 KiB is the limit and a
    ~6 KB gzip inflating to ~2 MB (about 30x the limit) is still written inside the completion call."""
    import gzip as gz

    from events import BulkJobQueuedMessage
    from spectra.bulk.lifecycle import complete_bulk_statement
    from spectra.bulk.service import NewJob, create_job
    from spectra.tenants import Caller
    from tests.unit.fakes import make_ports, make_settings

    ports = make_ports(settings=make_settings(bulk_inline_results_max_bytes=64 * 1024))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    who = Caller.of(ports.tenants.get("acme"))
    rows = 200_000
    plain = b"id,name\n" + b"7,Ann\n" * rows
    body = gz.compress(plain, 9)
    assert len(body) < 64 * 1024 < len(plain)
    job, _ = create_job(ports, who, NewJob(object="accounts", operation=BulkOperation.INSERT))
    upload_batch(ports, who, job.job_id, body, gzip=True)
    change_state(ports, who, job.job_id, "UploadComplete")
    running = start_bulk_job(ports, BulkJobQueuedMessage(job_id=job.job_id, tenant_id="acme"))
    done = complete_bulk_statement(ports, ports.warehouse.finish_batch(running.statement_id, {0: rows, 1: []}))
    assert done.results_ready is False and ports.bulk.results_queue.messages  # the results consumer writes them


def test_the_reconcilers_bulk_pass_writes_inline_results_without_first_moving_the_job_back():
    """A lost completion event: the reconciler completes the job itself, writing its (inline) result files inside
    its own 90 s invocation, and nothing has moved the job out of the head of the pending index when it does. An
    invocation killed by Lambda's timeout there (a gzip batch inflating to GBs) leaves the job first in line, so
    every later run dies on it again and no bulk job behind it, of any tenant, is reconciled."""
    from spectra.bulk import outcomes
    from tests.unit.test_bulk_reconcile import bulk_ports, started, sweep

    ports = bulk_ports()
    job = started(ports)
    ports.warehouse.finish_batch(job.statement_id, {0: 2, 1: []})  # the statement ended; its event was lost
    before = ports.bulk.jobs.pending_since(job.job_id)
    seen = []
    real = outcomes.write_results

    def watching(p, view, **options):
        seen.append(ports.bulk.jobs.pending_since(job.job_id))
        return real(p, view, **options)

    outcomes.write_results = watching
    try:
        sweep(ports, 600)
    finally:
        outcomes.write_results = real
    assert seen, "the reconciler did not write the result files itself"
    assert seen[0] != before, "the result files are written while the job still heads the pending index"


def test_a_rerun_that_fails_its_checks_does_not_end_a_job_whose_first_attempt_started_its_load():
    """The executor died between BatchExecuteStatement and recording it (the window the README says the next
    executor closes by getting the same statement back through its ClientToken). Before the redelivery, the dropped
    file is put again at its key: the re-run's header read raises FileReplaced and fails the job (file_replaced,
    no files) without looking for the statement the first attempt started, which committed the first file's rows.
    The job says Failed with no records while its rows are in the table."""
    from tests.unit.fakes import INGEST_BUCKET

    ports, key, message = _dropped()
    job = ports.bulk.jobs.get(message.job_id)
    ports.bulk.jobs.die_recording_statement()
    with pytest.raises(RuntimeError):
        start_bulk_job(ports, message)
    [statement_id] = [s for s in ports.warehouse.statements if ":" not in s]
    change = ports.warehouse.finish_batch(statement_id, {0: 1, 1: []})  # the first attempt's load committed
    ports.bulk.files.client.put_object(Bucket=INGEST_BUCKET, Key=key, Body=b"id,name,city\n2,Bo,Rome\n")
    start_bulk_job(ports, message)  # the redelivery
    done = complete_bulk_statement(ports, change) or ports.bulk.jobs.get(job.job_id)
    assert done.state is BulkState.JOB_COMPLETE, (done.state, done.error, "the table holds the row")


def test_an_abort_asked_while_a_redelivery_records_the_earlier_attempts_statement_cancels_it(monkeypatch):
    """The first attempt started the load and died before recording it. Its redelivery read the job (no abort yet),
    and found the statement under the job's name; an abort asked between the read and the record found no statement
    to cancel, and the redelivery recorded the statement without cancelling it: the load ran on, aborted. The path of
    a failed check already cancelled it; both record the statement the same way now (the last look)."""
    from spectra.jobs import utcnow

    ports, _, message = _dropped()
    ports.bulk.jobs.die_recording_statement()
    with pytest.raises(RuntimeError):
        start_bulk_job(ports, message)
    [statement_id] = [s for s in ports.warehouse.statements if ":" not in s]
    find = ports.warehouse.find

    def abort_asked_meanwhile(name):
        ports.bulk.jobs.update(message.job_id, [BulkState.IN_PROGRESS], abort_requested_at=utcnow())
        return find(name)

    monkeypatch.setattr(ports.warehouse, "find", abort_asked_meanwhile)
    assert start_bulk_job(ports, message) is None  # the redelivery
    assert ports.bulk.jobs.get(message.job_id).statement_id == statement_id
    assert ports.warehouse.statements[statement_id].status == "ABORTED"


def closed_insert(**settings):
    """An insert job of one batch, closed (UploadComplete): its message is the last on the jobs queue."""
    ports = make_ports(settings=make_settings(**settings))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    change_state(ports, caller(ports), job.job_id, "UploadComplete")
    return ports, job


def test_a_losing_failed_ending_does_not_overwrite_the_winning_completes_result_files(monkeypatch):
    """(Found by the bulk races review.) Two deliveries of the load's FINISHED event (EventBridge is at least once,
    and the reconciler's _check_statement calls complete_bulk_statement too). Delivery X fails reading the counts on
    its last attempt (FAILED completion_failed); delivery Y ends the job JobComplete between X's attempt count and
    X's finish_bulk_job. X's ending is refused (the job moved), but it wrote its result files (every record
    unprocessed) before its conditional write, over Y's: the tenant would send the loaded row again."""
    ports, job = closed_insert(result_max_attempts=1)
    running = start_bulk_job(ports, ports.queue.messages[-1])
    change = ports.warehouse.finish_batch(running.statement_id, {0: 1, 1: []})

    real_counts = lifecycle._load_counts
    fail_once = []

    def counts_fail_for_x(p, j, subs):
        if not fail_once:
            fail_once.append(True)
            raise RuntimeError("GetStatementResult: transient failure (delivery X)")
        return real_counts(p, j, subs)

    real_count_attempt = type(ports.bulk.jobs).count_result_attempt

    def y_completes_meanwhile(jobs, job_id):
        counted = real_count_attempt(jobs, job_id)
        done = complete_bulk_statement(ports, change)  # delivery Y
        assert done is not None and done.state is BulkState.JOB_COMPLETE
        return counted

    monkeypatch.setattr(lifecycle, "_load_counts", counts_fail_for_x)
    monkeypatch.setattr(type(ports.bulk.jobs), "count_result_attempt", y_completes_meanwhile)
    assert complete_bulk_statement(ports, change) is None  # delivery X: its FAILED ending is refused
    monkeypatch.undo()

    final = ports.bulk.jobs.get(job.job_id)
    assert final.state is BulkState.JOB_COMPLETE and final.results_ready
    successful = job_results(ports, caller(ports), job.job_id, "successfulResults")
    unprocessed = job_results(ports, caller(ports), job.job_id, "unprocessedrecords")
    assert result_file(ports, job.job_id, "unprocessed") == b"id,name\n", (
        "the loaded row is listed as unprocessed",
        successful,
        unprocessed,
    )
    assert result_file(ports, job.job_id, "successful").count(b"\n") == 2


def test_a_complete_endings_late_files_do_not_stay_over_the_failed_ending_that_won(monkeypatch):
    """(Found by the second bulk races review.) The other order of the test above: delivery X reads the counts and
    writes its JobComplete files before its conditional write; meanwhile delivery Y fails reading them on its last
    attempt, wins (Failed completion_failed) and its files list every record unprocessed. X's
    uploads landed after Y's: the Failed job listed the row as loaded and none unprocessed. The loser's files are
    its own attempt's, which the job never names."""
    from spectra.bulk import outcomes

    ports, job = closed_insert(result_max_attempts=1)
    running = start_bulk_job(ports, ports.queue.messages[-1])
    change = ports.warehouse.finish_batch(running.statement_id, {0: 1, 1: []})
    real_counts, real_write = lifecycle._load_counts, outcomes.write_results
    in_y = []

    def counts(p, j, subs):
        if in_y:
            raise RuntimeError("GetStatementResult: transient failure (delivery Y)")
        return real_counts(p, j, subs)

    def write(p, view, **options):
        if view.state is BulkState.JOB_COMPLETE and not in_y:  # X is writing its files; Y's whole ending runs
            in_y.append(True)
            y = complete_bulk_statement(ports, change)
            assert y is not None and y.state is BulkState.FAILED and y.results_ready
            in_y.clear()
        return real_write(p, view, **options)  # X's uploads complete after Y's

    monkeypatch.setattr(lifecycle, "_load_counts", counts)
    monkeypatch.setattr(outcomes, "write_results", write)
    assert complete_bulk_statement(ports, change) is None  # delivery X: refused
    monkeypatch.undo()

    final = ports.bulk.jobs.get(job.job_id)
    assert final.state is BulkState.FAILED and final.error.code == "completion_failed"
    assert result_file(ports, job.job_id, "unprocessed").count(b"\n") == 2
    assert result_file(ports, job.job_id, "successful").count(b"\n") == 1  # header


def test_endings_whose_files_and_writes_interleave_serve_the_files_of_the_write_that_won(monkeypatch):
    """Two deliveries of the load's FINISHED event, each past every check before either's terminal write: Y reads
    the counts and writes its JobComplete files; X, failing to read them on its last attempt, writes its Failed
    files (every record unprocessed) after Y's; Y's write wins, X's is refused. Files at fixed keys were X's then,
    the JobComplete job listing its loaded row as unprocessed; each ending's files are its own attempt's now, and
    the job serves the attempt its winning write recorded."""
    ports, job = closed_insert(result_max_attempts=1)
    running = start_bulk_job(ports, ports.queue.messages[-1])
    change = ports.warehouse.finish_batch(running.statement_id, {0: 1, 1: []})
    real_counts, real_transition = lifecycle._load_counts, ports.bulk.jobs.transition
    in_x, writes = [], []

    def counts(p, j, subs):
        if in_x:
            raise RuntimeError("GetStatementResult: transient failure (delivery X)")
        return real_counts(p, j, subs)

    def transition(job_id, to, **changes):
        if not writes:  # Y's write, its files written: X runs whole first, its own write held until Y's is made
            writes.append((job_id, to, changes))
            in_x.append(True)
            assert complete_bulk_statement(ports, change) is None  # X: refused
            in_x.clear()
            return writes[1]
        y_id, y_to, y_changes = writes[0]
        writes.append(real_transition(y_id, y_to, **y_changes))
        return real_transition(job_id, to, **changes)  # X's, after Y's

    monkeypatch.setattr(lifecycle, "_load_counts", counts)
    monkeypatch.setattr(ports.bulk.jobs, "transition", transition)
    done = complete_bulk_statement(ports, change)  # Y
    monkeypatch.undo()

    assert done is not None and done.state is BulkState.JOB_COMPLETE and done.results_ready
    files = [k for k in ports.bulk.files.client.keys(RESULTS_BUCKET) if "/results/" in k]
    assert len(files) == 6, files  # both wrote theirs
    assert result_file(ports, job.job_id, "successful").count(b"\n") == 2
    assert result_file(ports, job.job_id, "unprocessed") == b"id,name\n"


def _inside_batch_execute_statement(ports, monkeypatch, meanwhile) -> list:
    """The next BatchExecuteStatement runs ``meanwhile`` before its statement is made, then the statement, a one-row
    COPY, commits at once; the list returned holds its status event."""
    warehouse = type(ports.warehouse)
    execute_batch = warehouse.execute_batch
    changes: list = []

    def inside(wh, sqls, **kw):
        meanwhile()
        statement_id = execute_batch(wh, sqls, **kw)
        changes.append(wh.finish_batch(statement_id, {0: 1, 1: []}))
        return statement_id

    monkeypatch.setattr(warehouse, "execute_batch", inside)
    return changes


def _load_of(ports, job_id: str) -> str:
    [load] = [s for s, st in ports.warehouse.statements.items() if ":" not in s and st.name == job_id]
    return load


def test_a_copy_that_finds_an_abort_leaves_it_to_the_copy_inside_batch_execute_statement(monkeypatch):
    """(Found by the second bulk races review.) Copy A passed its last look (the plan write) and is inside
    BatchExecuteStatement; the tenant aborts (marked: no statement to cancel yet); copy B, a second delivery of the
    message, found no statement under the job's name (not made yet) and ended the job Aborted, every record
    unprocessed, while A's load committed. B's message now comes back later for a job planned a moment ago, and A
    records its statement and cancels it: the job ends as the load did (here it committed first: JobComplete)."""
    from spectra.bulk.service import change_state
    from tests.unit.test_bulk_service import caller

    ports, job = closed_insert()
    message = ports.queue.messages[-1]

    def abort_and_b_meanwhile():
        marked = change_state(ports, caller(ports), job.job_id, "Aborted")
        assert marked.state is BulkState.IN_PROGRESS and marked.statement_id is None
        with pytest.raises(StartUnderWay):  # B: its message comes back later
            start_bulk_job(ports, message)
        assert ports.bulk.jobs.get(job.job_id).state is BulkState.IN_PROGRESS

    changes = _inside_batch_execute_statement(ports, monkeypatch, abort_and_b_meanwhile)
    start_bulk_job(ports, message)  # A
    monkeypatch.undo()
    assert ("cancel", _load_of(ports, job.job_id)) in ports.warehouse.calls  # A carried out the abort (too late)
    complete_bulk_statement(ports, changes[0])
    final = ports.bulk.jobs.get(job.job_id)
    assert final.state is BulkState.JOB_COMPLETE and final.counts.processed == 1


def test_a_copy_that_finds_an_abort_leaves_an_export_to_the_copy_inside_execute_statement(monkeypatch):
    """The same window for a query job (an export), whose start wrote no plan: copy B ended the job Aborted while
    copy A's UNLOAD started and wrote its parts. A's plan now holds B back, and A cancels its statement; the job
    ends as the statement does."""
    from spectra.bulk.service import NewJob, change_state, create_job
    from tests.unit.test_bulk_service import caller

    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    job, _ = create_job(ports, caller(ports), NewJob(object=None, operation=BulkOperation.QUERY, query="select 1"))
    message = ports.queue.messages[-1]
    warehouse = type(ports.warehouse)
    execute = warehouse.execute

    def inside(wh, sql, **kw):
        marked = change_state(ports, caller(ports), job.job_id, "Aborted")
        assert marked.state is BulkState.IN_PROGRESS and marked.statement_id is None
        with pytest.raises(StartUnderWay):  # B: its message comes back later
            start_bulk_job(ports, message)
        assert ports.bulk.jobs.get(job.job_id).state is BulkState.IN_PROGRESS
        return execute(wh, sql, **kw)

    monkeypatch.setattr(warehouse, "execute", inside)
    start_bulk_job(ports, message)  # A
    monkeypatch.undo()
    [unload] = [s for s, st in ports.warehouse.statements.items() if st.name == job.job_id]
    assert ("cancel", unload) in ports.warehouse.calls  # A carried out the abort
    complete_bulk_statement(ports, ports.warehouse.status_change(unload))
    final = ports.bulk.jobs.get(job.job_id)
    assert final.state is BulkState.ABORTED and final.statement_id == unload


@pytest.mark.parametrize("meanwhile", ["the table changed", "the tenant deactivated"])
def test_a_copy_whose_check_fails_leaves_the_job_to_the_copy_inside_batch_execute_statement(monkeypatch, meanwhile):
    """(Found by the second bulk races review, and the identity check by the review of that fix.) The same window
    for a copy whose check fails: it failed the job, every record unprocessed, while the other copy's load
    committed."""
    ports, _ = closed_insert(tenant_cache_seconds=0)
    message = ports.queue.messages[-1]

    def b_fails_its_check_meanwhile():
        if meanwhile == "the table changed":
            ports.warehouse.add_table("public", "accounts", ["id", "title"])  # a header B cannot load
        else:
            ports.tenants.set_active("acme", False)
        with pytest.raises(StartUnderWay):
            start_bulk_job(ports, message)

    changes = _inside_batch_execute_statement(ports, monkeypatch, b_fails_its_check_meanwhile)
    start_bulk_job(ports, message)  # A
    monkeypatch.undo()
    assert complete_bulk_statement(ports, changes[0]).state is BulkState.JOB_COMPLETE


def test_a_copy_that_meets_the_abort_at_its_plan_write_leaves_the_job_to_the_copy_inside_the_call(monkeypatch):
    """(Found by the review of the fix above.) Copy B read the job before the abort was asked, and met it only at
    its plan write, which wrote over A's plan (and its planned_at) before it refused: B then ended the job Aborted
    while A's load committed. The plan write now refuses a job asked to abort, and B waits as at the other endings."""
    from spectra.bulk.service import change_state
    from tests.unit.test_bulk_service import caller

    ports, job = closed_insert()
    message = ports.queue.messages[-1]
    describe_table = ports.warehouse.describe_table
    described = []

    def described_then_aborted(*args, **kwargs):  # B reads the table, and the tenant aborts before B's plan write
        described.append(True)
        if len(described) == 2:
            assert change_state(ports, caller(ports), job.job_id, "Aborted").statement_id is None
        return describe_table(*args, **kwargs)

    monkeypatch.setattr(ports.warehouse, "describe_table", described_then_aborted)

    def b_meanwhile():
        with pytest.raises(StartUnderWay):
            start_bulk_job(ports, message)
        assert ports.bulk.jobs.get(job.job_id).plan.planned_at is not None  # A's, kept

    changes = _inside_batch_execute_statement(ports, monkeypatch, b_meanwhile)
    start_bulk_job(ports, message)  # A
    monkeypatch.undo()
    assert complete_bulk_statement(ports, changes[0]).state is BulkState.JOB_COMPLETE


@pytest.mark.parametrize("meanwhile", ["the table changed", "the tenant deactivated"])
def test_an_unstarted_ending_decided_before_another_copys_plan_is_refused_by_that_plan(monkeypatch, meanwhile):
    """(Found by the review of the fix above, whose check read the job, decided, and wrote apart.) Copy B's check
    fails and it reads the job: no plan. Copy A then writes its plan and starts the load. B's ending, written on
    what it read, won while A's load committed. It is now conditional on the plan as read: refused, B reads the job
    again and lets its message come back later."""
    import threading

    ports, _ = closed_insert(tenant_cache_seconds=0)
    message = ports.queue.messages[-1]
    warehouse = type(ports.warehouse)
    describe_table, execute_batch = warehouse.describe_table, warehouse.execute_batch
    store = ports.bulk.jobs
    real_get = type(store).get
    b_read, go_b, changes, b_thread, b_gets, b_outcome = threading.Event(), threading.Event(), [], [], [], []

    def get(self, job_id, *args, **kwargs):
        found = real_get(self, job_id, *args, **kwargs)
        if threading.current_thread() is not threading.main_thread():
            b_gets.append(found)
            if len(b_gets) == 2:  # B's read before its ending: it returns before A's plan write
                assert found.plan is None
                b_read.set()
                assert go_b.wait(10)
        return found

    def run_b():
        try:
            start_bulk_job(ports, message)
        except StartUnderWay:
            b_outcome.append("comes back later")

    def describe(wh, schema, table, *, identity):
        answer = describe_table(wh, schema, table, identity=identity)
        if threading.current_thread() is threading.main_thread() and not b_thread:  # A has read the table
            if meanwhile == "the table changed":
                ports.warehouse.add_table("public", "accounts", ["id", "title"])
            else:
                ports.tenants.set_active("acme", False)
            b_thread.append(threading.Thread(target=run_b))
            b_thread[0].start()
            assert b_read.wait(10)
        return answer

    def batch(wh, sqls, **kwargs):  # A, past its plan write
        statement_id = execute_batch(wh, sqls, **kwargs)
        changes.append(wh.finish_batch(statement_id, {0: 1, 1: []}))  # committed at once
        go_b.set()
        b_thread[0].join(10)  # B writes its ending while A is inside the call
        return statement_id

    monkeypatch.setattr(type(store), "get", get)
    monkeypatch.setattr(warehouse, "describe_table", describe)
    monkeypatch.setattr(warehouse, "execute_batch", batch)
    start_bulk_job(ports, message)  # A
    monkeypatch.undo()
    assert b_outcome == ["comes back later"]
    assert complete_bulk_statement(ports, changes[0]).state is BulkState.JOB_COMPLETE


def test_on_its_last_delivery_a_copy_leaves_a_job_being_started_to_its_starter_and_the_reconciler(monkeypatch):
    """(Found by the same review.) The last delivery must not bounce its message again; it ended the job Aborted
    while the other copy's load committed. It now leaves the job (moved to the back of the pending index): the
    starter records its statement, or, should it have died, the reconciler queues a copy once the plan is old."""
    from spectra.bulk.service import change_state
    from tests.unit.test_bulk_service import caller

    ports, job = closed_insert()
    message = ports.queue.messages[-1]

    def abort_and_b_on_its_last_delivery():
        change_state(ports, caller(ports), job.job_id, "Aborted")
        assert start_bulk_job(ports, message, final_attempt=True) is None  # B
        assert ports.bulk.jobs.get(job.job_id).state is BulkState.IN_PROGRESS

    changes = _inside_batch_execute_statement(ports, monkeypatch, abort_and_b_on_its_last_delivery)
    start_bulk_job(ports, message)  # A
    monkeypatch.undo()
    assert complete_bulk_statement(ports, changes[0]).state is BulkState.JOB_COMPLETE


def _started_long_ago(ports, job_id: str) -> None:
    """The job started two hours ago and has been quiet since (the reconciler would look at it now)."""
    from datetime import timedelta

    from spectra.jobs import utcnow

    ports.bulk.jobs._items[job_id]["started_at"] = (utcnow() - timedelta(hours=2)).isoformat()
    ports.bulk.jobs._pending[job_id] = utcnow() - timedelta(hours=2)


def test_the_reconciler_does_not_give_up_a_job_a_later_attempt_is_starting(monkeypatch):
    """(Found by the second bulk races review.) A job InProgress without a statement past the give-up age (its first
    attempt's starts throttled for an hour; started_at stays that attempt's): a re-queued attempt writes its plan and
    is inside BatchExecuteStatement when the reconciler gave the job up, not_started, every record unprocessed, while
    the load committed. A plan written a moment ago keeps the job waiting."""

    from spectra.bulk.reconcile import reconcile_bulk
    from spectra.jobs import utcnow
    from spectra.reconciliation import ReconcileSummary, Thresholds

    ports, job = closed_insert()
    message = ports.queue.messages[-1]
    ports.warehouse.throttle_next("execute_batch")
    with pytest.raises(Throttled):
        start_bulk_job(ports, message)  # the first attempt: InProgress, planned, throttled
    _started_long_ago(ports, job.job_id)

    def reconciler_meanwhile():
        reconcile_bulk(ports, utcnow(), Thresholds.from_settings(ports.settings), ReconcileSummary())
        assert ports.bulk.jobs.get(job.job_id).state is BulkState.IN_PROGRESS

    changes = _inside_batch_execute_statement(ports, monkeypatch, reconciler_meanwhile)
    start_bulk_job(ports, message)  # a later attempt (the reconciler's re-queue)
    monkeypatch.undo()
    complete_bulk_statement(ports, changes[0])
    assert ports.bulk.jobs.get(job.job_id).state is BulkState.JOB_COMPLETE


def test_a_plan_left_by_an_attempt_that_died_holds_the_give_up_back_only_while_that_attempt_could_run(monkeypatch):
    from datetime import timedelta

    from spectra.bulk.lifecycle import STARTING_AT_MOST
    from spectra.bulk.reconcile import reconcile_bulk
    from spectra.jobs import utcnow
    from spectra.reconciliation import ReconcileSummary, Thresholds

    ports, job = closed_insert()

    def dies(wh, sqls, **kw):
        raise RuntimeError("the executor's environment went away")

    monkeypatch.setattr(type(ports.warehouse), "execute_batch", dies)
    with pytest.raises(RuntimeError):
        start_bulk_job(ports, ports.queue.messages[-1])
    monkeypatch.undo()
    _started_long_ago(ports, job.job_id)
    thresholds = Thresholds.from_settings(ports.settings)
    reconcile_bulk(ports, utcnow(), thresholds, ReconcileSummary())
    assert ports.bulk.jobs.get(job.job_id).state is BulkState.IN_PROGRESS  # planned a moment ago
    later = utcnow() + STARTING_AT_MOST + timedelta(seconds=1)
    reconcile_bulk(ports, later, thresholds, ReconcileSummary())
    given_up = ports.bulk.jobs.get(job.job_id)
    assert (given_up.state, given_up.error.code) == (BulkState.FAILED, "not_started")


def test_an_executor_whose_job_was_aborted_under_it_does_not_start_the_load(monkeypatch):
    """(Found by the bulk races review.) Two deliveries of the job's queue message (SQS standard queues repeat; the
    reconciler re-queues too). Executor A moves the job InProgress and checks its files; meanwhile the tenant PATCHes
    Aborted (abort_requested_at marked, no statement to cancel) and executor B, finding an InProgress job with an
    abort asked and no statement in the warehouse, ends it Aborted, every record unprocessed. A's plan write was then
    refused but ignored, and A started the load, which a small COPY committed before A's cancel: rows in the table
    while the tenant was told Aborted. The plan write is now A's last look."""
    ports, job = closed_insert()
    message = ports.queue.messages[-1]
    warehouse = type(ports.warehouse)
    describe_table, execute_batch = warehouse.describe_table, warehouse.execute_batch
    raced = []

    def abort_and_b_run_meanwhile(wh, schema, table, *, identity):
        if not raced:
            raced.append(True)
            marked = change_state(ports, caller(ports), job.job_id, "Aborted")
            assert marked.state is BulkState.IN_PROGRESS and marked.statement_id is None
            start_bulk_job(ports, message)  # executor B: the duplicate delivery
            assert ports.bulk.jobs.get(job.job_id).state is BulkState.ABORTED
        return describe_table(wh, schema, table, identity=identity)

    def a_fast_load(wh, sqls, **kw):  # a one-row COPY commits before anyone can cancel it
        statement_id = execute_batch(wh, sqls, **kw)
        wh.finish_batch(statement_id, {0: 1, 1: []})
        return statement_id

    monkeypatch.setattr(warehouse, "describe_table", abort_and_b_run_meanwhile)
    monkeypatch.setattr(warehouse, "execute_batch", a_fast_load)
    start_bulk_job(ports, message)  # executor A
    monkeypatch.undo()

    final = ports.bulk.jobs.get(job.job_id)
    assert final.state is BulkState.ABORTED
    assert result_file(ports, job.job_id, "unprocessed") == CSV
    loads = [s for s, st in ports.warehouse.statements.items() if ":" not in s and st.name == job.job_id]
    ran = [ports.warehouse.statements[s].status for s in loads]
    assert loads == [], f"a load ran (and committed: {ran}) for a job the tenant was told Aborted"


def test_a_called_off_executor_does_not_end_aborted_a_job_whose_load_another_copy_started(monkeypatch):
    """(Found by a diff review.) Two copies of the queue message (the reconciler re-queues a job whose executor is
    slow to read its files). A moves the job InProgress and reads its files; C finds it InProgress with no statement,
    looks the warehouse up (nothing yet) and reads the files too. A passes its last look and starts its load (a small
    COPY, committed at once); before A records it, the tenant aborts. C's last look sees the abort: ending the job
    Aborted without looking for the statement A started left the row in the table and in unprocessedrecords. It
    aborts as any job without a statement is aborted: A's statement is found and recorded, and the job ends as it
    ran."""
    import threading

    ports, job = closed_insert()
    message = ports.queue.messages[-1]
    warehouse = type(ports.warehouse)
    describe_table, execute_batch = warehouse.describe_table, warehouse.execute_batch
    c_reading, go_c, changes = threading.Event(), threading.Event(), []
    c_thread: list[threading.Thread] = []
    c_outcome: list[str] = []

    def run_c():
        try:
            start_bulk_job(ports, message)
        except StartUnderWay:  # A planned a moment ago: C's message comes back later
            c_outcome.append("comes back later")

    def describe(wh, schema, table, *, identity):
        if threading.current_thread() is threading.main_thread():  # A: let C get to its files first
            if not c_thread:
                c_thread.append(threading.Thread(target=run_c))
                c_thread[0].start()
                assert c_reading.wait(10)
        else:  # C: past its warehouse look-up (nothing started yet)
            c_reading.set()
            assert go_c.wait(10)
        return describe_table(wh, schema, table, identity=identity)

    def a_fast_load_then_abort(wh, sqls, **kw):
        statement_id = execute_batch(wh, sqls, **kw)
        if threading.current_thread() is threading.main_thread():
            changes.append(wh.finish_batch(statement_id, {0: 1, 1: []}))  # committed
            marked = change_state(ports, caller(ports), job.job_id, "Aborted")
            assert marked.statement_id is None  # not recorded yet: nothing cancelled
            go_c.set()
            c_thread[0].join(10)
        return statement_id

    monkeypatch.setattr(warehouse, "describe_table", describe)
    monkeypatch.setattr(warehouse, "execute_batch", a_fast_load_then_abort)
    start_bulk_job(ports, message)  # executor A
    monkeypatch.undo()
    for change in changes:
        complete_bulk_statement(ports, change)  # the load's FINISHED event

    final = ports.bulk.jobs.get(job.job_id)
    unprocessed = result_file(ports, job.job_id, "unprocessed")
    assert final.state is BulkState.JOB_COMPLETE, (final.state, final.statement_id, "the load committed", unprocessed)
    assert c_outcome == ["comes back later"]


def test_an_abort_whose_cancel_was_throttled_is_cancelled_by_the_messages_return(monkeypatch):
    """(Found by the cancel review.) PATCH Aborted lands while the executor is inside BatchExecuteStatement, past its
    last look: the API finds no statement to cancel and answers 200 InProgress. The executor records the statement,
    sees the abort, and its CancelStatement is throttled, which returns the message. The returning message found the
    statement recorded and did nothing, and the reconciler may not cancel: the load committed, the job ended
    JobComplete after the abort was accepted. The returning message now asks the cancel again."""
    ports, job = closed_insert()
    message = ports.queue.messages[-1]
    warehouse = type(ports.warehouse)
    execute_batch = warehouse.execute_batch

    def abort_during_the_call(wh, sqls, **kw):
        statement_id = execute_batch(wh, sqls, **kw)
        marked = change_state(ports, caller(ports), job.job_id, "Aborted")
        assert marked.state is BulkState.IN_PROGRESS and marked.statement_id is None
        wh.throttle_next("cancel")
        return statement_id

    monkeypatch.setattr(warehouse, "execute_batch", abort_during_the_call)
    with pytest.raises(Throttled):
        start_bulk_job(ports, message)
    monkeypatch.undo()
    start_bulk_job(ports, message)  # SQS returns it

    recorded = ports.bulk.jobs.get(job.job_id)
    assert ("cancel", recorded.statement_id) in ports.warehouse.calls
    final = complete_bulk_statement(ports, ports.warehouse.status_change(recorded.statement_id))
    assert final.state is BulkState.ABORTED


def test_an_abort_that_loses_to_the_loads_end_is_a_conflict_whichever_state_it_saw(monkeypatch):
    """(Found by the cancel review.) The load commits and completion ends the job between the abort's read (InProgress)
    and its conditional write: the abort did nothing, and says so with the 409 an abort of an ended job gets (it
    answered 200 with the JobComplete job, which a client reads as the abort accepted)."""
    ports, job = closed_insert()
    running = start_bulk_job(ports, ports.queue.messages[-1])
    update = ports.bulk.jobs.update

    def completion_first(job_id, expected, **changes):
        if "abort_requested_at" in changes:
            complete_bulk_statement(ports, ports.warehouse.finish_batch(running.statement_id, {0: 1, 1: []}))
        return update(job_id, expected, **changes)

    monkeypatch.setattr(ports.bulk.jobs, "update", completion_first)
    with pytest.raises(Conflict, match="already ended JobComplete"):
        change_state(ports, caller(ports), job.job_id, "Aborted")


def test_an_abort_whose_cancel_comes_after_the_loads_commit_is_a_conflict(monkeypatch):
    """The abort's write is made (the job InProgress), but the load commits and completion ends the job before the
    cancel reaches the statement: the abort stopped nothing. It answered 200 with the JobComplete job, read as the
    abort accepted; it is the 409 an abort of an ended job gets, saying when it came."""
    ports, job = closed_insert()
    running = start_bulk_job(ports, ports.queue.messages[-1])
    cancel = type(ports.warehouse).cancel

    def load_commits_first(wh, statement_id):
        complete_bulk_statement(ports, wh.finish_batch(running.statement_id, {0: 1, 1: []}))
        return cancel(wh, statement_id)

    monkeypatch.setattr(type(ports.warehouse), "cancel", load_commits_first)
    with pytest.raises(Conflict, match="ended JobComplete before the abort could stop it") as raised:
        change_state(ports, caller(ports), job.job_id, "Aborted")
    assert raised.value.details == {"state": "JobComplete"}
    assert ports.bulk.jobs.get(job.job_id).state is BulkState.JOB_COMPLETE


@pytest.mark.parametrize(("outcome", "ends"), [({0: 1, 1: []}, BulkState.JOB_COMPLETE), (None, BulkState.FAILED)])
def test_an_abort_that_finds_the_load_ended_in_the_warehouse_before_its_event_is_a_conflict(outcome, ends):
    """(Found by the diff review.) The usual late abort: the load's statement has ended in the warehouse and its
    event is on its way. The cancel finds it ended and stops nothing; the abort answered 200 InProgress, read as
    accepted, and the job then ended as its load did. It is a 409 naming the state the job ends in."""
    ports, job = closed_insert()
    running = start_bulk_job(ports, ports.queue.messages[-1])
    if outcome is None:
        change = ports.warehouse.fail(running.statement_id, "duplicate key value violates unique constraint")
    else:
        change = ports.warehouse.finish_batch(running.statement_id, outcome)
    with pytest.raises(Conflict, match=f"the job ends {ends.value}") as raised:
        change_state(ports, caller(ports), job.job_id, "Aborted")
    assert raised.value.details == {"state": "InProgress", "ends": ends.value}
    assert complete_bulk_statement(ports, change).state is ends


def test_an_abort_whose_cancel_stops_the_load_answers_the_job_and_ends_it_aborted():
    ports, job = closed_insert()
    running = start_bulk_job(ports, ports.queue.messages[-1])
    answer = change_state(ports, caller(ports), job.job_id, "Aborted")
    assert answer.state is BulkState.IN_PROGRESS and answer.abort_requested_at is not None
    done = complete_bulk_statement(ports, ports.warehouse.status_change(running.statement_id))
    assert done.state is BulkState.ABORTED


def test_a_lost_statement_given_up_does_not_overwrite_the_result_files_of_a_late_completion(monkeypatch):
    """(Found by the reconciler review.) The reconciler's DescribeStatement finds the statement gone while a late
    copy of its FINISHED event ends the job JobComplete: the statement_lost ending, refused, must not have written its
    result files (every record unprocessed) over the winner's first. They are its own attempt's now, never
    served."""
    from datetime import timedelta

    from spectra.bulk.reconcile import reconcile_bulk
    from spectra.errors import NotFound
    from spectra.jobs import utcnow
    from spectra.reconciliation import ReconcileSummary, Thresholds

    ports, job = closed_insert()
    running = start_bulk_job(ports, ports.queue.messages[-1])
    change = ports.warehouse.finish_batch(running.statement_id, {0: 1, 1: []})
    warehouse = type(ports.warehouse)
    describe, asked = warehouse.describe, []

    def late_event_then_gone(wh, statement_id):
        if asked:  # the late event's own look
            return describe(wh, statement_id)
        asked.append(statement_id)
        assert complete_bulk_statement(ports, change).state is BulkState.JOB_COMPLETE  # the late event's copy
        raise NotFound(f"statement {statement_id} is gone")

    monkeypatch.setattr(warehouse, "describe", late_event_then_gone)
    ports.bulk.jobs.mark_checked(job.job_id, BulkState.IN_PROGRESS, utcnow() - timedelta(hours=1))
    thresholds = Thresholds.from_settings(ports.settings)
    reconcile_bulk(ports, utcnow() + timedelta(minutes=10), thresholds, ReconcileSummary())
    monkeypatch.undo()

    final = ports.bulk.jobs.get(job.job_id)
    assert asked and final.state is BulkState.JOB_COMPLETE
    assert result_file(ports, job.job_id, "unprocessed") == b"id,name\n"
    assert result_file(ports, job.job_id, "successful").count(b"\n") == 2


def _two_copies_checking_side_by_side(monkeypatch, ports, message, meanwhile):
    """Executors A and C run one job's message at once: A moves the job InProgress; C, finding it InProgress without
    a statement, asks the warehouse for one (nothing yet) and waits; A checks the files, starts the load and records
    it; ``meanwhile(A's job)`` runs; then C checks the files. A's job as it returned."""
    import threading

    warehouse = type(ports.warehouse)
    describe_table, find = warehouse.describe_table, warehouse.find
    c_looked, go_c, c_thread, c_raised = threading.Event(), threading.Event(), [], []

    def copy_c():
        try:
            start_bulk_job(ports, message)
        except BaseException as exc:  # a thread's exception is only a warning to pytest: kept for the assert below
            c_raised.append(exc)

    def a_lets_c_look_first(wh, schema, table, *, identity):
        if threading.current_thread() is threading.main_thread() and not c_thread:
            c_thread.append(threading.Thread(target=copy_c))
            c_thread[0].start()
            assert c_looked.wait(60)
        return describe_table(wh, schema, table, identity=identity)

    def c_waits_after_its_look(wh, name):
        found = find(wh, name)
        if threading.current_thread() is not threading.main_thread() and not c_looked.is_set():
            c_looked.set()
            assert go_c.wait(60)
        return found

    monkeypatch.setattr(warehouse, "describe_table", a_lets_c_look_first)
    monkeypatch.setattr(warehouse, "find", c_waits_after_its_look)
    try:
        running = start_bulk_job(ports, message)  # executor A: starts the load and records it
        assert running is not None and running.statement_id
        meanwhile(running)
    finally:
        go_c.set()
        if c_thread:
            c_thread[0].join(60)
        monkeypatch.undo()
    assert c_thread and not c_thread[0].is_alive() and c_raised == []  # C ran its check to its end
    return running


def test_a_copy_whose_checks_fail_does_not_end_a_job_whose_load_another_copy_recorded(monkeypatch):
    """(Found by the bulk races hunt, r24.) Two copies of a drop's queue message (S3 delivered the event twice, and
    each delivery that finds the job UploadComplete queues it). A moves the job InProgress and checks the file; C
    finds it InProgress with no statement and asks the warehouse for one (nothing yet). A starts the load and records
    it; the tenant then puts the file again at its key. C's check now raises FileReplaced, and its Failed ending was
    conditional on the state only: the job ended Failed ``file_replaced`` with no records while A's load ran on and
    committed the first file's row (and the newer upload's own job loads the newer file)."""
    from tests.unit.fakes import INGEST_BUCKET

    ports, key, message = _dropped()
    job = ports.bulk.jobs.get(message.job_id)

    def put_again(running):
        ports.bulk.files.client.put_object(Bucket=INGEST_BUCKET, Key=key, Body=b"id,name,city\n2,Bo,Rome\n")

    running = _two_copies_checking_side_by_side(monkeypatch, ports, message, put_again)
    change = ports.warehouse.finish_batch(running.statement_id, {0: 1, 1: []})  # A's load committed
    complete_bulk_statement(ports, change)
    final = ports.bulk.jobs.get(job.job_id)
    assert final.state is BulkState.JOB_COMPLETE, (final.state, final.error, "the table holds the row")
    assert final.counts.processed == 1


def test_a_copy_whose_checks_fail_late_leaves_the_completed_jobs_result_files_alone(monkeypatch):
    """(Found by the bulk races hunt, r24.) As above, on a Bulk API job: A's load commits and its event ends the job
    JobComplete, its files written; then the tenant alters the table and C's column check fails. C's Failed ending
    is refused (the job ended), but it wrote its result files first: every record failed ``unknown_columns`` over
    the successful row, against the job's own counts (1 processed, 0 failed)."""
    ports, job = closed_insert()
    message = ports.queue.messages[-1]

    def load_ends_then_table_changes(running):
        done = complete_bulk_statement(ports, ports.warehouse.finish_batch(running.statement_id, {0: 1, 1: []}))
        assert done.state is BulkState.JOB_COMPLETE and done.results_ready
        ports.warehouse.add_table("public", "accounts", ["id", "label"])

    _two_copies_checking_side_by_side(monkeypatch, ports, message, load_ends_then_table_changes)
    final = ports.bulk.jobs.get(job.job_id)
    assert final.state is BulkState.JOB_COMPLETE and final.counts.processed == 1 and final.counts.failed == 0
    assert result_file(ports, job.job_id, "successful").count(b"\n") == 2
    assert result_file(ports, job.job_id, "failed").count(b"\n") == 1


# -- a second ending of the same statement, seen InProgress before the first ended ------------------------------------


def _stale_once(ports, monkeypatch, stale):
    """The completion's first read of the job answers ``stale`` (it read the job before another ending won)."""
    real_get, calls = ports.bulk.jobs.get, []

    def get(job_id):
        calls.append(job_id)
        return stale if len(calls) == 1 else real_get(job_id)

    monkeypatch.setattr(ports.bulk.jobs, "get", get)


def test_an_ending_that_fails_part_way_leaves_the_finished_jobs_files_whole(monkeypatch):
    """A copy of the status event (or the reconciler beside it) met S3 slowing down part-way through the input: its
    uploads were still closed, and the files of the job the first copy had finished were replaced by the few records
    read, for good (the bulk concurrency review)."""
    from botocore.exceptions import ClientError

    from spectra.bulk import outcomes

    ports, _, message = _dropped(b"id,name,city\n" + b"".join(b"%d,n%d,Oslo\n" % (i, i) for i in range(1000)))
    running = start_bulk_job(ports, message)
    change = ports.warehouse.finish_batch(running.statement_id, {0: 1000, 1: []})
    stale = ports.bulk.jobs.get(message.job_id)
    assert complete_bulk_statement(ports, change).state is BulkState.JOB_COMPLETE
    before = result_file(ports, message.job_id, "successful")
    assert before.count(b"\n") == 1001

    real_records = outcomes.records

    def slowed_down(*args, **kwargs):
        for n, record in enumerate(real_records(*args, **kwargs)):
            if n == 10:
                raise ClientError({"Error": {"Code": "SlowDown", "Message": "Reduce your rate"}}, "GetObject")
            yield record

    _stale_once(ports, monkeypatch, stale)
    monkeypatch.setattr(outcomes, "records", slowed_down)
    with pytest.raises(ClientError):
        complete_bulk_statement(ports, change)
    monkeypatch.undo()
    winner = ports.bulk.jobs.get(message.job_id)
    keys = [k for k in ports.bulk.files.client.keys(RESULTS_BUCKET) if "/results/" in k]
    attempts = {k.split("/results/")[1].split("/")[0] for k in keys}
    assert attempts == {winner.results_attempt}  # its uploads given up: no attempt of short files left behind
    assert result_file(ports, message.job_id, "successful") == before


def test_an_ending_that_loses_writes_no_files_over_the_winners(monkeypatch):
    """No error needed: the drop was put again after the first ending read it, so the second read stopped short
    (FileReplaced), lost its terminal write to an ending of the same state, and its files stayed (the bulk
    concurrency review). Its files go under an attempt of its own, which the refused write never records: the job
    serves the winner's."""
    ports, key, message = _dropped()
    running = start_bulk_job(ports, message)
    change = ports.warehouse.finish_batch(running.statement_id, {0: 1, 1: []})
    stale = ports.bulk.jobs.get(message.job_id)
    assert complete_bulk_statement(ports, change).state is BulkState.JOB_COMPLETE
    attempt = ports.bulk.jobs.get(message.job_id).results_attempt
    before = {kind: result_file(ports, message.job_id, kind) for kind in KINDS}
    ports.bulk.files.client.put_object(Bucket=INGEST_BUCKET, Key=key, Body=b"id,name,city\n2,Bo,Rome\n")

    _stale_once(ports, monkeypatch, stale)
    assert complete_bulk_statement(ports, change) is None
    monkeypatch.undo()
    assert ports.bulk.jobs.get(message.job_id).results_attempt == attempt
    assert {kind: result_file(ports, message.job_id, kind) for kind in KINDS} == before
