"""The example integration, Telegram (docs/adding-an-integration.md), end to end: updates in through the ingress (secret
token per integration), task intake out, and its action as a tool."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from integrations.telegram.verify import webhook_secret
from tests.conftest import TEAM, Results, eventually, queue_depth
from tests.fakes.telegram import FakeTelegramState
from tests.tools.conftest import BOT_TOKEN, CHAT
from worker.cli import dead
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker


def update(update_id: int, text: str, *, is_bot: bool = False) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": 100 + update_id,
            "date": 1_790_000_000,
            "chat": {"id": CHAT, "type": "private"},
            "from": {"id": 5550001, "is_bot": is_bot, "first_name": "Ada", "username": "ada"},
            "text": text,
        },
    }


def secret_for(runtime: Runtime, integration_id: str) -> dict[str, str]:
    secret = webhook_secret(runtime.settings.signing_key.get_secret_value(), integration_id)
    return {"X-Telegram-Bot-Api-Secret-Token": secret, "Content-Type": "application/json"}


async def test_a_message_to_the_bot_becomes_task_intake_once(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, results: Results, telegram_integration: Any
) -> None:
    path = f"/webhooks/telegram/{telegram_integration.id}"
    headers = secret_for(runtime, telegram_integration.id)
    body = orjson.dumps(update(1, "Export is broken\nsince the last deploy"))

    first = await ingress.post(path, content=body, headers=headers)
    await results.wait_for("task.intake")
    again = await ingress.post(path, content=body, headers=headers)  # Telegram retries until it gets a 2xx
    from_a_bot = await ingress.post(path, content=orjson.dumps(update(2, "beep", is_bot=True)), headers=headers)

    assert first.status_code == again.status_code == from_a_bot.status_code == 202
    await eventually(lambda: _drained(runtime))
    await worker.wait_idle()
    [intake] = results.of("task.intake")
    assert intake["team_id"] == TEAM and intake["integration_id"] == telegram_integration.id
    assert intake["data"]["source"] == "telegram" and intake["data"]["source_id"] == f"{CHAT}:101"
    assert intake["data"]["title"] == "Export is broken"
    assert intake["data"]["author"] == "ada" and intake["data"]["author_external_id"] == "5550001"


async def test_updates_without_the_integrations_secret_are_refused(
    runtime: Runtime, ingress: httpx.AsyncClient, telegram_integration: Any
) -> None:
    body = orjson.dumps(update(3, "hello"))
    other = secret_for(runtime, "another-integration")

    wrong = await ingress.post(f"/webhooks/telegram/{telegram_integration.id}", content=body, headers=other)
    missing = await ingress.post(f"/webhooks/telegram/{telegram_integration.id}", content=body)
    no_integration = await ingress.post("/webhooks/telegram", content=body, headers=other)

    assert wrong.status_code == missing.status_code == 401
    assert no_integration.status_code == 404
    assert await queue_depth(runtime, runtime.topology.queues("telegram")) == 0


async def test_send_message_as_a_tool_and_a_chat_it_cannot_reach_is_refused_not_parked(
    runtime: Runtime, worker: Worker, service: httpx.AsyncClient, telegram: FakeTelegramState, telegram_integration: Any
) -> None:
    sent = await service.post(
        "/tools/telegram_send_message/call",
        json={"team_id": TEAM, "arguments": {"chat_id": CHAT, "text": "On it.", "reply_to_message_id": 101}},
    )
    nowhere = await service.post(
        "/tools/telegram_send_message/call", json={"team_id": TEAM, "arguments": {"chat_id": 999, "text": "Hi"}}
    )

    assert sent.status_code == 200, sent.text
    assert sent.json()["output"] == {"message_id": 1, "chat_id": CHAT}
    [message] = telegram.sent
    assert message["token"] == BOT_TOKEN and message["request"]["reply_parameters"] == {"message_id": 101}
    assert nowhere.status_code == 422
    assert nowhere.json()["fields"] == {"chat_id": ["Telegram sendMessage -> HTTP 400: Bad Request: chat not found"]}
    assert await queue_depth(runtime, runtime.topology.parked) == 0


async def _drained(runtime: Runtime) -> bool:
    return await queue_depth(runtime, runtime.topology.queues("telegram")) == 0


async def test_a_photo_with_a_caption_is_taken_in_and_blank_text_is_skipped_not_parked(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, results: Results, telegram_integration: Any
) -> None:
    path = f"/webhooks/telegram/{telegram_integration.id}"
    headers = secret_for(runtime, telegram_integration.id)
    photo = update(3, "")
    del photo["message"]["text"]
    photo["message"] |= {"photo": [{"file_id": "f1", "width": 90, "height": 90}], "caption": "This is broken"}

    for body in (photo, update(4, "   \n ")):
        assert (await ingress.post(path, content=orjson.dumps(body), headers=headers)).status_code == 202
    [intake] = await results.wait_for("task.intake")
    await eventually(lambda: _drained(runtime))
    await worker.wait_idle()
    assert intake["data"]["title"] == "This is broken" and intake["data"]["source_id"] == f"{CHAT}:103"
    assert len(results.of("task.intake")) == 1
    assert await dead.list_parked(runtime.broker, None) == []
