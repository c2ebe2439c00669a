"""Typed configuration, built once from YAML validated against `schemas/config.schema.json`.

Every error names the file, the line and the key path, and suggests the closest valid key:
``channels[0].mllp.max_frame_byte: unknown key, did you mean max_frame_bytes? (config.yaml:12)``.
``${VAR}`` and ``${VAR:-default}`` are substituted from the environment before parsing, so secrets stay
out of the file.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from engine.errors import ConfigError
from engine.resources import DATASET_SCHEMAS_DIR, SCHEMAS_DIR, TABLES_DIR
from engine.store.connection import Dialect

DEFAULT_TABLES_DIR = TABLES_DIR
"""Code tables used when `engine.tables` is not set (package data, engine/resources.py)."""

DEFAULT_DEDUPE_WINDOW = 24 * 3600.0
"""Seconds within which a second message with the same MSH-4 + MSH-10 is a duplicate."""
DEFAULT_RETENTION_DAYS = 30.0
"""Days after which raw messages and sent payloads are pruned (dead letters never are)."""

KeyPath = tuple[str | int, ...]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def format_path(path: Sequence[str | int]) -> str:
    """`("channels", 0, "mllp", "listen")` → `channels[0].mllp.listen`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_duration(value: object, *, key: str = "") -> float:
    """Seconds from a number or a string such as `500ms`, `30s`, `5m`, `24h`, `7d`."""
    if isinstance(value, bool):
        raise ConfigError(f"expected a duration, got {value!r}", key=key)
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ConfigError(f"expected a duration such as 30s, 5m or 24h, got {value!r}", key=key)
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


def parse_size(value: object, *, key: str = "") -> int:
    """Bytes from an integer or a string such as `1MiB`, `10MB`, `512KiB`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ConfigError(f"expected a size such as 1MiB or 65536, got {value!r}", key=key)
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]


def parse_listen(value: str, *, key: str = "") -> tuple[str, int]:
    """`127.0.0.1:2575` or `[::1]:2575` → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"expected host:port, got {value!r}", key=key)
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """`engine.store`: where and how messages are made durable."""

    path: Path
    backend: Dialect = Dialect.SQLITE
    """The database: an SQLite file at `path`, or PostgreSQL at `dsn` (several nodes may share it)."""
    dsn: str | None = None
    readers: int = 2
    dedupe_window: float = DEFAULT_DEDUPE_WINDOW
    max_size: int | None = None
    retention_days: float = DEFAULT_RETENTION_DAYS


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """`engine.admin`: the admin API's address and optional bearer token."""

    host: str = "127.0.0.1"
    port: int = 8081
    token: str | None = None
    """The admin role's token (older single-token form; `tokens.admin` wins when both are set)."""
    enabled: bool = True
    tokens: Mapping[str, str] = field(default_factory=dict)
    """Role → bearer token for `viewer`, `operator`, `admin` (engine/admin/auth.py); empty values ignored."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names the admin API answers besides IP literals, `localhost` and the listen host (against DNS
    rebinding)."""
    loopback_raw: bool = False
    """Without any token: show raw patient data to loopback clients (off unless said explicitly)."""
    max_connections: int = 64
    """Concurrent admin connections; more get `503` and are closed (channels/http/limits.py). The admin
    API shares the event loop with every listener: without a cap, 300 idle connections starved MLLP."""
    header_timeout: float = 15.0
    """Seconds an open admin connection may take to send a complete request (aiohttp keepalive_timeout):
    a slowloris peer holds a connection slot for this long at most."""


@dataclass(frozen=True, slots=True)
class LogConfig:
    """`engine.log`: `auto` is key/value on a terminal and JSON lines otherwise."""

    format: str = "auto"
    level: str = "info"
    redact: bool = True


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """`engine.cluster`: this node's id and the timings of heartbeats and leases (engine/cluster/).

    Only a PostgreSQL store makes a cluster; on SQLite the one node holds everything and these only
    name it in `/status`."""

    node_id: str | None = None
    """None: `<hostname>-<pid>` (engine/cluster/nodes.py `default_node_id`)."""
    heartbeat: float = 2.0
    lease: float = 15.0


@dataclass(frozen=True, slots=True)
class EngineSection:
    """`engine`: process-wide settings."""

    store: StoreConfig
    admin: AdminConfig = field(default_factory=AdminConfig)
    log: LogConfig = field(default_factory=LogConfig)
    schemas_dir: Path = DATASET_SCHEMAS_DIR
    tables_dir: Path | None = None
    facility: str = "YONGLINK"
    mapping_workers: int = 0
    """Processes that map messages (engine/mapping/pool.py); 0 maps on the event loop itself."""
    cluster: ClusterConfig = field(default_factory=ClusterConfig)


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """One inbound channel; `settings` is its type-specific section, validated by the schema."""

    name: str
    type: str
    settings: Mapping[str, Any]
    enabled: bool = True
    routes: tuple[str, ...] | None = None
    line: int | None = None
    identity: Mapping[str, Any] | None = None
    """`identity: {conventions: [...]}`: where this channel's senders put the resident ID
    (engine/mapping/identity.py), tried before each route's own conventions."""
    source_org: str | None = None
    """The sending organisation of messages that name none (MessageHeader, meta.source, MSH-4)."""


@dataclass(frozen=True, slots=True)
class DestinationConfig:
    """One outbound destination; `settings` is its type-specific section, `options` the common keys."""

    name: str
    type: str
    settings: Mapping[str, Any]
    options: Mapping[str, Any]
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration. `version` is a hash of the file text and of the route and
    table files it uses (`content_version`; for reload display)."""

    engine: EngineSection
    channels: tuple[ChannelConfig, ...]
    destinations: tuple[DestinationConfig, ...]
    routes: tuple[Path, ...]
    file: Path
    lines: Mapping[KeyPath, int]
    version: str
    loaded_at: float

    def line_of(self, *path: str | int) -> int | None:
        """The YAML line of a key path, for error messages about config found after loading."""
        return self.lines.get(tuple(path))

    def channel(self, name: str) -> ChannelConfig:
        for ch in self.channels:
            if ch.name == name:
                return ch
        raise KeyError(name)


# --- loading ------------------------------------------------------------------------------------


def substitute_env(text: str, *, file: str, env: Mapping[str, str] | None = None) -> str:
    """Replace `${VAR}` / `${VAR:-default}` line by line (comment lines are left alone)."""
    env = os.environ if env is None else env
    out = []
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
        if line.lstrip().startswith("#"):
            out.append(line)
            continue

        def repl(m: re.Match[str], lineno: int = lineno) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} is not set (use ${{{name}:-default}})",
                              file=file, line=lineno)

        out.append(_ENV.sub(repl, line))
    return "".join(out)


def load_yaml_with_lines(text: str, *, file: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse YAML keeping the line of every key path; duplicate keys are errors, not silently merged."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark is not None:  # where the unclosed thing began: the likely culprit
            problem += f" ({context} that starts at line {context_mark.line + 1})"
        raise ConfigError(f"YAML syntax error: {problem}", file=file,
                          line=mark.line + 1 if mark else None) from None
    finally:
        loader.dispose()
    lines: dict[KeyPath, int] = {}

    def build(node: yaml.Node, path: KeyPath) -> Any:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            loader.flatten_mapping(node)
            out: dict[Any, Any] = {}
            key_lines: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node, deep=True)
                if key in out:
                    raise ConfigError(f"duplicate key (first at line {key_lines[key]})",
                                      file=file, line=key_node.start_mark.line + 1,
                                      key=format_path((*path, key)))
                key_lines[key] = key_node.start_mark.line + 1
                out[key] = build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(item, (*path, i)) for i, item in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    return (build(node, ()) if node is not None else None), lines


@cache
def config_validator() -> Draft202012Validator:
    """The config schema, compiled once, with `schemas/config/*.schema.json` resolvable by $ref."""
    resources = []
    for sub in sorted((SCHEMAS_DIR / "config").glob("*.json")):
        doc = json.loads(sub.read_text(encoding="utf-8"))
        resources.append((f"config/{sub.name}", Resource.from_contents(doc)))
        if "$id" in doc:
            resources.append((doc["$id"], Resource.from_contents(doc)))
    root = json.loads((SCHEMAS_DIR / "config.schema.json").read_text(encoding="utf-8"))
    registry: Registry[Any] = Registry().with_resources(resources)
    return Draft202012Validator(root, registry=registry)


def _nearest_line(lines: Mapping[KeyPath, int], path: KeyPath) -> int | None:
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path)


def _explain(error: ValidationError, lines: Mapping[KeyPath, int], file: str) -> list[ConfigError]:
    path: KeyPath = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in allowed]
        out = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f", did you mean {close[0]}?" if close else f" (allowed: {', '.join(sorted(allowed))})"
            out.append(ConfigError(f"unknown key{hint}", file=file, key=format_path((*path, key)),
                                   line=_nearest_line(lines, (*path, key))))
        return out
    if error.validator == "required" and isinstance(error.validator_value, list):
        missing = [k for k in error.validator_value if not isinstance(error.instance, dict)
                   or k not in error.instance]
        message = f"missing required key{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
        return [ConfigError(message, file=file, key=format_path(path) or "(top level)",
                            line=_nearest_line(lines, path))]
    message = _hint(error, path) or error.message
    if message == error.message and error.validator in ("anyOf", "oneOf") and error.context:
        message = min(error.context, key=lambda e: len(e.message)).message
    return [ConfigError(message, file=file, key=format_path(path) or "(top level)",
                        line=_nearest_line(lines, path))]


VALUE_HINTS = {
    "duration": "expected a duration such as 500ms, 30s, 5m, 24h or 7d",
    "size": "expected a size such as 65536, 512KiB, 1MiB or 10MB",
    "name": "expected a name of letters, digits, '_', '.' and '-' starting with a letter or digit",
}
"""What to write instead, for values of the config schema's `$defs` (schemas/config.schema.json)."""


def _hint(error: ValidationError, path: KeyPath) -> str | None:
    """A message that says what to write, for the schema errors whose jsonschema text does not."""
    got = f", got {error.instance!r}"
    if error.validator == "enum" and isinstance(error.validator_value, list):
        allowed = [str(v) for v in error.validator_value]
        close = difflib.get_close_matches(str(error.instance), allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else f"allowed: {', '.join(allowed)}"
        return f"{error.instance!r} is not allowed, {hint}"
    defs = config_validator().schema.get("$defs", {})
    for name, text in VALUE_HINTS.items():
        if error.schema == defs.get(name) or (error.validator == "pattern" and defs.get(name, {})
                                              .get("pattern") == error.validator_value):
            return text + got
    if error.validator == "pattern" and path and path[-1] == "listen":
        return "expected host:port such as 127.0.0.1:2575 (port 0 picks a free port)" + got
    return None


def _leaf_errors(errors: list[ValidationError]) -> list[ValidationError]:
    """Descend into if/then and allOf wrappers so users see the precise failing key."""
    out: list[ValidationError] = []
    for err in errors:
        if err.validator in ("allOf", "then", "$ref") and err.context:
            out.extend(_leaf_errors(list(err.context)))
        else:
            out.append(err)
    return out


class ConfigErrors(ConfigError):
    """Several config problems at once; `errors` keeps each, `str()` lists one per line."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(first.bare_message, file=first.file, line=first.line, key=first.key)
        self.args = ("\n".join(str(e) for e in errors),)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def validate_document(doc: Any, lines: Mapping[KeyPath, int], *, file: str) -> None:
    """Validate a parsed config against the schema; raise every problem found, ordered by line."""
    errors = sorted(config_validator().iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    explained = [c for e in _leaf_errors(errors) for c in _explain(e, lines, file)]
    if explained:
        unique = {str(e): e for e in explained}
        raise ConfigErrors(sorted(unique.values(), key=lambda e: (e.line or 0, str(e))))


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read, substitute, parse and validate a config file; raise ConfigError naming file:line:key."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror} (`yonglink init DIR` writes a starter"
                          f" project)", file=str(file)) from None
    return parse_config(text, file=file, env=env)


def parse_config(text: str, *, file: Path, env: Mapping[str, str] | None = None) -> Config:
    """Build a `Config` from YAML text; relative paths are resolved against the file's directory."""
    name = str(file)
    doc, lines = load_yaml_with_lines(substitute_env(text, file=name, env=env), file=name)
    validate_document(doc, lines, file=name)
    base = file.resolve().parent
    eng = doc.get("engine", {}) or {}
    names: dict[str, int] = {}
    for kind in ("channels", "destinations"):
        names.clear()
        for i, item in enumerate(doc.get(kind, []) or []):
            if item["name"] in names:
                first = lines.get((kind, names[item["name"]], "name"))
                raise ConfigError(f"duplicate {kind[:-1]} name {item['name']!r} (first at line {first})",
                                  file=name, line=lines.get((kind, i, "name")),
                                  key=format_path((kind, i, "name")))
            names[item["name"]] = i
    engine = _engine_section(eng, base, lines, name)
    channels = tuple(
        ChannelConfig(name=ch["name"], type=ch["type"], settings=ch.get(ch["type"], {}) or {},
                      enabled=ch.get("enabled", True),
                      routes=tuple(ch["routes"]) if "routes" in ch else None,
                      line=lines.get(("channels", i)), identity=ch.get("identity"),
                      source_org=ch.get("source_org"))
        for i, ch in enumerate(doc.get("channels", []) or [])
    )
    destinations = tuple(
        DestinationConfig(name=d["name"], type=d["type"], settings=d.get(d["type"], {}) or {},
                          options={k: v for k, v in d.items() if k not in ("name", "type", d["type"])},
                          line=lines.get(("destinations", i)))
        for i, d in enumerate(doc.get("destinations", []) or [])
    )
    routes = tuple(base / r for r in doc.get("routes", []) or [])
    return Config(engine=engine, channels=channels, destinations=destinations, routes=routes, file=file,
                  lines=lines, version=content_version(text, routes, engine.tables_dir or DEFAULT_TABLES_DIR),
                  loaded_at=time.time())


def content_version(text: str, routes: Sequence[Path], tables_dir: Path) -> str:
    """A hash of the config text and of every route file and code table it uses, so that `POST /reload`
    and `/status` show a new version after a route or table change, not only after a config change."""
    digest = hashlib.sha256(text.encode())
    files: list[Path] = []
    for pattern in routes:
        name = str(pattern)
        if any(ch in name for ch in "*?["):
            files += sorted(Path(name).parent.glob(Path(name).name))
        else:
            files.append(Path(name))
    if tables_dir.is_dir():
        files += sorted(p for p in tables_dir.rglob("*") if p.is_file())
    for path in files:
        digest.update(b"\0" + str(path).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"(unreadable)")  # the route loader reports it with its file name
    return digest.hexdigest()[:12]


_SQLITE_ONLY = ("path", "max_size", "type")
"""`engine.store` keys that mean nothing to PostgreSQL (its size is the database administrator's)."""


def _check_store_keys(st: Mapping[str, Any], backend: Dialect, lines: Mapping[KeyPath, int],
                      file: str) -> None:
    """`engine.store` keys that contradict the backend: a clear error rather than a key silently ignored."""
    def fail(key: str, message: str) -> None:
        raise ConfigError(message, file=file, key=f"engine.store.{key}",
                          line=_nearest_line(lines, ("engine", "store", key)))

    if backend is Dialect.POSTGRES:
        if not st.get("dsn"):
            fail("backend", "backend postgres needs engine.store.dsn (e.g. dsn: ${YONGLINK_PG_DSN})")
        for key in _SQLITE_ONLY:
            if key in st:
                fail(key, f"{key} is for backend sqlite; backend postgres uses dsn")
    elif "dsn" in st:
        fail("dsn", "dsn is for backend postgres; set engine.store.backend: postgres, or use path for sqlite")


def _engine_section(eng: Mapping[str, Any], base: Path, lines: Mapping[KeyPath, int],
                    file: str) -> EngineSection:
    def located(fn: Any, value: Any, *path: str) -> Any:
        try:
            return fn(value, key=format_path(("engine", *path)))
        except ConfigError as exc:
            raise ConfigError(exc.bare_message, file=file, key=exc.key,
                              line=_nearest_line(lines, ("engine", *path))) from None

    st = eng.get("store", {}) or {}
    backend = Dialect(st.get("backend", st.get("type", "sqlite")))
    _check_store_keys(st, backend, lines, file)
    store = StoreConfig(
        path=base / st.get("path", "var/yonglink.db"),
        backend=backend,
        dsn=st.get("dsn"),
        readers=int(st.get("readers", 2)),
        dedupe_window=located(parse_duration, st.get("dedupe_window", DEFAULT_DEDUPE_WINDOW),
                              "store", "dedupe_window"),
        max_size=located(parse_size, st["max_size"], "store", "max_size") if "max_size" in st else None,
        retention_days=float(st.get("retention_days", DEFAULT_RETENTION_DAYS)),
    )
    ad = eng.get("admin", {}) or {}
    host, port = located(parse_listen, ad.get("listen", "127.0.0.1:8081"), "admin", "listen")
    admin = AdminConfig(host=host, port=port, token=ad.get("token") or None, enabled=ad.get("enabled", True),
                        tokens={k: v for k, v in (ad.get("tokens") or {}).items() if v},
                        allowed_hosts=tuple(ad.get("allowed_hosts") or ()),
                        loopback_raw=bool(ad.get("loopback_raw", False)),
                        max_connections=int(ad.get("max_connections", 64)),
                        header_timeout=located(parse_duration, ad.get("header_timeout", "15s"), "admin",
                                               "header_timeout"))
    cl = eng.get("cluster", {}) or {}
    cluster = ClusterConfig(
        node_id=cl.get("node_id") or None,
        heartbeat=located(parse_duration, cl.get("heartbeat", 2.0), "cluster", "heartbeat"),
        lease=located(parse_duration, cl.get("lease", 15.0), "cluster", "lease"))
    if cluster.lease <= cluster.heartbeat:
        raise ConfigError(f"engine.cluster.lease ({cluster.lease:g} s) must be longer than"
                          f" engine.cluster.heartbeat ({cluster.heartbeat:g} s)", file=file,
                          line=_nearest_line(lines, ("engine", "cluster", "lease")),
                          key="engine.cluster.lease")
    lg = eng.get("log", {}) or {}
    log = LogConfig(format=lg.get("format", "auto"), level=lg.get("level", "info"),
                    redact=lg.get("redact", True))
    return EngineSection(
        store=store, admin=admin, log=log,
        schemas_dir=base / eng["schemas"] if "schemas" in eng else DATASET_SCHEMAS_DIR,
        tables_dir=base / eng["tables"] if "tables" in eng else None,
        facility=eng.get("facility", "YONGLINK"),
        mapping_workers=int(eng.get("mapping_workers", 0)),
        cluster=cluster,
    )
