"""The integration SDK: everything an integration imports, and nothing else of the worker.

    from worker.sdk import Action, Context, Handler, Integration, ...

Declarations (`Integration`, `Handler`, `Action`, `Lifecycle`, `Service`, `Schedule`, the
webhook types), the one `Context` with its scoped facades, errors, the outbound HTTP helper,
conversation helpers, typed records of the core tables and users' tokens. The runtime
implements what the SDK describes (`Backend`); integrations never see a database driver or a
broker client.
"""

from schemas.envelope import Envelope
from worker.core.cache import TTLCache
from worker.core.ids import derived_id
from worker.core.redact import redact
from worker.sdk.attachments import AttachmentSource
from worker.sdk.backend import Backend, Row
from worker.sdk.context import Context
from worker.sdk.declare import (
    Accept,
    Action,
    AttachmentFetcher,
    EmptyConfig,
    Handler,
    Hook,
    Integration,
    Lifecycle,
    OAuthFlow,
    OAuthStart,
    Reply,
    Schedule,
    Service,
    UserLinks,
    WebhookRejected,
    WebhookRequest,
    tool_name,
)
from worker.sdk.errors import (
    ActionRefused,
    Failure,
    InstallRejected,
    IntegrationError,
    LinkNeedsReconnect,
    PermanentError,
    ProviderError,
    TransientError,
    classify_response,
    parse_retry_after,
)
from worker.sdk.http import AttachmentTooLarge, Download, call, download
from worker.sdk.keys import KeyFn, MessageView, payload_key, per_integration, unordered
from worker.sdk.records import IntegrationRecord, Link
from worker.sdk.registry import Registry, RegistryError
from worker.sdk.tokens import InvalidGrant, NewLink, TokenGrant, TokenRefresher

__all__ = [
    "Accept",
    "Action",
    "ActionRefused",
    "AttachmentFetcher",
    "AttachmentSource",
    "AttachmentTooLarge",
    "Backend",
    "Context",
    "Download",
    "EmptyConfig",
    "Envelope",
    "Failure",
    "Handler",
    "Hook",
    "InstallRejected",
    "Integration",
    "IntegrationError",
    "IntegrationRecord",
    "InvalidGrant",
    "KeyFn",
    "Lifecycle",
    "Link",
    "LinkNeedsReconnect",
    "MessageView",
    "NewLink",
    "OAuthFlow",
    "OAuthStart",
    "PermanentError",
    "ProviderError",
    "Registry",
    "RegistryError",
    "Reply",
    "Row",
    "Schedule",
    "Service",
    "TTLCache",
    "TokenGrant",
    "TokenRefresher",
    "TransientError",
    "UserLinks",
    "WebhookRejected",
    "WebhookRequest",
    "call",
    "classify_response",
    "derived_id",
    "download",
    "parse_retry_after",
    "payload_key",
    "per_integration",
    "redact",
    "tool_name",
    "unordered",
]
