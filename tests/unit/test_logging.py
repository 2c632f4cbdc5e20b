"""Log lines as an operator reads them: JSON with the fields bound, and no secret in any line,
ours or the standard library's (uvicorn's, asyncio's)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from worker.core.logging import configure_logging, get_logger
from worker.core.settings import Settings

TOKEN = "xoxb-1234567890-abcdefghijklmnop"  # a Slack bot token's shape


@pytest.fixture
def restored() -> Iterator[None]:
    """Afterwards: structlog's defaults, and the root logger's handlers as they were."""
    handlers = list(logging.getLogger().handlers)
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = handlers


@pytest.fixture
def json_logs(restored: None) -> None:
    configure_logging(Settings(log_format="json", log_level="INFO"))


def test_a_json_line_carries_its_fields_and_no_secret_even_nested(
    json_logs: None, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    get_logger(component="worker", team_id="team-1").warning(
        "message", outcome="parked", details={"request": {"url": f"https://x/?t={TOKEN}"}, "tokens": [TOKEN]}
    )
    line = json.loads(capsysbinary.readouterr().out.decode().strip().splitlines()[-1])
    assert line["event"] == "message"
    assert line["level"] == "warning"
    assert line["team_id"] == "team-1" and line["component"] == "worker" and line["outcome"] == "parked"
    assert "timestamp" in line
    assert TOKEN not in json.dumps(line)
    assert line["details"]["tokens"] == "[redacted]"


def test_standard_library_records_are_redacted(capfd: pytest.CaptureFixture[str], restored: None) -> None:
    configure_logging(Settings(log_format="json", log_level="INFO"))  # here: its stream is the captured one
    logging.getLogger("asyncio").error("Exception in callback: token %s refused", TOKEN)
    err = capfd.readouterr().err
    assert "Exception in callback" in err
    assert TOKEN not in err and "[redacted]" in err


def test_standard_library_records_are_json_lines_beside_ours(capfd: pytest.CaptureFixture[str], restored: None) -> None:
    configure_logging(Settings(log_format="json", log_level="INFO"))
    logging.getLogger("a.library").warning("Invalid HTTP request received.")
    line = json.loads(capfd.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "Invalid HTTP request received."
    assert line["level"] == "warning" and line["logger"] == "a.library" and line["timestamp"].endswith("Z")
