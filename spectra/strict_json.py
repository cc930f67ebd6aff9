"""What every strict JSON reader of the project refuses beyond JSON's syntax: a key given twice in one object (Python's
``json`` keeps the last one without a word) and ``NaN`` / ``Infinity`` (which it takes, and JSON has not). Hooks for
``json.loads`` / ``json.JSONDecoder``, each raising ``ValueError`` with the reason: the API's request bodies
(producers/api/body.py) and a JSON bulk job's batches (spectra/bulk/jsonfiles.py) read with them."""

from __future__ import annotations

from typing import Any


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: the object, or ValueError naming the key given twice."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key[:100]!r} is given twice")
        out[key] = value
    return out


def refuse_constant(name: str) -> Any:
    """``parse_constant``: ``NaN``, ``Infinity`` and ``-Infinity`` refused."""
    raise ValueError(f"{name} is not a JSON number")
