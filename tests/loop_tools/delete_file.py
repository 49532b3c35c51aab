"""A call the user must approve first; it only says what it would have deleted."""

from __future__ import annotations

from pydantic import BaseModel

from streamchat.tools import ToolConfig, ToolContext

RAN: list[str] = []


class DeleteInput(BaseModel):
    path: str


config = ToolConfig(name="delete_file", description="Deletes a file.", input=DeleteInput, needs_approval=True)


async def handler(args: DeleteInput, ctx: ToolContext) -> dict[str, str]:
    RAN.append(args.path)
    return {"deleted": args.path}
