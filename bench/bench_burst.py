"""A burst of 1,000 small jobs from 3 tenants: submit rate, drain rate, submit → webhook latency and time per stage.

Run: ``python -m bench.bench_burst [--jobs N] [--tenants T]`` (or ``make bench``). This process holds the Data API
emulator and a webhook receiver; moto runs in two processes of its own, one for DynamoDB and one for the rest
(``LocalAws.serving``), as AWS serves each service apart; the functions run in a process of their own (``python -m
local --functions-only``), as Lambda runs apart from the services it calls. Each tenant has a webhook subscription to
"Job Completed" and "Job Failed"; 16 client threads submit ``select 1`` jobs, spread evenly over the tenants, as fast
as the API answers. The run measures:

- submit: ``POST /v1/queries`` → 202, as requests per second over the submission window, and per request;
- drain: jobs per second from the first submit to the last webhook received;
- latency: submit → the job's webhook at the receiver, p50 / p99;
- stages, from each job's own timestamps: queued (created → SUBMITTED: the executor's queue, and the wait for a slot
  under the tenant's running cap), running (SUBMITTED → terminal: the statement, its completion event, the result),
  notify (terminal → webhook received: the bus, the notifier, the delivery queue, the POST);
- nothing lost, nothing doubled: every job ends COMPLETED, each has exactly one distinct ``webhook-id``, and copies
  of one ``webhook-id`` (at-least-once delivery) are counted;
- the requests the motos answered in that window, per job, by service and operation (counted by moto itself,
  ``local.aws.counted``): everything a burst costs, the pollers' empty receives included;
- the CPU the stack's processes used from the first submit to the last webhook (Linux ``/proc``): this process
  (the clients, the Data API emulator, the receiver), the two motos, the functions, and the emulator's PostgreSQL
  (its server and the backends alive at either end), per job and as a share of the machine's cores, with the load
  average before and after: the machine is shared, and what else ran is part of the result.

Baseline, measured in the same run: the same statements sent straight to the emulator by as many concurrent clients
as the tenants' running caps allow (3 tenants, 5 each), each waiting for its statement to finish: the warehouse's
own ceiling.

The per-tenant running cap (``TenantMaxRunningStatements``, 5) is left as configured: at most 15 statements run at
once, so the drain rate is bounded by 15 / (time a job holds its slot). Results print as a table and go to
``bench/results/burst.json``. ``--cap N`` runs the same burst under another cap (``--cap 100``: no job waits, which
shows what waiting costs) and writes ``bench/results/burst_cap<N>.json``; its baseline stays at the default caps'
concurrency.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import psycopg
import requests

from bench.bench_pipeline import SQL, direct_round_trip
from bench.report import save_results
from local.aws import LOCAL_CREDENTIALS, start_moto_process
from local.redshift_data import EmulatorConfig, start_emulator
from local.runner.wiring import SQS_CONCURRENCY_VARIABLE
from local.split_stack import SplitStack

CLIENT_THREADS = 16
RUNNING_CAP = 5  # the template's TenantMaxRunningStatements default, left as configured


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Receiver:
    """Webhook endpoint on 127.0.0.1: notes each delivery's arrival, ``webhook-id`` and job."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str, str]] = []  # (perf_counter, webhook-id, job id)
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arrived = time.perf_counter()
                job_id = json.loads(body)["data"].get("job_id", "")
                with receiver.changed:
                    receiver.arrivals.append((arrived, self.headers.get("webhook-id", ""), job_id))
                    receiver.changed.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for_jobs(self, jobs: set[str], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: jobs <= {job for _, _, job in self.arrivals}, timeout)


def direct_baseline(endpoint_url: str, region: str, statements: int, clients: int) -> float:
    """Statements per second straight to the emulator, ``clients`` at a time, each waiting for its statement."""
    client = boto3.client("redshift-data", endpoint_url=endpoint_url, region_name=region, **LOCAL_CREDENTIALS)

    def one(_: int) -> None:
        direct_round_trip(client, poll_seconds=0.005)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(statements)))
    return statements / (time.perf_counter() - start)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return children


def _postmaster_pid(admin_database_url: str) -> int:
    with psycopg.connect(admin_database_url) as conn:
        data_directory = conn.execute("select current_setting('data_directory')").fetchone()[0]
    return int(Path(data_directory, "postmaster.pid").read_text().split()[0])


class CpuMeter:
    """CPU seconds used by each of the stack's processes between :meth:`start` and :meth:`stop`."""

    def __init__(self, processes: dict[str, int], postmaster: int) -> None:
        self.processes = processes
        self.postmaster = postmaster

    def sample(self) -> dict[str, dict[int, float]]:
        postgres = [self.postmaster, *_children(self.postmaster)]
        sample = {name: {pid: _cpu_seconds(pid)} for name, pid in self.processes.items()}
        sample["postgres"] = {pid: _cpu_seconds(pid) for pid in postgres}
        return sample

    def start(self) -> None:
        self.started, self.load_before, self.clock = self.sample(), os.getloadavg(), time.perf_counter()

    def stop(self, jobs: int) -> dict:
        ended, elapsed = self.sample(), time.perf_counter() - self.clock
        used = {
            name: sum(cpu - self.started[name].get(pid, 0.0) for pid, cpu in pids.items())
            for name, pids in ended.items()
        }
        total = sum(used.values())
        return {
            "cpu_seconds": {name: round(seconds, 2) for name, seconds in used.items()},
            "cpu_ms_per_job": {name: round(seconds * 1000 / jobs, 1) for name, seconds in used.items()}
            | {"total": round(total * 1000 / jobs, 1)},
            "cores_busy": round(total / elapsed, 2),
            "machine_cores": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in self.load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }


def _seconds(later: str | None, earlier: str | None) -> float | None:
    if not later or not earlier:
        return None
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def run(jobs: int, tenant_count: int, workdir: str, cap: int = RUNNING_CAP) -> dict:
    aws = start_moto_process().serving("dynamodb", start_moto_process())
    aws.export()  # the emulator publishes its events to moto with these credentials
    emulator = start_emulator(EmulatorConfig(aws_endpoint_url=aws.endpoint_url, region=aws.region))
    receiver = Receiver()
    # Nothing is killed here, so batches stay invisible for their queue's own timeout, as on Lambda, without the
    # renewal heartbeat a killable process needs (``receive_visibility``, local/runner/sqs_poller.py).
    stack = SplitStack.provision(
        aws,
        emulator,
        workdir,
        stack_name="spectra-bench",
        # Five batches at once per unscaled SQS mapping, where Lambda starts (local/runner/wiring.py says why the
        # stack that shares its process with moto and the tests polls two).
        function_environment={"SPECTRA_FUNCTION_LOG_LEVEL": "ERROR", SQS_CONCURRENCY_VARIABLE: "5"},
        receive_visibility=None,
        parameter_overrides={"TenantMaxRunningStatements": cap},
    )
    try:
        keys = [stack.add_tenant(f"bench{n}") for n in range(tenant_count)]
        stack.functions.start()
        sessions = []
        for key in keys:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {key}"
            answer = session.post(
                stack.api_url + "/v1/subscriptions",
                json={"url": receiver.url, "events": ["Job Completed", "Job Failed"]},
            )
            answer.raise_for_status()
            sessions.append(session)
        # warm-up: every function's first environment, the authorizer's cache, first connections
        warm = [s.post(stack.api_url + "/v1/queries", json={"sql": SQL}).json()["job_id"] for s in sessions]
        if not receiver.wait_for_jobs(set(warm), 120):
            raise RuntimeError("warm-up jobs never reached the webhook receiver")

        submitted: dict[str, float] = {}
        submit_latency: list[float] = []
        lock = threading.Lock()

        def submit(n: int) -> None:
            session = sessions[n % tenant_count]
            start = time.perf_counter()
            response = session.post(stack.api_url + "/v1/queries", json={"sql": SQL})
            elapsed = time.perf_counter() - start
            response.raise_for_status()
            with lock:
                submitted[response.json()["job_id"]] = start
                submit_latency.append(elapsed)

        meter = CpuMeter(
            {
                "bench (clients, emulator, receiver)": os.getpid(),
                "moto": aws.pid,
                "moto (DynamoDB)": aws.pid_of("dynamodb"),
                "functions": stack.functions.pid,
            },
            _postmaster_pid(emulator.admin_database_url),
        )
        served_before = aws.requests_served()
        meter.start()
        burst_start = time.perf_counter()
        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            list(pool.map(submit, range(jobs)))
        submit_seconds = time.perf_counter() - burst_start
        if not receiver.wait_for_jobs(set(submitted), 600):
            raise RuntimeError("not every job's webhook arrived within 10 minutes")
        cpu = meter.stop(jobs)
        served = aws.requests_served() - served_before

        mine = [(at, webhook_id, job) for at, webhook_id, job in receiver.arrivals if job in submitted]
        first_arrival: dict[str, float] = {}
        ids_per_job: dict[str, set[str]] = defaultdict(set)
        for at, webhook_id, job in mine:
            first_arrival[job] = min(at, first_arrival.get(job, at))
            ids_per_job[job].add(webhook_id)
        drain_seconds = max(first_arrival.values()) - burst_start
        latency = [first_arrival[job] - submitted[job] for job in submitted]

        store = stack.jobs()
        statuses: Counter[str] = Counter()
        stages: dict[str, list[float]] = {"queued": [], "running": [], "notify": []}
        for job_id in submitted:
            job = store.get(job_id).model_dump(mode="json")
            statuses[job["status"]] += 1
            stages["queued"].append(_seconds(job["submitted_at"], job["created_at"]) or 0.0)
            stages["running"].append(_seconds(job["completed_at"], job["submitted_at"]) or 0.0)
            # the receiver's clock is perf_counter: the notify stage is latency minus the job's own time
            own = _seconds(job["completed_at"], job["created_at"]) or 0.0
            stages["notify"].append(max(0.0, first_arrival[job_id] - submitted[job_id] - own))
        copies = Counter(webhook_id for _, webhook_id, _ in mine)
        baseline = direct_baseline(emulator.endpoint_url, aws.region, jobs, tenant_count * RUNNING_CAP)
    finally:
        stack.stop()
        receiver.server.shutdown()
        emulator.stop()
        aws.stop()

    def summary(values: list[float]) -> dict:
        return {
            "p50_ms": statistics.median(values) * 1000,
            "p99_ms": percentile(values, 0.99) * 1000,
            "mean_ms": statistics.fmean(values) * 1000,
        }

    return {
        "jobs": jobs,
        "tenants": tenant_count,
        "client_threads": CLIENT_THREADS,
        "tenant_running_cap": cap,
        "submit_requests_per_second": jobs / submit_seconds,
        "submit_response": summary(submit_latency),
        "drain_jobs_per_second": jobs / drain_seconds,
        "drain_seconds": drain_seconds,
        "submit_to_webhook": summary(latency),
        "stages": {name: summary(values) for name, values in stages.items()},
        "terminal_states": dict(statuses),
        "jobs_with_exactly_one_webhook_id": sum(1 for ids in ids_per_job.values() if len(ids) == 1),
        "webhook_deliveries": len(mine),
        "webhook_copies_beyond_the_first": sum(count - 1 for count in copies.values()),
        "baseline_direct_statements_per_second": baseline,
        "cpu": cpu,
        "aws_requests_per_job": {name: round(count / jobs, 2) for name, count in sorted(served.items())},
        "aws_requests_per_job_total": round(sum(served.values()) / jobs, 2),
    }


def check(report: dict) -> None:
    """Nothing lost, nothing doubled: every job COMPLETED and exactly one webhook-id each."""
    jobs = report["jobs"]
    if report["terminal_states"] != {"COMPLETED": jobs}:
        raise SystemExit(f"not every job completed: {report['terminal_states']}")
    if report["jobs_with_exactly_one_webhook_id"] != jobs:
        raise SystemExit(f"webhook ids per job are off: {report['jobs_with_exactly_one_webhook_id']} of {jobs}")


def print_report(report: dict) -> None:
    print(
        f"\nBurst of {report['jobs']} jobs ({SQL!r}) from {report['tenants']} tenants, {report['client_threads']} "
        f"client threads, running cap {report['tenant_running_cap']} per tenant"
    )
    submit = report["submit_response"]
    print(f"  submit: {report['submit_requests_per_second']:.1f} req/s (202 in p50 {submit['p50_ms']:.0f} ms)")
    print(
        f"  drain:  {report['drain_jobs_per_second']:.1f} jobs/s ({report['drain_seconds']:.1f} s for the burst)"
        f"   baseline, direct Data API at the same concurrency: {report['baseline_direct_statements_per_second']:.1f}/s"
    )
    print(f"{'submit → webhook and stages':<36}{'p50 ms':>10}{'p99 ms':>10}")
    latency = report["submit_to_webhook"]
    print(f"{'submit → webhook received':<36}{latency['p50_ms']:>10.0f}{latency['p99_ms']:>10.0f}")
    for name, label in [
        ("queued", "  queued (incl. running-cap wait)"),
        ("running", "  running (statement → terminal)"),
        ("notify", "  notify (terminal → webhook)"),
    ]:
        row = report["stages"][name]
        print(f"{label:<36}{row['p50_ms']:>10.0f}{row['p99_ms']:>10.0f}")
    cpu = report["cpu"]
    print(
        f"  CPU per job {cpu['cpu_ms_per_job']['total']:.0f} ms ("
        + ", ".join(f"{name} {ms:.0f}" for name, ms in cpu["cpu_ms_per_job"].items() if name != "total")
        + f"); {cpu['cores_busy']:.2f} of {cpu['machine_cores']} cores busy with the stack; load average "
        f"{cpu['load_average_before'][0]:.1f} before, {cpu['load_average_after'][0]:.1f} after"
    )
    per_job = report["aws_requests_per_job"]
    print(
        f"  AWS requests per job {report['aws_requests_per_job_total']:.1f}: "
        + ", ".join(f"{name} {count:.2f}" for name, count in sorted(per_job.items(), key=lambda kv: -kv[1]))
    )
    print(
        f"  terminal states {report['terminal_states']}; jobs with exactly one webhook-id "
        f"{report['jobs_with_exactly_one_webhook_id']}; copies beyond the first "
        f"{report['webhook_copies_beyond_the_first']}"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument(
        "--cap", type=int, default=RUNNING_CAP, help="each tenant's running cap (default: the template's)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="spectra-bench-") as workdir:
        report = run(args.jobs, args.tenants, workdir, args.cap)
    print_report(report)
    save_results("burst" if args.cap == RUNNING_CAP else f"burst_cap{args.cap}", report)
    check(report)
    return report


if __name__ == "__main__":
    main()
