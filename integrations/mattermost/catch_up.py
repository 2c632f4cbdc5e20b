"""Catching up after a gap: posts made while no listener was connected (a reconnect, a restart, the
lease moving to another worker) are fetched over REST when the socket says hello, and published
like live ones. Their ids are the live ones (`mattermost:<post id>`), so a post seen both ways is
a duplicate in the inbox and handled once.

Where a gap starts:
- at start-up (a restart, or a lease taken over from a worker that died): `START_WINDOW` back,
  never before the integration was installed;
- after a session that ended: the last moment the socket was known alive (its last frame, or its
  end less the ping timeout), never more than `LONGEST_GAP` back;
less `CLOCK_MARGIN`, as post times are the server's clock. A gap is closed only by a catch-up
that succeeded; a failed one ends the session, and the next hello tries again from the same start.

Per gap: the bot's channels (`GET /users/{id}/channels`), those with a post since the gap
started, their posts since then (`GET /channels/{id}/posts?since=`), and the senders' names
(`POST /users/ids`). Only what the socket would have passed on goes on: a direct message, or a
post that mentions the bot, never its own posts, system messages or deleted posts.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from integrations.mattermost.api import Me, request
from integrations.mattermost.config import MattermostConfig

START_WINDOW_MS = 15 * 60 * 1000
LONGEST_GAP_MS = 24 * 3600 * 1000
CLOCK_MARGIN_MS = 60 * 1000
SOCKET_DEATH_MS = 40 * 1000  # ping every 20 s, dropped after 20 s without an answer


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Gap:
    """Since when posts may have been missed (epoch ms), or None while nothing was missed."""

    start: int | None
    alive_until: int = field(default_factory=now_ms)

    @classmethod
    def at_start_up(cls, installed_ms: int) -> Gap:
        return cls(start=max(installed_ms, now_ms() - START_WINDOW_MS))

    def alive(self) -> None:
        """A frame came in: the socket was alive now (counts only once the gap was caught up)."""
        if self.start is None:
            self.alive_until = now_ms()

    def session_ended(self) -> None:
        if self.start is None:
            self.start = max(self.alive_until, now_ms() - SOCKET_DEATH_MS)
        self.start = max(self.start, now_ms() - LONGEST_GAP_MS)

    def closed(self) -> None:
        self.start = None
        self.alive_until = now_ms()


async def missed_posts(http: httpx.AsyncClient, config: MattermostConfig, me: Me, since: int) -> list[dict[str, Any]]:
    """The `posted` event data (as the socket sends it) of every post for the bot since `since`,
    oldest first."""
    since = max(0, since - CLOCK_MARGIN_MS)
    channels = await request(http, config, "GET", f"/users/{me.id}/channels")
    found: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for channel in channels or []:
        if not isinstance(channel, dict) or int(channel.get("last_post_at") or 0) < since:
            continue
        listed = await request(http, config, "GET", f"/channels/{channel['id']}/posts", params={"since": since})
        for post in ((listed or {}).get("posts") or {}).values():
            if _for_the_bot(post, channel, me, since):
                found.append((channel, post))
    if not found:
        return []
    names = await _usernames(http, config, sorted({post["user_id"] for _, post in found}))
    found.sort(key=lambda item: (int(item[1].get("create_at") or 0), str(item[1]["id"])))
    return [
        {
            "post": post,
            "channel_type": channel.get("type"),
            "channel_name": channel.get("name"),
            "sender_name": f"@{names[post['user_id']]}" if post["user_id"] in names else None,
            "mentions": [me.id] if channel.get("type") != "D" else [],
        }
        for channel, post in found
    ]


def _for_the_bot(post: Any, channel: dict[str, Any], me: Me, since: int) -> bool:
    if not isinstance(post, dict) or not post.get("id") or not post.get("user_id"):
        return False
    if post["user_id"] == me.id or post.get("type") or post.get("delete_at"):
        return False  # its own, a system message ("system_join_channel", ...), deleted
    if int(post.get("create_at") or 0) < since:
        return False  # edited since, not posted since
    return channel.get("type") == "D" or mentions(str(post.get("message") or ""), me.username)


def mentions(message: str, username: str) -> bool:
    """Does the message @-mention `username`, as Mattermost reads it (case-insensitive; a trailing
    full stop is punctuation, not part of the name)?"""
    if not username:
        return False
    pattern = rf"(?<![\w@.-])@{re.escape(username)}(?![\w-]|\.[\w-])"
    return re.search(pattern, message, re.IGNORECASE) is not None


async def _usernames(http: httpx.AsyncClient, config: MattermostConfig, ids: list[str]) -> dict[str, str]:
    """Best effort: a name only makes the association reply friendlier."""
    try:
        users = await request(http, config, "POST", "/users/ids", json=ids)
    except Exception:
        return {}
    return {str(u["id"]): str(u["username"]) for u in users or [] if isinstance(u, dict) and u.get("username")}
