"""The two shapes every connector takes: an inbound source and an outbound destination.

An inbound channel receives bytes from the outside world and hands each message to its
`ChannelContext` *before* it acknowledges: `await ctx.accept(msg)` returns only after the store commit;
`ctx.accept_soon(msg, landed)` is the same commit answered through a callback (the MLLP hot path: no
task or future per message).
An outbound destination sends one `DeliveryItem` and returns a `DeliveryResult`, or raises
`TransientDeliveryError` / `PermanentDeliveryError` (engine/errors.py); the retry policy reads the type.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import structlog

from engine.errors import DeliveryError
from engine.types import (
    Acceptance,
    ChannelState,
    DeliveryItem,
    DeliveryResult,
    InboundMessage,
    Landed,
    ProcessingOutcome,
)

if TYPE_CHECKING:
    from engine.datasets.registry import DatasetRegistry
    from engine.store.sqlite import Store


class ChannelStats:
    """Counters `/status` and `/metrics` show for one inbound channel (plain ints: one event loop)."""

    __slots__ = ("connections_open", "counts", "last_error", "last_error_at")

    OUTCOMES = ("received", "rejected", "duplicate", "filtered", "mapped", "failed")

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(self.OUTCOMES, 0)
        self.connections_open = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None


class ChannelContext(ABC):
    """What the engine gives an inbound channel. Implemented by `engine.channel_runtime.ChannelRuntime`."""

    name: str
    stats: ChannelStats
    log: structlog.typing.FilteringBoundLogger
    facility: str
    config_dir: Path
    """The config file's directory: relative paths in settings (TLS certs) resolve against it."""

    @abstractmethod
    async def accept(self, msg: InboundMessage) -> Acceptance:
        """Commit `msg` durably (or find its duplicate); raises StoreError when nothing was committed."""

    @abstractmethod
    def accept_soon(self, msg: InboundMessage, landed: Landed) -> None:
        """`accept` through a callback: `landed(acceptance or exception)` is called on the loop after the
        commit (an exception - StoreError - when nothing was committed). Never blocks, never raises."""

    @abstractmethod
    async def reject(self, msg: InboundMessage, reason: str) -> str:
        """Store input that cannot be acknowledged positively (state `rejected`); returns its id."""

    @abstractmethod
    async def wait_processed(self, message_id: str, timeout: float) -> ProcessingOutcome | None:  # noqa: ASYNC109
        """Wait until the pipeline decided this message (for `ack: after_processing`); None on timeout."""

    @abstractmethod
    def observe_ack(self, seconds: float) -> None:
        """Record the time from a complete inbound message to its acknowledgement being sent."""

    @abstractmethod
    def count(self, outcome: str, n: int = 1) -> None:
        """Count an outcome the channel decides itself (e.g. an AMQP payload dead-lettered unstored)."""

    @abstractmethod
    def error(self, text: str) -> None:
        """Record the channel's last error (no patient data in `text`) for `/status`."""

    @abstractmethod
    def set_state(self, state: ChannelState) -> None:
        """Report a state change the channel detects itself (e.g. `reconnecting` for AMQP)."""


class Inbound(ABC):
    """A source of messages. `settings` is the channel's type-specific config section."""

    def __init__(self, *, name: str, settings: Mapping[str, Any], context: ChannelContext) -> None:
        self.name = name
        self.settings = settings
        self.context = context

    @abstractmethod
    async def start(self) -> None:
        """Begin accepting input (bind, connect, consume). Returns once ready."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop accepting; let in-flight commits finish; close connections."""

    def describe(self) -> dict[str, Any]:
        """Listen address and anything else `/status` should show (override as needed)."""
        return {}


class Outbound(ABC):
    """A destination. `send` is called concurrently up to the destination's `concurrency`.

    A destination that can carry several records in one request sets `batch_size` > 1 (and
    `batch_wait`, the longest a record waits for companions) and implements `send_batch`; the worker
    then calls only `send_batch` (parallel ordering; FIFO always sends one record per `send`).
    """

    batch_size: int = 1
    """Most records per request; 1 = one `send` per record."""
    batch_wait: float = 0.0
    """Seconds a record may wait for others to fill a batch."""
    SCHEDULED: ClassVar[bool] = False
    """True for a destination with scheduled work of its own (export periods) that one node of a cluster
    does at a time: it receives `use_leader`."""

    def __init__(self, *, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.settings = settings

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections or sessions if the destination keeps any."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Close what `start` opened."""

    def use_store(self, *, store: Store, registry: DatasetRegistry | None,  # noqa: B027 - optional hook
                  facility: str) -> None:
        """The engine's store, dataset registry and facility code, for a destination that keeps its own
        tables (a migration in engine/store/migrations adds them to the schema), such as export. Called
        once, before `start`; the others ignore it."""

    def use_leader(self, is_leader: Callable[[], bool]) -> None:  # noqa: B027 - optional hook
        """For `SCHEDULED` destinations: `is_leader()` is True while this node does the scheduled work
        (always, on one node; in a cluster, while it holds the destination's singleton, engine/cluster/).
        Called once, before `start`."""

    def describe(self) -> dict[str, Any]:
        """The destination's own part of its `/status` entry (e.g. an export's periods); {} by default."""
        return {}

    def use_status_overrides(self, overrides: Mapping[int, str]) -> None:  # noqa: B027 - optional hook
        """The destination's `retry.status_overrides` (status code → success | transient | permanent).

        Called once, before `start`. Only a destination that classifies answers by status code (HTTP)
        uses it; the others ignore it.
        """

    @abstractmethod
    async def send(self, item: DeliveryItem) -> DeliveryResult:
        """Deliver one item, or raise TransientDeliveryError / PermanentDeliveryError."""

    async def send_batch(self, items: Sequence[DeliveryItem]) -> Sequence[DeliveryResult | DeliveryError]:
        """Deliver `items` in one request: an outcome per item (in order), or raise a DeliveryError when
        the request failed as a whole. Only called when `batch_size` > 1."""
        raise NotImplementedError(f"{type(self).__name__} does not send batches")
