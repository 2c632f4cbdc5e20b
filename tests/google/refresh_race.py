"""Run by test_tokens: a separate process asking five times at once for one link's token, at a
wall-clock moment shared with the other process (so their refreshes would overlap)."""

from __future__ import annotations

import asyncio
import sys
import time

from integrations.gmail.config import GmailSettings
from integrations.google_common.oauth import GoogleRefresher
from integrations.registry import REGISTRY
from worker.core.settings import Settings
from worker.platform import attach
from worker.runtime.runtime import Runtime


async def main(link_id: str, start_at: float) -> None:
    runtime = attach(Runtime(Settings(), REGISTRY))
    await runtime.start(migrate=False, broker=False)
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        refresher = GoogleRefresher(GmailSettings())
        tokens = await asyncio.gather(*(runtime.tokens.access_token(link_id, refresher) for _ in range(5)))
        print("\n".join(tokens))
    finally:
        await runtime.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
