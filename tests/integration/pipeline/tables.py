"""DynamoDB tables for the contract suites, made from template.yaml's own resources so they cannot drift from it."""

from __future__ import annotations

import json
from pathlib import Path

from cfnlint.decode import decode

TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"
_TABLE_PROPERTIES = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")


def table_properties(logical_id: str) -> dict:
    """The CreateTable arguments (keys, attributes, indexes, billing) of the template's table ``logical_id``."""
    body, matches = decode(str(TEMPLATE))
    assert not matches, matches
    properties = json.loads(json.dumps(body["Resources"][logical_id]["Properties"]))  # plain dicts, not cfn nodes
    return {name: properties[name] for name in _TABLE_PROPERTIES if name in properties}
