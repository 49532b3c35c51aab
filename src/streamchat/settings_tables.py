"""README.md's configuration tables, written from the declarations in settings.py.

`python -m streamchat.settings_tables --readme README.md` rewrites each table between its markers;
`--markdown` prints them. A test checks that README.md holds what this would write.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Literal, get_args, get_origin

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from streamchat.settings import ServiceSettings, Settings, env_name, number

TABLES: dict[str, list[str]] = {
    "configuration": list(ServiceSettings.model_fields),
    "access": [name for name in Settings.model_fields if name not in ServiceSettings.model_fields],
}
HEADER = "| variable | default | allowed | meaning |\n|---|---|---|---|"


def shown_default(field: FieldInfo) -> str:
    """The default as README shows it: the field's own, or its `shown` text when computed or special."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "shown" in extra:
        return str(extra["shown"])
    if field.default is PydanticUndefined:
        raise ValueError("a computed default needs a `shown` text")
    if field.default is None:
        return "unset"
    if isinstance(field.default, bool):
        return "`on`" if field.default else "`off`"
    return f"`{number(field.default)}`"


def allowed(field: FieldInfo) -> str:
    """What a value may be: a number's bounds, a flag's words, a choice's words; else nothing to say."""
    if field.annotation is bool:
        return "`on` / `off`"
    if get_origin(field.annotation) is Literal:
        return " / ".join(f"`{choice}`" for choice in get_args(field.annotation))
    bounds = {kind: _readable(getattr(rule, kind)) for kind in _SIGNS
              for rule in field.metadata if hasattr(rule, kind)}
    if "ge" in bounds and "le" in bounds:
        return f"{bounds['ge']}\N{EN DASH}{bounds['le']}"
    return ", ".join(f"{_SIGNS[kind]} {value}" for kind, value in bounds.items())


_SIGNS = {"gt": ">", "ge": "\N{GREATER-THAN OR EQUAL TO}", "lt": "<", "le": "\N{LESS-THAN OR EQUAL TO}"}


def _readable(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) and value >= 100_000 else number(value)


def readme_rows(table: str) -> list[tuple[str, str, str, str]]:
    """(variable, default, allowed, meaning) of each setting of one README table, in declaration order."""
    rows = []
    for name in TABLES[table]:
        field = Settings.model_fields[name]
        rows.append((f"`{env_name(name, field)}`", shown_default(field), allowed(field), field.description or ""))
    return rows


def markdown_table(table: str) -> str:
    lines = ["| " + " | ".join(cell.replace("|", r"\|") for cell in row) + " |" for row in readme_rows(table)]
    return "\n".join([HEADER, *lines])


def _markers(table: str) -> tuple[str, str]:
    return (f"<!-- settings:{table} (python -m streamchat.settings_tables --readme README.md) -->",
            f"<!-- /settings:{table} -->")


def with_tables(readme: str) -> str:
    """The README text with each table between its markers regenerated from the declarations."""
    for table in TABLES:
        start, end = _markers(table)
        found = re.search(f"{re.escape(start)}\n.*?{re.escape(end)}", readme, re.DOTALL)
        if found is None:
            raise ValueError(f"no {start} ... {end} block in the README")
        readme = f"{readme[:found.start()]}{start}\n{markdown_table(table)}\n{end}{readme[found.end():]}"
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamchat.settings_tables",
                                     description="Print or rewrite README.md's configuration tables.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--markdown", action="store_true", help="print the tables, each between its markers")
    action.add_argument("--readme", type=Path, metavar="PATH", help="rewrite the tables in this file in place")
    args = parser.parse_args(argv)
    if args.readme is not None:
        args.readme.write_text(with_tables(args.readme.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    for table in TABLES:
        start, end = _markers(table)
        sys.stdout.write(f"{start}\n{markdown_table(table)}\n{end}\n\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
