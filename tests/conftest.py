"""Fixtures shared by every tier live in tests/fixtures/; each module there owns one part of the local stack."""

pytest_plugins = [
    "tests.fixtures.aws",
    "tests.fixtures.jwks",
    "tests.fixtures.redshift",
    "tests.fixtures.stack",
    "tests.fixtures.bulk",
    "tests.fixtures.webhooks",
]
