"""`integration-worker`: run the service and operate it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import uvloop
from cryptography.fernet import Fernet
from pydantic import ValidationError

from worker import contract, dead
from worker.broker import BrokerUnavailable
from worker.errors import field_errors
from worker.install import InstallError, InstallRequest, install, public_config, uninstall, update
from worker.integration import Registry, RegistryError, load_registry, tool_name
from worker.logging import configure_logging
from worker.process import serve
from worker.runtime import Runtime
from worker.scaffold import ScaffoldError, scaffold
from worker.secrets_rotation import rotate_all
from worker.settings import Settings
from worker.tools import ToolCallError, ToolGateway, available_tools, render


def _types(value: str | None) -> list[str] | None:
    return [t.strip() for t in value.split(",") if t.strip()] if value else None


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="integration-worker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="migrations, the ingress and a worker, in one process")
    for p in (run, sub.add_parser("worker", help="consume and handle messages")):
        p.add_argument("--types", help="comma-separated integration types to consume (default: all)")
        p.add_argument("--concurrency", type=int, help="handlers in flight (default: IW_CONCURRENCY)")
    sub.add_parser("ingress", help="the HTTP ingress only (webhooks, OAuth, health, metrics)")
    sub.add_parser("migrate", help="apply pending database migrations and exit")
    integrations = sub.add_parser("integrations", help="the registry: types, names, config JSON Schemas")
    integrations.add_argument("--json", action="store_true", help="full JSON, config schemas included")
    schema = sub.add_parser("schema", help="the contract's JSON Schema (envelope, events, rows, commands)")
    schema.add_argument("--out", help="write one file per schema into this folder instead of printing")

    dead_cmd = sub.add_parser("dead", help="parked messages")
    dead_sub = dead_cmd.add_subparsers(dest="dead_command", required=True)
    dead_list = dead_sub.add_parser("list", help="parked messages with their error and attempts")
    dead_list.add_argument("--limit", type=int, default=None)
    dead_list.add_argument("--json", action="store_true")
    dead_show = dead_sub.add_parser("show", help="one parked message, whole")
    dead_show.add_argument("id")
    dead_replay = dead_sub.add_parser("replay", help="send parked messages back to be handled again")
    group = dead_replay.add_mutually_exclusive_group(required=True)
    group.add_argument("id", nargs="?")
    group.add_argument("--all", action="store_true")
    dead_purge = dead_sub.add_parser("purge", help="delete every parked message")
    dead_purge.add_argument("--yes", action="store_true", help="really delete them")

    install = sub.add_parser("install", help="install or reconfigure an integration for a team")
    install.add_argument("type")
    install.add_argument("--team", required=True)
    install.add_argument("--config", default="{}", help="the config as JSON")
    install.add_argument("--external-team-id")
    update_cmd = sub.add_parser("update", help="change fields of an installed integration's config")
    update_cmd.add_argument("integration_id")
    update_cmd.add_argument("--team", required=True)
    update_cmd.add_argument("--config", required=True, help='the fields to change, as JSON ("[set]" keeps a secret)')
    uninstall = sub.add_parser("uninstall", help="uninstall an integration")
    uninstall.add_argument("integration_id")
    uninstall.add_argument("--team", required=True)
    uninstall.add_argument("--force", action="store_true", help="even when stopping or revoking at the provider fails")

    tools = sub.add_parser("tools", help="the agent tools a team (and user) can call")
    tools.add_argument("--team", required=True)
    tools.add_argument("--user", help="the platform user (tools that act as a user need their link)")
    tools.add_argument("--format", choices=["openai", "mcp"], default="openai")
    call = sub.add_parser("call", help="run an action as an agent tool does: over the broker, answered by a worker")
    call.add_argument("type")
    call.add_argument("action")
    call.add_argument("--team", help="whose integration runs it (required unless --schema)")
    call.add_argument("--user", help="the platform user it acts for")
    call.add_argument("--input", default="{}", help="the action's input, as JSON")
    call.add_argument("--key", help="idempotency key: the same key again answers the first result")
    call.add_argument("--timeout", type=float, help="seconds to wait for the answer (default IW_TOOL_TIMEOUT)")
    call.add_argument("--schema", action="store_true", help="print the action's input and output JSON Schema")

    new = sub.add_parser("new", help="scaffold integrations/<folder>/ with a test, and register it")
    new.add_argument("type", help="the type string, e.g. acme or acme-notes (folder: acme_notes)")
    new.add_argument("--name", help="display name (default: from the type)")
    new.add_argument("--description")
    new.add_argument("--root", default=".", help="the project's root (default: here)")

    secrets = sub.add_parser("secrets", help="encryption keys of stored secrets")
    secrets_sub = secrets.add_subparsers(dest="secrets_command", required=True)
    secrets_sub.add_parser("generate-key", help="print a new key for IW_SECRET_KEYS")
    secrets_sub.add_parser("rotate", help="re-encrypt every stored secret with the first key")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "secrets" and args.secrets_command == "generate-key":
        print(Fernet.generate_key().decode())
        return 0
    if args.command == "new":
        return _new(args)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"invalid configuration: {field_errors(exc)}", file=sys.stderr)
        return 2
    configure_logging(settings)
    try:
        registry = load_registry(settings.registry)
    except RegistryError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    command = COMMANDS[args.command]
    try:
        return command(args, settings, registry)
    except KeyboardInterrupt:
        return 130


def _run_async(coro: Awaitable[int]) -> int:
    async def wrapper() -> int:
        return await coro

    return uvloop.run(wrapper())


def _serve(ingress: bool, worker: bool) -> Callable[[argparse.Namespace, Settings, Registry], int]:
    def command(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:

        async def go() -> int:
            await serve(
                settings,
                registry,
                ingress=ingress,
                worker=worker,
                types=_types(getattr(args, "types", None)),
                concurrency=getattr(args, "concurrency", None),
            )
            return 0

        return _run_async(go())

    return command


def _migrate(_args: argparse.Namespace, settings: Settings, registry: Registry) -> int:

    async def go() -> int:
        runtime = Runtime(settings, registry)
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

    return _run_async(go())


def _integrations(args: argparse.Namespace, _settings: Settings, registry: Registry) -> int:
    catalog = contract.catalog(registry)
    if args.json:
        _print_json(catalog)
    else:
        for item in catalog:
            actions = ", ".join(a["name"] for a in item["actions"]) or "-"
            print(f"{item['type']:<16} {item['name']:<16} {item['description']}\n{'':<16} actions: {actions}")
    return 0


def _schema(args: argparse.Namespace, _settings: Settings, registry: Registry) -> int:
    schemas = contract.json_schemas(registry)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, schema in schemas.items():
            (out / f"{name}.json").write_text(json.dumps(schema, indent=2) + "\n")
        print(f"{len(schemas)} schemas written to {out}")
    else:
        _print_json(schemas)
    return 0


def _with_broker(settings: Settings, registry: Registry, work: Callable[[Any], Awaitable[int]]) -> int:

    async def go() -> int:
        runtime = Runtime(settings, registry)
        await runtime.broker.connect()
        try:
            return await work(runtime.broker)
        finally:
            await runtime.broker.close()
            await runtime.http.aclose()

    return _run_async(go())


def _dead(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:
    async def work(broker: Any) -> int:
        if args.dead_command == "list":
            parked = await dead.list_parked(broker, args.limit, registry)
            if args.json:
                _print_json([p.model_dump() for p in parked])
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
            _print_json(found.model_dump())
            return 0
        if args.dead_command == "replay":
            count, skipped = await dead.replay(broker, None if args.all else args.id)
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


def _json_object(text: str, option: str) -> dict[str, Any] | None:
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


def _install(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:
    config = _json_object(args.config, "--config")
    if config is None:
        return 2

    async def go() -> int:
        runtime = Runtime(settings, registry)
        await runtime.start()
        try:
            record, is_new = await install(
                runtime,
                InstallRequest(args.type, args.team, config, external_team_id=args.external_team_id, source="cli"),
            )
        except InstallError as exc:
            _print_json(exc.as_dict())
            return 1
        finally:
            await runtime.stop()
        _print_json(
            {
                "id": record.id,
                "type": record.type,
                "team_id": record.team_id,
                "new": is_new,
                "config": public_config(record.config),
            }
        )
        return 0

    return _run_async(go())


def _update(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:
    changes = _json_object(args.config, "--config")
    if changes is None:
        return 2

    async def go() -> int:
        runtime = Runtime(settings, registry)
        await runtime.start()
        try:
            record = await update(runtime, args.integration_id, args.team, changes, source="cli")
        except InstallError as exc:
            _print_json(exc.as_dict())
            return 1
        finally:
            await runtime.stop()
        _print_json(
            {"id": record.id, "type": record.type, "team_id": record.team_id, "config": public_config(record.config)}
        )
        return 0

    return _run_async(go())


def _uninstall(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:

    async def go() -> int:
        runtime = Runtime(settings, registry)
        await runtime.start()
        try:
            await uninstall(runtime, args.integration_id, args.team, source="cli", force=args.force)
        except InstallError as exc:
            _print_json(exc.as_dict())
            return 1
        finally:
            await runtime.stop()
        print(f"uninstalled {args.integration_id}")
        return 0

    return _run_async(go())


def _tools(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:

    async def go() -> int:
        runtime = Runtime(settings, registry)
        await runtime.start(broker=False)
        try:
            tools = await available_tools(runtime, args.team, args.user)
        finally:
            await runtime.stop()
        _print_json(render(tools, args.format))
        return 0

    return _run_async(go())


def _call(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:
    integration = registry.get(args.type)
    action = integration.action(args.action) if integration is not None else None
    if integration is None or action is None:
        known = [f"{i.type} {a.name}" for i in registry for a in i.actions if i.type != "integration"]
        print(f"no action {args.type} {args.action}; there are: {', '.join(known) or 'none'}", file=sys.stderr)
        return 2
    if args.schema:
        _print_json(
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
    arguments = _json_object(args.input, "--input")
    if arguments is None:
        return 2

    async def go() -> int:
        runtime = Runtime(settings, registry)
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
            _print_json(exc.as_dict())
            return 1
        except BrokerUnavailable as exc:
            print(f"the broker did not take the call: {exc}", file=sys.stderr)
            return 1
        finally:
            await gateway.close()
            await runtime.stop()
        _print_json(outcome.answer())
        return {"succeeded": 0, "pending": 3}.get(outcome.status, 1)

    return _run_async(go())


def _new(args: argparse.Namespace) -> int:
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


def _secrets(_args: argparse.Namespace, settings: Settings, registry: Registry) -> int:

    async def go() -> int:
        runtime = Runtime(settings, registry)
        await runtime.start(broker=False)
        try:
            counts = await rotate_all(runtime)
        finally:
            await runtime.stop()
        print(", ".join(f"{table}: {n} row(s) re-encrypted" for table, n in counts.items()))
        return 0

    return _run_async(go())


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings, Registry], int]] = {
    "run": _serve(ingress=True, worker=True),
    "ingress": _serve(ingress=True, worker=False),
    "worker": _serve(ingress=False, worker=True),
    "migrate": _migrate,
    "integrations": _integrations,
    "schema": _schema,
    "dead": _dead,
    "install": _install,
    "update": _update,
    "uninstall": _uninstall,
    "tools": _tools,
    "call": _call,
    "secrets": _secrets,
}


if __name__ == "__main__":
    sys.exit(main())
