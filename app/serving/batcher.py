"""Dynamic batching, one `Batcher` per model, knowing nothing about pipelines.

The call site stays a plain await: `result = await batcher.submit(item, deadline)`.

* Items wait in a bounded FIFO queue; a full queue is answered at once with `QueueFull` (503,
  with a Retry-After computed from the queue length and the measured service rate) instead of
  making the caller wait.
* A batching task, started lazily on the first submit, waits for a free worker, then for the
  first item. With every worker idle the batch goes at once with what has arrived (a lone
  request never waits for company); while another worker is busy it gathers more until the
  batch holds `max_batch_size` items or the oldest item has waited `max_delay`. Items that
  queued while every worker was busy have already waited, so a freed worker takes them at once.
* Every item has a deadline timer: when it fires the item is answered with
  `DeadlineExceeded` (504) at once, queued or computing. Before compute, items whose deadline
  passed, whose caller gave up (future cancelled) or whose client disconnected are dropped.
* `process(items) -> results` runs in a worker thread: all decoding and the ONNX Runtime run
  happen there, one thread hop per batch. A per-item exception in `results` fails only that item;
  an exception from `process` (or a result list of the wrong length) fails exactly this batch's
  items with `BatchFailed`, and the batcher keeps serving.

All times come from `time.monotonic()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from app.errors import BatchFailed, ClientDisconnected, DeadlineExceeded, NotReady, QueueFull
from app.logs import request_id_var
from app.metrics import BatcherMetrics

log = logging.getLogger("app.batcher")

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

# Probing a client for disconnection costs a few microseconds; only items that have waited this
# long are probed, as only they can have been abandoned in a way worth detecting.
_PROBE_AFTER_S = 0.005
# Service-rate estimate: exponentially weighted, this much weight on the newest batch.
_RATE_SMOOTHING = 0.2


@dataclass(slots=True, eq=False)
class _Pending:
    item: Any
    future: asyncio.Future[Any]
    enqueued: float
    deadline: float
    abandoned: Callable[[], bool] | None
    request_id: str
    timer: asyncio.TimerHandle | None = None


class Batcher(Generic[ItemT, ResultT]):
    def __init__(
        self,
        name: str,
        process: Callable[[list[ItemT]], Sequence[ResultT | BaseException]],
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue_size: int,
        workers: int = 1,
        metrics: BatcherMetrics | None = None,
    ) -> None:
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue_size = max_queue_size
        self.workers = workers
        self._process = process
        self._metrics = metrics
        self._queue: deque[_Pending] = deque()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=f"batch-{name}")
        self._free_workers = asyncio.Semaphore(workers)
        self._wake: asyncio.Future[None] | None = None
        self._wake_at_length = 1
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._busy_workers = 0  # batches computing now
        self._closed = False
        self.items_per_second: float | None = None  # measured service rate

    # -- call side -------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def submit(
        self,
        item: ItemT,
        deadline: float,
        abandoned: Callable[[], bool] | None = None,
    ) -> asyncio.Future[ResultT]:
        """Queue one item; the returned future resolves to its result or raises its error.

        `deadline` is a `time.monotonic()` instant; `abandoned()` says whether the client left.
        """
        if self._closed:
            raise NotReady(f"model {self.name!r} is shutting down")
        queued = len(self._queue)
        if queued >= self.max_queue_size:
            if self._metrics:
                self._metrics.queue_full.inc()
            retry_after = self.retry_after_s()
            raise QueueFull(
                f"model {self.name!r} has {queued} items queued (limit {self.max_queue_size}); "
                f"retry in {retry_after} s",
                retry_after,
            )
        now = time.monotonic()
        expected_wait = self.expected_wait_s()
        if now + expected_wait > deadline:
            if self._metrics:
                self._metrics.deadline.inc()
            raise DeadlineExceeded(
                f"deadline cannot be met: {queued} items ahead in {self.name!r} need about "
                f"{expected_wait * 1000:.0f} ms, {max(0.0, deadline - now) * 1000:.0f} ms left"
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ResultT] = loop.create_future()
        pending = _Pending(item, future, now, deadline, abandoned, request_id_var.get())
        pending.timer = loop.call_later(deadline - now, self._expire, pending)
        self._queue.append(pending)
        if self._task is None or self._task.done():
            self._start_batching(loop)
        if len(self._queue) >= self._wake_at_length:
            self._wake_up()
        if self._metrics:
            self._metrics.queue_depth.set(len(self._queue))
        return future

    def expected_wait_s(self) -> float:
        """Time to drain the current queue at the measured rate (0 while the queue is short or
        nothing has been measured yet: no guess is better than a bad one)."""
        if self.items_per_second is None or len(self._queue) < self.max_batch_size:
            return 0.0
        return len(self._queue) / self.items_per_second

    def retry_after_s(self) -> int:
        """Whole seconds until the current queue should have drained (1..60)."""
        if not self.items_per_second:
            return 1
        return max(1, min(60, math.ceil(len(self._queue) / self.items_per_second)))

    def _expire(self, pending: _Pending) -> None:
        """The item's deadline timer: answer 504 now, whether it is queued or computing (a
        queued item is then skipped; a computing one's result is dropped)."""
        if pending.future.done():
            return
        with contextlib.suppress(ValueError):  # still queued: free its place now
            self._queue.remove(pending)
            if self._metrics:
                self._metrics.queue_depth.set(len(self._queue))
        waited_ms = (time.monotonic() - pending.enqueued) * 1000
        pending.future.set_exception(
            DeadlineExceeded(
                f"deadline passed after {waited_ms:.0f} ms waiting for model {self.name!r}"
            )
        )
        if self._metrics:
            self._metrics.deadline.inc()

    # -- batching task ---------------------------------------------------------------------

    def _start_batching(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start (or, after a crash, restart) the batching task, in a context of its own so its
        log lines do not carry the id of the request that happened to start it."""
        if self._task is not None and not self._task.cancelled() and self._task.exception():
            log.error(
                "model %r: batching task died; restarting it",
                self.name,
                exc_info=self._task.exception(),
            )
        self._task = loop.create_task(
            self._batch_forever(), name=f"batcher-{self.name}", context=contextvars.Context()
        )

    def _wake_up(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _sleep_until_woken(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[None] = loop.create_future()
        self._wake = wake
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, lambda: wake.done() or wake.set_result(None))
        try:
            await wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    async def _batch_forever(self) -> None:
        while True:
            await self._free_workers.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:
                self._free_workers.release()
                raise
            if not batch:
                self._free_workers.release()
                continue
            self._busy_workers += 1
            run = asyncio.get_running_loop().create_task(self._run_batch(batch))
            self._running.add(run)
            run.add_done_callback(self._running.discard)

    async def _next_batch(self) -> list[_Pending]:
        """Wait for a first item; then, only while another worker is busy (under load), wait
        for company until the batch is full or the oldest item has waited `max_delay_s`. With
        every worker idle the batch goes at once with whatever has arrived: a lone request
        never waits for company that is not coming. Returns the items still worth computing."""
        while not self._queue:
            self._wake_at_length = 1
            await self._sleep_until_woken(None)
        self._wake_at_length = self.max_batch_size
        while len(self._queue) < self.max_batch_size and self._busy_workers > 0:
            remaining = self._queue[0].enqueued + self.max_delay_s - time.monotonic()
            if remaining <= 0:
                break
            await self._sleep_until_woken(remaining)
            if not self._queue:  # everything queued was cancelled meanwhile
                return []
        self._wake_at_length = 1
        taken = [self._queue.popleft() for _ in range(min(self.max_batch_size, len(self._queue)))]
        if self._metrics:
            self._metrics.queue_depth.set(len(self._queue))
        return self._drop_unservable(taken)

    def _drop_unservable(self, taken: list[_Pending]) -> list[_Pending]:
        now = time.monotonic()
        live = []
        for pending in taken:
            future = pending.future
            if future.done():  # deadline timer fired, or the caller gave up
                _cancel_timer(pending)
                continue
            if now > pending.deadline:  # its timer is about to fire: don't compute it
                _cancel_timer(pending)
                self._expire(pending)
                continue
            if (
                pending.abandoned is not None
                and now - pending.enqueued > _PROBE_AFTER_S
                and pending.abandoned()
            ):
                _cancel_timer(pending)
                future.set_exception(ClientDisconnected("client disconnected before compute"))
                if self._metrics:
                    self._metrics.disconnected.inc()
                continue
            live.append(pending)
        return live

    async def _run_batch(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        if self._metrics:
            for pending in batch:
                self._metrics.queue_wait.observe(started - pending.enqueued)
            self._metrics.batch_size.observe(len(batch))
        items = [pending.item for pending in batch]
        try:
            results, seconds = await loop.run_in_executor(self._executor, self._timed, items)
            if len(results) != len(batch):
                raise RuntimeError(
                    f"process returned {len(results)} results for {len(batch)} items"
                )
        except Exception as exc:
            log.error(
                "model %r: batch of %d items failed (requests %s)",
                self.name,
                len(batch),
                ", ".join(sorted({pending.request_id for pending in batch})),
                exc_info=exc,
            )
            if self._metrics:
                self._metrics.failures.inc()
            message = (
                f"model {self.name!r} failed on a batch of {len(batch)} items "
                f"({type(exc).__name__}); other requests are unaffected"
            )
            for pending in batch:
                _cancel_timer(pending)
                if not pending.future.done():
                    pending.future.set_exception(BatchFailed(message))
        else:
            self._record_rate(len(batch), seconds)
            for pending, result in zip(batch, results, strict=True):
                _cancel_timer(pending)
                if pending.future.done():
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)
        finally:
            self._busy_workers -= 1
            self._free_workers.release()

    def _timed(self, items: list[ItemT]) -> tuple[Sequence[ResultT | BaseException], float]:
        """Runs in the worker thread; times the work itself, not the thread hop."""
        started = time.monotonic()
        results = self._process(items)
        seconds = time.monotonic() - started
        if self._metrics:
            self._metrics.compute.observe(seconds)
        return results, seconds

    def _record_rate(self, items: int, seconds: float) -> None:
        rate = items / max(seconds, 1e-6)
        previous = self.items_per_second
        self.items_per_second = (
            rate if previous is None else previous + _RATE_SMOOTHING * (rate - previous)
        )

    # -- shutdown --------------------------------------------------------------------------

    async def drain(self) -> None:
        """Stop taking items, let everything queued and running finish, then close: how a
        version that is being replaced or unloaded leaves without failing a request."""
        self._closed = True
        while self._queue or self._running:
            self._wake_up()
            await asyncio.sleep(0.002)
        await self.close()

    async def close(self) -> None:
        """Stop batching: queued items fail with NotReady, running batches finish."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        while self._queue:
            pending = self._queue.popleft()
            _cancel_timer(pending)
            if not pending.future.done():
                pending.future.set_exception(NotReady(f"model {self.name!r} is shutting down"))
        self._executor.shutdown(wait=True)


def _cancel_timer(pending: _Pending) -> None:
    if pending.timer is not None:
        pending.timer.cancel()
        pending.timer = None
