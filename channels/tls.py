"""TLS contexts for every connector, so `tls:` means the same on MLLP and HTTP, inbound and outbound.

Inbound (`tls: {cert, key, ca, require_client_cert}`): the server presents `cert`/`key`. With `ca`, client
certificates are verified against it and **required** (mutual TLS) unless `require_client_cert: false`
says explicitly that a client may come without one (a certificate it does present is still verified).
`require_client_cert: true` without `ca` is a config error: there is nothing to verify against. Before this
module MLLP defaulted to *not* requiring a client certificate while HTTP required one for the same
settings; a client without a certificate got AA on MLLP.

Outbound (`tls: {ca_file, cert_file, key_file, verify}`): the server certificate is verified against
`ca_file` (else the system store) including its host name and validity dates; `cert_file`/`key_file` are
the client certificate for mutual TLS; `verify: false` turns verification off (for a lab, never for
production; it is said in the destination's status).

Relative paths are resolved against the config file's directory by the caller's `resolve`. A file that
cannot be loaded is a ConfigError naming the setting, raised when the connector starts.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

Resolve = Callable[[str], str]


def as_is(path: str) -> str:
    return path


def relative_to(base: Path) -> Resolve:
    """A resolver for paths relative to `base` (the config file's directory)."""
    def resolve(value: str) -> str:
        path = Path(value)
        return str(path if path.is_absolute() else base / path)
    return resolve


def server_context(tls: Mapping[str, Any] | None, *, key: str,
                   resolve: Resolve = as_is) -> ssl.SSLContext | None:
    """The listening side's context (module docstring); None without `tls`."""
    if not tls:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(resolve(tls["cert"]), resolve(tls["key"]))
        if tls.get("ca"):
            ctx.load_verify_locations(cafile=resolve(tls["ca"]))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS files: {exc}", key=key) from exc
    required = tls.get("require_client_cert")
    if tls.get("ca"):
        ctx.verify_mode = ssl.CERT_OPTIONAL if required is False else ssl.CERT_REQUIRED
    elif required:
        raise ConfigError("require_client_cert needs `ca` (the CA that signs client certificates)", key=key)
    return ctx


def client_context(tls: Mapping[str, Any] | None, *, key: str,
                   resolve: Resolve = as_is) -> ssl.SSLContext | None:
    """The connecting side's context (module docstring); None without `tls`."""
    if not tls:
        return None
    try:
        ctx = ssl.create_default_context(cafile=resolve(tls["ca_file"]) if tls.get("ca_file") else None)
        if tls.get("cert_file"):
            ctx.load_cert_chain(resolve(tls["cert_file"]),
                                resolve(tls["key_file"]) if tls.get("key_file") else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS files: {exc}", key=key) from exc
    if tls.get("verify") is False:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
