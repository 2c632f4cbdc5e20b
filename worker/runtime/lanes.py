"""Lanes: a team's burst of webhooks never makes the others' wait behind it.

A shard queue is first in, first out: a webhook that arrives behind 50,000 of one team's waits
for all of them, whatever the worker does. So the ingress sorts webhooks before they queue: each
team (the tenant of the ordering key) has a token bucket of IW_TENANT_BURST webhooks refilled at
IW_TENANT_RATE a second. A team within it publishes on the normal lane (<p>.incoming); a team over
it, on the bulk lane: the twin shards (<p>.<type>.bulk.<i>) that the worker of shard i consumes
beside it. The worker takes every team in turn (worker/runtime/admission.py), so
a quiet team's webhooks run at once and the bursting team gets every slot left over. A team whose
bucket fills up again (it sent less than its rate for IW_TENANT_BURST / IW_TENANT_RATE seconds)
is back on the normal lane.

A switch keeps each key's order. The team's webhooks carry its lane's epoch (`iw-lane:
<source>:<epoch>`, the ingress process and a count of its switches for the team; even epochs are
the normal lane, odd the bulk lane, 0 carries no header). Before its first webhook on the new
lane, the ingress publishes a fence (`iw-fence: <source>:<epoch>`) into every shard of the lane it
leaves, behind the team's webhooks there, confirmed. A worker runs a webhook of epoch e only once
it has read the fences of every earlier epoch on that shard (worker/runtime/fences.py): all that
came before the switch on the other lane has been read, and each key's chain puts it first.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.envelope import KEY_HEADER, tenant_of_key
from worker.core.logging import get_logger
from worker.core.redact import redact
from worker.core.settings import Settings
from worker.runtime import metrics
from worker.runtime.broker import Broker, Outgoing
from worker.runtime.topology import Topology

LANE_HEADER = "iw-lane"
FENCE_HEADER = "iw-fence"
KEPT = 100_000  # teams remembered at most; those on the normal lane with a full bucket are forgotten first


@dataclass
class _Team:
    tokens: float
    refilled: float
    epoch: int = 0  # odd: the bulk lane
    switching: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def bulk(self) -> bool:
        return self.epoch % 2 == 1


def parse(value: object) -> tuple[str, int] | None:
    """`<source>:<epoch>` of a lane or fence header."""
    if not isinstance(value, str):
        return None
    source, _, epoch = value.rpartition(":")
    return (source, int(epoch)) if source and epoch.isdigit() else None


class Lanes:
    def __init__(self, settings: Settings, topology: Topology, broker: Broker) -> None:
        self.rate = settings.tenant_rate
        self.burst = settings.tenant_burst
        self.topology = topology
        self.broker = broker
        self.source = uuid.uuid4().hex[:12]
        self._teams: dict[tuple[str, str], _Team] = {}
        self.log = get_logger(component="lanes", source=self.source)

    async def route(self, type_: str, routing_key: str, body: bytes, *, message_id: str, key: str) -> Outgoing:
        """The webhook as it is to be published: on its team's lane, with its epoch."""
        headers: dict[str, str] = {KEY_HEADER: key}
        if type_ not in self.topology.laned:
            return Outgoing(self.topology.shard_exchange(type_), routing_key, body, message_id, headers=headers)
        tenant = tenant_of_key(key)
        team = self._team(type_, tenant)
        want_bulk = (not team.bulk and team.tokens < 1) or (team.bulk and team.tokens < self.burst - 1)
        team.tokens = max(0.0, team.tokens - 1)
        if want_bulk != team.bulk:
            await self._switch(type_, tenant, team)
        if team.epoch:
            headers[LANE_HEADER] = f"{self.source}:{team.epoch}"
        return Outgoing(
            self.topology.shard_exchange(type_, bulk=team.bulk), routing_key, body, message_id, headers=headers
        )

    def _team(self, type_: str, tenant: str) -> _Team:
        now = time.monotonic()
        team = self._teams.get((type_, tenant))
        if team is None:
            if len(self._teams) >= KEPT:
                self._forget()
            team = self._teams[(type_, tenant)] = _Team(self.burst, now)
        else:
            team.tokens = min(self.burst, team.tokens + (now - team.refilled) * self.rate)
            team.refilled = now
        return team

    def _forget(self) -> None:
        quiet = [k for k, t in self._teams.items() if t.epoch == 0 and t.tokens >= self.burst - 1]
        for k in quiet[: max(1, len(quiet) // 2)]:
            del self._teams[k]

    async def _switch(self, type_: str, tenant: str, team: _Team) -> None:
        """Fence the lane the team leaves (every shard, confirmed), then move it to the other.
        The broker away: the team stays where it is (its webhooks still go out, in order)."""
        epoch = team.epoch
        async with team.switching:
            if team.epoch != epoch:
                return  # another request of the team switched it meanwhile
            bulk = team.bulk
            fence = {FENCE_HEADER: f"{self.source}:{epoch}", KEY_HEADER: tenant}
            fences = [
                Outgoing("", queue, b"", f"fence:{self.source}:{tenant}:{epoch}:{i}", headers=fence)
                for i, queue in enumerate(self.topology.queues(type_, bulk=bulk))
            ]
            outcomes = await self.broker.publish_many(fences)
            failed = [o for o in outcomes if o is not None]
            if failed:
                self.log.warning(
                    "lane switch put off: a fence was not confirmed", type=type_, error=redact(str(failed[0]))
                )
                return
            team.epoch = epoch + 1
        metrics.child(metrics.LANE_SWITCHES, type_, "bulk" if team.bulk else "normal").inc()
        self.log.info("team switched lanes", type=type_, tenant=tenant, lane="bulk" if team.bulk else "normal")

    def bulk_teams(self) -> Mapping[str, int]:
        """Per type, how many teams are on the bulk lane now."""
        found: dict[str, int] = {}
        for (type_, _), team in self._teams.items():
            if team.bulk:
                found[type_] = found.get(type_, 0) + 1
        return found
