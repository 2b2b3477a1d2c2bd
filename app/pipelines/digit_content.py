"""Is there a digit to read at all? Checked before the digit model runs.

The digit model answers something for every picture; for a blank page, a plain colour, noise
or a filled blob that answer means nothing, and it can be confident. These pictures are told
apart by the ink map `app.pipelines.digits._ink` computes (0 = paper, 255 = the strongest ink):

- no ink at all (`_ink` found no contrast): a blank page or a uniform colour;
- hardly any ink: a speck of dirt;
- ink that is scattered speckle: noise, where most inked pixels have few inked neighbours and
  the ink is in many pieces, while a pen stroke is one connected band (or a few);
- ink that is one solid mass: a filled square or blob, thick and filling its box, while a
  digit's strokes are thin compared with its size.

Pure numpy; the thresholds were measured on the MNIST test digits, photographed digits and the
out-of-distribution sets in `training/ood_sets.py` (figures in the module's tests).
"""

from __future__ import annotations

import numpy as np

NO_CONTENT = "no_content"
# Below this share of the picture inked at stroke level there is nothing to read.
MIN_INK_SHARE = 0.002
MIN_INK_PIXELS = 6
# Noise: the share of inked pixels with at most 2 of their 8 neighbours inked. A pen stroke is a
# band (MNIST digits: at most 0.44), but a 1-pixel line also has 2 neighbours per pixel, so
# speckled ink is only called noise when it is also in pieces: its largest 8-connected part
# holds under half the ink (thin-pen digits: 0.8 and up), or it has more than 8 separate runs
# per row (a digit has 1–4).
MAX_SPECKLE_SHARE = 0.6
MIN_LARGEST_PART = 0.5
# Below this ink share, dashes one pixel apart are joined before the parts are counted (grown by
# a pixel, ink this sparse cannot link up across the picture).
SPARSE_INK = 0.03
MAX_RUNS_PER_ROW = 8
# A blob: its thickness (twice the erosions it survives) over its longer side. On 28×28 MNIST
# the measure is coarse: digits reach 0.71 (a short thick stroke); a filled square or disc 1.0.
# Thick and filling its box (a disc fills π/4 of it) is a blob too: the MNIST digits thicker
# than 0.5 fill at most 0.71 of their box.
MAX_THICKNESS = 0.8
THICK = 0.5
MAX_THICK_FILL = 0.75
MIN_FILL_TO_BE_THICK = 0.45
# Ink along the picture's edge, where `_ink` found the paper: texture, not a digit (MNIST: at
# most 0.03 of the edge pixels).
MAX_BORDER_INK_SHARE = 0.1


def stroke_mask(ink: np.ndarray) -> np.ndarray:
    """The clearly inked pixels: at or above the Otsu level of the ink map."""
    histogram = np.bincount(ink.ravel(), minlength=256).astype(np.float64)
    weight = np.cumsum(histogram)
    total = weight[-1]
    level_sum = np.cumsum(histogram * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (level_sum[-1] * weight - level_sum * total) ** 2 / (weight * (total - weight))
    level = int(np.argmax(np.nan_to_num(between[:-1]))) + 1
    return ink >= max(level, 1)


def _neighbour_counts(mask: np.ndarray) -> np.ndarray:
    """Inked pixels among each pixel's 8 neighbours: a 3×3 box sum, done as a sum of three
    rows then of three columns (4 additions where 8 shifted ones did the same), less itself."""
    padded = np.pad(mask, 1).astype(np.uint8)
    rows = padded[:-2] + padded[1:-1] + padded[2:]
    return rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:] - padded[1:-1, 1:-1]


def component_sizes(mask: np.ndarray) -> np.ndarray:
    """Pixel counts of the 8-connected components of `mask`, largest first.

    Union-find over horizontal runs: a handful of runs per row for pen strokes, a few thousand
    for noise, so this stays in the low milliseconds where pixel-wise labelling does not.
    """
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    rows_start, starts = np.nonzero(edges == 1)
    ends = np.nonzero(edges == -1)[1]  # exclusive; same order as the starts (row-major)
    parent = list(range(len(starts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_first = np.searchsorted(rows_start, np.arange(mask.shape[0] + 1))
    for row in range(1, mask.shape[0]):
        above = range(row_first[row - 1], row_first[row])
        j = above.start
        for i in range(row_first[row], row_first[row + 1]):
            # runs overlap (8-connected) when each starts at most one past the other's end
            while j < above.stop and ends[j] < starts[i]:
                j += 1
            k = j
            while k < above.stop and starts[k] <= ends[i]:
                a, b = root(i), root(k)
                if a != b:
                    parent[a] = b
                k += 1
    lengths = ends - starts
    roots = np.array([root(i) for i in range(len(starts))], dtype=np.int64)
    sizes = np.bincount(roots, weights=lengths, minlength=len(starts)).astype(np.int64)
    return np.sort(sizes[sizes > 0])[::-1]


def _thickness(mask: np.ndarray) -> int:
    """Twice the number of 4-neighbour erosions the mask survives: its widest stroke."""
    steps = 0
    padded = np.pad(mask, 1)  # eroded in place: the frame stays empty
    inner = padded[1:-1, 1:-1]
    while inner.any():
        inner &= padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        steps += 1
    return 2 * steps


def _largest_part(mask: np.ndarray) -> float:
    """Share of the ink in its largest connected part. Sparse ink is first grown by a pixel, so
    a faint thin stroke broken into dashes counts as one; noise that sparse stays in pieces."""
    if mask.mean() < SPARSE_INK:
        padded = np.pad(mask, 1)
        height, width = mask.shape
        grown = np.zeros_like(mask)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                grown |= padded[dy : dy + height, dx : dx + width]
        mask = grown
    return float(component_sizes(mask)[0] / mask.sum())


def _box(mask: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _run_count(mask: np.ndarray) -> int:
    return int(np.count_nonzero(np.diff(mask.astype(np.int8), axis=1, prepend=0) == 1))


def content_features(ink: np.ndarray) -> dict[str, float]:
    """Every measurement `no_digit_reason` may decide on (for tests and tuning)."""
    mask = stroke_mask(np.asarray(ink, dtype=np.uint8))
    inked = int(mask.sum())
    if inked == 0:
        return {"inked": 0.0, "ink_share": 0.0}
    border = np.concatenate((mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]))
    box = _box(mask)
    return {
        "inked": float(inked),
        "ink_share": inked / mask.size,
        "border_ink": float(border.mean()),
        "thickness": _thickness(box) / max(box.shape),
        "fill": float(box.mean()),
        "speckle": float((_neighbour_counts(mask)[mask] <= 2).mean()),
        "runs_per_row": _run_count(mask) / mask.shape[0],
        "largest_part": _largest_part(mask),
    }


def no_digit_reason(ink: np.ndarray | None) -> str | None:
    """`no_content` when the picture holds nothing digit-like, else None (let the model read).

    `ink` is the uint8 ink map of `_ink` (None when it found no contrast at all). The cheap
    tests come first; components are only counted for speckled ink (noise, or a thin pen).
    """
    if ink is None:
        return NO_CONTENT
    mask = stroke_mask(np.asarray(ink, dtype=np.uint8))
    inked = int(mask.sum())
    if inked < MIN_INK_PIXELS or inked < MIN_INK_SHARE * mask.size:
        return NO_CONTENT
    border = np.concatenate((mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]))
    if border.mean() > MAX_BORDER_INK_SHARE:
        return NO_CONTENT
    box = _box(mask)
    # Only a box mostly filled can be thick: a shape whose strokes are over half its size wide
    # (a thick bar, L, ring or disc) fills over three quarters of its box, and the thickest
    # MNIST digits fill at most 0.71. So the erosions are skipped for the sparse boxes that
    # every ordinary digit has (they cost ~4% of the server's CPU on MNIST under load).
    if box.mean() > MIN_FILL_TO_BE_THICK:
        thickness = _thickness(box) / max(box.shape)
        if thickness > MAX_THICKNESS or (thickness > THICK and box.mean() > MAX_THICK_FILL):
            return NO_CONTENT
    if (_neighbour_counts(mask)[mask] <= 2).mean() > MAX_SPECKLE_SHARE:
        if _run_count(mask) > MAX_RUNS_PER_ROW * mask.shape[0]:
            return NO_CONTENT  # thousands of separate dots: noise, and counting them is slow
        if _largest_part(mask) < MIN_LARGEST_PART:
            return NO_CONTENT
    return None
