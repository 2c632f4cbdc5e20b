"""`integration-worker logs` and `integration-worker links list|set|unlink`: what a team's users see
and change of an integration, on the same path as the admin routes and the `integration` commands
(worker/platform/user_links.py). Answers are JSON; a refusal is printed as `{"error", "fields"?}`
and exits 1, unreadable options exit 2."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from worker import platform
from worker.cli.operate import json_object, print_json, run_async
from worker.core.settings import Settings
from worker.platform.install import InstallError
from worker.platform.user_links import LinkQuery, LogQuery, change_link_config, list_links, read_logs, unlink
from worker.runtime.runtime import Runtime
from worker.sdk.errors import field_errors
from worker.sdk.registry import Registry

Q = TypeVar("Q", bound=BaseModel)


def _valid(model: type[Q], values: dict[str, Any]) -> Q | None:
    try:
        return model.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        print_json({"error": "invalid request", "fields": field_errors(exc)})
        return None


def _run(
    settings: Settings, registry: Registry, work: Callable[[Runtime], Awaitable[BaseModel]], *, broker: bool
) -> int:
    async def go() -> int:
        runtime = platform.attach(Runtime(settings, registry))
        await runtime.start(broker=broker)
        try:
            answer = await work(runtime)
        except InstallError as exc:
            print_json(exc.as_dict())
            return 1
        finally:
            await runtime.stop()
        print_json(answer.model_dump(mode="json"))
        return 0

    return run_async(go())


def logs(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:
    levels = [part for value in args.level or [] for part in value.split(",") if part] or None
    query = _valid(
        LogQuery,
        {
            "level": levels,
            "since": args.since,
            "until": args.until,
            "key": args.key,
            "limit": args.limit,
            "cursor": args.cursor,
        },
    )
    if query is None:
        return 2
    return _run(settings, registry, lambda rt: read_logs(rt, args.integration_id, args.team, query), broker=False)


def links(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:
    if args.links_command == "list":
        query = _valid(LinkQuery, {"user_id": args.user, "limit": args.limit, "offset": args.offset})
        if query is None:
            return 2
        return _run(settings, registry, lambda rt: list_links(rt, args.integration_id, args.team, query), broker=False)
    if args.links_command == "set":
        changes = json_object(args.config, "--config")
        if changes is None:
            return 2
        return _run(
            settings,
            registry,
            lambda rt: change_link_config(rt, args.integration_id, args.team, args.link_id, changes, source="cli"),
            broker=True,
        )
    return _run(
        settings,
        registry,
        lambda rt: unlink(rt, args.integration_id, args.team, args.link_id, source="cli", force=args.force),
        broker=True,
    )
