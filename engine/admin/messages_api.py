"""`GET /messages` and `GET /messages/{id}`: "did message X arrive, and what happened to it?"

Listings carry metadata only (ids, header fields, state, times). The detail adds each route's result
and each delivery attempt; the raw message and mapped records are included only for callers that
`raw_allowed` (engine/admin/auth.py). Error texts are passed through `mask_error` for everyone else,
because a mapping error may quote a field value.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from engine.admin.audit_api import audit_entry
from engine.admin.auth import raw_allowed
from engine.delivery.message_trail import MessageTrail
from engine.hl7v2.charset import python_codec
from engine.logs import mask_error
from engine.store.access_audit import AccessAudit, AuditAction
from engine.store.messages import MessageQuery
from engine.types import MessageState, StoredMessage

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
_FILTERS = ("channel", "control_id", "state", "sending_facility", "message_type")


JsonResponder = Callable[[Any], web.Response]


def add_routes(app: web.Application, trail: MessageTrail, json: JsonResponder, *,
               token_configured: bool, audit: AccessAudit) -> None:
    """Register the message routes; `json` is the admin server's orjson response helper."""
    api = MessagesApi(trail, json, token_configured=token_configured, audit=audit)
    app.router.add_get("/messages", api.search)
    app.router.add_get("/messages/{id}", api.show)


def parse_time(value: str, name: str) -> float:
    """Epoch seconds, or ISO 8601 (`2024-05-01T08:00:00+08:00`; without an offset: the engine's local
    time; a date alone is local midnight)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.strip().replace(" ", "T", 1)).timestamp()
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}: expected ISO 8601 or epoch seconds, got {value!r}") from None


def query_from(params: Any) -> MessageQuery:
    """Filters from query parameters; `facility` is accepted as a short name for `sending_facility`."""
    values = {k: (params.get(k) or None) for k in _FILTERS}
    values["sending_facility"] = values["sending_facility"] or params.get("facility") or None
    if values["state"] is not None and values["state"] not in {s.value for s in MessageState}:
        raise web.HTTPBadRequest(text=f"state: expected one of {', '.join(s.value for s in MessageState)}")
    try:
        limit = int(params.get("limit") or DEFAULT_LIMIT)
    except ValueError:
        raise web.HTTPBadRequest(text="limit: expected an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise web.HTTPBadRequest(text=f"limit: expected 1..{MAX_LIMIT}")
    since, until = params.get("since"), params.get("until")
    return MessageQuery(**values, limit=limit, before=params.get("before") or None,
                        since=parse_time(since, "since") if since else None,
                        until=parse_time(until, "until") if until else None)


def metadata(msg: StoredMessage, *, show_raw: bool) -> dict[str, Any]:
    """The listing view of a message: everything but the raw bytes."""
    return {
        "id": msg.id, "channel": msg.channel, "state": msg.state.value,
        "received_at": msg.received_at, "processed_at": msg.processed_at,
        "control_id": msg.control_id, "message_type": msg.message_type,
        "sending_application": msg.sending_application, "sending_facility": msg.sending_facility,
        "content_type": msg.content_type, "charset": msg.charset, "peer": msg.peer,
        "error": msg.error if show_raw or msg.error is None else mask_error(msg.error),
        "metadata": dict(msg.metadata),
    }


def decode_raw(raw: bytes, charset: str | None) -> str:
    """The stored bytes as text, in the charset they arrived in (HL7 table 0211 names accepted)."""
    try:
        codec = python_codec(charset) if charset else "utf-8"
    except LookupError:
        codec = "utf-8"
    return raw.decode(codec, errors="replace")


class MessagesApi:
    """Handlers over the message trail service (engine/delivery/message_trail.py)."""

    def __init__(self, trail: MessageTrail, json: JsonResponder, *, token_configured: bool,
                 audit: AccessAudit) -> None:
        self.audit = audit
        self.trail = trail
        self.json = json
        self.token_configured = token_configured

    async def search(self, request: web.Request) -> web.Response:
        q = query_from(request.query)
        found = await self.trail.search(q)
        show = raw_allowed(request)
        states = await self.trail.delivery_states([m.id for m in found])
        return self.json({
            "items": [{**metadata(m, show_raw=show), "deliveries": states.get(m.id, [])} for m in found],
            "next_before": found[-1].id if len(found) == q.limit else None,
        })

    async def show(self, request: web.Request) -> web.Response:
        message_id = request.match_info["id"]
        show = raw_allowed(request)

        found = await self.trail.trail(message_id, with_raw=show)
        if found is None:
            raise web.HTTPNotFound(text=f"no message {message_id}")
        msg, results, deliveries = found.message, found.results, found.deliveries
        body = metadata(msg, show_raw=show)
        if not show:
            for r in results:
                r["record"] = None
                if r["error"]:
                    r["error"] = mask_error(r["error"])
            for d in deliveries or ():
                d.pop("payload", None)
                for key in ("last_error", "last_response"):
                    if isinstance(d.get(key), str):
                        d[key] = mask_error(d[key])
        body["results"] = results
        body["deliveries"] = deliveries
        if show and found.raw_error is not None:  # a lost key or altered bytes: say which, no traceback
            return web.json_response({"error": str(found.raw_error), "key_id": found.raw_error.key_id,
                                      "message_id": msg.id}, status=409)
        if show:
            await self.audit.record(audit_entry(request, AuditAction.READ_RAW, msg.id, msg.channel))
            body["raw"] = decode_raw(msg.raw, msg.charset) if msg.raw is not None else None
        else:
            body["raw"] = None
            body["raw_hidden"] = ("raw content and records are shown only to the admin role"
                                  if self.token_configured else
                                  "no token configured: raw content is shown to nobody (configure an admin "
                                  "token, or engine.admin.loopback_raw for local clients)")
        return self.json(body)
