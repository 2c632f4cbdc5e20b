"""WhatsApp through Twilio end to end: signed inbound messages (form posts), association links, linked
messages with media to the agent, replies through the (fake) Messages API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.chat.conftest import (
    WHATSAPP_NUMBER,
    assert_tampered_tokens_link_nobody,
    confirm_link,
    link_count,
    link_directly,
    link_token_in,
    parked,
    post_whatsapp,
    settled,
    twilio_signature,
    whatsapp_message,
)
from tests.conftest import TEAM, Results, eventually, queue_depth
from tests.fakes import twilio as fake_twilio
from tests.fakes.twilio import FakeTwilioState
from tests.helpers import publish
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

ALICE = "+15551230001"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


async def test_an_unlinked_number_gets_one_link_then_its_messages_reach_the_agent(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    twilio: FakeTwilioState,
    whatsapp_integration: Any,
    env: dict[str, str],
) -> None:
    answer = await post_whatsapp(ingress, whatsapp_message("hi"))

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/xml") and answer.text == EMPTY_TWIML
    link = (await eventually(lambda: twilio.messages))[0]
    assert (link["To"], link["From"]) == (f"whatsapp:{ALICE}", f"whatsapp:{WHATSAPP_NUMBER}")
    assert "https://app.example.com/integrations/associate?token=" in link["Body"] and "Alice" in link["Body"]

    await assert_tampered_tokens_link_nobody(ingress, runtime, env, link_token_in(link["Body"]))
    confirmed = await confirm_link(ingress, env, link_token_in(link["Body"]), "user-alice")
    assert confirmed.status_code == 201
    assert confirmed.json()["external_user_id"] == ALICE and confirmed.json()["integration_type"] == "whatsapp"
    await eventually(lambda: len(twilio.messages) == 2)  # "your account is linked"

    await post_whatsapp(ingress, whatsapp_message("what is due today?", sid="SM" + "1" * 32))

    data = (await results.wait_for("message.received"))[0]["data"]
    assert data["conversation_id"] == f"whatsapp-{ALICE}" and data["text"] == "what is due today?"
    assert data["user_id"] == "user-alice" and data["external_user_name"] == "Alice" and data["is_direct"]
    assert data["message_id"] == "SM" + "1" * 32
    assert data["reply"]["routing_key"] == "whatsapp.command.send_message"
    await eventually(lambda: len(twilio.messages) == 3)
    assert twilio.messages[2]["Body"] == "Got it, working on it…"

    reply = data["reply"]
    await publish(
        runtime,
        "whatsapp",
        "command",
        reply["action"],
        {**reply["input"], reply["text_field"]: "Two tasks are due."},
        integration_id=reply["integration_id"],
    )
    await eventually(lambda: len(twilio.messages) == 4)
    assert twilio.messages[3]["To"] == f"whatsapp:{ALICE}" and twilio.messages[3]["Body"] == "Two tasks are due."
    await settled(runtime, worker, "whatsapp")
    assert len(twilio.messages) == 4 and await link_count(runtime) == 1


async def test_wrong_or_missing_signatures_are_refused_in_every_environment(
    runtime: Runtime, ingress: httpx.AsyncClient, twilio: FakeTwilioState, whatsapp_integration: Any
) -> None:
    params = whatsapp_message("hi")
    wrong_key = twilio_signature("https://iw.example.com/webhooks/whatsapp", params, token="not-the-token")
    other_url = twilio_signature("https://iw.example.com/webhooks/other", params)
    tampered = [(k, "send me everything" if k == "Body" else v) for k, v in params]

    for signature in (wrong_key, other_url, "", "short"):
        refused = await post_whatsapp(ingress, params, signature=signature)
        assert refused.status_code == 401, signature
        assert "X-Twilio-Signature" in refused.json()["error"]
    refused = await post_whatsapp(
        ingress, tampered, signature=twilio_signature("https://iw.example.com/webhooks/whatsapp", params)
    )
    assert refused.status_code == 401
    assert await queue_depth(runtime, runtime.topology.queues("whatsapp")) == 0

    # Twilio may sign the URL with the default port: accepted, like Twilio's own validator does.
    with_port = await post_whatsapp(ingress, params, signed_url="https://iw.example.com:443/webhooks/whatsapp")
    assert with_port.status_code == 200


async def test_a_message_delivered_twice_is_handled_once(
    runtime: Runtime, worker: Worker, ingress: httpx.AsyncClient, twilio: FakeTwilioState, whatsapp_integration: Any
) -> None:
    params = whatsapp_message("hi", sid="SM" + "2" * 32)

    first = await post_whatsapp(ingress, params)
    second = await post_whatsapp(ingress, params)  # Twilio's retry after a timeout

    assert first.status_code == second.status_code == 200
    await eventually(lambda: twilio.messages)
    await settled(runtime, worker, "whatsapp")
    assert len(twilio.messages) == 1


async def test_a_link_of_another_integration_with_the_same_external_id_does_not_count(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    twilio: FakeTwilioState,
    whatsapp_integration: Any,
    mattermost_integration: Any,
) -> None:
    # MIMRAI looked links up by external id alone: this Mattermost link would have matched the phone number.
    await link_directly(runtime, mattermost_integration, ALICE, "user-mallory")

    await post_whatsapp(ingress, whatsapp_message("hi"))

    link = (await eventually(lambda: twilio.messages))[0]
    assert "integrations/associate?token=" in link["Body"]
    await settled(runtime, worker, "whatsapp")
    assert results.of("message.received") == []


async def test_media_become_attachments_fetched_with_basic_auth_and_audio_is_marked_for_transcription(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    twilio: FakeTwilioState,
    whatsapp_integration: Any,
    fake_twilio_server: tuple[FakeTwilioState, str],
) -> None:
    await link_directly(runtime, whatsapp_integration, ALICE, "user-alice")
    voice = b"OggS" + bytes(range(200))
    twilio.media["ME1"] = (voice, "audio/ogg")
    base = f"{fake_twilio_server[1]}/2010-04-01/Accounts/{fake_twilio.ACCOUNT_SID}/Messages/MM1/Media"

    await post_whatsapp(
        ingress, whatsapp_message("", media=[(f"{base}/ME1", "audio/ogg"), (f"{base}/ME2", "image/jpeg")])
    )

    data = (await results.wait_for("message.received"))[0]["data"]
    audio, image = data["attachments"]
    assert (audio["kind"], audio["mime_type"], audio["transcribe"]) == ("audio", "audio/ogg", True)
    assert (image["kind"], image["transcribe"]) == ("image", False)
    fetched = await ingress.get(audio["url"].removeprefix("https://iw.example.com"))
    assert fetched.status_code == 200 and fetched.content == voice
    assert fetched.headers["content-type"] == "audio/ogg"
    assert twilio.media_auth == [httpx.BasicAuth(fake_twilio.ACCOUNT_SID, fake_twilio.AUTH_TOKEN)._auth_header]
    assert twilio.storage_auth == [None]  # the credentials stayed with Twilio


async def test_replies_retry_rate_limits_and_park_invalid_numbers_and_closed_windows(
    runtime: Runtime, worker: Worker, twilio: FakeTwilioState, whatsapp_integration: Any
) -> None:
    twilio.inject = [
        (429, {"code": 20429, "message": "Too Many Requests", "status": 429}, {"Retry-After": "1"}),
        (503, {"code": 20500, "message": "Internal Server Error", "status": 503}, {}),
    ]
    sent = await publish(runtime, "whatsapp", "command", "send_message", {"to": ALICE, "body": "hi"}, team_id=TEAM)
    await eventually(lambda: runtime.pool.fetchval("SELECT 1 FROM processed_events WHERE id = $1", sent.id))
    assert twilio.attempts == 3 and twilio.bodies() == ["hi"]

    twilio.inject = [
        (400, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400}, {}),
        (400, {"code": 63016, "message": "Outside the allowed window", "status": 400}, {}),
    ]
    invalid = await publish(
        runtime, "whatsapp", "command", "send_message", {"to": "+15550000000", "body": "x"}, team_id=TEAM
    )
    late = await publish(runtime, "whatsapp", "command", "send_message", {"to": ALICE, "body": "x"}, team_id=TEAM)
    found = await eventually(lambda: _parked_two(runtime))
    errors = {p.id: p.error for p in found}
    assert "21211" in errors[invalid.id] and "invalid" in errors[invalid.id]
    assert "63016" in errors[late.id] and "template" in errors[late.id]
    assert twilio.attempts == 5  # each tried once


async def _parked_two(runtime: Runtime) -> list[Any] | None:
    found = await parked(runtime)
    return found if len(found) == 2 else None
