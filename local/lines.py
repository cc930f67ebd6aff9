"""Whole lines on the local stack's standard output, however many functions write at once.

On Lambda every execution environment has a standard output of its own. The local runner runs the environments as
threads of one process, all writing the one ``sys.stdout``, and a line is not always one write: ``print`` writes its
text, then the newline, and Powertools' metrics flush with ``print``. Another thread's log line then lands between
the two, and both lines are spoiled (a metrics line with a job's ``job completed`` glued to it: the fault suite, which
reads the functions' JSON lines, lost that job's line). :class:`LineStream` keeps each thread's text until its
newline and writes whole lines, one at a time, flushed at once, so a reader of the log (a test, ``tail -f``) sees
each line as soon as it is complete and never half of one. Standard output and standard error share the lock: the
functions process sends both to one file.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

_LOCK = threading.Lock()


class LineStream:
    """A text stream over ``target`` that writes only whole lines, under one lock (every such stream's), each flushed
    as it is written.

    Text without a newline waits in its thread's own buffer until the newline comes (or :meth:`flush` is called by
    the thread that wrote it). Everything else a text stream offers is ``target``'s."""

    def __init__(self, target: TextIO) -> None:
        self._target = target
        self._lock = _LOCK
        self._pending = threading.local()

    def write(self, text: str) -> int:
        pending = getattr(self._pending, "text", "") + text
        complete, newline, rest = pending.rpartition("\n")
        self._pending.text = rest
        if newline:
            with self._lock:
                self._target.write(complete + newline)
                self._target.flush()
        return len(text)

    def flush(self) -> None:
        rest = getattr(self._pending, "text", "")
        self._pending.text = ""
        with self._lock:
            if rest:
                self._target.write(rest)
            self._target.flush()

    def __getattr__(self, name: str):
        return getattr(self._target, name)


def install() -> None:
    """Make this process's ``sys.stdout`` and ``sys.stderr`` write whole lines (idempotent). Call it before the
    functions are loaded: Powertools' loggers keep the stream they were made with."""
    if not isinstance(sys.stdout, LineStream):
        sys.stdout = LineStream(sys.stdout)
    if not isinstance(sys.stderr, LineStream):
        sys.stderr = LineStream(sys.stderr)
