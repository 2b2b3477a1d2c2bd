"""Start and stop the service for one benchmark configuration, pinned to its own core.

The service runs as users run it, `python -m app` (uvicorn with uvloop and httptools), with the
configuration in `SMS_*` environment variables; its log goes to a temporary file whose tail is
shown if it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import loadgen

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def taskset(core: int | None) -> list[str]:
    return [] if core is None else ["taskset", "-c", str(core)]


@dataclass
class Server:
    env: dict[str, str]
    core: int | None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    start_seconds: float | None = None
    # Another server on the same footing (the `peers` scenario): its module and arguments
    # (the port is appended) and the path that answers 200 once it is ready.
    module_args: list[str] | None = None
    ready_path: str = "/readyz"

    @property
    def command(self) -> list[str]:
        if self.module_args is not None:
            args = [*self.module_args, "--port", str(self.port)]
            return [*taskset(self.core), sys.executable, "-m", *args]
        return [*taskset(self.core), sys.executable, "-m", "app"]

    def command_line(self) -> str:
        settings = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return f"{settings} {shlex.join(self.command)}"

    def start(self, timeout_s: float = 180.0) -> None:
        env = {**os.environ, **self.env, "SMS_HOST": HOST, "SMS_PORT": str(self.port)}
        fd, name = tempfile.mkstemp(prefix="sms-bench-", suffix=".log")
        self.log_path = Path(name)
        started = time.monotonic()
        with os.fdopen(fd, "wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                # a peer may start processes of its own (LitServe does): stop() ends the group
                start_new_session=self.module_args is not None,
            )
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self.process.returncode} while starting:\n"
                    + self.log_tail()
                )
            if self._ready():
                self.start_seconds = time.monotonic() - started
                return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"the server was not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def _ready(self) -> bool:
        try:
            status, _ = self.get(self.ready_path, timeout=2.0)
        except OSError:
            return False
        return status == 200

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n\r\n".encode()
        return asyncio.run(loadgen.request_once(HOST, self.port, request, timeout))

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process is not None and self.module_args is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
            self.log_path = None

    def metrics(self) -> dict[str, float]:
        """The Prometheus samples of the batcher histograms (sum and count), by model."""
        try:
            status, body = self.get("/metrics")
        except OSError:
            return {}
        if status != 200:
            return {}
        samples = {}
        pattern = re.compile(
            r"^(sms_batch_size|sms_batch_compute_seconds|sms_queue_wait_seconds)_(sum|count)"
            r'\{model="([^"]+)"\} ([0-9.eE+-]+)$'
        )
        for line in body.decode().splitlines():
            match = pattern.match(line)
            if match:
                name, kind, model, value = match.groups()
                samples[f"{name}_{kind}/{model}"] = float(value)
        return samples


@contextlib.contextmanager
def running(env: dict[str, str], core: int | None) -> Iterator[Server]:
    server = Server(env, core)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def batch_stats(before: dict[str, float], after: dict[str, float], model: str) -> dict | None:
    """Mean batch size, compute time per batch and queue wait between two /metrics scrapes."""

    def delta(name: str) -> float:
        key = f"{name}/{model}"
        return after.get(key, 0.0) - before.get(key, 0.0)

    batches = delta("sms_batch_size_count")
    if batches <= 0:
        return None
    waits = delta("sms_queue_wait_seconds_count")
    return {
        "batches": int(batches),
        "mean_batch_size": round(delta("sms_batch_size_sum") / batches, 2),
        "mean_compute_ms": round(delta("sms_batch_compute_seconds_sum") / batches * 1000, 3),
        "mean_queue_wait_ms": (
            round(delta("sms_queue_wait_seconds_sum") / waits * 1000, 3) if waits else None
        ),
    }
