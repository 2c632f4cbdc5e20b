"""A tiny integration for exercising the runtime where GitHub cannot: staged writes the database
refuses, slow handlers, events."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, SecretStr

from integrations.registry import REGISTRY
from schemas.events import EventData
from worker.sdk import Action, Context, Handler, Integration, Registry, TransientError, payload_key


class ProbeWritten(EventData):
    EVENT: ClassVar[str] = "probe.written"
    key: str
    value: int


class ProbeMeasured(EventData):
    """An event whose number JSON cannot hold (wider than 64 bits)."""

    EVENT: ClassVar[str] = "probe.measured"
    value: int


class ProbeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: SecretStr | None = None


class WriteInput(BaseModel):
    key: str
    value: int
    sleep: float = 0.0
    crash: bool = False  # a bug in the handler: a KeyError nobody raised on purpose
    gated: bool = False  # wait at GATE until the test opens it
    fail_first: bool = False  # a transient failure on its first delivery (not on a repeat)
    cancelled_inside: bool = False  # on its first delivery, awaits something cancelled elsewhere
    needs_provider: bool = False  # fails as transient while PROVIDER.away (retried, then parked)
    note: str | None = None  # the handler logs it (ctx.log), with the message's fields bound
    once: bool = False  # its event is emitted once per key (rendered only at the commit)
    unserialisable: bool = False  # its event carries an integer wider than 64 bits (JSON cannot hold it)
    contended: bool = False  # its commit calls probe_contended(), which the test makes fail as it likes


class Gate:
    """Where gated writes wait, in the test's process: how many wait at once, and the way out."""

    def __init__(self) -> None:
        self.waiting = 0
        self.most = 0
        self.opened: asyncio.Event | None = None

    def reset(self) -> None:
        self.waiting = self.most = 0
        self.opened = asyncio.Event()

    async def pass_through(self) -> None:
        assert self.opened is not None, "GATE.reset() first"
        self.waiting += 1
        self.most = max(self.most, self.waiting)
        try:
            await self.opened.wait()
        finally:
            self.waiting -= 1


GATE = Gate()


class Provider:
    """The provider writes marked `needs_provider` call, in the test's process: while it is away
    they fail as transient, are retried, and are parked once the retries are spent."""

    def __init__(self) -> None:
        self.away = False


PROVIDER = Provider()


class WriteOutput(BaseModel):
    key: str


def _settings_of(values: dict[str, int], name: str) -> int:
    return values[name]


async def write(ctx: Context, request: WriteInput) -> WriteOutput:
    if request.note:
        ctx.log.info(request.note, key=request.key)
    if request.needs_provider and PROVIDER.away:
        raise TransientError("the provider is away")
    if request.sleep:
        await asyncio.sleep(request.sleep)
    if request.gated:
        await GATE.pass_through()
    if request.crash:
        _settings_of({}, "missing-key")
    if request.cancelled_inside and not ctx.is_repeat:
        cancelled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        cancelled.cancel()
        await cancelled
    if request.fail_first and not ctx.is_repeat:
        raise TransientError("the provider is busy (first try)")
    ctx.db.write("INSERT INTO probe_rows (team_id, key, value) VALUES ($1, $2, $3)", request.key, request.value)
    if request.contended:
        ctx.db.write("SELECT probe_contended($1)")
    ctx.emit(ProbeWritten(key=request.key, value=request.value), once=request.key if request.once else None)
    if request.unserialisable:
        ctx.emit(ProbeMeasured(value=2**70), once=f"{request.key}/measured")
    return WriteOutput(key=request.key)


class Versioned(BaseModel):
    key: str
    version: int
    sleep: float = 0.0


WORKER = f"{socket.gethostname()}/{os.getpid()}"


async def apply_version(ctx: Context) -> None:
    """One version of a key, as a provider's update of a thing: it should come after the one
    before it. A version that does not is recorded; one applied twice is refused (primary key)."""
    event = ctx.payload_as(Versioned)
    if event.sleep:
        await asyncio.sleep(event.sleep)
    seen = await ctx.db.lookup("probe_versions", {"key": event.key}, ["version"])
    if seen is not None and seen["version"] >= event.version:
        ctx.db.write(
            "INSERT INTO probe_out_of_order (team_id, key, version, seen) VALUES ($1, $2, $3, $4)",
            event.key,
            event.version,
            seen["version"],
        )
    ctx.db.write(
        "INSERT INTO probe_versions (team_id, key, version) VALUES ($1, $2, $3)"
        " ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version",
        event.key,
        event.version,
    )
    ctx.db.write(
        "INSERT INTO probe_applied (team_id, key, version, worker) VALUES ($1, $2, $3, $4)",
        event.key,
        event.version,
        WORKER,
    )


probe = Integration(
    type="probe",
    name="Probe",
    description="Test integration.",
    config=ProbeConfig,
    handlers=[Handler("command", "versioned", apply_version, key=payload_key("key"))],
    actions=[Action("write", "Write a row.", WriteInput, WriteOutput, write)],
    migrations=Path(__file__).with_name("probe_migrations"),
)

PROBE_REGISTRY = Registry([*[i for i in REGISTRY if i.type != "integration"], probe])
