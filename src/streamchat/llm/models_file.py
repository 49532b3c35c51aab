"""The models file (STREAMCHAT_MODELS_FILE): the models clients may choose, read once at start-up.

A TOML file of `[[models]]` tables (and `[[mcp_servers]]`, the MCP servers whose tools they may call,
and `[[client_tools]]`, tools a client runs), validated in full before the server listens: whatever
is wrong with it (bad TOML, an unknown key, a key variable that is unset, two defaults, a repeated
name) stops the start with one line naming the file, the model and the key, so a typo never turns into
replies that fail later. Keys are never written in the file: `api_key_env` names the variable that
holds one, read from the environment or `.env` (the environment wins, as for every setting).

This module only reads and checks the file; model_set.py makes the providers. Whether a local
model's file exists is checked there too, since the embedded runtime may not be installed yet when
`./scripts/serve` asks `python -m streamchat.llm.models_file --needs-local` whether to install it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from streamchat.llm.local_models import KNOWN
from streamchat.tools.client_tools import ClientTool
from streamchat.tools.mcp.config import McpServerEntry

#: A name clients send and may see in URLs and logs: no blanks, slashes or quotes.
ModelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
#: What the OpenAI SDK is given for a server that takes no key (it insists on one).
NO_KEY = "no-key"


class ModelsFileError(ValueError):
    """The models file cannot be used; the message is one line naming the file, the model and the key."""


class ModelParams(BaseModel):
    """A model's defaults for its replies; a conversation's own settings override them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)
    #: None: no limit sent to an OpenAI-compatible server; the embedded runtime's own cap for a local model.
    max_tokens: int | None = Field(None, ge=1)


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ModelName
    default: StrictBool = False
    params: ModelParams = ModelParams()


class OpenAIEntry(_Entry):
    """A model of any OpenAI-compatible server (OpenAI itself without `base_url`)."""

    provider: Literal["openai"]
    model: str = Field(min_length=1)
    base_url: str | None = None
    #: The variable holding the key; may be left out for a server of your own that takes none.
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    #: Whether the model can call tools: false for a server whose model refuses OpenAI's `tools`.
    tools: StrictBool = True

    @model_validator(mode="after")
    def _key_for_openai_itself(self) -> OpenAIEntry:
        if self.api_key_env is None and self.base_url is None:
            raise ValueError("api_key_env: needed for OpenAI's own API (a server of your own needs base_url)")
        return self


class LocalEntry(_Entry):
    """An embedded model: a built-in one by name (`model`), or any GGUF file (`path`)."""

    provider: Literal["local"]
    model: str | None = None
    path: Path | None = None
    #: The embedded runtime refuses tools (local_provider.py): false, and only false, is allowed.
    tools: StrictBool = False

    @model_validator(mode="after")
    def _one_source(self) -> LocalEntry:
        if self.tools:
            raise ValueError("tools: an embedded model cannot call tools (leave it out, or false)")
        if self.model is not None and self.path is not None:
            raise ValueError("path: give a built-in model's name (model) or a GGUF file (path), not both")
        if self.model is not None and self.model not in KNOWN:
            raise ValueError(f"model: no built-in model {self.model!r}; choose {' or '.join(KNOWN)}, "
                             "or give a GGUF file as path")
        return self

    @property
    def source(self) -> str:
        """What local_models.resolve takes: the built-in name or the file (the default model if neither)."""
        return str(self.path) if self.path is not None else self.model or next(iter(KNOWN))


ModelEntry = Annotated[OpenAIEntry | LocalEntry, Field(discriminator="provider")]


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[ModelEntry] = Field(min_length=1)
    mcp_servers: list[McpServerEntry] = []
    client_tools: list[ClientTool] = []


@dataclass(frozen=True)
class ConfiguredModel:
    """One entry of the file with its key, read from the variable the entry names."""

    entry: OpenAIEntry | LocalEntry
    api_key: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.entry.name


@dataclass(frozen=True)
class ModelsFile:
    path: Path
    models: tuple[ConfiguredModel, ...]
    #: Each with its `cwd` made absolute (the models file's folder when not given) for a stdio server.
    mcp_servers: tuple[McpServerEntry, ...] = ()
    #: Tools a client answers, offered to conversations whose `tools` setting names them.
    client_tools: tuple[ClientTool, ...] = ()

    @property
    def default(self) -> str:
        """The model of the entry marked `default`, or the only one (it needs no mark)."""
        return next(model.name for model in self.models if model.entry.default or len(self.models) == 1)

    def needs_local_runtime(self) -> bool:
        return any(model.entry.provider == "local" for model in self.models)


def load(path: Path, environ: Mapping[str, str] | None = None) -> ModelsFile:
    """The file at `path`, checked; `environ` (default: the environment over `.env`) holds the keys."""
    environ = key_variables() if environ is None else environ
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ModelsFileError(f"{path}: cannot be read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise ModelsFileError(f"{path}: is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ModelsFileError(f"{path}: not valid TOML: {error}") from None
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as error:
        raise ModelsFileError(_complaint(path, raw, error.errors())) from None
    entries = [_anchored(entry, path.parent) for entry in parsed.models]
    _check_names_and_default(path, entries)
    servers = tuple(_anchored_server(server, path.parent) for server in parsed.mcp_servers)
    _check_server_names(path, servers)
    _check_client_tool_names(path, parsed.client_tools)
    return ModelsFile(path, tuple(ConfiguredModel(entry, _key(path, entry, environ)) for entry in entries), servers,
                      tuple(parsed.client_tools))


def key_variables(env_file: Path = Path(".env")) -> dict[str, str]:
    """The environment over `.env`, as settings.py reads them (a blank value is unset)."""
    found = {name: value for name, value in dotenv_values(env_file).items() if value is not None}
    found.update(os.environ)
    return {name: value for name, value in found.items() if value.strip()}


def _anchored(entry: OpenAIEntry | LocalEntry, folder: Path) -> OpenAIEntry | LocalEntry:
    """A relative GGUF path is relative to the models file, not to where the server was started."""
    if isinstance(entry, LocalEntry) and entry.path is not None:
        path = entry.path.expanduser()
        return entry.model_copy(update={"path": path if path.is_absolute() else folder / path})
    return entry


def _anchored_server(server: McpServerEntry, folder: Path) -> McpServerEntry:
    """A stdio server runs in the models file's folder, or in its `cwd` taken relative to it."""
    if server.command is None:
        return server
    cwd = folder if server.cwd is None else server.cwd.expanduser()
    return server.model_copy(update={"cwd": cwd if cwd.is_absolute() else folder / cwd})


def _check_server_names(path: Path, servers: Sequence[McpServerEntry]) -> None:
    seen: set[str] = set()
    for server in servers:
        if server.name in seen:
            raise ModelsFileError(f"{path}: mcp server {server.name!r}: name: another MCP server has this name already")
        seen.add(server.name)


def _check_client_tool_names(path: Path, tools: Sequence[ClientTool]) -> None:
    seen: set[str] = set()
    for tool in tools:
        if tool.name in seen:
            raise ModelsFileError(f"{path}: client tool {tool.name!r}: name: another client tool has this name already")
        seen.add(tool.name)


def _check_names_and_default(path: Path, entries: Sequence[OpenAIEntry | LocalEntry]) -> None:
    seen: set[str] = set()
    defaults: list[str] = []
    for entry in entries:
        if entry.name in seen:
            raise ModelsFileError(f"{path}: model {entry.name!r}: name: another model has this name already")
        seen.add(entry.name)
        if entry.default:
            if defaults:
                raise ModelsFileError(f"{path}: model {entry.name!r}: default: {defaults[0]!r} is the default "
                                      "already; mark exactly one model")
            defaults.append(entry.name)
    if not defaults and len(entries) > 1:
        raise ModelsFileError(f"{path}: default: none of the {len(entries)} models has `default = true`; "
                              "mark exactly one")


def _key(path: Path, entry: OpenAIEntry | LocalEntry, environ: Mapping[str, str]) -> str | None:
    if not isinstance(entry, OpenAIEntry):
        return None
    if entry.api_key_env is None:
        return NO_KEY
    key = environ.get(entry.api_key_env, "").strip()
    if not key:
        raise ModelsFileError(f"{path}: model {entry.name!r}: api_key_env: {entry.api_key_env} is not set")
    return key


def _complaint(path: Path, raw: Mapping[str, Any], errors: Sequence[ErrorDetails]) -> str:
    """The first problem pydantic found, as `file: model 'name': key: what is wrong` (or `mcp server 'name'`)."""
    detail = errors[0]
    loc = list(detail["loc"])
    where = [str(path)]
    if len(loc) >= 2 and loc[0] in _ENTRY_KINDS and isinstance(loc[1], int):
        where.append(_entry_label(raw, str(loc[0]), loc[1]))
        loc = loc[3:] if loc[2:3] in (["openai"], ["local"]) else loc[2:]  # past the union's tag
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if detail["type"] == "value_error" and not loc:  # the entry's own check names its key itself
        return ": ".join([*where, _reason(detail)]) + more
    if detail["type"].startswith("union_tag"):  # reported on the entry; it is about its provider
        loc = ["provider"]
    key = ".".join(str(part) for part in loc) or "models"
    return ": ".join([*where, key, _reason(detail)]) + more


#: The tables of entries, by how a complaint names one of them.
_ENTRY_KINDS = {"models": "model", "mcp_servers": "mcp server", "client_tools": "client tool"}


def _entry_label(raw: Mapping[str, Any], table: str, index: int) -> str:
    entries = raw.get(table)
    entry = entries[index] if isinstance(entries, list) and index < len(entries) else None
    name = entry.get("name") if isinstance(entry, dict) else None
    kind = _ENTRY_KINDS[table]
    return f"{kind} {name!r}" if isinstance(name, str) else f"{kind} #{index + 1}"


_BOUNDS = {"greater_than_equal": ("at least", "ge"), "less_than_equal": ("at most", "le")}


def _reason(detail: ErrorDetails) -> str:
    kind, ctx = detail["type"], detail.get("ctx", {})
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing" if detail["loc"] != ("models",) else "missing: the file has no [[models]] table"
    if kind == "union_tag_invalid":
        return f"must be \"openai\" or \"local\", got {ctx['tag']!r}"
    if kind == "union_tag_not_found":
        return "missing: \"openai\" or \"local\""
    if kind in _BOUNDS:
        words, bound = _BOUNDS[kind]
        limit = ctx[bound]
        return f"must be {words} {limit:g}, got {detail['input']!r}"
    if kind == "string_pattern_mismatch":
        return f"{detail['input']!r} is not allowed: use letters, digits and . _ : - (at most 64)"
    if kind == "value_error":
        return str(ctx["error"])
    return f"{detail['msg'][0].lower()}{detail['msg'][1:]}, got {detail['input']!r}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamchat.llm.models_file",
                                     description="Check the configured models (STREAMCHAT_MODELS_FILE).")
    parser.add_argument("--needs-local", action="store_true",
                        help="print `local` when a configured model runs embedded (the llama.cpp runtime "
                             "must be installed), else `remote`")
    args = parser.parse_args(argv)
    from streamchat.settings import Settings

    try:
        settings = Settings.from_env()
        needs_local = (load(settings.models_file).needs_local_runtime() if settings.models_file is not None
                       else settings.provider == "local")
    except ValueError as error:
        print(f"streamchat: cannot start: {error}", file=sys.stderr)
        return 2
    if args.needs_local:
        print("local" if needs_local else "remote")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
