"""The JSON schema a tool's input model makes, as the model is shown it: one self-contained object
schema, each `$ref` to the model's `$defs` replaced by what it names, so that every client (and
every provider, some of which do not follow references) reads it whole. A recursive model keeps
its `$defs` (references into the same document), since it cannot be written out whole."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.errors import PydanticUserError

DEFS = "$defs"
_PREFIX = f"#/{DEFS}/"


class SchemaProblem(ValueError):
    """An input model that cannot be a tool's parameters; the message says why."""


def parameters_of(model: object) -> dict[str, Any]:
    """The parameters schema of an input model, or SchemaProblem saying why it has none."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise SchemaProblem(f"input must be a pydantic model class, got {model!r}")
    try:
        schema = model.model_json_schema()
    except (PydanticUserError, TypeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SchemaProblem(f"input model {model.__name__} cannot make a JSON schema: {reason}") from error
    definitions = schema.pop(DEFS, {})
    target = schema.get("$ref")
    if isinstance(target, str) and target.startswith(_PREFIX):  # a recursive model is a reference to itself
        schema = {**definitions[target.removeprefix(_PREFIX)],
                  **{key: value for key, value in schema.items() if key != "$ref"}}
    if schema.get("type") != "object":
        raise SchemaProblem(f"input model {model.__name__} must describe a JSON object (fields), "
                            f"not {schema.get('type', 'another schema')!r}")
    if any(_recursive(name, definitions) for name in definitions):
        return {**schema, DEFS: definitions}
    return {key: _inlined(value, definitions) for key, value in schema.items()}


def _inlined(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        target = node.get("$ref")
        if isinstance(target, str) and target.startswith(_PREFIX):
            named = _inlined(definitions[target.removeprefix(_PREFIX)], definitions)
            # Keywords beside the reference (a field's description, its default) refine what it names.
            return {**named, **{key: _inlined(value, definitions) for key, value in node.items() if key != "$ref"}}
        return {key: _inlined(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inlined(value, definitions) for value in node]
    return node


def _recursive(start: str, definitions: dict[str, Any]) -> bool:
    """Whether the definition `start` reaches itself through references."""
    seen: set[str] = set()
    waiting = list(_references(definitions[start]))
    while waiting:
        name = waiting.pop()
        if name == start:
            return True
        if name not in seen and name in definitions:
            seen.add(name)
            waiting.extend(_references(definitions[name]))
    return False


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        target = node.get("$ref")
        own = [target.removeprefix(_PREFIX)] if isinstance(target, str) and target.startswith(_PREFIX) else []
        return own + [name for value in node.values() for name in _references(value)]
    if isinstance(node, list):
        return [name for value in node for name in _references(value)]
    return []
