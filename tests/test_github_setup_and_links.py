"""GitHub through the runtime's OAuth flow: a team installs the App (GitHub's setup redirect,
tied to the team by the flow's state and checked with GitHub), and people link their own GitHub
account (user OAuth with PKCE, tokens encrypted and refreshed), which maps them on pull requests
and lets the `comment` action comment as them."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import structlog

from schemas.envelope import Envelope
from tests.conftest import INSTALLATION_ID, TEAM, Results, eventually, pull_request_payload, signed_github
from tests.fakes.github import FakeGitHubState
from tests.fakes.github_accounts import APP_SLUG, CLIENT_ID, CLIENT_SECRET
from worker.cli.serve import create_app
from worker.platform.install import InstallRequest, install, owned_row, readable, update
from worker.platform.user_links import unlink
from worker.runtime.runtime import Runtime
from worker.runtime.worker import Worker
from worker.sdk import NewLink, TokenGrant

RETURN_TO = "https://app.example.com/settings/integrations"
CALLBACK = "https://iw.example.com/oauth/github/callback"
USER = "user-ann"
ANN_ID, ANN = 501, "ann-gh"


@pytest.fixture
def client_credentials() -> bool:
    """Whether the App's client credentials are configured (a test parametrizes it off)."""
    return True


@pytest.fixture
def env(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    fake_github_server: tuple[FakeGitHubState, str],
    client_credentials: bool,
) -> dict[str, str]:
    extra = {"IW_GITHUB_WEB_URL": fake_github_server[1], "IW_GITHUB_APP_SLUG": APP_SLUG}
    if client_credentials:
        extra |= {"IW_GITHUB_CLIENT_ID": CLIENT_ID, "IW_GITHUB_CLIENT_SECRET": CLIENT_SECRET}
    else:
        monkeypatch.delenv("IW_GITHUB_CLIENT_ID", raising=False)
        monkeypatch.delenv("IW_GITHUB_CLIENT_SECRET", raising=False)
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    return {**env, **extra}


@pytest.fixture
def accounts(github: FakeGitHubState) -> Any:
    github.accounts.setup_url = CALLBACK  # the App's setup and callback URL, as configured on GitHub
    github.accounts.next_installation = INSTALLATION_ID
    github.accounts.code_on_install = True  # the App requests user authorization during installation
    github.accounts.people[ANN_ID] = ANN
    github.accounts.installations_of[ANN_ID] = [INSTALLATION_ID]
    github.accounts.signed_in = ANN_ID
    return github.accounts


async def sign_in_link(ingress: httpx.AsyncClient, env: dict[str, str], **params: str) -> str:
    """What the platform's backend gets from /start and sends the user's browser to."""
    response = await ingress.get(
        "/oauth/github/start",
        params={"team_id": TEAM, "return_to": RETURN_TO, **params},
        headers={"Authorization": f"Bearer {env['IW_ADMIN_TOKEN']}"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["authorize_url"])


async def to_github(browser: httpx.AsyncClient, link: str) -> str:
    """The browser follows the sign-in link: on to GitHub."""
    response = await browser.get(link)
    assert response.status_code == 303, response.text
    return response.headers["location"]


async def at_github(url: str) -> str:
    """The person clicks on GitHub's page (Install, Authorize): where GitHub sends the browser back."""
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(CALLBACK + "?")
    return location


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


async def github_rows(runtime: Runtime) -> list[Any]:
    return list(await runtime.pool.fetch("SELECT * FROM integrations WHERE type = 'github'"))


# --- A: the App's setup callback ----------------------------------------------------------------------


async def test_the_setup_callback_installs_for_the_team_that_started_and_loads_its_repositories(
    runtime: Runtime,
    env: dict[str, str],
    accounts: Any,
    ingress: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    results: Results,
) -> None:
    at_install_page = await to_github(browser, await sign_in_link(ingress, env))
    assert at_install_page.startswith(f"{env['IW_GITHUB_WEB_URL']}/apps/{APP_SLUG}/installations/new?state=")
    back = await at_github(at_install_page)
    assert query_of(back)["installation_id"] == str(INSTALLATION_ID) and query_of(back)["code"]

    done = await browser.get(back)

    assert done.status_code == 303 and done.headers["location"].startswith(RETURN_TO + "?")
    params = query_of(done.headers["location"])
    assert params["status"] == "connected" and params["type"] == "github"
    [row] = await github_rows(runtime)
    assert row["id"] == params["integration_id"] and row["team_id"] == TEAM
    assert row["external_team_id"] == str(INSTALLATION_ID) and row["status"] == "active"
    repos = await runtime.pool.fetch("SELECT full_name, team_id FROM github_repositories ORDER BY full_name")
    assert [(r["full_name"], r["team_id"]) for r in repos] == [("acme/app", TEAM), ("acme/docs", TEAM)]
    [installed] = await results.wait_for("integration.installed")
    assert installed["data"]["source"] == "oauth" and installed["data"]["is_new_install"] is True
    # the installer was verified; a flow without user_id links nobody
    assert [e["grant_type"] for e in accounts.exchanges] == ["authorization_code"]
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link") == 0

    # the same installation again (installed once more, or its setup revisited): still one row,
    # and the team's other settings as they were
    await update(runtime, row["id"], TEAM, {"taskComments": False}, source="test")
    again = await browser.get(await at_github(await to_github(browser, await sign_in_link(ingress, env))))
    assert query_of(again.headers["location"])["status"] == "connected"
    assert [r["id"] for r in await github_rows(runtime)] == [row["id"]]
    config = readable(runtime, await owned_row(runtime, row["id"], TEAM)).config
    assert config.model_dump(by_alias=True) == {"installationId": INSTALLATION_ID, "taskComments": False}


@pytest.mark.parametrize("installation_id", ["\u00b2", "12\u00b3", "0", "-5", "1e3", "12345678901234567890"])
async def test_a_setup_redirect_with_a_malformed_installation_id_is_an_error_and_installs_nothing(
    runtime: Runtime,
    env: dict[str, str],
    accounts: Any,
    ingress: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    installation_id: str,
) -> None:
    back = await at_github(await to_github(browser, await sign_in_link(ingress, env)))

    done = await browser.get("/oauth/github/callback", params={**query_of(back), "installation_id": installation_id})

    assert done.status_code == 303 and done.headers["location"].startswith(RETURN_TO + "?")
    params = query_of(done.headers["location"])
    assert params["status"] == "error" and "no installation id" in params["reason"]
    assert await github_rows(runtime) == []


async def test_a_forged_expired_reused_or_foreign_state_installs_nothing(
    runtime: Runtime, env: dict[str, str], accounts: Any, ingress: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    back = await at_github(await to_github(browser, await sign_in_link(ingress, env)))
    state = query_of(back)["state"]

    forged = await browser.get("/oauth/github/callback", params={**query_of(back), "state": state[:-2] + "xx"})
    assert forged.status_code == 400 and "state" in forged.json()["error"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url="https://iw.example.com"
    ) as another_browser:
        stolen = await another_browser.get(back)
    assert stolen.status_code == 400 and "another browser" in stolen.json()["error"]
    assert await github_rows(runtime) == []

    done = await browser.get(back)
    assert query_of(done.headers["location"])["status"] == "connected"
    reused = await browser.get(back)
    assert reused.status_code == 400 and "already completed" in reused.json()["error"]
    assert len(await github_rows(runtime)) == 1

    late = await at_github(await to_github(browser, await sign_in_link(ingress, env)))
    await runtime.pool.execute("UPDATE oauth_flows SET expires_at = now() - interval '1 second' WHERE used_at IS NULL")
    expired = await browser.get(late)
    assert expired.status_code == 400 and "expired" in expired.json()["error"]


@pytest.mark.parametrize("client_credentials", [False])  # the existence check alone
async def test_an_installation_github_does_not_know_is_an_error_and_installs_nothing(
    runtime: Runtime, env: dict[str, str], accounts: Any, ingress: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    accounts.next_installation = 999  # typed by hand, or of another App
    accounts.code_on_install = False

    done = await browser.get(await at_github(await to_github(browser, await sign_in_link(ingress, env))))

    assert done.status_code == 303 and done.headers["location"].startswith(RETURN_TO + "?")
    params = query_of(done.headers["location"])
    assert params["status"] == "error" and "no installation 999" in params["reason"]
    assert await github_rows(runtime) == []
    assert await runtime.pool.fetchval("SELECT count(*) FROM github_repositories") == 0

    # an installation an owner must still approve installs nothing either
    back = await at_github(await to_github(browser, await sign_in_link(ingress, env)))
    pending = await browser.get("/oauth/github/callback", params={**query_of(back), "setup_action": "request"})
    assert query_of(pending.headers["location"])["status"] == "error"
    assert "approve" in query_of(pending.headers["location"])["reason"]
    assert await github_rows(runtime) == []


async def test_an_installation_the_installer_cannot_access_is_refused_and_installs_nothing(
    runtime: Runtime, env: dict[str, str], accounts: Any, ingress: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    # a team admin types into the setup redirect the id of another account's installation of the App
    # (it exists, and no team holds it yet): GitHub does not list it among the admin's installations
    accounts.installations_of[ANN_ID] = [77]
    back = await at_github(await to_github(browser, await sign_in_link(ingress, env, user_id=USER, install="true")))

    done = await browser.get(back)

    params = query_of(done.headers["location"])
    assert params["status"] == "error"
    assert f"installation {INSTALLATION_ID} is not one the GitHub account {ANN} can access" in params["reason"]
    assert await github_rows(runtime) == []
    assert await runtime.pool.fetchval("SELECT count(*) FROM github_repositories") == 0
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link") == 0
    assert "ghu_" not in params["reason"]


async def test_a_verified_installer_installs_and_is_linked_as_the_flows_user(
    runtime: Runtime, env: dict[str, str], accounts: Any, ingress: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    # Ann reaches many installations of the App: hers is on the second page of /user/installations
    accounts.installations_of[ANN_ID] = [*range(1, 121), INSTALLATION_ID]
    at_install_page = await to_github(browser, await sign_in_link(ingress, env, user_id=USER, install="true"))
    assert at_install_page.startswith(f"{env['IW_GITHUB_WEB_URL']}/apps/{APP_SLUG}/installations/new?state=")

    done = await browser.get(await at_github(at_install_page))

    params = query_of(done.headers["location"])
    assert params["status"] == "connected", params
    [row] = await github_rows(runtime)
    assert row["id"] == params["integration_id"] and row["external_team_id"] == str(INSTALLATION_ID)
    link = await runtime.pool.fetchrow("SELECT * FROM integration_user_link")
    assert link["integration_id"] == row["id"] and link["user_id"] == USER and link["team_id"] == TEAM
    assert link["external_user_id"] == str(ANN_ID) and link["external_user_name"] == ANN
    [(access, _)] = list(accounts.access.items())
    assert link["access_token"].startswith("enc:v1:") and runtime.secrets.decrypt(link["access_token"]) == access
    [exchange] = accounts.exchanges
    assert exchange["grant_type"] == "authorization_code" and exchange["client_secret"] == CLIENT_SECRET

    refused = await ingress.get(
        "/oauth/github/start",
        params={"team_id": TEAM, "user_id": USER, "install": "maybe"},
        headers={"Authorization": f"Bearer {env['IW_ADMIN_TOKEN']}"},
    )
    assert refused.status_code == 400 and "install" in refused.json()["error"]


async def test_with_client_credentials_a_setup_redirect_without_a_valid_code_installs_nothing(
    runtime: Runtime, env: dict[str, str], accounts: Any, ingress: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    accounts.code_on_install = False  # the App does not request user authorization during installation

    done = await browser.get(await at_github(await to_github(browser, await sign_in_link(ingress, env))))

    params = query_of(done.headers["location"])
    assert params["status"] == "error" and "no authorization code" in params["reason"]
    assert "user authorization (OAuth) during installation" in params["reason"]
    assert await github_rows(runtime) == []

    # a code made up (or spent) is refused by GitHub, and nothing is installed either
    accounts.code_on_install = True
    back = await at_github(await to_github(browser, await sign_in_link(ingress, env)))
    forged = await browser.get("/oauth/github/callback", params={**query_of(back), "code": "0123456789abcdef0123"})
    params = query_of(forged.headers["location"])
    assert params["status"] == "error" and "bad_verification_code" in params["reason"]
    assert await github_rows(runtime) == []


@pytest.mark.parametrize("client_credentials", [False])
async def test_without_client_credentials_the_installation_is_only_checked_to_exist_with_a_warning(
    runtime: Runtime, env: dict[str, str], accounts: Any, ingress: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    accounts.installations_of[ANN_ID] = []  # not asked: nothing proves who installed
    back = await at_github(await to_github(browser, await sign_in_link(ingress, env, user_id=USER, install="true")))

    with structlog.testing.capture_logs() as logs:
        done = await browser.get(back)

    assert query_of(done.headers["location"])["status"] == "connected"
    assert len(await github_rows(runtime)) == 1
    assert accounts.exchanges == []  # the code is not used
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link") == 0
    warnings = [e for e in logs if e["log_level"] == "warning" and "not verified" in e["event"]]
    assert len(warnings) == 1 and warnings[0]["installation_id"] == INSTALLATION_ID


async def test_a_setup_redirect_without_state_goes_back_to_the_platform(
    runtime: Runtime, env: dict[str, str], accounts: Any, browser: httpx.AsyncClient
) -> None:
    # a user changed the installation's repositories on github.com: GitHub sends no state
    response = await browser.get(
        "/oauth/github/callback", params={"installation_id": str(INSTALLATION_ID), "setup_action": "update"}
    )

    assert response.status_code == 303
    assert response.headers["location"] == "https://app.example.com?type=github"
    assert await github_rows(runtime) == []


# --- B: people's GitHub accounts --------------------------------------------------------------------


async def test_a_person_links_their_github_account_with_the_tokens_encrypted(
    runtime: Runtime,
    env: dict[str, str],
    accounts: Any,
    github_integration: Any,
    ingress: httpx.AsyncClient,
    browser: httpx.AsyncClient,
) -> None:
    at_consent = await to_github(browser, await sign_in_link(ingress, env, user_id=USER))
    assert at_consent.startswith(f"{env['IW_GITHUB_WEB_URL']}/login/oauth/authorize?")
    asked = query_of(at_consent)
    assert asked["client_id"] == CLIENT_ID and asked["redirect_uri"] == CALLBACK
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43

    done = await browser.get(await at_github(at_consent))

    params = query_of(done.headers["location"])
    assert params["status"] == "connected" and params["integration_id"] == github_integration.id
    link = await runtime.pool.fetchrow("SELECT * FROM integration_user_link")
    assert link["user_id"] == USER and link["team_id"] == TEAM and link["integration_type"] == "github"
    assert link["external_user_id"] == str(ANN_ID) and link["external_user_name"] == ANN
    [(access, _)] = list(accounts.access.items())
    [refresh] = list(accounts.refresh)
    for column, plain in (("access_token", access), ("refresh_token", refresh)):
        assert link[column].startswith("enc:v1:") and plain not in link[column]
        assert runtime.secrets.decrypt(link[column]) == plain
    assert 7.9 * 3600 < link["token_expires_at"].timestamp() - time.time() <= 8 * 3600
    [exchange] = accounts.exchanges
    assert exchange["grant_type"] == "authorization_code" and exchange["redirect_uri"] == CALLBACK
    assert len(exchange["code_verifier"]) >= 43  # checked against the challenge by the fake
    assert len(await github_rows(runtime)) == 1  # the link installed nothing more


async def test_the_code_exchange_needs_the_flows_pkce_verifier(
    runtime: Runtime,
    env: dict[str, str],
    accounts: Any,
    github_integration: Any,
    ingress: httpx.AsyncClient,
    browser: httpx.AsyncClient,
) -> None:
    mine = await at_github(await to_github(browser, await sign_in_link(ingress, env, user_id=USER)))
    other = await at_github(await to_github(browser, await sign_in_link(ingress, env, user_id=USER)))

    # the code obtained for the other flow's challenge, with this flow's state (and verifier)
    crossed = await browser.get(
        "/oauth/github/callback", params={"code": query_of(other)["code"], "state": query_of(mine)["state"]}
    )

    params = query_of(crossed.headers["location"])
    assert params["status"] == "error" and "bad_verification_code" in params["reason"]
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link") == 0
    assert "ghu_" not in params["reason"] and "ghr_" not in params["reason"]  # no token in the answer


async def test_a_link_needs_the_team_to_have_installed_the_app(
    runtime: Runtime, env: dict[str, str], accounts: Any, ingress: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    done = await browser.get(await at_github(await to_github(browser, await sign_in_link(ingress, env, user_id=USER))))

    params = query_of(done.headers["location"])
    assert params["status"] == "error" and "install the GitHub App" in params["reason"]
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link") == 0


async def link_ann(
    runtime: Runtime, accounts: Any, integration: Any, *, expires_in: float = 28800, team_id: str = TEAM
) -> str:
    """A finished consent of Ann's: her tokens stored on her link (encrypted)."""
    access, refresh = accounts.grant(ANN_ID, expires_in=max(expires_in, 1))
    link_id: str = await runtime.tokens.save(
        NewLink(
            team_id=team_id,
            integration_id=integration.id,
            integration_type="github",
            user_id=USER,
            external_user_id=str(ANN_ID),
            external_user_name=ANN,
            grant=TokenGrant(access, expires_in, refresh),
        )
    )
    return link_id


async def comment_as(runtime: Runtime, user_id: str, body: str, *, repository: str = "acme/app") -> Envelope:
    envelope = Envelope(
        id=f"test:{uuid.uuid4()}",
        type="github",
        kind="command",
        name="comment",
        team_id=TEAM,
        headers={"x-user-id": user_id},
        payload={"repository": repository, "issue_number": 7, "body": body},
    )
    await runtime.publish_envelope(envelope)
    return envelope


async def test_comment_acts_as_the_linked_user_refreshing_an_expired_token_else_as_the_app(
    runtime: Runtime, worker: Worker, accounts: Any, github: FakeGitHubState, github_integration: Any
) -> None:
    link_id = await link_ann(runtime, accounts, github_integration, expires_in=60)  # within the refresh margin
    [(old_access, _)] = list(accounts.access.items())
    [old_refresh] = list(accounts.refresh)

    await comment_as(runtime, USER, "Looks good to me.")
    await comment_as(runtime, "user-bob", "Deployed.")  # bob has not linked GitHub

    await eventually(lambda: len(github.comments) == 2)
    by_body = {c["body"].split("\n")[0]: c for c in github.comments}
    assert by_body["Looks good to me."]["user"]["login"] == ANN
    assert by_body["Looks good to me."]["installation_id"] is None
    assert by_body["Deployed."]["installation_id"] == INSTALLATION_ID
    assert by_body["Deployed."]["user"]["type"] == "Bot"
    [refreshed] = [e for e in accounts.exchanges if e.get("grant_type") == "refresh_token"]
    assert refreshed["refresh_token"] == old_refresh and refreshed["client_secret"] == CLIENT_SECRET
    row = await runtime.pool.fetchrow("SELECT * FROM integration_user_link WHERE id = $1", link_id)
    assert runtime.secrets.decrypt(row["access_token"]) != old_access
    assert runtime.secrets.decrypt(row["refresh_token"]) in accounts.refresh  # the rotated one, saved
    assert row["token_expires_at"].timestamp() - time.time() > 7.9 * 3600
    logged = await eventually(
        lambda: runtime.pool.fetchval(
            "SELECT count(*) FROM integration_logs WHERE key = 'action_call' AND integration_user_link_id = $1",
            link_id,
        )
    )
    assert logged == 1


async def posted_as(runtime: Runtime, envelope: Envelope) -> Any:
    """The `comment` action's answer to this command, once stored."""
    body = await eventually(
        lambda: runtime.pool.fetchval(
            "SELECT body FROM action_results WHERE id = $1 AND status = 'succeeded'", envelope.id
        )
    )
    return body["output"]["posted_as"]


async def test_comment_acts_as_the_user_only_on_the_teams_installations_repositories(
    runtime: Runtime, worker: Worker, accounts: Any, github: FakeGitHubState, github_integration: Any
) -> None:
    """Ann's token also reaches another installation of the App (another team's): the action
    does not comment there as her."""
    github.installations[4242] = [{"id": 9100, "full_name": "other/secret", "private": True}]
    accounts.installations_of[ANN_ID] = [INSTALLATION_ID, 4242]
    await link_ann(runtime, accounts, github_integration)

    envelope = await comment_as(runtime, USER, "Hello there.", repository="other/secret")

    assert await posted_as(runtime, envelope) == "app"
    [comment] = github.comments
    assert comment["user"]["type"] == "Bot" and comment["installation_id"] == INSTALLATION_ID


async def test_comment_falls_back_to_the_app_where_github_refuses_the_users_token(
    runtime: Runtime, worker: Worker, accounts: Any, github: FakeGitHubState, github_integration: Any
) -> None:
    accounts.installations_of[ANN_ID] = []  # Ann no longer reaches the installation's repositories
    await link_ann(runtime, accounts, github_integration)

    envelope = await comment_as(runtime, USER, "Looks good to me.")

    assert await posted_as(runtime, envelope) == "app"
    [comment] = github.comments
    assert comment["user"]["type"] == "Bot" and comment["installation_id"] == INSTALLATION_ID


async def test_a_users_comment_whose_answer_was_lost_is_posted_once_and_answered_as_theirs(
    runtime: Runtime, worker: Worker, accounts: Any, github: FakeGitHubState, github_integration: Any
) -> None:
    await link_ann(runtime, accounts, github_integration)
    github.fail_after_storing.append(502)  # GitHub stored Ann's comment, the answer says otherwise

    envelope = await comment_as(runtime, USER, "Looks good to me.")

    assert await posted_as(runtime, envelope) == "user"  # the repeat found it: Ann's, not the App's
    await worker.wait_idle()
    [comment] = github.comments
    assert comment["user"]["login"] == ANN
    assert github.comment_attempts == 1 and github.comment_listings >= 1


async def test_pull_request_people_map_to_the_platform_users_who_linked_them(
    runtime: Runtime,
    worker: Worker,
    accounts: Any,
    github_integration: Any,
    ingress: httpx.AsyncClient,
    results: Results,
) -> None:
    await link_ann(runtime, accounts, github_integration)
    access, refresh = accounts.grant(503)
    await runtime.tokens.save(  # Carol linked too
        NewLink(
            team_id=TEAM,
            integration_id=github_integration.id,
            integration_type="github",
            user_id="user-carol",
            external_user_id="503",
            external_user_name="carol-gh",
            grant=TokenGrant(access, 28800, refresh),
        )
    )
    payload = pull_request_payload(title="Fixes ABC-12", body="", reviewers=())
    pr = payload["pull_request"]
    # Ann renamed her GitHub account since she linked it: still Ann, by her GitHub id
    pr["requested_reviewers"] = [{"login": "ann-renamed", "id": ANN_ID}, {"login": "bob-gh", "id": 502}]
    # Carol renamed hers too and someone else took her old login: not Carol
    pr["assignees"] = [{"login": "carol-gh", "id": 999}]
    # the author is looked up only as an assignee or reviewer (no query of its own): Carol is neither
    pr["user"] = {"login": "carol-new", "id": 503}
    body, headers = signed_github("pull_request", payload)

    assert (await ingress.post("/webhooks/github", content=body, headers=headers)).status_code == 202

    [event] = await results.wait_for("task.status_change")
    data = event["data"]
    assert data["author"] == {"login": "carol-new", "external_user_id": "503", "user_id": None}
    assert data["reviewers"] == [
        {"login": "ann-renamed", "external_user_id": str(ANN_ID), "user_id": USER},
        {"login": "bob-gh", "external_user_id": "502", "user_id": None},
    ]
    assert data["assignees"] == [{"login": "carol-gh", "external_user_id": "999", "user_id": None}]
    row = await runtime.pool.fetchrow("SELECT reviewers, assignees FROM github_pull_requests")
    assert [r["userId"] for r in row["reviewers"]] == [USER, None]
    assert [a["userId"] for a in row["assignees"]] == [None]


async def test_unlinking_revokes_the_persons_authorization_at_github(
    runtime: Runtime, accounts: Any, github_integration: Any, results: Results
) -> None:
    link_id = await link_ann(runtime, accounts, github_integration)

    unlinked = await unlink(runtime, github_integration.id, TEAM, link_id, source="cli")

    assert unlinked.revoked is True
    assert accounts.revoked == [ANN_ID] and accounts.access == {} and accounts.refresh == {}
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link") == 0
    [event] = await results.wait_for("integration.user_unlinked")
    assert event["data"]["revoked"] is True and event["data"]["external_user_id"] == str(ANN_ID)


async def test_unlinking_in_one_team_revokes_only_that_links_token_while_another_team_has_the_account(
    runtime: Runtime, accounts: Any, github: FakeGitHubState, github_integration: Any, results: Results
) -> None:
    github.installations[4243] = [{"id": 9200, "full_name": "beta/site", "private": False}]
    other_team, _ = await install(runtime, InstallRequest("github", "team-2", {"installationId": 4243}, source="test"))
    await link_ann(runtime, accounts, other_team, team_id="team-2")
    [(theirs, _)] = list(accounts.access.items())
    link_id = await link_ann(runtime, accounts, github_integration, expires_in=60)  # refreshed before revoking

    unlinked = await unlink(runtime, github_integration.id, TEAM, link_id, source="cli")

    assert unlinked.revoked is True
    assert accounts.revoked == []  # the authorization stays: the other team's link is Ann's too
    [revoked] = accounts.revoked_tokens
    assert accounts.user_of(revoked) is None
    assert [e["grant_type"] for e in accounts.exchanges] == ["refresh_token"]  # this link's pair only
    assert accounts.user_of(theirs) == ANN_ID  # neither the refresh nor the revocation spent it
    assert await runtime.pool.fetchval("SELECT count(*) FROM integration_user_link WHERE team_id = 'team-2'") == 1
    [event] = await results.wait_for("integration.user_unlinked")
    assert event["data"]["revoked"] is True
