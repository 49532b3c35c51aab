"""The models an OpenAI client may name: the configured ones (the models file, or the one model of
the OPENAI_* / local-model variables), each by its configured name."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from streamchat.llm.model_set import ModelSet
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


def model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": UNKNOWN_CREATED, "owned_by": "streamchat"}


def check_model(models: ModelSet, name: str | None) -> str:
    """The model that will answer: `name` when it is configured here, the default when left out;
    404 in OpenAI's shape for one that is not."""
    if name is None:
        return models.default
    if name not in models.names():
        raise invalid("model", f"the model {name!r} does not exist here; the models are "
                      f"{', '.join(map(repr, models.names()))} (GET /v1/models)", status=404, code="model_not_found")
    return name
