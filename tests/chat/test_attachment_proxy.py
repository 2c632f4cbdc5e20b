"""The attachment proxy as an attacker would try it: a provider file is never a page of this
service, and a provider's redirect is followed only to the provider's own storage."""

from __future__ import annotations

from typing import Any

import httpx

from tests.chat.conftest import link_directly, post_whatsapp, whatsapp_message
from tests.conftest import Results
from tests.fakes import twilio as fake_twilio
from tests.fakes.twilio import FakeTwilioState
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

ALICE = "+15551230001"


async def attachment_url(
    runtime: Runtime,
    ingress: httpx.AsyncClient,
    results: Results,
    whatsapp_integration: Any,
    server_url: str,
    media: str,
    mime: str,
) -> str:
    await link_directly(runtime, whatsapp_integration, ALICE, "user-alice")
    base = f"{server_url}/2010-04-01/Accounts/{fake_twilio.ACCOUNT_SID}/Messages/MM1/Media"
    await post_whatsapp(ingress, whatsapp_message("look", media=[(f"{base}/{media}", mime)]))
    [attachment] = (await results.wait_for("message.received"))[0]["data"]["attachments"]
    url: str = attachment["url"]
    return url.removeprefix("https://iw.example.com")


async def test_a_file_served_as_html_comes_back_as_a_sandboxed_download(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    twilio: FakeTwilioState,
    whatsapp_integration: Any,
    fake_twilio_server: tuple[FakeTwilioState, str],
) -> None:
    page = b"<html><script>fetch('/integrations').then(r => r.text()).then(steal)</script></html>"
    twilio.media["ME1"] = (page, "text/html")
    url = await attachment_url(
        runtime, ingress, results, whatsapp_integration, fake_twilio_server[1], "ME1", "text/html"
    )

    fetched = await ingress.get(url)

    assert fetched.status_code == 200 and fetched.content == page
    assert fetched.headers["content-disposition"].startswith("attachment;")
    assert fetched.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in fetched.headers["content-security-policy"]


async def test_a_redirect_off_the_providers_hosts_is_not_followed(
    runtime: Runtime,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
    twilio: FakeTwilioState,
    whatsapp_integration: Any,
    fake_twilio_server: tuple[FakeTwilioState, str],
) -> None:
    url = await attachment_url(
        runtime, ingress, results, whatsapp_integration, fake_twilio_server[1], "ME9", "image/png"
    )
    twilio.media_redirect = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"

    fetched = await ingress.get(url)

    assert fetched.status_code == 502
    assert "not allowed (169.254.169.254)" in fetched.json()["error"]
