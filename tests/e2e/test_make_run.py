"""`make run` as a newcomer uses it: `python -m local` starts, prints its banner with a demo key, serves the curl
from the banner, and stops cleanly on Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def commands(banner: str, title: str) -> str:
    """The shell lines of the banner's block that starts with ``title`` (up to the next blank line)."""
    block = banner.split(title, 1)[1].split("\n\n", 1)[0]
    return "\n".join(line.strip() for line in block.splitlines()[1:])


def bulk_jobs(api: str, headers: dict) -> list[dict]:
    return requests.get(f"{api}/v1/bulk/jobs", headers=headers, timeout=10).json()["records"]


def wait_bulk(api: str, headers: dict, job_id: str) -> dict:
    deadline = time.monotonic() + 30
    while (job := requests.get(f"{api}/v1/bulk/jobs/{job_id}", headers=headers, timeout=10).json())["state"] not in (
        "JobComplete",
        "Failed",
        "Aborted",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


def test_python_m_local_serves_the_demo_and_stops_on_ctrl_c(tmp_path):
    env = {**os.environ, "SPECTRA_API_PORT": "0", "SPECTRA_AWS_PORT": "0", "SPECTRA_REDSHIFT_PORT": "0"}
    for name in [k for k in env if k.startswith("AWS_ENDPOINT_URL")]:
        del env[name]  # the process must find its endpoints by itself
    process = subprocess.Popen(
        [sys.executable, "-m", "local"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(60), "no banner within 60 s:\n" + "".join(lines)
        banner = "".join(lines)
        api = re.search(r"Spectra is running: API (http://127\.0\.0\.1:\d+)", banner).group(1)
        key = re.search(r"export SPECTRA_KEY=(spk_\S+)", banner).group(1)
        assert re.search(r"local AWS endpoint \(moto\):\s+http://127\.0\.0\.1:\d+", banner)

        other_key = re.search(r'demo tenant "globex" key: (spk_\S+)', banner).group(1)

        def run(sql: str, api_key: str) -> tuple[dict, dict]:
            headers = {"Authorization": f"Bearer {api_key}"}
            job = requests.post(f"{api}/v1/queries", json={"sql": sql}, headers=headers, timeout=10).json()
            deadline = time.monotonic() + 30
            while (status := requests.get(f"{api}/v1/jobs/{job['job_id']}", headers=headers, timeout=10).json())[
                "status"
            ] not in ("COMPLETED", "FAILED"):
                assert time.monotonic() < deadline, status
                time.sleep(0.1)
            return status, headers

        status, headers = run("select id, item, amount, margin from sales order by id", key)
        assert status["status"] == "COMPLETED", status
        rows = requests.get(f"{api}/v1/jobs/{status['job_id']}/results", headers=headers, timeout=10).json()["rows"]
        assert [row[1] for row in rows] == ["anvil", "rocket skates", "bird seed"]  # acme's rows only (RLS)
        # the demo's margin column is acme's alone (column-level security)
        status, _ = run("select id, margin from sales", other_key)
        assert status["status"] == "FAILED" and "permission denied" in status["error"]["message"], status

        # The one-call query and both bulk doors, exactly as the banner prints them, run by a shell.
        shell_env = {**env, "SPECTRA_KEY": key}

        def shell(title: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                ["bash", "-ec", commands(banner, title)],
                cwd=tmp_path,
                env=shell_env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        one_call = shell("Query in one call")
        assert one_call.returncode == 0, one_call.stderr
        answer = json.loads(one_call.stdout)
        assert answer["status"] == "COMPLETED", answer
        assert answer["results"]["rows"] == [["anvil", "120.00"], ["rocket skates", "349.99"]]
        assert requests.get(f"{api}/v1/docs", timeout=10).status_code == 200  # no key for the docs page
        drop = shell("Load a CSV by dropping it in S3")
        assert drop.returncode == 0, drop.stderr
        bulk = [j for j in bulk_jobs(api, headers) if j["source"] == "s3"]
        assert bulk and bulk[0]["objectKey"] == "acme/contacts/new-contacts.csv"
        loaded = wait_bulk(api, headers, bulk[0]["id"])
        assert (loaded["state"], loaded["numberRecordsProcessed"], loaded["numberRecordsFailed"]) == (
            "JobComplete",
            1,
            0,
        ), loaded["error"]
        api_door = shell("Load with the Bulk API")
        assert api_door.returncode == 0, api_door.stderr
        upsert = next(j for j in bulk_jobs(api, headers) if j["operation"] == "upsert")
        assert wait_bulk(api, headers, upsert["id"])["state"] == "JobComplete"
        status, _ = run("select email, city from contacts order by email", key)
        rows = requests.get(f"{api}/v1/jobs/{status['job_id']}/results", headers=headers, timeout=10).json()["rows"]
        assert rows == [["bugs@acme.test", "Burrow"], ["road@acme.test", "Desert"], ["wile@acme.test", "Mesa"]]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, "".join(lines)
