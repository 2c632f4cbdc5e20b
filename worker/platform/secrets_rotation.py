"""Re-encrypt every stored secret with the primary key (after putting a new key first)."""

from __future__ import annotations

from worker.runtime.runtime import Runtime


async def rotate_all(runtime: Runtime) -> dict[str, int]:
    box = runtime.secrets
    counts = {"integrations": 0, "integration_user_link": 0}
    async with runtime.pool.acquire() as conn, conn.transaction():
        for record in await conn.fetch("SELECT id, config FROM integrations FOR UPDATE"):
            resealed = box.reseal(record["config"])
            if resealed != record["config"]:
                await conn.execute("UPDATE integrations SET config = $2 WHERE id = $1", record["id"], resealed)
                counts["integrations"] += 1
        for record in await conn.fetch(
            "SELECT id, access_token, refresh_token, config FROM integration_user_link FOR UPDATE"
        ):
            access = box.rotate(record["access_token"]) if record["access_token"] else record["access_token"]
            refresh = box.rotate(record["refresh_token"]) if record["refresh_token"] else record["refresh_token"]
            config = box.reseal(record["config"])
            if (access, refresh, config) != (
                record["access_token"],
                record["refresh_token"],
                record["config"],
            ):
                await conn.execute(
                    "UPDATE integration_user_link SET access_token = $2, refresh_token = $3, config = $4 WHERE id = $1",
                    record["id"],
                    access,
                    refresh,
                    config,
                )
                counts["integration_user_link"] += 1
    return counts
