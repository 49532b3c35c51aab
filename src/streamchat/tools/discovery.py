"""Discovery of tool files, and their start-up check.

Every module of the built-in tools package and of each package `STREAMCHAT_TOOLS` names is imported
(as the steps are: adding a tool is adding a file); a module with a `ToolConfig` named `config` and
a `handler` is a tool. What would only fail when the model calls a tool fails the start instead,
with a `WiringError` naming the module: a duplicate name, a name OpenAI refuses, an input model
without a JSON schema, a handler that is not async.
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import re
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from streamchat.framework.discovery import WiringError
from streamchat.tools.config import BUILTIN, FILE, Tool, ToolConfig
from streamchat.tools.registry import ToolNameTaken, ToolSet
from streamchat.tools.schema import SchemaProblem, parameters_of

BUILTIN_PACKAGE = "streamchat.tools.builtin"
#: OpenAI's rule for a function's name.
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def discover_tools(packages: Sequence[str] = ()) -> ToolSet:
    """The built-in tools and those of `packages`; a WiringError lists every problem found."""
    tools = ToolSet()
    problems: list[str] = []
    for package in [BUILTIN_PACKAGE, *packages]:
        source = BUILTIN if package == BUILTIN_PACKAGE else FILE
        for module in _modules(package, problems):
            tool = _tool(module, source, problems)
            if tool is None:
                continue
            try:
                tools.add(tool)
            except ToolNameTaken as error:
                problems.append(str(error))
    if problems:
        raise WiringError("tools are miswired:\n  - " + "\n  - ".join(problems))
    return tools


def _modules(package: str, problems: list[str]) -> list[ModuleType]:
    try:
        root = importlib.import_module(package)
    except ImportError as error:
        problems.append(f"tools package {package!r} cannot be imported: {error}")
        return []
    modules = []
    for info in sorted(pkgutil.iter_modules(getattr(root, "__path__", []), prefix=f"{package}."),
                       key=lambda info: info.name):
        try:
            modules.append(importlib.import_module(info.name))
        except Exception as error:  # a tool file's own code, run on import: say which file, then stop the start
            problems.append(f"tool module {info.name} cannot be imported: {type(error).__name__}: {error}")
    return modules


def _tool(module: ModuleType, source: str, problems: list[str]) -> Tool | None:
    config = getattr(module, "config", None)
    if not isinstance(config, ToolConfig):
        return None
    where = module.__name__
    handler: Any = getattr(module, "handler", None)
    found: list[str] = []
    if not inspect.iscoroutinefunction(handler):
        found.append(f"tool {config.name!r} ({where}) has a config but no `async def handler(args, ctx)`")
    if not isinstance(config.name, str) or not TOOL_NAME.match(config.name):
        found.append(f"tool name {config.name!r} ({where}) is not 1-64 letters, digits, '_' or '-' "
                     "(the rule of OpenAI's function names)")
    if not isinstance(config.description, str):
        found.append(f"tool {config.name!r} ({where}): description must be text")
    if not (isinstance(config.timeout_seconds, int | float) and math.isfinite(config.timeout_seconds)
            and config.timeout_seconds > 0):
        found.append(f"tool {config.name!r} ({where}): timeout_seconds must be a positive number of seconds, "
                     f"got {config.timeout_seconds!r}")
    try:
        parameters = parameters_of(config.input)
    except SchemaProblem as error:
        found.append(f"tool {config.name!r} ({where}): {error}")
    problems += found
    if found:
        return None
    return Tool(name=config.name, description=config.description, parameters=parameters, handler=handler,
                source=source, origin=where, needs_approval=bool(config.needs_approval),
                timeout_seconds=float(config.timeout_seconds), input=config.input)
