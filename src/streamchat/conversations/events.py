"""What the use cases ask of the event steps: the `chat-message` event that asks for a reply (or its
next round, once the tools it called have answered), and the `tool-call` event that runs one call."""

from __future__ import annotations

from pydantic import BaseModel, Field

from streamchat.conversations.chat_settings import ChatSettings
from streamchat.tools.client_tools import ClientTool

#: The topic a reply is asked for on; the AI step subscribes to it.
REPLY_ASKED = "chat-message"
#: The topic a tool call is run on; the tool step subscribes to it.
TOOL_CALL = "tool-call"


class ChatMessageEvent(BaseModel):
    message: str
    conversationId: str = Field(min_length=1)
    assistantMessageId: str = Field(min_length=1)
    userMessageId: str | None = Field(
        default=None, description="The turn being answered; history stops there (regenerate answers an old one).")
    keyId: str | None = Field(default=None, description="The API key the reply counts against, if any.")
    instructions: str | None = Field(default=None, description="The system prompt for this reply alone "
                                     "(an OpenAI request's `instructions` or system messages).")
    settings: ChatSettings | None = Field(default=None, description="The conversation's settings when the reply "
                                          "was asked for (absent in events queued by earlier versions: read "
                                          "then); the AI step need not read them before it calls the model.")
    clientTools: list[ClientTool] | None = Field(
        default=None, description="Tools the request brought that its client runs (AG-UI's `tools`, an OpenAI "
        "request's functions): offered to the model beside the conversation's, answered by the client.")
    round: int = Field(default=0, ge=0, description="The model round to run: 0 first; each later one goes on "
                       "once every tool call of the one before has ended.")


class ToolCallEvent(BaseModel):
    conversationId: str = Field(min_length=1)
    replyId: str = Field(min_length=1, description="The reply whose model round made the call.")
    callId: str = Field(min_length=1, description="The call's item in the conversation stream.")
    keyId: str | None = None
