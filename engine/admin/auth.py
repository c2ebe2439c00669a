"""Who may do what on the admin API: roles from bearer tokens, the Host and CSRF checks, public paths.

Roles (docs/security.md), each including the one before:

- `viewer`: status, metrics, history, message and dead-letter *metadata* (error texts masked);
- `operator`: + channel control, replay, reload;
- `admin`: + raw messages, delivery payloads and mapped records (patient data), purge, the access audit.

**Tokens configured** (`engine.admin.tokens: {viewer, operator, admin}`; the older `engine.admin.token` is
the admin token): every path needs `Authorization: Bearer <token>` except `/healthz` and the paths
registered with `allow_anonymous` (the console's static files); the token's role decides the rest.

**No token configured**: a direct loopback client is an `operator` and anyone else a `viewer`. Raw content
is shown to loopback clients only when the config says so explicitly (`engine.admin.loopback_raw: true`);
otherwise nobody sees it until an admin token exists. A `Forwarded` / `X-Forwarded-For` header counts as
"not loopback", since a proxy on the same host would otherwise make every client look local.

Two checks protect a browser on the same machine, which loopback trust would otherwise expose:

- **Host** (DNS rebinding: a page on attacker.example whose name is re-pointed at 127.0.0.1 reaches the
  API with `Host: attacker.example`): the Host header must be an IP literal, `localhost`, the listen
  host, or a name in `engine.admin.allowed_hosts`; anything else is refused with 421.
- **CSRF** (a cross-site form POST is a "simple" request the browser sends without asking): a request that
  changes state (not GET/HEAD/OPTIONS) must carry what no cross-site form can — an `Authorization` header,
  a JSON body (`Content-Type: application/json`) or an `X-Requested-With` header; else 403.

Flags are `web.RequestKey`s: other rooms call `authorized(request)`, `raw_allowed(request)`, `role_of`.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware


class Role(enum.IntEnum):
    """What a caller may do; each role includes the ones below it."""

    NONE = 0
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3


ROLE: web.RequestKey[Role] = web.RequestKey("role", Role)
"""The caller's role, set by the middleware (absent: the middleware did not run — fail closed)."""
ACTOR: web.RequestKey[str] = web.RequestKey("actor", str)
"""Who the caller is, for the access audit: `admin:3f2a9c1e` (role and token fingerprint) or
`anonymous@127.0.0.1`."""
PUBLIC: web.AppKey[set[str]] = web.AppKey("public_paths", set)
"""Exact paths, and prefixes ending in `/` (other than `/` itself), served without the token."""

ALWAYS_PUBLIC = frozenset({"/healthz"})
REALM = 'Bearer realm="yonglink"'
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The admin API's access settings, from `engine.admin` (see the module docstring)."""

    tokens: Mapping[Role, str] = field(default_factory=dict)
    listen_host: str = "127.0.0.1"
    allowed_hosts: frozenset[str] = frozenset()
    loopback_raw: bool = False

    @classmethod
    def of(cls, *, token: str | None = None, tokens: Mapping[str, str] | None = None,
           listen_host: str = "127.0.0.1", allowed_hosts: tuple[str, ...] = (),
           loopback_raw: bool = False) -> AccessPolicy:
        by_role = {Role[name.upper()]: value for name, value in (tokens or {}).items() if value}
        if token and Role.ADMIN not in by_role:
            by_role[Role.ADMIN] = token
        return cls(tokens=by_role, listen_host=listen_host.strip("[]").lower(),
                   allowed_hosts=frozenset(h.lower() for h in allowed_hosts), loopback_raw=loopback_raw)

    @property
    def token_required(self) -> bool:
        return bool(self.tokens)


def role_of(request: web.Request) -> Role:
    role: Role = request.get(ROLE, Role.NONE)
    return role


def authorized(request: web.Request) -> bool:
    """May this request act (control channels, replay, reload)? Operator or admin."""
    return role_of(request) >= Role.OPERATOR


def raw_allowed(request: web.Request) -> bool:
    """May this request see patient data (raw messages, payloads, records) or purge? Admin only."""
    return role_of(request) >= Role.ADMIN


def actor_of(request: web.Request) -> str:
    actor: str = request.get(ACTOR, f"anonymous@{request.remote or '?'}")
    return actor


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
    return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                                     token.encode("utf-8", "surrogateescape"))


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token in the audit log (never the token itself)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def is_loopback(request: web.Request) -> bool:
    """A direct client on 127.0.0.0/8 or ::1 (not relayed by a proxy)."""
    if "Forwarded" in request.headers or "X-Forwarded-For" in request.headers:
        return False
    try:
        return ipaddress.ip_address((request.remote or "").split("%")[0]).is_loopback
    except ValueError:
        return False


def host_allowed(host_header: str | None, policy: AccessPolicy) -> bool:
    """The Host check against DNS rebinding (module docstring). A missing Host (HTTP/1.0) is allowed."""
    if not host_header:
        return True
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return host in ("localhost", policy.listen_host) or host in policy.allowed_hosts


def non_simple(request: web.Request) -> bool:
    """True when the request carries something a cross-site HTML form cannot send (CSRF check)."""
    if "Authorization" in request.headers or "X-Requested-With" in request.headers:
        return True
    return request.content_type == "application/json"


def unauthorized(message: str, *, invalid: bool) -> web.HTTPUnauthorized:
    """401 carrying the RFC 6750 challenge; the JSON body is written by the error middleware."""
    challenge = f'{REALM}, error="invalid_token"' if invalid else REALM
    return web.HTTPUnauthorized(text=message, headers={"WWW-Authenticate": challenge})


def auth_middleware(policy: AccessPolicy) -> Middleware:
    """Host and CSRF checks, then the caller's role; protected paths refused without a valid token."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not host_allowed(request.headers.get("Host"), policy):
            raise web.HTTPMisdirectedRequest(
                text="unknown Host: add it to engine.admin.allowed_hosts to serve it")
        if policy.token_required:
            given = presented_token(request)
            role = next((r for r, tok in sorted(policy.tokens.items(), reverse=True)
                         if token_matches(given, tok)), Role.NONE)
            request[ROLE] = role
            request[ACTOR] = (f"{role.name.lower()}:{fingerprint(given)}" if role and given
                              else f"anonymous@{request.remote or '?'}")
            if role is Role.NONE and not is_public(request.app, request.path):
                raise unauthorized("admin token required" if given is None else "invalid admin token",
                                   invalid=given is not None)
        else:
            # No token: a valid request needs no Authorization header, so a browser's cross-site form
            # would otherwise pass. (With tokens, every accepted request carried one: non-simple.)
            if request.method not in SAFE_METHODS and not non_simple(request):
                raise web.HTTPForbidden(text="state-changing requests need a JSON body, an Authorization "
                                             "header or X-Requested-With (cross-site request refused)")
            local = is_loopback(request)
            request[ROLE] = (Role.ADMIN if local and policy.loopback_raw
                             else Role.OPERATOR if local else Role.VIEWER)
            request[ACTOR] = f"anonymous@{request.remote or '?'}"
        return await handler(request)

    return middleware
