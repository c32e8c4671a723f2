"""Coarse timeouts: one loop timer per slot, exact timers for short waits."""

from __future__ import annotations

import asyncio
import logging

import pytest
import uvloop

from tokenwire import timeouts


@pytest.fixture
def coarse(monkeypatch: pytest.MonkeyPatch) -> float:
    """Every wait goes to a slot, with slots short enough for a test."""
    monkeypatch.setattr(timeouts, "EXACT_BELOW_S", 0.0)
    monkeypatch.setattr(timeouts, "RESOLUTION_S", 0.05)
    return 0.05


async def test_waits_fire_after_their_delay_within_one_slot(coarse: float) -> None:
    loop = asyncio.get_running_loop()
    fired: dict[str, float] = {}
    start = loop.time()
    for name, delay in (("a", 0.1), ("b", 0.1), ("c", 0.2)):
        timeouts.call_later(delay, lambda n: fired.setdefault(n, loop.time() - start), name)
    for _ in range(100):  # (a loaded machine may run the loop late: wait for them)
        await asyncio.sleep(0.05)
        if len(fired) == 3:
            break
    assert set(fired) == {"a", "b", "c"}
    for name, delay in (("a", 0.1), ("b", 0.1), ("c", 0.2)):
        # Never early; late by at most a slot, plus slack for a loop stalled by other work.
        assert delay - 0.005 <= fired[name] <= delay + coarse + 0.4, (name, fired[name])
    assert fired["c"] > fired["a"]


async def test_a_cancelled_wait_never_fires_and_others_in_its_slot_do(coarse: float) -> None:
    fired: list[str] = []
    kept = timeouts.call_later(0.1, fired.append, "kept")
    dropped = timeouts.call_later(0.1, fired.append, "dropped")
    assert kept == dropped  # the same slot
    timeouts.cancel(dropped, "dropped")
    timeouts.cancel(None, "nothing")  # (no timeout: nothing to do)
    await asyncio.sleep(0.1 + 2 * coarse + 0.1)
    assert fired == ["kept"]
    timeouts.cancel(kept, "kept")  # after it fired: harmless


async def test_a_failing_callback_does_not_stop_the_others(
    coarse: float, caplog: pytest.LogCaptureFixture
) -> None:
    fired: list[str] = []

    def fail(_: str) -> None:
        raise RuntimeError("boom")

    timeouts.call_later(0.1, fail, "first")
    timeouts.call_later(0.1, fired.append, "second")
    with caplog.at_level(logging.ERROR, logger="tokenwire"):
        await asyncio.sleep(0.1 + 2 * coarse + 0.1)
    assert fired == ["second"]
    assert "a timeout callback failed" in caplog.text


async def test_short_waits_get_an_exact_timer() -> None:
    handle = timeouts.call_later(0.01, lambda _: None, None)
    assert isinstance(handle, asyncio.TimerHandle)
    long = timeouts.call_later(timeouts.EXACT_BELOW_S + 1, lambda _: None, "long")
    assert isinstance(long, int)
    timeouts.cancel(long, "long")
    timeouts.cancel(handle, None)
    assert handle.cancelled()


def test_cancel_without_a_running_loop_is_a_no_op() -> None:
    timeouts.cancel(12345, "anything")


@pytest.mark.parametrize("loop_factory", ["asyncio", "uvloop"])
def test_cancelled_waits_never_fire_on_either_loop(
    loop_factory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uvloop's timer handles are not asyncio.TimerHandle: cancel must still reach them.
    factory = asyncio.new_event_loop if loop_factory == "asyncio" else uvloop.new_event_loop

    async def scenario() -> list[str]:
        fired: list[str] = []
        exact = timeouts.call_later(0.05, fired.append, "exact")
        monkeypatch.setattr(timeouts, "EXACT_BELOW_S", 0.0)
        monkeypatch.setattr(timeouts, "RESOLUTION_S", 0.05)
        coarse = timeouts.call_later(0.05, fired.append, "coarse")
        kept = timeouts.call_later(0.05, fired.append, "kept")
        timeouts.cancel(exact, "exact")
        timeouts.cancel(coarse, "coarse")
        await asyncio.sleep(0.3)
        assert kept is not None
        return fired

    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(scenario()) == ["kept"]


async def test_an_infinite_wait_never_fires() -> None:
    assert timeouts.call_later(float("inf"), lambda _: None, "forever") is None
    timeouts.cancel(None, "forever")
    with pytest.raises(ValueError):  # (NaN is a mistake, not "never")
        timeouts.call_later(float("nan"), lambda _: None, "nan")


async def test_a_callback_may_cancel_another_wait_of_its_slot(coarse: float) -> None:
    fired: list[str] = []
    handles: dict[str, timeouts.Timeout | None] = {}

    def first(name: str) -> None:
        fired.append(name)
        for other in ("a", "b"):  # whichever of them has not fired yet must not fire
            if other != name:
                timeouts.cancel(handles[other], other)

    handles["a"] = timeouts.call_later(0.1, first, "a")
    handles["b"] = timeouts.call_later(0.1, first, "b")
    assert handles["a"] == handles["b"]
    await asyncio.sleep(0.1 + 2 * coarse + 0.1)
    assert len(fired) == 1
