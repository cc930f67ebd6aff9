"""Fixtures for the runner's tests: start a test template as a uniquely named stack, and wait without sleeping."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from local.aws import LocalAws
from local.runner import LocalStack
from tests.fixtures.stack import wait_until

TEMPLATES = Path(__file__).parent / "templates"


@pytest.fixture
def start_stack(local_aws: LocalAws, unique_name: str) -> Iterator[Callable[..., LocalStack]]:
    """Start ``templates/<name>.yaml`` under a unique stack name on the shared moto; stopped after the test."""
    started: list[LocalStack] = []

    def start(template: str, **kwargs: Any) -> LocalStack:
        kwargs.setdefault("stack_name", f"{unique_name}-{len(started)}")
        stack = LocalStack.start(TEMPLATES / f"{template}.yaml", local_aws, **kwargs)
        started.append(stack)
        return stack

    yield start
    for stack in reversed(started):
        stack.stop()


def wait_for(predicate: Callable[[], Any], *, timeout: float = 15, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy (returned), failing after ``timeout`` seconds."""
    return wait_until(predicate, timeout, what)


@pytest.fixture
def table(local_aws: LocalAws) -> Iterator[tuple[Any, str]]:
    """A fresh DynamoDB table keyed by ``pk`` (a string) on the shared moto: ``(client, table name)``."""
    client = local_aws.client("dynamodb")
    name = "t-" + uuid.uuid4().hex[:10]
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield client, name
    client.delete_table(TableName=name)
