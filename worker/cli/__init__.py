"""`integration-worker`: run the service and operate it."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet
from pydantic import ValidationError

from worker.cli.settings_doc import settings_in_effect, settings_markdown
from worker.core.logging import configure_logging
from worker.core.settings import Settings
from worker.sdk.errors import field_errors
from worker.sdk.registry import RegistryError, load_registry


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="integration-worker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="migrations, the ingress, the platform API and a worker, in one process")
    for p in (run, sub.add_parser("worker", help="consume and handle messages")):
        p.add_argument("--types", help="comma-separated integration types to consume (default: all)")
        p.add_argument("--concurrency", type=int, help="handlers in flight (default: IW_CONCURRENCY)")
    ingress = sub.add_parser("ingress", help="the webhook ingress only (webhooks, health, metrics)")
    ingress.add_argument(
        "--with-api",
        action="store_true",
        help="serve the platform API on the same port too (OAuth callbacks and attachment links, which "
        "IW_PUBLIC_URL names, reach it there)",
    )
    sub.add_parser("api", help="the platform API only (install lifecycle, OAuth, links, attachments, tools, MCP)")
    config = sub.add_parser("config", help="every setting (IW_*), its default and what it does")
    config.add_argument("--markdown", action="store_true", help="as the Markdown of docs/configuration.md")
    sub.add_parser("migrate", help="apply pending database migrations and exit")
    integrations = sub.add_parser("integrations", help="the registry: types, names, config JSON Schemas")
    integrations.add_argument("--json", action="store_true", help="full JSON, config schemas included")
    integrations.add_argument(
        "--keys", action="store_true", help="what each message kind is ordered by, as docs/contract.md's table"
    )
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

    logs = sub.add_parser("logs", help="an integration's log rows, newest first")
    logs.add_argument("integration_id")
    logs.add_argument("--team", required=True)
    logs.add_argument("--level", action="append", help="info, warning or error (repeat, or comma-separated)")
    logs.add_argument("--since", help="rows written at or after this time (ISO 8601, with a zone)")
    logs.add_argument("--until", help="rows written before this time")
    logs.add_argument("--key", help="only rows with this key (action_call, user_unlinked, ...)")
    logs.add_argument("--limit", type=int, help="rows per page (default 50, at most 200)")
    logs.add_argument("--cursor", help="the next_cursor of the previous page")
    links = sub.add_parser("links", help="users linked to an integration: list, change their settings, unlink")
    links_sub = links.add_subparsers(dest="links_command", required=True)
    links_list = links_sub.add_parser("list", help="the users linked (never a token)")
    links_list.add_argument("integration_id")
    links_list.add_argument("--team", required=True)
    links_list.add_argument("--user", help="only this platform user's links")
    links_list.add_argument("--limit", type=int)
    links_list.add_argument("--offset", type=int)
    links_set = links_sub.add_parser("set", help="change a linked user's own settings (syncEvents, filters)")
    links_set.add_argument("integration_id")
    links_set.add_argument("link_id")
    links_set.add_argument("--team", required=True)
    links_set.add_argument("--config", required=True, help='the settings to change, as JSON: {"syncEvents": false}')
    links_unlink = links_sub.add_parser("unlink", help="revoke a user's tokens at the provider and remove the link")
    links_unlink.add_argument("integration_id")
    links_unlink.add_argument("link_id")
    links_unlink.add_argument("--team", required=True)
    links_unlink.add_argument("--force", action="store_true", help="even when revoking at the provider fails")

    tools = sub.add_parser("tools", help="the agent tools a team (and user) can call")
    tools.add_argument("--team", required=True)
    tools.add_argument("--user", help="the platform user (tools that act as a user need their link)")
    tools.add_argument("--format", choices=["openai", "mcp"], default="openai")
    tool_token = sub.add_parser("tool-token", help="a tool token for one team (and user): least privilege for an agent")
    tool_token.add_argument("--team", required=True, help="the only team it acts for")
    tool_token.add_argument("--user", help="the only platform user it acts for")
    tool_token.add_argument(
        "--ttl", type=float, default=86400.0, help="seconds it works (capped by IW_TOOL_TOKEN_MAX_TTL)"
    )
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
        return int(load_command("new")(args))
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
    if args.command == "config":
        if args.markdown:
            print(settings_markdown(registry), end="")
        else:
            print(json.dumps(settings_in_effect(settings, registry), indent=2, default=str))
        return 0
    command = load_command(args.command)
    try:
        return int(command(args, settings, registry))
    except KeyboardInterrupt:
        return 130


# Where each command lives: imported when it runs, so a worker process never loads the web stack
# (Starlette, uvicorn, the MCP server: 0.3 s of start-up) and `--help` stays quick.
COMMANDS = {
    "run": "worker.cli.serve:run_command",
    "ingress": "worker.cli.serve:ingress_command",
    "api": "worker.cli.serve:api_command",
    "worker": "worker.cli.process:worker_command",
    "migrate": "worker.cli.operate:migrate",
    "integrations": "worker.cli.operate:integrations",
    "schema": "worker.cli.operate:schema",
    "dead": "worker.cli.operate:dead_letters",
    "install": "worker.cli.operate:install_command",
    "update": "worker.cli.operate:update_command",
    "uninstall": "worker.cli.operate:uninstall_command",
    "logs": "worker.cli.links:logs",
    "links": "worker.cli.links:links",
    "tools": "worker.cli.operate:tools",
    "call": "worker.cli.operate:call",
    "tool-token": "worker.cli.tokens:tool_token",
    "secrets": "worker.cli.operate:secrets",
    "new": "worker.cli.operate:new",
}


def load_command(name: str) -> Any:
    module, _, attribute = COMMANDS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)
