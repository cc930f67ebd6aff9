"""Tenant records as an executor environment sees them: read once, trusted for a few seconds.

Every statement needs its tenant's record twice before it starts (its running cap, spectra/share.py; its identity,
spectra/identity.py). Reading it each time is one DynamoDB call per job; an environment that runs many jobs of a tenant
keeps the record for ``max_age`` seconds instead. The cache is per tenants port (one per process) and holds what was
read, absent records included; callers decide how old a record they accept, and re-read before refusing anything.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from spectra.tenants import Tenant

_records: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, Tenant | None]]] = weakref.WeakKeyDictionary()


def tenant_record(tenants: Any, tenant_id: str, *, max_age: float) -> Tenant | None:
    """The tenant as read at most ``max_age`` seconds ago (0: read now). ``tenants`` is the tenant directory port."""
    cache = _records.setdefault(tenants, {})
    now = time.monotonic()
    known = cache.get(tenant_id)
    if known is None or now - known[0] > max_age:
        known = cache[tenant_id] = (now, tenants.get(tenant_id))
    return known[1]


def forget(tenants: Any, tenant_id: str | None = None) -> None:
    """Drop what this process remembers of one tenant (or of all): the next read goes to the table, as it would once
    ``max_age`` had passed. For administration run in the functions' process, and for tests that change a tenant and
    must not wait out the cache."""
    cache = _records.get(tenants)
    if cache is None:
        return
    if tenant_id is None:
        cache.clear()
    else:
        cache.pop(tenant_id, None)
