"""CIFAR-10 from the shared lossless WebP grids (whatever `train_*.webp` exist), or the standard
`cifar-10-batches-py` folder. Validation = a fixed random 2,000 of the train images used."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from training.data import DataNotFoundError, Dataset, Split, holdout

CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck"]  # fmt: skip
VAL_SIZE = 2000
GRID_TEST_FILES = ("test_00.webp", "test_labels.txt")


def read_grid(path: Path) -> np.ndarray:
    """(1000, 32, 32, 3) uint8 from a 25x40 grid of 32x32 tiles."""
    x = np.asarray(Image.open(path).convert("RGB"))
    return x.reshape(25, 32, 40, 32, 3).transpose(0, 2, 1, 3, 4).reshape(1000, 32, 32, 3)


def _from_grids(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str, str]:
    files = sorted(folder.glob("train_*.webp"))
    all_labels = np.loadtxt(folder / "train_labels.txt", dtype=np.int64)
    xs, ys = [], []
    for f in files:
        nn = int(f.stem.split("_")[1])
        xs.append(read_grid(f))
        ys.append(all_labels[1000 * nn : 1000 * nn + 1000])
    test_x = read_grid(folder / "test_00.webp")
    test_y = np.loadtxt(folder / "test_labels.txt", dtype=np.int64)
    train_src = f"{len(files)} of 50 official train files ({', '.join(f.name for f in files[:1])}…)"
    return (
        np.concatenate(xs),
        np.concatenate(ys),
        test_x,
        test_y,
        train_src,
        "official test images 0-999 (test_00.webp; the only lossless ones available)",
    )


def _from_batches(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str, str]:
    def read(name: str) -> tuple[np.ndarray, np.ndarray]:
        with open(folder / name, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        return d[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.array(d[b"labels"])

    parts = [read(f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = read("test_batch")
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        test_x,
        test_y,
        "official train set (data_batch_1..5)",
        "official test set (10,000)",
    )


def load(data_dir: Path, download: bool = False) -> Dataset:
    grids, batches = data_dir / "cifar10", data_dir / "cifar-10-batches-py"
    if not (grids / "train_labels.txt").exists() and not batches.exists() and download:
        import torchvision  # the standard download path

        torchvision.datasets.CIFAR10(str(data_dir), train=True, download=True)
    if (grids / "train_labels.txt").exists() and any(grids.glob("train_*.webp")):
        missing = [name for name in GRID_TEST_FILES if not (grids / name).exists()]
        if missing:
            raise DataNotFoundError(
                f"CIFAR-10 test split not found: missing {', '.join(missing)} in {grids}"
            )
        train_x, train_y, test_x, test_y, train_src, test_src = _from_grids(grids)
    elif batches.exists():
        train_x, train_y, test_x, test_y, train_src, test_src = _from_batches(batches)
    else:
        raise DataNotFoundError(
            f"CIFAR-10 not found under {data_dir}: expected cifar10/train_*.webp + "
            "train_labels.txt + test_00.webp + test_labels.txt, or cifar-10-batches-py/ "
            "(the official python version); pass --download to fetch it"
        )

    def as_input(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0

    tr, va = holdout(len(train_y), VAL_SIZE / len(train_y))
    return Dataset(
        name="CIFAR-10",
        labels=CLASSES,
        train=Split(as_input(train_x[tr]), train_y[tr], f"{train_src} minus validation"),
        val=Split(as_input(train_x[va]), train_y[va], f"random {len(va)} of the train images"),
        test=Split(as_input(test_x), test_y, test_src),
        citation="A. Krizhevsky: Learning Multiple Layers of Features from Tiny Images, 2009",
    )
