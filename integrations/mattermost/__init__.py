"""Mattermost: direct messages and mentions reach the platform's agent through a WebSocket listener
(one per integration across all workers) or outgoing webhooks and slash commands; the agent answers
in the thread; team notifications go to a configured channel."""

from integrations.mattermost import commands, files, install, listener, threads, verify
from integrations.mattermost.config import MattermostConfig, MattermostSettings
from integrations.mattermost.handle import HANDLERS
from worker.sdk import Action, Integration, Lifecycle, Service, payload_key, per_integration, unordered

integration = Integration(
    type="mattermost",
    name="Mattermost",
    description="Talk to the platform's agent from Mattermost: mentions and direct messages; team notifications.",
    config=MattermostConfig,
    settings=MattermostSettings,
    webhook=verify.receive,
    handlers=HANDLERS,
    actions=[
        Action(
            "post_message",
            "Post a Mattermost message in a channel or thread, or to a person directly.",
            commands.PostMessageInput,
            commands.PostOutput,
            commands.post_message,
            key=payload_key("channel_id?", "user_id?", "root_id?"),  # a thread's posts in order
        ),
        Action(
            "update_message",
            "Change the text of a Mattermost post the bot made.",
            commands.UpdateMessageInput,
            commands.PostOutput,
            commands.update_message,
            key=payload_key("post_id"),
        ),
        Action(
            "add_reaction",
            "React to a Mattermost post with an emoji.",
            commands.AddReactionInput,
            commands.AddReactionOutput,
            commands.add_reaction,
            key=unordered,
        ),
        Action(
            "notify_team",
            "Post a notification in the team's configured Mattermost channel.",
            commands.NotifyTeamInput,
            commands.PostOutput,
            commands.notify_team,
            key=per_integration,  # the team's channel: its notifications in order
        ),
        Action(
            "read_thread",
            "Read the posts of a Mattermost thread (in a channel the acting user is a member of), newest last.",
            threads.ReadThreadInput,
            threads.ReadThreadOutput,
            threads.read_thread,
            needs_user_link=True,
            key=unordered,
        ),
    ],
    lifecycle=Lifecycle(validate=install.validate),
    services=[Service("listener", listener.run)],
    attachments=files.fetch,
)
