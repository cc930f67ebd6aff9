"""Log keys of the work in hand (spectra/logs.py): on every line, the domain's too, and never lent to another thread."""

from __future__ import annotations

import io
import json
import logging
import threading
import uuid

import pytest
from aws_lambda_powertools import Logger

from spectra import logs

pytestmark = pytest.mark.unit


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
