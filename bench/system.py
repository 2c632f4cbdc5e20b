"""CPU accounting on this box: who used how much while a benchmark ran (the worker or ingress
process, PostgreSQL, RabbitMQ), read from /proc as the peers' own bench does."""

from __future__ import annotations

import os
from pathlib import Path

CLK = os.sysconf("SC_CLK_TCK")


def processes() -> dict[int, tuple[str, int, float]]:
    """pid -> (identity, parent pid, CPU seconds so far)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2 :].split()
        table[int(entry)] = (f"{rest[19]}:{name.split('-')[0]}", int(rest[1]), (int(rest[11]) + int(rest[12])) / CLK)
    return table


def busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole box since boot."""
    with open("/proc/stat") as stat:
        values = [int(x) for x in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle - values[7]) / CLK, sum(values) / CLK


def split(
    before: dict[int, tuple[str, int, float]], after: dict[int, tuple[str, int, float]], root: int
) -> dict[str, float]:
    """CPU seconds used between two snapshots: by `root` and its children, PostgreSQL, RabbitMQ."""
    mine = {root}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (_, ppid, _) in after.items():
            if ppid == parent and pid not in mine:
                mine.add(pid)
                frontier.append(pid)
    groups = {"process": 0.0, "postgres": 0.0, "rabbitmq": 0.0, "other": 0.0}
    for pid, (identity, _, seconds) in after.items():
        name = identity.split(":", 1)[1]
        used = seconds - (before[pid][2] if pid in before and before[pid][0] == identity else 0.0)
        if pid in mine:
            groups["process"] += used
        elif name.startswith("postgres"):
            groups["postgres"] += used
        elif name in ("beam.smp", "erl_child_setup", "epmd", "inet_gethost"):
            groups["rabbitmq"] += used
        else:
            groups["other"] += used
    return {k: round(v, 2) for k, v in groups.items()}
