"""Structured logs: one JSON line per event in production, readable lines on a terminal."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from worker.core.redact import redact, redact_value
from worker.core.settings import Settings

# Fields the runtime fills with identifiers and enums, never free text: not scanned (hot path).
_PLAIN_KEYS = frozenset(
    {"event_id", "type", "name", "team_id", "integration_id", "outcome", "component", "level", "timestamp",
     "duration_ms", "handler_ms", "events", "attempt", "retry_in", "event"}
)  # fmt: skip


def _redact_processor(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
    for key, value in event_dict.items():
        if key not in _PLAIN_KEYS:
            event_dict[key] = redact_value(key, value)
    return event_dict


class _RedactingFormatter(logging.Formatter):
    """The standard library's records (uvicorn's, asyncio's), redacted like ours."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _JsonFormatter(_RedactingFormatter):
    """The standard library's records as JSON lines like ours (`IW_LOG_FORMAT=json`), redacted."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "event": redact(record.getMessage()),
            "logger": record.name,
            "level": record.levelname.lower(),
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


def _dumps(value: Any, **_: Any) -> bytes:
    return orjson.dumps(value, default=str)


def configure_logging(settings: Settings) -> None:
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    use_json = settings.log_format == "json" or (
        settings.log_format == "auto" and (settings.env == "production" or not sys.stdout.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact_processor,
    ]
    if use_json:
        structlog.configure(
            processors=[*shared, structlog.processors.JSONRenderer(serializer=_dumps)],
            wrapper_class=structlog.make_filtering_bound_logger(level),
            logger_factory=structlog.BytesLoggerFactory(),
            cache_logger_on_first_use=True,
        )
    else:
        structlog.configure(
            # tracebacks are rendered (and redacted) above: plain, never with local variables
            processors=[
                *shared,
                structlog.dev.ConsoleRenderer(
                    colors=sys.stdout.isatty(), exception_formatter=structlog.dev.plain_traceback
                ),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(level),
            logger_factory=structlog.PrintLoggerFactory(),
            cache_logger_on_first_use=True,
        )
    root = logging.getLogger()
    for previous in [h for h in root.handlers if isinstance(h.formatter, _RedactingFormatter)]:
        root.removeHandler(previous)  # configured again (tests): one handler of ours, others left alone
    handler = logging.StreamHandler(sys.stderr)
    if use_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(max(level, logging.WARNING))


def get_logger(**bound: Any) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(**bound)
    return logger
