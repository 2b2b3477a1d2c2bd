"""`python -m benchmarks workers`: the service with 1, 2, … serving processes (SMS_WORKERS).

Each configuration runs unpinned (the processes, their ONNX Runtime threads and the load
generator share every core, as a user's machine would), over a models folder holding only
MNIST, with the no-op routes on. Per route (predict, no-op): a closed loop at each concurrency,
and per worker process its CPU seconds during the measurement (from /proc), so that the figures
per process are measured, not assumed. The result is results/workers.json.

From these: CPU per request (all workers together) and req/s per process; the projection to a
16-core machine is derived from them in the report (benchmarks/report.py, workers_section).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import loadgen
from benchmarks.payloads import load_payloads
from benchmarks.peers import ENDPOINT, _only_mnist
from benchmarks.run import _check_answer, log, write_json
from benchmarks.server import HOST, Server

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def worker_pids(server: Server) -> list[int]:
    """The processes that serve: /readyz lists them with SMS_WORKERS > 1, else the one."""
    status, body = server.get("/readyz")
    processes = json.loads(body).get("processes") if status == 200 else None
    return [p["pid"] for p in processes] if processes else [server.pid]


def measure(
    server: Server, request: bytes, concurrency: int, seconds: float, warmup_s: float
) -> dict[str, Any]:
    pids = worker_pids(server)
    before = {pid: cpu_seconds(pid) for pid in pids}
    load_before = os.getloadavg()[0]
    result = loadgen.run(
        lambda: loadgen.closed_loop(HOST, server.port, request, concurrency, seconds, warmup_s)
    )
    cpu = {str(pid): round(cpu_seconds(pid) - before[pid], 2) for pid in pids}
    answered = result["throughput"] * seconds
    total_cpu = sum(cpu.values())
    window = seconds + warmup_s  # the CPU delta covers the warm-up too
    result.update(
        concurrency=concurrency,
        load_average_1m=[round(load_before, 2), round(os.getloadavg()[0], 2)],
        worker_cpu_s=cpu,
        busy_cores=round(total_cpu / window, 2),
        # CPU per answered request, counting the warm-up's requests at the measured rate
        cpu_ms_per_request=(
            round(total_cpu / (answered * window / seconds) * 1000, 3) if answered else None
        ),
        req_s_per_process=round(result["throughput"] / len(pids), 1),
    )
    return result


def run_workers(
    *,
    models_dir: Path,
    datasets: Path,
    results_dir: Path,
    workers: tuple[int, ...] = (1, 2),
    levels: tuple[int, ...] = (32,),
    seconds: float = 10.0,
    warmup_s: float = 1.0,
    note: str = "",
) -> dict[str, Any]:
    payload = load_payloads(datasets, (ENDPOINT,))[ENDPOINT]
    results: dict[str, Any] = {
        "endpoint": ENDPOINT,
        "payload": payload.source,
        "cores": len(os.sched_getaffinity(0)),
        "seconds": seconds,
        "warmup_s": warmup_s,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "note": note,
        "configurations": {},
    }
    workdir = Path(tempfile.mkdtemp(prefix="sms-workers-bench-"))
    try:
        only_mnist = _only_mnist(models_dir, workdir)
        for count in workers:
            env = {
                "SMS_MODELS_DIR": str(only_mnist),
                "SMS_WORKERS": str(count),
                "SMS_ENABLE_BENCHMARK_ROUTES": "true",
            }
            server = Server(env, core=None)
            log(f"workers [{count}]: {server.command_line()}")
            entry: dict[str, Any] = {"command": server.command_line(), "runs": []}
            results["configurations"][str(count)] = entry
            server.start()
            try:
                entry["start_seconds"] = round(server.start_seconds or 0, 2)
                status, body = server.get(f"/models/{ENDPOINT}")
                runtime = json.loads(body).get("runtime") if status == 200 else None
                entry["runtime"] = runtime
                problem = _check_answer(server, payload, "predict")
                if problem is not None:
                    entry["error"] = problem
                    log(f"  SKIPPED, {problem}")
                    continue
                for route in ("predict", "noop"):
                    request = payload.request_bytes(route, HOST, server.port)
                    for concurrency in levels:
                        r = measure(server, request, concurrency, seconds, warmup_s)
                        r["route"] = route
                        entry["runs"].append(r)
                        log(
                            f"  {count} workers {route:8s} c={concurrency:<3d} "
                            f"{r['throughput']:8.1f} req/s  p50 {r['latency_ms']['p50']} "
                            f"p99 {r['latency_ms']['p99']} ms  CPU {r['worker_cpu_s']} s  "
                            f"load {r['load_average_1m']}"
                        )
            finally:
                server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results_dir.mkdir(parents=True, exist_ok=True)
    write_json(results_dir, "workers", results)
    return results
