"""Chat actions the agent calls besides replying: editing a message it posted (Slack's and
Mattermost's `update_message`), and WhatsApp's approved templates (`content_sid`), the only thing
that reaches a person outside the 24-hour window."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from schemas.envelope import Envelope
from tests.chat.conftest import parked
from tests.conftest import TEAM, eventually
from tests.fakes import mattermost as fake_mattermost
from tests.fakes import slack as fake_slack
from tests.fakes.mattermost import FakeMattermostState
from tests.fakes.slack import FakeSlackState
from tests.fakes.twilio import FakeTwilioState
from tests.tools.conftest import BrokerCaller
from worker.platform.install import InstallError, InstallRequest, install
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

ALICE = "+15551230001"


def command(type_: str, name: str, payload: dict[str, Any], integration: Any) -> Envelope:
    return Envelope(
        id=f"call:{uuid.uuid4()}",
        type=type_,
        kind="command",
        name=name,
        integration_id=integration.id,
        team_id=TEAM,
        payload=payload,
    )


async def test_slack_update_message_changes_the_bots_message_and_a_refusal_is_answered_failed(
    runtime: Runtime, worker: Worker, caller: BrokerCaller, slack: FakeSlackState, slack_integration: Any
) -> None:
    slack.say("C0GENERAL", "1700000000.000300", "Working on it…", user=fake_slack.BOT_USER_ID)
    slack.say("C0GENERAL", "1700000000.000400", "not the bot's", user="U0ALICE")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Two* tasks are due."}}]

    answer = await caller.call(
        command(
            "slack",
            "update_message",
            {"channel": "C0GENERAL", "ts": "1700000000.000300", "text": "Two tasks are due.", "blocks": blocks},
            slack_integration,
        )
    )

    assert answer["ok"] is True, answer
    assert answer["output"] == {"channel": "C0GENERAL", "ts": "1700000000.000300"}
    assert slack.of("chat.update") == [
        {"channel": "C0GENERAL", "ts": "1700000000.000300", "text": "Two tasks are due.", "blocks": blocks}
    ]
    [updated] = [m for m in slack.messages if m["ts"] == "1700000000.000300"]
    assert updated["text"] == "Two tasks are due." and updated["edited"] is True

    refused = await caller.call(
        command(
            "slack",
            "update_message",
            {"channel": "C0GENERAL", "ts": "1700000000.000400", "text": "x"},
            slack_integration,
        )
    )
    assert (refused["ok"], refused["status"]) == (False, "failed")
    assert "cant_update_message" in refused["error"]
    [stays] = [m for m in slack.messages if m["ts"] == "1700000000.000400"]
    assert stays["text"] == "not the bot's"
    assert len(slack.of("chat.update")) == 2  # a permanent error is not retried
    assert [p.error for p in await parked(runtime)] == [refused["error"]]

    invalid = await caller.call(
        command("slack", "update_message", {"channel": "C0GENERAL", "ts": "1.0", "text": ""}, slack_integration)
    )
    assert invalid["status"] == "refused" and "text" in invalid["fields"]
    assert len(slack.of("chat.update")) == 2


async def test_mattermost_update_message_patches_the_bots_post_and_a_refusal_is_answered_failed(
    runtime: Runtime,
    worker: Worker,
    caller: BrokerCaller,
    mattermost: FakeMattermostState,
    mattermost_integration: Any,
) -> None:
    channel = "chan00000000000000000000aa"
    mattermost.say("botpost", channel, fake_mattermost.BOT_ID, "Working on it…", create_at=1700000000000)
    mattermost.say("alicepost", channel, "alice000000000000000000000", "mine", create_at=1700000001000)

    answer = await caller.call(
        command("mattermost", "update_message", {"post_id": "botpost", "message": "Two tasks."}, mattermost_integration)
    )

    assert answer["ok"] is True, answer
    assert answer["output"] == {"id": "botpost", "channel_id": channel}
    assert mattermost.patches == [{"id": "botpost", "message": "Two tasks."}]
    assert [p["message"] for p in mattermost.history if p["id"] == "botpost"] == ["Two tasks."]

    refused = await caller.call(
        command("mattermost", "update_message", {"post_id": "alicepost", "message": "x"}, mattermost_integration)
    )
    assert (refused["ok"], refused["status"]) == (False, "failed") and "403" in refused["error"]
    assert [p["message"] for p in mattermost.history if p["id"] == "alicepost"] == ["mine"]
    assert len(mattermost.patches) == 2  # a 403 is not retried
    assert len(await parked(runtime)) == 1


async def test_whatsapp_sends_an_approved_template_with_its_variables_and_no_body(
    runtime: Runtime, worker: Worker, caller: BrokerCaller, twilio: FakeTwilioState, whatsapp_integration: Any
) -> None:
    variables = {"1": "Friday", "2": "3pm"}

    answer = await caller.call(
        command(
            "whatsapp",
            "send_message",
            {
                "to": f"whatsapp:{ALICE}",
                "content_sid": "HX0123456789abcdef0123456789abcdef",
                "content_variables": variables,
            },
            whatsapp_integration,
        )
    )

    assert answer["ok"] is True, answer
    [sent] = twilio.messages
    assert answer["output"] == {"sid": sent["sid"], "status": "queued"}
    assert sent["To"] == f"whatsapp:{ALICE}" and sent["From"] == "whatsapp:+14155238886"
    assert sent["ContentSid"] == "HX0123456789abcdef0123456789abcdef"
    assert orjson.loads(sent["ContentVariables"]) == variables
    assert "Body" not in sent

    nothing = await caller.call(command("whatsapp", "send_message", {"to": ALICE}, whatsapp_integration))
    assert nothing["status"] == "refused", nothing
    assert "content_sid" in str(nothing["fields"]), nothing
    assert len(twilio.messages) == 1


async def test_a_template_outside_the_window_is_sent_where_free_text_was_refused(
    runtime: Runtime, worker: Worker, caller: BrokerCaller, twilio: FakeTwilioState, whatsapp_integration: Any
) -> None:
    twilio.inject = [(400, {"code": 63016, "message": "Outside the allowed window", "status": 400}, {})]
    text = await caller.call(command("whatsapp", "send_message", {"to": ALICE, "body": "hi"}, whatsapp_integration))
    assert text["status"] == "failed" and "63016" in text["error"] and "ContentSid" in text["error"]

    template = await caller.call(
        command("whatsapp", "send_message", {"to": ALICE, "content_sid": "HX" + "1" * 32}, whatsapp_integration)
    )
    assert template["ok"] is True
    assert [(m.get("ContentSid"), m.get("ContentVariables")) for m in twilio.messages] == [("HX" + "1" * 32, None)]
    await eventually(lambda: twilio.attempts == 2)


async def test_without_a_shared_number_a_whatsapp_install_must_name_its_number(
    runtime: Runtime, twilio: FakeTwilioState
) -> None:
    with pytest.raises(InstallError) as refused:
        await install(runtime, InstallRequest("whatsapp", TEAM, {}))
    assert refused.value.status == 422 and "IW_WHATSAPP_SHARED_NUMBER" in refused.value.message
    assert await runtime.pool.fetchval("SELECT count(*) FROM integrations") == 0
