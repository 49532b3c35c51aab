"""GET /v1/models: the models an OpenAI client may name here (the one serving replies)."""

from __future__ import annotations

from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context
from streamchat.protocols.openai_models import ModelList, model_object, served_model

config = ApiConfig(
    name="OpenAiListModels",
    method="GET",
    path="/v1/models",
    responses={200: ModelList},
    description="OpenAI API: the models this server answers with (OpenAI's list shape).",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    return ApiResponse(200, {"object": "list", "data": [model_object(served_model())]})
