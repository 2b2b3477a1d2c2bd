"""`python -m training evaluate` on the committed models: every figure on each card must be
reproduced from the shipped files and the shared data; a changed figure must be caught. Each
entry is copied first, because evaluate redraws the figures beside the card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.card import latest_version_dir
from training.__main__ import main
from training.tasks import TASK_NAMES

pytestmark = pytest.mark.data
COMMITTED = Path(__file__).resolve().parents[2] / "models"


def copy_entry(name: str, tmp_path: Path) -> Path:
    source = latest_version_dir(COMMITTED, name)
    if not (source / "card.json").is_file():
        pytest.skip(f"models/{name} is not committed")
    shutil.copytree(source, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("name", TASK_NAMES)
def test_committed_card_figures_reproduce(
    name: str, tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy_entry(name, tmp_path)
    code = main(["evaluate", name, "--models-dir", str(tmp_path), "--data-dir", str(data_dir)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "matches the card" in out


def test_a_changed_figure_is_caught(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = copy_entry("mnist", tmp_path)
    card = json.loads((entry / "card.json").read_text())
    ece = next(m for m in card["metrics"] if m["name"] == "ece" and m["split"] == "test")
    ece["value"] = round(ece["value"] + 0.001, 6)
    card["metrics"].append({**ece, "name": "f1_macro"})  # a figure evaluate cannot re-measure
    (entry / "card.json").write_text(json.dumps(card))
    code = main(["evaluate", "mnist", "--models-dir", str(tmp_path), "--data-dir", str(data_dir)])
    out = capsys.readouterr().out
    assert code == 1
    assert "the card records test ece" in out
    assert "test f1_macro, which evaluate cannot re-measure" in out
