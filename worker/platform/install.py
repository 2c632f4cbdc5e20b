"""Install, update and uninstall: the one path behind the CLI, the admin API and the broker command.

install: validate the config with the integration's model (errors per field), run its
`validate` hook against the live service, `pre_install`, write the row (secrets encrypted;
one row per team and type, or per provider account), `post_install`, publish
`integration.installed`. A first install whose post_install fails is rolled back.
update: the stored config with the given fields replaced (secrets the caller cannot read are
kept), then the same steps, publishing `integration.updated`.
uninstall: `pre_uninstall` (stop listeners and watches, revoke), delete the row (user links and
log rows go with it, by the database's cascades), publish `integration.uninstalled`. Services
(listeners) stop on their own: the runner notices the row is gone.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from pydantic import BaseModel, SecretStr, ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from schemas.envelope import Envelope
from schemas.events import IntegrationInstalled, IntegrationUninstalled, IntegrationUpdated
from schemas.rows import IntegrationRow
from worker.core.logging import get_logger
from worker.core.redact import redact
from worker.core.text import NUL, REFUSAL, nul_field
from worker.runtime import store
from worker.runtime.runtime import Runtime
from worker.runtime.unit_of_work import Unit, apply, run_writes
from worker.sdk.context import Context
from worker.sdk.declare import Hook, Integration
from worker.sdk.errors import InstallRejected, IntegrationError, TransientError, field_errors
from worker.sdk.records import IntegrationRecord

T = TypeVar("T")


class InstallError(Exception):
    """Why an install, update or uninstall was refused: an HTTP status, a message, field errors."""

    def __init__(
        self, status: int, message: str, fields: dict[str, list[str]] | None = None, *, again: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or {}
        self.again = again  # the same request later may succeed (a lock held, the database away)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message}
        if self.fields:
            body["fields"] = self.fields
        return body


@dataclass(frozen=True)
class InstallRequest:
    type: str
    team_id: str
    config: dict[str, Any] = field(default_factory=dict)
    external_team_id: str | None = None
    user_id: str | None = None
    source: str = "cli"


SET = "[set]"  # what a read shows for a secret that is set; sent back in an update, it keeps the secret


def public_config(config: BaseModel) -> dict[str, Any]:
    """A config fit for any read: secret fields are replaced by whether they are set."""
    return _map_secrets(config, lambda secret: SET if secret.get_secret_value() else None)


def revealed_config(config: BaseModel) -> dict[str, Any]:
    """A stored config as plain values, secrets included: the base an update applies changes to."""
    return _map_secrets(config, lambda secret: secret.get_secret_value())


def _map_secrets(config: BaseModel, show: Callable[[SecretStr], Any]) -> dict[str, Any]:
    """The config as plain values (aliases as keys), each secret as `show` makes it."""

    def walk(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return show(value)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    result: dict[str, Any] = walk(config.model_dump(mode="python", by_alias=True))
    return result


def _integration(runtime: Runtime, type_: str) -> Integration:
    integration = runtime.registry.get(type_)
    if integration is None:
        raise InstallError(404, f"unknown integration type {type_!r}")
    return integration


async def owned_row(runtime: Runtime, integration_id: str, team_id: str | None) -> IntegrationRow:
    """The team's integration row; 404 when there is none (or it is another team's)."""
    rows = await store.integrations_for(runtime.pool, [integration_id], [], [])
    if not rows or rows[0].team_id != team_id:
        raise InstallError(404, "no such integration for this team")
    return rows[0]


def readable(runtime: Runtime, row: IntegrationRow) -> IntegrationRecord:
    """The row with its config; 409 when the config cannot be read any more (its key was dropped
    from IW_SECRET_KEYS, its model changed): installing it again with a whole config, or
    uninstalling it with force, still works."""
    try:
        return runtime.record(row)
    except IntegrationError as exc:
        raise InstallError(
            409, f"{redact(str(exc))}; install it again with a whole config, or uninstall it with force"
        ) from None


def _context(
    runtime: Runtime,
    type_: str,
    team_id: str,
    record: IntegrationRecord | None,
    *,
    config: BaseModel,
    action: str,
) -> Context:
    envelope = Envelope(id=f"{action}:{uuid.uuid4()}", type=type_, kind="command", name=action, team_id=team_id)
    return runtime.context(envelope, record, config=config)


async def _hook(hook: Hook | None, ctx: Context, what: str) -> None:
    if hook is None:
        return
    try:
        await hook(ctx)
    except InstallRejected as exc:
        raise InstallError(422, f"{what}: {redact(str(exc))}") from None
    except (IntegrationError, OSError) as exc:
        again = isinstance(exc, TransientError | OSError)  # the provider away: the same request later may work
        raise InstallError(502, f"{what}: {redact(str(exc)) or type(exc).__name__}", again=again) from None


async def install(
    runtime: Runtime, request: InstallRequest, *, updating: str | None = None
) -> tuple[IntegrationRecord, bool]:
    """Install or reconfigure; returns the record and whether it is a new install.
    `updating`: the id of the integration an update reconfigures (it must be the one the config names)."""
    integration = _integration(runtime, request.type)
    for name, value in (("team_id", request.team_id), ("external_team_id", request.external_team_id)):
        if value is not None and NUL in value:
            raise InstallError(400, "invalid request", {name: [REFUSAL]})
    if (where := nul_field(request.config)) is not None:
        raise InstallError(400, "invalid config", {where: [REFUSAL]})
    try:
        config = integration.config.model_validate(request.config)
    except ValidationError as exc:
        raise InstallError(400, "invalid config", field_errors(exc)) from None
    external = request.external_team_id
    if external is None and integration.external_team_id is not None:
        external = integration.external_team_id(config)
    existing = await _existing(runtime, request.type, request.team_id, external)
    if existing is not None and existing.team_id != request.team_id:
        raise InstallError(409, f"this {integration.name} account is already installed by another team")
    if updating is not None and (existing is None or existing.id != updating):
        raise InstallError(409, f"the config names another {integration.name} account: install that one instead")
    previous = None
    if existing is not None:
        try:
            previous = readable(runtime, existing)
        except InstallError as exc:  # installing again is how an unreadable config is replaced
            get_logger(component="install").warning("replacing an unreadable config", reason=exc.message)
    ctx = _context(runtime, request.type, request.team_id, previous, config=config, action="install")
    await _hook(integration.lifecycle.validate, ctx, "the service refused the config")
    await _hook(integration.lifecycle.pre_install, ctx, "pre-install failed")
    sealed = runtime.secrets.seal(config)

    async def write_row() -> Any:
        async with runtime.pool.acquire() as conn, conn.transaction():
            if existing is None:
                try:
                    row = await conn.fetchrow(
                        f"""INSERT INTO integrations (team_id, external_team_id, name, type, config)
                            VALUES ($1, $2, $3, $4, $5) RETURNING {store.INTEGRATION_COLUMNS}""",  # noqa: S608 - a constant column list
                        request.team_id,
                        external,
                        integration.name,
                        request.type,
                        sealed,
                    )
                except asyncpg.UniqueViolationError:
                    raise InstallError(409, "installed concurrently; try again", again=True) from None
            else:
                row = await conn.fetchrow(
                    f"""UPDATE integrations SET config = $2, status = 'active', updated_at = now()
                        WHERE id = $1 RETURNING {store.INTEGRATION_COLUMNS}""",  # noqa: S608 - a constant column list
                    existing.id,
                    sealed,
                )
            assert row is not None
            await run_writes(conn, [_staged(ctx).writes])
            return row

    row = await _retrying(write_row)
    record = runtime.record(store.integration_row(row))
    is_new = existing is None
    post = _context(runtime, request.type, request.team_id, record, config=config, action="install")
    try:
        await _hook(integration.lifecycle.post_install, post, "post-install failed")
    except InstallError:
        if is_new:
            await _retrying(lambda: runtime.pool.execute("DELETE FROM integrations WHERE id = $1", record.id))
        raise
    if updating is not None:
        post.emit(IntegrationUpdated(integration_id=record.id, type=record.type, team_id=record.team_id))
    else:
        post.emit(
            IntegrationInstalled(
                integration_id=record.id,
                type=record.type,
                name=integration.name,
                team_id=record.team_id,
                external_team_id=record.row.external_team_id,
                user_id=request.user_id,
                is_new_install=is_new,
                source=request.source,
            )
        )
    post.record(
        "info",
        "installed" if is_new else "reconfigured",
        f"{integration.name} {'installed' if is_new else 'reconfigured'} ({request.source})",
    )
    await _retrying(lambda: runtime.commit(_staged(post)))
    return record, is_new


async def update(
    runtime: Runtime,
    integration_id: str,
    team_id: str,
    changes: dict[str, Any],
    *,
    user_id: str | None = None,
    source: str = "cli",
) -> IntegrationRecord:
    """Reconfigure: the stored config with these top-level fields replaced (a secret sent back as
    "[set]", as reads show it, is kept), validated and applied like an install."""
    record = readable(runtime, await owned_row(runtime, integration_id, team_id))
    integration = _integration(runtime, record.type)
    config = revealed_config(record.config)
    config.update({key: value for key, value in changes.items() if value != SET})
    external = None if integration.external_team_id is not None else record.row.external_team_id
    updated, _ = await install(
        runtime,
        InstallRequest(record.type, team_id, config, external_team_id=external, user_id=user_id, source=source),
        updating=record.id,
    )
    return updated


async def uninstall(
    runtime: Runtime, integration_id: str, team_id: str, *, source: str = "cli", force: bool = False
) -> None:
    """`force`: uninstall even when pre_uninstall fails (the service is gone, the token revoked) or
    the config cannot be read (pre_uninstall cannot run); what was not stopped or revoked is logged."""
    log = get_logger(component="install")
    row = await owned_row(runtime, integration_id, team_id)
    integration = _integration(runtime, row.type)
    try:
        record = readable(runtime, row)
        hook = integration.lifecycle.pre_uninstall
    except InstallError as exc:
        if not force:
            raise
        log.warning("config unreadable; uninstalled without pre-uninstall (force)", id=row.id, reason=exc.message)
        record = IntegrationRecord(row, integration.config.model_construct())  # no hook reads it
        hook = None
    ctx = _context(runtime, row.type, team_id, record, config=record.config, action="uninstall")
    try:
        await _hook(hook, ctx, "pre-uninstall failed")
    except InstallError as exc:
        if not force:
            raise
        _staged(ctx).writes.clear()
        log.warning("pre-uninstall failed; uninstalling anyway (force)", integration_id=row.id, reason=exc.message)
    ctx.emit(IntegrationUninstalled(integration_id=row.id, type=row.type, team_id=team_id))
    staged = _staged(ctx)
    staged.logs.clear()  # the rows go with the integration

    async def delete_row() -> list[Any]:
        async with runtime.pool.acquire() as conn, conn.transaction():
            await run_writes(conn, [staged.writes])
            await conn.execute("DELETE FROM integrations WHERE id = $1", row.id)
            staged.writes.clear()
            return (await apply(conn, [Unit(staged)])).outbox

    await runtime.outbox.publish(await _retrying(delete_row))
    log.info("uninstalled", integration_id=row.id, type=row.type, source=source)


_CONFLICTS = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


async def _retrying(work: Callable[[], Awaitable[T]], attempts: int = 5) -> T:
    """Run a transaction again when PostgreSQL aborted it to break a deadlock with in-flight work
    (an uninstall deleting rows a worker is writing rows beside, say): 50 ms doubling, 5 tries."""
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_CONFLICTS),
            wait=wait_exponential(multiplier=0.05),
            stop=stop_after_attempt(attempts),
            reraise=True,
        ):
            with attempt:
                return await work()
    except _CONFLICTS:
        raise InstallError(
            503, "the database kept aborting the change (lock conflicts); try again", again=True
        ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _staged(ctx: Context) -> Any:
    assert ctx.staged is not None
    return ctx.staged


async def _existing(runtime: Runtime, type_: str, team_id: str, external: str | None) -> Any:
    if external is not None:
        rows = await store.integrations_for(runtime.pool, [], [(type_, external)], [])
    else:
        rows = [
            r
            for r in await store.integrations_for(runtime.pool, [], [], [(type_, team_id)])
            if r.external_team_id is None
        ]
    return rows[0] if rows else None
