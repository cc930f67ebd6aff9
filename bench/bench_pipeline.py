"""Submit → "Job Completed" latency of the whole pipeline, beside a direct Data API round trip on the same emulator.

Run: ``python -m bench.bench_pipeline [--jobs N]`` (or ``make bench``). One local stack (moto, the Data API emulator,
template.yaml's functions) serves the run. For each of N small jobs, one at a time:

- pipeline: HTTP ``POST /v1/queries`` → the "Job Completed" event arrives on a subscriber's queue (an EventBridge
  rule on the project's bus, as any subscriber would set up);
- baseline: ExecuteStatement → DescribeStatement until FINISHED → GetStatementResultV2, straight to the emulator.

Then N more, one at a time, each interleaved with a direct round trip again:

- one call: HTTP ``POST /v1/queries`` with ``wait_timeout`` → 200 with the rows inline (the job ended within the
  wait); the API's extra AWS calls for waiting (job store reads) are counted apart.

The difference is what the pipeline costs on top of the warehouse: queue hops, state writes, the result file, the
event. It also counts the AWS API calls the functions made per job (by service and operation), which is what
bills and throttles in production, and splits off the notifier's (the fan-out to webhooks and SNS, which runs after
the job's event whatever the job). Calls the local runner makes in Lambda's place (SQS polling) are not counted.

Sessions: the pipeline's own statements, accepted → FINISHED as the Data API reports them (DescribeStatement's
``CreatedAt`` → ``UpdatedAt``), for the first job of fresh tenants (the statement opens the tenant's session) beside
their later jobs (the statement runs in the kept-alive session), in the same run.
Results print as a table and go to ``bench/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import threading
import time
from collections import Counter

import boto3
import requests

from bench.report import save_results
from local.aws import LOCAL_CREDENTIALS, start_moto
from local.demo import Warehouse, add_tenant
from local.pipeline import CLUSTER_ID, start_pipeline
from local.redshift_data import EmulatorConfig, start_emulator
from local.subscriber import BusSubscriber
from spectra.ports import Budget, get_ports

SQL = "select 1 as one"
WAIT_SECONDS = 25


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class CallCounter:
    """Counts every AWS API call made through the functions' clients (botocore's before-call event), by function and
    operation, and apart the notifier's (the runner polls each function's queue on a thread named
    after it; the API answers on the local API Gateway's request threads)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.fan_out: Counter[str] = Counter()
        self.by_function: Counter[tuple[str, str]] = Counter()

    def attach(self, client) -> None:
        service = client.meta.service_model.service_name

        def count(model, **_) -> None:
            name = f"{service}:{model.name}"
            thread = threading.current_thread().name
            self.calls.update([name])
            if "notif" in thread.lower():
                self.fan_out.update([name])
            function = next(iter(re.findall(r"[A-Za-z]+Function", thread)), "ApiFunction")
            self.by_function.update([(function, name)])

        client.meta.events.register("before-call", count)

    def clear(self) -> None:
        self.calls.clear()
        self.fan_out.clear()
        self.by_function.clear()


def direct_round_trip(client, *, poll_seconds: float = 0.002) -> float:
    """One ``select 1`` straight to the Data API: execute, poll until it ends, read the result; seconds taken."""
    start = time.perf_counter()
    statement_id = client.execute_statement(
        ClusterIdentifier=CLUSTER_ID, Database="dev", DbUser="awsuser", Sql=SQL, ResultFormat="CSV"
    )["Id"]
    while client.describe_statement(Id=statement_id)["Status"] not in {"FINISHED", "FAILED", "ABORTED"}:
        time.sleep(poll_seconds)
    client.get_statement_result_v2(Id=statement_id)
    return time.perf_counter() - start


SESSION_TENANTS = 12
JOBS_PER_SESSION_TENANT = 4


def session_latencies(stack, data_api, ports, http, subscriber) -> tuple[list[float], list[float]]:
    """Statement latency (accepted → FINISHED, from the Data API) of fresh tenants' first jobs, which open the
    tenant's session, and of their later jobs, which reuse it. Sequential, one job at a time."""
    fresh, reused = [], []
    for n in range(SESSION_TENANTS):
        key = add_tenant(Warehouse(data_api, CLUSTER_ID), ports.tenants, f"bench-s{n}-{int(time.time())}")
        sessions_seen: set[str] = set()
        for _ in range(JOBS_PER_SESSION_TENANT):
            response = http.post(
                stack.api_url + "/v1/queries", json={"sql": SQL}, headers={"Authorization": f"Bearer {key}"}
            )
            response.raise_for_status()
            job_id = response.json()["job_id"]
            subscriber.arrival(job_id, timeout=60)
            described = data_api.describe_statement(Id=ports.jobs.get(job_id).statement_id)
            latency = (described["UpdatedAt"] - described["CreatedAt"]).total_seconds()
            session_id = described.get("SessionId")
            (reused if session_id in sessions_seen else fresh).append(latency)
            sessions_seen.add(session_id)
    return fresh, reused


def run(jobs: int) -> dict:
    aws = start_moto()
    aws.export()  # the emulator publishes its events to moto with these credentials
    emulator = start_emulator(EmulatorConfig(aws_endpoint_url=aws.endpoint_url, region=aws.region))
    stack = start_pipeline(aws, emulator)
    try:
        data_api = boto3.client(
            "redshift-data", endpoint_url=emulator.endpoint_url, region_name=aws.region, **LOCAL_CREDENTIALS
        )
        ports = get_ports()
        api_key = add_tenant(Warehouse(data_api, CLUSTER_ID), ports.tenants, "bench")
        counter = CallCounter()
        for client in (client for budget in Budget for client in get_ports(budget).clients):  # the API's too
            counter.attach(client)
        subscriber = BusSubscriber(aws, stack.physical_id("JobEventBus"), name_prefix="bench")
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {api_key}"

        # warm-up: imports, first connections, the authorizer's cache
        for _ in range(3):
            direct_round_trip(data_api)
            job_id = session.post(stack.api_url + "/v1/queries", json={"sql": SQL}).json()["job_id"]
            subscriber.arrival(job_id, timeout=60)
        counter.clear()

        pipeline, direct, submit = [], [], []
        for _ in range(jobs):
            direct.append(direct_round_trip(data_api))
            start = time.perf_counter()
            response = session.post(stack.api_url + "/v1/queries", json={"sql": SQL})
            submit.append(time.perf_counter() - start)
            response.raise_for_status()
            pipeline.append(subscriber.arrival(response.json()["job_id"], timeout=60)[0] - start)
        calls = dict(sorted(counter.calls.items()))
        fan_out = dict(sorted(counter.fan_out.items()))
        by_function: dict[str, dict[str, float]] = {}
        for (function, name), count in sorted(counter.by_function.items()):
            by_function.setdefault(function, {})[name] = count / jobs
        fresh, reused = session_latencies(stack, data_api, ports, session, subscriber)
        subscriber.close()

        counter.calls.clear()
        one_call, direct_beside = [], []
        for _ in range(jobs):
            direct_beside.append(direct_round_trip(data_api))
            start = time.perf_counter()
            response = session.post(stack.api_url + "/v1/queries", json={"sql": SQL, "wait_timeout": WAIT_SECONDS})
            one_call.append(time.perf_counter() - start)
            answered = response.json()
            if response.status_code != 200 or answered["results"]["rows"] != [[1]]:
                raise RuntimeError(f"the wait did not answer with the rows: {response.status_code} {answered}")
        sync_calls = dict(sorted(counter.calls.items()))
    finally:
        stack.stop()
        emulator.stop()
        aws.stop()

    def summary(values: list[float]) -> dict:
        return {"median_ms": statistics.median(values) * 1000, "p99_ms": percentile(values, 0.99) * 1000}

    return {
        "jobs": jobs,
        "pipeline_submit_to_event": summary(pipeline),
        "api_submit_response": summary(submit),
        "direct_data_api_round_trip": summary(direct),
        "aws_calls_per_job": {name: count / jobs for name, count in calls.items()},
        "aws_calls_per_job_total": sum(calls.values()) / jobs,
        "aws_calls_per_job_fan_out": {name: count / jobs for name, count in fan_out.items()},
        "aws_calls_per_job_without_fan_out": (sum(calls.values()) - sum(fan_out.values())) / jobs,
        "aws_calls_per_job_by_function": by_function,
        "statement_in_new_session": summary(fresh),
        "statement_in_reused_session": summary(reused),
        "session_samples": {"new": len(fresh), "reused": len(reused)},
        "one_call_with_wait_timeout": summary(one_call),
        "direct_data_api_round_trip_beside_one_call": summary(direct_beside),
        "aws_calls_per_one_call_job": {name: count / jobs for name, count in sync_calls.items()},
    }


def print_report(report: dict) -> None:
    print(f"\nPipeline latency over {report['jobs']} small jobs ({SQL!r}), same emulator, same run")
    print(f"{'measure':<44}{'median ms':>12}{'p99 ms':>12}")
    for label, key in [
        ("POST /v1/queries → 'Job Completed' event", "pipeline_submit_to_event"),
        ("POST /v1/queries → 202 response", "api_submit_response"),
        ("baseline: direct Data API round trip", "direct_data_api_round_trip"),
    ]:
        row = report[key]
        print(f"{label:<44}{row['median_ms']:>12.1f}{row['p99_ms']:>12.1f}")
    overhead = report["pipeline_submit_to_event"]["median_ms"] - report["direct_data_api_round_trip"]["median_ms"]
    print(f"{'pipeline overhead over the baseline (median)':<44}{overhead:>12.1f}")
    print(f"\nStatement latency in the pipeline (accepted → FINISHED, Data API), {report['session_samples']}")
    for label, key in [
        ("first statement of a tenant: opens its session", "statement_in_new_session"),
        ("later statements: the kept-alive session", "statement_in_reused_session"),
    ]:
        row = report[key]
        print(f"{label:<50}{row['median_ms']:>8.1f}{row['p99_ms']:>10.1f}")
    total, job_path = report["aws_calls_per_job_total"], report["aws_calls_per_job_without_fan_out"]
    print(f"\nAWS API calls per job made by the functions: {total:.1f} ({job_path:.1f} without the notifier's fan-out)")
    fan_out = report["aws_calls_per_job_fan_out"]
    for name, per_job in report["aws_calls_per_job"].items():
        print(f"  {name:<46}{per_job:>6.2f}   (fan-out {fan_out.get(name, 0):.2f})")
    if "one_call_with_wait_timeout" in report:
        print(f"\n'{SQL}' in one call (wait_timeout={WAIT_SECONDS}), interleaved with the baseline")
        print(f"{'measure':<44}{'p50 ms':>12}{'p99 ms':>12}")
        for label, key in [
            ("POST /v1/queries with wait_timeout → 200", "one_call_with_wait_timeout"),
            ("baseline: direct Data API round trip", "direct_data_api_round_trip_beside_one_call"),
        ]:
            row = report[key]
            print(f"{label:<44}{row['median_ms']:>12.1f}{row['p99_ms']:>12.1f}")
        calls = report["aws_calls_per_one_call_job"]
        print(f"AWS API calls per one-call job: {sum(calls.values()):.1f}")
        for name, per_job in calls.items():
            print(f"  {name:<46}{per_job:>6.2f}")
    print("\nby function, in the order a job meets them")
    order = ["ApiFunction", "ExecutorFunction", "CompletionFunction", "NotifierFunction"]
    functions = report["aws_calls_per_job_by_function"]
    for function in sorted(functions, key=lambda f: order.index(f) if f in order else len(order)):
        calls = functions[function]
        print(f"  {function:<24}{sum(calls.values()):>6.2f}   " + ", ".join(f"{n} {c:.2f}" for n, c in calls.items()))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args(argv)
    report = run(args.jobs)
    print_report(report)
    save_results("pipeline", report)
    return report


if __name__ == "__main__":
    main()
