"""moto's hot paths on the local stack, made cheaper without changing what any request answers.

A burst of jobs is thousands of small requests a second to one moto server, and profiling one (py-spy on the burst
benchmark, ``bench/bench_burst.py``) showed most of moto's time going to work that does not depend on the request:

- **Routing.** moto finds the service of *every* request by listing its own package directory (``os.listdir`` and
  an ``isdir`` per entry, ~200 of them) and matching the host against every service's URL patterns, under one lock
  that all requests share. Both answers depend only on the host, so :class:`RoutingCache` remembers them per host.
- **Dispatch.** Each request lists its handler class's methods (``inspect.getmembers``) to find the action's; a
  class's methods do not change, so they are listed once per class.
- **EventBridge input paths.** Delivering an event to a rule's target parses the target's JSONPath expressions with
  a freshly built parser (jsonpath-ng builds its parse tables per parser) for each event; the parsed expressions are
  immutable, so they are parsed once per expression.
- **SQS attributes.** ReceiveMessage checks each message against the queue's retention period, and SendMessage
  checks content-based deduplication, by computing *all* of the queue's attributes (three times for the retention
  check), approximate counts included, each count a scan of every message in the queue: the cost of sending or
  receiving one message grew with the queue's depth. The retention check reads the one attribute it needs, the
  deduplication check (one attribute, of FIFO queues only) leaves the counts out, and otherwise the attributes count
  the messages in one pass instead of three (same counts, at the same instant). SQS's clock (each message's
  visibility and delay, read per message per receive) is ``time.time()`` instead of a datetime subtraction.
- **DynamoDB item answers.** moto writes every response through a generic serializer that walks the operation's
  output shape value by value; for a large item (a tenant's slots item holds its waiting list) that was a fifth of
  moto's time. The item operations' answers are already DynamoDB JSON (strings, numbers, lists, maps), so they are
  written with ``json.dumps`` directly, members whose value is None left out as the serializer leaves them out;
  anything else (binary values, timestamps) still goes through the serializer. Update expressions are parsed once
  per expression text (moto copies the parsed tree before it resolves names and values into it).
- **DynamoDB copies and expression walks.** An UpdateItem deep-copied its item twice, and a tenant's slots item holds
  a waiting list of hundreds of entries in a burst, so a call on it cost twice what it did on a small item. One copy
  only fed the item's ``ReturnValues``, read as JSON right after (under the request lock of
  ``local/moto_dynamodb.py``, so nothing changes in between): the JSON is taken at once instead. The other is kept for
  a table's stream and is skipped for a table without one. The parsed update expression, copied for each call before
  names and values are resolved into it, is copied through pickle (about five times cheaper than ``deepcopy`` for
  these plain node trees). The validators walk that tree ten times and, at every node, rebuilt each walker's table of
  node types; the types are fixed per walker class, so they are listed once. Condition expressions are lexed once per
  expression text (the tokens are immutable tuples; names and values are resolved after lexing).
- **SQS wake-ups.** A message sent to a queue woke *every* receiver long-polling it (``notify_all``), and each of
  them listed the queue's visible messages to look for one; with five pollers on a queue, four of them found the
  message taken and went back to waiting, every message. A sent message now wakes one waiter (as many as there are
  messages, for a batch); a receiver still looks at the queue at least once a second, as moto's own does.
- **The request log.** werkzeug formats a log line for every request (its time included) before its logger drops it
  below WARNING; the line is not formatted when it is dropped.

:func:`install` (called by :func:`local.aws.start_moto`) applies them; each is idempotent.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import pickle
import threading
import time
import types
from collections import deque
from typing import Any

from moto import backends
from moto.core import responses as core_responses
from moto.core.utils import camelcase_to_underscores, unix_time
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb import responses as dynamodb_responses
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.parsing import validators as dynamodb_validators
from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node
from moto.dynamodb.parsing.expressions import UpdateExpressionParser
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler
from moto.sqs import models as sqs_models
from moto.sqs.models import Queue, SQSBackend

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    modules = tuple(backends.list_of_moto_modules())  # the package's directories: fixed once moto is installed
    backends.list_of_moto_modules = lambda: modules
    _cache_jsonpath()
    core_responses.method_names_from_class = functools.lru_cache(maxsize=None)(core_responses.method_names_from_class)
    SQSBackend.is_message_valid_based_on_retention_period = _within_retention
    Queue.attributes = property(_queue_attributes)
    SQSBackend.send_message = _uncounted(SQSBackend.send_message)
    sqs_models.unix_time = lambda dt=None: time.time() if dt is None else _unix_time(dt)
    sqs_models.unix_time_millis = lambda dt=None: time.time() * 1000.0 if dt is None else _unix_time(dt) * 1000.0
    dynamodb_responses.DynamoResult.execute_result = _dynamodb_result
    parse = UpdateExpressionParser.make.__func__
    UpdateExpressionParser.make = classmethod(functools.lru_cache(maxsize=1024)(parse))
    _cheaper_dynamodb_copies()
    DepthFirstTraverser.nodes_to_be_processed = _node_types_of
    ConditionExpressionParser._lex_condition_expression = _lexed
    sqs_models.Condition = _OneWaiterPerMessage


class RoutingCache(DomainDispatcherApplication):
    """moto's dispatcher, remembering which service each host (or inferred service host) is served by."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._backend_for_host: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        try:
            return self._backend_for_host[host]
        except KeyError:
            backend = self._backend_for_host[host] = super().get_backend_for_host(host)
            return backend


class RequestHandler(MotoRequestHandler):
    """moto's request handler, formatting the request log line only when werkzeug's logger keeps it."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if _werkzeug_log.isEnabledFor(logging.INFO):
            super().log_request(code, size)


_werkzeug_log = logging.getLogger("werkzeug")


class _OneWaiterPerMessage(threading.Condition):
    """An SQS queue's condition, on which moto's receivers wait for a message: a sent message wakes one of them."""

    def notify_all(self) -> None:  # moto's add_message, once per message added
        self.notify(1)


def _cache_jsonpath() -> None:
    import jsonpath_ng.ext  # moto's EventBridge imports ``parse`` from here at each call

    if getattr(jsonpath_ng.ext.parse, "cache_info", None) is None:
        jsonpath_ng.ext.parse = functools.lru_cache(maxsize=256)(jsonpath_ng.ext.parse)


def _within_retention(self: SQSBackend, queue_name: str, message: Any) -> bool:
    """moto's check, reading the queue's retention period alone (it is an int attribute of the queue)."""
    retention_period = int(self.get_queue(queue_name).message_retention_period)
    return retention_period + message.sent_timestamp / 1000 > unix_time()


_COUNTS = {
    "ApproximateNumberOfMessages": 0,
    "ApproximateNumberOfMessagesNotVisible": 1,
    "ApproximateNumberOfMessagesDelayed": 2,
}


def _counts(queue: Queue) -> tuple[int, int, int]:
    """moto's three approximate counts (visible and not delayed, not visible, delayed) in one pass."""
    visible = not_visible = delayed = 0
    for message in queue._messages:
        is_visible, is_delayed = message.visible, message.delayed
        visible += is_visible and not is_delayed
        not_visible += not is_visible
        delayed += is_delayed
    return visible, not_visible, delayed


_unix_time = unix_time
_sending = threading.local()


def _uncounted(send_message):
    """SendMessage reads one attribute of the queue (ContentBasedDeduplication): no message counts for it."""

    @functools.wraps(send_message)
    def send(self: SQSBackend, *args: Any, **kwargs: Any) -> Any:
        _sending.active = True
        try:
            return send_message(self, *args, **kwargs)
        finally:
            _sending.active = False

    return send


def _queue_attributes(self: Queue) -> dict[str, Any]:
    """``Queue.attributes`` as moto computes it, counting the messages once (not at all for SendMessage)."""
    counts: tuple[int, int, int] | None = (0, 0, 0) if getattr(_sending, "active", False) else None
    result: dict[str, Any] = {}
    for attribute in self.BASE_ATTRIBUTES:
        if attribute in _COUNTS:
            counts = counts or _counts(self)
            result[attribute] = counts[_COUNTS[attribute]]
        else:
            result[attribute] = getattr(self, camelcase_to_underscores(attribute))
    if self.fifo_queue:
        for attribute in self.FIFO_ATTRIBUTES:
            result[attribute] = getattr(self, camelcase_to_underscores(attribute))
    if self.kms_master_key_id:
        for attribute in self.KMS_ATTRIBUTES:
            result[attribute] = getattr(self, camelcase_to_underscores(attribute))
    if self.policy:
        result["Policy"] = self.policy
    if self.redrive_policy:
        result["RedrivePolicy"] = json.dumps(self.redrive_policy)
    for key in result:
        if isinstance(result[key], bool):
            result[key] = str(result[key]).lower()
    return result


_serialize_dynamodb_result = dynamodb_responses.DynamoResult.execute_result
_ITEM_OPERATIONS = frozenset(
    {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}
    | {"TransactWriteItems", "BatchWriteItem"}
)


class _NotPlain(Exception):
    pass


def _plain(value: Any) -> Any:
    """The value as JSON, None-valued members left out; :class:`_NotPlain` for anything the serializer must see."""
    if isinstance(value, dict):
        return {key: _plain(member) for key, member in value.items() if member is not None}
    if isinstance(value, list):
        return [_plain(member) for member in value]
    if value is None or isinstance(value, (str, int, float)):  # bool is an int
        return value
    raise _NotPlain


def _dynamodb_result(self: Any, context: Any) -> Any:
    if context.operation_model.name not in _ITEM_OPERATIONS or not isinstance(self.result, dict):
        return _serialize_dynamodb_result(self, context)
    try:
        body = json.dumps(_plain(self.result))
    except _NotPlain:
        return _serialize_dynamodb_result(self, context)
    return 200, {"Content-Type": "application/x-amz-json-1.0"}, body


class _ItemJson:
    """What UpdateItem's copy of the item is used for: its JSON, taken when the copy was."""

    def __init__(self, item: Item) -> None:
        self._json = item.to_json()

    def to_json(self) -> dict[str, Any]:
        return self._json


_stream_less = threading.local()  # inside an UpdateItem on a table without a stream: its copy of the item goes unused


def _copy_in_update(value: Any, memo: Any = None) -> Any:
    if isinstance(value, Item) and getattr(_stream_less, "active", False):
        return value
    return copy.deepcopy(value, memo)


def _copy_tree(value: Any, memo: Any = None) -> Any:
    if isinstance(value, Node):
        return pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
    return copy.deepcopy(value, memo)


def _cheaper_dynamodb_copies() -> None:
    """UpdateItem's two copies of the item and the validators' copy of the parsed tree (see the module's docstring);
    each module's ``copy``/``deepcopy`` is replaced in that module alone."""
    dynamodb_responses.copy = types.SimpleNamespace(deepcopy=lambda item: None if item is None else _ItemJson(item))
    dynamodb_models.copy = types.SimpleNamespace(deepcopy=_copy_in_update)
    dynamodb_validators.deepcopy = _copy_tree
    update_item = DynamoDBBackend.update_item

    @functools.wraps(update_item)
    def update_without_stream_copy(self: DynamoDBBackend, table_name: str, *args: Any, **kwargs: Any) -> Any:
        _stream_less.active = self.get_table(table_name).stream_shard is None
        try:
            return update_item(self, table_name, *args, **kwargs)
        finally:
            _stream_less.active = False

    DynamoDBBackend.update_item = update_without_stream_copy


_NODE_TYPES: dict[type, tuple[type, ...]] = {}


def _node_types_of(self: DepthFirstTraverser) -> tuple[type, ...]:
    """moto's ``nodes_to_be_processed``, listed once per walker class (the keys of its ``_processing_map``)."""
    kind = type(self)
    try:
        return _NODE_TYPES[kind]
    except KeyError:
        types_ = _NODE_TYPES[kind] = tuple(self._processing_map())
        return types_


_lex = ConditionExpressionParser._lex_condition_expression


@functools.lru_cache(maxsize=1024)
def _tokens(expression: str) -> tuple[Any, ...]:
    return tuple(_lex(ConditionExpressionParser(expression, None, None)))


def _lexed(self: ConditionExpressionParser) -> deque[Any]:
    """moto's lexer, run once per expression text; each call gets tokens of its own (their ``children`` lists are
    new: later stages build on them)."""
    return deque(token._replace(children=[]) for token in _tokens(self.condition_expression))
