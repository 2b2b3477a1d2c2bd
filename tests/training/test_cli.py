"""`python -m training` as a user meets it: every option explains itself, a stray or misplaced
argument is refused rather than ignored, and `evaluate` says which files it is missing or which
figure on a card does not hold. Runs `training.__main__.main` in-process on real files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.card import latest_version_dir
from training.__main__ import build_parser, main

COMMITTED = Path(__file__).resolve().parents[2] / "models"


def exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    return int(raised.value.code or 0)


def test_every_option_has_help() -> None:
    undocumented = [
        action.dest
        for action in build_parser()._actions
        if action.dest != "help" and not (action.help or "").strip()
    ]
    assert undocumented == []


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["mnist", "speech"], "unrecognized argument 'speech'"),
        (["mnist", "--epochs", "1", "--bogus"], "unrecognized arguments: --bogus"),
        (["mnist", "--set", "epochs"], "--set takes KEY=VALUE"),
        (["mnist", "--set", "lerning_rate=0.1"], "not a setting of this recipe"),
        (["evaluate"], "evaluate needs a task name"),
        (["evaluate", "mnist", "--epochs", "3"], "takes no --epochs"),
        (["baseline", "mnist", "--arch", "seed"], "takes no --arch"),
        (["mnist", "--baselines-dir", "b"], "read by the baseline command only"),
    ],
)
def test_stray_arguments_are_refused(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(argv) == 2
    assert complaint in capsys.readouterr().err


def test_evaluate_names_the_missing_test_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not (latest_version_dir(COMMITTED, "mnist") / "card.json").is_file():
        pytest.skip("models/mnist is not committed")
    (tmp_path / "mnist").mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (tmp_path / "mnist" / name).write_bytes(b"")  # present; the test files are not
    code = exit_code(
        ["evaluate", "mnist", "--models-dir", str(COMMITTED), "--data-dir", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "t10k-images-idx3-ubyte" in err and "t10k-labels-idx1-ubyte" in err
    assert "train-images" not in err


def copy_entry(name: str, tmp_path: Path) -> Path:
    source = latest_version_dir(COMMITTED, name)
    if not (source / "card.json").is_file():
        pytest.skip(f"models/{name} is not committed")
    shutil.copytree(source, tmp_path / name)
    return tmp_path / name


def test_evaluate_fails_on_a_card_without_a_test_metric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = copy_entry("mnist", tmp_path)
    card = json.loads((entry / "card.json").read_text())
    card["metrics"] = [m for m in card["metrics"] if m["split"] != "test"]
    (entry / "card.json").write_text(json.dumps(card))
    assert main(["evaluate", "mnist", "--models-dir", str(tmp_path)]) == 1
    assert "has no test metric" in capsys.readouterr().out


def test_evaluate_checks_the_tokenizer_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = copy_entry("imdb", tmp_path)
    tokenizer = json.loads((entry / "tokenizer.json").read_text())
    tokenizer["tokens"][0], tokenizer["tokens"][1] = tokenizer["tokens"][1], tokenizer["tokens"][0]
    (entry / "tokenizer.json").write_text(json.dumps(tokenizer, separators=(",", ":")))
    assert main(["evaluate", "imdb", "--models-dir", str(tmp_path)]) == 1
    assert "does not match the tokenizer sha256" in capsys.readouterr().out
