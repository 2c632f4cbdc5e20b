"""Task comments: a comment that mentions the bot on a task reaches the platform's agent; its answer
comes back as a command and goes out as a `task_comment.reply` event for the platform to store.
The platform publishes every new comment as `task-comments.event.comment_created`; a team turns the
assistant on by installing `task-comments` (the bot's user id and name)."""

from integrations.task_comments import comments
from integrations.task_comments.config import TaskCommentsConfig
from worker.sdk import Action, Handler, Integration, payload_key

integration = Integration(
    type="task-comments",
    name="Task comments",
    description="Talk to the platform's agent in a task's comments by mentioning the bot.",
    config=TaskCommentsConfig,
    handlers=[
        # Every comment of every team comes through; teams without the integration are skipped quietly.
        Handler(
            "event",
            "comment_created",
            comments.on_comment_created,
            requires_integration=False,
            key=comments.by_task,
        ),
    ],
    actions=[
        Action(
            "reply",
            "Answer on a task, as the bot (the platform stores it as a comment).",
            comments.ReplyInput,
            comments.ReplyOutput,
            comments.reply,
            key=payload_key("task_id"),  # a task's replies in order
        )
    ],
)
