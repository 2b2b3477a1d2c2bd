"""The card's `ood` section (additive: older cards still load) and the per-batch decision the
server makes from a model's `ood_score` output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from model_factory import image_model

from app.card import ModelCard, OodDetection, version_dirs
from app.serving.ood import is_out_of_distribution

REPO_ROOT = Path(__file__).resolve().parents[2]


def _ood(threshold: float = 1.5, higher_is_ood: bool = True) -> OodDetection:
    return OodDetection(
        output="ood_score",
        score="energy+mahalanobis",
        threshold=threshold,
        higher_is_ood=higher_is_ood,
        fitted_on="validation and OOD fit sets",
        auroc={"blank": 1.0, "cifar10_photos": 0.997},
        flagged={"blank": 1.0, "cifar10_photos": 0.9175},
        candidates_auroc={"energy": {"blank": 0.96, "mean": 0.97}},
        validation_abstain_rate=0.0068,
        test_abstain_rate=0.0076,
        test_samples=10000,
    )


def test_card_with_an_ood_section_round_trips(tmp_path: Path) -> None:
    built = image_model(tmp_path / "models", "mnist")
    card = built.card.model_copy(update={"ood": _ood()})
    card.save(built.directory)
    loaded = ModelCard.load(built.directory)
    assert loaded == card
    assert loaded.ood is not None and loaded.ood.flagged["cifar10_photos"] == 0.9175
    saved = json.loads((built.directory / "card.json").read_text())
    assert saved["ood"]["threshold"] == 1.5


def test_cards_without_the_section_still_load(tmp_path: Path) -> None:
    built = image_model(tmp_path / "models", "mnist")
    saved = json.loads((built.directory / "card.json").read_text())
    assert "ood" in saved and saved["ood"] is None  # written by this schema: explicit null
    del saved["ood"]  # as every card written before this section existed
    (built.directory / "card.json").write_text(json.dumps(saved))
    assert ModelCard.load(built.directory).ood is None


@pytest.mark.parametrize("name", ["mnist", "cifar10", "imdb", "speech"])
def test_committed_cards_load_and_the_latest_scores_ood(name: str) -> None:
    versions = version_dirs(REPO_ROOT / "models" / name)
    assert versions, f"no committed {name} versions"
    for path in versions.values():
        assert ModelCard.load(path).name == name
    latest = ModelCard.load(versions[max(versions)])
    assert latest.ood is not None and latest.outputs[-1].name == latest.ood.output


def test_unknown_fields_in_the_section_are_refused() -> None:
    with pytest.raises(ValueError):
        OodDetection.model_validate({**_ood().model_dump(), "surprise": 1})


def test_scores_past_the_threshold_are_flagged() -> None:
    scores = np.array([0.0, 1.5, 1.5001, 9.0, np.nan], np.float32)
    np.testing.assert_array_equal(
        is_out_of_distribution(scores, _ood(1.5)), [False, False, True, True, True]
    )
    np.testing.assert_array_equal(
        is_out_of_distribution(scores, _ood(1.5, higher_is_ood=False)),
        [True, False, False, False, True],
    )
    assert is_out_of_distribution(np.zeros(0, np.float32), _ood()).shape == (0,)
