"""HTTP destination: POST (or PUT) each record as JSON to a URL, or several as one JSON array.

Each request carries `Idempotency-Key: <delivery id>` (the same on every retry and after a crash), so a
receiver can drop the duplicates at-least-once delivery implies. The answer is classified by status
code (engine/delivery/retry.py `classify_status`, with the destination's `retry.status_overrides`); network
failures and timeouts are transient. `Retry-After` on 429/503 is passed to the retry policy.
Credentials come from environment variables named in the config, never from the file itself.

With `batch: {max_records: N, max_wait: 50ms}` every request body is a JSON array of up to N records
(Rhapsody/Camel-style aggregation; one record is an array of one). `X-Delivery-Ids` lists the records'
delivery ids in array order (per-record deduplication); `Idempotency-Key` is the one delivery id, or
for several a digest of the ordered ids (a retry of the same batch carries the same key; records
retried in a different batch get a new one). The answer counts for every record of the batch; a
batch refused with a permanent status is split by the worker (engine/delivery/worker.py) and each record
sent again alone, so one bad record never dead-letters its neighbours.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from channels.base import Outbound
from channels.tls import client_context
from engine.config import parse_duration
from engine.delivery.retry import (
    RETRY_AFTER_STATUSES,
    Verdict,
    as_verdict,
    classify_status,
    parse_retry_after,
)
from engine.errors import ConfigError, DeliveryError, PermanentDeliveryError, TransientDeliveryError
from engine.types import DeliveryItem, DeliveryResult

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0
DEFAULT_MAX_CONNECTIONS = 32
DEFAULT_BATCH_WAIT = 0.05
"""Seconds a record waits for others to fill a batch (`batch.max_wait`)."""
JSON_TYPES = ("application/json", "application/fhir+json")
EXCERPT = 300
"""Characters of a response body kept in the last error / last response."""


def excerpt(body: bytes) -> str:
    """The start of a response body as text, on one line (for error messages and `/status`)."""
    text = body[:EXCERPT * 4].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text[:EXCERPT] + ("..." if len(text) > EXCERPT else "")


def batch_key(delivery_ids: Sequence[str]) -> str:
    """The `Idempotency-Key` of a batch: a digest of its ordered delivery ids (same batch, same key)."""
    return "batch-" + hashlib.sha256(",".join(delivery_ids).encode()).hexdigest()[:40]


def _env(name: str, what: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(f"environment variable {name} ({what}) is not set or empty")
    return value


def auth_header(auth: Mapping[str, Any] | None) -> str | None:
    """`Authorization` value from `auth.bearer_token_env` or `auth.username_env` + `auth.password_env`."""
    if not auth:
        return None
    if auth.get("bearer_token_env"):
        return "Bearer " + _env(auth["bearer_token_env"], "bearer token")
    if auth.get("username_env"):
        user = _env(auth["username_env"], "basic auth user")
        password = _env(auth["password_env"], "basic auth password") if auth.get("password_env") else ""
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


class HttpOutbound(Outbound):
    """One aiohttp session per destination, with connection reuse up to `max_connections`."""

    def __init__(self, *, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__(name=name, settings=settings)
        self.url: str = settings.get("url") or settings.get("base_url") or ""
        self.method: str = str(settings.get("method", "POST")).upper()
        self.headers: dict[str, str] = {str(k): str(v) for k, v in (settings.get("headers") or {}).items()}
        self.connect_timeout = parse_duration(settings.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
        self.read_timeout = parse_duration(settings.get("read_timeout", DEFAULT_READ_TIMEOUT))
        self.status_overrides: dict[int, Verdict] = {}
        batch = settings.get("batch")
        if batch:
            self.batch_size = int(batch["max_records"])
            self.batch_wait = parse_duration(batch.get("max_wait", DEFAULT_BATCH_WAIT), key="batch.max_wait")
        self._session: aiohttp.ClientSession | None = None

    def use_status_overrides(self, overrides: Mapping[int, str]) -> None:
        """`retry.status_overrides` of the destination, checked against the three verdicts."""
        self.status_overrides = {code: as_verdict(v) for code, v in overrides.items()}

    async def start(self) -> None:
        auth = auth_header(self.settings.get("auth"))
        if auth:
            self.headers["Authorization"] = auth
        limit = int(self.settings.get("max_connections", DEFAULT_MAX_CONNECTIONS))
        # TLS as every connector reads it (channels/tls.py); without `tls`, aiohttp's default (True)
        # verifies against the system store
        context = client_context(self.settings.get("tls"), key=f"destinations.{self.name}.http.tls")
        connector = aiohttp.TCPConnector(ssl=context if context is not None else True, limit=limit)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout,
                                        sock_read=self.read_timeout)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def target(self, item: DeliveryItem) -> tuple[str, str]:
        """(method, url) for one item; the FHIR destination overrides this."""
        return self.method, self.url

    def summarize(self, status: int, body: bytes, content_type: str) -> str:
        """What is kept as the response text (success) or added to the error (failure)."""
        return excerpt(body)

    async def send(self, item: DeliveryItem) -> DeliveryResult:
        method, url = self.target(item)
        headers = {**self.headers, "Content-Type": item.content_type, "Idempotency-Key": item.delivery_id,
                   "X-Message-Id": item.message_id}
        return await self._request(method, url, item.payload, headers)

    async def send_batch(self, items: Sequence[DeliveryItem]) -> Sequence[DeliveryResult | DeliveryError]:
        """POST the JSON records of `items` as one array; a payload that is not JSON (a pass-through
        HL7 message) cannot go into the array and fails permanently on its own."""
        outcomes: list[DeliveryResult | DeliveryError | None] = []
        batch: list[DeliveryItem] = []
        for item in items:
            if item.content_type.split(";", 1)[0].strip() in JSON_TYPES:
                batch.append(item)
                outcomes.append(None)
            else:
                outcomes.append(PermanentDeliveryError(
                    f"batch destination {self.name}: a {item.content_type} payload is not a JSON record"))
        if batch:
            ids = [i.delivery_id for i in batch]
            key = ids[0] if len(ids) == 1 else batch_key(ids)
            headers = {**self.headers, "Content-Type": "application/json", "Idempotency-Key": key,
                       "X-Delivery-Ids": ",".join(ids),
                       "X-Message-Ids": ",".join(i.message_id for i in batch)}
            body = b"[" + b",".join(i.payload for i in batch) + b"]"
            result = await self._request(self.method, self.url, body, headers)
            outcomes = [result if o is None else o for o in outcomes]
        return [o for o in outcomes if o is not None]

    async def _request(self, method: str, url: str, body: bytes,
                       headers: Mapping[str, str]) -> DeliveryResult:
        if self._session is None:
            await self.start()
        session = self._session
        if session is None:  # start() always sets it; keeps the type checker honest
            raise TransientDeliveryError("http session not started")
        try:
            async with session.request(method, url, data=body, headers=headers) as resp:
                answer = await resp.read()
                status, ctype = resp.status, resp.headers.get("Content-Type", "")
                retry_after = resp.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientDeliveryError(f"{method} {url}: {type(exc).__name__}: {exc}") from None
        text = self.summarize(status, answer, ctype)
        verdict = classify_status(status, self.status_overrides)
        if verdict == "success":
            return DeliveryResult(response=f"HTTP {status}" + (f": {text}" if text else ""))
        reason = f"HTTP {status} from {url}" + (f": {text}" if text else "")
        if verdict == "permanent":
            raise PermanentDeliveryError(reason, response=text)
        delay = parse_retry_after(retry_after) if status in RETRY_AFTER_STATUSES else None
        raise TransientDeliveryError(reason, response=text, retry_after=delay)
