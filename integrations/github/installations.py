"""`installation` and `installation_repositories`: keep the integration row and its repositories
in step with GitHub (MIMRAI ignored these and kept dead rows)."""

from __future__ import annotations

from integrations.github.client import app_api, paginate
from integrations.github.config import GithubConfig
from integrations.github.payloads import InstallationEvent, InstallationRepositoriesEvent, Repository
from schemas.events import IntegrationStatus
from worker.sdk import Context, InstallRejected, PermanentError, ProviderError

STATUS_BY_ACTION: dict[str, IntegrationStatus] = {
    "created": "active",
    "unsuspend": "active",
    "suspend": "suspended",
    "deleted": "uninstalled",
}

UPSERT_REPOSITORY = """
    INSERT INTO github_repositories (team_id, integration_id, repository_id, full_name, private)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (integration_id, repository_id) DO UPDATE SET full_name = EXCLUDED.full_name,
        private = EXCLUDED.private"""


def replace_repositories(ctx: Context, integration_id: str, repositories: list[Repository]) -> None:
    ctx.db.write("DELETE FROM github_repositories WHERE team_id = $1 AND integration_id = $2", integration_id)
    for repo in repositories:
        ctx.db.write(UPSERT_REPOSITORY, integration_id, repo.id, repo.full_name, repo.private)


async def on_installation(ctx: Context) -> None:
    event = ctx.payload_as(InstallationEvent)
    if ctx.integration is None:
        ctx.log.info("installation event for an installation no team has installed yet", action=event.action)
        return
    status = STATUS_BY_ACTION.get(event.action)
    if status is not None:
        ctx.set_status(status, f"GitHub App installation {event.action}")
    if event.action == "created" and event.repositories is not None:
        replace_repositories(ctx, ctx.integration.id, event.repositories)
    elif event.action == "deleted":
        ctx.db.write("DELETE FROM github_repositories WHERE team_id = $1 AND integration_id = $2", ctx.integration.id)


async def on_installation_repositories(ctx: Context) -> None:
    event = ctx.payload_as(InstallationRepositoriesEvent)
    if ctx.integration is None:
        ctx.log.info("repositories changed for an installation no team has installed yet")
        return
    for repo in event.repositories_added:
        ctx.db.write(UPSERT_REPOSITORY, ctx.integration.id, repo.id, repo.full_name, repo.private)
    for repo in event.repositories_removed:
        ctx.db.write(
            "DELETE FROM github_repositories WHERE team_id = $1 AND integration_id = $2 AND repository_id = $3",
            ctx.integration.id,
            repo.id,
        )


async def validate(ctx: Context) -> None:
    """Install: the installation must exist for this App."""
    config = ctx.config_as(GithubConfig)
    try:
        await app_api(ctx, "GET", f"/app/installations/{config.installation_id}")
    except ProviderError as exc:
        if exc.status == 404:
            raise InstallRejected(f"GitHub has no installation {config.installation_id} of this App") from None
        raise InstallRejected(f"GitHub refused the check (HTTP {exc.status})") from None
    except PermanentError as exc:  # the App's credentials are not configured
        raise InstallRejected(str(exc)) from None


async def sync_repositories(ctx: Context) -> None:
    """Post-install: the repositories the installation can reach, page by page."""
    assert ctx.integration is not None
    config = ctx.config_as(GithubConfig)
    listed = await paginate(ctx, config.installation_id, "/installation/repositories", key="repositories")
    repositories = [Repository.model_validate(r) for r in listed]
    replace_repositories(ctx, ctx.integration.id, repositories)
