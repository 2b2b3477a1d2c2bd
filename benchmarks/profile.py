"""Where the server's time goes: py-spy samples of the server under load, summarised.

`record` runs `py-spy record --native --threads --format raw` (collapsed stacks) against the
server's pid. Samples of threads blocked on a lock, a condition or epoll are set apart (py-spy
counts some of them as active), so the rest are threads on the CPU.
`summarise` attributes every sample to one cost category, by the frame nearest the leaf that
matches a category (a sample in libpng under Pillow under the image decoder counts as image
decoding; one in libc under uvloop's write path counts as the event loop and socket I/O), and
also reports inclusive shares of a few key functions (e.g. everything under the multipart
parser, whatever it calls).
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.server import taskset

# (category, pattern on one frame), tried for each frame from the leaf to the root.
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern))
    for name, pattern in [
        ("ONNX Runtime", r"onnxruntime|libonnxruntime|OrtRun|InferenceSession"),
        (
            "decode: image (Pillow, digit centring)",
            r"PIL/|_imaging|libpng|libwebp|^(open_image|centre_digit|fit_image|_ink|"
            r"_paste_by_centre_of_mass|without_alpha|ImagePipeline\.decode)[ .]",
        ),
        (
            "decode: audio (soundfile, soxr)",
            r"soundfile|soxr|libsndfile|^(read_audio|loudest_window|AudioPipeline\.decode)[ .]",
        ),
        (
            "decode: text (tokenizer)",
            r"app/tokenizer\.py|^TextPipeline\.(decode|group|collate)[ .]",
        ),
        # numpy itself is no category: its frames count for the Python code that called them
        (
            "worker: collate, top-k",
            r"^(Modality\.process|top_scores|ImageModality\.collate|Modality\.collate|"
            r"ModelSession\.run)[ .]|app/serving/runtime\.py",
        ),
        ("multipart parsing", r"python_multipart|app/http/forms\.py"),
        ("request JSON + pydantic validation", r"pydantic|json/decoder|json/__init__|^loads "),
        (
            "response JSON (orjson) + answer",
            r"orjson|^(predictions_response|json_response|prediction_dict)[ .]",
        ),
        ("access log (logging)", r"logging/|app/logs\.py"),
        ("metrics (prometheus_client)", r"prometheus_client|app/metrics\.py"),
        ("batcher (queue, futures, timers)", r"app/serving/batcher\.py|concurrent/futures"),
        ("request middleware", r"app/http/middleware\.py"),
        ("FastAPI / Starlette (routing, DI, responses)", r"fastapi/|starlette/"),
        ("uvicorn HTTP protocol (httptools)", r"uvicorn/|httptools"),
        ("route handlers (app)", r"app/"),
        ("GC", r"gc_collect|_PyObject_GC"),
        ("event loop, sockets (uvloop, asyncio)", r"uvloop|asyncio/|loop\.c|uv_|uv__|libuv|epoll"),
    ]
]
OTHER = "other (interpreter, libc)"
# py-spy's idle detection does not see threads blocked in these (with --native they count as
# active): a sample whose frames nearest the leaf wait on a lock, a condition or epoll is not
# on the CPU. Waiting for work (an idle worker, the event loop polling) and waiting for the
# GIL or another lock are told apart, and neither counts as CPU time.
WAIT_FRAME = re.compile(
    r"^(PyThread_acquire_lock_timed|pthread_cond_timedwait|pthread_cond_wait|take_gil|"
    r"sem_timedwait|sem_wait|sem_clockwait|epoll_pwait|epoll_wait|__futex|futex|poll|select) "
)
IDLE_FRAME = re.compile(r"_queue_SimpleQueue_get|uv__io_poll|epoll|_worker \(concurrent/")
# Unresolved libc frames (a futex: a contended lock) called from uvloop's idle phase, where it
# runs ready callbacks: they appear only when a batch worker thread shares the process (never
# in the no-op profiles), so they are most likely the GIL hand-over between the event loop and
# the worker. Shown as their own category rather than guessed into another.
HANDOVER = "libc lock in uvloop's callback phase (likely GIL hand-over with the worker)"
IDLE = "idle (waiting for work or events)"
WAITING = "waiting (GIL or a lock)"

# Inclusive shares: a sample counts for every key function on its stack.
KEY_FRAMES: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern)
    for name, pattern in {
        "worker thread: LoadedVersion.process (decode + ORT + top-k)": (
            r"process \(app/serving/model\.py"
        ),
        "  of which ONNX Runtime session.run": r"ModelSession\.run|InferenceSession\.run",
        "  of which decode()": r"\.decode \(app/pipelines/",
        "event loop: read_form (multipart)": r"read_form \(app/http/forms\.py",
        "event loop: Request.body (receive the body)": r"Request\.body \(starlette",
        "event loop: run_items (submit, await)": r"run_items \(app/http/flow\.py",
        "event loop: answer_response (JSON answer)": r"answer_response \(app/http/answers\.py",
        "event loop: access log line": r"Logger\.info \(logging",
        "event loop: metrics observe_request": r"observe_request \(app/metrics\.py",
        "event loop: FastAPI request validation (sentiment body)": (
            r"request_body_to_args|_validate|validate_json"
        ),
        "event loop: httptools parser callbacks": r"HttpToolsProtocol\.(data_received|on_)",
        "event loop: response send path": r"HttpToolsProtocol\.|RequestResponseCycle\.send",
    }.items()
}


def command(
    py_spy: str, pid: int, seconds: float, out: Path, core: int | None, rate: int = 200
) -> list[str]:
    """The py-spy command line that samples `pid` for `seconds` into `out` (collapsed stacks)."""
    return [
        *taskset(core),
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(rate),
        "--native",
        "--threads",
        "--format",
        "raw",
        "--output",
        str(out),
    ]


def _parse(raw: str) -> list[tuple[str, list[str], int]]:
    samples = []
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = frames[0]
        if thread.startswith("thread ("):  # "thread (tid): name"
            thread = thread.split(": ", 1)[-1]
            frames = frames[1:]
        if frames and not re.search(r"\(.*\)$", frames[0]):
            frames = frames[1:]  # the thread's own name (with --threads)
        samples.append((thread, frames, int(count)))
    return samples


def _thread_kind(name: str) -> str:
    if name.startswith("batch-"):
        return "batch worker threads"
    if name == "MainThread":
        return "event loop (main thread)"
    return "other threads"


def summarise(raw: str, seconds: float, rate: int) -> dict[str, Any]:
    samples = _parse(raw)
    categories: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    by_thread_category: dict[str, Counter[str]] = {}
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    waits: Counter[str] = Counter()
    culprits: dict[str, Counter[str]] = {}
    for thread, frames, count in samples:
        kind = _thread_kind(thread)
        wait = _waiting(frames)
        if wait is not None:
            waits[f"{kind}: {wait}"] += count
            continue
        by_thread[kind] += count
        category, culprit = OTHER, frames[-1] if frames else "?"
        if _lock_under_idle_phase(frames):
            category, culprit = HANDOVER, frames[-1]
        for frame in reversed(frames if category == OTHER else []):
            hit = next((name for name, pattern in CATEGORIES if pattern.search(frame)), None)
            if hit is not None:
                category, culprit = hit, frame
                break
        categories[category] += count
        culprits.setdefault(category, Counter())[_unnumbered(culprit)] += count
        by_thread_category.setdefault(kind, Counter())[category] += count
        for name, pattern in KEY_FRAMES.items():
            if any(pattern.search(frame) for frame in frames):
                inclusive[name] += count
        if frames:
            leaves[_unnumbered(frames[-1])] += count
    possible = seconds * rate  # samples one always-busy thread would give
    total = sum(categories.values()) or 1  # samples on the CPU

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"name": name, "samples": n, "share": round(n / total, 4)}
            for name, n in counter.most_common()
        ]

    return {
        "samples": total,
        "samples_not_on_cpu": sum(waits.values()),
        "seconds": seconds,
        "rate_hz": rate,
        "busy_cores": round(total / possible, 3) if possible else None,
        "threads": {
            kind: {
                "samples": n,
                "busy": round(n / possible, 3) if possible else None,
                "categories": share(by_thread_category[kind]),
            }
            for kind, n in by_thread.most_common()
        },
        "categories": [
            {**row, "top_frames": share(Counter(dict(culprits[row["name"]].most_common(6))))}
            for row in share(categories)
        ],
        "inclusive": [
            {"name": name, "samples": inclusive[name], "share": round(inclusive[name] / total, 4)}
            for name in KEY_FRAMES
        ],
        "top_leaves": share(Counter(dict(leaves.most_common(25)))),
        "not_on_cpu": {
            name: {"samples": n, "of_one_thread": round(n / possible, 3) if possible else None}
            for name, n in waits.most_common()
        },
    }


def _lock_under_idle_phase(frames: list[str]) -> bool:
    tail = list(reversed(frames))
    resolved = next((i for i, f in enumerate(tail) if not f.startswith("0x")), None)
    return (
        resolved is not None
        and resolved > 0
        and all("libc" in f for f in tail[:resolved])
        and tail[resolved].startswith("uv__queue_empty ")
        and any(f.startswith("uv__run_idle ") for f in tail[resolved : resolved + 3])
    )


def _unnumbered(frame: str) -> str:
    return re.sub(r":\d+\)$", ")", frame)


def _waiting(frames: list[str]) -> str | None:
    """IDLE or WAITING when the resolved frames nearest the leaf block, else None."""
    resolved = [f for f in reversed(frames) if not f.startswith("0x")][:3]
    if not resolved or not WAIT_FRAME.search(resolved[0]):
        return None
    return IDLE if any(IDLE_FRAME.search(f) for f in resolved) else WAITING


def save_raw(raw_path: Path, out_gz: Path) -> None:
    with raw_path.open("rb") as src, gzip.open(out_gz, "wb") as dst:
        dst.write(src.read())
