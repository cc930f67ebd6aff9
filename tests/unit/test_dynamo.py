"""spectra.dynamo without DynamoDB: which refusals a StateTable takes for its own write, and that only a condition's
refusal is one (found by the mutation review)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from spectra.dynamo import StateTable, _own_write, to_item

pytestmark = pytest.mark.unit

WHEN = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


class _Client:
    """update_item answers with ``error`` (a ClientError); the item refused with, for a condition's refusal."""

    def __init__(self, error: ClientError) -> None:
        self.error = error

    def update_item(self, **_request):
        raise self.error


def _table(error: ClientError) -> StateTable:
    return StateTable(_Client(error), "jobs", key="job_id")


def _written(request: dict, **extra) -> dict:
    """The item as ``request`` leaves it (its SETs applied, its REMOVEs gone)."""
    names, values = request["ExpressionAttributeNames"], request["ExpressionAttributeValues"]
    item = {"job_id": {"S": "j_1"}, "status": {"S": "SUBMITTED"}, **extra}
    for i in range(len(names)):
        name = names.get(f"#a{i}")
        if name is None:
            continue
        if f":v{i}" in values:
            item[name] = values[f":v{i}"]
        else:
            item.pop(name, None)
    return item


def test_a_throttled_update_is_raised_not_taken_for_a_refused_condition():
    """A state change DynamoDB throttled (or failed on its side) did not happen: answered None, its caller takes it
    for a job that moved on (another writer's ending) and skips what it owed, when it should be retried."""
    throttled = ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "UpdateItem"
    )
    with pytest.raises(ClientError):
        _table(throttled).update("j_1", ["SUBMITTED"], {"status": "COMPLETED"}, updated_at=WHEN)


def test_a_write_that_removes_attributes_is_its_own_when_the_item_holds_what_it_wrote():
    request = StateTable(None, "jobs", key="job_id").update_request(
        "j_1", ["SUBMITTED"], {"status": "COMPLETED", "pending_shard": None, "pending_since": None}, updated_at=WHEN
    )
    assert "REMOVE" in request["UpdateExpression"]
    assert _own_write(request, _written(request))
    # ... and not when an attribute it removes is there (another writer's write, or none of ours)
    still_pending = {**_written(request), "pending_shard": {"S": "0"}}
    assert not _own_write(request, still_pending)


def test_without_updated_at_no_refusal_is_taken_for_the_writes_own():
    request = StateTable(None, "jobs", key="job_id").update_request("j_1", ["SUBMITTED"], {"status": "COMPLETED"})
    assert not _own_write(request, to_item({"job_id": "j_1", "status": "COMPLETED"}))
