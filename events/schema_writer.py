"""Write the JSON Schemas of the contracts: ``python -m events.schema_writer``. A test fails when they are stale."""

from __future__ import annotations

import json

from events.catalog import SCHEMA_MODELS, SCHEMAS


def render() -> dict[str, str]:
    out = {}
    for filename, (model, hints) in SCHEMA_MODELS.items():
        schema = {**model.model_json_schema(), **hints}
        out[filename] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def main() -> None:
    SCHEMAS.mkdir(exist_ok=True)
    for filename, text in render().items():
        (SCHEMAS / filename).write_text(text)
        print(f"wrote {SCHEMAS / filename}")


if __name__ == "__main__":
    main()
