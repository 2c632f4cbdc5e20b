"""A fake of Google's endpoints the worker calls: the OAuth token endpoint (codes, refreshes,
rotation, invalid_grant), userinfo, the JWKS of Pub/Sub's push tokens, Gmail (history,
messages as real MIME turned into the API's `format=full` tree, watch, drafts) and Calendar
(events with etags, sync tokens, 409/410, push channels). Access tokens expire for real, and
every call is checked against the token's account. Failures can be injected per test."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import hashlib
import itertools
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CLIENT_ID = "fake-client.apps.googleusercontent.com"
CLIENT_SECRET = "fake-client-secret-value"
PUSH_KID = "fake-push-key-1"
_EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")


def _google_error(status: int, message: str, reason: str | None = None, state: str | None = None) -> JSONResponse:
    error: dict[str, Any] = {"code": status, "message": message}
    if reason:
        error["errors"] = [{"reason": reason, "message": message}]
    if state:
        error["status"] = state
    return JSONResponse({"error": error}, status)


def s256(verifier: str) -> str:
    """PKCE's S256 challenge of a verifier."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _payload(part: Message, path: str = "") -> dict[str, Any]:
    """A MIME part as Gmail's `format=full` shows it: raw header values, bodies base64url."""
    headers = [{"name": name, "value": str(value)} for name, value in part.raw_items()]
    result: dict[str, Any] = {
        "partId": path,
        "mimeType": part.get_content_type(),
        "filename": part.get_filename() or "",
        "headers": headers,
    }
    if part.is_multipart():
        children = part.get_payload()
        assert isinstance(children, list)
        result["body"] = {"size": 0}
        result["parts"] = [_payload(child, f"{path}.{i}" if path else str(i)) for i, child in enumerate(children)]
        return result
    data = part.get_payload(decode=True) or b""
    assert isinstance(data, bytes)
    if part.get_filename():
        result["body"] = {"attachmentId": "att-" + secrets.token_hex(6), "size": len(data)}
    else:
        result["body"] = {"size": len(data), "data": _b64url(data)}
    return result


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    raw: bytes
    labels: list[str]
    history_id: int

    def full(self) -> dict[str, Any]:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.compat32)
        return {
            "id": self.id,
            "threadId": self.thread_id,
            "labelIds": list(self.labels),
            "snippet": "",
            "historyId": str(self.history_id),
            "payload": _payload(parsed),
        }


@dataclass
class Mailbox:
    email: str
    history_id: int = 1000
    oldest_history: int = 0  # history before this is gone: history.list answers 404
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    watch_calls: int = 0
    watch_topic: str | None = None
    stop_calls: int = 0
    drafts: dict[str, StoredMessage] = field(default_factory=dict)
    sent: list[StoredMessage] = field(default_factory=list)
    get_calls: int = 0

    def deliver(self, message: EmailMessage | bytes, labels: tuple[str, ...] = ("INBOX", "UNREAD")) -> str:
        raw = message if isinstance(message, bytes) else message.as_bytes()
        self.history_id += 5
        message_id = f"{self.history_id:016x}"
        stored = StoredMessage(message_id, message_id, raw, list(labels), self.history_id)
        self.messages[message_id] = stored
        self.history.append(
            {
                "id": str(self.history_id),
                "messages": [{"id": message_id, "threadId": message_id}],
                "messagesAdded": [{"message": {"id": message_id, "threadId": message_id, "labelIds": list(labels)}}],
            }
        )
        return message_id


@dataclass
class Calendar:
    email: str
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    changes: list[tuple[int, str]] = field(default_factory=list)  # (sequence, event id)
    seq: int = 0
    oldest_sync: int = 0  # sync tokens before this answer 410
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)

    def touch(self, event: dict[str, Any]) -> None:
        self.seq += 1
        event["etag"] = f'"{self.seq}-{secrets.token_hex(3)}"'
        event["updated"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self.changes.append((self.seq, event["id"]))


@dataclass
class FakeGoogleState:
    push_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    codes: dict[str, tuple[str, str]] = field(default_factory=dict)  # code -> (email, scope)
    challenges: dict[str, str] = field(default_factory=dict)  # code -> PKCE S256 challenge
    access_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (email, expires)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # token -> email
    revoked: set[str] = field(default_factory=set)
    refresh_requests: int = 0
    revocations: list[str] = field(default_factory=list)  # accounts whose grant was revoked
    refresh_delay: float = 0.0
    code_delay: float = 0.0  # the code exchange answers this late
    rotate_refresh_tokens: bool = False
    token_lifetime: int = 3600
    history_page_size: int = 500
    jwks_requests: int = 0
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)
    calendars: dict[str, Calendar] = field(default_factory=dict)
    fail: dict[str, list[int]] = field(default_factory=dict)  # route -> statuses, one per call
    hold_message_get: threading.Event | None = None  # when set: messages.get waits until it is set
    message_get_started: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # --- helpers for tests ------------------------------------------------------------------------------

    def mailbox(self, address: str) -> Mailbox:
        return self.mailboxes.setdefault(address, Mailbox(address))

    def calendar(self, address: str) -> Calendar:
        return self.calendars.setdefault(address, Calendar(address))

    def issue_code(self, address: str, scope: str, challenge: str | None = None) -> str:
        """The code Google gives after consent; with `challenge` (PKCE S256), the exchange must
        bring the matching verifier."""
        code = "code-" + secrets.token_hex(8)
        self.codes[code] = (address, scope)
        if challenge is not None:
            self.challenges[code] = challenge
        return code

    def grant(self, address: str, *, expires_in: float | None = None) -> tuple[str, str]:
        """Tokens as a finished consent would give (access, refresh)."""
        access = "ya29.fake-" + secrets.token_hex(16)
        refresh = "1//fake-refresh-" + secrets.token_hex(16)
        lifetime = self.token_lifetime if expires_in is None else expires_in
        with self.lock:
            self.access_tokens[access] = (address, time.time() + lifetime)
            self.refresh_tokens[refresh] = address
        return access, refresh

    def public_jwk(self) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.push_key.public_key(), as_dict=True)
        return {**jwk, "kid": PUSH_KID, "alg": "RS256", "use": "sig"}

    def sign_push(self, claims: dict[str, Any], *, key: rsa.RSAPrivateKey | None = None, kid: str = PUSH_KID) -> str:
        return jwt.encode(claims, key or self.push_key, algorithm="RS256", headers={"kid": kid})

    def take_failure(self, route: str) -> int | None:
        with self.lock:
            queue = self.fail.get(route)
            return queue.pop(0) if queue else None


class StateProxy:
    """Stands for the current test's state, so one server can serve a whole session."""

    def __init__(self, target: FakeGoogleState) -> None:
        object.__setattr__(self, "_target", target)

    def use(self, target: FakeGoogleState) -> None:
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_target"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_target"), name, value)


def _account(state: FakeGoogleState, request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer "):
        return None
    found = state.access_tokens.get(header[7:])
    if found is None or found[1] < time.time():
        return None
    return found[0]


def _unauthenticated() -> JSONResponse:
    return _google_error(401, "Request had invalid authentication credentials.", "authError", "UNAUTHENTICATED")


def build_app(state: FakeGoogleState) -> Starlette:
    # --- OAuth ----------------------------------------------------------------------------------------

    async def token(request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return JSONResponse({"error": "invalid_client", "error_description": "The client was not found."}, 401)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            if state.code_delay:
                await asyncio.sleep(state.code_delay)
            found = state.codes.pop(str(form.get("code")), None)
            if found is None:
                return JSONResponse({"error": "invalid_grant", "error_description": "Bad Request"}, 400)
            challenge = state.challenges.pop(str(form.get("code")), None)
            if challenge is not None and s256(str(form.get("code_verifier", ""))) != challenge:
                return JSONResponse({"error": "invalid_grant", "error_description": "Missing code verifier."}, 400)
            address, scope = found
            access, refresh = state.grant(address)
            return JSONResponse(
                {
                    "access_token": access,
                    "expires_in": state.token_lifetime,
                    "refresh_token": refresh,
                    "scope": scope,
                    "token_type": "Bearer",
                }
            )
        if grant_type == "refresh_token":
            with state.lock:
                state.refresh_requests += 1
            if state.refresh_delay:
                await asyncio.sleep(state.refresh_delay)
            status = state.take_failure("token")
            if status is not None:
                return JSONResponse({"error": "backend_error"}, status)
            presented = str(form.get("refresh_token"))
            address = state.refresh_tokens.get(presented)
            if address is None or presented in state.revoked:
                return JSONResponse(
                    {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, 400
                )
            access = "ya29.fake-" + secrets.token_hex(16)
            body: dict[str, Any] = {"access_token": access, "expires_in": state.token_lifetime, "token_type": "Bearer"}
            with state.lock:
                state.access_tokens[access] = (address, time.time() + state.token_lifetime)
                if state.rotate_refresh_tokens:
                    rotated = "1//fake-refresh-" + secrets.token_hex(16)
                    state.refresh_tokens[rotated] = address
                    state.revoked.add(presented)
                    body["refresh_token"] = rotated
            return JSONResponse(body)
        return JSONResponse({"error": "unsupported_grant_type"}, 400)

    async def revoke(request: Request) -> JSONResponse:
        """Revoking an access or a refresh token ends the account's grant: its tokens stop working."""
        status = state.take_failure("revoke")
        if status is not None:
            return JSONResponse({"error": "backend_error"}, status)
        presented = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}.get("token", "")
        with state.lock:
            found = state.access_tokens.get(presented)
            address = found[0] if found is not None else state.refresh_tokens.get(presented)
            if address is None or presented in state.revoked:
                return JSONResponse({"error": "invalid_token", "error_description": "Token expired or revoked"}, 400)
            for token, (owner, _) in list(state.access_tokens.items()):
                if owner == address:
                    del state.access_tokens[token]
            state.revoked.update(t for t, owner in state.refresh_tokens.items() if owner == address)
            state.revocations.append(address)
        return JSONResponse({})

    async def userinfo(request: Request) -> JSONResponse:
        address = _account(state, request)
        if address is None:
            return _unauthenticated()
        return JSONResponse({"sub": str(abs(hash(address))), "email": address, "email_verified": True, "name": "Ann"})

    async def jwks(_request: Request) -> JSONResponse:
        with state.lock:
            state.jwks_requests += 1
        return JSONResponse({"keys": [state.public_jwk()]}, headers={"Cache-Control": "public, max-age=3600"})

    # --- Gmail ------------------------------------------------------------------------------------------

    def mailbox_of(request: Request) -> Mailbox | None:
        address = _account(state, request)
        return state.mailbox(address) if address is not None else None

    async def profile(request: Request) -> Response:
        box = mailbox_of(request)
        if box is None:
            return _unauthenticated()
        return JSONResponse({"emailAddress": box.email, "historyId": str(box.history_id), "messagesTotal": 0})

    async def watch(request: Request) -> Response:
        box = mailbox_of(request)
        if box is None:
            return _unauthenticated()
        body = await request.json()
        box.watch_calls += 1
        box.watch_topic = body.get("topicName")
        expiration = int((time.time() + 7 * 86400) * 1000)
        return JSONResponse({"historyId": str(box.history_id), "expiration": str(expiration)})

    async def stop(request: Request) -> Response:
        box = mailbox_of(request)
        if box is None:
            return _unauthenticated()
        box.stop_calls += 1
        return Response(status_code=204)

    async def history(request: Request) -> Response:
        box = mailbox_of(request)
        if box is None:
            return _unauthenticated()
        status = state.take_failure("history")
        if status is not None:
            return _google_error(status, "injected")
        start = int(request.query_params["startHistoryId"])
        if start < box.oldest_history:
            return _google_error(404, "Requested entity was not found.", "notFound")
        label = request.query_params.get("labelId")
        records = [
            r
            for r in box.history
            if int(r["id"]) > start
            and (label is None or any(label in m["message"]["labelIds"] for m in r["messagesAdded"]))
        ]
        size = min(int(request.query_params.get("maxResults", 100)), state.history_page_size)
        offset = int(request.query_params.get("pageToken", "0"))
        page = records[offset : offset + size]
        body: dict[str, Any] = {"historyId": str(box.history_id)}
        if page:
            body["history"] = page
        if offset + size < len(records):
            body["nextPageToken"] = str(offset + size)
        return JSONResponse(body)

    async def messages(request: Request) -> Response:
        box = mailbox_of(request)
        if box is None:
            return _unauthenticated()
        label = request.query_params.get("labelIds")
        found = [m for m in box.messages.values() if label is None or label in m.labels]
        found.sort(key=lambda m: m.history_id, reverse=True)
        limit = int(request.query_params.get("maxResults", 100))
        listed = [{"id": m.id, "threadId": m.thread_id} for m in found[:limit]]
        return JSONResponse({"messages": listed, "resultSizeEstimate": len(found)})

    async def message(request: Request) -> Response:
        box = mailbox_of(request)
        if box is None:
            return _unauthenticated()
        with state.lock:
            box.get_calls += 1
        state.message_get_started.set()
        if state.hold_message_get is not None:
            await asyncio.get_running_loop().run_in_executor(None, state.hold_message_get.wait, 30)
        stored = box.messages.get(request.path_params["id"])
        if stored is None:
            return _google_error(404, "Requested entity was not found.", "notFound")
        return JSONResponse(stored.full())

    async def drafts(request: Request) -> Response:
        box = mailbox_of(request)
        if box is None:
            return _unauthenticated()
        if request.method == "GET":
            query = request.query_params.get("q", "")
            wanted = query.removeprefix("rfc822msgid:")
            found = []
            for draft_id, stored in box.drafts.items():
                parsed = email.message_from_bytes(stored.raw)
                if not query or parsed.get("Message-ID") == wanted:
                    found.append({"id": draft_id, "message": {"id": stored.id, "threadId": stored.thread_id}})
            return JSONResponse({"drafts": found} if found else {})
        body = await request.json()
        raw = base64.urlsafe_b64decode(body["message"]["raw"] + "=" * (-len(body["message"]["raw"]) % 4))
        draft_id = f"r-{next(state._ids)}"
        message_id = f"{next(state._ids) + 5000:016x}"
        box.drafts[draft_id] = StoredMessage(message_id, message_id, raw, ["DRAFT"], box.history_id)
        created = {"id": message_id, "threadId": message_id, "labelIds": ["DRAFT"]}
        return JSONResponse({"id": draft_id, "message": created})

    async def send_draft(request: Request) -> Response:
        box = mailbox_of(request)
        if box is None:
            return _unauthenticated()
        draft_id = (await request.json()).get("id")
        stored = box.drafts.pop(draft_id, None)
        if stored is None:
            return _google_error(404, "Requested entity was not found.", "notFound")
        stored.labels = ["SENT"]
        box.sent.append(stored)
        return JSONResponse({"id": stored.id, "threadId": stored.thread_id, "labelIds": ["SENT"]})

    # --- Calendar ---------------------------------------------------------------------------------------

    def calendar_of(request: Request) -> Calendar | None:
        address = _account(state, request)
        return state.calendar(address) if address is not None else None

    async def events(request: Request) -> Response:
        cal = calendar_of(request)
        if cal is None:
            return _unauthenticated()
        if request.method == "POST":
            body = await request.json()
            cal.requests.append(("POST", "", body))
            status = state.take_failure("calendar.insert")
            if status is not None:
                return _google_error(status, "injected", "rateLimitExceeded" if status == 403 else None)
            event_id = body.get("id") or secrets.token_hex(13)
            if not _EVENT_ID.match(event_id):
                return _google_error(400, "Invalid resource id value.", "invalid")
            if event_id in cal.events:
                return _google_error(409, "The requested identifier already exists.", "duplicate")
            event = {"kind": "calendar#event", "status": "confirmed", **body, "id": event_id}
            event["htmlLink"] = f"https://www.google.com/calendar/event?eid={event_id}"
            cal.touch(event)
            cal.events[event_id] = event
            return JSONResponse(event)
        params = request.query_params
        show_deleted = params.get("showDeleted") == "true"
        if params.get("syncToken"):
            since = int(params["syncToken"].removeprefix("st-"))
            if since < cal.oldest_sync:
                return _google_error(410, "Sync token is no longer valid, a full sync is required.", "fullSyncRequired")
            changed = dict.fromkeys(event_id for seq, event_id in cal.changes if seq > since)
            items = [cal.events[e] for e in changed]
        else:
            items = [e for e in cal.events.values() if show_deleted or e["status"] != "cancelled"]
            if params.get("q"):
                items = [e for e in items if params["q"].lower() in str(e.get("summary", "")).lower()]
        size = int(params.get("maxResults", 250))
        offset = int(params.get("pageToken", "0"))
        page = items[offset : offset + size]
        result: dict[str, Any] = {"kind": "calendar#events", "items": page}
        if offset + size < len(items):
            result["nextPageToken"] = str(offset + size)
        else:
            result["nextSyncToken"] = f"st-{cal.seq}"
        return JSONResponse(result)

    async def event(request: Request) -> Response:
        cal = calendar_of(request)
        if cal is None:
            return _unauthenticated()
        event_id = request.path_params["event_id"]
        found = cal.events.get(event_id)
        if request.method == "PATCH":
            body = await request.json()
            cal.requests.append(("PATCH", event_id, body))
            if found is None:
                return _google_error(404, "Not Found", "notFound")
            found.update(body)
            cal.touch(found)
            return JSONResponse(found)
        if request.method == "DELETE":
            cal.requests.append(("DELETE", event_id, None))
            if found is None:
                return _google_error(404, "Not Found", "notFound")
            if found["status"] == "cancelled":
                return _google_error(410, "Resource has been deleted", "deleted")
            found["status"] = "cancelled"
            cal.touch(found)
            return Response(status_code=204)
        if found is None:
            return _google_error(404, "Not Found", "notFound")
        return JSONResponse(found)

    async def events_watch(request: Request) -> Response:
        cal = calendar_of(request)
        if cal is None:
            return _unauthenticated()
        body = await request.json()
        resource_id = "res-" + secrets.token_hex(6)
        expiration = int((time.time() + int(body.get("params", {}).get("ttl", 604800))) * 1000)
        cal.channels[body["id"]] = {**body, "resourceId": resource_id, "expiration": expiration}
        return JSONResponse(
            {
                "kind": "api#channel",
                "id": body["id"],
                "resourceId": resource_id,
                "resourceUri": "https://www.googleapis.com/calendar/v3/calendars/primary/events",
                "token": body.get("token"),
                "expiration": str(expiration),
            }
        )

    async def channels_stop(request: Request) -> Response:
        cal = calendar_of(request)
        if cal is None:
            return _unauthenticated()
        body = await request.json()
        if cal.channels.pop(body.get("id"), None) is None:
            return _google_error(404, "Channel not found", "notFound")
        return Response(status_code=204)

    gmail = "/gmail/v1/users/me"
    return Starlette(
        routes=[
            Route("/token", token, methods=["POST"]),
            Route("/userinfo", userinfo, methods=["GET"]),
            Route("/revoke", revoke, methods=["POST"]),
            Route("/jwks", jwks, methods=["GET"]),
            Route(f"{gmail}/profile", profile, methods=["GET"]),
            Route(f"{gmail}/watch", watch, methods=["POST"]),
            Route(f"{gmail}/stop", stop, methods=["POST"]),
            Route(f"{gmail}/history", history, methods=["GET"]),
            Route(f"{gmail}/messages", messages, methods=["GET"]),
            Route(f"{gmail}/messages/{{id}}", message, methods=["GET"]),
            Route(f"{gmail}/drafts", drafts, methods=["GET", "POST"]),
            Route(f"{gmail}/drafts/send", send_draft, methods=["POST"]),
            Route("/calendar/v3/calendars/{calendar_id}/events", events, methods=["GET", "POST"]),
            Route("/calendar/v3/calendars/{calendar_id}/events/watch", events_watch, methods=["POST"]),
            Route("/calendar/v3/calendars/{calendar_id}/events/{event_id}", event, methods=["GET", "PATCH", "DELETE"]),
            Route("/calendar/v3/channels/stop", channels_stop, methods=["POST"]),
        ]
    )
