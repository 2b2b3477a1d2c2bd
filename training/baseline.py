"""`python -m training baseline <task>`: write the summary of a trained `--arch seed` baseline
(baselines/<task>/) into the default card (models/<task>/card.json), so the card shows what the
default buys over the tutorial model. Only card.json changes: the default's model.onnx is read,
never written, and its sha256 is checked before and after.

Latency is measured here, for both models together (interleaved, same inputs, same settings),
because a figure from another machine or another hour would not compare."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.card import BaselineSummary, ModelCard, TextPreprocessing, latest_version_dir, sha256_of
from training.tasks.seed import is_baseline

TIMED_RUNS = 200
WARMUP_RUNS = 20
TEXT_IDS = 256  # ids per text item, or the tokenizer's max_ids when smaller
LATENCY_METHOD = (
    f"median of {TIMED_RUNS} single-item runs (after {WARMUP_RUNS} warm-up), ONNX Runtime CPU "
    "provider, 1 intra-op thread, default and baseline interleaved, random inputs of the card's "
    f"shape (text: min({TEXT_IDS}, the tokenizer's max_ids) ids)"
)


class BaselineError(RuntimeError):
    """The baseline cannot be recorded on this default card; the message says why."""


def record_baseline(name: str, models_dir: Path, baselines_dir: Path) -> int:
    try:
        card = summarise_into_card(
            latest_version_dir(models_dir, name), latest_version_dir(baselines_dir, name)
        )
    except BaselineError as exc:
        print(f"error: {exc}")
        return 1
    b = card.baseline
    assert b is not None
    print(
        f"{name}: baseline test accuracy {b.accuracy:.4f}, ECE {b.ece:.4f}, "
        f"{b.onnx_bytes / 1e6:.2f} MB, {b.ms_per_item:.3f} ms/item; default "
        f"{card.metric('accuracy').value:.4f}, ECE {card.calibration.ece_test_after:.4f}, "
        f"{b.default_onnx_bytes / 1e6:.2f} MB, {b.default_ms_per_item:.3f} ms/item; "
        f"written to {latest_version_dir(models_dir, name) / 'card.json'}"
    )
    return 0


def summarise_into_card(default_dir: Path, baseline_dir: Path) -> ModelCard:
    card = ModelCard.load(default_dir)
    base = ModelCard.load(baseline_dir)
    default_onnx, base_onnx = default_dir / card.onnx_file, baseline_dir / base.onnx_file
    sha_before = sha256_of(default_onnx)
    if sha_before != card.onnx_sha256:
        raise BaselineError(f"{default_onnx} does not match the sha256 on its card")
    if sha256_of(base_onnx) != base.onnx_sha256:
        raise BaselineError(f"{base_onnx} does not match the sha256 on its card")
    if not is_baseline(base):
        raise BaselineError(f"{baseline_dir} was not trained with --arch seed")
    if is_baseline(card):
        raise BaselineError(f"{default_dir} holds a baseline, not a default model")
    if base.name != card.name or base.data.splits["test"] != card.data.splits["test"]:
        raise BaselineError(f"{baseline_dir} was not measured on {default_dir}'s test split")
    accuracy = base.metric("accuracy", "test")
    if accuracy is None:
        raise BaselineError(f"{baseline_dir / 'card.json'} has no test accuracy")

    ms_default, ms_base = interleaved_latency(
        [
            (default_onnx, example_input(card, default_dir)),
            (base_onnx, example_input(base, baseline_dir)),
        ]
    )
    summary = BaselineSummary(
        description=base.description,
        command=base.training.command,
        epochs=base.training.epochs,
        training_duration_s=base.training.duration_s,
        onnx_sha256=base.onnx_sha256,
        onnx_bytes=base_onnx.stat().st_size,
        default_onnx_bytes=default_onnx.stat().st_size,
        accuracy=accuracy.value,
        accuracy_interval_95=accuracy.interval_95,
        ece=base.calibration.ece_test_after,
        test_samples=accuracy.samples,
        ms_per_item=round(ms_base, 4),
        default_ms_per_item=round(ms_default, 4),
        latency_method=f"{LATENCY_METHOD}; {machine()}",
        measured_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    updated = card.model_copy(update={"baseline": summary})
    updated.save(default_dir)
    if sha256_of(default_onnx) != sha_before:  # cannot happen: nothing here writes it
        raise BaselineError(f"{default_onnx} changed while recording the baseline")
    return updated


def machine() -> str:
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def example_input(card: ModelCard, model_dir: Path) -> dict[str, np.ndarray]:
    """One random item in the card's input format, the same for every run."""
    spec, rng = card.inputs[0], np.random.default_rng(0)
    prep = card.preprocessing
    if isinstance(prep, TextPreprocessing):
        tokenizer = json.loads((model_dir / prep.tokenizer_file).read_text())
        length = min(TEXT_IDS, int(tokenizer["config"]["max_ids"]))
        ids = rng.integers(1, len(tokenizer["tokens"]) + 1, size=(1, length))
        return {spec.name: ids.astype(np.int64)}
    shape = [1 if isinstance(d, str) else d for d in spec.shape]
    return {spec.name: rng.random(shape, dtype=np.float32)}


def interleaved_latency(models: list[tuple[Path, dict[str, np.ndarray]]]) -> list[float]:
    """Median milliseconds per single-item run of each model, runs alternating between them so
    that load from other work on a shared machine falls on all of them alike."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    sessions = [
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for path, _ in models
    ]
    feeds = [feed for _, feed in models]
    for _ in range(WARMUP_RUNS):
        for session, feed in zip(sessions, feeds, strict=True):
            session.run(None, feed)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(TIMED_RUNS):
        for i, (session, feed) in enumerate(zip(sessions, feeds, strict=True)):
            started = time.perf_counter()
            session.run(None, feed)
            times[i].append((time.perf_counter() - started) * 1000)
    return [statistics.median(t) for t in times]
