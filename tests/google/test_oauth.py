"""Connecting a Google account: the runtime's /oauth/{type}/start and /callback with Google's
flow behind them (offline access, forced consent), tokens stored encrypted on the user's link,
the integration installed if the team had none, and the mailbox watched right away."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlparse

import httpx

from integrations.gmail.config import SCOPES
from tests.conftest import TEAM, Results, eventually
from tests.fakes.google import CLIENT_ID, FakeGoogleState
from tests.google.conftest import ANN, USER, install_type, link_user
from worker.cli.serve import create_app
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

RETURN_TO = "https://app.example.com/settings/integrations"


async def sign_in_link(ingress: httpx.AsyncClient, env: dict[str, str], type_: str = "gmail") -> str:
    """What the platform's backend gets from /start and sends the user's browser to."""
    response = await ingress.get(
        f"/oauth/{type_}/start",
        params={"team_id": TEAM, "user_id": USER, "return_to": RETURN_TO},
        headers={"Authorization": f"Bearer {env['IW_ADMIN_TOKEN']}"},
    )
    assert response.status_code == 200, response.text
    link: str = response.json()["authorize_url"]
    assert link.startswith(f"https://iw.example.com/oauth/{type_}/authorize?")
    return link


async def follow(browser: httpx.AsyncClient, link: str) -> dict[str, str]:
    """The browser follows the link: on to Google's consent page; its query."""
    response = await browser.get(link)
    assert response.status_code == 303, response.text
    url = urlparse(response.headers["location"])
    return {k: v[0] for k, v in parse_qs(url.query).items()}


async def start(
    ingress: httpx.AsyncClient, browser: httpx.AsyncClient, env: dict[str, str], type_: str = "gmail"
) -> dict[str, str]:
    return await follow(browser, await sign_in_link(ingress, env, type_))


def consent(google: FakeGoogleState, query: dict[str, str], address: str = ANN) -> str:
    """The user consents at Google: a code bound to the flow's PKCE challenge."""
    return google.issue_code(address, query["scope"], challenge=query["code_challenge"])


async def test_connecting_gmail_links_the_user_and_watches_the_mailbox(
    runtime: Runtime,
    env: dict[str, str],
    google: FakeGoogleState,
    worker: Worker,
    ingress: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    results: Results,
) -> None:
    query = await start(ingress, browser, env)

    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == "https://iw.example.com/oauth/gmail/callback"
    assert query["access_type"] == "offline" and query["prompt"] == "consent" and query["response_type"] == "code"
    assert set(query["scope"].split()) == {"openid", "email", *SCOPES}
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    code = consent(google, query)

    callback = await browser.get("/oauth/gmail/callback", params={"code": code, "state": query["state"]})

    assert callback.status_code == 303
    back = urlparse(callback.headers["location"])
    assert back.geturl().startswith(RETURN_TO)
    params = {k: v[0] for k, v in parse_qs(back.query).items()}
    assert params["status"] == "connected" and params["type"] == "gmail"
    [installed] = await results.wait_for("integration.installed")
    assert installed["data"]["integration_id"] == params["integration_id"] and installed["data"]["source"] == "oauth"
    link = await runtime.pool.fetchrow(
        "SELECT * FROM integration_user_link WHERE integration_id = $1", params["integration_id"]
    )
    assert link["user_id"] == USER and link["team_id"] == TEAM and link["external_user_id"] == ANN
    assert link["integration_type"] == "gmail" and link["status"] == "active"
    [(access, _)] = [(t, v) for t, v in google.access_tokens.items() if v[0] == ANN]
    assert link["access_token"].startswith("enc:v1:") and access not in link["access_token"]
    assert runtime.secrets.decrypt(link["access_token"]) == access
    assert link["token_expires_at"] is not None
    await eventually(lambda: google.mailbox(ANN).watch_calls == 1)
    cursor = await eventually(
        lambda: runtime.pool.fetchval("SELECT history_id FROM gmail_mailboxes WHERE link_id = $1", link["id"])
    )
    assert int(cursor) == google.mailbox(ANN).history_id


async def test_reconnecting_revives_a_link_that_needed_it(
    runtime: Runtime,
    env: dict[str, str],
    google: FakeGoogleState,
    ingress: httpx.AsyncClient,
    browser: httpx.AsyncClient,
) -> None:
    gmail = await install_type(runtime, "gmail")
    link_id, _, _ = await link_user(runtime, google, gmail)
    await runtime.pool.execute(
        "UPDATE integration_user_link SET status = 'needs_reconnect', access_token = NULL, refresh_token = NULL"
        " WHERE id = $1",
        link_id,
    )
    query = await start(ingress, browser, env)

    callback = await browser.get(
        "/oauth/gmail/callback", params={"code": consent(google, query), "state": query["state"]}
    )

    assert callback.status_code == 303 and "status=connected" in callback.headers["location"]
    row = await runtime.pool.fetchrow("SELECT id, status, refresh_token FROM integration_user_link")
    assert row["id"] == link_id and row["status"] == "active" and row["refresh_token"] is not None


async def test_a_consent_without_the_needed_permissions_is_refused(
    runtime: Runtime,
    env: dict[str, str],
    google: FakeGoogleState,
    ingress: httpx.AsyncClient,
    browser: httpx.AsyncClient,
) -> None:
    query = await start(ingress, browser, env)
    code = google.issue_code(  # compose unticked
        ANN, "openid email https://www.googleapis.com/auth/gmail.readonly", challenge=query["code_challenge"]
    )

    callback = await browser.get("/oauth/gmail/callback", params={"code": code, "state": query["state"]})

    params = parse_qs(urlparse(callback.headers["location"]).query)
    assert params["status"] == ["error"]
    assert "gmail.compose" in params["reason"][0]
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link") == 0


async def test_a_forged_state_is_refused_and_a_refused_code_leaves_the_flow_usable(
    runtime: Runtime,
    env: dict[str, str],
    google: FakeGoogleState,
    ingress: httpx.AsyncClient,
    browser: httpx.AsyncClient,
) -> None:
    query = await start(ingress, browser, env)
    code = consent(google, query)

    forged = await browser.get("/oauth/gmail/callback", params={"code": code, "state": query["state"][:-2] + "xx"})
    assert forged.status_code == 400 and "state" in forged.json()["error"]
    wrong = await browser.get("/oauth/gmail/callback", params={"code": "made-up", "state": query["state"]})
    assert "status=error" in wrong.headers["location"] and "invalid_grant" in wrong.headers["location"]
    first = await browser.get("/oauth/gmail/callback", params={"code": code, "state": query["state"]})
    assert "status=connected" in first.headers["location"]


async def test_a_state_is_good_once_even_with_another_code(
    runtime: Runtime,
    env: dict[str, str],
    google: FakeGoogleState,
    ingress: httpx.AsyncClient,
    browser: httpx.AsyncClient,
) -> None:
    query = await start(ingress, browser, env)
    first = await browser.get("/oauth/gmail/callback", params={"code": consent(google, query), "state": query["state"]})
    assert "status=connected" in first.headers["location"]

    # whoever saw the state (a URL, a log, a proxy) brings a code of their own Google account
    again = await browser.get(
        "/oauth/gmail/callback", params={"code": consent(google, query, "mallory@example.com"), "state": query["state"]}
    )

    assert again.status_code == 400 and "already completed" in again.json()["error"]
    links = await runtime.pool.fetch("SELECT external_user_id FROM integration_user_link")
    assert [r["external_user_id"] for r in links] == [ANN]


async def test_a_second_callback_during_the_exchange_is_answered_at_once_and_the_first_completes(
    runtime: Runtime,
    env: dict[str, str],
    google: FakeGoogleState,
    ingress: httpx.AsyncClient,
    browser: httpx.AsyncClient,
) -> None:
    query = await start(ingress, browser, env)
    params = {"code": consent(google, query), "state": query["state"]}
    google.code_delay = 1.0  # Google is slow to answer the code exchange
    first = asyncio.create_task(browser.get("/oauth/gmail/callback", params=params))
    await eventually(lambda: runtime.pool.fetchval("SELECT used_at IS NOT NULL FROM oauth_flows"))

    second = await browser.get("/oauth/gmail/callback", params=params)

    assert not first.done()  # answered while the first still waits for Google: no lock held meanwhile
    assert second.status_code == 400 and "already completed" in second.json()["error"]
    assert (await first).status_code == 303 and "status=connected" in (await first).headers["location"]
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link") == 1


async def test_the_callback_must_come_to_the_browser_that_started(
    runtime: Runtime, env: dict[str, str], google: FakeGoogleState, ingress: httpx.AsyncClient
) -> None:
    link = await sign_in_link(ingress, env)
    app = httpx.ASGITransport(app=create_app(runtime))
    async with (
        httpx.AsyncClient(transport=app, base_url="https://iw.example.com") as users,
        httpx.AsyncClient(transport=app, base_url="https://iw.example.com") as attackers,
    ):
        query = await follow(users, link)
        # the sign-in link works once: a second browser following it gets nothing
        second = await attackers.get(link)
        assert second.status_code == 400 and "already used" in second.json()["error"]
        # the state in another browser (no cookie of this flow): refused, even with a good code
        stolen = await attackers.get(
            "/oauth/gmail/callback",
            params={"code": consent(google, query, "mallory@example.com"), "state": query["state"]},
        )
        assert stolen.status_code == 400 and "another browser" in stolen.json()["error"]
        assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link") == 0
        # the user's own browser completes it
        done = await users.get(
            "/oauth/gmail/callback", params={"code": consent(google, query), "state": query["state"]}
        )
        assert "status=connected" in done.headers["location"]


async def test_the_code_exchange_needs_the_flows_pkce_verifier(
    runtime: Runtime,
    env: dict[str, str],
    google: FakeGoogleState,
    ingress: httpx.AsyncClient,
    browser: httpx.AsyncClient,
) -> None:
    query = await start(ingress, browser, env)
    other = await start(ingress, browser, env)  # a code obtained for another flow's challenge

    crossed = await browser.get(
        "/oauth/gmail/callback", params={"code": consent(google, other), "state": query["state"]}
    )

    assert "status=error" in crossed.headers["location"] and "invalid_grant" in crossed.headers["location"]
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link") == 0
