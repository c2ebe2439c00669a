"""Who may do what on the admin API: the bearer token, the per-request flags, and the public paths.

Rules (the admin API, the DLQ routes and the console all read the same two flags):

- **Token configured** (`engine.admin.token`): every path needs `Authorization: Bearer <token>` except
  `/healthz` and the paths registered with `allow_anonymous` (the console's static files). A valid
  token sets both flags; there is no other way to see raw content or act.
- **No token configured**: every caller may act (`AUTHORIZED` is True: start/stop channels, replay), but
  raw message content and mapped records (`RAW_ALLOWED`) are shown only to loopback clients that did not
  come through a proxy (a `Forwarded` / `X-Forwarded-For` header counts as "not loopback", since a proxy
  on the same host would otherwise make every client look local). Configure a token before exposing the
  admin port beyond the host.

Flags are `web.RequestKey`s (aiohttp warns on plain string keys): other rooms call `authorized(request)`
and `raw_allowed(request)` rather than reading the request themselves.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

AUTHORIZED: web.RequestKey[bool] = web.RequestKey("authorized", bool)
"""True when the caller may act (control channels, replay, purge)."""
RAW_ALLOWED: web.RequestKey[bool] = web.RequestKey("raw_allowed", bool)
"""True when the caller may see raw messages, payloads and mapped records (patient data)."""
PUBLIC: web.AppKey[set[str]] = web.AppKey("public_paths", set)
"""Exact paths, and prefixes ending in `/` (other than `/` itself), served without the token."""

ALWAYS_PUBLIC = frozenset({"/healthz"})
REALM = 'Bearer realm="yonglink"'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def authorized(request: web.Request) -> bool:
    """May this request act? (False when the auth middleware did not run: fail closed.)"""
    return bool(request.get(AUTHORIZED, False))


def raw_allowed(request: web.Request) -> bool:
    """May this request see patient data? (False when the auth middleware did not run.)"""
    return bool(request.get(RAW_ALLOWED, False))


def allow_anonymous(app: web.Application, *paths: str) -> None:
    """Serve `paths` without the token (call before the app starts): `"/"` exact, `"/console/"` prefix."""
    app.setdefault(PUBLIC, set()).update(paths)


def is_public(app: web.Application, path: str) -> bool:
    if path in ALWAYS_PUBLIC:
        return True
    for public in app.get(PUBLIC, ()):
        if path == public or (public != "/" and public.endswith("/") and path.startswith(public)):
            return True
    return False


def presented_token(request: web.Request) -> str | None:
    """The bearer token in the Authorization header (RFC 6750 §2.1), or None."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison, so response timing does not reveal how much of a guess was right.

    aiohttp decodes header bytes that are not UTF-8 to lone surrogates (`surrogateescape`); encoding
    them back the same way compares the bytes sent (a plain `.encode()` raised: 500 instead of 401)."""
    return given is not None and hmac.compare_digest(given.encode("utf-8", errors="surrogateescape"),
                                                     token.encode())


def is_loopback(request: web.Request) -> bool:
    """A direct client on 127.0.0.0/8 or ::1 (not relayed by a proxy)."""
    if "Forwarded" in request.headers or "X-Forwarded-For" in request.headers:
        return False
    try:
        return ipaddress.ip_address((request.remote or "").split("%")[0]).is_loopback
    except ValueError:
        return False


def unauthorized(message: str, *, invalid: bool) -> web.HTTPUnauthorized:
    """401 carrying the RFC 6750 challenge; the JSON body is written by the error middleware."""
    challenge = f'{REALM}, error="invalid_token"' if invalid else REALM
    return web.HTTPUnauthorized(text=message, headers={"WWW-Authenticate": challenge})


def auth_middleware(token: str | None) -> Middleware:
    """Set `AUTHORIZED` / `RAW_ALLOWED` on every request and refuse protected paths without the token."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token:
            given = presented_token(request)
            ok = token_matches(given, token)
            request[AUTHORIZED] = ok
            request[RAW_ALLOWED] = ok
            if not ok and not is_public(request.app, request.path):
                raise unauthorized("admin token required" if given is None else "invalid admin token",
                                   invalid=given is not None)
        else:
            request[AUTHORIZED] = True
            request[RAW_ALLOWED] = is_loopback(request)
        return await handler(request)

    return middleware
