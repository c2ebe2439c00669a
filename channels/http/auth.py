"""Who may post to an HTTP channel: bearer tokens / API keys read from env vars, optional mutual TLS.

Secrets never sit in the config file: `auth.bearer_token_env` / `auth.api_key_env` name environment
variables (a missing or empty one fails the channel's start). Credentials are compared with
`hmac.compare_digest` against every configured secret, so timing reveals neither which nor how much
matched. A channel with no secret configured accepts everyone (the loopback default of the example).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from engine.errors import ConfigError

DEFAULT_API_KEY_HEADER = "X-API-Key"


class Authenticator:
    """Checks one request's credentials; `check` returns None (allowed) or (status, reason)."""

    def __init__(self, settings: Mapping[str, Any], *, channel: str) -> None:
        self.channel = channel
        self.bearer_envs: Sequence[str] = _names(settings.get("bearer_token_env"))
        self.api_key_envs: Sequence[str] = _names(settings.get("api_key_env"))
        self.api_key_header: str = settings.get("api_key_header", DEFAULT_API_KEY_HEADER)
        self.allowed_clients: frozenset[str] = frozenset(settings.get("allowed_clients") or ())
        self._bearer: list[bytes] = []
        self._api_keys: list[bytes] = []

    def load(self, env: Mapping[str, str] | None = None) -> None:
        """Read the secrets from the environment (at channel start, so a rotation needs a restart)."""
        env = os.environ if env is None else env
        self._bearer = [self._secret(env, name) for name in self.bearer_envs]
        self._api_keys = [self._secret(env, name) for name in self.api_key_envs]

    @property
    def required(self) -> bool:
        return bool(self._bearer or self._api_keys)

    def _secret(self, env: Mapping[str, str], name: str) -> bytes:
        value = env.get(name, "")
        if not value:
            raise ConfigError(f"environment variable {name} (a credential of channel {self.channel!r}) "
                              "is not set or empty", key=f"channels.{self.channel}.http.auth")
        return value.encode()

    def check(self, request: web.Request) -> tuple[int, str] | None:
        """None when the request may proceed; (401, why) without valid credentials, (403, why) for a
        client certificate not in `allowed_clients`."""
        if self.allowed_clients:
            cert = request.transport.get_extra_info("peercert") if request.transport else None
            names = _subject_names(cert)
            if not names & self.allowed_clients:
                return 403, "client certificate is not allowed on this channel"
        if not self.required:
            return None
        presented: bytes | None = None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if self._bearer and scheme.lower() == "bearer" and token.strip():
            presented, secrets = _header_bytes(token.strip()), self._bearer
        elif self._api_keys and request.headers.get(self.api_key_header):
            presented, secrets = _header_bytes(request.headers[self.api_key_header]), self._api_keys
        if presented is None:
            return 401, "credentials required"
        ok = False
        for secret in secrets:  # no early exit: constant time across secrets too
            ok |= hmac.compare_digest(presented, secret)
        return None if ok else (401, "invalid credentials")

    def challenge(self) -> dict[str, str]:
        """`WWW-Authenticate` for a 401 (RFC 6750 §3)."""
        return {"WWW-Authenticate": 'Bearer realm="yonglink"'} if self._bearer else {}


def _header_bytes(value: str) -> bytes:
    """A header value back as the bytes the client sent: aiohttp decodes headers as UTF-8 with
    `surrogateescape`, so raw non-UTF-8 bytes (a hostile or broken client) become lone surrogates that
    a plain `.encode()` cannot encode - that was a 500 instead of a 401."""
    return value.encode("utf-8", errors="surrogateescape")


def _names(value: object) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]  # type: ignore[attr-defined]


def _subject_names(cert: object) -> set[str]:
    """Common names and DNS subjectAltNames of a peer certificate (`ssl.getpeercert()` shape)."""
    names: set[str] = set()
    if not isinstance(cert, dict):
        return names
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.add(value)
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "DNS":
            names.add(value)
    return names
