"""Settings from the environment (and a `.env` file in the working directory)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dotenv import load_dotenv

from streamchat.framework.streams.hub import IDLE_GROUPS_KEPT
from streamchat.framework.streams.replay import REPLAY_BUDGET_BYTES
from streamchat.llm.local_models import DEFAULT_MODEL


class SettingsError(ValueError):
    """A setting has a value the server cannot use; the message names the variable."""


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be on or off, got {raw!r}")


def _path(name: str) -> Path | None:
    raw = os.environ.get(name)
    return Path(raw) if raw else None


def _temperature() -> float | None:
    if not os.environ.get("STREAMCHAT_TEMPERATURE", "").strip():
        return None
    value = _float("STREAMCHAT_TEMPERATURE", 0.0)
    if not 0.0 <= value <= 2.0:
        raise SettingsError(f"STREAMCHAT_TEMPERATURE must be between 0 and 2, got {value}")
    return value


def _busy_mode() -> Literal["enqueue", "reject", "interrupt"]:
    mode = os.environ.get("STREAMCHAT_BUSY_MODE", "enqueue").strip().lower()
    if mode not in ("enqueue", "reject", "interrupt"):
        raise SettingsError(f"STREAMCHAT_BUSY_MODE must be enqueue, reject or interrupt, got {mode!r}")
    return mode  # type: ignore[return-value]


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    data_dir: Path
    state_url: str
    bus_url: str
    steps_package: str
    provider: Literal["openai", "local"]
    openai_api_key: str | None
    openai_base_url: str | None
    openai_model: str
    #: None: the model's own default (an instruction for chat models, a transcript opening for base models).
    system_prompt: str | None
    history_chars: int
    max_tokens: int
    provider_retries: int
    provider_timeout: float
    retry_delay: float
    local_model: str
    log_level: str
    sse_ping_seconds: float
    busy_mode: Literal["enqueue", "reject", "interrupt"]
    ws_compression: bool
    temperature: float | None
    redis_prefix: str
    bus_partitions: int
    bus_lease_seconds: float
    backend_retry_seconds: float
    shutdown_seconds: float
    api_keys: str | None
    api_keys_file: Path | None
    admin_keys: str | None
    admin_keys_file: Path | None
    max_body_bytes: int
    messages_per_minute: int
    max_concurrent_replies: int
    ws_max_frame_bytes: int
    ws_max_joins: int
    ws_messages_per_second: int
    ws_outbox: int
    provider_total_timeout: float
    otlp_endpoint: str | None
    max_message_chars: int
    delta_window_ms: int
    keep_alive_seconds: int
    replay_memory_mb: int
    idle_groups_kept: int

    @classmethod
    def from_env(cls, env_file: str | None = ".env") -> Settings:
        if env_file:
            load_dotenv(env_file, override=False)
        data_dir = Path(os.environ.get("STREAMCHAT_DATA_DIR", ".streamchat"))
        api_key = os.environ.get("OPENAI_API_KEY") or None
        provider = os.environ.get("STREAMCHAT_PROVIDER", "").strip().lower() or ("openai" if api_key else "local")
        if provider not in ("openai", "local"):
            raise SettingsError(f"STREAMCHAT_PROVIDER must be 'openai' or 'local', got {provider!r}")
        if provider == "openai" and not api_key:
            raise SettingsError("STREAMCHAT_PROVIDER=openai needs OPENAI_API_KEY")
        keyed = bool(os.environ.get("STREAMCHAT_API_KEYS") or os.environ.get("STREAMCHAT_API_KEYS_FILE"))
        return cls(
            host=os.environ.get("STREAMCHAT_HOST", "127.0.0.1"),
            port=_int("STREAMCHAT_PORT", 3000, minimum=0),
            data_dir=data_dir,
            state_url=os.environ.get("STREAMCHAT_STATE_URL") or f"sqlite:///{data_dir / 'state.db'}",
            bus_url=os.environ.get("STREAMCHAT_BUS_URL") or "memory://",
            steps_package=os.environ.get("STREAMCHAT_STEPS", "streamchat.steps"),
            provider=provider,  # type: ignore[arg-type]
            openai_api_key=api_key,
            openai_base_url=os.environ.get("OPENAI_BASE_URL") or None,
            openai_model=os.environ.get("OPENAI_MODEL") or "gpt-4o-mini",
            system_prompt=os.environ.get("STREAMCHAT_SYSTEM_PROMPT") or None,
            history_chars=_int("STREAMCHAT_HISTORY_CHARS", 16_000, minimum=1),
            max_tokens=_int("STREAMCHAT_MAX_TOKENS", 512, minimum=1),
            provider_retries=_int("STREAMCHAT_PROVIDER_RETRIES", 2),
            provider_timeout=_float("STREAMCHAT_PROVIDER_TIMEOUT", 60.0),
            retry_delay=_float("STREAMCHAT_RETRY_DELAY", 0.5),
            # A name from llm/local_models.py or a GGUF path; checked when the provider is made.
            local_model=os.environ.get("STREAMCHAT_LOCAL_MODEL", "").strip() or DEFAULT_MODEL,
            log_level=os.environ.get("STREAMCHAT_LOG_LEVEL", "INFO"),
            sse_ping_seconds=_float("STREAMCHAT_SSE_PING_SECONDS", 15.0),
            busy_mode=_busy_mode(),
            ws_compression=_flag("STREAMCHAT_WS_COMPRESSION", True),
            temperature=_temperature(),
            redis_prefix=os.environ.get("STREAMCHAT_REDIS_PREFIX") or "streamchat",
            bus_partitions=_int("STREAMCHAT_BUS_PARTITIONS", 16, minimum=1),
            bus_lease_seconds=_float("STREAMCHAT_BUS_LEASE_SECONDS", 10.0),
            backend_retry_seconds=_float("STREAMCHAT_BACKEND_RETRY_SECONDS", 15.0),
            shutdown_seconds=_float("STREAMCHAT_SHUTDOWN_SECONDS", 20.0),
            api_keys=os.environ.get("STREAMCHAT_API_KEYS") or None,
            api_keys_file=_path("STREAMCHAT_API_KEYS_FILE"),
            admin_keys=os.environ.get("STREAMCHAT_ADMIN_KEYS") or None,
            admin_keys_file=_path("STREAMCHAT_ADMIN_KEYS_FILE"),
            max_body_bytes=_int("STREAMCHAT_MAX_BODY_BYTES", 256 * 1024, minimum=1024),
            # Per caller; on by default only when keys are in use (open, the caller is an address).
            messages_per_minute=_int("STREAMCHAT_MESSAGES_PER_MINUTE", 60 if keyed else 0),
            max_concurrent_replies=_int("STREAMCHAT_MAX_CONCURRENT_REPLIES", 4 if keyed else 0),
            ws_max_frame_bytes=_int("STREAMCHAT_WS_MAX_FRAME_BYTES", 64 * 1024, minimum=1024),
            ws_max_joins=_int("STREAMCHAT_WS_MAX_JOINS", 100, minimum=1),
            ws_messages_per_second=_int("STREAMCHAT_WS_MESSAGES_PER_SECOND", 50, minimum=1),
            ws_outbox=_int("STREAMCHAT_WS_OUTBOX", 20_000, minimum=10),
            provider_total_timeout=_float("STREAMCHAT_PROVIDER_TOTAL_TIMEOUT", 600.0),
            # The standard OpenTelemetry variables: tracing is on when either names a collector.
            otlp_endpoint=(os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                           or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None),
            max_message_chars=_int("STREAMCHAT_MAX_MESSAGE_CHARS", 32_000, minimum=1),
            delta_window_ms=_int("STREAMCHAT_DELTA_WINDOW_MS", 25),
            # Longer than a load balancer's idle timeout (60 s is common), so the balancer never sends
            # a request down a connection the server is closing at that moment.
            keep_alive_seconds=_int("STREAMCHAT_KEEP_ALIVE_SECONDS", 75, minimum=1),
            replay_memory_mb=_int("STREAMCHAT_REPLAY_MEMORY_MB", REPLAY_BUDGET_BYTES // (1024 * 1024), minimum=1),
            idle_groups_kept=_int("STREAMCHAT_IDLE_GROUPS_KEPT", IDLE_GROUPS_KEPT),
        )


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process's settings, read once."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings
