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
bills and throttles in production. Calls the local runner makes in Lambda's place (SQS polling) are not counted.
Results print as a table and go to ``bench/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import statistics
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
from spectra.ports import get_ports

SQL = "select 1 as one"
WAIT_SECONDS = 25


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class CallCounter:
    """Counts every AWS API call made through the functions' clients (botocore's before-call event)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def attach(self, client) -> None:
        service = client.meta.service_model.service_name
        client.meta.events.register("before-call", lambda model, **_: self.calls.update([f"{service}:{model.name}"]))


def direct_round_trip(client) -> float:
    start = time.perf_counter()
    statement_id = client.execute_statement(
        ClusterIdentifier=CLUSTER_ID, Database="dev", DbUser="awsuser", Sql=SQL, ResultFormat="CSV"
    )["Id"]
    while client.describe_statement(Id=statement_id)["Status"] not in {"FINISHED", "FAILED", "ABORTED"}:
        time.sleep(0.002)
    client.get_statement_result_v2(Id=statement_id)
    return time.perf_counter() - start


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
        for client in ports.clients:
            counter.attach(client)
        subscriber = BusSubscriber(aws, stack.physical_id("JobEventBus"), name_prefix="bench")
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {api_key}"

        # warm-up: imports, first connections, the authorizer's cache
        for _ in range(3):
            direct_round_trip(data_api)
            job_id = session.post(stack.api_url + "/v1/queries", json={"sql": SQL}).json()["job_id"]
            subscriber.arrival(job_id, timeout=60)
        counter.calls.clear()

        pipeline, direct, submit = [], [], []
        for _ in range(jobs):
            direct.append(direct_round_trip(data_api))
            start = time.perf_counter()
            response = session.post(stack.api_url + "/v1/queries", json={"sql": SQL})
            submit.append(time.perf_counter() - start)
            response.raise_for_status()
            pipeline.append(subscriber.arrival(response.json()["job_id"], timeout=60)[0] - start)
        calls = dict(sorted(counter.calls.items()))
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
    print(f"\nAWS API calls per job made by the functions: {report['aws_calls_per_job_total']:.1f}")
    for name, per_job in report["aws_calls_per_job"].items():
        print(f"  {name:<46}{per_job:>6.2f}")
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
