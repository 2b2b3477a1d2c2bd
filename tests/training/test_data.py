from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.data import DataNotFoundError, cifar10, imdb, mnist, speech


def test_mnist_reads_the_official_files(data_dir: Path) -> None:
    ds = mnist.load(data_dir)
    assert ds.train.x.shape == (55_000, 1, 28, 28) and ds.val.x.shape == (5_000, 1, 28, 28)
    assert ds.test.x.shape == (10_000, 1, 28, 28)
    assert np.bincount(ds.test.y).tolist()[:3] == [980, 1135, 1032]
    assert 0.12 < ds.train.x.mean() < 0.14 and ds.train.x.max() == 1.0


def test_cifar_grid_tiles_are_read_in_order(data_dir: Path) -> None:
    tiles = cifar10.read_grid(data_dir / "cifar10" / "train_00.webp")
    grid = np.asarray(
        __import__("PIL.Image", fromlist=["Image"])
        .open(data_dir / "cifar10" / "train_00.webp")
        .convert("RGB")
    )
    k = 41  # row 1, column 1
    np.testing.assert_array_equal(tiles[k], grid[32:64, 32:64])
    labels = np.loadtxt(data_dir / "cifar10" / "train_labels.txt", dtype=int)
    assert labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]


def test_imdb_drops_test_duplicates_from_training(data_dir: Path) -> None:
    ds = imdb.load(data_dir)
    assert len(ds.test) == 25_000
    assert len(ds.train) + len(ds.val) == 25_000 - 123 - 0  # the 123 shared texts are gone
    assert not set(ds.train.x) & set(ds.test.x)
    assert not set(ds.val.x) & set(ds.test.x)


def test_speech_split_is_speaker_disjoint_and_silence_is_not_reused(data_dir: Path) -> None:
    data = speech.load(data_dir)
    ds = data.dataset
    speakers = [set(s.groups) - {"silence"} for s in (ds.train, ds.val, ds.test)]
    assert not speakers[0] & speakers[1] and not speakers[0] & speakers[2]
    assert not speakers[1] & speakers[2]
    assert (len(ds.train), len(ds.val), len(ds.test)) == (4497, 401, 579)
    assert set(np.unique(ds.test.y)) == set(range(12))
    assert all(len(n) > 16000 for n in data.noise)


def test_window_split_rule() -> None:
    total = 100 * 16000
    assert speech.window_split(0, 16000, total) == "train"
    assert speech.window_split(int(0.8 * total) - 100, 16000, total) is None  # straddles
    assert speech.window_split(int(0.85 * total), 16000, total) == "val"
    assert speech.window_split(total - 16000, 16000, total) == "test"


@pytest.mark.parametrize(
    "loader,name",
    [
        (mnist.load, "MNIST"),
        (cifar10.load, "CIFAR-10"),
        (imdb.load, "IMDB"),
        (speech.load, "Speech Commands"),
    ],
)
def test_missing_data_names_the_expected_layout(tmp_path: Path, loader, name: str) -> None:
    with pytest.raises(DataNotFoundError, match=name):
        loader(tmp_path)
