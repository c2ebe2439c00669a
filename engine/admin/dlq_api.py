"""Admin API routes for the dead-letter queue: list, show, replay (single or bulk), purge.

`engine/admin/server.py` calls `add_routes(app, dead_letters)` with the engine's `DeadLetterService`
(engine/delivery/dead_letter_service.py), which does the work. Who may do what follows
engine/admin/auth.py (the same two flags the rest of the admin API reads): payloads (patient data)
only when `raw_allowed` (the admin token, or a direct loopback client when no token is configured);
replay and purge only when `authorized`. Without the admin middleware both flags are absent and the
routes fail closed.

Replay has two modes, chosen by the caller: `remap: false` (default) re-sends the stored payload (the
destination was fixed); `remap: true` maps the stored raw message again (the route was fixed). Mapping
dead letters always remap. Purges and replays are written to the `dlq_audit` table with who and when.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.admin.audit_api import audit_entry
from engine.admin.auth import actor_of, authorized, raw_allowed
from engine.admin.messages_api import parse_time
from engine.delivery.dead_letter_service import DeadLetterService, ReplayReport
from engine.delivery.dead_letters import DeadLetterQuery
from engine.errors import StoreError
from engine.logs import mask_error
from engine.store.access_audit import AccessAudit, AuditAction
from engine.types import DeadLetterKind

BULK_LIMIT = 10_000
"""Most dead letters one `POST /dlq/replay` re-queues; call again for more."""


def add_routes(app: web.Application, dead_letters: DeadLetterService, *, token_configured: bool,
               audit: AccessAudit) -> None:
    """Register the `/dlq` routes on the admin application."""
    api = DlqApi(dead_letters, token_configured=token_configured, audit=audit)
    app.router.add_get("/dlq", api.list_items)
    app.router.add_post("/dlq/replay", api.replay_bulk)
    app.router.add_get("/dlq/{id}", api.show)
    app.router.add_post("/dlq/{id}/replay", api.replay_one)
    app.router.add_delete("/dlq/{id}", api.purge)


def _time(value: Any, name: str) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        return float(value)
    return parse_time(str(value), name)


def query_from(params: Any) -> DeadLetterQuery:
    """Filters from query parameters or a JSON body (same names: channel, destination, kind, error, since,
    until, before, limit)."""
    try:
        limit = int(params.get("limit") or 50)
    except (TypeError, ValueError):
        raise web.HTTPBadRequest(text="limit: expected an integer") from None
    kind = params.get("kind") or None
    if kind not in (None, *DeadLetterKind):
        raise web.HTTPBadRequest(text="kind: expected delivery or mapping")
    return DeadLetterQuery(channel=params.get("channel") or None,
                           destination=params.get("destination") or None,
                           kind=None if kind is None else DeadLetterKind(kind),
                           error=params.get("error") or None,
                           since=_time(params.get("since"), "since"),
                           until=_time(params.get("until"), "until"),
                           before=params.get("before") or None, limit=limit)


class DlqApi:
    """Handlers over the dead-letter service."""

    def __init__(self, dead_letters: DeadLetterService, *, token_configured: bool,
                 audit: AccessAudit) -> None:
        self.dead_letters = dead_letters
        self.audit = audit
        self.token_configured = token_configured

    # --- authorization ----------------------------------------------------------------------------

    def _actor(self, request: web.Request) -> str:
        """Who is acting (for the audit log); 403 when the caller may not act."""
        if not authorized(request):
            raise web.HTTPForbidden(text="not authorized to replay or purge dead letters")
        return actor_of(request)

    # --- handlers ---------------------------------------------------------------------------------

    async def list_items(self, request: web.Request) -> web.Response:
        q = query_from(request.query)
        items = await self.dead_letters.search(q)
        if not raw_allowed(request):
            for item in items:
                item["error"] = mask_error(item["error"]) if item.get("error") else item.get("error")
        nxt = items[-1]["id"] if len(items) == q.limit else None
        return web.json_response({"items": items, "next_before": nxt})

    async def show(self, request: web.Request) -> web.Response:
        dead_id = request.match_info["id"]
        with_payload = raw_allowed(request)
        item = await self.dead_letters.get(dead_id, with_payload=with_payload)
        if item is None:
            raise web.HTTPNotFound(text=f"no dead letter {dead_id}")
        if with_payload:
            await self.audit.record(audit_entry(request, AuditAction.READ_PAYLOAD, dead_id, item.get("kind")))
        else:
            for key in ("error", "last_response"):
                if isinstance(item.get(key), str):
                    item[key] = mask_error(item[key])
            item["payload_hidden"] = ("payload shown only to the admin role" if self.token_configured
                                      else "payload shown to nobody until an admin token is configured (or "
                                           "engine.admin.loopback_raw for local clients)")
        return web.json_response(item)

    async def replay_one(self, request: web.Request) -> web.Response:
        who = self._actor(request)
        body = await _json_body(request)
        dead_id = request.match_info["id"]
        await self.audit.record(audit_entry(request, AuditAction.REPLAY, dead_id,
                                            "remap" if body.get("remap") else None))
        report = await self.replay([dead_id], remap=bool(body.get("remap", False)), who=who)
        if report.requeued + report.remapped == 0:
            exists = await self.dead_letters.get(dead_id, with_payload=False)
            if exists is None:
                raise web.HTTPNotFound(text=f"no dead letter {dead_id}")
            return web.json_response({**report.to_dict(),
                                      "error": "cannot replay: " + "; ".join(report.skipped)}, status=409)
        return web.json_response(report.to_dict())

    async def replay_bulk(self, request: web.Request) -> web.Response:
        who = self._actor(request)
        body = await _json_body(request)
        q = query_from({**body, "limit": body.get("limit") or BULK_LIMIT})
        items = await self.dead_letters.search(q)
        detail = f"bulk: {len(items)} dead letters" + (", remap" if body.get("remap") else "")
        await self.audit.record(audit_entry(request, AuditAction.REPLAY, None, detail))
        report = await self.replay([i["id"] for i in items], remap=bool(body.get("remap", False)), who=who)
        return web.json_response(report.to_dict())

    async def purge(self, request: web.Request) -> web.Response:
        who = self._actor(request)
        if not raw_allowed(request):
            raise web.HTTPForbidden(text="purging dead letters needs the admin role")
        dead_id = request.match_info["id"]
        await self.audit.record(audit_entry(request, AuditAction.PURGE, dead_id))
        if not await self.dead_letters.purge(dead_id, who=who):
            raise web.HTTPNotFound(text=f"no dead letter {dead_id}")
        return web.json_response({"purged": dead_id, "by": who})

    async def replay(self, ids: list[str], *, remap: bool, who: str) -> ReplayReport:
        """Re-queue (or re-map) each dead letter; a store that cannot commit is a 503."""
        try:
            return await self.dead_letters.replay(ids, remap=remap, who=who)
        except StoreError as exc:
            raise web.HTTPServiceUnavailable(text=str(exc)) from None


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body: expected a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body: expected a JSON object")
    return body
