"""The local stack's moto beside moto as released: CPU per DynamoDB call on a tenant's slots item.

Run: ``python -m bench.bench_moto``. Two servers in processes of their own, started the same way: the local stack's
(``python -m local.aws``: ``local/moto_speedups.py`` and ``local/moto_dynamodb.py`` applied) and moto's own
(``python -m moto.server``, nothing applied: the baseline). One client thread makes the calls the pipeline makes on
a tenant's slots item (``spectra.slots.RunningSlots``), with nobody waiting and with 200 jobs on the waiting list, as
in a burst: a claim refused at the cap (answered with the item as it was), a park, an unpark, a consistent read, and
a conditional transaction on a job item. The server's own CPU per call (Linux ``/proc``) is the figure; the rounds
alternate between the two servers so that what else the shared machine ran falls on both. The caller's CPU per call
(this thread's, in botocore: building, signing, sending, parsing) is measured beside it: two of the five calls (the
refused claim and the read) are answered with the whole item, waiting list and all, which botocore parses value by
value, as the functions do in a burst. moto as released copies
every table a TransactWriteItems touches, so its cost per call grows as the rounds add job items to the table (the
samples show it); the local stack's transaction copies nothing (``local/moto_dynamodb.py``). Results print as a table
and go to ``bench/results/moto.json``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable

import boto3

from bench.bench_bulk import moto_in_its_own_process
from bench.bench_burst import _cpu_seconds
from bench.report import save_results
from local.aws import LOCAL_CREDENTIALS, REGION, LocalAws, start_moto_process
from spectra.slots import RunningSlots

TENANTS = ("a", "b", "c")
CAP = 5
CALLS_PER_ROUND_TRIP = 5


def workload(endpoint_url: str, waiting: int) -> Callable[[int], None]:
    """A fresh table with each tenant at its cap and ``waiting`` jobs on its list; returns what runs n round trips."""
    client = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION, **LOCAL_CREDENTIALS)
    table = f"slots-{waiting}-{time.monotonic_ns()}"
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    slots = RunningSlots(client, table)
    for tenant in TENANTS:
        for n in range(CAP):
            slots.claim(tenant, f"j_running_{tenant}_{n}", limit=CAP)
        for n in range(waiting):
            slots.park(tenant, f"j_waiting_{tenant}_{n:06d}_0123456789abcdef", limit=CAP)

    numbers = itertools.count()

    def run(round_trips: int) -> None:
        for _ in range(round_trips):
            n = next(numbers)  # a new job each time, across rounds
            tenant = TENANTS[n % len(TENANTS)]
            job = f"j_new_{tenant}_{n:06d}_0123456789abcdef"
            slots.claim(tenant, job, limit=CAP)  # refused: the tenant is at its cap
            slots.park(tenant, job, limit=CAP)
            slots.unpark(tenant, job)
            slots.holders(tenant)
            client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": table,
                            "Key": {"pk": {"S": "job#" + job}},
                            "UpdateExpression": "SET #s = :done",
                            "ConditionExpression": "attribute_not_exists(#s) OR #s = :queued",
                            "ExpressionAttributeNames": {"#s": "status"},
                            "ExpressionAttributeValues": {":done": {"S": "COMPLETED"}, ":queued": {"S": "QUEUED"}},
                        }
                    }
                ]
            )

    return run


def cpu_ms_per_call(pid: int, run: Callable[[int], None], round_trips: int) -> tuple[float, float]:
    """The server's and the caller's CPU per call (ms) over ``round_trips``."""
    before, caller_before = _cpu_seconds(pid), time.thread_time()
    run(round_trips)
    calls = round_trips * CALLS_PER_ROUND_TRIP
    return (_cpu_seconds(pid) - before) * 1000 / calls, (time.thread_time() - caller_before) * 1000 / calls


def measure(round_trips: int, rounds: int) -> dict:
    local: LocalAws = start_moto_process()
    released, plain = moto_in_its_own_process()  # python -m moto.server: none of the local stack's changes
    servers = {"local_stack": (local.endpoint_url, local.pid), "as_released": (released.endpoint_url, plain.pid)}
    try:
        results = {}
        for waiting in (0, 200):
            runs = {name: workload(url, waiting) for name, (url, _) in servers.items()}
            for run in runs.values():
                run(20)  # warm-up: first connections, first parses
            samples: dict[str, list[float]] = {name: [] for name in servers}
            caller: list[float] = []
            for _ in range(rounds):
                for name, (_, pid) in servers.items():
                    server_ms, caller_ms = cpu_ms_per_call(pid, runs[name], round_trips)
                    samples[name].append(server_ms)
                    if name == "local_stack":
                        caller.append(caller_ms)
            medians = {name: statistics.median(values) for name, values in samples.items()}
            results[f"waiting_{waiting}"] = {
                "moto_cpu_ms_per_call": medians,
                "samples": samples,
                "ratio": medians["local_stack"] / medians["as_released"],
                "caller_cpu_ms_per_call": statistics.median(caller),
                "caller_samples": caller,
            }
    finally:
        local.stop()
        plain.kill()
        plain.wait()
    return {
        "calls_per_round": round_trips * CALLS_PER_ROUND_TRIP,
        "rounds": rounds,
        "running_cap": CAP,
        "results": results,
    }


def print_report(report: dict) -> None:
    calls = report["calls_per_round"]
    print(f"\nmoto's CPU per DynamoDB call on a slots item ({calls} calls a round, median of the rounds)")
    print(f"{'':28}{'local stack':>14}{'as released':>14}{'ratio':>8}{'the caller':>14}")
    for name, row in report["results"].items():
        cpu = row["moto_cpu_ms_per_call"]
        label = name.replace("waiting_", "") + " jobs waiting"
        print(
            f"{label:28}{cpu['local_stack']:>11.2f} ms{cpu['as_released']:>11.2f} ms{row['ratio']:>8.2f}"
            f"{row['caller_cpu_ms_per_call']:>11.2f} ms"
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    report = measure(args.round_trips, args.rounds)
    print_report(report)
    save_results("moto", report)
    return report


if __name__ == "__main__":
    main()
