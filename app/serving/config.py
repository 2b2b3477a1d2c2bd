"""Per-model serving settings: an optional `models/<name>/config.json` overriding the global
`SMS_*` defaults for that model (Triton's model configuration, reduced to what we serve).

    {
      "max_batch_size": 16,
      "max_delay_ms": 1.0,
      "max_queue_size": 256,
      "intra_op_threads": 2,
      "execution_provider": "cpu",
      "precision": "int8",
      "instances": 2,
      "version_policy": {"latest": {"num_versions": 2}}
    }

Every field is optional. `version_policy` takes Triton's three forms: `{"latest":
{"num_versions": N}}` (the default, N = 1), `{"all": {}}`, `{"specific": {"versions": [1, 3]}}`.
An invalid file marks that model unservable with the file and the reason; the others serve.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.settings import Settings

CONFIG_FILE = "config.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LatestPolicy(_Strict):
    num_versions: int = Field(1, ge=1, description="Serve the N highest version numbers.")


class SpecificPolicy(_Strict):
    versions: list[int] = Field(min_length=1, description="Serve exactly these versions.")

    @model_validator(mode="after")
    def _positive(self) -> SpecificPolicy:
        if any(v < 1 for v in self.versions):
            raise ValueError("versions are positive integers")
        return self


class VersionPolicy(_Strict):
    """Which version folders are served; exactly one of the three forms (default: latest 1)."""

    latest: LatestPolicy | None = None
    all: dict[str, object] | None = None
    specific: SpecificPolicy | None = None

    @model_validator(mode="after")
    def _one_form(self) -> VersionPolicy:
        given = [f for f in ("latest", "all", "specific") if getattr(self, f) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of latest, all or specific, not {' and '.join(given)}")
        return self

    def select(self, available: list[int]) -> list[int]:
        """The versions to serve among those found (ascending)."""
        ordered = sorted(available)
        if self.all is not None:
            return ordered
        if self.specific is not None:
            return [v for v in ordered if v in set(self.specific.versions)]
        latest = self.latest.num_versions if self.latest is not None else 1
        return ordered[-latest:]

    def describe(self) -> str:
        if self.all is not None:
            return "all"
        if self.specific is not None:
            return "specific " + ", ".join(str(v) for v in self.specific.versions)
        return f"latest {self.latest.num_versions if self.latest is not None else 1}"


class ModelConfig(_Strict):
    """What a model's `config.json` may set; every field defaults to the global setting."""

    max_batch_size: int | None = Field(None, ge=1, description="Most items in one batch.")
    max_delay_ms: float | None = Field(None, ge=0, description="Longest wait for company.")
    max_queue_size: int | None = Field(None, ge=1, description="Items waiting; beyond: 503.")
    intra_op_threads: int | None = Field(None, ge=1, description="ONNX Runtime threads.")
    execution_provider: Literal["auto", "cuda", "cpu"] | None = None
    precision: Literal["auto", "fp32", "int8"] | None = Field(
        None,
        description="`int8` here requires the card's int8 copy (the version fails to load "
        "without one); `fp32`; `auto` as SMS_PRECISION.",
    )
    instances: int | None = Field(
        None, ge=1, le=16, description="Sessions (and batch workers) per served version."
    )
    version_policy: VersionPolicy = VersionPolicy()


@dataclass(frozen=True, slots=True)
class ServingSettings:
    """A model's effective settings: its config.json over the global SMS_* defaults."""

    max_batch_size: int
    max_delay_ms: float
    max_queue_size: int
    intra_op_threads: int
    inter_op_threads: int
    execution_provider: str
    precision: str
    precision_required: bool  # set by config.json: int8 there means int8 or nothing
    instances: int
    version_policy: VersionPolicy

    @classmethod
    def resolve(cls, config: ModelConfig, settings: Settings) -> ServingSettings:
        def pick(value, default):  # type: ignore[no-untyped-def]
            return default if value is None else value

        max_batch_size = pick(config.max_batch_size, settings.max_batch_size)
        return cls(
            max_batch_size=max_batch_size,
            max_delay_ms=pick(config.max_delay_ms, settings.max_delay_ms),
            max_queue_size=max(
                max_batch_size, pick(config.max_queue_size, settings.max_queue_size)
            ),
            intra_op_threads=pick(config.intra_op_threads, settings.intra_op_threads),
            inter_op_threads=settings.inter_op_threads,
            execution_provider=pick(config.execution_provider, settings.execution_provider),
            precision=pick(config.precision, settings.precision),
            precision_required=config.precision is not None,
            instances=pick(config.instances, settings.batch_workers),
            version_policy=config.version_policy,
        )


class ConfigError(ValueError):
    """The model's config.json cannot be used; the message names the file and the reason."""


def read_config(model_dir: Path) -> ModelConfig:
    """The model's config (defaults when there is no file); ConfigError when it is invalid."""
    path = model_dir / CONFIG_FILE
    if not path.exists():
        return ModelConfig()
    try:
        return ModelConfig.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise ConfigError(f"{path}: invalid config: {reasons}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable config: {exc}") from None
