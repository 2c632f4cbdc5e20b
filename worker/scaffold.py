"""`integration-worker new <type>`: a new integration in one folder, working and tested from the start.

    integrations/<folder>/__init__.py   the declaration (what the registry imports)
    integrations/<folder>/config.py     config (per install, secrets as SecretStr) and settings (IW_<TYPE>_*)
    integrations/<folder>/handle.py     webhook verification at the ingress, and the handlers
    integrations/<folder>/actions.py    the action (a command, an agent tool, a CLI entry) and the install check
    tests/<folder>/test_<folder>.py     its tests, against a fake of the provider on 127.0.0.1
    integrations/registry.py            one more line

The generated provider is a stand-in (HMAC-signed webhooks, a bearer-token REST API): replace
what it calls with the real provider's API, keeping the shape.
"""

from __future__ import annotations

import ast
import keyword
from dataclasses import dataclass
from pathlib import Path

from schemas.envelope import valid_type

_LINE_MAX = 120


class ScaffoldError(Exception):
    pass


@dataclass(frozen=True)
class Names:
    type: str  # google-calendar
    folder: str  # google_calendar
    title: str  # Google Calendar
    camel: str  # GoogleCalendar
    env: str  # IW_GOOGLE_CALENDAR_

    @classmethod
    def of(cls, type_: str, title: str | None = None) -> Names:
        if not valid_type(type_) or type_ == "integration" or "--" in type_ or type_.endswith("-"):
            raise ScaffoldError(f"{type_!r} is not a usable type: lowercase letters, digits and single dashes")
        folder = type_.replace("-", "_")
        if keyword.iskeyword(folder):
            raise ScaffoldError(f"{type_!r} is a Python keyword")
        words = type_.split("-")
        return cls(
            type=type_,
            folder=folder,
            title=title or " ".join(w.capitalize() for w in words),
            camel="".join(w.capitalize() for w in words),
            env=f"IW_{folder.upper()}_",
        )


def scaffold(root: Path, type_: str, *, title: str | None = None, description: str | None = None) -> list[Path]:
    """Write the integration's files and register it; returns the files written or changed."""
    names = Names.of(type_, title)
    for text in (title, description):
        if text is not None and any(c in text for c in '"\\\n'):
            raise ScaffoldError("the name and description cannot hold quotes, backslashes or line breaks")
    package = root / "integrations" / names.folder
    tests = root / "tests" / names.folder
    registry = root / "integrations" / "registry.py"
    if not registry.is_file():
        raise ScaffoldError(f"{registry} not found: run this at the project's root (or pass --root)")
    for path in (package, tests):
        if path.exists():
            raise ScaffoldError(f"{path} already exists")
    values = {
        "TYPE": names.type,
        "FOLDER": names.folder,
        "TITLE": names.title,
        "CAMEL": names.camel,
        "ENV": names.env,
        "DESCRIPTION": description or f"Messages from {names.title} become task intake; agents send messages.",
    }
    new_registry = add_to_registry(registry.read_text(), names.folder)
    files = {
        package / "__init__.py": INIT,
        package / "config.py": CONFIG,
        package / "handle.py": HANDLE,
        package / "actions.py": ACTIONS,
        tests / "__init__.py": "",
        tests / f"test_{names.folder}.py": TEST,
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_fill(template, values))
    registry.write_text(new_registry)
    return [*files, registry]


def _fill(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace("{{" + key + "}}", value)
    return template


def add_to_registry(source: str, folder: str) -> str:
    """integrations/registry.py with `folder` imported and its `integration` in the Registry list."""
    tree = ast.parse(source)
    imported = next(
        (n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "integrations" and n.level == 0), None
    )
    call = next(
        (
            n.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign)
            and isinstance(n.value, ast.Call)
            and isinstance(n.value.func, ast.Name)
            and n.value.func.id == "Registry"
            and n.value.args
            and isinstance(n.value.args[0], ast.List)
        ),
        None,
    )
    if imported is None or call is None:
        raise ScaffoldError("integrations/registry.py: expected `from integrations import ...` and `Registry([...])`")
    names = [alias.name for alias in imported.names]
    if folder in names:
        raise ScaffoldError(f"integrations/registry.py already imports {folder}")
    listing = call.args[0]
    assert isinstance(listing, ast.List)
    entries = [ast.get_source_segment(source, element) or "" for element in listing.elts]
    lines = source.splitlines()
    # Rewrite the list first (it comes after the import, so the import's line numbers stay valid).
    entries_sorted = entries == sorted(entries)
    entries.append(f"{folder}.integration")
    if entries_sorted:
        entries.sort()
    indent = " " * (listing.col_offset + 4)
    closing = " " * listing.col_offset
    opening = lines[listing.lineno - 1][: listing.col_offset] + "["
    assert listing.end_lineno is not None
    lines[listing.lineno - 1 : listing.end_lineno] = [
        opening,
        *(f"{indent}{entry}," for entry in entries),
        closing + "]" + lines[listing.end_lineno - 1][listing.end_col_offset :],
    ]
    names = sorted([*names, folder])
    statement = f"from integrations import {', '.join(names)}"
    if len(statement) > _LINE_MAX:
        statement = "from integrations import (\n" + "".join(f"    {name},\n" for name in names) + ")"
    assert imported.end_lineno is not None
    lines[imported.lineno - 1 : imported.end_lineno] = statement.split("\n")
    return "\n".join(lines) + "\n"


# --- templates ---------------------------------------------------------------------------------------

INIT = '''"""{{TITLE}}: {{DESCRIPTION}}

One folder, one line in integrations/registry.py. See the README's "Adding an integration".
"""

from integrations.{{FOLDER}} import actions, handle
from integrations.{{FOLDER}}.config import {{CAMEL}}Config, {{CAMEL}}Settings
from worker.integration import Action, Integration, Lifecycle

integration = Integration(
    type="{{TYPE}}",
    name="{{TITLE}}",
    description="{{DESCRIPTION}}",
    config={{CAMEL}}Config,
    settings={{CAMEL}}Settings,
    webhook=handle.receive,  # POST /webhooks/{{TYPE}}
    handlers=handle.HANDLERS,
    actions=[
        Action(
            "send_message",
            "Send a message to a {{TITLE}} channel.",
            actions.SendMessageInput,
            actions.SendMessageOutput,
            actions.send_message,
        ),
    ],
    lifecycle=Lifecycle(validate=actions.validate),
    # Rows are unique per provider account; webhooks find their integration by it.
    external_team_id=lambda config: config.account_id,
)
'''

CONFIG = '''"""{{TITLE}}'s config (per installed integration) and settings (per deployment, `{{ENV}}*`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class {{CAMEL}}Config(BaseModel):
    """What a team gives at install. SecretStr fields are encrypted at rest and never read back."""

    model_config = ConfigDict(extra="forbid")

    account_id: str = Field(min_length=1, description="The {{TITLE}} account (workspace) to connect.")
    api_key: SecretStr = Field(description="An API key of that account.")


class {{CAMEL}}Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="{{ENV}}", env_file=".env", extra="ignore")

    webhook_secret: SecretStr | None = Field(default=None, description="Verifies webhooks; unset: all refused.")
    api_url: str = Field(default="https://api.example.com", description="{{TITLE}}'s API.")
'''

HANDLE = '''"""{{TITLE}} webhooks: verified at the ingress, handled by the worker.

The ingress calls `receive` for POST /webhooks/{{TYPE}}: check the signature (HMAC-SHA256 of the raw
body with {{ENV}}WEBHOOK_SECRET, constant time, fail closed), take the provider's delivery id
as the dedup key, and say which integration it is for. The worker then runs the handler of
`{{TYPE}}.webhook.<name>`, in one transaction with what it stages.
"""

from __future__ import annotations

import hashlib
import hmac

import orjson
from pydantic import BaseModel

from integrations.{{FOLDER}}.config import {{CAMEL}}Settings
from schemas.events import TaskIntake
from worker.context import Context, IngressContext
from worker.integration import Accept, Handler, Reply, WebhookRejected, WebhookRequest


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


async def receive(request: WebhookRequest, ctx: IngressContext) -> Accept | Reply:
    settings = ctx.settings_as({{CAMEL}}Settings)
    if settings.webhook_secret is None:
        raise WebhookRejected(401, "{{TITLE}} webhooks are refused: {{ENV}}WEBHOOK_SECRET is not set")
    expected = signature(settings.webhook_secret.get_secret_value().encode(), request.body)
    if not hmac.compare_digest(request.headers.get("x-signature-256", "").encode(), expected.encode()):
        raise WebhookRejected(401, "missing or wrong X-Signature-256")
    delivery = request.headers.get("x-delivery-id")
    try:
        payload = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise WebhookRejected(400, "body is not JSON") from None
    if not delivery or not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        raise WebhookRejected(400, "X-Delivery-Id and a JSON object with an event are required")
    return Accept(
        name=payload["event"],
        delivery_id=delivery,
        payload=payload,
        external_team_id=str(payload.get("account_id") or "") or None,
    )


class Message(BaseModel):
    id: str
    channel: str
    text: str
    author: str | None = None


class MessageEvent(BaseModel):
    event: str
    account_id: str
    message: Message


async def on_message(ctx: Context) -> None:
    message = ctx.payload_as(MessageEvent).message
    ctx.emit(
        TaskIntake(
            source="{{TYPE}}",
            source_id=f"message:{message.id}",
            kind="message",
            title=message.text.splitlines()[0][:120] if message.text else "(empty)",
            body=message.text,
            author=message.author,
            metadata={"channel": message.channel},
        )
    )


HANDLERS = [
    Handler("webhook", "message", on_message),
]
'''

ACTIONS = '''"""The action `send_message` (command `{{TYPE}}.command.send_message`, tool `{{TYPE}}_send_message`,
CLI `integration-worker call {{TYPE}} send_message`), and the install check."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from integrations.{{FOLDER}}.config import {{CAMEL}}Config, {{CAMEL}}Settings
from worker.context import Context
from worker.errors import ActionRefused
from worker.integration import InstallRejected
from worker.outbound import ProviderError, call


class SendMessageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(min_length=1, description="The channel to write in.")
    text: str = Field(min_length=1, max_length=4000, description="The message.")


class SendMessageOutput(BaseModel):
    id: str


def _headers(config: {{CAMEL}}Config) -> dict[str, str]:
    return {"Authorization": f"Bearer {config.api_key.get_secret_value()}"}


async def send_message(ctx: Context, request: SendMessageInput) -> SendMessageOutput:
    settings, config = ctx.settings_as({{CAMEL}}Settings), ctx.config_as({{CAMEL}}Config)
    try:
        response = await call(
            ctx.http,
            "POST",
            f"{settings.api_url}/messages",
            headers=_headers(config),
            json={"channel": request.channel, "text": request.text, "idempotency_key": ctx.envelope.id},
        )
    except ProviderError as exc:
        if exc.status == 404:  # the caller named a channel that does not exist: its mistake, not an outage
            raise ActionRefused("no such channel", {"channel": ["no such channel"]}) from None
        raise
    return SendMessageOutput(id=str(response.json()["id"]))


async def validate(ctx: Context) -> None:
    """Install: the key must work for that account."""
    settings, config = ctx.settings_as({{CAMEL}}Settings), ctx.config_as({{CAMEL}}Config)
    try:
        response = await call(ctx.http, "GET", f"{settings.api_url}/me", headers=_headers(config))
    except ProviderError as exc:
        raise InstallRejected(f"{{TITLE}} refused the API key (HTTP {exc.status})") from None
    if response.json().get("account_id") != config.account_id:
        raise InstallRejected("this API key belongs to another {{TITLE}} account")
'''

TEST = '''"""{{TITLE}}: webhooks in, task intake out, the action as a tool, the install check, against a fake
{{TITLE}} API on 127.0.0.1 (tests/fakes/server.py). Change the fake with the integration."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import TEAM, Results
from tests.fakes.server import BackgroundServer
from worker.consumer import Worker
from worker.install import InstallError, InstallRequest, install
from worker.runtime import Runtime
from worker.tools import ToolGateway

SECRET = "test-{{TYPE}}-webhook-secret"
ACCOUNT = "acct-1"
API_KEY = "test-{{TYPE}}-api-key"


class FakeApi:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def app(self) -> Starlette:
        def authorised(request: Request) -> bool:
            return request.headers.get("authorization") == f"Bearer {API_KEY}"

        async def me(request: Request) -> JSONResponse:
            if not authorised(request):
                return JSONResponse({"error": "unauthorized"}, 401)
            return JSONResponse({"account_id": ACCOUNT})

        async def messages(request: Request) -> JSONResponse:
            if not authorised(request):
                return JSONResponse({"error": "unauthorized"}, 401)
            body = await request.json()
            if body["channel"] != "general":
                return JSONResponse({"error": "no such channel"}, 404)
            self.messages.append(body)
            return JSONResponse({"id": f"m{len(self.messages)}"}, 201)

        return Starlette(routes=[Route("/me", me), Route("/messages", messages, methods=["POST"])])


@pytest.fixture(scope="module")
def fake_api() -> Iterator[tuple[FakeApi, str]]:
    api = FakeApi()
    server = BackgroundServer(api.app()).start()
    yield api, server.url
    server.stop()


@pytest.fixture(autouse=True)
def _settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, fake_api: tuple[FakeApi, str]) -> None:
    fake_api[0].messages.clear()
    monkeypatch.setenv("{{ENV}}WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("{{ENV}}API_URL", fake_api[1])


@pytest.fixture
async def installed(runtime: Runtime) -> Any:
    record, _ = await install(
        runtime, InstallRequest("{{TYPE}}", TEAM, {"account_id": ACCOUNT, "api_key": API_KEY}, source="test")
    )
    return record


def signed(payload: dict[str, Any], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(payload)
    return body, {
        "X-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        "X-Delivery-Id": str(uuid.uuid4()),
        "Content-Type": "application/json",
    }


MESSAGE = {
    "event": "message",
    "account_id": ACCOUNT,
    "message": {"id": "42", "channel": "general", "text": "The export is broken\\nsince Monday", "author": "ada"},
}


async def test_a_signed_message_becomes_task_intake(
    worker: Worker, ingress: httpx.AsyncClient, results: Results, installed: Any
) -> None:
    body, headers = signed(MESSAGE)

    response = await ingress.post("/webhooks/{{TYPE}}", content=body, headers=headers)

    assert response.status_code == 202
    [intake] = await results.wait_for("task.intake")
    assert intake["team_id"] == TEAM and intake["integration_id"] == installed.id
    assert intake["data"]["title"] == "The export is broken"
    assert intake["data"]["source_id"] == "message:42" and intake["data"]["author"] == "ada"


async def test_a_webhook_with_a_bad_signature_is_refused(ingress: httpx.AsyncClient, installed: Any) -> None:
    body, headers = signed(MESSAGE, secret="not-the-secret")

    response = await ingress.post("/webhooks/{{TYPE}}", content=body, headers=headers)

    assert response.status_code == 401


async def test_send_message_is_a_tool_that_reaches_the_api(
    runtime: Runtime, worker: Worker, fake_api: tuple[FakeApi, str], installed: Any
) -> None:
    gateway = ToolGateway(runtime)
    try:
        sent = await gateway.call(
            team_id=TEAM,
            user_id=None,
            name="{{TYPE}}_send_message",
            arguments={"channel": "general", "text": "Deployed."},
            idempotency_key="test-1",
            source="test",
        )
        refused = await gateway.call(
            team_id=TEAM,
            user_id=None,
            name="{{TYPE}}_send_message",
            arguments={"channel": "nowhere", "text": "Hello?"},
            idempotency_key="test-2",
            source="test",
        )
    finally:
        await gateway.close()

    assert sent.status == "succeeded" and sent.reply is not None and sent.reply.output == {"id": "m1"}
    assert [m["text"] for m in fake_api[0].messages] == ["Deployed."]
    assert refused.status == "refused" and refused.reply is not None
    assert refused.reply.fields == {"channel": ["no such channel"]}


async def test_install_checks_the_key_against_the_api(runtime: Runtime) -> None:
    with pytest.raises(InstallError) as refused:
        await install(runtime, InstallRequest("{{TYPE}}", TEAM, {"account_id": ACCOUNT, "api_key": "wrong"}))

    assert refused.value.status == 422
    assert "refused the API key (HTTP 401)" in refused.value.message
'''
