"""Write the JSON Schemas of the contracts: ``python -m events.schema_writer``. A test fails when they are stale.

It also copies each event's schema into its ``AWS::EventSchemas::Schema`` in template.yaml (the ``Content`` block
after ``SchemaName: <name>``, see :data:`events.catalog.REGISTRY_SCHEMAS`), so the registry subscribers browse holds
exactly the committed files; a test compares the two.
"""

from __future__ import annotations

import json

from events.catalog import HERE, REGISTRY_SCHEMAS, SCHEMA_MODELS, SCHEMAS

TEMPLATE = HERE.parent / "template.yaml"
#: where a schema's JSON starts in the template: under ``Content: |`` of a resource's properties
CONTENT_INDENT = " " * 8


def render() -> dict[str, str]:
    published = set(REGISTRY_SCHEMAS.values())
    out = {}
    for filename, (model, hints) in SCHEMA_MODELS.items():
        schema = {**model.model_json_schema(), **hints}
        if filename in published:
            schema = _open(schema)
        out[filename] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def _open(schema):
    """The schema of a published event without ``additionalProperties: false``: fields are added within a version
    (only a change that breaks a reader makes a new one), so a subscriber's validator or generated bindings must
    take fields they do not know. The project's own models take them too, and keep them (``events.models._Contract``:
    a deploy replaces functions one at a time).

    Its ``const`` (pydantic's spelling of a one-value Literal, such as ``version: "1"``) is written as a one-value
    ``enum``: the registry declares the schemas ``JSONSchemaDraft4``, which has no ``const``, so a draft-4 validator
    ignored it and took ``version: "2"``; ``enum`` means the same under draft 4 and 2020-12 alike."""
    if isinstance(schema, dict):
        return {
            ("enum" if k == "const" else k): ([_open(v)] if k == "const" else _open(v))
            for k, v in schema.items()
            if not (k == "additionalProperties" and v is False)
        }
    if isinstance(schema, list):
        return [_open(v) for v in schema]
    return schema


def render_template(text: str, schemas: dict[str, str]) -> str:
    """``text`` (template.yaml) with each registry schema's ``Content`` block replaced by its file's JSON."""
    lines = text.splitlines(keepends=True)
    for name, filename in REGISTRY_SCHEMAS.items():
        try:
            start = next(i for i, line in enumerate(lines) if line.strip() == f"SchemaName: {name}")
            content = next(i for i in range(start, len(lines)) if lines[i].strip() == "Content: |")
        except StopIteration:
            raise ValueError(f"template.yaml declares no schema {name} with a 'Content: |' block") from None
        end = content + 1
        while end < len(lines) and lines[end].startswith(CONTENT_INDENT):
            end += 1
        lines[content + 1 : end] = [CONTENT_INDENT + line + "\n" for line in schemas[filename].rstrip("\n").split("\n")]
    return "".join(lines)


def main() -> None:
    SCHEMAS.mkdir(exist_ok=True)
    rendered = render()
    for filename, text in rendered.items():
        (SCHEMAS / filename).write_text(text)
        print(f"wrote {SCHEMAS / filename}")
    template = TEMPLATE.read_text()
    updated = render_template(template, rendered)
    if updated != template:
        TEMPLATE.write_text(updated)
        print(f"updated the schema registry in {TEMPLATE}")


if __name__ == "__main__":
    main()
