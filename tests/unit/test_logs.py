"""Log keys of the work in hand (spectra/logs.py): on every line, the domain's too, and never lent to another thread."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from aws_lambda_powertools import Logger
from cfnlint.decode import decode

from spectra import logs

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def captured():
    """A Powertools logger of its own service writing JSON lines to a buffer, with the keys filter installed."""
    stream = io.StringIO()
    service = f"logs-test-{uuid.uuid4().hex[:8]}"  # Powertools configures one logging logger per service, once
    logger = Logger(service=service, stream=stream)
    logs.install(logger)
    domain = logging.getLogger(f"{service}.domain")  # a child, as spectra.lifecycle is of the service "spectra"
    with logs.job_keys():  # no keys left over by other tests that called the domain outside a unit of work
        yield logger, domain, lambda: [json.loads(line) for line in stream.getvalue().splitlines()]


def test_keys_reach_the_handlers_lines_and_the_domains(captured):
    logger, domain, lines = captured
    with logs.job_keys(job_id="j_1"):
        logger.info("handler line")
        logs.bind(tenant_id="acme", ignored=None)
        domain.info("domain line")
    logger.info("after the unit of work")
    first, second, after = lines()
    assert (first["job_id"], "tenant_id" in first) == ("j_1", False)
    assert (second["job_id"], second["tenant_id"]) == ("j_1", "acme")
    assert "ignored" not in second
    assert "job_id" not in after and "tenant_id" not in after


def test_a_unit_of_work_starts_clean_and_gives_back_the_keys_before_it(captured):
    logger, _, lines = captured
    with logs.job_keys(job_id="outer", tenant_id="acme"):
        with logs.job_keys(job_id="inner"):
            logger.info("inner")
        logger.info("outer again")
    inner, outer = lines()
    assert inner["job_id"] == "inner" and "tenant_id" not in inner
    assert (outer["job_id"], outer["tenant_id"]) == ("outer", "acme")


def test_an_explicit_extra_wins_over_the_bound_key(captured):
    logger, _, lines = captured
    with logs.job_keys(job_id="j_1"):
        logger.info("about another job", extra={"job_id": "j_2"})
    assert lines()[0]["job_id"] == "j_2"


def test_threads_never_see_each_others_keys(captured):
    """The local stack runs execution environments as threads of one process: two records in flight at once."""
    logger, _, lines = captured
    inside = threading.Barrier(2)

    def work(job_id: str, tenant_id: str) -> None:
        with logs.job_keys(job_id=job_id):
            logs.bind(tenant_id=tenant_id)
            inside.wait(5)  # both bound before either logs
            logger.info("working")
            inside.wait(5)

    threads = [threading.Thread(target=work, args=(f"j_{n}", f"t{n}")) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted((line["job_id"], line["tenant_id"]) for line in lines()) == [("j_0", "t0"), ("j_1", "t1")]


def _handler_modules() -> list[str]:
    body, _ = decode(str(ROOT / "template.yaml"))
    return sorted(
        {
            resource["Properties"]["Handler"].rsplit(".", 1)[0]
            for resource in body["Resources"].values()
            if resource["Type"] == "AWS::Serverless::Function"
        }
    )


_PROBE = """
import importlib, logging, sys
importlib.import_module(sys.argv[1])
from spectra import logs
with logs.job_keys(job_id="j_probe", tenant_id="t_probe"):
    logging.getLogger("spectra.reconciliation").warning("probe")
"""


@pytest.mark.parametrize("module", _handler_modules())
def test_each_function_alone_puts_the_keys_on_the_domains_lines(module):
    """On Lambda a function's process imports its own handler module and no other, so each must install the keys
    filter itself (locally, where functions share a process, one module's install served them all)."""
    environment = {**os.environ, "POWERTOOLS_SERVICE_NAME": "spectra"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, module], capture_output=True, text=True, timeout=60, cwd=ROOT, env=environment
    )
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(text) for text in done.stdout.splitlines() if '"probe"' in text]
    assert (line.get("job_id"), line.get("tenant_id")) == ("j_probe", "t_probe"), line


_FAILING = """
import importlib, sys
importlib.import_module("consumers.completion.app")
from spectra import logs
from spectra.errors import Throttled
for failure in (RuntimeError("the job table said no"), Throttled("Rate exceeded")):
    try:
        with logs.record(job_id="j_probe"):
            logs.bind(tenant_id="t_probe")
            raise failure
    except Exception:
        pass
"""


def test_a_failed_record_leaves_a_line_with_its_keys():
    """The batch processor reports a failed record to Lambda without a line: a message retried into its DLQ left no
    trace of why, or for which job (found by the operations review). Throttling, expected now and then, is INFO."""
    environment = {**os.environ, "POWERTOOLS_SERVICE_NAME": "spectra"}
    done = subprocess.run(
        [sys.executable, "-c", _FAILING], capture_output=True, text=True, timeout=60, cwd=ROOT, env=environment
    )
    assert done.returncode == 0, done.stderr
    failed = [json.loads(text) for text in done.stdout.splitlines() if "record failed" in text]
    assert [(f["level"], f["job_id"], f["tenant_id"]) for f in failed] == [
        ("WARNING", "j_probe", "t_probe"),
        ("INFO", "j_probe", "t_probe"),
    ]
    assert "RuntimeError" in failed[0]["message"] and "the job table said no" in failed[0]["exception"]
    assert "exception" not in failed[1]


_HANDLER_PROBE = """
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
from aws_lambda_powertools.utilities.batch import process_partial_response
record = {"messageId": "m-bad", "receiptHandle": "r", "body": sys.argv[2], "eventSource": "aws:sqs",
          "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1"}, "messageAttributes": {}}
answer = process_partial_response(event={"Records": [record]}, record_handler=module.record_handler,
                                  processor=module.processor)
print(json.dumps({"answer": answer}))
"""
_SECRET_BODY = json.dumps({"job": {"sql": "select pw = 'hunter2'"}, "Records": [{"hunter2": 1}]})


_NOT_SQS = ("consumers.reconciler.app", "producers.api.app", "producers.authorizer.app")


@pytest.mark.parametrize("module", [m for m in _handler_modules() if m not in _NOT_SQS])
def test_every_sqs_handler_logs_an_unreadable_record_without_repeating_it(module):
    """Five handlers read their message before their keys were open, so a body their model refused left no line;
    and a batch whose records all failed was raised, its tracebacks (input included) logged again at ERROR (found by
    review of this fix)."""
    environment = {**os.environ, "POWERTOOLS_SERVICE_NAME": "spectra"}
    done = subprocess.run(
        [sys.executable, "-c", _HANDLER_PROBE, module, _SECRET_BODY],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=environment,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["answer"] == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
    (failed,) = [json.loads(text) for text in done.stdout.splitlines() if "record failed" in text]
    assert (failed["level"], failed["message_id"]) == ("WARNING", "m-bad")
    assert " unreadable: " in failed["message"]
    assert "hunter2" not in done.stdout + done.stderr


_DETAIL_PROBE = """
import json
from consumers.notifier import app
from events import ProjectEvent
from events.catalog import SAMPLES
event = json.loads((SAMPLES / "job_failed_event.json").read_text())
event["detail"]["error"] = {"code": "statement_failed", "message": "syntax error at 'hunter2'"}
event["detail"].pop("status")
assert app.read_detail(ProjectEvent.model_validate(event)) is None
"""


def test_a_detail_the_notifier_cannot_count_is_described_never_repeated():
    """Its warning listed pydantic's errors, each with its input: the whole detail, a database error echoing a
    tenant's literal included (found by review)."""
    environment = {**os.environ, "POWERTOOLS_SERVICE_NAME": "spectra"}
    done = subprocess.run(
        [sys.executable, "-c", _DETAIL_PROBE], capture_output=True, text=True, timeout=60, cwd=ROOT, env=environment
    )
    assert done.returncode == 0, done.stderr
    assert "detail not counted on the dashboard: status: missing" in done.stdout
    assert "hunter2" not in done.stdout + done.stderr


def test_an_invocation_that_records_no_metric_writes_no_warning(recwarn):
    """Powertools warned "No application metrics to publish" (a plain-text line among the JSON ones) on every
    function's first invocation that recorded none: a listing, a sweep with nothing due; ``make run`` opened with it."""
    from aws_lambda_powertools import Metrics

    logs.install(Logger(service=f"logs-test-{uuid.uuid4().hex[:8]}"))
    Metrics(namespace="LogsTest", service="logs-test").flush_metrics()
    assert [str(w.message) for w in recwarn if "metrics" in str(w.message)] == []
