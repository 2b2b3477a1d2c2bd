"""docs/benchmarks.md and the latency-versus-offered-load PNGs, from benchmarks/results/*.json.

`python -m benchmarks report` rewrites them from the stored results without measuring again.
A hand-written analysis in benchmarks/analysis.md, if present, is included verbatim.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ANALYSIS = Path(__file__).resolve().parent / "analysis.md"
COLORS = {"batching": "tab:blue", "no batching": "tab:orange", "no-op": "tab:green"}
TITLES = {
    "mnist": "image / mnist",
    "cifar10": "image / cifar10",
    "sentiment": "sentiment / imdb",
    "speech": "speech",
}


def _load(results_dir: Path, name: str) -> Any:
    path = results_dir / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _n(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def _errors(errors: dict[str, int] | None) -> str:
    if not errors:
        return "0"
    return ", ".join(f"{k}: {v}" for k, v in errors.items())


def _pf(ok: bool | None) -> str:
    return "**pass**" if ok else "**miss**"


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _closed_at_level(series: dict[str, Any], concurrency: int) -> dict[str, Any] | None:
    return next((r for r in series.get("closed", []) if r["concurrency"] == concurrency), None)


def _short(frame: str) -> str:
    """`func (path/to/file.py)` → `func (file.py)`; native frames keep their library."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit("/", 1)[-1]
    return f"{name} ({where})" if where else name


def plot_endpoint(
    endpoint: str, series: dict[str, Any], raw: dict[str, Any] | None, out: Path, subtitle: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for name, data in series.items():
        runs = sorted(data.get("open", []), key=lambda r: r["offered"])
        runs = [r for r in runs if r["latency_ms"]["p50"] is not None]
        if not runs:
            continue
        color = COLORS.get(name)
        x = [r["offered"] for r in runs]
        ax.plot(x, [r["latency_ms"]["p99"] for r in runs], "o-", color=color, label=f"{name} p99")
        ax.plot(x, [r["latency_ms"]["p50"] for r in runs], "s--", color=color, label=f"{name} p50")
        if data.get("max_throughput"):
            ax.axvline(data["max_throughput"], color=color, linestyle=":", linewidth=1)
    offered = [r["offered"] for data in series.values() for r in data.get("open", [])]
    right = max(offered, default=1.0) * 1.3
    ax.set_xscale("log")  # the no-op route runs 10-25x faster than the compute-heavy models
    ax.set_xlim(min(offered, default=1.0) / 1.3, right)
    if raw and endpoint in raw.get("endpoints", {}):
        limit = raw["endpoints"][endpoint]["best_worker_items_per_s"]
        label = f"worker limit (decode + ORT, best batch): {limit:,.0f}/s"
        if limit <= right:
            ax.axvline(limit, color="grey", linestyle="-.", linewidth=1)
            where, align = (limit * 1.03, 0.02), "left"
        else:
            label += " →"
            where, align = (right, 0.02), "right"
        ax.annotate(
            label,
            where,
            xycoords=("data", "axes fraction"),
            fontsize=7,
            color="grey",
            ha=align,
            va="bottom",
        )
    if endpoint == "mnist":
        ax.axhline(25, color="red", linestyle=":", linewidth=1)
        ax.annotate(
            "25 ms", (0.01, 25), xycoords=("axes fraction", "data"), color="red", fontsize=7
        )
    ax.set_yscale("log")
    ax.set_xlabel("offered load (requests/s, Poisson arrivals; log scale)")
    ax.set_ylabel("latency from scheduled send (ms)")
    ax.set_title(
        f"{TITLES.get(endpoint, endpoint)}: latency vs offered load\n{subtitle}", fontsize=9
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="upper left")
    fig.text(
        0.99,
        0.01,
        "dotted verticals: closed-loop maximum of each series",
        fontsize=6,
        ha="right",
        color="grey",
    )
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def write_report(results_dir: Path, docs_dir: Path) -> Path:
    meta = _load(results_dir, "machine") or {}
    ceiling = _load(results_dir, "ceiling")
    raw = _load(results_dir, "raw_ort")
    service = _load(results_dir, "service") or {}
    profiles = _load(results_dir, "profile") or {}
    summary = _load(results_dir, "summary") or {}
    series_by_endpoint: dict[str, Any] = service.get("series", {})
    machine = meta.get("machine", {})
    docs_dir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    add = lines.append
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in machine.get("lscpu", [])
            if "Model name" in line
        ),
        "?",
    )
    subtitle = (
        f"{machine.get('nproc', '?')} vCPU {cpu_model}; server on 1 core, generator on another"
    )

    add("# Benchmarks")
    add("")
    add(
        f"Measured {machine.get('date_utc', '?')} UTC at commit `{machine.get('git_commit', '?')}` "
        f"with `{meta.get('command', 'python -m benchmarks run')}` in "
        f"{summary.get('wall_minutes', '?')} minutes. Every figure below comes from the JSON files "
        f"in `{_rel(results_dir)}/`; `python -m benchmarks report` rewrites this page from them."
    )
    add("")
    if machine.get("uncommitted_app_files"):
        add(
            "> The service code had uncommitted changes when measured: "
            + ", ".join(f"`{line.strip()}`" for line in machine["uncommitted_app_files"])
            + "."
        )
        add("")
    if meta.get("fixture_models"):
        add(
            "> **Stand-in models.** This run used the test suite's fixture models "
            "(`--fixture-models`), not the trained ones: the figures test the benchmark, they say "
            "nothing about the real models."
        )
        add("")
    load = machine.get("load_average_at_start") or [0.0]
    if load[0] > 1.5:  # two cores: more than one and a half busy before the run began
        add(
            "> Other work was using the CPU when the run started (load average at the start: "
            f"{load}): the figures are lower than on a quiet machine."
        )
        add("")

    # -- summary
    ratios = summary.get("ratios", {})
    add("## The targets")
    add("")
    add(
        "Issue 15's targets first (the peers target is in its own section below), then the "
        "earlier ones, kept for comparison across runs."
    )
    add("")
    add("| target | measured | result |")
    add("|---|---|---|")
    r1 = ratios.get("mnist_vs_noop")
    if r1:
        add(
            f"| MNIST with batching ≥ 60% of its no-op route's throughput, one core | "
            f"{_n(r1['batching_req_s'])} / {_n(r1['noop_req_s'])} req/s = "
            f"**{r1['ratio']:.0%}** | {_pf(r1['pass'])} |"
        )
    limit = ratios.get("worker_limit")
    if limit:
        for model, m in limit["models"].items():
            add(
                f"| {model} with batching ≥ 90% of its worker limit | "
                f"{_n(m['batching_req_s'])} req/s / {_n(m['worker_limit_items_s'])} items/s = "
                f"**{m['ratio']:.0%}** | {_pf(m['pass'])} |"
            )
    r2 = ratios.get("batching_vs_none_c64")
    if r2:
        for model, m in r2["models"].items():
            add(
                f"| batching ≥ 1.5× no batching at concurrency 64, {model} | "
                f"{_n(m['batching_req_s'])} / {_n(m['no_batching_req_s'])} req/s = "
                f"**{m['batching_req_s'] / m['no_batching_req_s']:.2f}×** "
                f"(p99 {_n(m['batching_p99_ms'])} vs "
                f"{_n(m['no_batching_p99_ms'])} ms) | {_pf(m['pass'])} |"
            )
        add(f"| … for at least one of CIFAR-10 and speech | | {_pf(r2['pass'])} |")
    r3 = ratios.get("mnist_p99_at_half_max")
    if r3:
        add(
            "| MNIST p99 ≤ 25 ms at half the maximum throughput | "
            f"p99 **{_n(r3['p99_ms'], 2)} ms** "
            f"(p50 {_n(r3['p50_ms'], 2)} ms, max {_n(r3.get('max_ms'), 1)} ms) at "
            f"{_n(r3['offered_req_s'])} req/s offered (max {_n(r3['max_req_s'])}) for "
            f"{_n(r3.get('duration_s'), 0)} s, errors {_errors(r3['errors'])}; the sweep's "
            f"shorter run at 0.5×: p99 {_n(r3.get('sweep_point_p99_ms'), 2)} ms | "
            f"{_pf(r3['pass'])} |"
        )
    add("")
    add(
        "Throughput = answers with status 200 per second. *Maximum* = the highest closed-loop "
        "throughput of that series. Latencies are client-side, over loopback."
    )
    add("")

    # -- machine and method
    add("## Machine and set-up")
    add("")
    add("```")
    add(f"nproc: {machine.get('nproc')}")
    for line in machine.get("lscpu", []):
        add(line)
    add(f"ISA: {', '.join(machine.get('isa_flags', []))}")
    add(f"memory (free -g): {machine.get('memory', '').strip()}")
    add(f"kernel {machine.get('kernel')}, Python {machine.get('python')}")
    add("```")
    add("")
    packages = machine.get("packages", {})
    add("Packages: " + ", ".join(f"{k} {v}" for k, v in packages.items() if v) + ".")
    add("")
    server_core, client_core = meta.get("server_core"), meta.get("client_core")
    if server_core is not None:
        add(
            f"**Pinning.** The server runs on core {server_core} (`taskset -c {server_core}`: "
            "event loop, batch worker threads and ONNX Runtime share that one core); the load "
            f"generator, and py-spy while profiling, run on core {client_core}. Scenario (a) "
            f"runs on core {server_core} too. Load average when the run started: "
            f"{machine.get('load_average_at_start')}, at the end: "
            f"{summary.get('load_average_at_end')}."
        )
    else:
        add("**Pinning.** One core only: server and generator share it (figures are pessimistic).")
    add("")
    add("**Models.**")
    add("")
    add("| model | version | ONNX bytes | sha256 |")
    add("|---|---|---|---|")
    for name, model in machine.get("models", {}).items():
        add(
            f"| {name} | {model.get('version')} | {_n(model.get('onnx_bytes'))} | "
            f"`{(model.get('onnx_sha256') or '')[:12]}…` |"
        )
    add("")
    add("**Payloads** (the same bytes in every scenario of an endpoint):")
    add("")
    add("| endpoint | routes | body | sample |")
    add("|---|---|---|---|")
    for name, p in meta.get("payloads", {}).items():
        add(
            f"| {name} | `POST {p['predict']}`, `POST {p['noop']}` | {p['content_type']}, "
            f"{_n(p['body_bytes'])} bytes | {p['source']} |"
        )
    add("")
    add("**Command lines.**")
    add("")
    add("```sh")
    add(f"{meta.get('command', 'python -m benchmarks run')}   # the whole run")
    if raw:
        add(f"{raw.get('command')}   # (a)")
    for config, info in service.get("servers", {}).items():
        add(f"{info['command']}   # service [{config}]")
    add("```")
    add("")
    runtime = (service.get("servers", {}).get("batching") or {}).get("runtime") or {}
    batching = runtime.get("batching") or {}
    threads = runtime.get("threads") or {}
    if runtime:
        add(
            f"Server settings (`GET /models/mnist` of the batching server): providers "
            f"{runtime.get('providers')}, intra-op threads {threads.get('intra_op')}, inter-op "
            f"threads {threads.get('inter_op')}, max_batch_size {batching.get('max_batch_size')}, "
            f"max_delay_ms {batching.get('max_delay_ms')}, max_queue_size "
            f"{batching.get('max_queue_size')}, batch workers {batching.get('workers')}. "
            "Everything else is the default, the access log included. The no-batching server "
            "differs only by `SMS_MAX_BATCH_SIZE=1`."
        )
        add("")
    plan = meta.get("plan", {})
    add(
        "**Method.** The load generator (`benchmarks/loadgen.py`) speaks HTTP/1.1 keep-alive over "
        "raw asyncio sockets (uvloop), sending pre-encoded requests. *Closed loop*: N clients, "
        "each on its own connection, send the next request when the previous answer arrives; "
        f"{plan.get('closed_warmup_s')} s warm-up then {plan.get('closed_s')} s measured, at "
        f"concurrency {', '.join(map(str, plan.get('closed_levels', [])))}. *Open loop*: Poisson "
        f"arrivals at {', '.join(f'{f:g}' for f in plan.get('open_fractions', []))} × the "
        "series' closed-loop maximum, "
        f"{plan.get('open_warmup_s')} s warm-up then {plan.get('open_s')} s; each request takes "
        "an idle connection of a pool of 256 keep-alive connections opened before the run, or "
        "waits for one, and its latency runs from its *scheduled* send time, so a queue in the "
        "server, a wait for a connection or a late generator cannot hide: no coordinated "
        "omission. `send lag` is how late requests actually left (generator lateness plus any "
        "wait for a free connection). Errors are counted by HTTP status, plus `reset`, "
        "`connect` and `timeout`. Every run is bounded: a closed loop stops at its duration, an "
        "open loop sends its schedule then waits at most 15 s for the answers (`timeout`)."
    )
    add("")

    # -- ceiling
    if ceiling:
        add("## The load generator's own ceiling")
        add("")
        add(
            "Against a trivial asyncio server that answers `{}` at once (`benchmarks/"
            "trivial_server.py`, on the server's core); `client CPU` is the generator's CPU time "
            "over wall time (1.0 = its core saturated)."
        )
        add("")
        add("| client | payload | load | req/s | client CPU | p50 ms | p99 ms |")
        add("|---|---|---|---|---|---|---|")
        for r in ceiling.get("runs", []):
            load = (
                f"closed, c={r['concurrency']}"
                if r["mode"] == "closed"
                else f"open, {_n(r['rate'])}/s (send lag p99 {_n(r['send_lag_ms']['p99'], 2)} ms)"
            )
            add(
                f"| {r.get('client', 'raw asyncio')} | {r.get('payload')} "
                f"({_n(r.get('body_bytes'))} B) | {load} | {_n(r['throughput'])} | "
                f"{_n(r['client_cpu'], 2)} | "
                f"{_n(r['latency_ms']['p50'], 2)} | {_n(r['latency_ms']['p99'], 2)} |"
            )
        add("")

    # -- raw ORT
    if raw:
        settings = raw.get("settings", {})
        add("## (a) The compute limit: raw ONNX Runtime")
        add("")
        add(
            "One process pinned to the server's core, the session built by the server's own "
            "`ModelSession` with its settings (provider policy "
            f"`{settings.get('execution_provider')}`, intra-op threads "
            f"{settings.get('intra_op_threads')}, inter-op threads "
            f"{settings.get('inter_op_threads')}). *ORT*: `session.run` on a decoded batch. "
            "*Worker*: the whole worker-side pipeline of one batch (`modality.process`: decode "
            "every item from the payload bytes, collate, run, top-k), i.e. the most one batch "
            "worker can serve with no HTTP at all. Median of repeated calls."
        )
        add("")
        for endpoint, data in raw.get("endpoints", {}).items():
            add(
                f"**{endpoint}** ({data['model']} {data['version']}, providers "
                f"{', '.join(data['providers'])}, input {data['input_shape']}, decode "
                f"{_n(data['decode_ms_per_item'], 3)} ms/item)"
            )
            add("")
            add("| batch | ORT ms/batch | ORT items/s | worker ms/batch | worker items/s |")
            add("|---|---|---|---|---|")
            for row in data["batches"]:
                add(
                    f"| {row['batch_size']} | {_n(row['ort_ms_per_batch'], 3)} | "
                    f"{_n(row['ort_items_per_s'])} | {_n(row['worker_ms_per_batch'], 3)} | "
                    f"{_n(row['worker_items_per_s'])} |"
                )
            add("")

    # -- service: closed loop
    if series_by_endpoint:
        add("## (b, c, d) The service: closed loop")
        add("")
        add(
            "*batching*: the service's defaults; *no batching*: `SMS_MAX_BATCH_SIZE=1`; *no-op*: "
            "the benchmark route that parses the same payload and answers without inference "
            "(the HTTP limit), on the batching server. `batch` = mean items per ONNX Runtime batch "
            "during the run (from /metrics)."
        )
        add("")
        for endpoint, by_series in series_by_endpoint.items():
            add(f"**{TITLES.get(endpoint, endpoint)}**")
            add("")
            add("| series | clients | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | batch |")
            add("|---|---|---|---|---|---|---|---|---|")
            for name, data in by_series.items():
                if data.get("error"):
                    add(f"| {name} | – | not measured: {data['error']} | | | | | | |")
                    continue
                for r in data.get("closed", []):
                    lat = r["latency_ms"]
                    add(
                        f"| {name} | {r['concurrency']} | {_n(r['throughput'])} | "
                        f"{_n(lat['p50'], 2)} | {_n(lat['p90'], 2)} | {_n(lat['p99'], 2)} | "
                        f"{_n(lat['max'], 2)} | {_errors(r['errors'])} | "
                        f"{_n((r.get('batching') or {}).get('mean_batch_size'))} |"
                    )
            add("")

        add("## The service: open loop (Poisson arrivals), latency vs offered load")
        add("")
        for endpoint, by_series in series_by_endpoint.items():
            png = docs_dir / f"benchmark-{endpoint}.png"
            plot_endpoint(endpoint, by_series, raw, png, subtitle)
            add(f"**{TITLES.get(endpoint, endpoint)}**")
            add("")
            add(f"![latency vs offered load, {endpoint}]({png.name})")
            add("")
            add(
                "| series | × max | offered/s | achieved/s | p50 ms | p90 ms | p99 ms | max ms | "
                "errors | send lag p99 ms | batch |"
            )
            add("|---|---|---|---|---|---|---|---|---|---|---|")
            for name, data in by_series.items():
                runs = [(name, r) for r in data.get("open", [])]
                if data.get("half_load_long"):
                    long = data["half_load_long"]
                    runs.append((f"{name} ({_n(long['duration_s'], 0)} s)", long))
                for label, r in runs:
                    lat = r["latency_ms"]
                    add(
                        f"| {label} | {r['fraction_of_max']:g} | {_n(r['offered'])} | "
                        f"{_n(r['throughput'])} | {_n(lat['p50'], 2)} | {_n(lat['p90'], 2)} | "
                        f"{_n(lat['p99'], 2)} | {_n(lat['max'], 2)} | {_errors(r['errors'])} | "
                        f"{_n(r['send_lag_ms']['p99'], 2)} | "
                        f"{_n((r.get('batching') or {}).get('mean_batch_size'))} |"
                    )
            add("")

        add("## How close to the limits")
        add("")
        add(
            "| endpoint | batching max req/s | no batching max | no-op max (HTTP limit) | "
            "batching / no-op | worker limit items/s (best batch) | batching / worker limit |"
        )
        add("|---|---|---|---|---|---|---|")
        for endpoint, by_series in series_by_endpoint.items():
            b = by_series.get("batching", {}).get("max_throughput")
            nb = by_series.get("no batching", {}).get("max_throughput")
            noop = by_series.get("no-op", {}).get("max_throughput")
            worker = ((raw or {}).get("endpoints", {}).get(endpoint) or {}).get(
                "best_worker_items_per_s"
            )
            add(
                f"| {endpoint} | {_n(b)} | {_n(nb)} | {_n(noop)} | "
                f"{f'{b / noop:.0%}' if b and noop else '–'} | {_n(worker)} | "
                f"{f'{b / worker:.0%}' if b and worker else '–'} |"
            )
        add("")

    variants = service.get("variants") or []
    if variants:
        add("## One-setting variants")
        add("")
        add(
            "The batching server with one setting changed, closed loop at concurrency 64, "
            "against the same run's default figure."
        )
        add("")
        add("| variant | endpoint | route | req/s | default req/s | change | p99 ms |")
        add("|---|---|---|---|---|---|---|")
        for r in variants:
            name = "no-op" if r["route"] == "noop" else "batching"
            base = _closed_at_level(series_by_endpoint.get(r["endpoint"], {}).get(name, {}), 64)
            change = (
                f"{r['throughput'] / base['throughput'] - 1:+.0%}"
                if base and base["throughput"]
                else "–"
            )
            add(
                f"| {r['variant']} | {r['endpoint']} | {r['route']} | {_n(r['throughput'])} | "
                f"{_n(base['throughput']) if base else '–'} | {change} | "
                f"{_n(r['latency_ms']['p99'], 2)} |"
            )
        add("")

    # -- profiles
    if profiles:
        add("## Where the time goes (py-spy)")
        add("")
        add(
            "py-spy (`record --native --threads`, "
            f"{meta.get('profile_rate_hz', '?')} Hz) sampled the batching server "
            "during a closed loop of 64 clients. Every on-CPU sample is attributed to the frame "
            "nearest the leaf that matches a category; `busy cores` is on-CPU samples over the "
            "samples of one always-busy thread (≈ 1.0 when the server's core is saturated). "
            "`µs/request` = share × busy cores / throughput. Raw collapsed stacks: "
            f"`{_rel(results_dir)}/profile-*.txt.gz`."
        )
        add("")
        for name, p in profiles.items():
            if p.get("error"):
                add(f"**{name}**: py-spy failed: `{p['error']}`")
                add("")
                continue
            load = p.get("load", {})
            per_request = p.get("cpu_us_per_request")
            add(
                f"**{name}**: {_n(load.get('throughput'))} req/s under the profiler, busy cores "
                f"{p.get('busy_cores')}, CPU {_n(per_request)} µs/request; threads: "
                + ", ".join(f"{k} {v['busy']:.2f}" for k, v in p.get("threads", {}).items())
            )
            add("")
            add("| category (self time) | share | µs/request | hottest frames (share of all) |")
            add("|---|---|---|---|")
            for c in p["categories"]:
                if c["share"] < 0.005:
                    continue
                us = c["share"] * per_request if per_request else None
                frames = ", ".join(
                    f"`{_short(f['name'])}` {f['share']:.1%}"
                    for f in c.get("top_frames", [])[:3]
                    if f["share"] >= 0.003
                )
                add(f"| {c['name']} | {c['share']:.1%} | {_n(us)} | {frames} |")
            add("")
            waits = p.get("not_on_cpu", {})
            if waits:
                add(
                    "Not on the CPU (fraction of one thread's samples): "
                    + "; ".join(f"{k} {v['of_one_thread']:.2f}" for k, v in waits.items())
                    + "."
                )
                add("")
            inclusive = [i for i in p.get("inclusive", []) if i["share"] >= 0.005]
            if inclusive:
                add(
                    "Inclusive (everything under): "
                    + "; ".join(f"{i['name'].strip()} {i['share']:.1%}" for i in inclusive)
                    + "."
                )
                add("")

    lines += int8_section(ROOT / "models")
    lines += peers_section(_load(results_dir, "peers"))
    lines += workers_section(_load(results_dir, "workers"))
    lines += v2_section(_load(results_dir, "v2"))
    lines += reload_section(_load(results_dir, "reload"))

    if ANALYSIS.exists():
        add("## Analysis")
        add("")
        add(ANALYSIS.read_text().strip())
        add("")

    out = docs_dir / "benchmarks.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def int8_section(models_dir: Path) -> list[str]:
    """fp32 vs int8 per model, from the cards (`python -m training quantize <task>` writes them)."""
    from app.card import ModelCard

    # models/<name>/ or models/<name>/<version>/
    folders = [
        p.parent
        for p in sorted([*models_dir.glob("*/card.json"), *models_dir.glob("*/*/card.json")])
    ]
    cards = [(d, c) for d in folders if (c := ModelCard.load(d)).int8 is not None]
    if not cards:
        return []
    lines = [
        "## int8 models (from the cards)",
        "",
        "ONNX Runtime static quantisation (QDQ, per-channel int8 weights, uint8 activations, "
        "calibrated on the validation split), measured by `python -m training quantize <task>` "
        "on the whole test split; ms/item is ONNX Runtime alone on one thread, the best of "
        "repeated runs. The service serves int8 where it loses at most 0.2 pp of test accuracy "
        "(`ModelCard.serving_onnx('auto')`).",
        "",
        "| model (version) | test accuracy fp32 → int8 (95% interval) | ECE fp32 → int8 "
        "| top-1 agreement | max abs Δp | size fp32 → int8 | ms/item b=1 fp32 → int8 "
        "| ms/item b=32 fp32 → int8 | auto serves |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for folder, card in cards:
        q = card.int8
        assert q is not None
        fp32, int8 = card.metric("accuracy"), q.metric("accuracy")
        ece32, ece8 = card.metric("ece"), q.metric("ece")
        if not (fp32 and int8 and ece32 and ece8 and int8.interval_95):
            lines.append(f"| {card.name} ({folder.name}) | (the card lacks a figure) |||||||| ")
            continue
        low, high = int8.interval_95
        size32 = (folder / card.onnx_file).stat().st_size
        speed = {s.batch: s for s in q.speed}

        def ms(batch: int, speed: dict = speed) -> str:
            s = speed.get(batch)
            return "-" if s is None else f"{s.fp32_ms_per_item:.3f} → {s.int8_ms_per_item:.3f}"

        lines.append(
            f"| {card.name} ({folder.name}) | {fp32.value:.2%} → {int8.value:.2%} "
            f"({low:.1%}–{high:.1%}) "
            f"| {ece32.value:.4f} → {ece8.value:.4f} | {q.parity.top1_agreement:.2%} "
            f"| {q.parity.max_abs_probability_difference:.3f} "
            f"| {size32 / 1e6:.2f} → {q.size_bytes / 1e6:.2f} MB | {ms(1)} | {ms(32)} "
            f"| {card.serving_onnx('auto')[0]} |"
        )
    lines.append("")
    return lines


def peers_section(peers: dict[str, Any] | None) -> list[str]:
    """Our service beside the peers on the same ONNX file and request (results/peers.json)."""
    if not peers:
        return []
    lines = [
        "## Peers on the same model (`python -m benchmarks peers`)",
        "",
        f"The {peers['endpoint']} request ({peers['payload']}) to each server pinned to core "
        f"{peers['server_core']}, closed loop from core {peers['client_core']}, "
        f"{peers['seconds']:g} s per point after {peers['warmup_s']:g} s of warm-up; the peers "
        f"serve `{peers['peers_onnx_file']}`. Finished {peers.get('finished_at', '?')}; load "
        f"average {peers.get('load_average_at_start')} at the start, "
        f"{peers.get('load_average_at_end')} at the end.",
        "",
    ]
    if peers.get("note"):
        lines += [f"> {peers['note']}", ""]
    lines += [
        "| server | concurrency | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in peers["servers"].items():
        if "error" in entry:
            lines.append(f"| {name} | - | not measured: {entry['error']} | | | |")
        for r in entry.get("runs", []):
            lines.append(
                f"| {name} | {r['concurrency']} | {_n(r['throughput'])} | "
                f"{_n(r['latency_ms']['p50'], 2)} | {_n(r['latency_ms']['p99'], 2)} | "
                f"{_errors(r['errors'])} |"
            )
    lines.append("")
    for concurrency, ratio in peers.get("ratios", {}).items():
        line = (
            f"At concurrency {concurrency}: ours / best peer ({ratio['best_peer']}) = "
            f"**{ratio['ratio']:.2f}×**, p99 {_n(ratio['ours_p99_ms'], 1)} ms vs "
            f"{_n(ratio['best_peer_p99_ms'], 1)} ms"
        )
        if "target_ratio" in ratio:
            line += f" (target ≥ {ratio['target_ratio']}× at a lower p99: {_pf(ratio['pass'])})"
        lines.append(line + ".")
    lines.append("")
    return lines


def v2_section(v2: dict[str, Any] | None) -> list[str]:
    """The Open Inference Protocol beside the task route (results/v2.json)."""
    if not v2:
        return []
    runtime = v2.get("runtime") or {}
    lines = [
        "## Open Inference Protocol beside the task route (`python -m benchmarks v2`)",
        "",
        f"The same {v2['endpoint']} image ({v2['payload']}) as a multipart upload to "
        "`/predict/image` and as one BYTES element in the binary tensor data extension to "
        "`/v2/models/mnist/infer` (what tritonclient sends), one server pinned to core "
        f"{v2['server_core']} serving `{runtime.get('onnx_file', '?')}`, closed loop from core "
        f"{v2['client_core']}, {v2['seconds']:g} s per point. Finished "
        f"{v2.get('finished_at', '?')}; load average {v2.get('load_average_at_start')} at the "
        f"start, {v2.get('load_average_at_end')} at the end.",
        "",
        "| route | concurrency | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in v2["routes"].items():
        for r in runs:
            lines.append(
                f"| {name} | {r['concurrency']} | {_n(r['throughput'])} | "
                f"{_n(r['latency_ms']['p50'], 2)} | {_n(r['latency_ms']['p99'], 2)} | "
                f"{_errors(r['errors'])} |"
            )
    lines.append("")
    for concurrency, ratio in v2.get("v2_over_task_route", {}).items():
        lines.append(f"At concurrency {concurrency}: V2 / task route = **{ratio:.2f}×**.")
    lines.append("")
    return lines


PROJECTED_CORES = 16


def workers_section(workers: dict[str, Any] | None) -> list[str]:
    """1 vs N serving processes, unpinned (results/workers.json), and what a 16-core machine
    should give, from the measured figures per process."""
    if not workers:
        return []
    lines = [
        "## Every core: 1 vs N serving processes (`python -m benchmarks workers`)",
        "",
        f"The {workers['endpoint']} request ({workers['payload']}) and the no-op route, "
        f"closed loop, {workers['seconds']:g} s per point after {workers['warmup_s']:g} s of "
        f"warm-up, the service started with `SMS_WORKERS` = each count, unpinned on "
        f"{workers['cores']} cores (the load generator shares them). Finished "
        f"{workers.get('finished_at', '?')}; load average {workers.get('load_average_at_start')} "
        f"at the start, {workers.get('load_average_at_end')} at the end. *Busy cores*: the "
        "workers' CPU seconds (all threads, from /proc) over the window, warm-up included; "
        "*per busy core*: req/s ÷ busy cores.",
        "",
    ]
    if workers.get("note"):
        lines += [f"> {workers['note']}", ""]
    lines += [
        "| processes | ORT threads each | route | concurrency | req/s | p50 ms | p99 ms | errors "
        "| 1-min load (before, after) | busy cores (per process) | CPU ms / request "
        "| req/s per process | req/s per busy core |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    per_core: dict[str, list[tuple[str, float]]] = {}
    for count, entry in workers["configurations"].items():
        threads = next(iter((entry.get("runtime") or {}).values()), {}).get("threads", {})
        if "error" in entry:
            lines.append(f"| {count} | - | - | - | not measured: {entry['error']} |" + " |" * 8)
        for r in entry.get("runs", []):
            window = workers["seconds"] + workers["warmup_s"]
            shares = ", ".join(f"{cpu / window:.2f}" for cpu in r["worker_cpu_s"].values())
            rate = r["throughput"] / r["busy_cores"] if r["busy_cores"] else None
            if rate:
                per_core.setdefault(r["route"], []).append((count, rate))
            lines.append(
                f"| {count} | {threads.get('intra_op', '?')} | {r['route']} | "
                f"{r['concurrency']} | {_n(r['throughput'])} | "
                f"{_n(r['latency_ms']['p50'], 2)} | {_n(r['latency_ms']['p99'], 2)} | "
                f"{_errors(r['errors'])} | {r['load_average_1m'][0]}, {r['load_average_1m'][1]} "
                f"| {r['busy_cores']} ({shares}) | {_n(r['cpu_ms_per_request'], 3)} | "
                f"{_n(r['req_s_per_process'])} | {_n(rate)} |"
            )
    lines.append("")
    for route, rates in per_core.items():
        low = min(rate for _, rate in rates)
        high = max(rate for _, rate in rates)
        lines.append(
            f"**{PROJECTED_CORES} cores, {route}:** one process per core at the measured "
            f"{_n(low, 0)}–{_n(high, 0)} req/s per busy core gives about "
            f"{_n(round(PROJECTED_CORES * low, -2), 0)}–{_n(round(PROJECTED_CORES * high, -2), 0)}"
            " req/s, if the load comes from another machine (here the load generator shared the "
            "cores), nothing else runs there, and the per-core rate holds at 16 processes (a "
            "projection, not a measurement: shared caches, memory bandwidth and the one accept "
            "queue are untested beyond 2)."
        )
        lines.append("")
    return lines


def reload_section(reload: dict[str, Any] | None) -> list[str]:
    """A model reloaded under load (results/reload.json)."""
    if not reload:
        return []
    call = reload.get("load_call", {})
    lines = [
        "## A reload under load (`python -m benchmarks reload`)",
        "",
        f"{reload['clients']} clients send the MNIST request without pause, in three "
        f"{reload['seconds_per_window']:g}-s windows; half a second into the second, version 2 "
        "is copied into the repository and loaded (`POST /v2/repository/models/mnist/load`: "
        f"HTTP {call.get('status')} after {call.get('seconds')} s, building and warming the "
        "new version while version 1 serves, then switching, then draining version 1). "
        f"Answers came from version {reload.get('served_after')} afterwards. Finished "
        f"{reload.get('finished_at', '?')}; load average {reload.get('load_average_at_start')} "
        "at the start.",
        "",
        "| window | requests | failed | req/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("before", "during", "after"):
        r = reload[name]
        lines.append(
            f"| {name} | {r['ok'] + r['error_count']} | {r['error_count']} | "
            f"{_n(r['throughput'])} | {_n(r['latency_ms']['p50'], 2)} | "
            f"{_n(r['latency_ms']['p99'], 2)} |"
        )
    lines.append("")
    return lines
