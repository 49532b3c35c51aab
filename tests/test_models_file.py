"""The models file (STREAMCHAT_MODELS_FILE) and the set of models made from it or from the variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, FakeProvider
from streamchat.llm import ChatTurn
from streamchat.llm.local_models import DEFAULT_MODEL, KNOWN
from streamchat.llm.model_set import ModelSet, UnknownModel
from streamchat.llm.models_file import ModelsFileError, load, main
from streamchat.settings import Settings
from streamchat.testing.processes import free_port

KEYS = {"FAST_API_KEY": "sk-fast-secret", "SMART_API_KEY": "sk-smart-secret"}

THREE_MODELS = """
[[models]]
name = "fast"
provider = "openai"
base_url = "{base_url}"
api_key_env = "FAST_API_KEY"
model = "fast-model"
default = true
[models.params]
temperature = 0.3
max_tokens = 7

[[models]]
name = "smart"
provider = "openai"
base_url = "{base_url}"
api_key_env = "SMART_API_KEY"
model = "smart-model"

[[models]]
name = "offline"
provider = "local"
model = "{local}"
[models.params]
max_tokens = 64
"""

ONE_MODEL = """
[[models]]
name = "{name}"
provider = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "FAST_API_KEY"
model = "m"
{extra}
"""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No setting from the outer environment, and a working directory without a `.env`."""
    for key in list(os.environ):
        if key.startswith(("STREAMCHAT_", "OPENAI_", "OTEL_")) or key in KEYS:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def refusal(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ModelsFileError) as raised:
        load(path, KEYS if environ is None else environ)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message.removeprefix(f"{path}: ")


def settings_for(clean_env: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        clean_env.setenv(name, value)
    return Settings.from_env(env_file=None)


def test_a_good_file_makes_every_model_with_its_provider(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write(tmp_path, THREE_MODELS.format(base_url="http://127.0.0.1:9/v1", local=DEFAULT_MODEL))
    models = ModelSet.from_settings(settings_for(clean_env, STREAMCHAT_MODELS_FILE=str(path)), KEYS)
    assert (models.names(), models.default) == (["fast", "smart", "offline"], "fast")
    assert models.entry("offline").provider == "local"
    assert [models.provider(name).name for name in models.names()] == ["openai", "openai", "local"]
    assert models.provider("smart").model == "smart-model"
    assert models.public() == [
        {"name": "fast", "provider": "openai", "model": "fast-model", "default": True,
         "params": {"temperature": 0.3, "max_tokens": 7}, "tools": True},
        {"name": "smart", "provider": "openai", "model": "smart-model", "default": False,
         "params": {"temperature": None, "max_tokens": None}, "tools": True},
        {"name": "offline", "provider": "local", "model": DEFAULT_MODEL, "default": False,
         "params": {"temperature": None, "max_tokens": 64}, "tools": False},
    ]
    assert [models.calls_tools(name) for name in models.names()] == [True, True, False], "by default"
    shown = repr(models.public()) + repr(load(path, KEYS))
    assert not any(key in shown for key in KEYS.values())
    with pytest.raises(UnknownModel, match="no model 'gpt-5' here; the models are 'fast', 'smart', 'offline'"):
        models.provider("gpt-5")


async def test_each_openai_model_calls_its_server_with_its_params(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, fake_provider: FakeProvider,
) -> None:
    path = write(tmp_path, THREE_MODELS.format(base_url=f"{fake_provider.url}/v1", local=DEFAULT_MODEL))
    models = ModelSet.from_settings(settings_for(clean_env, STREAMCHAT_MODELS_FILE=str(path)), KEYS)
    models.start()
    try:
        for name in ("fast", "smart"):
            reply = [piece async for piece in models.provider(name).stream([ChatTurn("user", "hello")])]
            assert reply
    finally:
        await models.close()
    fast, smart = fake_provider.requests()
    assert (fast["model"], fast["temperature"], fast["max_tokens"]) == ("fast-model", 0.3, 7)
    assert smart["model"] == "smart-model"
    assert "temperature" not in smart and smart.get("max_tokens") is None  # no limit unless one is set


def test_the_tools_flag_is_read_and_false_is_kept(tmp_path: Path) -> None:
    text = (ONE_MODEL.format(name="refuses", extra="tools = false\ndefault = true")
            + ONE_MODEL.format(name="calls", extra="tools = true")
            + '[[models]]\nname = "offline"\nprovider = "local"\ntools = false\n')
    assert [model.entry.tools for model in load(write(tmp_path, text), KEYS).models] == [False, True, False]


def test_a_single_model_is_the_default_without_saying_so(tmp_path: Path) -> None:
    models = load(write(tmp_path, ONE_MODEL.format(name="only", extra="")), KEYS)
    assert models.default == "only" and not models.needs_local_runtime()


def test_a_server_of_your_own_needs_no_key_but_openai_itself_does(tmp_path: Path) -> None:
    own = write(tmp_path, '[[models]]\nname = "mine"\nprovider = "openai"\nbase_url = "http://h/v1"\nmodel = "m"\n')
    assert load(own, {}).models[0].api_key == "no-key"
    openai = write(tmp_path, '[[models]]\nname = "gpt"\nprovider = "openai"\nmodel = "gpt-4o"\n')
    assert refusal(openai).startswith("model 'gpt': api_key_env: needed for OpenAI's own API")


def test_key_variables_come_from_the_environment_over_dotenv(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FAST_API_KEY=from-dotenv\n")
    path = write(tmp_path, ONE_MODEL.format(name="fast", extra=""))
    assert load(path).models[0].api_key == "from-dotenv"
    clean_env.setenv("FAST_API_KEY", "from-environment")
    assert load(path).models[0].api_key == "from-environment"


@pytest.mark.parametrize(("text", "expected"), [
    ("[[models]\nname = 'x'", "not valid TOML: "),
    ("", "models: missing: the file has no [[models]] table"),
    (ONE_MODEL.format(name="fast", extra='api_key = "sk-in-the-file"'), "model 'fast': api_key: unknown key"),
    (ONE_MODEL.format(name="fast", extra="") + "[[mcp_tools]]\nname = 'x'\n", "mcp_tools: unknown key"),
    (ONE_MODEL.format(name="fast", extra="[models.params]\ntop_p = 0.9"), "model 'fast': params.top_p: unknown key"),
    (ONE_MODEL.format(name="fast", extra="[models.params]\ntemperature = 2.5"),
     "model 'fast': params.temperature: must be at most 2, got 2.5"),
    (ONE_MODEL.format(name="fast", extra="[models.params]\nmax_tokens = 0"),
     "model 'fast': params.max_tokens: must be at least 1, got 0"),
    (ONE_MODEL.format(name="fast", extra='default = "yes"'), "model 'fast': default: input should be a valid boolean"),
    (ONE_MODEL.format(name="my model", extra=""), "model 'my model': name: 'my model' is not allowed"),
    (ONE_MODEL.format(name="fast", extra="").replace('"openai"', '"anthropic"'),
     "model 'fast': provider: must be \"openai\" or \"local\", got 'anthropic'"),
    (ONE_MODEL.format(name="fast", extra="").replace('model = "m"', ""), "model 'fast': model: missing"),
    ('[[models]]\nprovider = "local"\n', "model #1: name: missing"),
    ('[[models]]\nname = "l"\nprovider = "local"\nbase_url = "http://h"\n', "model 'l': base_url: unknown key"),
    ('[[models]]\nname = "l"\nprovider = "local"\nmodel = "tinyllama"\n', "model 'l': model: no built-in model"),
    ('[[models]]\nname = "l"\nprovider = "local"\ntools = true\n',
     "model 'l': tools: an embedded model cannot call tools"),
    (ONE_MODEL.format(name="fast", extra='tools = "yes"'), "model 'fast': tools: input should be a valid boolean"),
    ('[[models]]\nname = "l"\nprovider = "local"\nmodel = "gemma3-270m"\npath = "x.gguf"\n',
     "model 'l': path: give a built-in model's name (model) or a GGUF file (path), not both"),
    (ONE_MODEL.format(name="fast", extra="default = true") + ONE_MODEL.format(name="slow", extra="default = true"),
     "model 'slow': default: 'fast' is the default already; mark exactly one model"),
    (ONE_MODEL.format(name="fast", extra="") + ONE_MODEL.format(name="slow", extra=""),
     "default: none of the 2 models has `default = true`; mark exactly one"),
    (ONE_MODEL.format(name="fast", extra="default = true") + ONE_MODEL.format(name="fast", extra=""),
     "model 'fast': name: another model has this name already"),
])
def test_a_bad_file_is_refused_in_one_line_naming_the_model_and_the_key(
    tmp_path: Path, text: str, expected: str,
) -> None:
    assert refusal(write(tmp_path, text)).startswith(expected)


MCP_SERVERS = """
[[mcp_servers]]
name = "files"
command = ["python", "mcp_files.py"]
env = {{ FILES_ROOT = "/srv" }}
needs_approval = ["delete"]
timeout_seconds = 30

[[mcp_servers]]
name = "search-web"
url = "http://127.0.0.1:9000/mcp"
headers = {{ Authorization = "Bearer t" }}
needs_approval = true

[[mcp_servers]]
name = "tools_elsewhere"
command = ["./run"]
cwd = "{cwd}"
"""


def test_mcp_servers_are_read_with_the_models(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_MODEL.format(name="fast", extra="") + MCP_SERVERS.format(cwd="servers"))
    files, web, elsewhere = load(path, KEYS).mcp_servers
    assert (files.transport, files.command, files.env, files.timeout_seconds) == (
        "stdio", ["python", "mcp_files.py"], {"FILES_ROOT": "/srv"}, 30)
    assert files.cwd == tmp_path and elsewhere.cwd == tmp_path / "servers"  # relative to the models file
    assert [files.needs_approval_of(tool) for tool in ("delete", "read")] == [True, False]
    assert (web.transport, web.url, web.headers, web.cwd, web.timeout_seconds) == (
        "http", "http://127.0.0.1:9000/mcp", {"Authorization": "Bearer t"}, None, 60)
    assert web.needs_approval_of("anything") and files.tool_name("read") == "files__read"
    assert load(write(tmp_path, ONE_MODEL.format(name="fast", extra="")), KEYS).mcp_servers == ()
    absolute = write(tmp_path, ONE_MODEL.format(name="fast", extra="") + MCP_SERVERS.format(cwd="/opt/tools"))
    assert load(absolute, KEYS).mcp_servers[2].cwd == Path("/opt/tools")


SERVER = ONE_MODEL.format(name="fast", extra="") + "[[mcp_servers]]\nname = \"{name}\"\n{extra}\n"


@pytest.mark.parametrize(("name", "extra", "expected"), [
    ("files", "", "mcp server 'files': command: give either command = [...] (stdio) or url"),
    ("files", 'command = ["x"]\nurl = "http://h/mcp"', "mcp server 'files': url: give either command (stdio) or url"),
    ("files", "command = []", "mcp server 'files': command: list should have at least 1 item"),
    ("files", 'command = "python x.py"', "mcp server 'files': command: input should be a valid list"),
    ("files", 'command = [""]', "mcp server 'files': command.0: string should have at least 1 character"),
    ("files", 'url = "ftp://h/mcp"', "mcp server 'files': url: 'ftp://h/mcp' is not an http:// or https:// URL"),
    ("files", 'url = "http://h/mcp"\nenv = { A = "b" }', "mcp server 'files': env: only for a server run by command"),
    ("files", 'url = "http://h/mcp"\ncwd = "."', "mcp server 'files': cwd: only for a server run by command"),
    ("files", 'command = ["x"]\nheaders = { A = "b" }',
     "mcp server 'files': headers: only for a server reached by url"),
    ("files", 'command = ["x"]\nargs = ["y"]', "mcp server 'files': args: unknown key"),
    ("files", 'command = ["x"]\nneeds_approval = "yes"',
     "mcp server 'files': needs_approval: must be true, false or a list of tool names, got 'yes'"),
    ("files", 'command = ["x"]\ntimeout_seconds = 0', "mcp server 'files': timeout_seconds: input should be greater"),
    ("my files", 'command = ["x"]', "mcp server 'my files': name: 'my files' is not allowed: use letters, digits"),
    ("a__b", 'command = ["x"]', "mcp server 'a__b': name: 'a__b' is not allowed"),
    ("f" * 62, 'command = ["x"]', f"mcp server '{'f' * 62}': name: "),
])
def test_a_bad_mcp_server_is_refused_in_one_line_naming_it_and_the_key(
    tmp_path: Path, name: str, extra: str, expected: str,
) -> None:
    assert refusal(write(tmp_path, SERVER.format(name=name, extra=extra))).startswith(expected)


def test_mcp_servers_need_distinct_names_and_a_name(tmp_path: Path) -> None:
    twice = SERVER.format(name="files", extra='command = ["x"]') + '[[mcp_servers]]\nname = "files"\nurl = "http://h"\n'
    assert refusal(write(tmp_path, twice)) == "mcp server 'files': name: another MCP server has this name already"
    nameless = ONE_MODEL.format(name="fast", extra="") + '[[mcp_servers]]\ncommand = ["x"]\n'
    assert refusal(write(tmp_path, nameless)) == "mcp server #1: name: missing"


def test_an_unset_key_variable_is_refused_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_MODEL.format(name="fast", extra=""))
    assert refusal(path, {"FAST_API_KEY": "   "}) == "model 'fast': api_key_env: FAST_API_KEY is not set"
    assert refusal(tmp_path / "absent.toml", {}) == "cannot be read (No such file or directory)"


def test_a_local_model_file_is_checked_before_the_start(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write(tmp_path, '[[models]]\nname = "l"\nprovider = "local"\npath = "weights/nothing.gguf"\n')
    settings = settings_for(clean_env, STREAMCHAT_MODELS_FILE=str(path))
    with pytest.raises(ModelsFileError) as raised:
        ModelSet.from_settings(settings, {})
    # A relative path is relative to the models file.
    assert str(raised.value) == f"{path}: model 'l': path={tmp_path / 'weights/nothing.gguf'}: no such file"


async def test_without_a_file_the_variables_make_the_one_model(clean_env: pytest.MonkeyPatch) -> None:
    remote = ModelSet.from_settings(settings_for(
        clean_env, OPENAI_API_KEY="sk-variable-secret", OPENAI_MODEL="gpt-4o", STREAMCHAT_TEMPERATURE="0.5"))
    assert (remote.names(), remote.default) == (["gpt-4o"], "gpt-4o")
    assert remote.public() == [{"name": "gpt-4o", "provider": "openai", "model": "gpt-4o", "default": True,
                                "params": {"temperature": 0.5, "max_tokens": None}, "tools": True}]
    assert "sk-variable-secret" not in repr(remote.public())
    await remote.close()
    clean_env.delenv("OPENAI_API_KEY")
    local = ModelSet.from_settings(settings_for(clean_env, STREAMCHAT_MAX_TOKENS="100"))
    assert local.default == DEFAULT_MODEL and local.provider(DEFAULT_MODEL).name == "local"
    assert local.public()[0]["params"] == {"temperature": 0.5, "max_tokens": 100}
    assert local.readiness() == f"loading {DEFAULT_MODEL}"  # not started: what /readyz would show
    await local.close()


@pytest.mark.parametrize(("env", "answer"), [
    ({}, "local"),
    ({"OPENAI_API_KEY": "sk-x"}, "remote"),
    ({"OPENAI_API_KEY": "sk-x", "STREAMCHAT_PROVIDER": "local"}, "local"),
    ({"STREAMCHAT_MODELS_FILE": "remote.toml", "FAST_API_KEY": "k"}, "remote"),
    ({"STREAMCHAT_MODELS_FILE": "mixed.toml", "FAST_API_KEY": "k"}, "local"),
])
def test_serve_installs_the_embedded_runtime_only_for_a_local_model(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    env: dict[str, str], answer: str,
) -> None:
    write(tmp_path, ONE_MODEL.format(name="fast", extra="")).rename(tmp_path / "remote.toml")
    write(tmp_path, THREE_MODELS.format(base_url="http://h/v1", local=next(iter(KNOWN))).replace(
        "SMART_API_KEY", "FAST_API_KEY")).rename(tmp_path / "mixed.toml")
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert main(["--needs-local"]) == 0
    assert capsys.readouterr().out == f"{answer}\n"


def test_serve_with_a_bad_models_file_exits_2_naming_the_file_model_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_MODEL.format(name="fast", extra=""))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMCHAT_", "OPENAI_")) and k not in KEYS}
    env.update(STREAMCHAT_MODELS_FILE=str(path), STREAMCHAT_DATA_DIR=str(tmp_path / "data"),
               STREAMCHAT_STATE_URL=f"sqlite:///{tmp_path / 'state.db'}")
    result = subprocess.run([sys.executable, "-m", "streamchat", "serve", "--port", str(free_port())], env=env,
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"streamchat: cannot start: {path}: model 'fast': api_key_env: FAST_API_KEY is not set\n"
