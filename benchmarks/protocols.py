"""`python -m benchmarks v2`: the Open Inference Protocol beside the task route, same server,
same MNIST image, same load generator.

The service is started pinned to the server core with only mnist; the task route gets the
28×28 PNG as a multipart upload, the V2 route gets the same PNG as one BYTES element in the
binary tensor data extension (what tritonclient sends by default), asking for `label` and
`probability` as JSON. Each runs closed loop at the given concurrencies from the client core.
The result is results/v2.json.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import loadgen
from benchmarks.payloads import Payload, load_payloads
from benchmarks.peers import ENDPOINT, _only_mnist, measure_server
from benchmarks.run import _check_answer, log, pin_load_generator, write_json
from benchmarks.server import HOST, Server


def v2_request(payload: Payload, host: str, port: int) -> bytes:
    """POST /v2/models/mnist/infer with the PNG as binary BYTES data, encoded once."""
    assert isinstance(payload.item, bytes)
    element = struct.pack("<I", len(payload.item)) + payload.item
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": len(element)},
                }
            ],
            "outputs": [
                {"name": "label", "parameters": {"binary_data": False}},
                {"name": "probability", "parameters": {"binary_data": False}},
            ],
        },
        separators=(",", ":"),
    ).encode()
    body = header + element
    head = (
        f"POST /v2/models/{payload.model}/infer HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Inference-Header-Content-Length: {len(header)}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


def run_v2(
    *,
    models_dir: Path,
    datasets: Path,
    results_dir: Path,
    levels: tuple[int, ...] = (32,),
    seconds: float = 10.0,
    warmup_s: float = 1.0,
) -> dict[str, Any]:
    core, client_core = pin_load_generator()
    payload = load_payloads(datasets, (ENDPOINT,))[ENDPOINT]
    results: dict[str, Any] = {
        "endpoint": ENDPOINT,
        "payload": payload.source,
        "server_core": core,
        "client_core": client_core,
        "seconds": seconds,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "routes": {},
    }
    workdir = Path(tempfile.mkdtemp(prefix="sms-v2-"))
    try:
        server = Server({"SMS_MODELS_DIR": str(_only_mnist(models_dir, workdir))}, core)
        log(f"v2: {server.command_line()}")
        server.start()
        try:
            status, body = server.get(f"/models/{ENDPOINT}")
            detail = json.loads(body) if status == 200 else {}
            results["runtime"] = (detail.get("runtime") or {}).get(detail.get("version") or "")
            problem = _check_answer(server, payload, "predict")
            if problem is not None:
                raise SystemExit(f"the task route does not answer: {problem}")
            requests = {
                "task route (multipart PNG)": payload.request_bytes("predict", HOST, server.port),
                "V2 infer (binary BYTES)": v2_request(payload, HOST, server.port),
            }
            check = loadgen.run(
                lambda: loadgen.request_once(HOST, server.port, requests["V2 infer (binary BYTES)"])
            )
            if check[0] != 200:
                raise SystemExit(f"V2 infer answers HTTP {check[0]}: {check[1][:300]!r}")
            for name, request in requests.items():
                runs = measure_server(server, request, levels, seconds, warmup_s)
                results["routes"][name] = runs
                for r in runs:
                    log(
                        f"  {name:28s} c={r['concurrency']:<3d} {r['throughput']:8.1f} req/s  "
                        f"p50 {r['latency_ms']['p50']} p99 {r['latency_ms']['p99']} ms  "
                        f"errors {r['errors'] or 0}"
                    )
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    task, v2 = (results["routes"][n] for n in results["routes"])
    results["v2_over_task_route"] = {
        str(a["concurrency"]): round(b["throughput"] / a["throughput"], 3)
        for a, b in zip(task, v2, strict=True)
        if a["throughput"]
    }
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_json(results_dir, "v2", results)
    return results
