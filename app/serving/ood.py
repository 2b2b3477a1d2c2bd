"""Out-of-distribution decisions from a model's `ood_score` output, per batch. Pure numpy: the
serving path calls it after the graph ran, with the card's `ood` section."""

from __future__ import annotations

import numpy as np

from app.card import OodDetection

REASON = "out_of_distribution"


def is_out_of_distribution(scores: np.ndarray, ood: OodDetection) -> np.ndarray:
    """bool [batch]: True where the score is past the card's threshold (on the OOD side).

    A NaN score (a graph fed something it cannot score) counts as out of distribution: saying
    "not sure" is the safe answer.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    past = scores > ood.threshold if ood.higher_is_ood else scores < ood.threshold
    return past | np.isnan(scores)
