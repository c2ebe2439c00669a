"""AMQP 0-9-1 destination: publish each delivery to an exchange with a routing key, confirmed.

Messages are persistent (delivery mode 2) and published `mandatory` on a channel in publisher-confirm
mode, so `send` returns only after the broker has taken responsibility for the message. A nack, an
unroutable return, a confirm timeout or a lost connection is a transient failure (the retry policy
decides when to try again). `message_id` is the delivery id, so consumers can drop the duplicates
at-least-once delivery implies.

Settings: `url` (or `url_env`, the name of an environment variable holding it), `exchange` (default:
the default exchange), `routing_key` (may contain `{dataset}` and `{destination}`), `declare` (declare
the exchange: `{type: topic, durable: true}`), `confirm_timeout`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import aio_pika
import aio_pika.exceptions
import aiormq.exceptions

from channels.base import Outbound
from engine.config import parse_duration
from engine.errors import ConfigError, TransientDeliveryError
from engine.types import DeliveryItem, DeliveryResult

DEFAULT_CONFIRM_TIMEOUT = 30.0


class AmqpOutbound(Outbound):
    """One robust connection and one confirm-mode channel per destination."""

    def __init__(self, *, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__(name=name, settings=settings)
        self.exchange_name: str = settings.get("exchange", "")
        self.routing_key: str = settings.get("routing_key", "{dataset}")
        self.confirm_timeout = parse_duration(settings.get("confirm_timeout", DEFAULT_CONFIRM_TIMEOUT))
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._lock = asyncio.Lock()

    def _url(self) -> str:
        if self.settings.get("url_env"):
            value = os.environ.get(self.settings["url_env"], "")
            if not value:
                raise ConfigError(f"environment variable {self.settings['url_env']} (AMQP URL) is not set")
            return value
        return str(self.settings.get("url", "amqp://guest:guest@127.0.0.1/"))

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._channel = self._exchange = None

    async def _ready(self) -> aio_pika.abc.AbstractExchange:
        async with self._lock:
            if self._exchange is not None and self._channel is not None and not self._channel.is_closed:
                return self._exchange
            if self._connection is None or self._connection.is_closed:
                self._connection = await aio_pika.connect_robust(self._url(), timeout=self.confirm_timeout)
            self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            declare = self.settings.get("declare")
            if not self.exchange_name:
                self._exchange = self._channel.default_exchange
            elif declare:
                self._exchange = await self._channel.declare_exchange(
                    self.exchange_name, declare.get("type", "topic"), durable=declare.get("durable", True))
            else:
                self._exchange = await self._channel.get_exchange(self.exchange_name, ensure=True)
            return self._exchange

    async def send(self, item: DeliveryItem) -> DeliveryResult:
        key = self.routing_key.format(dataset=item.dataset or "passthrough", destination=self.name)
        message = aio_pika.Message(item.payload, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                   message_id=item.delivery_id, content_type=item.content_type,
                                   headers={"x-yonglink-message-id": item.message_id,
                                            "x-yonglink-dataset": item.dataset or ""})
        try:
            exchange = await self._ready()
            await exchange.publish(message, routing_key=key, mandatory=True, timeout=self.confirm_timeout)
        except aio_pika.exceptions.PublishError as exc:
            raise TransientDeliveryError(f"broker returned the message (unroutable {key!r}): {exc}") from None
        except aio_pika.exceptions.DeliveryError as exc:
            raise TransientDeliveryError(f"broker nacked the message: {exc}") from None
        except aio_pika.exceptions.ChannelNotFoundEntity as exc:
            self._exchange = None
            raise TransientDeliveryError(f"exchange {self.exchange_name!r} not found: {exc}") from None
        except (aiormq.exceptions.AMQPError, aio_pika.exceptions.AMQPError, ConnectionError, OSError,
                TimeoutError) as exc:
            self._exchange = None
            raise TransientDeliveryError(f"AMQP publish failed: {type(exc).__name__}: {exc}") from None
        except ConfigError as exc:  # e.g. the URL's env var is unset: fixable, so retried
            raise TransientDeliveryError(str(exc)) from None
        return DeliveryResult(response=f"confirmed by broker ({self.exchange_name or 'default'}/{key})")
