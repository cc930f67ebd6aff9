"""S3 event notifications on the local stack's moto, with the field moto leaves out: the object's ``sequencer``.

S3 puts a ``sequencer`` in every object event it sends: a hex string that orders the events of one key, different for
each write of it and the same in every copy of one event. The S3 door (:mod:`spectra.bulk.drops`) tells writes apart
by it, so the same file put twice is two jobs while one notification delivered twice is one. moto 5 sends none, and
notifies a multipart upload twice, both times for the same write: here each object moto stores takes the next value
of a counter (16 upper-case hex digits, as S3 writes it) when it is first notified, and every notification of that
object carries it. Nothing else of moto changes.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from moto.s3 import notifications

_counter = itertools.count(1)
_lock = threading.Lock()


def install() -> None:
    """Patch moto's S3 notifications in this process (idempotent)."""
    if getattr(notifications, "_spectra_sequencer", False):
        return
    build = notifications._get_s3_event

    def with_sequencer(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        event = build(event_name, bucket, key, notification_id)
        for record in event.get("Records", []):
            record["s3"]["object"]["sequencer"] = sequencer(key)
        return event

    notifications._get_s3_event = with_sequencer
    notifications._spectra_sequencer = True


def sequencer(key: Any) -> str:
    """The object's sequencer: given once, on its first notification."""
    with _lock:
        value = getattr(key, "_spectra_sequencer", None)
        if value is None:
            value = key._spectra_sequencer = f"{next(_counter):016X}"
        return value
