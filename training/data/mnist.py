"""MNIST from the four official IDX files (gzipped or not): `mnist/` (the shared layout) or
torchvision's `MNIST/raw/`. Validation = the last 5,000 official train images."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from training.data import DataNotFoundError, Dataset, Split

FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
VAL_SIZE = 5000


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(data_dir: Path, stem: str) -> Path | None:
    for folder in (data_dir / "mnist", data_dir / "MNIST" / "raw"):
        for name in (stem + ".gz", stem):
            if (folder / name).exists():
                return folder / name
    return None


def load(data_dir: Path, download: bool = False) -> Dataset:
    paths = {key: _find(data_dir, stem) for key, stem in FILES.items()}
    if None in paths.values() and download:
        import torchvision  # the standard download path

        torchvision.datasets.MNIST(str(data_dir), train=True, download=True)
        torchvision.datasets.MNIST(str(data_dir), train=False, download=True)
        paths = {key: _find(data_dir, stem) for key, stem in FILES.items()}
    if None in paths.values():
        missing = [FILES[key] for key, path in paths.items() if path is None]
        raise DataNotFoundError(
            f"MNIST not found under {data_dir}: missing {', '.join(missing)} (.gz or not) in "
            "mnist/ or MNIST/raw/ (torchvision's layout); pass --download to fetch it"
        )
    images = {k: read_idx(paths[k]) for k in ("train_x", "test_x")}
    labels = {k: read_idx(paths[k]).astype(np.int64) for k in ("train_y", "test_y")}

    def as_input(x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float32) / 255.0)[:, None, :, :]

    n = len(labels["train_y"]) - VAL_SIZE
    src = paths["train_x"].parent.relative_to(data_dir)
    return Dataset(
        name="MNIST",
        labels=[str(d) for d in range(10)],
        train=Split(
            as_input(images["train_x"][:n]),
            labels["train_y"][:n],
            f"official train images 0-{n - 1} ({src})",
        ),
        val=Split(
            as_input(images["train_x"][n:]),
            labels["train_y"][n:],
            f"official train images {n}-{n + VAL_SIZE - 1} (held out)",
        ),
        test=Split(as_input(images["test_x"]), labels["test_y"], "official t10k test set"),
        citation="Y. LeCun, C. Cortes, C. J. C. Burges: The MNIST database of handwritten digits",
    )
