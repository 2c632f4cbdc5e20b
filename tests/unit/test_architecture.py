"""The layout's rules that import-linter cannot see: integrations run no SQL on the core
tables, and no module imports inside a function (the way an import cycle hides)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "worker", "integrations")


def python_files(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (ROOT / package).rglob("*.py"))


def core_tables() -> set[str]:
    tables: set[str] = set()
    for migration in (ROOT / "worker" / "runtime" / "migrations").glob("*.sql"):
        tables |= set(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", migration.read_text()))
    return tables


def test_the_core_tables_are_found() -> None:
    assert {"integrations", "integration_user_link", "processed_events", "outbox"} <= core_tables()


def test_integrations_run_no_sql_on_the_core_tables() -> None:
    tables = "|".join(sorted(core_tables()))
    statement = re.compile(rf"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+({tables})\b", re.IGNORECASE)
    offending = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.strip()[:80]}"
        for path in python_files("integrations")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and statement.search(node.value)
    ]
    assert offending == []


def test_no_module_imports_inside_a_function() -> None:
    offending = []
    for path in python_files(*PACKAGES):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                offending += [
                    f"{path.relative_to(ROOT)}:{inner.lineno} in {node.name}"
                    for inner in ast.walk(node)
                    if isinstance(inner, ast.Import | ast.ImportFrom)
                ]
    assert offending == []
