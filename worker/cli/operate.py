"""The CLI's commands: serving, migrations, the registry and contract, parked messages, the install
lifecycle, tools, scaffolding and secrets."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from worker import platform
from worker.cli import dead
from worker.cli.scaffold import ScaffoldError, scaffold
from worker.cli.settings_doc import keys_markdown
from worker.core.settings import Settings
from worker.platform import contract
from worker.platform.install import InstallError, InstallRequest, install, public_config, uninstall, update
from worker.platform.secrets_rotation import rotate_all
from worker.platform.tools import ToolCallError, ToolGateway, available_tools, render
from worker.runtime.broker import BrokerUnavailable
from worker.runtime.runtime import Runtime
from worker.sdk.declare import tool_name
from worker.sdk.registry import Registry


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _runtime(settings: Settings, registry: Registry) -> Runtime:
    return platform.attach(Runtime(settings, registry))


def run_async(coro: Awaitable[int]) -> int:
    async def wrapper() -> int:
        return await coro

    return uvloop.run(wrapper())


def migrate(_args: argparse.Namespace, settings: Settings, registry: Registry) -> int:

    async def go() -> int:
        runtime = _runtime(settings, registry)
        await runtime.start(migrate=False, broker=False)
        try:
            applied = await runtime.migrate()
        finally:
            await runtime.stop()
        print(
            f"{len(applied)} migration(s) applied"
            + "".join(f"\n  {m.component}/{m.version:04d}_{m.name}" for m in applied)
        )
        return 0

    return run_async(go())


def integrations(args: argparse.Namespace, _settings: Settings, registry: Registry) -> int:
    if args.keys:
        print(keys_markdown(registry), end="")
        return 0
    catalog = contract.catalog(registry)
    if args.json:
        print_json(catalog)
    else:
        for item in catalog:
            actions = ", ".join(a["name"] for a in item["actions"]) or "-"
            print(f"{item['type']:<16} {item['name']:<16} {item['description']}\n{'':<16} actions: {actions}")
    return 0


def schema(args: argparse.Namespace, _settings: Settings, registry: Registry) -> int:
    schemas = contract.json_schemas(registry)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, schema in schemas.items():
            (out / f"{name}.json").write_text(json.dumps(schema, indent=2) + "\n")
        print(f"{len(schemas)} schemas written to {out}")
    else:
        print_json(schemas)
    return 0


def _with_broker(settings: Settings, registry: Registry, work: Callable[[Any], Awaitable[int]]) -> int:

    async def go() -> int:
        runtime = _runtime(settings, registry)
        await runtime.broker.connect()
        try:
            return await work(runtime.broker)
        finally:
            await runtime.broker.close()
            await runtime.http.aclose()

    return run_async(go())


def dead_letters(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:
    async def work(broker: Any) -> int:
        if args.dead_command == "list":
            parked = await dead.list_parked(broker, args.limit, registry)
            if args.json:
                print_json([p.model_dump() for p in parked])
            elif not parked:
                print("no parked messages")
            else:
                print(f"{'ID':<44} {'ROUTING KEY':<36} {'ATTEMPTS':>8}  ERROR")
                for p in parked:
                    print(f"{p.id:<44} {p.routing_key:<36} {p.attempts:>8}  {p.error[:100]}")
            return 0
        if args.dead_command == "show":
            found = await dead.show(broker, args.id, registry)
            if found is None:
                print(f"no parked message {args.id}", file=sys.stderr)
                return 1
            print_json(found.model_dump())
            return 0
        if args.dead_command == "replay":
            count, skipped = await dead.replay(broker, None if args.all else args.id, registry)
            print(f"{count} message(s) replayed")
            for message_id in skipped:
                print(f"skipped {message_id}: not an envelope, cannot be replayed", file=sys.stderr)
            if args.id and count == 0 and not skipped:
                print(f"no parked message {args.id}", file=sys.stderr)
                return 1
            return 0
        if not args.yes:
            print("purge deletes every parked message for good; add --yes", file=sys.stderr)
            return 2
        print(f"{await dead.purge(broker)} message(s) purged")
        return 0

    return _with_broker(settings, registry, work)


def json_object(text: str, option: str) -> dict[str, Any] | None:
    """The option's JSON object, or None after saying what is wrong with it."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"{option} is not JSON: {exc}", file=sys.stderr)
        return None
    if not isinstance(value, dict):
        print(f"{option} must be a JSON object", file=sys.stderr)
        return None
    return value


def install_command(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:
    config = json_object(args.config, "--config")
    if config is None:
        return 2

    async def go() -> int:
        runtime = _runtime(settings, registry)
        await runtime.start()
        try:
            record, is_new = await install(
                runtime,
                InstallRequest(args.type, args.team, config, external_team_id=args.external_team_id, source="cli"),
            )
        except InstallError as exc:
            print_json(exc.as_dict())
            return 1
        finally:
            await runtime.stop()
        print_json(
            {
                "id": record.id,
                "type": record.type,
                "team_id": record.team_id,
                "new": is_new,
                "config": public_config(record.config),
            }
        )
        return 0

    return run_async(go())


def update_command(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:
    changes = json_object(args.config, "--config")
    if changes is None:
        return 2

    async def go() -> int:
        runtime = _runtime(settings, registry)
        await runtime.start()
        try:
            record = await update(runtime, args.integration_id, args.team, changes, source="cli")
        except InstallError as exc:
            print_json(exc.as_dict())
            return 1
        finally:
            await runtime.stop()
        print_json(
            {"id": record.id, "type": record.type, "team_id": record.team_id, "config": public_config(record.config)}
        )
        return 0

    return run_async(go())


def uninstall_command(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:

    async def go() -> int:
        runtime = _runtime(settings, registry)
        await runtime.start()
        try:
            await uninstall(runtime, args.integration_id, args.team, source="cli", force=args.force)
        except InstallError as exc:
            print_json(exc.as_dict())
            return 1
        finally:
            await runtime.stop()
        print_json({"id": args.integration_id, "team_id": args.team, "uninstalled": True})
        return 0

    return run_async(go())


def tools(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:

    async def go() -> int:
        runtime = _runtime(settings, registry)
        await runtime.start(broker=False)
        try:
            tools = await available_tools(runtime, args.team, args.user)
        finally:
            await runtime.stop()
        print_json(render(tools, args.format))
        return 0

    return run_async(go())


def call(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:
    integration = registry.get(args.type)
    action = integration.action(args.action) if integration is not None else None
    if integration is None or action is None:
        known = [f"{i.type} {a.name}" for i in registry for a in i.actions if i.type != "integration"]
        print(f"no action {args.type} {args.action}; there are: {', '.join(known) or 'none'}", file=sys.stderr)
        return 2
    if args.schema:
        print_json(
            {
                "command": f"{args.type}.command.{action.name}",
                "tool": tool_name(args.type, action.name),
                "description": action.description,
                "needs_user_link": action.needs_user_link,
                "input_schema": action.input.model_json_schema(),
                "output_schema": action.output.model_json_schema(mode="serialization"),
            }
        )
        return 0
    if not args.team:
        print("--team is required", file=sys.stderr)
        return 2
    arguments = json_object(args.input, "--input")
    if arguments is None:
        return 2

    async def go() -> int:
        runtime = _runtime(settings, registry)
        await runtime.start()
        gateway = ToolGateway(runtime)
        try:
            outcome = await gateway.call(
                team_id=args.team,
                user_id=args.user,
                name=tool_name(args.type, action.name),
                arguments=arguments,
                idempotency_key=args.key,
                source="cli",
                wait_seconds=args.timeout,
            )
        except ToolCallError as exc:
            print_json(exc.as_dict())
            return 1
        except BrokerUnavailable as exc:
            print(f"the broker did not take the call: {exc}", file=sys.stderr)
            return 1
        finally:
            await gateway.close()
            await runtime.stop()
        print_json(outcome.answer())
        return {"succeeded": 0, "pending": 3}.get(outcome.status, 1)

    return run_async(go())


def new(args: argparse.Namespace) -> int:
    try:
        written = scaffold(Path(args.root), args.type, title=args.name, description=args.description)
    except ScaffoldError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    folder = args.type.replace("-", "_")
    print(f"next: python -m pytest tests/{folder}   (then make integrations/{folder}/ talk to the real provider)")
    return 0


def secrets(_args: argparse.Namespace, settings: Settings, registry: Registry) -> int:

    async def go() -> int:
        runtime = _runtime(settings, registry)
        await runtime.start(broker=False)
        try:
            counts = await rotate_all(runtime)
        finally:
            await runtime.stop()
        print(", ".join(f"{table}: {n} row(s) re-encrypted" for table, n in counts.items()))
        return 0

    return run_async(go())
