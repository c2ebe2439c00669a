"""How the CLI finds and talks to a running engine's admin API (`status`, `messages`, `dlq`, `reload`,
`tail`).

Which engine: the admin address of the config file (`--config`, default `config.yaml`, then
`config.example.yaml` in the current directory), overridden by `$YONGLINK_ADMIN_URL`, overridden by
`--url`; `http://127.0.0.1:8081` when none is given. The token: `--token`, else `$YONGLINK_ADMIN_TOKEN`,
else the config's `engine.admin.token`. The command says on stderr which engine it talks to and why, so a
CLI pointed at the wrong engine (another one on the same port) is visible at once.

Exit codes shared by these commands: 0 done, 1 the API answered with an error (e.g. 401), 2 the admin API
could not be reached or the config could not be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8081"
"""Where `config.example.yaml` puts the admin API."""
DEFAULT_TIMEOUT = 5.0
DEFAULT_CONFIGS = ("config.yaml", "config.example.yaml")
"""Config files looked for in the current directory when `--config` is not given."""
API_ERRORS = (urllib.error.URLError, OSError, ValueError)
"""What a failed admin API call raises (HTTP error answers are `urllib.error.HTTPError`, a URLError)."""


@dataclass(frozen=True, slots=True)
class AdminTarget:
    """The admin API a command talks to, and where that choice came from (for the stderr line)."""

    url: str
    token: str | None
    source: str


class TargetError(Exception):
    """Raised when the config named by `--config` cannot be read (the message says why)."""


def add_connection_options(p: argparse.ArgumentParser) -> None:
    """`--config`, `--url`, `--token`, `--timeout`: shared by the commands that talk to the admin API."""
    p.add_argument("--config", "-c", help="config file whose engine.admin section names the engine "
                                          f"(default: {' then '.join(DEFAULT_CONFIGS)} if present)")
    p.add_argument("--url", help=f"admin API base URL (overrides the config; default $YONGLINK_ADMIN_URL or "
                                 f"the config's engine.admin.listen, else {DEFAULT_URL})")
    p.add_argument("--token", help="admin bearer token (default $YONGLINK_ADMIN_TOKEN, else the config's)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for the API")


def url_of(host: str, port: int) -> str:
    """The URL to reach an admin API listening on host:port from this machine."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def resolve(args: argparse.Namespace, *, cwd: Path | None = None) -> AdminTarget:
    """Which admin API and token to use, by the precedence in the module docstring."""
    env_url, env_token = os.environ.get("YONGLINK_ADMIN_URL"), os.environ.get("YONGLINK_ADMIN_TOKEN")
    config_path: Path | None = Path(args.config) if args.config else None
    if config_path is None:
        here = cwd or Path.cwd()
        config_path = next((here / n for n in DEFAULT_CONFIGS if (here / n).is_file()), None)
    url, token, source = DEFAULT_URL, None, "default"
    if config_path is not None:
        from engine.config import load_config
        from engine.errors import ConfigError

        try:
            admin = load_config(config_path).engine.admin
        except ConfigError as exc:
            raise TargetError(f"cannot read {config_path}: {exc}") from None
        url, token, source = url_of(admin.host, admin.port), admin.token or None, str(config_path)
    if env_url:
        url, source = env_url, "$YONGLINK_ADMIN_URL"
    if args.url:
        url, source = args.url, "--url"
    return AdminTarget(url=url.rstrip("/"), token=args.token or env_token or token, source=source)


def target_of(args: argparse.Namespace) -> AdminTarget | None:
    """`resolve`, printing the choice on stderr; None (after printing why) when the config is unreadable."""
    try:
        target = resolve(args)
    except TargetError as exc:
        print(f"yonglink: {exc}", file=sys.stderr)
        return None
    print(f"yonglink: engine at {target.url} (from {target.source})", file=sys.stderr)
    return target


def call(method: str, url: str, token: str | None, timeout: float, body: Any = None) -> Any:
    """One admin API request; JSON in and out (raises `API_ERRORS`)."""
    data = json.dumps(body).encode() if body is not None else None
    # X-Requested-With: the admin API's CSRF check refuses state changes without a non-simple header
    headers = {"Accept": "application/json", "X-Requested-With": "yonglink-cli"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def fetch(url: str, token: str | None, timeout: float) -> Any:
    """GET a JSON document from the admin API (raises `API_ERRORS`)."""
    return call("GET", url, token, timeout)


def report_api_error(exc: Exception, base_url: str, *, what: str | None = None) -> int:
    """Print why an admin API call failed; exit code 1 for an HTTP error answer, 2 when unreachable."""
    if isinstance(exc, urllib.error.HTTPError):
        try:
            doc = json.loads(exc.read())
            reason = doc.get("error") or "; ".join(doc.get("errors") or []) or exc.reason
        except (ValueError, AttributeError):
            reason = exc.reason
        hint = (" (pass --token, set YONGLINK_ADMIN_TOKEN or name the config)"
                if exc.code in (401, 403) else "")
        prefix = f"{what}: " if what else ""
        print(f"yonglink: {prefix}HTTP {exc.code}: {reason}{hint}", file=sys.stderr)
        return 1
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    print(f"yonglink: cannot reach the admin API at {base_url}: {reason}", file=sys.stderr)
    return 2
