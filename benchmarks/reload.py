"""`python -m benchmarks reload`: a model reloaded under load, as a client sees it.

The service (SMS_MODEL_CONTROL=explicit, pinned to the server core) starts with the older of the
two newest committed mnist versions, as version 1; 32 clients (the project's load generator,
closed loop, from the client core) send the MNIST request without pause. Three back-to-back
windows: before, during (the newer one is copied in as version 2 and
`POST /v2/repository/models/mnist/load` is sent half a second into it: build and warm-up while
version 1 serves, the switch, version 1 draining) and after. Each window counts every answer
that is not a 200 and reports req/s and p50/p99. Results in results/reload.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from app.card import version_dirs
from benchmarks import loadgen
from benchmarks.payloads import load_payloads
from benchmarks.run import log, pin_load_generator, write_json
from benchmarks.server import HOST, Server

ENDPOINT = "mnist"


def _load_request(port: int) -> bytes:
    return (
        f"POST /v2/repository/models/{ENDPOINT}/load HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def _windows(
    port: int, request: bytes, repo: Path, newer: Path, clients: int, seconds: float
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["before"] = await loadgen.closed_loop(HOST, port, request, clients, seconds, 1.0)
    swap: dict[str, Any] = {}

    async def reload() -> None:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(shutil.copytree, newer, repo / ENDPOINT / "2")
        started = time.monotonic()
        status, body = await loadgen.request_once(HOST, port, _load_request(port))
        swap.update(status=status, seconds=round(time.monotonic() - started, 3))
        if status != 200:
            swap["body"] = body[:300].decode(errors="replace")

    during, _ = await asyncio.gather(
        loadgen.closed_loop(HOST, port, request, clients, seconds, 0.0), reload()
    )
    out["during"] = during
    out["after"] = await loadgen.closed_loop(HOST, port, request, clients, seconds, 0.0)
    out["load_call"] = swap
    return out


def run_reload(
    *, models_dir: Path, datasets: Path, results_dir: Path, clients: int = 32, seconds: float = 4
) -> dict[str, Any]:
    server_core, _ = pin_load_generator()
    older, newer = (path for _, path in sorted(version_dirs(models_dir / ENDPOINT).items())[-2:])
    payload = load_payloads(datasets, (ENDPOINT,))[ENDPOINT]
    workdir = Path(tempfile.mkdtemp(prefix="sms-reload-"))
    results: dict[str, Any] = {
        "clients": clients,
        "seconds_per_window": seconds,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        (workdir / ENDPOINT).mkdir()
        shutil.copytree(older, workdir / ENDPOINT / "1")
        env = {"SMS_MODELS_DIR": str(workdir), "SMS_MODEL_CONTROL": "explicit"}
        server = Server(env, server_core)
        log(f"reload: {server.command_line()}")
        server.start()
        try:
            request = payload.request_bytes("predict", HOST, server.port)
            windows = loadgen.run(
                lambda: _windows(server.port, request, workdir, newer, clients, seconds)
            )
            status, body = server.get(f"/models/{ENDPOINT}")
            results["served_after"] = json.loads(body).get("version") if status == 200 else None
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results.update(windows)
    for name in ("before", "during", "after"):
        r = windows[name]
        log(
            f"  {name:7s} {r['ok'] + r['error_count']:6d} requests, {r['error_count']} failed, "
            f"{r['throughput']:8.1f} req/s, p50 {r['latency_ms']['p50']} p99 "
            f"{r['latency_ms']['p99']} ms"
        )
    log(f"  load call: {windows['load_call']}; served after: {results['served_after']}")
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_json(results_dir, "reload", results)
    return results
