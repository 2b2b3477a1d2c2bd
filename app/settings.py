"""Every knob of the server in one place, read from `SMS_*` environment variables (or a `.env`).

Each field's description is what the README settings table says about it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _cores() -> int:
    """The cores this process may use, not the machine's count: its affinity (taskset,
    `docker --cpuset-cpus`), and a CPU quota (`docker --cpus`: cgroup v2 cpu.max) rounded up."""
    cores = len(os.sched_getaffinity(0)) or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))


def default_workers(execution_provider: str) -> int:
    """One serving process per usable core on the CPU. Where this onnxruntime build offers
    CUDA (and the provider policy may use it), one process: each would hold its own CUDA
    context and copy of every model on the one GPU, and the GPU, not the cores, is the limit."""
    if execution_provider != "cpu":
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            return 1
    return _cores()


def default_intra_op_threads(workers: int = 1) -> int:
    """The cores shared among the serving processes, at most 4 each (processes × threads ≤
    cores). The threads do not spin (see app.serving.runtime), so between batches they leave
    the event loop its core; during a batch they use whatever cores are free (on the 2-core
    machine, with other work running, 2 threads served ~20% more than 1). The models here are
    too small to gain from more than 4."""
    return max(1, min(4, _cores() // workers))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMS_", env_file=".env", extra="ignore")

    models_dir: Path = Field(Path("models"), description="Folder holding one sub-folder per model.")
    host: str = Field("0.0.0.0", description="Interface `python -m app` listens on.")
    port: int = Field(8000, description="Port `python -m app` listens on.")

    execution_provider: Literal["auto", "cuda", "cpu"] = Field(
        "auto",
        description="`auto`: CUDA when it really works, else CPU. `cuda`: fail at start-up "
        "unless CUDA is active. `cpu`: CPU only.",
    )
    precision: Literal["auto", "fp32", "int8"] = Field(
        "auto",
        description="Which ONNX file a version serves: `auto` the int8 copy where its card shows "
        "it loses at most 0.2 pp of test accuracy, else fp32; `fp32`; `int8` wherever the card "
        "has an int8 copy (fp32 where it has none). A model's config.json may force either.",
    )
    workers: int = Field(
        default_factory=lambda data: default_workers(data["execution_provider"]),
        ge=1,
        description="Serving processes sharing the port (`python -m app`), each with its own "
        "batchers and sessions (default: the usable cores; 1 where onnxruntime offers CUDA). "
        "1: a single process, no supervisor.",
    )
    intra_op_threads: int = Field(
        default_factory=lambda data: default_intra_op_threads(data["workers"]),
        ge=1,
        description="ONNX Runtime threads inside one operator (default: the cores divided among "
        "the workers, at most 4).",
    )
    inter_op_threads: int = Field(
        1, ge=1, description="ONNX Runtime threads across operators (graphs here are sequential)."
    )
    batch_workers: int = Field(
        1,
        ge=1,
        description="Batches one model may run at the same time (each in its own worker thread).",
    )

    max_batch_size: int = Field(32, ge=1, description="Most items (files, texts) in one batch.")
    max_delay_ms: float = Field(
        2.0,
        ge=0,
        description="Longest a request waits for company while another batch of its model is "
        "computing; with every worker idle a batch goes at once.",
    )
    max_queue_size: int = Field(
        512, ge=1, description="Items waiting per model; beyond this the server answers 503."
    )
    default_deadline_ms: float = Field(
        10_000,
        gt=0,
        description="Deadline of a request that sends no `X-Deadline-Ms` header; when it "
        "cannot be met the answer is 504.",
    )

    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Largest request body; larger ones get 413."
    )
    max_image_pixels: int = Field(
        4096 * 4096,
        ge=1,
        description="Largest image (width × height) decoded; larger ones get 413 "
        "(decompression bombs).",
    )
    max_text_chars: int = Field(
        20_000,
        ge=1,
        description="Longest text accepted (the card's `max_chars` may lower it); longer gets 422.",
    )
    max_audio_seconds: float = Field(
        60, gt=0, description="Longest audio clip decoded; longer ones get 413."
    )
    max_items: int = Field(
        64, ge=1, description="Most files or texts in one request; more gets 422."
    )
    max_top_k: int = Field(
        10, ge=1, description="Cap on `top_k` (a larger request is capped, as is the label count)."
    )

    model_control: Literal["none", "explicit", "poll"] = Field(
        "none",
        description="Model control (Triton's modes). `none`: the repository is loaded at "
        "start-up and fixed. `explicit`: also load, reload and unload through the repository "
        "endpoints. `poll`: as explicit, and the repository is rescanned every "
        "SMS_MODEL_POLL_S seconds (new, changed and removed models are picked up).",
    )
    model_poll_s: float = Field(
        5.0, gt=0, description="Seconds between repository scans with SMS_MODEL_CONTROL=poll."
    )

    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated keys that may call the inference routes and read /models, "
        "sent as `Authorization: Bearer <key>`; none set: no key needed.",
    )
    admin_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Keys that may also load and unload models (the /v2/repository routes).",
    )
    protect_observability: bool = Field(
        False, description="Also require a key for /healthz, /readyz, /metrics, /v2/health."
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A request body that has not fully arrived this many seconds after the "
        "request began gets 408 and its connection is closed.",
    )
    max_connections: int = Field(
        4096,
        ge=1,
        description="Requests in flight (each holds a connection); beyond this, 503 at once.",
    )

    serve_partial: bool = Field(
        False,
        description="Serve the healthy models when one is broken (it is listed with its error "
        "on /models and /readyz) instead of refusing to start.",
    )
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")
    log_level: str = Field("INFO", description="Python log level name.")
    access_log: bool = Field(
        True, description="One log line per request (method, path, status, ms)."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins (`https://app.example.com`, comma-separated, or `*`) whose browser "
        "pages may call the API; none by default. The demo page at `/` needs none.",
    )
    enable_benchmark_routes: bool = Field(
        False,
        description="Expose POST /noop/image, /noop/sentiment and /noop/speech, which parse a "
        "request like the real routes and answer without inference (to measure the HTTP cost).",
    )

    @field_validator("api_keys", "admin_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """Lists read from the environment are comma-separated (reads better than JSON)."""
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _queue_holds_a_batch(self) -> Settings:
        if self.max_queue_size < self.max_batch_size:
            raise ValueError("max_queue_size must be at least max_batch_size")
        return self
