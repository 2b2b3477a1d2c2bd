"""IMDB reviews, official split: the shared `imdb/{train,test}.jsonl.gz`, or the standard
`aclImdb/` folder (the tarball is fetched with --download). Texts that also occur in the test
split are dropped from training. Validation = a fixed random 2,500 of the remaining train texts."""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path

import numpy as np

from training.data import DataNotFoundError, Dataset, Split, download, holdout

LABELS = ["negative", "positive"]
ACLIMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
VAL_SIZE = 2500


def _read_jsonl(path: Path) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts.append(row["text"])
            labels.append(int(row["label"]))
    return texts, np.asarray(labels, dtype=np.int64)


def _read_aclimdb(folder: Path) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    for label, sub in enumerate(("neg", "pos")):
        for path in sorted((folder / sub).glob("*.txt")):
            texts.append(path.read_text(encoding="utf-8"))
            labels.append(label)
    return texts, np.asarray(labels, dtype=np.int64)


def load(data_dir: Path, download_missing: bool = False) -> Dataset:
    shared, standard = data_dir / "imdb", data_dir / "aclImdb"
    if not (shared / "train.jsonl.gz").exists() and not standard.exists() and download_missing:
        archive = download(ACLIMDB_URL, data_dir / "aclImdb_v1.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(data_dir, filter="data")
    if (shared / "train.jsonl.gz").exists():
        if not (shared / "test.jsonl.gz").exists():
            raise DataNotFoundError(
                f"IMDB test split not found: missing {shared / 'test.jsonl.gz'}"
            )
        train_texts, train_y = _read_jsonl(shared / "train.jsonl.gz")
        test_texts, test_y = _read_jsonl(shared / "test.jsonl.gz")
        origin = "imdb/train.jsonl.gz"
    elif standard.exists():
        train_texts, train_y = _read_aclimdb(standard / "train")
        test_texts, test_y = _read_aclimdb(standard / "test")
        origin = "aclImdb/train/{pos,neg}"
    else:
        raise DataNotFoundError(
            f"IMDB not found under {data_dir}: expected imdb/train.jsonl.gz + imdb/test.jsonl.gz, "
            "or aclImdb/{train,test}/{pos,neg}/*.txt (the official tarball); pass --download"
        )
    in_test = set(test_texts)
    keep = np.array([t not in in_test for t in train_texts])
    dropped = int((~keep).sum())
    train_texts = [t for t, k in zip(train_texts, keep, strict=True) if k]
    train_y = train_y[keep]
    tr, va = holdout(len(train_y), VAL_SIZE / len(train_y))
    return Dataset(
        name="IMDB Large Movie Review Dataset v1.0",
        labels=LABELS,
        train=Split(
            [train_texts[i] for i in tr],
            train_y[tr],
            f"official train split ({origin}) minus validation and {dropped} test duplicates",
        ),
        val=Split(
            [train_texts[i] for i in va], train_y[va], f"random {len(va)} official train reviews"
        ),
        test=Split(test_texts, test_y, "official test split (25,000 reviews)"),
        citation="A. L. Maas et al.: Learning Word Vectors for Sentiment Analysis, ACL 2011",
        notes=[f"{dropped} train reviews whose text also occurs in the test split were dropped"],
    )
