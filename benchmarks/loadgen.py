"""The load generator: HTTP/1.1 keep-alive over raw asyncio sockets (uvloop when present).

Why not httpx: on one core httpx tops out at a few thousand requests per second, about what the
server itself does, so it would measure itself (`python -m benchmarks ceiling` measures both
clients against a trivial server). This client sends pre-encoded request bytes and parses only
the status line and Content-Length of each answer.

Two ways to load a server:

* **open loop** (`open_loop`): requests are scheduled at Poisson arrival times for a given
  rate, whether or not earlier ones have been answered; each request takes an idle connection
  of a pool of keep-alive connections opened before the run (256 by default, like wrk2's fixed
  connections), or waits for one when all are busy. Latency is measured from the *scheduled*
  send time, so neither a queue inside the server, nor a wait for a free connection, nor a late
  generator can hide (no coordinated omission). `send_lag` (actual send - scheduled, i.e. the
  generator's lateness plus any wait for a free connection) is reported too.
  Why a fixed pool: opening connections during an overload measures something else. With a pool
  that grew on demand (up to 1,024), the first request on each connection opened while the
  server was saturated waited ~4 s (median) before the server read it, so p99s jumped to
  seconds as soon as a burst opened new connections.
* **closed loop** (`closed_loop`): N clients, each on its own connection, send the next request
  as soon as the previous answer arrives. Latency is measured from the send.

Both report throughput, latency percentiles, errors by status (and `connect`, `reset`,
`timeout`), and the generator's own CPU use (`client_cpu`, 1.0 = one core saturated: then the
figures measure the generator, not the server).

Targets are restricted to loopback addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import random
import socket
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# uvloop's loop.time() has millisecond resolution: every timestamp here is perf_counter's.
clock = time.perf_counter

RESET = "reset"
CONNECT = "connect"
TIMEOUT = "timeout"
PROTOCOL = "protocol"


def check_loopback(host: str) -> None:
    if host == "localhost":
        return
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"refusing to load {host}: the benchmark only targets loopback")


def use_uvloop() -> str:
    """Install uvloop's event loop policy when available; say which loop runs."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return f"uvloop {uvloop.__version__}"


class ProtocolError(Exception):
    pass


class Disconnected(ConnectionError):
    def __init__(self, got_bytes: bool) -> None:
        super().__init__("connection closed before the whole answer arrived")
        self.got_bytes = got_bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes | None]] | None = None
        self.keep_body = False
        self.closed = False
        self.close_after = False
        self.used = 0
        self._need = -1  # bytes of the current answer (head + body) once its head is parsed
        self._status = 0
        self._body_at = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(Disconnected(bool(self.buffer)))
        self.waiter = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self._need < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[: end + 2]).lower()  # every header line ends in CRLF
            try:
                self._status = int(head[9:12])
                at = head.index(b"\r\ncontent-length:") + 17
                self._need = end + 4 + int(head[at : head.index(b"\r\n", at)])
            except ValueError:
                self._fail(ProtocolError(f"cannot parse the answer head {head[:200]!r}"))
                return
            self._body_at = end + 4
            self.close_after = b"\r\nconnection: close" in head
        if len(self.buffer) < self._need:
            return
        body = bytes(self.buffer[self._body_at : self._need]) if self.keep_body else None
        if len(self.buffer) > self._need:
            self._fail(ProtocolError("bytes after the answer (nothing was pipelined)"))
            return
        self.buffer.clear()
        self._need = -1
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self._status, body))

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    def send(self, request: bytes, keep_body: bool = False) -> asyncio.Future[Any]:
        assert self.transport is not None and self.waiter is None
        self.waiter = asyncio.get_running_loop().create_future()
        self.keep_body = keep_body
        self.used += 1
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(host: str, port: int) -> _Connection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(_Connection, host, port)
    return protocol


async def request_once(
    host: str, port: int, request: bytes, timeout: float = 30.0
) -> tuple[int, bytes]:
    """One request on a fresh connection, answer body kept (used to check a payload works)."""
    conn = await connect(host, port)
    try:
        status, body = await asyncio.wait_for(conn.send(request, keep_body=True), timeout)
    finally:
        conn.close()
    return status, body or b""


# -- statistics ---------------------------------------------------------------------------


@dataclass
class Recorder:
    """Latencies (seconds) of successful requests and counts of everything else."""

    latencies: list[float] = field(default_factory=list)
    service: list[float] = field(default_factory=list)  # from the actual send (open loop)
    send_lag: list[float] = field(default_factory=list)  # actual send - scheduled (open loop)
    statuses: Counter[str] = field(default_factory=Counter)
    first_done: float = math.inf
    last_done: float = 0.0

    def ok(self, latency: float, done: float) -> None:
        self.latencies.append(latency)
        self.statuses["200"] += 1
        self.first_done = min(self.first_done, done)
        self.last_done = max(self.last_done, done)

    def error(self, kind: str) -> None:
        self.statuses[kind] += 1


def percentiles_ms(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {k: None for k in ("mean", "p50", "p90", "p99", "p999", "max")}
    a = np.asarray(values) * 1000
    p50, p90, p99, p999 = np.percentile(a, [50, 90, 99, 99.9])
    return {
        "mean": round(float(a.mean()), 3),
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
        "p999": round(float(p999), 3),
        "max": round(float(a.max()), 3),
    }


def _summary(rec: Recorder, window_s: float, cpu_s: float, wall_s: float) -> dict[str, Any]:
    ok = rec.statuses.get("200", 0)
    errors = {k: v for k, v in sorted(rec.statuses.items()) if k != "200"}
    return {
        "ok": ok,
        "errors": errors,
        "error_count": sum(errors.values()),
        "throughput": round(ok / window_s, 2) if window_s > 0 else 0.0,
        "latency_ms": percentiles_ms(rec.latencies),
        "client_cpu": round(cpu_s / wall_s, 3) if wall_s > 0 else None,
    }


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return TIMEOUT
    if isinstance(exc, ProtocolError):
        return PROTOCOL
    if isinstance(exc, Disconnected | ConnectionResetError | BrokenPipeError):
        return RESET
    if isinstance(exc, OSError):
        return CONNECT
    return type(exc).__name__


# -- closed loop --------------------------------------------------------------------------


async def closed_loop(
    host: str,
    port: int,
    request: bytes,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 1.0,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """`concurrency` clients back to back for warmup_s + duration_s; only answers that arrive
    inside the measurement window count (throughput = those answers / window)."""
    check_loopback(host)
    rec = Recorder()
    t0 = clock()
    start = t0 + warmup_s
    end = start + duration_s

    async def client() -> None:
        conn: _Connection | None = None
        while clock() < end:
            if conn is None or conn.closed:
                try:
                    conn = await asyncio.wait_for(connect(host, port), timeout_s)
                except Exception as exc:
                    if clock() >= start:
                        rec.error(_error_kind(exc))
                    await asyncio.sleep(0.01)
                    conn = None
                    continue
            sent = clock()
            try:
                status, _ = await asyncio.wait_for(conn.send(request), timeout_s)
            except Exception as exc:
                done = clock()
                if start <= done <= end:
                    rec.error(_error_kind(exc))
                conn.close()
                conn = None
                continue
            done = clock()
            if start <= done <= end:
                if status == 200:
                    rec.ok(done - sent, done)
                else:
                    rec.error(str(status))
            if conn.close_after:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    cpu0 = time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = clock() - t0
    result = _summary(rec, duration_s, time.process_time() - cpu0, wall)
    result.update(mode="closed", concurrency=concurrency, duration_s=duration_s, warmup_s=warmup_s)
    return result


# -- open loop ----------------------------------------------------------------------------


class _Pool:
    """Idle keep-alive connections; opens new ones up to `limit`, then callers queue."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: deque[_Connection] = deque()
        self.open = 0
        self.peak = 0
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()

    async def prefill(self, count: int) -> None:
        conns = await asyncio.gather(
            *(connect(self.host, self.port) for _ in range(min(count, self.limit)))
        )
        self.idle.extend(conns)
        self.open += len(conns)
        self.peak = max(self.peak, self.open)

    async def get(self) -> _Connection:
        while self.idle:
            conn = self.idle.pop()  # most recently used first: fewest idle timeouts
            if not conn.closed:
                return conn
            self.open -= 1
        if self.open < self.limit:
            self.open += 1
            self.peak = max(self.peak, self.open)
            try:
                return await connect(self.host, self.port)
            except BaseException:
                self.open -= 1
                self._hand_over(None)
                raise
        waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        conn = await waiter
        return conn if conn is not None else await self.get()

    def put(self, conn: _Connection) -> None:
        if conn.closed or conn.close_after:
            conn.close()
            self.open -= 1
            self._hand_over(None)
            return
        if not self._hand_over(conn):
            self.idle.append(conn)

    def discard(self, conn: _Connection) -> None:
        conn.close()
        self.open -= 1
        self._hand_over(None)

    def _hand_over(self, conn: _Connection | None) -> bool:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


def poisson_schedule(rate: float, duration_s: float, seed: int) -> list[float]:
    """Arrival offsets (seconds from the start) of a Poisson process of `rate` per second."""
    rng = random.Random(seed)
    times = []
    t = rng.expovariate(rate)
    while t < duration_s:
        times.append(t)
        t += rng.expovariate(rate)
    return times


async def open_loop(
    host: str,
    port: int,
    request: bytes,
    rate: float,
    duration_s: float,
    warmup_s: float = 0.5,
    seed: int = 1,
    max_connections: int = 256,
    prefill: int = 256,
    drain_s: float = 15.0,
) -> dict[str, Any]:
    """Poisson arrivals at `rate` per second for warmup_s + duration_s; requests scheduled in the
    warm-up are sent but not counted. Latency runs from each request's scheduled time."""
    check_loopback(host)
    loop = asyncio.get_running_loop()
    pool = _Pool(host, port, max_connections)
    await pool.prefill(prefill)
    rec = Recorder()
    schedule = poisson_schedule(rate, warmup_s + duration_s, seed)
    in_flight: set[asyncio.Task[None]] = set()
    peak_in_flight = 0

    async def fire(scheduled: float, counted: bool) -> None:
        for attempt in (1, 2):
            try:
                conn = await pool.get()
            except Exception as exc:
                if counted:
                    rec.error(_error_kind(exc))
                return
            reused = conn.used > 0
            sent = clock()
            try:
                status, _ = await conn.send(request)
            except Disconnected as exc:
                pool.discard(conn)
                # A keep-alive connection the server closed while idle: nothing was processed,
                # so send again on another one (the clock keeps running from `scheduled`).
                if attempt == 1 and reused and not exc.got_bytes:
                    continue
                if counted:
                    rec.error(RESET)
                return
            except Exception as exc:
                pool.discard(conn)
                if counted:
                    rec.error(_error_kind(exc))
                return
            done = clock()
            pool.put(conn)
            if not counted:
                return
            rec.send_lag.append(sent - scheduled)
            if status == 200:
                rec.ok(done - scheduled, done)
                rec.service.append(done - sent)
            else:
                rec.error(str(status))
            return

    cpu0 = time.process_time()
    t0 = clock() + 0.01
    measured_from = t0 + warmup_s
    for offset in schedule:
        at = t0 + offset
        delay = at - clock()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        task = loop.create_task(fire(at, at >= measured_from))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        peak_in_flight = max(peak_in_flight, len(in_flight))
    schedule_end = clock()
    if in_flight:
        _, late = await asyncio.wait(set(in_flight), timeout=drain_s)
        for task in late:
            task.cancel()
            rec.error(TIMEOUT)
        if late:
            await asyncio.gather(*late, return_exceptions=True)
    wall = clock() - t0
    cpu = time.process_time() - cpu0
    pool.close()
    for waiter in pool.waiters:
        waiter.cancel()
    # The window the counted answers arrived in: from the end of the warm-up to the last
    # answer, but at least the scheduled duration (an idle tail must not inflate throughput).
    window = max(duration_s, rec.last_done - measured_from) if rec.latencies else duration_s
    result = _summary(rec, window, cpu, wall)
    counted = sum(1 for offset in schedule if t0 + offset >= measured_from)
    result.update(
        mode="open",
        rate=rate,
        duration_s=duration_s,
        warmup_s=warmup_s,
        sent=counted,
        offered=round(counted / duration_s, 2),
        service_ms=percentiles_ms(rec.service),
        send_lag_ms=percentiles_ms(rec.send_lag),
        schedule_overrun_ms=round(max(0.0, schedule_end - (t0 + warmup_s + duration_s)) * 1000, 3),
        peak_in_flight=peak_in_flight,
        peak_connections=pool.peak,
    )
    return result


# -- httpx, for comparison ----------------------------------------------------------------


async def closed_loop_httpx(
    host: str,
    port: int,
    path: str,
    body: bytes,
    content_type: str,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 1.0,
) -> dict[str, Any]:
    """The same closed loop through httpx.AsyncClient (only to measure httpx's ceiling)."""
    import httpx

    check_loopback(host)
    rec = Recorder()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    t0 = clock()
    start = t0 + warmup_s
    end = start + duration_s
    headers = {"content-type": content_type}
    async with httpx.AsyncClient(
        base_url=f"http://{host}:{port}", limits=limits, timeout=30.0
    ) as client:

        async def one() -> None:
            while clock() < end:
                sent = clock()
                try:
                    response = await client.post(path, content=body, headers=headers)
                except Exception as exc:
                    if clock() >= start:
                        rec.error(_error_kind(exc))
                    continue
                done = clock()
                if start <= done <= end:
                    if response.status_code == 200:
                        rec.ok(done - sent, done)
                    else:
                        rec.error(str(response.status_code))

        cpu0 = time.process_time()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        cpu = time.process_time() - cpu0
    result = _summary(rec, duration_s, cpu, clock() - t0)
    result.update(mode="closed", client="httpx", concurrency=concurrency, duration_s=duration_s)
    return result


def run(coro_factory: Callable[[], Awaitable[Any]]) -> Any:
    """Run one coroutine on a fresh event loop (uvloop when installed)."""
    use_uvloop()

    async def main() -> Any:
        return await coro_factory()

    return asyncio.run(main())
