"""Admin API for the access audit (engine/store/access_audit.py): `GET /audit`, admin role only, and
`audit_entry`, which the other handlers use to describe an access they record."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.admin.auth import actor_of, raw_allowed, role_of
from engine.store.access_audit import AccessAudit, AuditAction, AuditEntry, AuditQuery


def audit_entry(request: web.Request, action: AuditAction, target: str | None = None,
                detail: str | None = None) -> AuditEntry:
    """Who did `action` on `target`, from this request (the forwarded-for chain kept beside the peer)."""
    remote = request.remote or "?"
    forwarded = request.headers.get("X-Forwarded-For")
    return AuditEntry(actor=actor_of(request), role=role_of(request).name.lower(),
                      remote=f"{remote} (for {forwarded})" if forwarded else remote,
                      action=action, target=target, detail=detail)


def _number(value: Any, name: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be epoch seconds") from None


def add_routes(app: web.Application, audit: AccessAudit) -> None:
    """Register `GET /audit?action=&actor=&target=&since=&until=&before=&limit=`."""

    async def list_audit(request: web.Request) -> web.Response:
        if not raw_allowed(request):
            raise web.HTTPForbidden(text="the access audit is shown to the admin role only")
        q = request.query
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            raise web.HTTPBadRequest(text="limit must be a whole number") from None
        query = AuditQuery(action=q.get("action") or None, actor=q.get("actor") or None,
                           target=q.get("target") or None, since=_number(q.get("since"), "since"),
                           until=_number(q.get("until"), "until"), before=q.get("before") or None,
                           limit=limit)
        items = await audit.search(query)
        return web.json_response({"items": items,
                                  "next_before": items[-1]["id"] if len(items) == query.limit else None})

    app.router.add_get("/audit", list_audit)
