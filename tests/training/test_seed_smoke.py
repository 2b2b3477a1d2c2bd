"""The `--arch seed` baselines end to end on a small slice of the real data (one epoch, like
test_tasks_smoke.py): the same export, parity, calibration and evaluation as the defaults, a
valid card that says it is a baseline, and `python -m training baseline` recording the summary
on a default card without touching the default's model.onnx."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.card import ModelCard, latest_version_dir, sha256_of
from app.tokenizer import PAD_ID, Tokenizer
from training.__main__ import main
from training.export import cpu_session
from training.pipeline import run_task
from training.tasks import TASK_NAMES, get_task
from training.tasks.seed import is_baseline

LIMITS = {"mnist": 128, "cifar10": 64, "imdb": 128, "speech": 96}


@pytest.fixture(scope="module")
def baselines(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("baselines")
    for name in TASK_NAMES:
        run_task(
            get_task(name, "seed"),
            data_dir,
            out,
            "cpu",
            {"epochs": 1},
            limit=LIMITS[name],
            progress=False,
            checkpoint_dir=out / "runs",
        )
    return out


@pytest.mark.parametrize("name", TASK_NAMES)
def test_baseline_writes_a_valid_card(baselines: Path, name: str) -> None:
    card = ModelCard.load(latest_version_dir(baselines, name))
    assert is_baseline(card) and card.description.startswith("Baseline")
    assert card.onnx_sha256 == sha256_of(latest_version_dir(baselines, name) / card.onnx_file)
    assert card.inputs == [get_task(name).input_spec()]  # same graph input as the default
    accuracy = card.metric("accuracy", "test")
    assert accuracy is not None and accuracy.samples == LIMITS[name]


def test_lstm_baseline_ignores_trailing_padding(baselines: Path) -> None:
    """The server pads texts of a batch to the longest: the answer must not move."""
    tokenizer = Tokenizer.load(latest_version_dir(baselines, "imdb") / "tokenizer.json")
    assert tokenizer.ordered
    ids = tokenizer.encode("the plot of the film, and the acting")
    assert list(ids[:2]) == [tokenizer.vocab["the"], tokenizer.vocab["plot"]]  # text order
    assert list(ids).count(tokenizer.vocab["the"]) == 3  # repeats kept
    session = cpu_session(latest_version_dir(baselines, "imdb") / "model.onnx")
    alone = session.run(None, {"token_ids": ids[None, :]})[0]
    padded = np.concatenate([ids, np.full(40, PAD_ID, dtype=np.int64)])[None, :]
    np.testing.assert_allclose(session.run(None, {"token_ids": padded})[0], alone, atol=1e-6)


def test_baseline_command_records_the_summary_only(
    baselines: Path, data_dir: Path, tmp_path: Path
) -> None:
    run_task(
        get_task("mnist"),
        data_dir,
        tmp_path,
        "cpu",
        {"epochs": 1},
        limit=LIMITS["mnist"],
        progress=False,
        checkpoint_dir=tmp_path / "runs",
    )
    default = latest_version_dir(tmp_path, "mnist")
    onnx_bytes = (default / "model.onnx").read_bytes()
    before = ModelCard.load(default)
    argv = ["baseline", "mnist", "--models-dir", str(tmp_path), "--baselines-dir", str(baselines)]
    assert main(argv) == 0
    after = ModelCard.load(default)
    assert (default / "model.onnx").read_bytes() == onnx_bytes
    assert after.model_copy(update={"baseline": None}) == before
    base = ModelCard.load(latest_version_dir(baselines, "mnist"))
    assert after.baseline is not None
    assert after.baseline.accuracy == base.metric("accuracy", "test").value
    assert after.baseline.ece == base.calibration.ece_test_after
    assert after.baseline.onnx_sha256 == base.onnx_sha256
    assert after.baseline.ms_per_item > 0 and after.baseline.default_ms_per_item > 0


def test_baseline_command_refuses_a_different_test_split(baselines: Path, tmp_path: Path) -> None:
    committed = latest_version_dir(Path(__file__).resolve().parents[2] / "models", "mnist")
    if not (committed / "card.json").is_file():
        pytest.skip("models/mnist is not committed")
    (tmp_path / "mnist").mkdir()
    for name in ("card.json", "model.onnx"):
        (tmp_path / "mnist" / name).write_bytes((committed / name).read_bytes())
    argv = ["baseline", "mnist", "--models-dir", str(tmp_path), "--baselines-dir", str(baselines)]
    before = ModelCard.load(tmp_path / "mnist")
    assert main(argv) == 1  # the smoke baseline saw 128 test images, the committed card 10,000
    assert ModelCard.load(tmp_path / "mnist") == before  # the card is left as it was
