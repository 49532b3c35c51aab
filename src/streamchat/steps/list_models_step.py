"""GET /api/models: the models this server can run, and the one that answers now (still loading?)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context
from streamchat.llm import current_provider
from streamchat.llm.local_models import KNOWN


class ModelInfo(BaseModel):
    id: str = Field(description="a STREAMCHAT_LOCAL_MODEL value for local models, OPENAI_MODEL for openai")
    provider: Literal["local", "openai"]
    description: str
    installed: bool = Field(description="whether this server has what the model needs")
    serving: bool = Field(description="whether this model answers the replies")


class Serving(BaseModel):
    provider: str
    model: str
    status: Literal["ready", "loading", "failed"]
    detail: str = Field(description='"ok", what is still being prepared, or why it failed')


class ModelList(BaseModel):
    serving: Serving
    models: list[ModelInfo]


config = ApiConfig(
    name="ListModels",
    method="GET",
    path="/api/models",
    responses={200: ModelList},
    description="The models this server can run, and the one serving replies (and whether it is ready).",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    provider = current_provider()
    detail = provider.readiness()
    status = "ready" if detail == "ok" else "failed" if detail.startswith("failed") else "loading"
    models: list[ModelInfo] = []
    if provider.name == "openai":
        models.append(ModelInfo(id=provider.model, provider="openai", installed=True, serving=True,
                                description="the model of the configured OpenAI-compatible provider"))
    serving_local = provider.model if provider.name == "local" else None
    for model in KNOWN.values():
        models.append(ModelInfo(id=model.id, provider="local", description=model.description,
                                installed=model.installed(), serving=model.id == serving_local))
    if serving_local is not None and serving_local not in KNOWN:
        models.append(ModelInfo(id=serving_local, provider="local", description="a GGUF file (STREAMCHAT_LOCAL_MODEL)",
                                installed=True, serving=True))
    serving = Serving(provider=provider.name, model=provider.model, status=status, detail=detail)
    return ApiResponse(200, ModelList(serving=serving, models=models).model_dump())
