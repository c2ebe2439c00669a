"""The ingest batcher answers every message of a group commit, whatever one message's callback does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from engine.store.base import Store
from engine.store.ingest import IngestBatcher
from engine.types import Acceptance, InboundMessage


async def test_a_callback_that_raises_does_not_stop_the_others_of_its_commit(
        new_store: Callable[[], Store]) -> None:
    """Issue #16: an ACK that could not be built (MSH-18 `idna`) raised inside the commit callback and
    the 27 other connections of that group commit never got their ACK."""
    store = new_store()
    await store.open()
    batcher = IngestBatcher(store, dedupe_window=60)
    landed: list[str] = []
    done = asyncio.get_running_loop().create_future()

    def callback(cid: str, result: Acceptance | BaseException) -> None:
        if cid == "BAD":
            raise UnicodeError("encoding with 'idna' codec failed")
        landed.append(cid)
        if len(landed) == 30 and not done.done():
            done.set_result(None)

    try:
        ids = ["BAD"] + [f"OK-{i}" for i in range(30)]
        for cid in ids:  # one loop turn: one group commit
            msg = InboundMessage(channel="c", raw=cid.encode(), content_type="t", received_at=time.time(),
                                 control_id=cid, dedupe_key=f"F|{cid}")
            batcher.submit_soon(msg, lambda result, cid=cid: callback(cid, result))
        await asyncio.wait_for(done, 10)
        assert landed == ids[1:] and batcher.flushes == 1
    finally:
        await store.close()
