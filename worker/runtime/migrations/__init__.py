"""Versioned SQL migrations.

The runtime's own live here (`NNNN_name.sql`, component `core`); each
integration may carry a `migrations/` folder of its own (component = its
type). All pending migrations apply in one transaction under an advisory
lock, so several processes starting at once apply each migration once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from worker.core.logging import get_logger
from worker.runtime.db import Conn

CORE_DIR = Path(__file__).parent
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x1A7E_0001  # pg_advisory_xact_lock key of the migration runner


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    sql: str


class MigrationError(Exception):
    pass


def discover(component: str, directory: Path) -> list[Migration]:
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_name.sql")
        found.append(Migration(component, int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise MigrationError(f"{directory}: two migrations share a version")
    return found


def all_migrations(integration_dirs: Iterable[tuple[str, Path]]) -> list[Migration]:
    migrations = discover("core", CORE_DIR)
    for component, directory in sorted(integration_dirs):
        migrations.extend(discover(component, directory))
    return migrations


async def apply(conn: Conn, schema: str, migrations: Sequence[Migration]) -> list[Migration]:
    """Apply what is pending; returns what was applied. Safe to run from many processes at once."""
    log = get_logger(component="migrations")
    applied: list[Migration] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET LOCAL search_path TO "{schema}", public')
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   component  text NOT NULL,
                   version    integer NOT NULL,
                   name       text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now(),
                   PRIMARY KEY (component, version))"""
        )
        done = {
            (r["component"], r["version"]) for r in await conn.fetch("SELECT component, version FROM schema_migrations")
        }
        for migration in migrations:
            if (migration.component, migration.version) in done:
                continue
            try:
                await conn.execute(migration.sql)
            except asyncpg.PostgresError as exc:
                raise MigrationError(
                    f"migration {migration.component}/{migration.version:04d}_{migration.name} failed: {exc}"
                ) from exc
            await conn.execute(
                "INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)",
                migration.component,
                migration.version,
                migration.name,
            )
            applied.append(migration)
            log.info(
                "migration applied",
                migration=f"{migration.component}/{migration.version:04d}_{migration.name}",
            )
    return applied
