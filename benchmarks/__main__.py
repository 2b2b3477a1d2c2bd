"""Command line of the benchmarks.

python -m benchmarks run [--quick] [--fixture-models] [--endpoints mnist speech ...]
python -m benchmarks report                 # rewrite docs/benchmarks.md from the JSON
python -m benchmarks ceiling                # the load generator's own ceiling only
python -m benchmarks peers [--seconds 10] [--concurrency 32] [--precision fp32]
                                            # ours vs FastAPI + ORT vs LitServe on MNIST
python -m benchmarks workers [--workers 1 2] [--concurrency 32] [--seconds 10]
                                            # 1 vs N serving processes, unpinned
python -m benchmarks load --port 8000 --endpoint mnist [--route noop]
                          (--clients 64 | --rate 500) [--seconds 5]
                                            # one run against a server already running
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from benchmarks.payloads import ENDPOINTS

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    common.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    common.add_argument("--docs", type=Path, default=ROOT / "docs")

    run = sub.add_parser("run", parents=[common], help="run every scenario and write the report")
    run.add_argument("--models-dir", type=Path, default=ROOT / "models")
    run.add_argument("--quick", action="store_true", help="short runs (a smoke test, ~2 min)")
    run.add_argument(
        "--fixture-models", action="store_true", help="stand-in test models (development only)"
    )
    run.add_argument("--endpoints", nargs="+", default=list(ENDPOINTS), choices=ENDPOINTS)
    run.add_argument("--no-profile", action="store_true", help="skip the py-spy profiles")

    peers = sub.add_parser(
        "peers", parents=[common], help="our service beside two peers on the same model"
    )
    peers.add_argument("--models-dir", type=Path, default=ROOT / "models")
    peers.add_argument("--seconds", type=float, default=10.0)
    peers.add_argument("--warmup", type=float, default=1.0)
    peers.add_argument("--concurrency", type=int, nargs="+", default=[32])
    peers.add_argument(
        "--precision",
        choices=("auto", "fp32", "int8"),
        default="fp32",
        help="which of the card's files the peers serve (match what the service serves)",
    )
    peers.add_argument("--note", default="", help="a caveat shown with the figures in the report")

    procs = sub.add_parser(
        "workers", parents=[common], help="the service with 1, 2, … processes (SMS_WORKERS)"
    )
    procs.add_argument("--models-dir", type=Path, default=ROOT / "models")
    procs.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    procs.add_argument("--seconds", type=float, default=10.0)
    procs.add_argument("--warmup", type=float, default=1.0)
    procs.add_argument("--concurrency", type=int, nargs="+", default=[32])
    procs.add_argument("--note", default="", help="a caveat shown with the figures in the report")

    v2 = sub.add_parser(
        "v2", parents=[common], help="Open Inference Protocol infer beside the task route (MNIST)"
    )
    v2.add_argument("--models-dir", type=Path, default=ROOT / "models")
    v2.add_argument("--seconds", type=float, default=10.0)
    v2.add_argument("--warmup", type=float, default=1.0)
    v2.add_argument("--concurrency", type=int, nargs="+", default=[32])

    reload = sub.add_parser(
        "reload", parents=[common], help="a model reloaded under 32 clients: failures and p99"
    )
    reload.add_argument("--models-dir", type=Path, default=ROOT / "models")
    reload.add_argument("--seconds", type=float, default=4.0, help="per window")

    sub.add_parser("report", parents=[common], help="rewrite docs/benchmarks.md from the JSON")
    sub.add_parser("ceiling", parents=[common], help="measure the load generator's ceiling")

    load = sub.add_parser("load", parents=[common], help="one run against a running server")
    load.add_argument("--host", default="127.0.0.1")
    load.add_argument("--port", type=int, default=8000)
    load.add_argument("--endpoint", choices=ENDPOINTS, default="mnist")
    load.add_argument("--route", choices=("predict", "noop"), default="predict")
    mode = load.add_mutually_exclusive_group(required=True)
    mode.add_argument("--clients", type=int, help="closed loop with this many clients")
    mode.add_argument("--rate", type=float, help="open loop, Poisson arrivals per second")
    load.add_argument("--seconds", type=float, default=5.0)
    load.add_argument("--warmup", type=float, default=1.0)

    args = parser.parse_args(argv)
    if args.command == "run":
        from benchmarks.run import QUICK, Plan, run_all

        summary = run_all(
            models_dir=args.models_dir.resolve(),
            datasets=args.datasets.resolve(),
            results_dir=args.results.resolve(),
            docs_dir=args.docs.resolve(),
            plan=QUICK if args.quick else Plan(),
            endpoints=tuple(args.endpoints),
            fixture_models=args.fixture_models,
            profile_server=not args.no_profile,
            argv=argv,
        )
        failed = [k for k, v in summary["ratios"].items() if not v.get("pass")]
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        if failed:
            print(f"targets missed: {', '.join(failed)} (see the report)")
    elif args.command == "peers":
        from benchmarks.peers import run_peers

        result = run_peers(
            models_dir=args.models_dir.resolve(),
            datasets=args.datasets.resolve(),
            results_dir=args.results.resolve(),
            levels=tuple(args.concurrency),
            seconds=args.seconds,
            warmup_s=args.warmup,
            precision=args.precision,
            note=args.note,
        )
        print(json.dumps(result["ratios"], indent=2))
    elif args.command == "workers":
        from benchmarks.workers import run_workers

        result = run_workers(
            models_dir=args.models_dir.resolve(),
            datasets=args.datasets.resolve(),
            results_dir=args.results.resolve(),
            workers=tuple(args.workers),
            levels=tuple(args.concurrency),
            seconds=args.seconds,
            warmup_s=args.warmup,
            note=args.note,
        )
        print(json.dumps(result["configurations"], indent=2)[:4000])
    elif args.command == "v2":
        from benchmarks.protocols import run_v2

        result = run_v2(
            models_dir=args.models_dir.resolve(),
            datasets=args.datasets.resolve(),
            results_dir=args.results.resolve(),
            levels=tuple(args.concurrency),
            seconds=args.seconds,
            warmup_s=args.warmup,
        )
        print(json.dumps({k: v for k, v in result.items() if k != "runtime"}, indent=2))
    elif args.command == "reload":
        from benchmarks.reload import run_reload

        result = run_reload(
            models_dir=args.models_dir.resolve(),
            datasets=args.datasets.resolve(),
            results_dir=args.results.resolve(),
            seconds=args.seconds,
        )
        print(json.dumps({k: result[k] for k in ("load_call", "served_after")}, indent=2))
    elif args.command == "report":
        from benchmarks.report import write_report

        print(write_report(args.results.resolve(), args.docs.resolve()))
    elif args.command == "ceiling":
        from benchmarks.payloads import load_payloads
        from benchmarks.run import CLIENT_CORE, Plan, measure_ceiling

        cores = (os.cpu_count() or 1) >= 2
        if cores:
            os.sched_setaffinity(0, {CLIENT_CORE})
        result = measure_ceiling(Plan(), load_payloads(args.datasets.resolve()), cores)
        print(json.dumps(result, indent=2))
    elif args.command == "load":
        from benchmarks import loadgen
        from benchmarks.payloads import load_payloads

        payload = load_payloads(args.datasets.resolve(), (args.endpoint,))[args.endpoint]
        request = payload.request_bytes(args.route, args.host, args.port)
        if args.clients:
            result = loadgen.run(
                lambda: loadgen.closed_loop(
                    args.host, args.port, request, args.clients, args.seconds, args.warmup
                )
            )
        else:
            result = loadgen.run(
                lambda: loadgen.open_loop(
                    args.host, args.port, request, args.rate, args.seconds, args.warmup
                )
            )
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
