"""Slack: app mentions and direct messages reach the platform's agent (with an account-link flow for
people not linked yet); the agent answers in the thread. Installed through OAuth v2."""

from integrations.slack import commands, files, install, oauth, threads, verify
from integrations.slack.config import SlackConfig, SlackSettings
from integrations.slack.handle import HANDLERS
from worker.sdk import Action, Integration, Lifecycle, payload_key, unordered

integration = Integration(
    type="slack",
    name="Slack",
    description="Talk to the platform's agent from Slack: mentions and direct messages, answers in the thread.",
    config=SlackConfig,
    settings=SlackSettings,
    webhook=verify.receive,
    handlers=HANDLERS,
    actions=[
        Action(
            "post_message",
            "Post a Slack message in a channel or thread (or to one person, ephemeral).",
            commands.PostMessageInput,
            commands.PostMessageOutput,
            commands.post_message,
            key=payload_key("channel", "thread_ts?"),  # a thread's posts in order (a channel's, outside one)
        ),
        Action(
            "update_message",
            "Change the text of a Slack message the bot posted.",
            commands.UpdateMessageInput,
            commands.UpdateMessageOutput,
            commands.update_message,
            key=payload_key("channel", "ts"),
        ),
        Action(
            "add_reaction",
            "React to a Slack message with an emoji.",
            commands.AddReactionInput,
            commands.AddReactionOutput,
            commands.add_reaction,
            key=unordered,
        ),
        Action(
            "read_thread",
            "Read the messages of a Slack thread (in a channel the acting user is a member of), newest last.",
            threads.ReadThreadInput,
            threads.ReadThreadOutput,
            threads.read_thread,
            needs_user_link=True,
            key=unordered,
        ),
    ],
    lifecycle=Lifecycle(validate=install.validate),
    oauth=oauth.SlackOAuth(),
    attachments=files.fetch,
    external_team_id=lambda config: config.team_id,
)
