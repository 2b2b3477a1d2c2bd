"""`python -m training ood <task>`: give a committed model an out-of-distribution score.

No retraining: the exported graph gets a second output, `ood_score`, by graph surgery
(`training/ood_graph.py`). Several scores are measured — energy, max logit, max probability,
Mahalanobis distance on the penultimate features (class means and tied covariance fitted on the
train split), and for text the weight of the known n-grams — against out-of-distribution sets
built here (`training/ood_sets.py`), all through the server's own preprocessing. The score with
the best mean share flagged at the operating point wins; its threshold keeps in-distribution
validation abstentions within budget. Test-split figures are measured once, at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from app.card import (
    BATCH,
    Metric,
    ModelCard,
    OodDetection,
    TensorSpec,
    latest_version_dir,
    new_version_dir,
    sha256_of,
)
from app.pipelines.audio import loudest_window
from app.pipelines.digits import centre_digit
from app.pipelines.image import fit_image
from app.serving.ood import is_out_of_distribution
from app.tokenizer import Tokenizer
from training import ood_graph, ood_sets
from training.data import Dataset, resolve_data_dir

VAL_ABSTAIN_BUDGET = 0.01
OOD_PER_KIND = 400  # per half (fit, report)
FIT_TRAIN_SAMPLES = 8000  # train items for the Mahalanobis statistics
THRESHOLD_RULE = (
    "among thresholds flagging at most {budget:.0%} of in-distribution validation, the highest "
    "whose mean share flagged over the OOD fit sets is within 0.5 pp of the best"
)

Inputs = np.ndarray | list[np.ndarray]


@dataclass
class OodData:
    """Everything in graph-input format, preprocessed as the server would."""

    train: Inputs
    train_labels: np.ndarray
    val: Inputs
    test: Inputs
    fit: dict[str, Inputs]  # OOD kind → items used to choose the score and threshold
    report: dict[str, Inputs]  # OOD kind → fresh items for the reported figures
    notes: list[str] = field(default_factory=list)
    # Other in-distribution sets that must not be flagged either (one-line reviews):
    # name → (validation items, test items)
    also_inside: dict[str, tuple[Inputs, Inputs]] = field(default_factory=dict)
    tokenizer: Tokenizer | None = None  # text models: for the per-n-gram weight table


# -- running a graph -------------------------------------------------------------------------


def session_for(model: onnx.ModelProto, threads: int = 2) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _batches(inputs: Inputs, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(inputs), size):
        chunk = inputs[start : start + size]
        if isinstance(chunk, list):  # token ids: pad to the longest, as the server does
            out = np.zeros((len(chunk), max(1, *(len(c) for c in chunk))), np.int64)
            for row, ids in enumerate(chunk):
                out[row, : len(ids)] = ids
            yield out
        else:
            yield chunk


def run(session: ort.InferenceSession, inputs: Inputs, batch: int = 128) -> dict[str, np.ndarray]:
    """Every graph output over all inputs, concatenated."""
    name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for x in _batches(inputs, batch):
        for n, value in zip(names, session.run(names, {name: x}), strict=True):
            parts[n].append(value)
    return {n: np.concatenate(v) for n, v in parts.items()}


# -- statistics ------------------------------------------------------------------------------


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(score of an OOD item > score of an in-distribution item), ties counted half."""
    both = np.concatenate([inside, outside])
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    cumulative = np.cumsum(counts)
    ranks = (cumulative - (counts - 1) / 2.0)[inverse]  # average ranks, 1-based
    rank_sum = ranks[len(inside) :].sum()
    n_out, n_in = len(outside), len(inside)
    return float((rank_sum - n_out * (n_out + 1) / 2) / (n_out * n_in))


def fit_threshold(
    val: np.ndarray | list[np.ndarray],
    fit: dict[str, np.ndarray],
    budget: float = VAL_ABSTAIN_BUDGET,
) -> float:
    """See THRESHOLD_RULE. Scores above the threshold are out of distribution. With several
    in-distribution validation sets (full reviews and one-liners), the budget holds for each."""
    sets = [val] if isinstance(val, np.ndarray) else val
    lowest = max(
        float(np.sort(s)[len(s) - 1 - int(np.floor(budget * len(s)))]) for s in sets
    )  # flagging any more of some set would overspend its budget
    pooled = np.concatenate(sets)
    candidates = np.unique(pooled[pooled >= lowest])
    shares = np.array([np.mean([(s > t).mean() for s in fit.values()]) for t in candidates])
    best = shares.max()
    return float(candidates[np.flatnonzero(shares >= best - 0.005)[-1]])


# -- per task: the data, through the server's preprocessing ------------------------------------


def _halves(make: Callable[[int, np.random.Generator], list], seed: int) -> tuple[list, list]:
    return make(OOD_PER_KIND, np.random.default_rng(seed)), make(
        OOD_PER_KIND, np.random.default_rng(seed + 1000)
    )


def _image_kinds(prepare: Callable, seed: int) -> tuple[dict, dict]:
    makers = {
        "blank": ood_sets.blank_images,
        "uniform_colour": ood_sets.uniform_colour_images,
        "uniform_noise": ood_sets.uniform_noise_images,
        "gaussian_noise": ood_sets.gaussian_noise_images,
    }
    fit, report = {}, {}
    for i, (kind, make) in enumerate(makers.items()):
        a, b = _halves(make, seed + i)
        fit[kind], report[kind] = prepare(a), prepare(b)
    return fit, report


def mnist_data(data_dir: Path, seed: int) -> OodData:
    from training.data import cifar10, mnist

    def prepare(images: list) -> np.ndarray:
        return np.stack([centre_digit(im) for im in images]).astype(np.float32) / 255

    def as_uint8(x: np.ndarray) -> np.ndarray:
        return np.rint(x[:, 0] * 255).astype(np.uint8)

    ds = mnist.load(data_dir)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(ds.train))[:FIT_TRAIN_SAMPLES]
    fit, report = _image_kinds(prepare, seed)
    cifar_train = cifar10.read_grid(data_dir / "cifar10" / "train_00.webp")[:OOD_PER_KIND]
    cifar_test = cifar10.read_grid(data_dir / "cifar10" / "test_00.webp")[:OOD_PER_KIND]
    fit["cifar10_photos"] = prepare(ood_sets.array_images(cifar_train))
    report["cifar10_photos"] = prepare(ood_sets.array_images(cifar_test))
    return OodData(
        train=ds.train.x[pick],
        train_labels=ds.train.y[pick],
        val=prepare(ood_sets.array_images(as_uint8(ds.val.x))),
        test=prepare(ood_sets.array_images(as_uint8(ds.test.x))),
        fit=fit,
        report=report,
        notes=["validation and test digits sent through centre_digit, as the server does"],
    )


def cifar10_data(data_dir: Path, seed: int) -> OodData:
    from training.data import cifar10, mnist

    def prepare(images: list) -> np.ndarray:
        return np.stack([fit_image(im, "RGB", 32, 32) for im in images]).astype(np.float32) / 255

    ds: Dataset = cifar10.load(data_dir)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(ds.train))[:FIT_TRAIN_SAMPLES]
    fit, report = _image_kinds(prepare, seed)
    digits = mnist.read_idx(next((data_dir / "mnist").glob("train-images-idx3-ubyte*")))
    fit["mnist_digits"] = prepare(ood_sets.array_images(digits[:OOD_PER_KIND]))
    report["mnist_digits"] = prepare(ood_sets.array_images(digits[OOD_PER_KIND : 2 * OOD_PER_KIND]))
    return OodData(ds.train.x[pick], ds.train.y[pick], ds.val.x, ds.test.x, fit, report)


def imdb_data(data_dir: Path, seed: int, model_dir: Path) -> OodData:
    from training.data import imdb

    tokenizer = Tokenizer.load(model_dir / "tokenizer.json")
    ds = imdb.load(data_dir)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(ds.train))[:FIT_TRAIN_SAMPLES]

    def encode(texts: list[str]) -> list[np.ndarray]:
        return [tokenizer.encode(t) for t in texts]

    val_texts = list(ds.val.x)
    train_texts = [ds.train.x[i] for i in pick]
    fit = {
        "shuffled_words": encode(ood_sets.shuffled_texts(val_texts[:OOD_PER_KIND], rng)),
        "foreign": encode(ood_sets.foreign_texts(OOD_PER_KIND, np.random.default_rng(seed))),
        "gibberish": encode(ood_sets.gibberish_texts(OOD_PER_KIND, np.random.default_rng(seed))),
    }
    report = {
        "shuffled_words": encode(
            ood_sets.shuffled_texts(train_texts[-OOD_PER_KIND:], np.random.default_rng(seed + 1))
        ),
        "foreign": encode(ood_sets.foreign_texts(OOD_PER_KIND, np.random.default_rng(seed + 1))),
        "gibberish": encode(
            ood_sets.gibberish_texts(OOD_PER_KIND, np.random.default_rng(seed + 1))
        ),
    }
    data = OodData(
        encode(train_texts),
        ds.train.y[pick],
        encode(val_texts),
        encode(list(ds.test.x)),
        fit,
        report,
    )
    data.also_inside["short_text"] = (
        encode(ood_sets.last_sentences(val_texts)),
        encode(ood_sets.last_sentences(list(ds.test.x))),
    )
    data.also_inside["very_short_text"] = (
        encode(ood_sets.short_sentences(val_texts)),
        encode(ood_sets.short_sentences(list(ds.test.x))),
    )
    data.notes.append(
        "short texts: the last sentence (5-30 words) of each validation / test review, and "
        'very short texts: every sentence of 1-4 words in them ("Awful.", "Highly '
        'recommended."), each kept under the same validation abstain budget as the full reviews'
    )
    data.notes.append(
        "foreign-language sentences come from a small fixed set (8 languages) and their "
        "recombinations, so the fit and report halves share sentences"
    )
    data.tokenizer = tokenizer
    return data


def speech_data(data_dir: Path, seed: int) -> OodData:
    from training.data import speech

    def prepare(waves: np.ndarray) -> np.ndarray:
        return np.stack([loudest_window(w, ood_sets.SAMPLE_RATE) for w in waves])

    ds = speech.load(data_dir, seed=seed).dataset
    makers = {
        "white_noise": ood_sets.white_noise,
        "pink_noise": ood_sets.pink_noise,
        "hum": ood_sets.hum,
        "tones": ood_sets.tones,
        "music": ood_sets.music,
    }
    fit, report = {}, {}
    for i, (kind, make) in enumerate(makers.items()):
        a, b = _halves(lambda n, rng, make=make: list(make(n, rng)), seed + i)
        fit[kind], report[kind] = prepare(np.stack(a)), prepare(np.stack(b))
    return OodData(
        ds.train.x,
        ds.train.y,
        ds.val.x,
        ds.test.x,
        fit,
        report,
        notes=[
            "non-keyword words are the model's `unknown` class and background noise its "
            "`silence` class, so neither is out of distribution for it; white and pink noise "
            "are measured all the same (the `silence` class was trained on such recordings)"
        ],
    )


# -- candidate scores ------------------------------------------------------------------------


def token_weight_table(
    tokenizer: Tokenizer,
    train: list[np.ndarray],
    phrases_only: bool = False,
    word_weight: float = 0.0,
) -> np.ndarray:
    """Per id: the share of training reviews it occurs in (document frequency), 0 for padding.
    English texts, even one-liners, carry common n-grams; gibberish and other languages do not.

    `phrases_only` keeps the multi-word n-grams, at sqrt(frequency): a foreign sentence shares a
    few words with English reviews ("a", "film", "de") but hardly any two-word phrase. On the
    validation one-liners and the OOD fit sets this flagged 90% of foreign texts against 52–55%
    for single words, at the same share of one-liners flagged (under 1%). But a one-word review
    ("Awful.") has no phrase at all, so `word_weight` > 0 keeps the single words too, at that
    fraction of their sqrt(frequency) (`ngram_coverage`).
    """
    counts = np.bincount(np.concatenate(train), minlength=tokenizer.vocab_size).astype(np.float64)
    counts[0] = 0
    table = counts / len(train)
    if phrases_only:
        table = np.sqrt(table) * np.where(phrase_ids(tokenizer), 1.0, word_weight)
    return table


def phrase_ids(tokenizer: Tokenizer) -> np.ndarray:
    """Per id: True where the n-gram has more than one word."""
    phrase = np.zeros(tokenizer.vocab_size, bool)
    for gram, index in tokenizer.vocab.items():
        phrase[index] = " " in gram
    return phrase


# (name, phrases only, weight of single words): see token_weight_table
COVERAGE_SCORES = (
    ("token_coverage", False, 0.0),
    ("phrase_coverage", True, 0.0),
    ("ngram_coverage", True, 0.1),
)


def candidate_scores(
    model: onnx.ModelProto, taps: ood_graph.Taps, data: OodData
) -> tuple[dict[str, dict], dict[str, Callable[[dict], np.ndarray]]]:
    """Fitted parameters and a numpy scorer (from the exposed tensors) per candidate."""
    scorers: dict[str, Callable[[dict], np.ndarray]] = {
        "energy": lambda t: -ood_graph.logsumexp(t[taps.logits]),
        "max_logit": lambda t: -t[taps.logits].max(axis=1).astype(np.float64),
        "max_probability": lambda t: 1.0 - t[taps.probabilities].max(axis=1).astype(np.float64),
    }
    params: dict[str, dict] = {"energy": {}, "max_logit": {}, "max_probability": {}}
    if taps.features is not None:
        session = session_for(ood_graph.with_outputs(model, [taps.features]))
        train_features = run(session, data.train)[taps.features]
        fitted = ood_graph.fit_mahalanobis(train_features, data.train_labels)
        params["mahalanobis"] = fitted
        scorers["mahalanobis"] = lambda t: ood_graph.mahalanobis_np(t[taps.features], fitted)
        unit_fitted = ood_graph.fit_mahalanobis(
            ood_graph.unit_rows(train_features), data.train_labels
        )
        params["mahalanobis_l2"] = unit_fitted
        scorers["mahalanobis_l2"] = lambda t: ood_graph.mahalanobis_np(
            ood_graph.unit_rows(t[taps.features]), unit_fitted
        )
    if isinstance(data.train, np.ndarray) and data.train.ndim == 4:  # images
        stats = ood_graph.fit_mahalanobis(
            ood_graph.image_stats_np(data.train), np.zeros(len(data.train), np.int64)
        )
        params["image_stats"] = stats
        scorers["image_stats"] = lambda t: ood_graph.mahalanobis_np(
            ood_graph.image_stats_np(t[taps.input]), stats
        )
    if data.tokenizer is not None and isinstance(data.train, list):
        for name, phrases_only, word_weight in COVERAGE_SCORES:
            table = token_weight_table(data.tokenizer, data.train, phrases_only, word_weight)
            params[name] = {"token_weight": table}
            scorers[name] = _coverage_scorer(table, taps.input)
        words, phrases = phrase_deficit_tables(data.tokenizer, data.train)
        params["phrase_deficit"] = {"word_weight": words, "phrase_weight": phrases}
        scorers["phrase_deficit"] = _deficit_scorer(words, phrases, taps.input)
    return params, scorers


PHRASE_DEFICIT_SCALE = 10.0


def phrase_deficit_tables(
    tokenizer: Tokenizer, train: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Tables for log(1 + known words) − log(1 + 10 · Σ sqrt(frequency) of known phrases): many
    known words but none of the phrases English joins them with is another language ("Der Film
    war viel zu lang": film, war, zu, lang, no phrase), while a one-word review ("Awful.") has
    one known word and scores low. On the imdb fit sets (one- to four-word sentences of the
    reviews held to the 1% budget) it flagged 74-77% of foreign texts where phrase and word
    coverage flagged under 1%; scales 1 and 3 flagged 21-59%."""
    frequency = token_weight_table(tokenizer, train)
    phrase = phrase_ids(tokenizer)
    words = np.where(phrase, 0.0, 1.0)
    words[0] = 0.0  # padding
    return words, PHRASE_DEFICIT_SCALE * np.sqrt(frequency) * phrase


def _deficit_scorer(
    words: np.ndarray, phrases: np.ndarray, input_name: str
) -> Callable[[dict], np.ndarray]:
    def deficit(t: dict) -> np.ndarray:
        return np.array(
            [np.log1p(words[ids].sum()) - np.log1p(phrases[ids].sum()) for ids in t[input_name]]
        )

    return deficit


def _coverage_scorer(table: np.ndarray, input_name: str) -> Callable[[dict], np.ndarray]:
    def coverage(t: dict) -> np.ndarray:
        return -np.log1p(np.array([table[ids].sum() for ids in t[input_name]]))

    return coverage


def add_combinations(
    params: dict[str, dict], scorers: dict[str, Callable[[dict], np.ndarray]], val: dict
) -> None:
    """Pair each logit score with each feature score (and energy with both feature scores, for
    images): the max of them, each scaled by its validation median and 99th percentile. Energy
    misses what is far from every class in feature space, a distance misses what lies between
    classes; together they catch both."""
    singles = list(scorers)
    for name in singles:
        median, high = np.quantile(val[name], [0.5, 0.99])
        params[name]["scale"] = (float(median), float(max(high - median, 1e-6)))
    combos = [
        [first, second]
        for first in ("energy", "max_logit")
        for second in (
            "mahalanobis",
            "mahalanobis_l2",
            "token_coverage",
            "phrase_coverage",
            "ngram_coverage",
            "phrase_deficit",
            "image_stats",
        )
    ] + [
        ["energy", "mahalanobis", "image_stats"],
        ["energy", "mahalanobis_l2", "image_stats"],
        ["ngram_coverage", "phrase_deficit"],
        ["phrase_coverage", "phrase_deficit"],
    ]
    for parts in combos:
        if all(p in singles for p in parts):
            name = "+".join(parts)
            params[name] = {}
            scorers[name] = _max_scaled(parts, params, scorers)


def _max_scaled(
    names: list[str], params: dict[str, dict], scorers: dict[str, Callable]
) -> Callable[[dict], np.ndarray]:
    def score(t: dict) -> np.ndarray:
        scaled = []
        for name in names:
            centre, spread = params[name]["scale"]
            scaled.append((scorers[name](t) - np.float32(centre)) / np.float32(spread))
        return np.max(scaled, axis=0)

    return score


def tensors_for(session: ort.InferenceSession, inputs: Inputs, input_name: str) -> dict:
    out = run(session, inputs)
    out[input_name] = inputs  # token scores read the ids themselves
    return out


# -- the command -----------------------------------------------------------------------------


def build(
    task: str,
    model_dir: Path,
    out_dir: Path,
    data: OodData,
    budget: float = VAL_ABSTAIN_BUDGET,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> ModelCard:
    card = ModelCard.load(model_dir)
    model = onnx.load(str(model_dir / card.onnx_file))
    taps = ood_graph.find_taps(model)
    names = [taps.logits, taps.probabilities] + ([taps.features] if taps.features else [])
    probe = session_for(ood_graph.with_outputs(model, names))
    params, scorers = candidate_scores(model, taps, data)

    val_tensors = tensors_for(probe, data.val, taps.input)
    fit_tensors = {kind: tensors_for(probe, x, taps.input) for kind, x in data.fit.items()}
    base_val = {name: score(val_tensors) for name, score in scorers.items()}
    add_combinations(params, scorers, base_val)
    val = {name: score(val_tensors) for name, score in scorers.items()}
    fit = {
        kind: {name: score(t) for name, score in scorers.items()} for kind, t in fit_tensors.items()
    }
    extra_tensors = [tensors_for(probe, v, taps.input) for v, _ in data.also_inside.values()]
    extra_val = [{name: score(t) for name, score in scorers.items()} for t in extra_tensors]

    def val_sets(name: str) -> list[np.ndarray]:
        return [val[name], *(e[name] for e in extra_val)]

    table: dict[str, dict[str, float]] = {}
    chosen, best = "", (-1.0, -1.0)
    for name in scorers:
        fit_scores = {kind: s[name] for kind, s in fit.items()}
        threshold = fit_threshold(val_sets(name), fit_scores, budget)
        flagged = float(np.mean([(s > threshold).mean() for s in fit_scores.values()]))
        aurocs = {kind: auroc(val[name], s) for kind, s in fit_scores.items()}
        mean_auroc = float(np.mean(list(aurocs.values())))
        table[name] = {**{k: round(v, 4) for k, v in aurocs.items()}, "mean": round(mean_auroc, 4)}
        fit_flags = " ".join(f"{(s > threshold).mean():.3f}" for s in fit_scores.values())
        log(f"  {name:28s} flagged per kind at threshold: {fit_flags}")
        log(
            f"  {name:28s} mean AUROC {mean_auroc:.4f}, mean flagged {flagged:.3f} | "
            + " ".join(f"{k} {v:.3f}" for k, v in aurocs.items())
        )
        if (flagged, mean_auroc) > best:
            chosen, best = name, (flagged, mean_auroc)
    threshold = fit_threshold(val_sets(chosen), {k: s[chosen] for k, s in fit.items()}, budget)
    log(f"chosen: {chosen}, threshold {threshold:.6g}")

    scored = ood_graph.add_score(model, taps, chosen, params)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / card.onnx_file
    onnx.save(scored, str(onnx_path))
    final = session_for(scored)
    probe_out = run(probe, data.val)
    got = run(final, data.val)
    if not np.array_equal(got[taps.probabilities], probe_out[taps.probabilities]):
        raise RuntimeError("the probabilities output changed in the graph surgery")
    graph_val = got[ood_graph.OOD_OUTPUT].astype(np.float64)
    drift = float(np.max(np.abs(graph_val - val[chosen]) / (1 + np.abs(val[chosen]))))
    if drift > 1e-3:
        raise RuntimeError(f"graph ood_score differs from the numpy score by {drift:.3g}")

    def graph_scores(inputs: Inputs) -> np.ndarray:
        return run(final, inputs)[ood_graph.OOD_OUTPUT].astype(np.float64)

    val_flagged = float((graph_val > threshold).mean())
    test = graph_scores(data.test)
    test_flagged = float((test > threshold).mean())
    report = {kind: graph_scores(x) for kind, x in data.report.items()}
    also_inside_metrics = []
    for set_name, (val_items, test_items) in data.also_inside.items():
        for split, items in (("validation", val_items), ("test", test_items)):
            flagged_share = float((graph_scores(items) > threshold).mean())
            log(f"{set_name} {split}: {flagged_share:.4f} flagged of {len(items)}")
            also_inside_metrics.append(
                Metric(
                    name=f"ood_abstain_rate_{set_name}",
                    value=round(flagged_share, 6),
                    dataset=f"{card.data.dataset} ({set_name})",
                    split=split,
                    samples=len(items),
                )
            )
    ood = OodDetection(
        output=ood_graph.OOD_OUTPUT,
        score=chosen,
        threshold=round(threshold, 6) if abs(threshold) > 1e-3 else threshold,
        higher_is_ood=True,
        fitted_on=(
            f"statistics: {len(data.train_labels)} train items; threshold: validation "
            f"({len(data.val)} items) and OOD fit sets ({', '.join(data.fit)})"
        ),
        rule=THRESHOLD_RULE.format(budget=budget),
        auroc={k: round(auroc(test, s), 4) for k, s in report.items()},
        flagged={k: round(float((s > threshold).mean()), 4) for k, s in report.items()},
        candidates_auroc=table,
        validation_abstain_rate=round(val_flagged, 4),
        test_abstain_rate=round(test_flagged, 4),
        test_samples=len(test),
    )
    new_card = card.model_copy(
        update={
            "version": f"{out_dir.name}.0.0"
            if out_dir.name.isdigit()
            else _next_major(card.version),
            "onnx_sha256": sha256_of(onnx_path),
            "outputs": [
                card.outputs[0],
                TensorSpec(name=ood_graph.OOD_OUTPUT, dtype="float32", shape=[BATCH]),
            ],
            "ood": ood,
            "metrics": [
                *card.metrics,
                Metric(
                    name="ood_abstain_rate",
                    value=round(test_flagged, 6),
                    dataset=card.data.dataset,
                    split="test",
                    samples=len(test),
                ),
                *also_inside_metrics,
            ],
            "data": card.data.model_copy(
                update={"notes": [*card.data.notes, *(f"OOD: {n}" for n in data.notes)]}
            ),
        }
    )
    for extra in model_dir.iterdir():
        if extra.is_file() and extra.name not in (card.onnx_file, "card.json"):
            shutil.copy2(extra, out_dir / extra.name)
    new_card.save(out_dir)
    # figures the card has no field for: the chosen score on the OOD fit halves, and the
    # combined abstain rate (OOD or low confidence) per report kind
    extra = combined_abstain(final, card, threshold, data)
    (out_dir / "ood_report.json").write_text(
        json.dumps({"task": task, "ood": ood.model_dump(), **extra}, indent=2) + "\n"
    )
    return new_card


def combined_abstain(
    session: ort.InferenceSession, card: ModelCard, threshold: float, data: OodData
) -> dict[str, dict[str, float]]:
    """Share of items the server would not answer for either reason: out of distribution, or
    top probability under the card's abstain threshold."""
    out: dict[str, dict[str, float]] = {"abstain_any_reason": {}, "low_confidence_only": {}}
    sets = {"test (in distribution)": data.test, "validation": data.val}
    for name, (val_items, test_items) in data.also_inside.items():
        sets[f"{name} validation (in distribution)"] = val_items
        sets[f"{name} test (in distribution)"] = test_items
    sets.update(data.report)
    for kind, inputs in sets.items():
        got = run(session, inputs)
        probabilities = next(v for k, v in got.items() if k != ood_graph.OOD_OUTPUT)
        low = probabilities.max(axis=1) < card.calibration.abstain_threshold
        ood = got[ood_graph.OOD_OUTPUT] > threshold
        out["abstain_any_reason"][kind] = round(float((low | ood).mean()), 4)
        out["low_confidence_only"][kind] = round(float(low.mean()), 4)
    return out


def _next_major(version: str) -> str:
    major = version.split(".")[0]
    return f"{int(major) + 1}.0.0" if major.isdigit() else version


def load_task_data(task: str, data_dir: Path, seed: int, model_dir: Path) -> OodData:
    if task == "mnist":
        return mnist_data(data_dir, seed)
    if task == "cifar10":
        return cifar10_data(data_dir, seed)
    if task == "imdb":
        return imdb_data(data_dir, seed, model_dir)
    if task == "speech":
        return speech_data(data_dir, seed)
    raise ValueError(f"no OOD sets for task {task!r}")


def remeasure(card: ModelCard, model_dir: Path, data_dir: Path) -> list[Metric]:
    """The card's out-of-distribution metrics measured again from its graph and threshold (for
    `python -m training evaluate`): the share of the test split, and of each further
    in-distribution set (imdb's one-line reviews), past the threshold."""
    ood = card.ood
    assert ood is not None
    data = load_task_data(card.name, data_dir, int(card.training.seed), model_dir)
    session = session_for(onnx.load(model_dir / card.onnx_file))

    def flagged(inputs: Inputs) -> float:
        return float(past_threshold(session, inputs, ood).mean())

    def metric(name: str, value: float, dataset: str, split: str, samples: int) -> Metric:
        return Metric(
            name=name, value=round(value, 6), dataset=dataset, split=split, samples=samples
        )

    test = data.test
    metrics = [metric("ood_abstain_rate", flagged(test), card.data.dataset, "test", len(test))]
    for set_name, (val_items, test_items) in data.also_inside.items():
        for split, items in (("validation", val_items), ("test", test_items)):
            metrics.append(
                metric(
                    f"ood_abstain_rate_{set_name}",
                    flagged(items),
                    f"{card.data.dataset} ({set_name})",
                    split,
                    len(items),
                )
            )
    return metrics


def flagged_shares(card: ModelCard, onnx_path: Path, data: OodData) -> dict[str, tuple[float, int]]:
    """Share past the card's threshold, by `onnx_path`'s own score: on the test split and on
    each OOD report set. For the int8 copy, whose score is what the server acts on."""
    ood = card.ood
    assert ood is not None
    session = session_for(onnx.load(onnx_path))
    shares = {}
    for name, inputs in {"test": data.test, **data.report}.items():
        past = past_threshold(session, inputs, ood)
        shares[name] = (float(past.mean()), len(past))
    return shares


def past_threshold(session: ort.InferenceSession, inputs: Inputs, ood: OodDetection) -> np.ndarray:
    """bool per item: what the server decides from the graph's score (app/serving/ood.py)."""
    return is_out_of_distribution(run(session, inputs)[ood.output], ood)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training ood", description=__doc__)
    parser.add_argument("task", choices=["mnist", "cifar10", "imdb", "speech"])
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="the version to start from (default: the latest of models/<task>)",
    )
    parser.add_argument(
        "--out", type=Path, help="where the new version goes (default: the next version folder)"
    )
    parser.add_argument("--data-dir", help="datasets folder (as for training)")
    parser.add_argument("--budget", type=float, default=VAL_ABSTAIN_BUDGET)
    args = parser.parse_args(argv)
    model_dir = args.model_dir or latest_version_dir(Path("models"), args.task)
    out_dir = args.out or new_version_dir(Path("models"), args.task)
    card = ModelCard.load(model_dir)
    data = load_task_data(
        args.task, resolve_data_dir(args.data_dir), int(card.training.seed), model_dir
    )
    new = build(args.task, model_dir, out_dir, data, args.budget)
    assert new.ood is not None
    print(json.dumps(new.ood.model_dump(), indent=2))
    print(f"wrote {out_dir}")
    return 0
