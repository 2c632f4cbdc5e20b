"""What reaches the bot from Mattermost: WebSocket posts (worker/runtime/services.py runs the listener),
outgoing webhooks and slash commands (the ingress).

Ordering: the posts of one thread run one after the other (a direct-message channel is one
thread); an outgoing webhook starts a thread of its own post; slash commands, per channel."""

from __future__ import annotations

from collections.abc import Mapping

from integrations.mattermost import messages
from worker.sdk import Handler, MessageView, payload_key


def by_thread(message: MessageView) -> str | None:
    """The thread (`post.channel_id`, `post.root_id` or `id`); a direct-message channel is one."""
    post = message.payload.get("post")
    if not isinstance(post, Mapping) or not post.get("channel_id"):
        return None
    if post.get("root_id"):
        return f"{post['channel_id']}:{post['root_id']}"
    if message.payload.get("channel_type") == "D":
        return str(post["channel_id"])
    return f"{post['channel_id']}:{post.get('id') or ''}"


HANDLERS = [
    Handler("webhook", "posted", messages.on_posted, key=by_thread),
    Handler("webhook", "outgoing_webhook", messages.on_outgoing_webhook, key=payload_key("channel_id", "post_id")),
    Handler("webhook", "slash_command", messages.on_slash_command, key=payload_key("channel_id")),
]
