"""Where benchmark results go: one JSON file per benchmark under bench/results/ (the quoted run is committed)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    """What a result says of where it was measured."""
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}


def save_results(name: str, report: Any) -> Path:
    """Write ``report`` to ``bench/results/<name>.json`` and say where."""
    path = RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {path}")
    return path
