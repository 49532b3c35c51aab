"""Settings: environment, `.env`, and clear refusals of values the server cannot use."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streamchat.llm.local_models import DEFAULT_MODEL
from streamchat.settings import Settings, SettingsError, env_name
from streamchat.settings_tables import with_tables

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No setting from the outer environment, and a working directory without a `.env`."""
    for key in list(os.environ):
        if key.startswith(("STREAMCHAT_", "OPENAI_", "OTEL_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def refusal(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env_file=None)
    return str(refused.value)


def test_defaults_run_the_embedded_stack(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env(env_file=None)
    assert settings.provider == "local"
    assert (settings.host, settings.port) == ("127.0.0.1", 3000)
    assert settings.state_url == "sqlite:///.streamchat/state.db"
    assert settings.bus_url == "memory://"
    assert settings.history_chars >= 16_000
    assert settings.local_model == DEFAULT_MODEL
    assert settings.temperature is None
    assert settings.busy_mode == "enqueue"
    assert settings.otlp_endpoint is None


def test_a_key_selects_openai_and_env_file_values_apply(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OPENAI_API_KEY=sk-from-file\nOPENAI_MODEL=from-file\nSTREAMCHAT_PORT=4000\n")
    clean_env.setenv("STREAMCHAT_PORT", "5000")
    settings = Settings.from_env(env_file=str(env_file))
    chosen = (settings.provider, settings.openai_api_key, settings.openai_model)
    assert chosen == ("openai", "sk-from-file", "from-file")
    assert settings.port == 5000, "a real environment variable wins over .env"


def test_env_file_is_read_without_touching_os_environ(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("STREAMCHAT_SSE_PING_SECONDS=2.5\nOTEL_SERVICE_NAME=from-file\n"
                                   "OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318/\nSOMETHING_ELSE=1\n")
    before = dict(os.environ)
    settings = Settings.from_env()  # the default: `.env` in the working directory
    assert (settings.sse_ping_seconds, settings.otel_service_name) == (2.5, "from-file")
    assert settings.otlp_endpoint == "http://collector:4318/v1/traces", "the exporter's own rule for the base URL"
    assert dict(os.environ) == before
    assert "STREAMCHAT_SSE_PING_SECONDS" not in os.environ


def test_an_empty_value_in_the_environment_means_unset_and_does_not_hide_env_file(
    clean_env: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    (tmp_path / ".env").write_text("STREAMCHAT_MAX_TOKENS=100\n")
    clean_env.setenv("STREAMCHAT_MAX_TOKENS", "")
    clean_env.setenv("STREAMCHAT_HOST", "  ")
    settings = Settings.from_env()
    assert (settings.max_tokens, settings.host) == (100, "127.0.0.1")


def test_derived_defaults(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("STREAMCHAT_DATA_DIR", "/srv/chat")
    clean_env.setenv("STREAMCHAT_LOCAL_MODEL", "   ")
    open_server = Settings.from_env(env_file=None)
    assert open_server.state_url == "sqlite:////srv/chat/state.db"
    assert (open_server.messages_per_minute, open_server.max_concurrent_replies) == (0, 0)
    assert open_server.local_model == DEFAULT_MODEL

    clean_env.setenv("STREAMCHAT_API_KEYS_FILE", "/etc/streamchat/keys")
    keyed = Settings.from_env(env_file=None)
    assert (keyed.messages_per_minute, keyed.max_concurrent_replies) == (60, 4)
    assert keyed.api_keys_file == Path("/etc/streamchat/keys")
    clean_env.setenv("STREAMCHAT_MESSAGES_PER_MINUTE", "0")
    assert Settings.from_env(env_file=None).messages_per_minute == 0, "an explicit value beats the derived one"

    clean_env.setenv("OPENAI_API_KEY", "sk-x")
    assert Settings.from_env(env_file=None).provider == "openai"
    clean_env.setenv("STREAMCHAT_PROVIDER", " Local ")
    assert Settings.from_env(env_file=None).provider == "local"


def test_choices_ignore_case_and_flags_take_the_documented_words(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("STREAMCHAT_BUSY_MODE", "Interrupt")
    clean_env.setenv("STREAMCHAT_LOG_LEVEL", "debug")
    settings = Settings.from_env(env_file=None)
    assert (settings.busy_mode, settings.log_level) == ("interrupt", "DEBUG")
    for word, expected in [("1", True), ("true", True), ("YES", True), ("on", True),
                           ("0", False), ("false", False), ("no", False), ("Off", False)]:
        clean_env.setenv("STREAMCHAT_WS_COMPRESSION", word)
        assert Settings.from_env(env_file=None).ws_compression is expected, word


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAMCHAT_SSE_PING_SECONDS": "0"}, "STREAMCHAT_SSE_PING_SECONDS must be greater than 0, got 0"),
        ({"STREAMCHAT_SHUTDOWN_SECONDS": "-1"}, "STREAMCHAT_SHUTDOWN_SECONDS must be at least 0, got -1"),
        ({"STREAMCHAT_PROVIDER_TIMEOUT": "-0.5"}, "STREAMCHAT_PROVIDER_TIMEOUT must be greater than 0, got -0.5"),
        ({"STREAMCHAT_RETRY_DELAY": "soon"}, "STREAMCHAT_RETRY_DELAY must be a number, got 'soon'"),
        ({"STREAMCHAT_BUS_LEASE_SECONDS": "nan"}, "STREAMCHAT_BUS_LEASE_SECONDS must be a finite number"),
        ({"STREAMCHAT_PORT": "70000"}, "STREAMCHAT_PORT must be at most 65535, got 70000"),
        ({"STREAMCHAT_PORT": "http"}, "STREAMCHAT_PORT must be an integer, got 'http'"),
        ({"STREAMCHAT_MAX_TOKENS": "1.5"}, "STREAMCHAT_MAX_TOKENS must be an integer"),
        ({"STREAMCHAT_HISTORY_CHARS": "0"}, "STREAMCHAT_HISTORY_CHARS must be at least 1, got 0"),
        ({"STREAMCHAT_TEMPERATURE": "2.5"}, "STREAMCHAT_TEMPERATURE must be at most 2, got 2.5"),
        ({"STREAMCHAT_BUSY_MODE": "queue"}, "STREAMCHAT_BUSY_MODE must be 'enqueue', 'reject' or 'interrupt'"),
        ({"STREAMCHAT_WS_COMPRESSION": "maybe"}, "STREAMCHAT_WS_COMPRESSION must be on or off, got 'maybe'"),
        ({"STREAMCHAT_LOG_LEVEL": "chatty"}, "STREAMCHAT_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL"),
        ({"STREAMCHAT_PROVIDER": "magic"}, "STREAMCHAT_PROVIDER must be 'openai' or 'local', got 'magic'"),
        ({"STREAMCHAT_PROVIDER": "openai"}, "STREAMCHAT_PROVIDER=openai needs OPENAI_API_KEY"),
        ({"STREAMCHAT_WS_OUTBOX": "9"}, "STREAMCHAT_WS_OUTBOX must be at least 10, got 9"),
    ],
)
def test_bad_values_are_refused_by_name(clean_env: pytest.MonkeyPatch, env: dict[str, str], message: str) -> None:
    assert message in refusal(clean_env, **env)


def test_every_bad_variable_gets_its_own_line(clean_env: pytest.MonkeyPatch) -> None:
    message = refusal(clean_env, STREAMCHAT_PORT="-1", STREAMCHAT_SSE_PING_SECONDS="0",
                      STREAMCHAT_WS_COMPRESSION="maybe", STREAMCHAT_DATA_DIR="/srv/chat")
    lines = message.splitlines()
    assert len(lines) == 3, message
    assert [line.split()[0] for line in lines] == [
        "STREAMCHAT_PORT", "STREAMCHAT_SSE_PING_SECONDS", "STREAMCHAT_WS_COMPRESSION"]


def test_a_bad_value_in_env_file_is_refused_by_name(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("STREAMCHAT_BUS_PARTITIONS=0\n")
    with pytest.raises(SettingsError, match="STREAMCHAT_BUS_PARTITIONS must be at least 1, got 0"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("STREAMCHAT_STATE_URL", "mongodb://nowhere", "unsupported STREAMCHAT_STATE_URL scheme"),
        ("STREAMCHAT_BUS_URL", "carrier-pigeon://x", "unsupported STREAMCHAT_BUS_URL scheme"),
        ("STREAMCHAT_PORT", "-1", "STREAMCHAT_PORT must be at least 0"),
        ("STREAMCHAT_SSE_PING_SECONDS", "0", "STREAMCHAT_SSE_PING_SECONDS must be greater than 0, got 0"),
    ],
)
def test_serve_refuses_to_start_with_a_clear_message(tmp_path: Path, name: str, value: str, message: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMCHAT_", "OPENAI_"))}
    env.update({"OPENAI_API_KEY": "sk-x", name: value})
    result = subprocess.run([sys.executable, "-m", "streamchat", "serve"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "serving http" not in result.stderr


def test_websocket_compression_is_a_switch(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings.from_env(env_file=None).ws_compression is True
    clean_env.setenv("STREAMCHAT_WS_COMPRESSION", "off")
    assert Settings.from_env(env_file=None).ws_compression is False
    clean_env.setenv("STREAMCHAT_WS_COMPRESSION", "maybe")
    with pytest.raises(SettingsError, match="STREAMCHAT_WS_COMPRESSION must be on or off"):
        Settings.from_env(env_file=None)


def readme_table_rows() -> dict[str, list[str]]:
    """The configuration tables' rows in README.md, by variable: [default, allowed, meaning]."""
    rows: dict[str, list[str]] = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip().replace(r"\|", "|") for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 4 and re.fullmatch(r"`[A-Z_]+`", cells[0]):
            assert cells[0] not in rows, f"{cells[0]} has two rows"
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_readme_tables_match_the_declarations() -> None:
    rows = readme_table_rows()
    fields = Settings.model_fields
    assert set(rows) == {env_name(name, field) for name, field in fields.items()}
    for name, field in fields.items():
        default, _, meaning = rows[env_name(name, field)]
        assert meaning == field.description, name
        extra = field.json_schema_extra
        if isinstance(extra, dict) and "shown" in extra:
            assert default == extra["shown"], name
        elif isinstance(field.default, bool):
            assert default == ("`on`" if field.default else "`off`"), name
        elif field.default is None:
            assert default == "unset", name
        else:
            value = f"{field.default:g}" if isinstance(field.default, float) else str(field.default)
            assert default == f"`{value}`", name
    assert rows["STREAMCHAT_SSE_PING_SECONDS"][1] == "> 0, \N{LESS-THAN OR EQUAL TO} 3600"
    assert rows["STREAMCHAT_PORT"][1] == "0\N{EN DASH}65535"


def test_readme_is_what_the_generator_writes() -> None:
    """`python -m streamchat.settings_tables --readme README.md` would change nothing: regenerate if this fails."""
    text = README.read_text(encoding="utf-8")
    assert with_tables(text) == text
