"""A conversation's settings: which model answers it and how (system prompt, temperature, max tokens),
and which tools the model may call in it.

Each is null until set, meaning "the model's default" (the models file's params, or the server's).
Given on a message (from that reply on) or by PATCH, kept in state per conversation (records.py),
read by the reply runner for every later reply, so every tab, device and instance agrees.
A field a request leaves out keeps its value; a null one goes back to the default.
"""

from __future__ import annotations

from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streamchat.conversations.records import CONVERSATION, SETTINGS_KEY, scope_of
from streamchat.framework import HttpError, State
from streamchat.framework.store import JSON
from streamchat.llm.model_set import ModelSet
from streamchat.tools import ToolSet

#: The settings fields, as requests and answers spell them.
FIELDS = ("model", "systemPrompt", "temperature", "maxTokens", "tools")
#: More names than any request could offer a model (OpenAI takes 128 tools): a longer list is a mistake.
MOST_TOOLS = 512


class ChatSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, min_length=1, max_length=200,
                              description="A configured model's name (GET /api/models); null: the default.")
    systemPrompt: str | None = Field(default=None, max_length=100_000,
                                     description="The system prompt of every reply; null: the server's.")
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False,
                                      description="0 to 2; null: the model's.")
    maxTokens: int | None = Field(default=None, ge=1, description="At most this many tokens a reply; null: the "
                                  "model's (none for an OpenAI-compatible server).")
    tools: list[str] | None = Field(default=None, max_length=MOST_TOOLS,
                                    description="The tools the model may call (names of GET /api/tools); null: "
                                    "every configured tool; []: none.")

    @field_validator("tools")
    @classmethod
    def _each_once(cls, names: list[str] | None) -> list[str] | None:
        if names is not None:
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(f"{', '.join(map(repr, repeated))} named more than once")
        return names

    def changed_by(self, change: BaseModel) -> ChatSettings:
        """These settings with the fields `change` was given (by name; a null resets one)."""
        given = {name: getattr(change, name) for name in FIELDS if name in change.model_fields_set}
        return self.model_copy(update=given)


def given(request: BaseModel) -> bool:
    """Whether a request carries any settings field."""
    return any(name in request.model_fields_set for name in FIELDS)


def check_model(models: ModelSet, name: str | None, field: str = "model") -> None:
    """422 naming the field and the value when no configured model has that name."""
    if name is not None and name not in models.names():
        detail = f"{field}: no model {name!r} here; the models are {', '.join(map(repr, models.names()))}"
        raise HttpError(422, "validation_error", detail,
                        fields=[{"field": field, "message": detail, "type": "value_error"}])


def check_tools(models: ModelSet, tools: ToolSet, settings: ChatSettings, change: ChatSettings) -> None:
    """422 naming them for tool names `change` gives that no source declares (a down MCP server's
    listed tools are declared), and 422 naming the model when the resulting `settings` give tools to a
    model that cannot call them (null tools is fine: such a model is offered none)."""
    if "tools" in change.model_fields_set and change.tools:
        unknown = tools.unknown(change.tools)
        if unknown:
            _refuse(f"tools: no tool {', '.join(map(repr, unknown))} here; GET /api/tools lists them")
    model = settings.model or models.default
    # A model since removed from the models file is not judged here: its replies end naming it.
    if settings.tools and model in models.names() and not models.calls_tools(model):
        _refuse(f"tools: model {model!r} cannot call tools (set tools to null or [], or choose another model)")


def _refuse(detail: str, field: str = "tools") -> NoReturn:
    raise HttpError(422, "validation_error", detail, fields=[{"field": field, "message": detail,
                                                              "type": "value_error"}])


async def read_settings(state: State, conversation_id: str) -> ChatSettings:
    record = await state.get(scope_of(CONVERSATION, conversation_id), SETTINGS_KEY)
    return ChatSettings() if record is None else ChatSettings.model_validate(record)


def settings_in(records: dict[str, JSON]) -> ChatSettings:
    """The settings among a conversation's own records (records.own_records)."""
    record = records.get(SETTINGS_KEY)
    return ChatSettings() if record is None else ChatSettings.model_validate(record)


async def write_settings(state: State, conversation_id: str, settings: ChatSettings) -> None:
    await state.set(scope_of(CONVERSATION, conversation_id), SETTINGS_KEY, settings.model_dump(mode="json"))


def public(settings: ChatSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json")
