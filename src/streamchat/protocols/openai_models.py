"""The models an OpenAI client may name: the one serving replies (models per conversation come later)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from streamchat.llm import current_provider
from streamchat.protocols.openai_errors import invalid

#: `created` of a model object: the server does not know when a model was made.
UNKNOWN_CREATED = 0


class ModelObject(BaseModel):
    id: str
    object: str
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: str
    data: list[ModelObject]


def served_model() -> str:
    return current_provider().model


def model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": UNKNOWN_CREATED, "owned_by": "streamchat"}


def check_model(name: str | None) -> str:
    """The model that will answer: `name` must be it (or left out)."""
    served = served_model()
    if name is not None and name != served:
        raise invalid("model", f"the model {name!r} does not exist here; this server serves {served!r} "
                      "(GET /v1/models)", status=404, code="model_not_found")
    return served
