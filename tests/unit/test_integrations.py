"""Integration code that needs no service: parsing, redaction."""

from __future__ import annotations

from integrations.mattermost.catch_up import mentions
from tests.tools.conftest import BOT_TOKEN
from worker.core.redact import redact


def test_mentions_are_read_as_mattermost_reads_them() -> None:
    assert mentions("@planner what is due?", "planner")
    assert mentions("thanks @Planner.", "planner")  # a full stop ends the sentence, not the name
    assert mentions("(@planner)", "planner")
    assert not mentions("@planners, all of you", "planner")
    assert not mentions("@planner.bot is another user", "planner")
    assert not mentions("@planner-team", "planner")
    assert not mentions("write to mail@planner.example", "planner")
    assert not mentions("@planner", "")


def test_bot_tokens_never_reach_logs_or_errors() -> None:
    assert BOT_TOKEN not in redact(f"POST https://api.telegram.org/bot{BOT_TOKEN}/sendMessage failed")
    assert redact(f"token {BOT_TOKEN.split(':', maxsplit=1)[0]}:{BOT_TOKEN.split(':')[1]}").count("[redacted]") == 1
