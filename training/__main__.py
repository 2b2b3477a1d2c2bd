"""`python -m training <task>` trains, exports, calibrates and evaluates one model;
`python -m training evaluate <task>` re-measures a models/ entry with ONNX Runtime and checks
every figure on its card; `python -m training baseline <task>` records a trained `--arch seed`
baseline's summary on the default card; `python -m training quantize <task>` writes the int8 copy
of the latest version beside its model.onnx (training/quantize.py); `python -m training ood
<task>` writes a new version with an out-of-distribution score (training/ood.py, its own
options)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training.data import DATA_DIR_ENV, DataNotFoundError, resolve_data_dir
from training.tasks import TASK_NAMES, get_task
from training.tasks.seed import ARCHS

COMMANDS = ("evaluate", "baseline", "quantize")
BASELINES_DIR = Path("baselines")
# options that only training reads: refused with `evaluate` and `baseline` rather than ignored
TRAINING_ONLY = ("arch", "device", "epochs", "seed", "set", "resume", "limit", "no_progress")
# settings the shared recipe steps read with a default, so a task need not list them
OPTIONAL_SETTINGS = ("warmup", "linear_decay", "label_smoothing")


def parse_overrides(pairs: list[str], known: set[str]) -> dict[str, object]:
    """KEY=VALUE pairs, values parsed as JSON (else kept as text). A pair without `=` or a key the
    recipe does not have is a mistake, so it raises ValueError instead of being ignored."""
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {pair!r}")
        if key not in known:
            raise ValueError(
                f"--set {key}: not a setting of this recipe ({', '.join(sorted(known))})"
            )
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description=__doc__,
    )
    parser.add_argument(
        "command",
        choices=[*TASK_NAMES, *COMMANDS],
        metavar="COMMAND",
        help=f"a task to train ({', '.join(TASK_NAMES)}), or evaluate TASK, baseline TASK or "
        "quantize TASK",
    )
    parser.add_argument(
        "target",
        nargs="?",
        choices=TASK_NAMES,
        metavar="TASK",
        help="with evaluate, baseline or quantize: which task's models/ entry (its latest version)",
    )
    parser.add_argument(
        "--data-dir",
        help=f"datasets folder (default ${DATA_DIR_ENV}, else ../shared/datasets, else ./data)",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        help="where <task>/ is written or read (default models/; baselines/ with --arch seed)",
    )
    parser.add_argument(
        "--baselines-dir",
        type=Path,
        help="with baseline: where the trained --arch seed models are (default baselines/)",
    )
    parser.add_argument(
        "--arch",
        choices=ARCHS,
        help="default: the recipe of the committed models; seed: the classic tutorial baseline "
        "(written to baselines/<task>/, checkpoints in runs/seed/)",
    )
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        help="where to train; auto takes CUDA when torch sees it (default auto)",
    )
    parser.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    parser.add_argument("--seed", type=int, help="override the recipe's random seed")
    parser.add_argument(
        "--set",
        nargs="+",
        action="extend",
        metavar="KEY=VALUE",
        help="override a recipe setting (JSON values); repeatable",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from runs/<task>/checkpoint.pt (runs/seed/<task>/ with --arch seed)",
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="fetch the standard archive when the data is not found",
    )
    parser.add_argument("--limit", type=int, help="use N samples per split (smoke runs)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (one line per epoch stays)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ood"]:  # python -m training ood <task>: its own options (training/ood.py)
        from training.ood import main as ood_main

        return ood_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in COMMANDS:
        if not args.target:
            parser.error(f"{args.command} needs a task name: {' | '.join(TASK_NAMES)}")
        given = ["--" + name.replace("_", "-") for name in TRAINING_ONLY if getattr(args, name)]
        if given:
            parser.error(f"{args.command} does not train, so it takes no {', '.join(given)}")
    elif args.target:
        parser.error(f"unrecognized argument {args.target!r}: a task trains on its own")
    if args.baselines_dir and args.command != "baseline":
        parser.error("--baselines-dir is read by the baseline command only")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    data_dir = resolve_data_dir(args.data_dir)
    models_dir = args.models_dir or Path("models")
    try:
        if args.command == "evaluate":
            from training.evaluate import evaluate_entry

            return evaluate_entry(args.target, models_dir, data_dir, args.download)
        if args.command == "quantize":
            from training.quantize import quantize

            return quantize(
                get_task(args.target), models_dir / args.target, data_dir, args.download
            )
        if args.command == "baseline":
            from training.baseline import record_baseline

            return record_baseline(args.target, models_dir, args.baselines_dir or BASELINES_DIR)
        return train_command(parser, args, data_dir)
    except DataNotFoundError as exc:
        parser.exit(2, f"error: {exc}\n")


def train_command(parser: argparse.ArgumentParser, args: argparse.Namespace, data_dir: Path) -> int:
    from training.pipeline import run_task

    arch = args.arch or "default"
    task = get_task(args.command, arch)
    try:
        overrides = parse_overrides(args.set or [], {*task.defaults, *OPTIONAL_SETTINGS})
    except ValueError as exc:
        parser.error(str(exc))
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.seed is not None:
        overrides["seed"] = args.seed
    seed_arch = arch == "seed"
    run_task(
        task,
        data_dir,
        args.models_dir or (BASELINES_DIR if seed_arch else Path("models")),
        args.device or "auto",
        overrides,
        args.resume,
        args.download,
        args.limit,
        not args.no_progress,
        Path("runs/seed") if seed_arch else Path("runs"),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
