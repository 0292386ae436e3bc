"""How the recipes' pydantic models show as Prefect's run form."""

from __future__ import annotations


def in_declared_order(schema: dict) -> None:
    """A model's `json_schema_extra`: number its properties in declaration order. Prefect's form sorts fields by
    `position`, and a Prefect server on PostgreSQL keeps the schema as jsonb, whose objects come back with their keys
    sorted by length (the team's form showed Train Uri between Id Field and Summary Field)."""
    for position, prop in enumerate(schema.get("properties", {}).values()):
        prop["position"] = position
