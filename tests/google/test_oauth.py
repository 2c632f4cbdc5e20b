"""Connecting a Google account: the runtime's /oauth/{type}/start and /callback with Google's
flow behind them (offline access, forced consent), tokens stored encrypted on the user's link,
the integration installed if the team had none, and the mailbox watched right away."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import httpx

from integrations.gmail.config import SCOPES
from tests.conftest import TEAM, Results, eventually
from tests.fakes.google import CLIENT_ID, FakeGoogleState
from tests.google.conftest import ANN, USER, install_type, link_user
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker

RETURN_TO = "https://app.example.com/settings/integrations"


async def start(ingress: httpx.AsyncClient, env: dict[str, str], type_: str = "gmail") -> dict[str, str]:
    response = await ingress.get(
        f"/oauth/{type_}/start",
        params={"team_id": TEAM, "user_id": USER, "return_to": RETURN_TO},
        headers={"Authorization": f"Bearer {env['IW_ADMIN_TOKEN']}"},
    )
    assert response.status_code == 200, response.text
    url = urlparse(response.json()["authorize_url"])
    return {k: v[0] for k, v in parse_qs(url.query).items()}


async def test_connecting_gmail_links_the_user_and_watches_the_mailbox(
    runtime: Runtime,
    env: dict[str, str],
    google: FakeGoogleState,
    worker: Worker,
    ingress: httpx.AsyncClient,
    results: Results,
) -> None:
    query = await start(ingress, env)

    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == "https://iw.example.com/oauth/gmail/callback"
    assert query["access_type"] == "offline" and query["prompt"] == "consent" and query["response_type"] == "code"
    assert set(query["scope"].split()) == {"openid", "email", *SCOPES}
    code = google.issue_code(ANN, query["scope"])  # the user consents at Google

    callback = await ingress.get("/oauth/gmail/callback", params={"code": code, "state": query["state"]})

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
    runtime: Runtime, env: dict[str, str], google: FakeGoogleState, ingress: httpx.AsyncClient
) -> None:
    gmail = await install_type(runtime, "gmail")
    link_id, _, _ = await link_user(runtime, google, gmail)
    await runtime.pool.execute(
        "UPDATE integration_user_link SET status = 'needs_reconnect', access_token = NULL, refresh_token = NULL"
        " WHERE id = $1",
        link_id,
    )
    query = await start(ingress, env)

    callback = await ingress.get(
        "/oauth/gmail/callback", params={"code": google.issue_code(ANN, query["scope"]), "state": query["state"]}
    )

    assert callback.status_code == 303 and "status=connected" in callback.headers["location"]
    row = await runtime.pool.fetchrow("SELECT id, status, refresh_token FROM integration_user_link")
    assert row["id"] == link_id and row["status"] == "active" and row["refresh_token"] is not None


async def test_a_consent_without_the_needed_permissions_is_refused(
    runtime: Runtime, env: dict[str, str], google: FakeGoogleState, ingress: httpx.AsyncClient
) -> None:
    query = await start(ingress, env)
    code = google.issue_code(ANN, "openid email https://www.googleapis.com/auth/gmail.readonly")  # compose unticked

    callback = await ingress.get("/oauth/gmail/callback", params={"code": code, "state": query["state"]})

    params = parse_qs(urlparse(callback.headers["location"]).query)
    assert params["status"] == ["error"]
    assert "gmail.compose" in params["reason"][0]
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link") == 0


async def test_a_forged_state_or_a_used_code_is_refused(
    runtime: Runtime, env: dict[str, str], google: FakeGoogleState, ingress: httpx.AsyncClient
) -> None:
    query = await start(ingress, env)
    code = google.issue_code(ANN, query["scope"])

    forged = await ingress.get("/oauth/gmail/callback", params={"code": code, "state": query["state"][:-2] + "xx"})
    assert forged.status_code == 400 and "state" in forged.json()["error"]
    first = await ingress.get("/oauth/gmail/callback", params={"code": code, "state": query["state"]})
    again = await ingress.get("/oauth/gmail/callback", params={"code": code, "state": query["state"]})

    assert "status=connected" in first.headers["location"]
    assert "status=error" in again.headers["location"] and "invalid_grant" in again.headers["location"]
