"""`make run` as a newcomer uses it: `python -m local` starts, prints its banner with a demo key, serves the curl
from the banner, and stops cleanly on Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.fixtures.stack import wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def commands(banner: str, title: str) -> str:
    """The shell lines of the banner's block that starts with ``title`` (up to the next blank line)."""
    block = banner.split(title, 1)[1].split("\n\n", 1)[0]
    return "\n".join(line.strip() for line in block.splitlines()[1:])


def readme_block(marker: str) -> str:
    """The first ```bash block of README.md after ``marker``, as a reader copies it."""
    text = (ROOT / "README.md").read_text().split(marker, 1)[1]
    return text.split("```bash\n", 1)[1].split("\n```", 1)[0]


def fresh_shell(**variables: str) -> dict:
    """A new terminal's environment: a plain PATH (no venv on it), no AWS variables, only what the README says to
    set. The state file's location follows this process's, so the local stack's commands find the same stack."""
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/local/bin:/usr/bin:/bin", **variables}
    env.update({k: os.environ[k] for k in ("TMPDIR", "SPECTRA_STATE_FILE") if k in os.environ})
    return env


def one_line(commands: str) -> str:
    """Shell lines with their continuations joined and runs of blanks made one, to compare two layouts."""
    return " ".join(commands.replace("\\\n", " ").split())


def bulk_jobs(api: str, headers: dict) -> list[dict]:
    return requests.get(f"{api}/v1/bulk/jobs", headers=headers, timeout=10).json()["records"]


def dropped_jobs(api: str, headers: dict) -> list[dict]:
    """The S3 drop's jobs, once there is one: the drop's event reaches the drop function through a queue, so the job
    is made a moment after ``aws s3 cp`` returns (listed at once, it was sometimes not there yet on a busy machine)."""
    deadline = time.monotonic() + 30
    while not (dropped := [j for j in bulk_jobs(api, headers) if j["source"] == "s3"]):
        assert time.monotonic() < deadline, "no job for the S3 drop within 30 s"
        time.sleep(0.2)
    return dropped


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
    state_file = tmp_path / "state.json"  # not the default: a developer's running `make run` keeps its own
    env = {
        **os.environ,
        "SPECTRA_API_PORT": "0",
        "SPECTRA_AWS_PORT": "0",
        "SPECTRA_REDSHIFT_PORT": "0",
        "SPECTRA_STATE_FILE": str(state_file),
    }
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
        assert state_file.exists()
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
        bulk = dropped_jobs(api, headers)
        assert bulk[0]["objectKey"] == "acme/contacts/new-contacts.csv"
        loaded = wait_bulk(api, headers, bulk[0]["id"])
        assert (loaded["state"], loaded["numberRecordsProcessed"], loaded["numberRecordsFailed"]) == (
            "JobComplete",
            1,
            0,
        ), loaded["error"]
        api_door = shell("Load with the Bulk API")
        assert api_door.returncode == 0, api_door.stderr
        assert api_door.stdout.endswith("wile@acme.test,false,wile@acme.test,Wile E. Coyote,Mesa\n"), api_door.stdout
        upsert = next(j for j in bulk_jobs(api, headers) if j["operation"] == "upsert")
        assert wait_bulk(api, headers, upsert["id"])["state"] == "JobComplete"
        status, _ = run("select email, city from contacts order by email", key)
        rows = requests.get(f"{api}/v1/jobs/{status['job_id']}/results", headers=headers, timeout=10).json()["rows"]
        assert rows == [["bugs@acme.test", "Burrow"], ["road@acme.test", "Desert"], ["wile@acme.test", "Mesa"]]

        aws = re.search(r"local AWS endpoint \(moto\):\s+(http://127\.0\.0\.1:\d+)", banner).group(1)
        readme_commands_work_as_pasted(banner, api, aws, key, tmp_path, state_file)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, "".join(lines)
    assert not state_file.exists()  # a stopped stack leaves no state for the admin CLI or --functions-only to follow


def one_call_query(api: str, key: str, sql: str) -> dict:
    """A query answered with its rows (``wait_timeout``), as the key's tenant."""
    answer = requests.post(
        f"{api}/v1/queries",
        json={"sql": sql, "wait_timeout": 25},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ).json()
    assert answer.get("status") == "COMPLETED", answer
    return answer


def readme_commands_work_as_pasted(banner: str, api: str, aws: str, key: str, tmp_path: Path, state_file: Path) -> None:
    """README.md's blocks, pasted into fresh shells against the running stack: only its host and demo key differ
    (and its state file's place: the default one is left to a developer's own `make run`)."""

    def pasted(block: str) -> str:
        return block.replace("http://127.0.0.1:3000", api).replace("spk_...", key)

    def bash(block: str, cwd: Path) -> subprocess.CompletedProcess:
        env = fresh_shell(SPECTRA_KEY=key, SPECTRA_STATE_FILE=str(state_file))
        return subprocess.run(["bash", "-ec", block], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)

    # The first query: its job id captured, followed to its end, then its status and its results asked for
    query = bash(pasted(readme_block("Query (SQL over REST):")), tmp_path)
    assert query.returncode == 0, query.stderr
    decoder = json.JSONDecoder()  # curl prints the two answers one after the other, with no line between
    status, end = decoder.raw_decode(query.stdout)
    results, _ = decoder.raw_decode(query.stdout, end)
    assert status["job_id"].startswith("j_"), status
    assert status["status"] == "COMPLETED" and "rows" in results, results  # not 409 job_not_finished: it ended

    one_call = bash(pasted(readme_block("Or in one call")), tmp_path)
    assert one_call.returncode == 0, one_call.stderr
    assert json.loads(one_call.stdout)["results"]["rows"] == [["anvil", "120.00"], ["rocket skates", "349.99"]]

    # The S3 drop is the banner's own line (tested above), but for the AWS CLI's path relative to the checkout.
    drop = readme_block("Load a CSV by dropping it in S3").replace(
        ".venv/bin/aws", str(Path(sys.executable).parent / "aws")
    )
    assert one_line(pasted(drop).replace("http://127.0.0.1:4566", aws)) == one_line(commands(banner, "Load a CSV by"))

    # The Bulk API example follows its job to the end, so its results are the rows, not 409 job_not_finished.
    bulk = bash(pasted(readme_block("Load with the Bulk API (create, upload, close, follow, results):")), tmp_path)
    assert bulk.returncode == 0, bulk.stderr
    assert '"state":"JobComplete"' in bulk.stdout, bulk.stdout
    assert bulk.stdout.endswith(
        "sf__Id,sf__Created,email,name,city\nwile@acme.test,false,wile@acme.test,Wile E. Coyote,Mesa\n"
    ), bulk.stdout

    # ... and with JSON records, the null loaded as NULL (the result file shows the row as stored: COPY's \N)
    json_bulk = bash(pasted(readme_block("The same with JSON records")), tmp_path)
    assert json_bulk.returncode == 0, json_bulk.stderr
    assert json_bulk.stdout.endswith("sf__Id,sf__Created,city,email,name\n,true,\\N,daffy@acme.test,Daffy Duck\n"), (
        json_bulk.stdout
    )
    found = one_call_query(api, key, "select city is null from contacts where email = 'daffy@acme.test'")
    assert found["results"]["rows"] == [[True]], found

    # The Notifications example: a local receiver, subscribed, gets the query's "Job Completed".
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    receiver_block = readme_block("start a receiver in a second terminal").replace("8099", port)
    receiver = subprocess.Popen(
        ["bash", "-ec", receiver_block],
        env=fresh_shell(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    received: list[str] = []
    threading.Thread(target=lambda: received.extend(receiver.stdout), daemon=True).start()
    try:
        subscribe = bash(pasted(readme_block("then subscribe it and run a query")).replace("8099", port), tmp_path)
        assert subscribe.returncode == 0, subscribe.stderr
        subscription, query = [json.loads(line) for line in subscribe.stdout.replace("}{", "}\n{").splitlines()]
        assert subscription["status"] == "active" and subscription["secret"].startswith("whsec_"), subscription
        assert query["status"] == "COMPLETED", query
        line = wait_until(lambda: [r for r in received if query["job_id"] in r], 30, "the webhook delivery")[0]
        webhook_id, body = line.split(" ", 1)
        assert webhook_id.startswith("msg_") and json.loads(body)["type"] == "Job Completed", line
    finally:
        os.killpg(receiver.pid, signal.SIGTERM)
        receiver.wait(10)

    # Operations: the local DLQ listing, run from the checkout as the README says, reads make run's state file.
    (dlq_show,) = [line for line in readme_block("**Dead-letter queues**").splitlines() if "--stack" not in line]
    shown = bash(dlq_show, ROOT)
    assert shown.returncode == 0, shown.stderr
    assert "JobsDeadLetterQueue (source JobsQueue): 0 waiting" in shown.stdout, shown.stdout

    # Operations: a tenant made as README's local block makes it (its user, then the admin command) queries as itself
    redshift = re.search(r"Redshift Data API emulator:\s+(http://127\.0\.0\.1:\d+)", banner).group(1)
    block = readme_block("On `make run`'s stack (from the checkout").replace("http://127.0.0.1:4567", redshift)
    made = bash(block, ROOT)
    assert made.returncode == 0, made.stderr
    new_key = re.search(r"API key \(shown this once\): (spk_\S+)", made.stdout).group(1)
    answer = one_call_query(api, new_key, "select current_user as who")
    assert answer["status"] == "COMPLETED" and answer["results"]["rows"] == [["tenant_initech"]], answer


def test_closing_the_terminal_stops_the_stack_and_forgets_its_state(tmp_path):
    """SIGHUP (the terminal closed, an SSH session dropped) stops everything as Ctrl-C does: it killed the process
    without stopping the embedded PostgreSQL, and then the first write to the gone terminal cut the stop short."""
    import pty
    import select

    state_file = tmp_path / "state.json"
    env = {**os.environ, "SPECTRA_API_PORT": "0", "SPECTRA_AWS_PORT": "0", "SPECTRA_REDSHIFT_PORT": "0"}
    env = {k: v for k, v in env.items() if not k.startswith("AWS_ENDPOINT_URL")} | {
        "SPECTRA_STATE_FILE": str(state_file)
    }
    pid, terminal = pty.fork()
    if pid == 0:  # the child: python -m local on the pseudo-terminal, as in a developer's shell
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "local"], env)
    seen, deadline = b"", time.monotonic() + 90
    while b"Ctrl-C stops everything" not in seen and time.monotonic() < deadline:
        if select.select([terminal], [], [], 1)[0]:
            try:
                seen += os.read(terminal, 65536)
            except OSError:
                break
    assert b"Ctrl-C stops everything" in seen, seen.decode(errors="replace")[-2000:]
    assert state_file.exists()
    os.close(terminal)  # the terminal goes away: the session leader gets SIGHUP
    deadline = time.monotonic() + 60
    while (ended := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            stuck = _where_threads_wait(pid)  # seen once, in a make test run only: where to look next time
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(
                f"still running a minute after the terminal closed; state file left: {state_file.exists()}; "
                f"its threads waiting in: {stuck}"
            )
        time.sleep(0.2)
    assert os.waitstatus_to_exitcode(ended[1]) == 0
    assert not state_file.exists()


def _where_threads_wait(pid: int) -> dict[str, int]:
    """The kernel functions the process's threads wait in (``/proc/<pid>/task/*/wchan``), each with how many."""
    waits: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            where = (task / "wchan").read_text().strip()
        except OSError:
            continue
        where = where if where not in ("", "0") else "running"
        waits[where] = waits.get(where, 0) + 1
    return waits
