"""GET /v1/models: the models an OpenAI client may name here (every configured one)."""

from __future__ import annotations

from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context
from streamchat.llm.model_set import ModelSet
from streamchat.protocols.openai_models import ModelList, model_object

config = ApiConfig(
    name="OpenAiListModels",
    method="GET",
    path="/v1/models",
    responses={200: ModelList},
    description="OpenAI API: the models this server answers with (OpenAI's list shape), by their configured names.",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    return ApiResponse(200, {"object": "list", "data": [model_object(name) for name in ctx.service(ModelSet).names()]})
