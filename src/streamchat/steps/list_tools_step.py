"""GET /api/tools: the tools the model may call, from every source, with their input schemas, and
whether each can be called now (an MCP server that is down says why)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, RootModel

from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context
from streamchat.tools import ToolSet


class ToolEntry(BaseModel):
    name: str = Field(description="What the model calls it, and what a conversation's `tools` setting names.")
    description: str
    inputSchema: dict[str, Any] = Field(description="The JSON schema of its arguments, as the model is shown it.")
    needsApproval: bool = Field(description="Each call waits for the user to approve or deny it.")
    source: str = Field(description='"builtin", "file" (a tool file of STREAMCHAT_TOOLS) or "mcp:<server>".')
    available: bool = Field(description="Whether it can be called now.")
    error: str | None = Field(default=None, description="Why it cannot, when it cannot.")


class ToolList(RootModel[list[ToolEntry]]):
    """Every tool, built-ins first, then tool files, then each MCP server's."""


config = ApiConfig(
    name="ListTools",
    method="GET",
    path="/api/tools",
    responses={200: ToolList},
    description="The tools the model may call, with their input schemas and whether each is available.",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    return ApiResponse(200, ctx.service(ToolSet).public())
