"""Helpers for the Data API emulator tests: run SQL through boto3 and wait for it, with unique names per test."""

from __future__ import annotations

import uuid

import pytest

from tests.fixtures.redshift import DataApi


@pytest.fixture
def api(redshift_data) -> DataApi:
    return DataApi(redshift_data)


@pytest.fixture
def name() -> str:
    """A unique, lower-case SQL-safe name for tables, users and statement names."""
    return "t_" + uuid.uuid4().hex[:12]
