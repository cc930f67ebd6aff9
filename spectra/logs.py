"""Log keys of the work in hand: every line a function writes about a job carries its ``job_id`` and ``tenant_id``.

A handler opens :func:`job_keys` around each record it handles (a job message, a status event, a delivery); the
domain adds what it learns on the way with :func:`bind` (the completion consumer learns the tenant only once it has
read the job). :data:`KEYS` is a ``logging.Filter`` that copies the current keys onto every record, and each handler
puts it on its Powertools logger's handler (:func:`install`), so the domain's own ``logging.getLogger(__name__)``
lines (children of the service's logger) carry them too, as top-level keys of the JSON line.

The keys live in a ``ContextVar``, so they belong to one thread: on Lambda that is the whole process, and on the
local stack, where execution environments are threads of one process, two concurrent records never lend each other
their keys. (Powertools' ``append_keys`` keeps them on the one shared formatter, so they would.)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pydantic import ValidationError

from spectra.errors import ResultUnconvertible, StartNotRecorded, StartUnderWay, Throttled

_keys: ContextVar[dict[str, Any]] = ContextVar("spectra_log_keys", default={})  # noqa: B039 - never mutated


def bind(**keys: Any) -> None:
    """Add keys (``None`` values are left out) to the current unit of work's; they last until it ends."""
    _keys.set({**_keys.get(), **{name: value for name, value in keys.items() if value is not None}})


def current() -> dict[str, Any]:
    return dict(_keys.get())


@contextmanager
def job_keys(**keys: Any) -> Iterator[None]:
    """One unit of work (a record of a batch, one job of a sweep): starts from no keys but ``keys`` and puts the
    previous ones back at the end, whatever :func:`bind` added meanwhile."""
    token = _keys.set({name: value for name, value in keys.items() if value is not None})
    try:
        yield
    finally:
        _keys.reset(token)


_log = logging.getLogger(__name__)
#: What a record meets now and then and gets past on a later delivery: its retry is an INFO line, without traceback.
_PASSING = (Throttled, StartNotRecorded, StartUnderWay)
#: Errors whose text (and whose cause's) may quote a tenant's data: pyarrow's CSV parse error names the row it could
#: not read. Logged by their type alone (the job's error, the tenant's own, keeps the text).
_QUOTING_DATA = (ResultUnconvertible,)


def traceback_of(exc: BaseException) -> BaseException | None:
    """``exc`` for a log line's ``exc_info``, or None for an error whose text may quote a tenant's data: its
    traceback would print the row pyarrow could not read at ERROR."""
    return None if isinstance(exc, _QUOTING_DATA) else exc


@contextmanager
def record(**keys: Any) -> Iterator[None]:
    """:func:`job_keys` for one record of an SQS batch, and a line with the keys when it fails. The batch processor
    reports the failure to Lambda (the message comes back) but logs nothing, so a record retried into its DLQ left no
    line saying why, or for which job."""
    with job_keys(**keys):
        try:
            yield
        except ValidationError as exc:  # a message its model cannot read: described, never repeated (see below)
            # the message's model, or one the domain read with (an item this version cannot read): named by its title
            _log.warning(
                "record failed (%s unreadable: %s); SQS delivers it again, until its queue's DLQ",
                exc.title,
                unreadable(exc),
            )
            raise
        except Exception as exc:
            passing = isinstance(exc, _PASSING)
            _log.log(
                logging.INFO if passing else logging.WARNING,
                "record failed (%s); SQS delivers it again, until its queue's DLQ",
                type(exc).__name__,
                exc_info=None if passing else traceback_of(exc),
            )
            raise


def sqs_batch_processor():
    """Powertools' SQS batch processor as every SQS-fed function builds it: each record under :func:`record`, which
    logs a failure with its keys, and a batch whose records all failed answered like any other, every record listed
    as failed (``ReportBatchItemFailures`` retries them alike). Raised, as Powertools does by default, the error put
    every record's traceback into one more ERROR line, throttling included."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

    return BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def unreadable(exc: ValidationError) -> str:
    """What a model could not read, by place and kind only: pydantic's own text repeats the input, and a message can
    carry a tenant's SQL, parameter values or a database's error echoing them."""
    problems = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['type']}" for e in exc.errors()[:10]]
    more = f" and {exc.error_count() - 10} more" if exc.error_count() > 10 else ""
    return "; ".join(problems) + more


class _KeysFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _keys.get().items():
            if not hasattr(record, name):  # an explicit ``extra`` of the line wins
                setattr(record, name, value)
        return True


#: The filter that puts the keys on records; one object, so installing it twice is a no-op.
KEYS = _KeysFilter()


def install(logger: Any) -> None:
    """Put :data:`KEYS` on the handlers of a Powertools ``Logger`` (or a stdlib logger): every line they write,
    the domain's included, gets the keys.

    It also silences Powertools' "No application metrics to publish" warning, as Powertools' documentation suggests:
    an invocation that records no metric (a listing, a sweep with nothing due) is normal here, and the warning is a
    plain-text line among the JSON ones (and the first thing ``make run`` printed)."""
    warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
    handler = getattr(logger, "registered_handler", None)
    for target in [handler] if handler is not None else logger.handlers:
        target.addFilter(KEYS)
