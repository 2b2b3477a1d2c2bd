"""Training tests need torch (the [train] extra); the serving suite must run without it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch", reason="training tests need the [train] extra")

from training.data import resolve_data_dir


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = resolve_data_dir(None)
    if not (path / "mnist").is_dir():
        pytest.skip(f"shared datasets not found at {path} (set SMS_DATA_DIR)")
    return path
