"""``DisconnectWatch``: uvicorn's ``receive()`` stepped by hand, any other in a watcher task."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tokenwire.gateway.streaming import DisconnectWatch, RelayResponse


class RequestResponseCycle:
    """Stands in for uvicorn's request cycle (whose ``receive`` is stepped by hand): fed by
    the test, it counts the waits that were unwound."""

    def __init__(self, *messages: dict[str, Any]) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for message in messages:
            self.queue.put_nowait(message)
        self.unwound = 0

    async def receive(self) -> dict[str, Any]:
        try:
            await asyncio.sleep(0)  # a bare yield first: stepped on the next loop turn
            return await self.queue.get()
        except GeneratorExit:
            self.unwound += 1
            raise


def uvicorn_like(cls: type) -> type:
    """The watch steps by hand only receive() of uvicorn's cycle class, known by its name."""
    cls.__module__ = "uvicorn.protocols.http.fake_impl"
    cls.__name__ = cls.__qualname__ = "RequestResponseCycle"
    return cls


uvicorn_like(RequestResponseCycle)


async def _idle_task() -> asyncio.Task[None]:
    task = asyncio.create_task(asyncio.sleep(60))
    await asyncio.sleep(0)
    return task


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_the_request_body_is_skipped_and_a_disconnect_cancels_the_task() -> None:
    task = await _idle_task()
    cycle = RequestResponseCycle({"type": "http.request", "body": b"x", "more_body": False})
    watch = DisconnectWatch(cycle.receive, task)
    assert watch._watcher is None  # (stepped by hand: no task)
    await _turns()
    assert not watch.gone and not task.done()  # the body message is not a disconnect
    cycle.queue.put_nowait({"type": "http.disconnect"})
    await _turns()
    assert watch.gone and task.cancelled()
    watch.close()  # after the end: harmless


async def test_close_unwinds_the_pending_receive_and_cancels_nothing() -> None:
    task = await _idle_task()
    cycle = RequestResponseCycle()
    watch = DisconnectWatch(cycle.receive, task)
    await _turns(3)
    watch.close()
    assert cycle.unwound == 1
    cycle.queue.put_nowait({"type": "http.disconnect"})  # (no one is listening any more)
    await _turns(3)
    assert not watch.gone and not task.done()
    task.cancel()


async def test_a_wake_already_scheduled_when_closed_does_nothing() -> None:
    task = await _idle_task()
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[None] = loop.create_future()

    @uvicorn_like
    class Cycle(RequestResponseCycle):
        async def receive(self) -> dict[str, Any]:
            await gate
            return {"type": "http.disconnect"}

    watch = DisconnectWatch(Cycle().receive, task)
    await _turns(1)  # now waiting on the gate
    gate.set_result(None)  # the watch's wake-up is now queued on the loop...
    watch.close()  # ...and the response ends first
    await _turns(2)
    assert not watch.gone and not task.done()
    task.cancel()


@pytest.mark.parametrize("stepped", [True, False], ids=["uvicorn-receive", "other-receive"])
async def test_a_failing_receive_counts_as_gone(stepped: bool) -> None:
    task = await _idle_task()

    @uvicorn_like
    class Cycle(RequestResponseCycle):
        async def receive(self) -> dict[str, Any]:
            raise OSError("the server lost the connection")

    receive = Cycle().receive
    watch = DisconnectWatch(receive if stepped else lambda: receive(), task)
    assert (watch._watcher is None) is stepped
    assert not watch.gone  # (nothing runs before the next loop turn)
    await _turns(5)  # (a failure at once: the watch retries in a task, which fails too)
    assert watch.gone and task.cancelled()


async def test_a_wrapped_receive_runs_in_a_watcher_task() -> None:
    # Middleware may wrap receive() in code that needs a task (here asyncio.timeout).
    task = await _idle_task()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def wrapped() -> dict[str, Any]:
        async with asyncio.timeout(30):
            return await queue.get()

    watch = DisconnectWatch(wrapped, task)
    assert watch._watcher is not None
    await _turns()
    assert not watch.gone
    queue.put_nowait({"type": "http.disconnect"})
    await _turns()
    assert watch.gone and task.cancelled()


@pytest.mark.parametrize("stepped", [True, False], ids=["uvicorn-receive", "other-receive"])
async def test_a_client_gone_before_the_body_leaks_no_cancel(stepped: bool) -> None:
    # The client left while the handler waited for the upstream: receive() answers
    # http.disconnect at once, send() returns at once, and the body is already complete.
    @uvicorn_like
    class Cycle(RequestResponseCycle):
        async def receive(self) -> dict[str, Any]:
            return {"type": "http.disconnect"}

    receive = Cycle().receive

    async def send(_: dict[str, Any]) -> None:
        pass

    released: list[bool] = []

    async def close() -> None:
        await asyncio.sleep(0.01)  # (an exit-stack callback that really suspends)
        released.append(True)

    chunks: list[bytes | None] = [b"data: x\n\n", None]
    response = RelayResponse(200, [], lambda: chunks.pop(0), close)
    await response({}, receive if stepped else lambda: receive(), send)
    await asyncio.sleep(0)  # a cancel left armed would land here
    assert released == [True]


async def test_a_uvicorn_receive_that_needs_a_task_gets_one() -> None:
    # Should a future uvicorn's receive() need a running task (asyncio.timeout does), the
    # first hand step fails at once: that is no disconnect, the watch falls back to a task.
    task = await _idle_task()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @uvicorn_like
    class Cycle(RequestResponseCycle):
        async def receive(self) -> dict[str, Any]:
            async with asyncio.timeout(30):
                return await queue.get()

    watch = DisconnectWatch(Cycle().receive, task)
    await _turns()
    assert not watch.gone and watch._watcher is not None
    queue.put_nowait({"type": "http.disconnect"})
    await _turns()
    assert watch.gone and task.cancelled()


async def test_nothing_is_cancelled_after_close_even_if_receive_swallows_it() -> None:
    task = await _idle_task()
    forever: asyncio.Event = asyncio.Event()

    async def stubborn() -> dict[str, Any]:
        try:
            await forever.wait()
        except asyncio.CancelledError:
            pass  # (a badly behaved wrapper)
        return {"type": "http.disconnect"}

    watch = DisconnectWatch(stubborn, task)
    await _turns()
    watch.close()
    await _turns()
    assert not watch.gone and not task.done()
    task.cancel()
