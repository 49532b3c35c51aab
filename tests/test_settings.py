"""Settings: environment, `.env`, and clear refusals of values the server cannot use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamchat.settings import Settings, SettingsError


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith(("STREAMCHAT_", "OPENAI_")):
            monkeypatch.delenv(key)
    return monkeypatch


def test_defaults_run_the_embedded_stack(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = Settings.from_env(env_file=None)
    assert settings.provider == "local"
    assert (settings.host, settings.port) == ("127.0.0.1", 3000)
    assert settings.state_url == "sqlite:///.streamchat/state.db"
    assert settings.bus_url == "memory://"
    assert settings.history_chars >= 16_000


def test_a_key_selects_openai_and_env_file_values_apply(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OPENAI_API_KEY=sk-from-file\nOPENAI_MODEL=from-file\nSTREAMCHAT_PORT=4000\n")
    clean_env.setenv("STREAMCHAT_PORT", "5000")
    settings = Settings.from_env(env_file=str(env_file))
    chosen = (settings.provider, settings.openai_api_key, settings.openai_model)
    assert chosen == ("openai", "sk-from-file", "from-file")
    assert settings.port == 5000, "a real environment variable wins over .env"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("STREAMCHAT_PORT", "http", "STREAMCHAT_PORT must be an integer"),
        ("STREAMCHAT_HISTORY_CHARS", "0", "STREAMCHAT_HISTORY_CHARS must be at least 1"),
        ("STREAMCHAT_PROVIDER", "magic", "STREAMCHAT_PROVIDER must be"),
        ("STREAMCHAT_PROVIDER", "openai", "needs OPENAI_API_KEY"),
    ],
)
def test_bad_values_are_refused_by_name(clean_env: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env_file=None)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("STREAMCHAT_STATE_URL", "mongodb://nowhere", "unsupported STREAMCHAT_STATE_URL scheme"),
        ("STREAMCHAT_BUS_URL", "carrier-pigeon://x", "unsupported STREAMCHAT_BUS_URL scheme"),
        ("STREAMCHAT_PORT", "-1", "STREAMCHAT_PORT must be at least 0"),
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


def test_websocket_compression_is_a_switch(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings.from_env(env_file=None).ws_compression is True
    clean_env.setenv("STREAMCHAT_WS_COMPRESSION", "off")
    assert Settings.from_env(env_file=None).ws_compression is False
    clean_env.setenv("STREAMCHAT_WS_COMPRESSION", "maybe")
    with pytest.raises(SettingsError, match="STREAMCHAT_WS_COMPRESSION must be on or off"):
        Settings.from_env(env_file=None)
