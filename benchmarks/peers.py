"""`python -m benchmarks peers`: our service beside two peers on the same ONNX file and request.

Each server in turn is started pinned to the server core (taskset; its child processes inherit
the pinning), checked with one real request, then driven by the project's own load generator
(closed loop, the same pre-encoded MNIST request: a 28×28 PNG upload) from the client core. The
peers are in benchmarks/peer_servers.py (hand-written FastAPI + ONNX Runtime) and
benchmarks/peer_litserve.py (LitServe). The result is results/peers.json: req/s, p50/p99 per
server and concurrency, and our ratio to the best peer.

Our service serves the file its card selects; the peers get the file of `--precision` (default
fp32, which is what the service serves until it reads the card's int8 entry). Run with the
precision the service actually serves, so that every server runs the same graph.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from app.card import ModelCard, latest_version_dir
from benchmarks import loadgen
from benchmarks.payloads import load_payloads
from benchmarks.run import _check_answer, log, pin_load_generator, write_json
from benchmarks.server import HOST, Server

ENDPOINT = "mnist"
OURS = "ours"
# Issue 15's target: at concurrency 32, ≥ 1.5× the best peer's req/s at a lower p99.
TARGET_CONCURRENCY = 32
TARGET_RATIO = 1.5
PEER_COMMANDS: dict[str, tuple[list[str], str]] = {
    # name: (module and arguments before --onnx/--labels/--port, readiness path)
    "fastapi + onnxruntime": (["benchmarks.peer_servers", "fastapi"], "/readyz"),
    "litserve": (["benchmarks.peer_servers", "litserve"], "/health"),
}


def _only_mnist(models_dir: Path, into: Path) -> Path:
    """A models folder holding only mnist (a link), so our service loads what the peers load."""
    (into / ENDPOINT).symlink_to(models_dir / ENDPOINT, target_is_directory=True)
    return into


def servers(models_dir: Path, onnx_path: Path, labels: list[str], core: int | None) -> list:
    """(name, Server) for ours and each peer, not started."""
    out = [(OURS, Server({"SMS_MODELS_DIR": str(models_dir)}, core))]
    for name, (module_args, ready_path) in PEER_COMMANDS.items():
        args = [*module_args, "--onnx", str(onnx_path), "--labels", *labels]
        out.append((name, Server({}, core, module_args=args, ready_path=ready_path)))
    return out


def measure_server(
    server: Server, request: bytes, levels: tuple[int, ...], seconds: float, warmup_s: float
) -> list[dict[str, Any]]:
    runs = []
    for concurrency in levels:
        r = loadgen.run(
            lambda c=concurrency: loadgen.closed_loop(
                HOST, server.port, request, c, seconds, warmup_s
            )
        )
        r["concurrency"] = concurrency
        runs.append(r)
    return runs


def ratios(results: dict[str, Any], levels: tuple[int, ...]) -> dict[str, Any]:
    """Per concurrency: our req/s over the best peer's, and both p99s."""
    out = {}
    for concurrency in levels:

        def at(name: str, c: int = concurrency) -> dict[str, Any] | None:
            runs = results[name].get("runs", [])
            return next((r for r in runs if r["concurrency"] == c), None)

        ours = at(OURS)
        peers = [(name, at(name)) for name in PEER_COMMANDS]
        peers = [(name, r) for name, r in peers if r is not None and r["throughput"] > 0]
        if ours is None or not peers:
            continue
        best_name, best = max(peers, key=lambda item: item[1]["throughput"])
        entry: dict[str, Any] = {
            "best_peer": best_name,
            "ours_req_s": ours["throughput"],
            "best_peer_req_s": best["throughput"],
            "ratio": round(ours["throughput"] / best["throughput"], 3),
            "ours_p99_ms": ours["latency_ms"]["p99"],
            "best_peer_p99_ms": best["latency_ms"]["p99"],
        }
        if concurrency == TARGET_CONCURRENCY:
            entry["target_ratio"] = TARGET_RATIO
            entry["pass"] = (
                ours["throughput"] >= TARGET_RATIO * best["throughput"]
                and ours["latency_ms"]["p99"] < best["latency_ms"]["p99"]
            )
        out[str(concurrency)] = entry
    return out


def run_peers(
    *,
    models_dir: Path,
    datasets: Path,
    results_dir: Path,
    levels: tuple[int, ...] = (32,),
    seconds: float = 10.0,
    warmup_s: float = 1.0,
    precision: Literal["auto", "fp32", "int8"] = "fp32",
    note: str = "",
) -> dict[str, Any]:
    core, client_core = pin_load_generator()
    folder = latest_version_dir(models_dir, ENDPOINT)
    card = ModelCard.load(folder)
    onnx_file, onnx_sha256 = card.serving_onnx(precision)
    payload = load_payloads(datasets, (ENDPOINT,))[ENDPOINT]
    results: dict[str, Any] = {
        "endpoint": ENDPOINT,
        "payload": payload.source,
        "peers_onnx_file": onnx_file,
        "peers_onnx_sha256": onnx_sha256,
        "server_core": core,
        "client_core": client_core,
        "seconds": seconds,
        "warmup_s": warmup_s,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "note": note,
        "servers": {},
    }
    workdir = Path(tempfile.mkdtemp(prefix="sms-peers-"))
    try:
        only_mnist = _only_mnist(models_dir, workdir)
        onnx_path = folder / onnx_file
        for name, server in servers(only_mnist, onnx_path, card.labels, core):
            log(f"peers [{name}]: {server.command_line()}")
            entry: dict[str, Any] = {"command": server.command_line()}
            results["servers"][name] = entry
            server.start()
            try:
                entry["start_seconds"] = round(server.start_seconds or 0, 2)
                if name == OURS:
                    status, body = server.get(f"/models/{ENDPOINT}")
                    entry["runtime"] = json.loads(body).get("runtime") if status == 200 else None
                problem = _check_answer(server, payload, "predict")
                if problem is not None:
                    entry["error"] = problem
                    log(f"  {name}: SKIPPED, {problem}")
                    continue
                request = payload.request_bytes("predict", HOST, server.port)
                entry["runs"] = measure_server(server, request, levels, seconds, warmup_s)
                for r in entry["runs"]:
                    log(
                        f"  {name:22s} c={r['concurrency']:<3d} {r['throughput']:8.1f} req/s  "
                        f"p50 {r['latency_ms']['p50']} p99 {r['latency_ms']['p99']} ms  "
                        f"errors {r['errors'] or 0}"
                    )
            finally:
                server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["ratios"] = ratios(results["servers"], levels)
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results_dir.mkdir(parents=True, exist_ok=True)
    write_json(results_dir, "peers", results)
    return results
