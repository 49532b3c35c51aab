"""GET /api/models: the configured models (what a conversation may choose), the default one's state,
and the embedded models this server could run."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context
from streamchat.llm.local_models import KNOWN
from streamchat.llm.model_set import ModelSet


class ConfiguredModel(BaseModel):
    name: str = Field(description="What a conversation's `model` setting names.")
    provider: Literal["local", "openai"]
    model: str = Field(description="The provider's own id for it.")
    default: bool
    params: dict[str, Any] = Field(description="Its defaults (temperature, max_tokens); a conversation's "
                                   "settings override them.")
    tools: bool = Field(description="Whether it can call tools; a conversation naming tools on a model that "
                        "cannot is refused.")


class EmbeddedModel(BaseModel):
    id: str = Field(description="A STREAMCHAT_LOCAL_MODEL value (or a models file's `model` for provider local)")
    description: str
    installed: bool = Field(description="whether this server has what the model needs")


class Serving(BaseModel):
    provider: str
    model: str
    status: Literal["ready", "loading", "failed"]
    detail: str = Field(description='"ok", what is still being prepared, or why it failed')


class ModelList(BaseModel):
    serving: Serving = Field(description="The default model, and whether it is ready.")
    models: list[ConfiguredModel]
    embedded: list[EmbeddedModel]


config = ApiConfig(
    name="ListModels",
    method="GET",
    path="/api/models",
    responses={200: ModelList},
    description="The configured models (never a key), the default one's state, and the embedded models.",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    models = ctx.service(ModelSet)
    provider = models.provider(models.default)
    detail = provider.readiness()
    status = "ready" if detail == "ok" else "failed" if detail.startswith("failed") else "loading"
    serving = Serving(provider=provider.name, model=provider.model, status=status, detail=detail)
    embedded = [EmbeddedModel(id=model.id, description=model.description, installed=model.installed())
                for model in KNOWN.values()]
    return ApiResponse(200, {"serving": serving.model_dump(), "models": models.public(),
                             "embedded": [model.model_dump() for model in embedded]})
