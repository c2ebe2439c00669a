"""Admin API routes for the dead-letter queue: list, show, replay (single or bulk), purge.

`engine/admin/server.py` calls `add_routes(app, engine)`. Who may do what follows engine/admin/auth.py (the
same two flags the rest of the admin API reads): payloads (patient data) only when `raw_allowed`
(the admin token, or a direct loopback client when no token is configured); replay and purge only when
`authorized`. Without the admin middleware both flags are absent and the routes fail closed.

Replay has two modes, chosen by the caller: `remap: false` (default) re-sends the stored payload (the
destination was fixed); `remap: true` maps the stored raw message again (the route was fixed). Mapping
dead letters always remap. Purges and replays are written to the `dlq_audit` table with who and when.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

from aiohttp import web

from engine.admin.auth import authorized, presented_token, raw_allowed
from engine.admin.messages_api import parse_time
from engine.delivery import dead_letters
from engine.delivery.dead_letters import DeadLetterQuery
from engine.errors import StoreError
from engine.store import messages

if TYPE_CHECKING:
    from engine.runtime import Engine

BULK_LIMIT = 10_000
"""Most dead letters one `POST /dlq/replay` re-queues; call again for more."""


def add_routes(app: web.Application, engine: Engine) -> None:
    """Register the `/dlq` routes on the admin application."""
    api = DlqApi(engine)
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
    if kind not in (None, "delivery", "mapping"):
        raise web.HTTPBadRequest(text="kind: expected delivery or mapping")
    return DeadLetterQuery(channel=params.get("channel") or None,
                           destination=params.get("destination") or None,
                           kind=kind, error=params.get("error") or None,
                           since=_time(params.get("since"), "since"),
                           until=_time(params.get("until"), "until"),
                           before=params.get("before") or None, limit=limit)


class DlqApi:
    """Handlers; each reads/writes through the engine's store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- authorization ----------------------------------------------------------------------------

    def _actor(self, request: web.Request) -> str:
        """Who is acting (for the audit log); 403 when the caller may not act."""
        if not authorized(request):
            raise web.HTTPForbidden(text="not authorized to replay or purge dead letters")
        if self.engine.config.engine.admin.token and presented_token(request):
            return "admin-token"
        return f"anonymous@{request.remote or '?'}"

    # --- handlers ---------------------------------------------------------------------------------

    async def list_items(self, request: web.Request) -> web.Response:
        q = query_from(request.query)
        items = await self.engine.store.read(lambda c: dead_letters.search(c, q))
        nxt = items[-1]["id"] if len(items) == q.limit else None
        return web.json_response({"items": items, "next_before": nxt})

    async def show(self, request: web.Request) -> web.Response:
        dead_id = request.match_info["id"]
        with_payload = raw_allowed(request)
        item = await self.engine.store.read(lambda c: dead_letters.get(c, dead_id, with_payload=with_payload))
        if item is None:
            raise web.HTTPNotFound(text=f"no dead letter {dead_id}")
        if not with_payload:
            item["payload_hidden"] = ("payload shown only with the admin token"
                                      if self.engine.config.engine.admin.token
                                      else "payload shown only to loopback clients (or configure a token)")
        return web.json_response(item)

    async def replay_one(self, request: web.Request) -> web.Response:
        who = self._actor(request)
        body = await _json_body(request)
        dead_id = request.match_info["id"]
        result = await self.replay([dead_id], remap=bool(body.get("remap", False)), who=who)
        if result["requeued"] + result["remapped"] == 0:
            exists = await self.engine.store.read(lambda c: dead_letters.get(c, dead_id, with_payload=False))
            if exists is None:
                raise web.HTTPNotFound(text=f"no dead letter {dead_id}")
            return web.json_response({**result, "error": "cannot replay: " + "; ".join(result["skipped"])},
                                     status=409)
        return web.json_response(result)

    async def replay_bulk(self, request: web.Request) -> web.Response:
        who = self._actor(request)
        body = await _json_body(request)
        q = query_from({**body, "limit": body.get("limit") or BULK_LIMIT})
        items = await self.engine.store.read(lambda c: dead_letters.search(c, q))
        result = await self.replay([i["id"] for i in items], remap=bool(body.get("remap", False)), who=who)
        return web.json_response(result)

    async def purge(self, request: web.Request) -> web.Response:
        who = self._actor(request)
        dead_id = request.match_info["id"]
        now = time.time()
        done = await self.engine.store.write(lambda c: dead_letters.purge(c, dead_id, now=now, who=who))
        if not done:
            raise web.HTTPNotFound(text=f"no dead letter {dead_id}")
        self.engine.delivery.refresh_soon()
        return web.json_response({"purged": dead_id, "by": who})

    # --- replay -----------------------------------------------------------------------------------

    async def replay(self, ids: list[str], *, remap: bool, who: str) -> dict[str, Any]:
        """Re-queue (or re-map) each dead letter; report counts and why any was skipped."""
        now = time.time()

        def run(conn: Any) -> tuple[set[str], int, list[str], list[str]]:
            wake: set[str] = set()
            requeued = 0
            remapped: list[str] = []
            skipped: list[str] = []
            for dead_id in ids:
                row = conn.execute("SELECT kind FROM dead_letters WHERE id = ?", (dead_id,)).fetchone()
                if row is None:
                    continue  # already removed by an earlier remap of the same message
                if remap or row[0] == "mapping":
                    message_id = dead_letters.prepare_remap(conn, dead_id, now=now, who=who)
                    if message_id is None:
                        skipped.append(f"{dead_id}: raw message no longer stored")
                    else:
                        remapped.append(message_id)
                else:
                    dest = dead_letters.requeue(conn, dead_id, now=now, who=who)
                    if dest is None:
                        skipped.append(f"{dead_id}: payload no longer stored")
                    else:
                        wake.add(dest)
                        requeued += 1
            return wake, requeued, remapped, skipped

        try:
            wake, requeued, remapped, skipped = await self.engine.store.write(run)
        except StoreError as exc:
            raise web.HTTPServiceUnavailable(text=str(exc)) from None
        self.engine.delivery.wake(wake)
        for message_id in remapped:
            msg = await self.engine.store.read(partial(messages.get, message_id=message_id))
            if msg is not None:
                self.engine.pipeline.submit(msg)
        self.engine.delivery.refresh_soon()
        return {"requeued": requeued, "remapped": len(remapped), "skipped": skipped}


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
