"""Properties of the batcher, checked with hypothesis against the real Batcher running real
batches in its worker thread (the batch function is the only stand-in: it doubles numbers)."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.errors import BatchFailed, DeadlineExceeded, InvalidInput, NotReady, QueueFull
from app.serving.batcher import Batcher

# Time the event loop and the worker thread may lose to the OS on a loaded 2-core machine.
SCHEDULING_SLACK_S = 0.04
FAR = 3600.0
POISON = -1  # items -1000..-1 make their whole batch raise
REJECTED = -2  # items -2000..-1001 are rejected alone (like an undecodable file)


@dataclass
class Recorder:
    """The batch function: records each batch (items, start, end) and doubles the numbers."""

    compute_s: float = 0.0
    batches: list[tuple[list[int], float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def is_poison(item: int) -> bool:
        return POISON * 1000 <= item < 0 or item == POISON

    @staticmethod
    def is_rejected(item: int) -> bool:
        return REJECTED * 1000 <= item < POISON * 1000

    def __call__(self, items: list[int]) -> list[object]:
        started = time.monotonic()
        if self.compute_s:
            time.sleep(self.compute_s)
        with self.lock:
            self.batches.append((list(items), started, time.monotonic()))
        if any(self.is_poison(i) for i in items):
            raise RuntimeError("poisoned batch")
        return [InvalidInput("rejected") if self.is_rejected(i) else i * 2 for i in items]


arrivals = st.lists(st.tuples(st.floats(0, 0.004), st.integers(0, 1000)), min_size=1, max_size=40)


def run(coroutine):  # each example gets a fresh event loop
    return asyncio.run(coroutine)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arrivals=arrivals,
    max_batch=st.integers(1, 8),
    max_delay_ms=st.floats(0, 40),
    compute_ms=st.floats(0, 3),
)
# A steady trickle slower than the batch fills: the delay must count from the oldest item.
@example(arrivals=[(0.02, i) for i in range(6)], max_batch=8, max_delay_ms=30, compute_ms=0)
# Bursts larger than a batch: full batches leave at once, in order.
@example(arrivals=[(0.0, i) for i in range(12)], max_batch=3, max_delay_ms=40, compute_ms=2)
def test_every_item_answered_once_with_its_own_result_in_bounded_batches(
    arrivals: list[tuple[float, int]], max_batch: int, max_delay_ms: float, compute_ms: float
) -> None:
    recorder = Recorder(compute_s=compute_ms / 1000)

    async def scenario() -> tuple[list[int], list[float]]:
        batcher = Batcher(
            "t",
            recorder,
            max_batch_size=max_batch,
            max_delay_s=max_delay_ms / 1000,
            max_queue_size=1000,
        )
        futures, submitted = [], []
        for pause, value in arrivals:
            await asyncio.sleep(pause)
            submitted.append(time.monotonic())
            futures.append(batcher.submit(value, time.monotonic() + FAR))
        results = await asyncio.gather(*futures)
        await batcher.close()
        return results, submitted

    results, submitted = run(scenario())
    values = [value for _, value in arrivals]
    assert results == [v * 2 for v in values]  # each its own answer, exactly one each
    computed = [item for items, _, _ in recorder.batches for item in items]
    assert sorted(computed) == sorted(values)  # nothing computed twice or lost
    assert all(1 <= len(items) <= max_batch for items, _, _ in recorder.batches)

    # No item waits longer than max_delay past a free worker: a batch starts by the later of
    # "the worker became free" and "its oldest item has waited max_delay" (or when it filled).
    order = iter(range(len(values)))
    worker_free = 0.0
    for items, started, ended in recorder.batches:
        positions = [next(order) for _ in items]  # FIFO: batches take items in arrival order
        oldest = submitted[positions[0]]
        latest = max(worker_free, oldest + max_delay_ms / 1000)
        if len(items) == max_batch:
            latest = min(latest, max(worker_free, submitted[positions[-1]]))
        assert started <= latest + SCHEDULING_SLACK_S, (started - latest, items)
        worker_free = ended


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(st.sampled_from(["ok", "ok", "poison", "rejected"]), min_size=1, max_size=30),
    cancelled=st.sets(st.integers(0, 29)),
    expired=st.sets(st.integers(0, 29)),
    max_batch=st.integers(1, 6),
)
def test_errors_and_cancellation_leave_no_orphaned_futures(
    kinds: list[str], cancelled: set[int], expired: set[int], max_batch: int
) -> None:
    """Items are distinct numbers; POISON and REJECTED ones are negative (see Recorder)."""
    offset = {"ok": 0, "poison": POISON * 1000, "rejected": REJECTED * 1000}
    items = [offset[kind] + index for index, kind in enumerate(kinds)]
    recorder = Recorder(compute_s=0.001)

    async def scenario() -> list[object]:
        batcher = Batcher(
            "t", recorder, max_batch_size=max_batch, max_delay_s=0.002, max_queue_size=1000
        )
        now = time.monotonic()
        futures: list[asyncio.Future[object]] = []
        for i, item in enumerate(items):
            try:
                futures.append(batcher.submit(item, now + (0.0005 if i in expired else FAR)))
            except DeadlineExceeded as refused:  # already past its deadline when submitted
                assert i in expired
                futures.append(asyncio.get_running_loop().create_future())
                futures[-1].set_exception(refused)
        for i in cancelled & set(range(len(items))):
            futures[i].cancel()
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        # Cancelled items leave the queue at its next dispatch, a few ms later at most.
        for _ in range(200):
            if batcher.queue_depth == 0 and not batcher._running:
                break
            await asyncio.sleep(0.005)
        assert batcher.queue_depth == 0 and not batcher._running  # nothing left behind
        await batcher.close()
        return outcomes

    outcomes = run(scenario())
    batch_of = {item: batch for batch, _, _ in recorder.batches for item in batch}
    for index, (item, outcome) in enumerate(zip(items, outcomes, strict=True)):
        batch = batch_of.get(item)
        if isinstance(outcome, asyncio.CancelledError):
            assert index in cancelled
        elif isinstance(outcome, DeadlineExceeded):
            assert index in expired
        elif isinstance(outcome, BatchFailed):
            assert batch is not None and any(recorder.is_poison(i) for i in batch)
        elif isinstance(outcome, InvalidInput):
            assert kinds[index] == "rejected" and not any(recorder.is_poison(i) for i in batch)
        else:
            assert outcome == item * 2 and kinds[index] == "ok"
            assert not any(recorder.is_poison(i) for i in batch)
    computed = [item for batch, _, _ in recorder.batches for item in batch]
    assert len(computed) == len(set(computed))  # nothing computed twice


def test_full_queue_answers_at_once_with_retry_after_from_the_measured_rate() -> None:
    recorder = Recorder(compute_s=0.02)

    async def scenario() -> None:
        batcher = Batcher("t", recorder, max_batch_size=1, max_delay_s=0, max_queue_size=5)
        for value in range(3):  # measure a service rate: ~50 items/s
            await batcher.submit(value, time.monotonic() + FAR)
        rate = batcher.items_per_second
        assert rate is not None and 10 < rate < 60
        queued = [batcher.submit(0, time.monotonic() + FAR)]
        await asyncio.sleep(0.005)  # the worker took it; five more fill the queue
        queued += [batcher.submit(v, time.monotonic() + FAR) for v in range(1, 6)]
        started = time.monotonic()
        with pytest.raises(QueueFull) as refused:
            batcher.submit(99, time.monotonic() + FAR)
        assert time.monotonic() - started < 0.01
        expected = max(1, math.ceil(batcher.queue_depth / batcher.items_per_second))
        assert refused.value.retry_after_s == expected
        assert await asyncio.gather(*queued) == [2 * v for v in range(6)]
        await batcher.close()

    run(scenario())


def test_hopeless_deadline_is_refused_at_submit() -> None:
    recorder = Recorder(compute_s=0.01)

    async def scenario() -> None:
        batcher = Batcher("t", recorder, max_batch_size=2, max_delay_s=0, max_queue_size=100)
        await asyncio.gather(*[batcher.submit(v, time.monotonic() + FAR) for v in range(4)])
        backlog = [batcher.submit(v, time.monotonic() + FAR) for v in range(20)]
        with pytest.raises(DeadlineExceeded, match="cannot be met"):
            batcher.submit(1, time.monotonic() + 0.001)
        await asyncio.gather(*backlog)
        await batcher.close()

    run(scenario())


def test_wrong_number_of_results_fails_the_batch() -> None:
    async def scenario() -> None:
        def loses_one_of_several(items: list[int]) -> list[int]:
            return items[:-1] if len(items) > 1 else items

        batcher = Batcher(
            "t", loses_one_of_several, max_batch_size=4, max_delay_s=0.05, max_queue_size=10
        )
        futures = [batcher.submit(v, time.monotonic() + FAR) for v in range(3)]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        assert all(isinstance(o, BatchFailed) for o in outcomes)
        assert await batcher.submit(7, time.monotonic() + FAR) == 7  # and it keeps serving
        await batcher.close()

    run(scenario())


def test_close_fails_what_is_still_queued() -> None:
    recorder = Recorder(compute_s=0.05)

    async def scenario() -> None:
        batcher = Batcher("t", recorder, max_batch_size=1, max_delay_s=0, max_queue_size=10)
        futures = [batcher.submit(v, time.monotonic() + FAR) for v in range(3)]
        await asyncio.sleep(0.01)
        await batcher.close()
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        assert outcomes[0] == 0  # the running batch finished
        assert all(isinstance(o, NotReady) for o in outcomes[1:])

    run(scenario())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    workers=st.integers(1, 3),
    max_batch=st.integers(2, 32),
    gaps_s=st.lists(st.floats(0.0, 0.02), min_size=1, max_size=4),
)
def test_a_lone_request_never_waits_for_company(
    workers: int, max_batch: int, gaps_s: list[float]
) -> None:
    """With every worker idle, a request goes at once: max_delay (here 5 s) only applies while
    another batch is computing. Requests come one at a time, each after the previous answer."""
    max_delay_s = 5.0

    async def scenario() -> list[float]:
        recorder = Recorder()
        batcher = Batcher(
            "lone",
            recorder,
            max_batch_size=max_batch,
            max_delay_s=max_delay_s,
            max_queue_size=64,
            workers=workers,
        )
        waits = []
        for value, gap in enumerate(gaps_s):
            await asyncio.sleep(gap)
            started = time.monotonic()
            assert await batcher.submit(value, time.monotonic() + FAR) == 2 * value
            waits.append(time.monotonic() - started)
        await batcher.close()
        assert [items for items, _, _ in recorder.batches] == [[v] for v in range(len(gaps_s))]
        return waits

    waits = run(scenario())
    assert max(waits) < max_delay_s / 10, waits
