"""``DisconnectWatch``: ASGI ``receive()`` stepped by hand, without a task of its own."""

from __future__ import annotations

import asyncio
from typing import Any

from tokenwire.gateway.streaming import DisconnectWatch


class Receive:
    """An ASGI ``receive`` fed by the test; counts the waits that unwound."""

    def __init__(self, *messages: dict[str, Any]) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for message in messages:
            self.queue.put_nowait(message)
        self.unwound = 0

    async def __call__(self) -> dict[str, Any]:
        try:
            await asyncio.sleep(0)  # a bare yield first: stepped on the next loop turn
            return await self.queue.get()
        except GeneratorExit:
            self.unwound += 1
            raise


async def _idle_task() -> asyncio.Task[None]:
    task = asyncio.create_task(asyncio.sleep(60))
    await asyncio.sleep(0)
    return task


async def test_the_request_body_is_skipped_and_a_disconnect_cancels_the_task() -> None:
    task = await _idle_task()
    receive = Receive({"type": "http.request", "body": b"x", "more_body": False})
    watch = DisconnectWatch(receive, task)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not watch.gone and not task.done()  # the body message is not a disconnect
    receive.queue.put_nowait({"type": "http.disconnect"})
    for _ in range(5):
        await asyncio.sleep(0)
    assert watch.gone and task.cancelled()
    watch.close()  # after the end: harmless


async def test_close_unwinds_the_pending_receive_and_cancels_nothing() -> None:
    task = await _idle_task()
    receive = Receive()
    watch = DisconnectWatch(receive, task)
    for _ in range(3):
        await asyncio.sleep(0)
    watch.close()
    assert receive.unwound == 1
    receive.queue.put_nowait({"type": "http.disconnect"})  # (no one is listening any more)
    for _ in range(3):
        await asyncio.sleep(0)
    assert not watch.gone and not task.done()
    task.cancel()


async def test_a_wake_already_scheduled_when_closed_does_nothing() -> None:
    task = await _idle_task()
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[None] = loop.create_future()

    async def receive() -> dict[str, Any]:
        await gate
        return {"type": "http.disconnect"}

    watch = DisconnectWatch(receive, task)
    gate.set_result(None)  # the watch's wake-up is now queued on the loop...
    watch.close()  # ...and the response ends first
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not watch.gone and not task.done()
    task.cancel()


async def test_a_failing_receive_counts_as_gone() -> None:
    task = await _idle_task()

    async def receive() -> dict[str, Any]:
        raise OSError("the server lost the connection")

    watch = DisconnectWatch(receive, task)
    assert watch.gone
    await asyncio.sleep(0)
    assert task.cancelled()
