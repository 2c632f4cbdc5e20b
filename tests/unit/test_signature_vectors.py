"""The providers' published signature examples (PROVIDERS.md §5.2, §5.3) through our verifiers, and
the error classifications of Slack and Twilio (PROVIDERS.md §8)."""

from __future__ import annotations

import httpx
import pytest

from integrations.slack.errors import classify as classify_slack
from integrations.slack.verify import check_signature
from integrations.whatsapp.api import classify as classify_twilio
from integrations.whatsapp.signature import body_hash, compute, valid

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

TWILIO_TOKEN = "12345"
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
T1 = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+14158675309"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
]


def test_slack_published_example_verifies_at_its_own_time_and_is_a_replay_later() -> None:
    stamp = int(SLACK_TIMESTAMP)
    assert check_signature(SLACK_SECRET, SLACK_TIMESTAMP, SLACK_BODY, SLACK_SIGNATURE, now=stamp) is None
    assert check_signature(SLACK_SECRET, SLACK_TIMESTAMP, SLACK_BODY, SLACK_SIGNATURE, now=stamp + 300) is None
    assert "window" in str(check_signature(SLACK_SECRET, SLACK_TIMESTAMP, SLACK_BODY, SLACK_SIGNATURE, now=stamp + 301))
    assert "window" in str(check_signature(SLACK_SECRET, SLACK_TIMESTAMP, SLACK_BODY, SLACK_SIGNATURE, now=1.8e9))
    assert check_signature(SLACK_SECRET, SLACK_TIMESTAMP, SLACK_BODY + b" ", SLACK_SIGNATURE, now=stamp) is not None
    assert check_signature("another-secret", SLACK_TIMESTAMP, SLACK_BODY, SLACK_SIGNATURE, now=stamp) is not None
    assert check_signature(SLACK_SECRET, SLACK_TIMESTAMP, SLACK_BODY, "v0=abc", now=stamp) is not None  # short
    assert check_signature(SLACK_SECRET, "yesterday", SLACK_BODY, SLACK_SIGNATURE, now=stamp) is not None


@pytest.mark.parametrize(
    ("url", "params", "expected"),
    [
        (TWILIO_URL, T1, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),  # T1
        (
            TWILIO_URL,
            [(k, "+12349013030" if k in ("From", "Caller") else v) for k, v in T1],
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
        ),  # T2
        ("https://mycompany.com:443/myapp.php?foo=1&bar=2", T1, "kvajT1Ptam85bY51eRf/AJRuM3w="),  # T3
        ("http://mycompany.com:80/myapp.php?foo=1&bar=2", T1, "0ZXoZLH/DfblKGATFgpif+LLRf4="),  # T4
        ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", T1, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),  # T5
        (
            TWILIO_URL,
            [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")],
            "IK+Dwps556ElfBT0I3Rgjkr1wJU=",
        ),  # T6: a repeated key contributes each value, sorted
    ],
)
def test_twilio_published_examples_compute(url: str, params: list[tuple[str, str]], expected: str) -> None:
    assert compute(TWILIO_TOKEN, url, params) == expected


def test_twilio_accepts_the_url_with_or_without_its_default_port_like_its_own_validator() -> None:
    assert valid(TWILIO_TOKEN, TWILIO_URL, T1, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert valid(TWILIO_TOKEN, TWILIO_URL, T1, "kvajT1Ptam85bY51eRf/AJRuM3w=")  # Twilio signed with :443
    assert valid(TWILIO_TOKEN, "https://mycompany.com:443/myapp.php?foo=1&bar=2", T1, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert valid(TWILIO_TOKEN, "http://mycompany.com/myapp.php?foo=1&bar=2", T1, "0ZXoZLH/DfblKGATFgpif+LLRf4=")
    assert valid(TWILIO_TOKEN, "http://mycompany.com:1234/myapp.php?foo=1&bar=2", T1, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=")
    assert not valid(TWILIO_TOKEN, "http://mycompany.com/myapp.php?foo=1&bar=2", T1, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=")
    assert not valid("54321", TWILIO_URL, T1, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not valid(TWILIO_TOKEN, TWILIO_URL, [*T1, ("Extra", "1")], "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not valid(TWILIO_TOKEN, TWILIO_URL, T1, None)
    assert not valid(TWILIO_TOKEN, TWILIO_URL, T1, "RSOY")


def test_twilio_json_bodies_are_signed_through_their_hash() -> None:
    body = b'{"property": "value", "boolean": true}'
    assert body_hash(body) == "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"  # T7
    url = TWILIO_URL + "&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    assert compute(TWILIO_TOKEN, url) == "a9nBmqA0ju/hNViExpshrM61xv4="  # T8
    assert valid(TWILIO_TOKEN, url, [], "a9nBmqA0ju/hNViExpshrM61xv4=", body)
    assert not valid(TWILIO_TOKEN, url, [], "a9nBmqA0ju/hNViExpshrM61xv4=", body + b" ")  # body altered


def _response(
    status: int, body: object, headers: dict[str, str] | None = None, method: str = "chat.postMessage"
) -> httpx.Response:
    request = httpx.Request("POST", f"https://slack.com/api/{method}")
    return httpx.Response(status, json=body, headers=headers, request=request)


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "retry_after"),
    [
        (200, {"ok": True}, None, None, None),
        (429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "30"}, "transient", 30.0),
        (503, {}, None, "transient", None),
        (200, {"ok": False, "error": "ratelimited"}, None, "transient", None),
        (200, {"ok": False, "error": "internal_error"}, None, "transient", None),
        (200, {"ok": False, "error": "fatal_error"}, None, "transient", None),
        (200, {"ok": False, "error": "service_unavailable"}, None, "transient", None),
        (200, {"ok": False, "error": "channel_not_found"}, None, "permanent", None),
        (200, {"ok": False, "error": "not_in_channel"}, None, "permanent", None),
        (200, {"ok": False, "error": "invalid_auth"}, None, "permanent", None),
        (200, {"ok": False, "error": "token_revoked"}, None, "permanent", None),
        (200, {"ok": False, "error": "missing_scope"}, None, "permanent", None),
        (200, {"ok": False, "error": "msg_too_long"}, None, "permanent", None),
    ],
)
def test_slack_errors_are_transient_or_permanent(
    status: int, body: object, headers: dict[str, str] | None, kind: str | None, retry_after: float | None
) -> None:
    failure = classify_slack(_response(status, body, headers))
    assert (failure.kind if failure else None) == kind
    if failure is not None:
        assert failure.retry_after == retry_after
        assert "chat.postMessage" in failure.reason


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (201, None, None),
        (429, 20429, "transient"),
        (500, 20500, "transient"),
        (503, None, "transient"),
        (400, 21211, "permanent"),
        (400, 63016, "permanent"),
        (401, 20003, "permanent"),
    ],
)
def test_twilio_errors_are_transient_or_permanent(status: int, code: int | None, kind: str | None) -> None:
    body = {"code": code, "message": "m", "status": status} if code else {"sid": "SM1"}
    failure = classify_twilio(_response(status, body, method="Messages.json"))
    assert (failure.kind if failure else None) == kind
    if failure is not None and code:
        assert str(code) in failure.reason
