"""The requests of OpenAI ChatKit's server protocol that streamchat serves, as POST /chatkit takes them.

Every request is `{"type", "params", "metadata"?}` (the types and fields of the `openai-chatkit`
package's `chatkit.types`). The body is read loosely first (`ChatKitBody`), then its `params` by the
model of its `type`, so a refusal names the field as the client wrote it (`params.thread_id`), not
as a tagged union would. The types streamchat leaves out (attachments, transcription, widgets'
custom actions, structured input) are a 400 naming `type`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from streamchat.conversations.chat_settings import ChatSettings, check_model
from streamchat.conversations.chat_settings import given as given_settings
from streamchat.conversations.messages import ID_PATTERN, checked_message
from streamchat.framework import HttpError
from streamchat.framework.errors import describe_validation
from streamchat.llm.model_set import ModelSet

#: ChatKit's own page size when a request gives no limit.
DEFAULT_LIMIT = 20
MAX_LIMIT = 200
ThreadId = Annotated[str, Field(min_length=1, max_length=200, pattern=ID_PATTERN)]
ItemId = Annotated[str, Field(min_length=1, max_length=400, pattern=ID_PATTERN)]


class ChatKitBody(BaseModel):
    """Any ChatKit request: its type names the operation, `params` its arguments (checked per type)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(min_length=1, max_length=100, description="The operation, e.g. `threads.create`.")
    params: dict[str, Any] = Field(default_factory=dict, description="The operation's parameters.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Integration metadata (ignored).")


class _Params(BaseModel):
    model_config = ConfigDict(extra="ignore")


class InputText(BaseModel):
    type: Literal["input_text"]
    text: str


class InputTag(BaseModel):
    """A tag the user picked in the composer (an @-mention): sent to the model as its text."""

    type: Literal["input_tag"]
    id: str
    text: str
    data: dict[str, Any] = Field(default_factory=dict)
    group: str | None = None
    interactive: bool = False


class ToolChoice(BaseModel):
    id: str


class InferenceOptions(BaseModel):
    tool_choice: ToolChoice | None = None
    model: str | None = Field(default=None, min_length=1, max_length=200)


class UserMessageInput(BaseModel):
    content: list[Annotated[InputText | InputTag, Field(discriminator="type")]] = Field(min_length=1)
    attachments: list[str] = Field(default_factory=list, description="Not supported: must be empty.")
    quoted_text: str | None = None
    inference_options: InferenceOptions = Field(default_factory=InferenceOptions)

    @field_validator("attachments")
    @classmethod
    def _none(cls, attachments: list[str]) -> list[str]:
        if attachments:
            raise ValueError("attachments are not supported by this server")
        return attachments

    def text(self) -> str:
        """The message as the model reads it: the quoted text as a Markdown quote, then the content."""
        said = "".join(part.text for part in self.content)
        if self.quoted_text:
            quoted = "\n".join(f"> {line}" for line in self.quoted_text.splitlines())
            said = f"{quoted}\n\n{said}"
        return said


class CreateParams(_Params):
    input: UserMessageInput


class AddUserMessageParams(_Params):
    thread_id: ThreadId
    input: UserMessageInput


class ClientToolOutputParams(_Params):
    thread_id: ThreadId
    result: JsonValue = Field(description="What the client tool returned.")


class RetryParams(_Params):
    thread_id: ThreadId
    item_id: ItemId


class ThreadParams(_Params):
    thread_id: ThreadId


class ListThreadsParams(_Params):
    limit: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = Field(default=None, min_length=1, max_length=500)


class ListItemsParams(_Params):
    thread_id: ThreadId
    limit: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    order: Literal["asc", "desc"] = "desc"
    after: ItemId | None = None


class UpdateParams(_Params):
    thread_id: ThreadId
    title: str = Field(min_length=1, max_length=200)


class FeedbackParams(_Params):
    thread_id: ThreadId
    item_ids: list[ItemId] = Field(min_length=1, max_length=100)
    kind: Literal["positive", "negative"]


#: Each served type's params, and whether its answer streams.
STREAMING: dict[str, type[_Params]] = {
    "threads.create": CreateParams,
    "threads.add_user_message": AddUserMessageParams,
    "threads.add_client_tool_output": ClientToolOutputParams,
    "threads.retry_after_item": RetryParams,
}
NON_STREAMING: dict[str, type[_Params]] = {
    "threads.get_by_id": ThreadParams,
    "threads.list": ListThreadsParams,
    "items.list": ListItemsParams,
    "threads.update": UpdateParams,
    "threads.delete": ThreadParams,
    "items.feedback": FeedbackParams,
}
#: ChatKit's other request types: known, not served.
NOT_SERVED = ("attachments.create", "attachments.delete", "input.transcribe", "threads.custom_action",
              "threads.sync_custom_action", "threads.add_structured_input")


def invalid(field: str, message: str, status: int = 422) -> HttpError:
    detail = f"{field}: {message}"
    return HttpError(status, "validation_error", detail, fields=[{"field": field, "message": message,
                                                                  "type": "value_error"}])


def settings_in(body: ChatKitBody, models: ModelSet, model: str | None = None) -> ChatSettings | None:
    """The conversation's settings a request changes from its reply on: `metadata.settings` (streamchat's
    settings object: model, systemPrompt, temperature, maxTokens, tools; how a ChatKit thread is given
    the models file's client tools) and the composer's model choice (`inference_options.model`)."""
    given = body.metadata.get("settings")
    try:
        change = ChatSettings() if given is None else ChatSettings.model_validate(given)
    except ValidationError as error:
        detail, fields = describe_validation(error, ("metadata", "settings"))
        raise HttpError(422, "validation_error", detail, fields=fields) from None
    check_model(models, change.model, "metadata.settings.model")
    if model is not None:
        check_model(models, model, "params.input.inference_options.model")
        change = change.changed_by(ChatSettings(model=model))
    return change if given_settings(change) else None


def parse_params(body: ChatKitBody) -> _Params:
    """The request's params checked by its type's model: 400 for a type not served, 422 naming the field."""
    model = STREAMING.get(body.type) or NON_STREAMING.get(body.type)
    if model is None:
        if body.type in NOT_SERVED:
            raise invalid("type", f"{body.type!r} is not supported by this server", 400)
        served = ", ".join(sorted([*STREAMING, *NON_STREAMING]))
        raise invalid("type", f"{body.type[:100]!r} is not a ChatKit request type; this server serves {served}")
    try:
        params = model.model_validate(body.params)
    except ValidationError as error:
        detail, fields = describe_validation(error, ("params",))
        raise HttpError(422, "validation_error", detail, fields=fields) from None
    if isinstance(params, CreateParams | AddUserMessageParams):
        try:
            checked_message(params.input.text())
        except ValueError as error:
            raise invalid("params.input.content", str(error)) from None
    return params
