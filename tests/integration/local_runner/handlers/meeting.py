"""Shared by every execution environment (imported normally, like the domain library): where concurrent
invocations of the ``stateful`` handlers meet, and the gates a test opens. Tests reach it through
``sys.modules["handlers.meeting"]``."""

import threading

_lock = threading.Lock()
_barriers: dict[str, threading.Barrier] = {}
gates: dict[str, threading.Event] = {}
entered: dict[str, int] = {}


def barrier(group: str, parties: int) -> threading.Barrier:
    with _lock:
        return _barriers.setdefault(group, threading.Barrier(parties, timeout=20))


def gate(group: str) -> threading.Event:
    with _lock:
        return gates.setdefault(group, threading.Event())


def enter(group: str) -> None:
    with _lock:
        entered[group] = entered.get(group, 0) + 1
