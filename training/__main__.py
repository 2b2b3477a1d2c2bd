"""`python -m training <task>` trains, exports, calibrates and evaluates one model;
`python -m training evaluate <task>` re-evaluates a models/ entry with ONNX Runtime;
`python -m training ood <task>` adds an out-of-distribution score to one (training/ood.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from training.data import DATA_DIR_ENV, DataNotFoundError, resolve_data_dir
from training.tasks import TASK_NAMES, get_task


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ood"]:  # python -m training ood <task>: its own options (training/ood.py)
        from training.ood import main as ood_main

        return ood_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("task", choices=[*TASK_NAMES, "evaluate"])
    parser.add_argument(
        "eval_task", nargs="?", choices=TASK_NAMES, help="with `evaluate`: which models/ entry"
    )
    parser.add_argument(
        "--data-dir",
        help=f"datasets folder (default ${DATA_DIR_ENV}, else ../shared/datasets, else ./data)",
    )
    parser.add_argument("--models-dir", default="models", type=Path)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe setting (JSON values)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from runs/<task>/")
    parser.add_argument(
        "--download",
        action="store_true",
        help="fetch the standard archive when the data is not found",
    )
    parser.add_argument("--limit", type=int, help="use N samples per split (smoke runs)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir = resolve_data_dir(args.data_dir)
    try:
        if args.task == "evaluate":
            from training.reevaluate import reevaluate

            if not args.eval_task:
                parser.error("evaluate needs a task name")
            return reevaluate(get_task(args.eval_task), args.models_dir, data_dir, args.download)
        from training.pipeline import run_task

        overrides = parse_overrides(args.set)
        if args.epochs is not None:
            overrides["epochs"] = args.epochs
        if args.seed is not None:
            overrides["seed"] = args.seed
        run_task(
            get_task(args.task),
            data_dir,
            args.models_dir,
            args.device,
            overrides,
            args.resume,
            args.download,
            args.limit,
            not args.no_progress,
        )
    except DataNotFoundError as exc:
        parser.exit(2, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
