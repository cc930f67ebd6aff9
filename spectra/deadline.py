"""The time an invocation has left, for work whose length grows with its input: collecting a large result.

Lambda stops a function at its ``Timeout`` without raising anything, so work cut off that way is never counted:
unbounded, the completion function (90 s, ten status events a batch, one after the other) collecting a few large
``s3`` results in one batch runs out of time, the whole batch comes back, and does so again until its messages are
dead-lettered, then the reconciler (90 s too) tries every minute, until the Data API forgets the statements (24 hours)
and the jobs end ``statement_lost``, holding their tenants' slots all that time. With an entry point's
:func:`lasting`, the pages of a result are read :func:`within` the time left, and a collection that cannot end in it
stops with :class:`OutOfTime`, which the completion counts as a failed attempt when the collection had a fair share
of a run (:data:`FAIR_SECONDS`), so such a job ends ``result_failed`` saying to ask for an export, and otherwise
tries again uncounted (a small result after a large one in the same batch).

The consumers whose records are short but may each be slowed by a service in trouble (the executor, the notifier, the
S3 drop function) ask :func:`may_begin` before each record instead (the notifier before reading each event; its
batch's POSTs, one round of them, and each event's settling follow, within the half of its Timeout left): a record
left is redelivered without the records done, where a batch cut off by the Timeout came back whole.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from spectra.errors import Throttled

T = TypeVar("T")

#: Kept back from the invocation's time for what follows a cut collection: counting the attempt, the job's write.
MARGIN_SECONDS = 10.0
#: A collection begun with at least this long left had a fair share of a run (the completion function's Timeout is
#: 90 s): cut off, it counts as a failed attempt. One begun with less is tried again uncounted.
FAIR_SECONDS = 60.0

_until: ContextVar[float | None] = ContextVar("spectra_deadline", default=None)
_clock = time.monotonic


class OutOfTime(Throttled):
    """The invocation's time ran out before the work did: passing, as throttling is (tried again later), unless the
    work had a fair share of a run (:func:`fair`)."""

    code = "out_of_time"


@contextmanager
def lasting(seconds: float | None) -> Iterator[None]:
    """Work in the block has ``seconds`` (an invocation's remaining time), less :data:`MARGIN_SECONDS`; None: no
    bound (a test, a command line)."""
    token = _until.set(None if seconds is None else _clock() + max(0.0, seconds - MARGIN_SECONDS))
    try:
        yield
    finally:
        _until.reset(token)


def left() -> float | None:
    """Seconds left to the work in hand; None when nothing bounds it."""
    until = _until.get()
    return None if until is None else until - _clock()


#: The ``maxReceiveCount`` of the queues whose consumers ask :func:`may_begin` (template.yaml; its test checks):
#: a record on that receive is begun whatever the time, since failed there it would go to the dead-letter queue untried.
LAST_RECEIVE = 5


def may_begin(lambda_context: Any, seconds: float, *, receive_count: int | None = None) -> bool:
    """Whether an SQS consumer begins a record: the invocation whose context this is (Lambda's; None: a test, a
    command line, no bound) has at least ``seconds`` left, or the record is on its queue's last receive
    (:data:`LAST_RECEIVE`; ``receive_count`` None: a consumer that sends a record it leaves again rather than failing
    it, which may leave one on any receive). A record whose AWS calls a service in trouble retries (up to about 30 s
    each) could outrun the Timeout, where Lambda sends the whole batch back, the records done with it; one left is one
    redelivery."""
    if receive_count is not None and receive_count >= LAST_RECEIVE:
        return True
    return lambda_context is None or lambda_context.get_remaining_time_in_millis() >= seconds * 1000


def fair(left_at_start: float | None) -> bool:
    """Whether work begun with ``left_at_start`` seconds (:func:`left`) had a fair share of a run."""
    return left_at_start is None or left_at_start >= FAIR_SECONDS


def within(items: Iterable[T], message: str) -> Iterator[T]:
    """``items`` as they come, raising :class:`OutOfTime` with ``message`` before the next once time is up. The
    first always comes: it was fetched already (a result's first page comes with the call that opens it), and
    handling it takes moments, where refusing it would leave a one-page result for minutes."""
    for index, item in enumerate(items):
        remaining = left()
        if index and remaining is not None and remaining <= 0:
            raise OutOfTime(message)
        yield item
