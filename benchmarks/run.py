"""`python -m benchmarks run`: every scenario, one command, JSON in benchmarks/results/ and the
report in docs/benchmarks.md.

Order of the run (each step bounded in time; the plan's durations are printed at the start):

1. the machine's description;
2. the load generator's own ceiling, against a trivial server on the server's core;
3. (a) raw ONNX Runtime, batch sizes 1..64, in a process pinned to the server's core;
4. the service, started per configuration (`python -m app`, pinned to the server's core):
   `batching` (the defaults, plus the no-op benchmark routes) and `no-batching`
   (SMS_MAX_BATCH_SIZE=1); per endpoint and route: closed loops at a few concurrencies, then
   an open-loop sweep of Poisson arrivals at fractions of the highest closed-loop throughput;
5. py-spy profiles of the batching server under load;
6. the ratios, the JSON files and the report.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from app.card import ModelCard, latest_version_dir
from benchmarks import loadgen, profile
from benchmarks.payloads import ENDPOINTS, MODEL_OF, Payload, load_payloads
from benchmarks.server import HOST, Server, batch_stats, free_port, taskset

ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE = 0
CLIENT_CORE = 1

CONFIGS: dict[str, dict[str, str]] = {
    # The service's defaults (max_batch_size 32, max_delay_ms 2), with the no-op routes on.
    "batching": {"SMS_ENABLE_BENCHMARK_ROUTES": "true"},
    "no-batching": {"SMS_ENABLE_BENCHMARK_ROUTES": "true", "SMS_MAX_BATCH_SIZE": "1"},
}
# (configuration, route) pairs measured per endpoint, and the series name in tables and plots.
SERIES: list[tuple[str, str, str]] = [
    ("batching", "predict", "batching"),
    ("no-batching", "predict", "no batching"),
    ("batching", "noop", "no-op"),
]
# One-setting variants of the batching server, closed loop at concurrency 64 only: what a
# single knob is worth on the cheapest endpoint (the figures are in the report's "variants").
VARIANTS: dict[str, dict[str, str]] = {
    "batching, access log off": {"SMS_ENABLE_BENCHMARK_ROUTES": "true", "SMS_ACCESS_LOG": "false"},
}
VARIANT_RUNS: list[tuple[str, str]] = [("mnist", "predict"), ("mnist", "noop")]
PROFILED: list[tuple[str, str]] = [
    ("mnist", "predict"),
    ("mnist", "noop"),
    ("cifar10", "predict"),
    ("sentiment", "predict"),
    ("speech", "predict"),
]
PROFILE_RATE_HZ = 100


@dataclass(frozen=True)
class Plan:
    closed_levels: tuple[int, ...] = (1, 16, 64)
    closed_s: float = 4.0
    closed_warmup_s: float = 1.0
    open_fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1)
    open_s: float = 4.0
    open_warmup_s: float = 0.5
    raw_min_s: float = 0.4
    profile_s: float = 8.0
    ceiling_s: float = 3.0
    half_load_s: float = 15.0

    def estimate_s(self, endpoints: int) -> float:
        closed = len(self.closed_levels) * (self.closed_s + self.closed_warmup_s + 0.3)
        opened = len(self.open_fractions) * (self.open_s + self.open_warmup_s + 0.5)
        service = endpoints * len(SERIES) * (closed + opened)
        service += 2 * (self.closed_s + self.closed_warmup_s + 0.3) + 10
        profiles = len(PROFILED) * (self.profile_s + 3) + self.half_load_s + 1
        raw = endpoints * 7 * 2 * self.raw_min_s * 1.3 + 10
        ceiling = 5 * (self.ceiling_s + 1) + 3 * 5
        return service + profiles + raw + ceiling + 2 * 20


QUICK = Plan(
    closed_levels=(1, 64),
    closed_s=1.0,
    closed_warmup_s=0.3,
    open_fractions=(0.5, 1.0),
    open_s=1.0,
    open_warmup_s=0.2,
    raw_min_s=0.05,
    profile_s=2.0,
    ceiling_s=1.0,
    half_load_s=2.0,
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _run(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""


def machine_description(models_dir: Path, payloads: dict[str, Payload]) -> dict[str, Any]:
    lscpu = _run(["lscpu"])
    keep = (
        "Architecture",
        "CPU(s)",
        "Model name",
        "Thread(s) per core",
        "Core(s) per socket",
        "Socket(s)",
        "Hypervisor vendor",
        "L1d cache",
        "L2 cache",
        "L3 cache",
        "NUMA node(s)",
    )
    lscpu_lines = [line for line in lscpu.splitlines() if line.split(":", 1)[0].strip() in keep]
    flags = next((line for line in lscpu.splitlines() if line.startswith("Flags:")), "")
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f" {f}" in flags]
    packages = {}
    for name in (
        "onnxruntime",
        "fastapi",
        "starlette",
        "uvicorn",
        "uvloop",
        "httptools",
        "python-multipart",
        "pydantic",
        "numpy",
        "pillow",
        "soundfile",
        "soxr",
        "orjson",
        "py-spy",
        "httpx",
    ):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    models = {}
    for payload in payloads.values():
        folder = latest_version_dir(models_dir, payload.model)
        card_path = folder / "card.json"
        if card_path.exists():
            card = json.loads(card_path.read_text())
            served_file, _ = ModelCard.model_validate(card).serving_onnx("auto")
            models[payload.model] = {
                "version": folder.name,
                "release": card.get("version"),
                "onnx_sha256": card.get("onnx_sha256"),
                "onnx_bytes": (folder / card.get("onnx_file", "model.onnx")).stat().st_size,
                "served_file": served_file,
                "description": card.get("description"),
            }
    memory = _run(["free", "-g"]).splitlines()
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "nproc": _run(["nproc", "--all"]).strip(),
        "lscpu": lscpu_lines,
        "isa_flags": isa,
        "memory": memory[1] if len(memory) > 1 else "",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": packages,
        "git_commit": _run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]).strip(),
        "uncommitted_app_files": _run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "app"]
        ).splitlines(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "models_dir": str(models_dir),
        "models": models,
    }


# -- 2. the generator's own ceiling --------------------------------------------------------


def measure_ceiling(plan: Plan, payloads: dict[str, Payload], cores: bool) -> dict[str, Any]:
    port = free_port()
    command = [
        *taskset(SERVER_CORE if cores else None),
        sys.executable,
        "-m",
        "benchmarks.trivial_server",
        str(port),
    ]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    results: dict[str, Any] = {"server_command": shlex.join(command), "runs": []}
    try:
        _wait_for_port(port)
        for name in ("mnist", "speech"):
            if name not in payloads:
                continue
            payload = payloads[name]
            request = payload.request_bytes("predict", HOST, port)
            r = loadgen.run(
                lambda request=request: loadgen.closed_loop(
                    HOST, port, request, 64, plan.ceiling_s, 0.5
                )
            )
            r.update(client="raw asyncio", payload=name, body_bytes=len(payload.body))
            results["runs"].append(r)
            log(
                f"ceiling raw client c=64 {name}: {r['throughput']:.0f} req/s, "
                f"cpu {r['client_cpu']}"
            )
        payload = payloads[next(iter(payloads))]
        request = payload.request_bytes("predict", HOST, port)
        r = loadgen.run(lambda: loadgen.open_loop(HOST, port, request, 10000, plan.ceiling_s, 0.5))
        r.update(client="raw asyncio", payload=payload.endpoint, body_bytes=len(payload.body))
        results["runs"].append(r)
        log(
            f"ceiling raw client open 10000/s: {r['throughput']:.0f} req/s, send lag p99 "
            f"{r['send_lag_ms']['p99']} ms, cpu {r['client_cpu']}"
        )
        for concurrency in (1, 16, 64):
            r = loadgen.run(
                lambda c=concurrency: loadgen.closed_loop_httpx(
                    HOST,
                    port,
                    payload.predict_path,
                    payload.body,
                    payload.content_type,
                    c,
                    plan.ceiling_s,
                    0.5,
                )
            )
            r.update(payload=payload.endpoint, body_bytes=len(payload.body))
            results["runs"].append(r)
            log(
                f"ceiling httpx c={concurrency}: {r['throughput']:.0f} req/s, cpu {r['client_cpu']}"
            )
    finally:
        server.terminate()
        server.wait(timeout=10)
    return results


def _wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout_s} s")


# -- 3. raw ONNX Runtime -------------------------------------------------------------------


def measure_raw_ort(
    plan: Plan, models_dir: Path, datasets: Path, endpoints: tuple[str, ...], cores: bool
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = Path(tmp.name)
    command = [
        *taskset(SERVER_CORE if cores else None),
        sys.executable,
        "-m",
        "benchmarks.raw_ort",
        "--models-dir",
        str(models_dir),
        "--datasets",
        str(datasets),
        "--min-seconds",
        str(plan.raw_min_s),
        "--endpoints",
        *endpoints,
        "--out",
        str(out),
    ]
    log("raw ONNX Runtime: " + shlex.join(command))
    subprocess.run(command, cwd=ROOT, check=True, timeout=900)
    result = json.loads(out.read_text())
    out.unlink()
    result["command"] = shlex.join(command)
    return result


# -- 4. the service ------------------------------------------------------------------------


def _check_answer(server: Server, payload: Payload, route: str) -> str | None:
    """None when the route answers this payload with 200 and the expected JSON, else why not."""
    request = payload.request_bytes(route, HOST, server.port)
    try:
        status, body = loadgen.run(lambda: loadgen.request_once(HOST, server.port, request))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    if status != 200:
        return f"HTTP {status}: {body[:300].decode(errors='replace')}"
    answer = json.loads(body)
    if route == "noop" and answer.get("ok") is not True:
        return f"unexpected no-op answer {answer}"
    if route == "predict" and not answer.get("predictions"):
        return f"unexpected answer {answer}"
    return None


def measure_series(
    server: Server, payload: Payload, route: str, plan: Plan, long_half_load: bool = False
) -> dict[str, Any]:
    request = payload.request_bytes(route, HOST, server.port)
    series: dict[str, Any] = {"path": payload.path(route), "closed": [], "open": []}
    problem = _check_answer(server, payload, route)
    if problem is not None:
        series["error"] = problem
        log(f"  {payload.endpoint} {route}: SKIPPED, {problem}")
        return series
    for concurrency in plan.closed_levels:
        before = server.metrics()
        r = loadgen.run(
            lambda c=concurrency: loadgen.closed_loop(
                HOST, server.port, request, c, plan.closed_s, plan.closed_warmup_s
            )
        )
        r["batching"] = batch_stats(before, server.metrics(), payload.model)
        series["closed"].append(r)
        log(
            f"  {payload.endpoint:9s} {route:7s} closed c={concurrency:<3d} "
            f"{r['throughput']:8.1f} req/s  p50 {r['latency_ms']['p50']} p99 "
            f"{r['latency_ms']['p99']} ms  errors {r['errors'] or 0}  "
            f"batch {(r['batching'] or {}).get('mean_batch_size', '-')}"
        )
    best = max((r["throughput"] for r in series["closed"]), default=0.0)
    series["max_throughput"] = best
    if best <= 0:
        return series
    for index, fraction in enumerate(plan.open_fractions):
        rate = best * fraction
        before = server.metrics()
        r = loadgen.run(
            lambda rate=rate, seed=index + 1: loadgen.open_loop(
                HOST,
                server.port,
                request,
                rate,
                plan.open_s,
                plan.open_warmup_s,
                seed=seed,
            )
        )
        r["fraction_of_max"] = fraction
        r["batching"] = batch_stats(before, server.metrics(), payload.model)
        series["open"].append(r)
        log(
            f"  {payload.endpoint:9s} {route:7s} open {fraction:4.2f}×max = {rate:8.1f}/s: "
            f"{r['throughput']:8.1f} req/s  p50 {r['latency_ms']['p50']} p99 "
            f"{r['latency_ms']['p99']} ms  errors {r['errors'] or 0}  "
            f"lag p99 {r['send_lag_ms']['p99']} ms"
        )
    if long_half_load:
        # The p99 target's own measurement: at 1,000 requests/s a 4-s run's p99 is set by its
        # worst ~40 requests, i.e. by one or two stalls (a 30-ms full GC pass delays ~30
        # requests), so it swings from run to run; this one runs long enough to average them.
        rate = best * 0.5
        before = server.metrics()
        r = loadgen.run(
            lambda: loadgen.open_loop(
                HOST, server.port, request, rate, plan.half_load_s, plan.open_warmup_s, seed=99
            )
        )
        r["fraction_of_max"] = 0.5
        r["batching"] = batch_stats(before, server.metrics(), payload.model)
        series["half_load_long"] = r
        log(
            f"  {payload.endpoint:9s} {route:7s} open 0.50×max for {plan.half_load_s:g} s: "
            f"{r['throughput']:8.1f} req/s  p50 {r['latency_ms']['p50']} p99 "
            f"{r['latency_ms']['p99']} ms  max {r['latency_ms']['max']} ms  errors "
            f"{r['errors'] or 0}"
        )
    return series


def measure_profiles(
    server: Server,
    payloads: dict[str, Payload],
    plan: Plan,
    results_dir: Path,
    cores: bool,
) -> dict[str, Any]:
    beside = Path(sys.executable).parent / "py-spy"
    py_spy = str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"
    out: dict[str, Any] = {}
    for endpoint, route in PROFILED:
        if endpoint not in payloads:
            continue
        payload = payloads[endpoint]
        request = payload.request_bytes(route, HOST, server.port)
        with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as tmp:
            raw_path = Path(tmp.name)
        command = profile.command(
            py_spy,
            server.pid,
            plan.profile_s,
            raw_path,
            CLIENT_CORE if cores else None,
            PROFILE_RATE_HZ,
        )
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)  # let py-spy attach before the load starts
        r = loadgen.run(
            lambda request=request: loadgen.closed_loop(
                HOST, server.port, request, 64, plan.profile_s + 0.5, 0.5
            )
        )
        try:
            _, stderr = spy.communicate(timeout=plan.profile_s + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
            _, stderr = spy.communicate()
        name = f"{endpoint}-{route}"
        if spy.returncode != 0 or not raw_path.exists() or raw_path.stat().st_size == 0:
            out[name] = {"error": stderr.decode(errors="replace")[-500:]}
            log(f"  profile {name}: py-spy failed: {out[name]['error']}")
            continue
        summary = profile.summarise(raw_path.read_text(), plan.profile_s, PROFILE_RATE_HZ)
        gz = results_dir / f"profile-{name}.txt.gz"
        profile.save_raw(raw_path, gz)
        raw_path.unlink()
        summary.update(
            command=shlex.join(command),
            load=r,
            raw=str(gz.relative_to(ROOT)) if gz.is_relative_to(ROOT) else str(gz),
        )
        if r["throughput"] and summary["busy_cores"]:
            summary["cpu_us_per_request"] = round(summary["busy_cores"] / r["throughput"] * 1e6, 1)
        out[name] = summary
        top = ", ".join(f"{c['name']} {c['share']:.0%}" for c in summary["categories"][:4])
        log(
            f"  profile {name}: {r['throughput']:.0f} req/s under py-spy, busy cores "
            f"{summary['busy_cores']}, {top}"
        )
    return out


# -- 6. ratios -----------------------------------------------------------------------------


def _closed_at(series: dict[str, Any], concurrency: int) -> dict[str, Any] | None:
    return next((r for r in series.get("closed", []) if r["concurrency"] == concurrency), None)


def ratios(service: dict[str, Any], raw: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every target against its measurement: issue 15's (MNIST ≥ 60% of its no-op route,
    CIFAR-10 and speech ≥ 90% of their worker limit) and the earlier ones, kept for
    comparison across runs."""

    def series(endpoint: str, name: str) -> dict[str, Any]:
        return service.get(endpoint, {}).get(name, {})

    out: dict[str, Any] = {}
    mnist_b, mnist_noop = series("mnist", "batching"), series("mnist", "no-op")
    if mnist_b.get("max_throughput") and mnist_noop.get("max_throughput"):
        value = mnist_b["max_throughput"] / mnist_noop["max_throughput"]
        out["mnist_vs_noop"] = {
            "target": "MNIST with batching ≥ 60% of its no-op route's throughput (one core)",
            "batching_req_s": mnist_b["max_throughput"],
            "noop_req_s": mnist_noop["max_throughput"],
            "ratio": round(value, 3),
            "pass": value >= 0.6,
        }
    workers = (raw or {}).get("endpoints", {})
    limits = {}
    for endpoint in ("cifar10", "speech"):
        best = series(endpoint, "batching").get("max_throughput")
        limit = workers.get(endpoint, {}).get("best_worker_items_per_s")
        if best and limit:
            limits[endpoint] = {
                "batching_req_s": best,
                "worker_limit_items_s": limit,
                "ratio": round(best / limit, 3),
                "pass": best >= 0.9 * limit,
            }
    if limits:
        out["worker_limit"] = {
            "target": "CIFAR-10 and speech with batching ≥ 90% of their worker limit (the "
            "batch worker alone, decode + ONNX Runtime, at its best batch size)",
            "models": limits,
            "pass": all(m["pass"] for m in limits.values()),
        }
    per_model = {}
    for endpoint in ("cifar10", "speech"):
        on = _closed_at(series(endpoint, "batching"), 64)
        off = _closed_at(series(endpoint, "no batching"), 64)
        if on and off and off["throughput"]:
            value = on["throughput"] / off["throughput"]
            per_model[endpoint] = {
                "batching_req_s": on["throughput"],
                "no_batching_req_s": off["throughput"],
                "ratio": round(value, 3),
                "pass": value >= 1.5,
                "batching_p99_ms": on["latency_ms"]["p99"],
                "no_batching_p99_ms": off["latency_ms"]["p99"],
            }
    if per_model:
        out["batching_vs_none_c64"] = {
            "target": "batching ≥ 1.5× no batching at concurrency 64 for CIFAR-10 or speech",
            "models": per_model,
            "pass": any(m["pass"] for m in per_model.values()),
        }
    sweep_half = next((r for r in mnist_b.get("open", []) if r["fraction_of_max"] == 0.5), None)
    half = mnist_b.get("half_load_long") or sweep_half
    if half:
        p99 = half["latency_ms"]["p99"]
        out["mnist_p99_at_half_max"] = {
            "target": "p99 ≤ 25 ms at half of the maximum throughput on MNIST",
            "duration_s": half["duration_s"],
            "sweep_point_p99_ms": sweep_half["latency_ms"]["p99"] if sweep_half else None,
            "max_ms": half["latency_ms"]["max"],
            "max_req_s": mnist_b["max_throughput"],
            "offered_req_s": half["offered"],
            "achieved_req_s": half["throughput"],
            "p50_ms": half["latency_ms"]["p50"],
            "p99_ms": p99,
            "errors": half["errors"],
            "pass": p99 is not None and p99 <= 25 and not half["errors"],
        }
    return out


# -- the whole run -------------------------------------------------------------------------


def write_json(results_dir: Path, name: str, data: Any) -> None:
    (results_dir / f"{name}.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def pin_load_generator() -> tuple[int | None, int | None]:
    """On two cores or more, move this process (the load generator) to CLIENT_CORE and return
    (the core to pin the server to, the client's core); (None, None) on one core."""
    if (os.cpu_count() or 1) < 2:
        return None, None
    os.sched_setaffinity(0, {CLIENT_CORE})
    return SERVER_CORE, CLIENT_CORE


def run_all(
    *,
    models_dir: Path,
    datasets: Path,
    results_dir: Path,
    docs_dir: Path,
    plan: Plan,
    endpoints: tuple[str, ...] = ENDPOINTS,
    fixture_models: bool = False,
    profile_server: bool = True,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    cores = (os.cpu_count() or 1) >= 2
    if cores:
        os.sched_setaffinity(0, {CLIENT_CORE})
    started = time.monotonic()
    results_dir.mkdir(parents=True, exist_ok=True)
    fixture_dir = None
    if fixture_models:
        from benchmarks.fixtures import build_fixture_models

        fixture_dir = Path(tempfile.mkdtemp(prefix="sms-bench-models-"))
        models_dir = build_fixture_models(fixture_dir)
    missing = [
        name
        for name in endpoints
        if not (latest_version_dir(models_dir, MODEL_OF[name]) / "card.json").exists()
    ]
    if missing:
        raise SystemExit(
            f"no model for {', '.join(missing)} in {models_dir}; train them, point --models-dir "
            "at them, or pass --fixture-models to try the benchmark with stand-in models"
        )
    payloads = load_payloads(datasets, endpoints)
    log(
        f"plan: about {plan.estimate_s(len(endpoints)) / 60:.1f} min; server on core "
        f"{SERVER_CORE if cores else '-'}, load generator on core {CLIENT_CORE if cores else '-'}"
    )
    meta = {
        "command": "python -m benchmarks " + shlex.join(argv or sys.argv[1:]),
        "plan": asdict(plan),
        "fixture_models": fixture_models,
        "profile_rate_hz": PROFILE_RATE_HZ,
        "server_core": SERVER_CORE if cores else None,
        "client_core": CLIENT_CORE if cores else None,
        "configs": CONFIGS,
        "payloads": {
            name: {
                "source": p.source,
                "content_type": p.content_type.split(";")[0],
                "body_bytes": len(p.body),
                "predict": p.predict_path,
                "noop": p.noop_path,
                **p.facts,
            }
            for name, p in payloads.items()
        },
        "machine": machine_description(models_dir, payloads),
    }
    write_json(results_dir, "machine", meta)

    log("generator ceiling")
    write_json(results_dir, "ceiling", measure_ceiling(plan, payloads, cores))

    raw = measure_raw_ort(plan, models_dir, datasets, endpoints, cores)
    write_json(results_dir, "raw_ort", raw)

    service: dict[str, Any] = {name: {} for name in endpoints}
    servers: dict[str, Any] = {}
    profiles: dict[str, Any] = {}
    for config, extra_env in CONFIGS.items():
        env = {"SMS_MODELS_DIR": str(models_dir), **extra_env}
        server = Server(env, SERVER_CORE if cores else None)
        log(f"service [{config}]: {server.command_line()}")
        server.start()
        try:
            status, body = server.get("/models/mnist") if "mnist" in endpoints else (0, b"")
            servers[config] = {
                "command": server.command_line(),
                "start_seconds": round(server.start_seconds or 0, 2),
                "runtime": _latest_runtime(json.loads(body)) if status == 200 else None,
            }
            for endpoint in endpoints:
                for series_config, route, name in SERIES:
                    if series_config != config:
                        continue
                    service[endpoint][name] = measure_series(
                        server,
                        payloads[endpoint],
                        route,
                        plan,
                        long_half_load=(endpoint, name) == ("mnist", "batching"),
                    )
                    write_json(results_dir, "service", {"servers": servers, "series": service})
            if config == "batching" and profile_server:
                log("profiles (py-spy) of the batching server under load")
                profiles = measure_profiles(server, payloads, plan, results_dir, cores)
                write_json(results_dir, "profile", profiles)
        finally:
            server.stop()
    variants = []
    for variant, extra_env in VARIANTS.items():
        runs = [(e, r) for e, r in VARIANT_RUNS if e in endpoints]
        if not runs:
            continue
        env = {"SMS_MODELS_DIR": str(models_dir), **extra_env}
        server = Server(env, SERVER_CORE if cores else None)
        log(f"variant [{variant}]: {server.command_line()}")
        server.start()
        try:
            for endpoint, route in runs:
                payload = payloads[endpoint]
                request = payload.request_bytes(route, HOST, server.port)
                r = loadgen.run(
                    lambda request=request, port=server.port: loadgen.closed_loop(
                        HOST, port, request, 64, plan.closed_s, plan.closed_warmup_s
                    )
                )
                r.update(variant=variant, command=server.command_line(), endpoint=endpoint)
                r["route"] = route
                variants.append(r)
                log(
                    f"  {endpoint:9s} {route:7s} closed c=64 {r['throughput']:8.1f} req/s  "
                    f"p99 {r['latency_ms']['p99']} ms  errors {r['errors'] or 0}"
                )
        finally:
            server.stop()
    write_json(
        results_dir, "service", {"servers": servers, "series": service, "variants": variants}
    )
    summary = {
        "ratios": ratios(service, raw),
        "wall_minutes": round((time.monotonic() - started) / 60, 2),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    write_json(results_dir, "summary", summary)
    if fixture_dir is not None:
        shutil.rmtree(fixture_dir, ignore_errors=True)
    from benchmarks.report import write_report

    write_report(results_dir, docs_dir)
    log(f"done in {summary['wall_minutes']} min; report in {docs_dir / 'benchmarks.md'}")
    for key, ratio in summary["ratios"].items():
        log(f"  {key}: {'PASS' if ratio.get('pass') else 'MISS'} {json.dumps(ratio)}")
    return summary


def _latest_runtime(detail: dict[str, Any]) -> dict[str, Any] | None:
    """The runtime facts of the version `GET /models/{name}` says answers come from."""
    return (detail.get("runtime") or {}).get(detail.get("version") or "")
