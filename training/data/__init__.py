"""Dataset loaders. Each reads the project's shared layout or the standard one, and can fetch the
standard archive for users with internet. All return numpy arrays in the exported graph's input
format, so the same arrays feed training and the ONNX Runtime evaluation."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATA_DIR_ENV = "SMS_DATA_DIR"


class DataNotFoundError(RuntimeError):
    """Raised with a message that names the layouts we looked for."""


def resolve_data_dir(cli_value: str | None) -> Path:
    """--data-dir, else $SMS_DATA_DIR, else ../shared/datasets when present, else ./data."""
    if cli_value:
        return Path(cli_value)
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    shared = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"
    return shared.resolve() if shared.is_dir() else Path("data")


def download(url: str, dest: Path) -> Path:
    """Fetch a standard archive once; a clear error when the network is not there."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    print(f"downloading {url} -> {dest}")
    try:
        urllib.request.urlretrieve(url, tmp)
    except (urllib.error.URLError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise DataNotFoundError(
            f"could not download {url} ({exc}); place the data by hand"
        ) from exc
    tmp.rename(dest)
    return dest


@dataclass
class Split:
    """Inputs in graph format (an array, or a list of int64 arrays for text) and int labels."""

    x: np.ndarray | list[np.ndarray]
    y: np.ndarray
    source: str
    groups: np.ndarray | None = None  # e.g. speaker ids, for a per-speaker bootstrap

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    name: str
    labels: list[str]
    train: Split
    val: Split
    test: Split
    citation: str = ""
    notes: list[str] = field(default_factory=list)

    def subset(self, limit: int, seed: int = 0) -> Dataset:
        """A small random slice of every split, for CI smoke runs."""
        rng = np.random.default_rng(seed)

        def cut(s: Split) -> Split:
            idx = np.sort(rng.permutation(len(s))[:limit])
            x = [s.x[i] for i in idx] if isinstance(s.x, list) else s.x[idx]
            groups = None if s.groups is None else s.groups[idx]
            return Split(x, s.y[idx], f"{s.source} (random {len(idx)})", groups)

        return Dataset(
            self.name,
            self.labels,
            cut(self.train),
            cut(self.val),
            cut(self.test),
            self.citation,
            [*self.notes, f"smoke subset of {limit} per split"],
        )


HOLDOUT_SEED = 0


def holdout(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/validation index split, the same whatever a run's seed: runs with
    different seeds (ensemble members, re-runs) are compared on the same validation images, and
    none is chosen on images another one trained on."""
    order = np.random.default_rng(HOLDOUT_SEED).permutation(n)
    n_val = round(n * fraction)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
