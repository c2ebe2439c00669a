"""AMQP 0-9-1 inbound channel (aio-pika): consume a durable RabbitMQ queue, ack only after commit.

Each delivery is one payload, HL7 v2 (a message or batch) or FHIR, chosen by the AMQP `content_type`
property (or the channel's `payload` setting; `auto` also sniffs the first byte when the property is
missing). Guarantees, the same as MLLP's:

- `basic.ack` only after `context.accept` returned, i.e. after the durable store commit.
- HL7 v2 payloads follow the inbound rules every channel shares (`engine.hl7v2.inbound`); the charset
  is the `content_type` charset parameter, else `content_encoding` when it names a text encoding
  (Spring AMQP sets it), else the channel's `charset`, else MSH-18.
- Unparseable payloads: stored as `rejected` with their reason, then acked (`on_reject: store`, the
  default: they are ours now); or `basic.reject(requeue=False)` so the queue's dead-letter exchange
  gets them (`on_reject: dead_letter`), nothing stored.
- A store failure: `basic.nack(requeue=True)` after a short pause (the prefetch slot is held meanwhile,
  so a broken store throttles redelivery instead of spinning).
- Connection loss: the channel shows `reconnecting` (so `/readyz` is 503), reconnects with capped
  exponential backoff (`engine.delivery.retry.compute_backoff`)
  and resumes. Messages in flight were not acked,
  so the broker redelivers them; the AMQP `message_id` (or MSH-4|MSH-10, or the FHIR keys of
  channels/payload.py) makes the redelivered copy a duplicate that is acked without a second store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue
from aiormq.exceptions import (
    AMQPError,
    ChannelAccessRefused,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
)

from channels.base import ChannelContext, Inbound
from channels.payload import Envelope, fhir_messages, hl7v2_items, media_type, payload_kind
from engine.delivery.retry import RetryPolicy, compute_backoff
from engine.errors import ConfigError, FhirParseError, StoreError
from engine.hl7v2.charset import python_codec
from engine.types import FHIR_JSON, FHIR_XML, FHIR_XML_TYPES, ChannelState, InboundMessage

DEFAULT_PREFETCH = 200
"""Unacked deliveries in flight: enough for the store's group commit to batch well."""
DEFAULT_RECONNECT = RetryPolicy(initial_delay=0.5, multiplier=2.0, max_delay=30.0, jitter=0.2)
CONNECT_TIMEOUT = 10.0
STORE_RETRY_PAUSE = 1.0
"""Seconds a delivery whose commit failed waits before `nack(requeue=True)`."""
DRAIN_TIMEOUT = 10.0
"""Seconds `stop()` waits for deliveries being committed before closing the connection."""
CLOSE_TIMEOUT = 5.0
"""Seconds to wait for basic.cancel / connection.close on a broker that may be half gone."""
FATAL = (ChannelNotFoundEntity, ChannelAccessRefused, ChannelPreconditionFailed)
"""Errors at start that reconnecting cannot fix (missing queue, no permission, mismatched arguments)."""


class AmqpInbound(Inbound):
    """Consumes one queue; `describe()` shows the broker (without credentials) and the queue."""

    def __init__(self, *, name: str, settings: Mapping[str, Any], context: ChannelContext) -> None:
        super().__init__(name=name, settings=settings, context=context)
        self.queue_name: str = settings["queue"]
        self.prefetch = int(settings.get("prefetch", DEFAULT_PREFETCH))
        self.payload: str = settings.get("payload", "auto")
        self.on_reject: str = settings.get("on_reject", "store")
        self.charset: str | None = settings.get("charset")
        self.release: str = settings.get("fhir_release", "R4B")
        self.split_bundles: bool = settings.get("split_bundles", True)
        self.reconnect = DEFAULT_RECONNECT
        if "reconnect" in settings:
            self.reconnect = RetryPolicy.from_options({"jitter": 0.2, **settings["reconnect"]})
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag = ""
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._observe: Callable[[float], None] = context.observe_ack
        self._count: Callable[[str], None] = context.count

    # --- lifecycle --------------------------------------------------------------------------------

    def _url(self) -> str:
        if self.settings.get("url_env"):
            value = os.environ.get(self.settings["url_env"], "")
            if not value:
                raise ConfigError(f"environment variable {self.settings['url_env']} (broker URL of "
                                  f"channel {self.name!r}) is not set", key=f"channels.{self.name}.amqp")
            return value
        return str(self.settings.get("url", "amqp://guest:guest@127.0.0.1:5672/"))

    async def start(self) -> None:
        """Connect and consume; a broker that is down is retried in the background (`reconnecting`),
        a missing queue or refused permission fails the start."""
        self._stopping = False
        url = self._url()
        try:
            await self._connect(url)
            connected = True
        except FATAL:
            raise
        except (AMQPError, OSError, TimeoutError) as exc:
            self.context.error(f"cannot connect to {self._safe_url()}: {type(exc).__name__}, retrying")
            connected = False
        self._supervisor = asyncio.create_task(self._supervise(url, connected),
                                               name=f"amqp-supervisor-{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        if self._channel is not None and not self._channel.is_closed:
            await self._cancel()  # no new deliveries; those in flight finish and are acked
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), DRAIN_TIMEOUT)
        if self._connection is not None:
            with contextlib.suppress(AMQPError, OSError, RuntimeError, TimeoutError):
                await asyncio.wait_for(self._connection.close(), CLOSE_TIMEOUT)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        self._connection, self._channel, self._queue = None, None, None
        self.context.stats.connections_open = 0

    def describe(self) -> dict[str, Any]:
        url = self._safe_url()
        return {"broker": url, "queue": self.queue_name, "prefetch": self.prefetch,
                "on_reject": self.on_reject, "in_flight": self._inflight}

    def _safe_url(self) -> str:
        try:
            url = self._url()
        except ConfigError:
            return "(unset)"
        scheme, sep, rest = url.partition("://")
        return scheme + sep + rest.rpartition("@")[2] if sep else url

    # --- connection -------------------------------------------------------------------------------

    async def _connect(self, url: str) -> None:
        connection = await aio_pika.connect(url, timeout=CONNECT_TIMEOUT)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await self._declare(channel)
            self._consumer_tag = await queue.consume(self._on_message)
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        self._connection, self._channel, self._queue = connection, channel, queue
        self.context.stats.connections_open = 1

    async def _declare(self, channel: AbstractChannel) -> AbstractQueue:
        if not self.settings.get("declare", False):
            return await channel.get_queue(self.queue_name, ensure=True)
        arguments: dict[str, Any] = {}
        dlx = self.settings.get("dead_letter_exchange")
        if dlx:
            arguments["x-dead-letter-exchange"] = dlx
            exchange = await channel.declare_exchange(dlx, aio_pika.ExchangeType.FANOUT, durable=True)
            if self.settings.get("dead_letter_queue"):
                dead = await channel.declare_queue(self.settings["dead_letter_queue"], durable=True)
                await dead.bind(exchange)
        return await channel.declare_queue(self.queue_name, durable=True, arguments=arguments or None)

    async def _cancel(self) -> None:
        if self._queue is not None:
            with contextlib.suppress(AMQPError, OSError, RuntimeError, asyncio.TimeoutError):
                await self._queue.cancel(self._consumer_tag, timeout=CLOSE_TIMEOUT)

    async def _supervise(self, url: str, connected: bool) -> None:
        """Wait for the connection (or channel) to close; then reconnect with backoff until it works."""
        attempt = 0
        while not self._stopping:
            if not connected:
                self.context.set_state(ChannelState.RECONNECTING)
                attempt += 1
                await asyncio.sleep(compute_backoff(attempt, self.reconnect))
                if self._stopping:
                    return
                try:
                    await self._connect(url)
                except Exception as exc:  # whatever it is, keep trying: the state says reconnecting
                    self.context.error(f"reconnect attempt {attempt} failed: {type(exc).__name__}")
                    continue
                attempt = 0
                self.context.log.info("reconnected to the broker", queue=self.queue_name)
                self.context.set_state(ChannelState.STARTED)
            connected = False
            connection, channel = self._connection, self._channel
            if connection is None or channel is None:
                continue
            waits = [asyncio.ensure_future(connection.closed()), asyncio.ensure_future(channel.closed())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            self.context.stats.connections_open = 0
            if self._stopping:
                return
            self.context.error("connection to the broker lost")
            self.context.log.warning("connection to the broker lost, reconnecting", queue=self.queue_name)
            with contextlib.suppress(Exception):
                await connection.close()

    # --- deliveries -------------------------------------------------------------------------------

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        self._inflight += 1
        self._idle.clear()
        try:
            await self._handle(message)
        except StoreError as exc:
            self.context.error(f"store failed, delivery requeued: {exc}")
            await asyncio.sleep(STORE_RETRY_PAUSE)
            await _settle(message.nack(requeue=True))
            return
        except Exception as exc:  # a bug must not lose the delivery: requeue it
            self.context.log.error("delivery handling failed", error=type(exc).__name__)
            self.context.error(f"delivery handling failed: {type(exc).__name__}")
            await asyncio.sleep(STORE_RETRY_PAUSE)
            await _settle(message.nack(requeue=True))
            return
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()
        self._observe(time.perf_counter() - started)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        body = message.body
        kind, charset = media_type(message.content_type)
        what = self._kind(kind, body)
        meta = {"amqp_queue": self.queue_name}
        if message.message_id:
            meta["amqp_message_id"] = str(message.message_id)
        env = Envelope(channel=self.name, received_at=time.time(), peer=f"amqp:{self.queue_name}",
                       key=f"{self.name}:amqp:{message.message_id}" if message.message_id else None,
                       metadata=meta)
        if what == "hl7v2":
            charset = charset or _text_encoding(message.content_encoding) or self.charset
            items = hl7v2_items(body, env, charset=charset)
            bad = [i for i in items if i.error is not None]
            if bad and self.on_reject == "dead_letter":
                return await self._dead_letter(message, bad[0].error.reason if bad[0].error else "")
            await asyncio.gather(*(self.context.reject(i.inbound, i.error.reason) if i.error
                                   else self.context.accept(i.inbound) for i in items))
        else:
            ctype = FHIR_XML if what == "fhir_xml" else FHIR_JSON
            try:
                msgs = fhir_messages(body, env, content_type=ctype, release=self.release,
                                     split=self.split_bundles)
            except FhirParseError as exc:
                if self.on_reject == "dead_letter":
                    return await self._dead_letter(message, exc.reason)
                await self.context.reject(InboundMessage(
                    channel=self.name, raw=body, content_type=ctype, received_at=env.received_at,
                    peer=env.peer, metadata=meta), exc.reason)
            else:
                await asyncio.gather(*(self.context.accept(m) for m in msgs))
        await _settle(message.ack())

    def _kind(self, media: str, body: bytes) -> str:
        """`hl7v2`, `fhir_json` or `fhir_xml` from the setting, the content type, or the first byte."""
        if self.payload != "auto":
            return self.payload
        found = payload_kind(media)
        if found == "hl7v2":
            return "hl7v2"
        if found == "fhir":
            return "fhir_xml" if media in FHIR_XML_TYPES else "fhir_json"
        head = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
        return {b"{": "fhir_json", b"<": "fhir_xml"}.get(head, "hl7v2")

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        self._count("rejected")
        self.context.error(f"rejected input dead-lettered: {reason}")
        await _settle(message.reject(requeue=False))


def _text_encoding(content_encoding: str | None) -> str | None:
    """The AMQP `content_encoding` property when it names a text encoding (Spring AMQP producers put the
    charset there, e.g. `gb18030`); None for anything else (`gzip` and the like say nothing of the text)."""
    if not content_encoding:
        return None
    try:
        python_codec(content_encoding)
    except LookupError:
        return None
    return content_encoding


async def _settle(op: Any) -> None:
    """Ack/nack/reject; a channel that closed meanwhile is fine: the broker redelivers, we deduplicate."""
    with contextlib.suppress(AMQPError, OSError, RuntimeError):
        await op
