"""One rule for text, whatever the store: a NUL character (U+0000) is refused where text comes in.

PostgreSQL cannot store a NUL in text or jsonb, SQLite and memory can; rather than backends that
answer differently (a 500 on PostgreSQL, a 200 elsewhere), a request carrying one is refused before
anything is stored: 422 naming the field for a body or query, 404 for an id in the path (no stored
id can contain one), an error event for a WebSocket join.
"""

from __future__ import annotations

from typing import Any

NUL = "\x00"
PROBLEM = "contains a NUL character (U+0000), which cannot be stored"


def nul_fields(value: Any, location: tuple[str, ...] = ()) -> list[str]:
    """The dotted names of every string (or key) in a parsed JSON value that holds a NUL."""
    found: list[str] = []
    if isinstance(value, str):
        if NUL in value:
            found.append(".".join(location) or "body")
    elif isinstance(value, dict):
        for key, inner in value.items():
            if NUL in key:
                found.append(".".join((*location, key.replace(NUL, "\\u0000"))))
            found.extend(nul_fields(inner, (*location, key.replace(NUL, "\\u0000"))))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found.extend(nul_fields(inner, (*location, str(index))))
    return found


def problems(names: list[str]) -> tuple[str, list[dict[str, str]]]:
    """The detail sentence and the `fields` list of a 422, like a schema violation's."""
    fields = [{"field": name, "message": PROBLEM, "type": "nul_character"} for name in names]
    return "; ".join(f"{name}: {PROBLEM}" for name in names), fields
