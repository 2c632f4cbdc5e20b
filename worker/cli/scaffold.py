"""`integration-worker new <type>`: a new integration in one folder, working and tested from the start.

    integrations/<folder>/__init__.py   the declaration (what the registry imports)
    integrations/<folder>/config.py     config (per install, secrets as SecretStr) and settings (IW_<TYPE>_*)
    integrations/<folder>/handle.py     webhook verification at the ingress, and the handlers
    integrations/<folder>/actions.py    the action (a command, an agent tool, a CLI entry) and the install check
    tests/<folder>/test_<folder>.py     its tests, against a fake of the provider on 127.0.0.1
    integrations/registry.py            one more line

The generated provider is a stand-in (HMAC-signed webhooks, a bearer-token REST API): replace
what it calls with the real provider's API, keeping the shape.
"""

from __future__ import annotations

import ast
import keyword
from dataclasses import dataclass
from pathlib import Path

from schemas.envelope import valid_type

_LINE_MAX = 120


class ScaffoldError(Exception):
    pass


@dataclass(frozen=True)
class Names:
    type: str  # google-calendar
    folder: str  # google_calendar
    title: str  # Google Calendar
    camel: str  # GoogleCalendar
    env: str  # IW_GOOGLE_CALENDAR_

    @classmethod
    def of(cls, type_: str, title: str | None = None) -> Names:
        if not valid_type(type_) or type_ == "integration" or "--" in type_ or type_.endswith("-"):
            raise ScaffoldError(f"{type_!r} is not a usable type: lowercase letters, digits and single dashes")
        folder = type_.replace("-", "_")
        if keyword.iskeyword(folder):
            raise ScaffoldError(f"{type_!r} is a Python keyword")
        words = type_.split("-")
        return cls(
            type=type_,
            folder=folder,
            title=title or " ".join(w.capitalize() for w in words),
            camel="".join(w.capitalize() for w in words),
            env=f"IW_{folder.upper()}_",
        )


def scaffold(root: Path, type_: str, *, title: str | None = None, description: str | None = None) -> list[Path]:
    """Write the integration's files and register it; returns the files written or changed."""
    names = Names.of(type_, title)
    for text in (title, description):
        if text is not None and any(c in text for c in '"\\\n'):
            raise ScaffoldError("the name and description cannot hold quotes, backslashes or line breaks")
    package = root / "integrations" / names.folder
    tests = root / "tests" / names.folder
    registry = root / "integrations" / "registry.py"
    if not registry.is_file():
        raise ScaffoldError(f"{registry} not found: run this at the project's root (or pass --root)")
    for path in (package, tests):
        if path.exists():
            raise ScaffoldError(f"{path} already exists")
    values = {
        "TYPE": names.type,
        "FOLDER": names.folder,
        "TITLE": names.title,
        "CAMEL": names.camel,
        "ENV": names.env,
        "DESCRIPTION": description or f"Messages from {names.title} become task intake; agents send messages.",
    }
    new_registry = add_to_registry(registry.read_text(), names.folder)
    files = {
        package / "__init__.py": _template("init.py.tmpl"),
        package / "config.py": _template("config.py.tmpl"),
        package / "handle.py": _template("handle.py.tmpl"),
        package / "actions.py": _template("actions.py.tmpl"),
        tests / "__init__.py": "",
        tests / f"test_{names.folder}.py": _template("test.py.tmpl"),
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_fill(template, values))
    registry.write_text(new_registry)
    return [*files, registry]


TEMPLATES = Path(__file__).with_name("templates")


def _template(name: str) -> str:
    return (TEMPLATES / name).read_text()


def _fill(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace("{{" + key + "}}", value)
    return template


def add_to_registry(source: str, folder: str) -> str:
    """integrations/registry.py with `folder` imported and its `integration` in the Registry list."""
    tree = ast.parse(source)
    imported = next(
        (n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "integrations" and n.level == 0), None
    )
    call = next(
        (
            n.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign)
            and isinstance(n.value, ast.Call)
            and isinstance(n.value.func, ast.Name)
            and n.value.func.id == "Registry"
            and n.value.args
            and isinstance(n.value.args[0], ast.List)
        ),
        None,
    )
    if imported is None or call is None:
        raise ScaffoldError("integrations/registry.py: expected `from integrations import ...` and `Registry([...])`")
    names = [alias.name for alias in imported.names]
    if folder in names:
        raise ScaffoldError(f"integrations/registry.py already imports {folder}")
    listing = call.args[0]
    assert isinstance(listing, ast.List)
    entries = [ast.get_source_segment(source, element) or "" for element in listing.elts]
    lines = source.splitlines()
    # Rewrite the list first (it comes after the import, so the import's line numbers stay valid).
    entries_sorted = entries == sorted(entries)
    entries.append(f"{folder}.integration")
    if entries_sorted:
        entries.sort()
    indent = " " * (listing.col_offset + 4)
    closing = " " * listing.col_offset
    opening = lines[listing.lineno - 1][: listing.col_offset] + "["
    assert listing.end_lineno is not None
    lines[listing.lineno - 1 : listing.end_lineno] = [
        opening,
        *(f"{indent}{entry}," for entry in entries),
        closing + "]" + lines[listing.end_lineno - 1][listing.end_col_offset :],
    ]
    names = sorted([*names, folder])
    statement = f"from integrations import {', '.join(names)}"
    if len(statement) > _LINE_MAX:
        statement = "from integrations import (\n" + "".join(f"    {name},\n" for name in names) + ")"
    assert imported.end_lineno is not None
    lines[imported.lineno - 1 : imported.end_lineno] = statement.split("\n")
    return "\n".join(lines) + "\n"
