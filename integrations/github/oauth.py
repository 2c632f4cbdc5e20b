"""Connecting GitHub through the runtime's generic OAuth flow (worker/platform/oauth.py): the
flow's state is signed, expires, is good once and only in the browser that started it.

Team install (the flow started without `user_id`, or with `install=true`)
    The browser goes to the App's page `{IW_GITHUB_WEB_URL}/apps/<slug>/installations/new` with
    the flow's state. After "Install", GitHub sends it to this service's
    `/oauth/github/callback` with `installation_id`, `setup_action` and the state, and, as the
    App requests user authorization during installation, a `code`. `installation_id` is only a
    query parameter, so with the App's client credentials configured the code is required and
    proves who installed: it is exchanged for the installer's user token, and the installation
    must be one they can access (`GET /user/installations`), else nothing is installed. Without
    the client credentials only the installation's existence is checked (a warning says the
    installer was not verified). The installation is installed for the flow's team through the
    install path: its check asks GitHub, as the App, whether the installation exists
    (`GET /app/installations/{id}`), its post-install loads the repositories. A verified
    installer is then linked as the flow's `user_id` (when the flow has one). The same
    installation again reconfigures the team's row (no second one), keeping its other settings
    (`taskComments`); one another team installed is refused. `setup_action=request` (an
    organisation member asked its owners to install) installs nothing yet.

User link (the flow started with `user_id`, without `install=true`)
    GitHub's user OAuth for Apps with PKCE: the code is exchanged at
    `{IW_GITHUB_WEB_URL}/login/oauth/access_token`, `GET /user` tells whose account it is, and
    the user's link to the team's GitHub integration keeps the GitHub user id (as text), the
    login, the user token and its refresh token (encrypted, with the expiry).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from integrations.github.config import GithubSettings
from integrations.github.payloads import User
from integrations.github.users import can_access_installation, credentials, token_request, whoami
from worker.sdk import (
    Context,
    InstallRejected,
    IntegrationError,
    IntegrationRecord,
    InvalidGrant,
    NewLink,
    OAuthStart,
    TokenGrant,
    redact,
)

_INSTALLATION_ID = re.compile(r"[1-9][0-9]{0,18}")


class GithubOAuth:
    """`OAuthFlow` of GitHub: the App's installation for a team, or a person's account for a user."""

    def authorize_url(
        self, ctx: Context, *, state: str, redirect_uri: str, start: OAuthStart, code_challenge: str
    ) -> str:
        settings = ctx.settings_as(GithubSettings)
        web = settings.web_url.rstrip("/")
        if _installs(start):
            if not settings.app_slug:
                raise InstallRejected("GitHub App install is not configured: set IW_GITHUB_APP_SLUG")
            return f"{web}/apps/{quote(settings.app_slug, safe='')}/installations/new?{urlencode({'state': state})}"
        pair = credentials(settings)
        if pair is None:
            raise InstallRejected(
                "GitHub account links are not configured: set IW_GITHUB_CLIENT_ID and IW_GITHUB_CLIENT_SECRET"
            )
        query = {
            "client_id": pair[0],
            "redirect_uri": redirect_uri,
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        return f"{web}/login/oauth/authorize?{urlencode(query)}"

    async def complete(
        self,
        ctx: Context,
        *,
        code: str | None,
        redirect_uri: str,
        start: OAuthStart,
        code_verifier: str,
        query: Mapping[str, str],
    ) -> str | None:
        if start.user_id is None or _installs(start):
            return await _install(
                ctx, start, code=code, redirect_uri=redirect_uri, code_verifier=code_verifier, query=query
            )
        return await _link(ctx, start, start.user_id, code=code, redirect_uri=redirect_uri, code_verifier=code_verifier)


def _installs(start: OAuthStart) -> bool:
    """A team's install (the App's install page), not a person's link."""
    return start.user_id is None or start.install


async def _install(
    ctx: Context,
    start: OAuthStart,
    *,
    code: str | None,
    redirect_uri: str,
    code_verifier: str,
    query: Mapping[str, str],
) -> str:
    """The setup redirect after "Install": the installation, checked with GitHub (and, with the
    client credentials, proved the installer's), for the flow's team."""
    setup_action = query.get("setup_action")
    if setup_action == "request":
        raise InstallRejected(
            "the installation waits for an owner of the GitHub account to approve it; connect again once approved"
        )
    installation = query.get("installation_id", "")
    if _INSTALLATION_ID.fullmatch(installation) is None:  # ASCII digits only ("²".isdigit() is True)
        raise InstallRejected("GitHub sent no installation id: install the App from the platform again")
    installation_id = int(installation)
    settings = ctx.settings_as(GithubSettings)
    installer: tuple[TokenGrant, User] | None = None
    if credentials(settings) is None:
        ctx.log.warning(
            "github installation not verified as the installer's: set IW_GITHUB_CLIENT_ID and"
            " IW_GITHUB_CLIENT_SECRET and enable the App's user authorization during installation",
            team_id=start.team_id,
            installation_id=installation_id,
        )
    else:
        installer = await _installer(
            ctx, settings, installation_id, code=code, redirect_uri=redirect_uri, code_verifier=code_verifier
        )
    record = await ctx.install(
        team_id=start.team_id, user_id=start.user_id, config=await _config(ctx, start.team_id, installation_id)
    )
    if installer is not None and start.user_id is not None:
        grant, account = installer
        await ctx.bound(record).tokens.save(
            NewLink(
                team_id=start.team_id,
                integration_id=record.id,
                integration_type=ctx.type,
                user_id=start.user_id,
                external_user_id=str(account.id),
                external_user_name=account.login,
                grant=grant,
            )
        )
    ctx.log.info(
        "github installation set up",
        team_id=start.team_id,
        setup_action=setup_action,
        installer_verified=installer is not None,
        installer_linked=installer is not None and start.user_id is not None,
    )
    return record.id


async def _config(ctx: Context, team_id: str, installation_id: int) -> dict[str, Any]:
    """The config to install: the team's config of this installation as it is (its other
    settings, `taskComments`, kept when the flow runs again), with the installation id."""
    for record in await ctx.integrations.of_team(team_id):
        if record.external_team_id == str(installation_id):
            return {**record.config.model_dump(mode="json", by_alias=True), "installationId": installation_id}
    return {"installationId": installation_id}


async def _installer(
    ctx: Context,
    settings: GithubSettings,
    installation_id: int,
    *,
    code: str | None,
    redirect_uri: str,
    code_verifier: str,
) -> tuple[TokenGrant, User]:
    """The person who installed, proved by GitHub: the setup redirect's code exchanged for their
    user token, and the installation among those they can access. InstallRejected otherwise."""
    if not code:
        raise InstallRejected(
            "GitHub sent no authorization code with the installation: the App must request user"
            " authorization (OAuth) during installation"
        )
    try:
        grant = await token_request(
            ctx.http,
            settings,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,  # ignored by GitHub: the install page sent no challenge
            },
        )
        account = await whoami(ctx.http, settings, grant.access_token)
        allowed = await can_access_installation(ctx.http, settings, grant.access_token, installation_id)
    except InvalidGrant as exc:
        raise InstallRejected(f"GitHub refused the authorization code ({exc})") from None
    except IntegrationError as exc:
        raise InstallRejected(f"GitHub sign-in failed: {redact(str(exc))}") from None
    if not allowed:
        raise InstallRejected(
            f"GitHub installation {installation_id} is not one the GitHub account {account.login} can access"
        )
    return grant, account


async def _link(
    ctx: Context, start: OAuthStart, user_id: str, *, code: str | None, redirect_uri: str, code_verifier: str
) -> str:
    """A person's GitHub account for their platform user, on the team's GitHub integration."""
    if not code:
        raise InstallRejected("GitHub returned no authorization code")
    settings = ctx.settings_as(GithubSettings)
    record = await _integration(ctx, start)
    try:
        grant = await token_request(
            ctx.http,
            settings,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            },
        )
        account = await whoami(ctx.http, settings, grant.access_token)
    except InvalidGrant as exc:
        raise InstallRejected(f"GitHub refused the authorization code ({exc})") from None
    except IntegrationError as exc:
        raise InstallRejected(f"GitHub sign-in failed: {redact(str(exc))}") from None
    linked = ctx.bound(record)
    await linked.tokens.save(
        NewLink(
            team_id=start.team_id,
            integration_id=record.id,
            integration_type=ctx.type,
            user_id=user_id,
            external_user_id=str(account.id),
            external_user_name=account.login,
            grant=grant,
        )
    )
    return record.id


async def _integration(ctx: Context, start: OAuthStart) -> IntegrationRecord:
    """The team's GitHub integration: the one named, else its only one."""
    if start.integration_id:
        record = await ctx.integrations.get(start.integration_id)
        if record is None or record.team_id != start.team_id:
            raise InstallRejected(f"no GitHub integration {start.integration_id} for this team")
        return record
    installed = await ctx.integrations.of_team(start.team_id)
    if not installed:
        raise InstallRejected("install the GitHub App for this team first, then link GitHub accounts")
    if len(installed) > 1:
        raise InstallRejected("this team has several GitHub installations: start the link with integration_id")
    return installed[0]
