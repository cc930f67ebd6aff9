"""What a tenant's slots item costs on DynamoDB as its waiting list grows, and the start rate that allows the tenant.

Run: ``python -m bench.bench_slots_item``. The item is built by the project's own code (``spectra.slots.RunningSlots``:
five jobs holding the default cap, then N jobs parked, with ids from ``spectra.jobs.new_job_id`` and places as the
executor gives them) in moto, in this process, and read back; its size is then counted by DynamoDB's documented rules
(an attribute's name and value in UTF-8 bytes; a number 1 byte per two significant digits plus 1; a map 3 bytes plus,
per entry, its name, its value and 1 byte). Nothing here is timed: the figures are what DynamoDB would bill and
allow, computed, not measured on AWS.

Why it matters: DynamoDB bills a write by the whole item's size (a write unit per KB or part of one, two for a write in
a transaction, and a refused conditional write by the item as it was), and serves at most 1,000 write units a second
to one partition, where one item always lives. A job that waits for a slot writes the item at least four units' worth
per KB: its park, its claim once woken, and its own release in its terminal transaction (two). So while N jobs wait,
the tenant can start at most ``1000 / (4 * ceil(KB))`` jobs a second, whatever its cap. Results print as a table and go
to ``bench/results/slots_item.json``.
"""

from __future__ import annotations

import argparse
import decimal
import math
import time
from typing import Any

import boto3
from moto import mock_aws

from bench.report import machine, save_results
from spectra.jobs import new_job_id
from spectra.slots import RunningSlots

CAP = 5
WAITING = (0, 100, 333, 1000, 3000)
#: one partition's write units a second (DynamoDB's documented per-partition throughput)
PARTITION_WRITE_UNITS = 1000
#: write units per KB of the item a waiting job costs at least: park, claim once woken, release in a transaction (2)
UNITS_PER_KB_PER_JOB = 4


def attribute_size(value: dict[str, Any]) -> int:
    """Bytes of one attribute value in DynamoDB's wire form (``{"S": ...}``, ``{"N": ...}``, ``{"M": ...}``...)."""
    ((kind, content),) = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "N":
        digits = decimal.Decimal(content).normalize().as_tuple().digits
        return (len(digits) + 1) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(name.encode()) + attribute_size(inner) + 1 for name, inner in content.items())
    if kind == "L":
        return 3 + sum(attribute_size(inner) + 1 for inner in content)
    raise ValueError(f"no size rule for {kind}")


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def measure(waiting: tuple[int, ...]) -> list[dict[str, Any]]:
    rows = []
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="tenants",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        slots = RunningSlots(client, "tenants")
        for _ in range(CAP):
            assert slots.claim("acme", new_job_id(), limit=CAP).taken
        parked = 0
        for count in sorted(waiting):
            while parked < count:
                assert slots.park("acme", new_job_id(), limit=CAP, now=time.time())
                parked += 1
            item = client.get_item(TableName="tenants", Key={"pk": {"S": "slots#acme"}})["Item"]
            size = item_size(item)
            units = max(1, math.ceil(size / 1024))
            rows.append(
                {
                    "waiting": count,
                    "item_bytes": size,
                    "write_units_per_write": units,
                    "max_starts_per_second": round(PARTITION_WRITE_UNITS / (UNITS_PER_KB_PER_JOB * units), 1),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    rows = measure(WAITING)
    print(f"{'waiting':>8} {'item bytes':>11} {'units/write':>12} {'starts/s at most':>17}")
    for row in rows:
        print(
            f"{row['waiting']:>8} {row['item_bytes']:>11} {row['write_units_per_write']:>12}"
            f" {row['max_starts_per_second']:>17}"
        )
    save_results(
        "slots_item",
        {
            "benchmark": "slots_item",
            **machine(),
            "cap": CAP,
            "partition_write_units_per_second": PARTITION_WRITE_UNITS,
            "write_units_per_kb_per_waiting_job": UNITS_PER_KB_PER_JOB,
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
