"""Stand-in models for developing the benchmark without the trained ones (`--fixture-models`):
the test suite's small ONNX graphs (tests/model_factory.py) under the real models' names.
Figures measured with them say nothing about the real models."""

from __future__ import annotations

import sys
from pathlib import Path


def build_fixture_models(models_dir: Path) -> Path:
    tests = Path(__file__).resolve().parent.parent / "tests"
    sys.path.insert(0, str(tests))
    try:
        from model_factory import audio_model, image_model, text_model
    finally:
        sys.path.remove(str(tests))
    models_dir.mkdir(parents=True, exist_ok=True)
    image_model(models_dir, "mnist", channels=1, size=28)
    # a few dummy convolutions, so that CIFAR-10 costs compute like a small CNN would
    image_model(models_dir, "cifar10", channels=3, size=32, slowness=2)
    text_model(models_dir, "imdb")
    audio_model(models_dir, "speech")
    return models_dir
