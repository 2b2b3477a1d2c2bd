"""Scenario (a), the compute limit: each model in one process, no HTTP, at batch sizes 1..64.

The version is built by the server's own `app.serving.model.load_version` with the server's
settings (same provider policy, intra/inter-op threads, no spinning, the file its card's
precision selects), and the payload is the benchmark's own sample. Two figures per batch size:

* `ort`: `session.run` on an already decoded batch (the ONNX Runtime limit);
* `worker`: the whole worker-side pipeline, `LoadedVersion.process` (decode every item,
  collate, run, top-k), which is what one batch worker of the server does per batch.

    python -m benchmarks.raw_ort --models-dir models --datasets ../shared/datasets --out x.json
Run it pinned to the server's core (`taskset -c 0`) for figures comparable to the service's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from app.metrics import Metrics
from app.pipelines.base import Upload
from app.serving.config import ServingSettings
from app.serving.model import LoadedVersion, load_version
from app.serving.repository import read_model
from app.settings import Settings
from benchmarks.payloads import ENDPOINTS, load_payloads

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def _time_per_call(fn: Any, min_seconds: float, min_calls: int = 5, max_calls: int = 5000) -> dict:
    """Median and best seconds per call over at least `min_seconds` (bounded in calls)."""
    fn()  # warm
    times = []
    started = time.perf_counter()
    while len(times) < max_calls and (
        len(times) < min_calls or time.perf_counter() - started < min_seconds
    ):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "best_s": min(times), "calls": len(times)}


def _load_latest(models_dir: Path, name: str, settings: Settings) -> LoadedVersion:
    """The latest version of `name`, built exactly as the server builds it (batch buckets up
    to the largest batch size measured here)."""
    folder = read_model(models_dir, name)
    if folder is None or not folder.versions:
        raise SystemExit(f"no model {name!r} in {models_dir}")
    source = folder.versions[max(folder.versions, key=int)]
    settings = settings.model_copy(update={"max_batch_size": max(BATCH_SIZES)})
    serving = ServingSettings.resolve(folder.config, settings)
    return load_version(source, serving, settings, Metrics())


def measure(
    models_dir: Path, datasets: Path, endpoints: tuple[str, ...], min_seconds: float
) -> dict[str, Any]:
    settings = Settings(models_dir=models_dir)
    payloads = load_payloads(datasets, endpoints)
    out: dict[str, Any] = {
        "settings": {
            "execution_provider": settings.execution_provider,
            "intra_op_threads": settings.intra_op_threads,
            "inter_op_threads": settings.inter_op_threads,
        },
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "min_seconds_per_point": min_seconds,
        "endpoints": {},
    }
    for name, payload in payloads.items():
        loaded = _load_latest(models_dir, payload.model, settings)
        card, session, modality = loaded.card, loaded.sessions[0], loaded.pipeline
        raw: Any = payload.item
        if payload.filename is not None:
            raw = Upload(payload.filename, payload.item)
        decode = _time_per_call(lambda raw=raw, m=modality: m.decode(raw), min_seconds)
        array = modality.decode(raw)
        rows = []
        for size in BATCH_SIZES:
            feed = modality.collate([array] * size)
            ort = _time_per_call(lambda feed=feed, s=session: s.run(feed), min_seconds)
            items = [raw] * size
            worker = _time_per_call(lambda items=items, m=loaded: m.process(items), min_seconds)
            rows.append(
                {
                    "batch_size": size,
                    "ort_ms_per_batch": round(ort["median_s"] * 1000, 4),
                    "ort_items_per_s": round(size / ort["median_s"], 1),
                    "worker_ms_per_batch": round(worker["median_s"] * 1000, 4),
                    "worker_items_per_s": round(size / worker["median_s"], 1),
                    "calls": [ort["calls"], worker["calls"]],
                }
            )
            print(
                f"{name:9s} batch {size:3d}: ORT {rows[-1]['ort_items_per_s']:9.0f} items/s, "
                f"worker {rows[-1]['worker_items_per_s']:9.0f} items/s",
                flush=True,
            )
        out["endpoints"][name] = {
            "model": payload.model,
            "version": loaded.version,
            "release": card.version,
            "providers": session.providers,
            "decode_ms_per_item": round(decode["median_s"] * 1000, 4),
            "input_shape": list(next(iter(modality.collate([array]).values())).shape),
            "batches": rows,
            "best_ort_items_per_s": max(r["ort_items_per_s"] for r in rows),
            "best_worker_items_per_s": max(r["worker_items_per_s"] for r in rows),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--endpoints", nargs="+", default=list(ENDPOINTS), choices=ENDPOINTS)
    parser.add_argument("--min-seconds", type=float, default=0.4)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = measure(args.models_dir, args.datasets, tuple(args.endpoints), args.min_seconds)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
