"""What the use cases ask of the event steps: the `chat-message` event that asks for a reply."""

from __future__ import annotations

from pydantic import BaseModel, Field

from streamchat.conversations.chat_settings import ChatSettings

#: The topic a reply is asked for on; the AI step subscribes to it.
REPLY_ASKED = "chat-message"


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
