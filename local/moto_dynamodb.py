"""DynamoDB transactions on the local stack's moto, made to behave like DynamoDB's under concurrency.

moto 5's ``TransactWriteItems`` backs up every table it touches (a deep copy of the whole table) before writing, and
on a refused condition puts those copies back: any write another request made to those tables in between is lost
(a job created by the API while a completion's transaction was refused vanished; the pipeline counts on refused
transactions, since a slot somebody waits for refuses its release), and copying a table while another thread writes
it fails outright. DynamoDB checks every condition first and writes nothing when one fails.

:func:`install` (called by :func:`local.aws.start_moto`) replaces it with that: under one lock shared with moto's
single-item writes, check each item's condition on its current value, answer ``TransactionCanceledException`` with
the reasons (``ReturnValuesOnConditionCheckFailure`` included) if any fails, else apply the writes; a write that fails
half-way (a validation error) puts back only the items already written. Conditional single-item writes take the same
lock, so a transaction never interleaves with one.

Every request, reads included, also runs whole under that lock. moto changes items in place, and its UpdateItem copies
the item it is about to change (for ``ReturnValues``) before its write takes the lock: that copy, or a GetItem's answer,
could walk a map another request was changing. The burst benchmark hit it as a 500 ("dictionary changed size during
iteration"), which botocore retried; DynamoDB answers each request from one version of the item. Holding the lock
costs no concurrency moto had: its requests are pure Python under one interpreter lock. Nothing else of moto changes.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler

_WRITES = threading.RLock()
_OPERATIONS = ("ConditionCheck", "Put", "Delete", "Update")


def install() -> None:
    """Patch moto's DynamoDB backend in this process (idempotent)."""
    if getattr(DynamoDBBackend, "_spectra_transactions", False):
        return
    for name in ("put_item", "update_item", "delete_item"):
        setattr(DynamoDBBackend, name, _locked(getattr(DynamoDBBackend, name)))
    DynamoDBBackend.transact_write_items = _transact_write_items
    DynamoHandler.call_action = _locked(DynamoHandler.call_action)
    DynamoDBBackend._spectra_transactions = True


def _locked(method):
    @functools.wraps(method)
    def write(self, *args: Any, **kwargs: Any) -> Any:
        with _WRITES:
            return method(self, *args, **kwargs)

    return write


def _key_of(backend: DynamoDBBackend, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return op["Key"]
    table = backend.get_table(op["TableName"])
    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = op["Item"][table.range_key_attr]
    return key


def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    with _WRITES:
        planned: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        seen: set[tuple[str, str]] = set()
        reasons: list[tuple[Any, Any, Any]] = []
        for item in transact_items:
            if len(item) > 1:
                raise TransactWriteSingleOpException
            op_type, op = next(iter(item.items()))
            if op_type not in _OPERATIONS:
                raise ValueError("Unsupported transaction operation")
            key = _key_of(self, op_type, op)
            target = (str(op["TableName"]), str(dict(sorted(key.items()))))
            if target in seen:
                raise MultipleTransactionsException()
            seen.add(target)
            current = self.get_item(op["TableName"], key)
            condition = op.get("ConditionExpression")
            if condition is not None and not get_filter_expression(
                condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            ).expr(current):
                old = None
                if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                    old = current.to_json()["Attributes"]
                reasons.append(("ConditionalCheckFailed", "The conditional request failed", old))
            else:
                reasons.append((None, None, None))
            planned.append((op_type, op, key))
        if any(code is not None for code, _, _ in reasons):
            raise TransactionCanceledException(reasons)  # nothing written, as DynamoDB
        written: list[tuple[str, dict[str, Any], Any]] = []
        try:
            for op_type, op, key in planned:
                before = self.get_item(op["TableName"], key)
                written.append((op["TableName"], key, before.to_json()["Attributes"] if before else None))
                _apply(self, op_type, op, key)
        except Exception:
            for table_name, key, before in reversed(written):
                if before is None:
                    self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, before)
            raise


def _apply(backend: DynamoDBBackend, op_type: str, op: dict[str, Any], key: dict[str, Any]) -> None:
    """One write whose condition held a moment ago, under the same lock (so it still holds): written without it."""
    names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
    if op_type == "Put":
        backend.put_item(op["TableName"], op["Item"])
    elif op_type == "Delete":
        backend.delete_item(op["TableName"], key)
    elif op_type == "Update":
        backend.update_item(
            op["TableName"],
            key,
            update_expression=op["UpdateExpression"],
            expression_attribute_names=names,
            expression_attribute_values=values,
        )
