"""`python -m training ood`: the graph surgery, the scores and the threshold, on tiny models built
with onnx.helper, run for real with ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from model_factory import DEFAULT_CORPUS, image_bytes, image_model, text_model
from onnx import TensorProto, helper
from serving_harness import running_server, settings_for

from app.card import ModelCard, sha256_of
from training import ood_graph, ood_sets
from training.ood import (
    OodData,
    auroc,
    build,
    fit_threshold,
    phrase_deficit_tables,
    token_weight_table,
)

SIZE = 8
CLASSES = 10


def _templates() -> np.ndarray:
    """Class c: a bright 2×2 patch at its own place on a dark 8×8 image."""
    out = np.zeros((CLASSES, 1, SIZE, SIZE), np.float32)
    for c in range(CLASSES):
        y, x = divmod(c, 4)
        out[c, 0, 2 * y : 2 * y + 2, 2 * x : 2 * x + 2] = 1.0
    return out


def _patches(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    noise = rng.normal(0, 0.05, (n, 1, SIZE, SIZE)).astype(np.float32)
    return np.clip(_templates()[labels] + noise, 0, 1), labels


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _patch_data() -> OodData:
    train, train_labels = _patches(600, 0)
    rng = np.random.default_rng(1)

    def noise(n: int) -> np.ndarray:
        return rng.random((n, 1, SIZE, SIZE)).astype(np.float32)

    def flat(n: int) -> np.ndarray:
        return np.full((n, 1, SIZE, SIZE), rng.random(), np.float32)

    return OodData(
        train=train,
        train_labels=train_labels,
        val=_patches(300, 2)[0],
        test=_patches(300, 3)[0],
        fit={"noise": noise(100), "flat": flat(100)},
        report={"noise": noise(100), "flat": flat(100)},
    )


@pytest.fixture
def patch_model(tmp_path: Path):  # type: ignore[no-untyped-def]
    weights = (_templates().reshape(CLASSES, -1).T * 8).astype(np.float32)
    return image_model(
        tmp_path / "models", "patches", size=SIZE, digit_centering=False, weights=weights
    )


def test_build_adds_a_score_output_and_keeps_the_probabilities(patch_model, tmp_path: Path) -> None:
    out = tmp_path / "out"
    data = _patch_data()
    card = build("patches", patch_model.directory, out, data, log=lambda _: None)

    assert [o.name for o in card.outputs] == ["probabilities", "ood_score"]
    assert card.outputs[1].shape == ["batch"]
    assert card.onnx_sha256 == sha256_of(out / "model.onnx")
    assert ModelCard.load(out) == card  # what is on disk is what was returned
    graph = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(graph, full_check=True)

    before = _session(patch_model.onnx_path).run(None, {"image": data.test})[0]
    probabilities, scores = _session(out / "model.onnx").run(None, {"image": data.test})
    np.testing.assert_array_equal(probabilities, before)
    assert scores.shape == (len(data.test),) and scores.dtype == np.float32

    ood = card.ood
    assert ood is not None and ood.output == "ood_score" and ood.higher_is_ood
    assert ood.validation_abstain_rate <= 0.01
    assert ood.test_abstain_rate == pytest.approx(float((scores > ood.threshold).mean()), abs=1e-4)
    assert set(ood.auroc) == set(ood.flagged) == {"noise", "flat"}
    assert ood.flagged["noise"] > 0.9 and ood.auroc["noise"] > 0.95
    singles = {"energy", "max_logit", "max_probability", "mahalanobis", "mahalanobis_l2"}
    singles.add("image_stats")
    assert singles <= set(ood.candidates_auroc)
    assert card.metric("ood_abstain_rate", "test") is not None


def test_todays_server_serves_the_new_model_unchanged(patch_model, tmp_path: Path) -> None:
    """The second output must not break a server that reads only the first."""
    models = tmp_path / "served"
    build("patches", patch_model.directory, models / "patches", _patch_data(), log=lambda _: None)
    image = (_templates()[6, 0] * 255).astype(np.uint8)
    with running_server(settings_for(models)) as url:
        response = httpx.post(
            f"{url}/predict/image",
            files={"files": ("six.png", image_bytes(image), "image/png")},
            data={"model": "patches"},
        )
        card = httpx.get(f"{url}/models/patches").json()
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == "6"
    assert json_ood(card)["output"] == "ood_score"


def json_ood(payload: dict) -> dict:
    """The card's ood section, wherever /models/{name} nests the card."""
    return payload["ood"] if "ood" in payload else payload["card"]["ood"]


@pytest.mark.parametrize(
    "method",
    [
        "energy",
        "max_logit",
        "max_probability",
        "mahalanobis",
        "mahalanobis_l2",
        "image_stats",
        "energy+mahalanobis",
    ],
)
def test_each_score_in_the_graph_matches_numpy(patch_model, method: str) -> None:
    model = onnx.load(str(patch_model.onnx_path))
    taps = ood_graph.find_taps(model)
    assert taps.features == "flat" and taps.logits == "logits"
    x, labels = _patches(200, 5)
    flat = x.reshape(len(x), -1)
    logits = flat @ patch_model.weights["W"]
    params = {"mahalanobis": ood_graph.fit_mahalanobis(flat, labels)}
    numpy_scores = {
        "energy": -ood_graph.logsumexp(logits),
        "max_logit": -logits.max(axis=1),
        "max_probability": 1 - (np.exp(logits - ood_graph.logsumexp(logits)[:, None])).max(1),
        "mahalanobis": ood_graph.mahalanobis_np(flat, params["mahalanobis"]),
    }
    unit = ood_graph.unit_rows(flat)
    params["mahalanobis_l2"] = ood_graph.fit_mahalanobis(unit, labels)
    numpy_scores["mahalanobis_l2"] = ood_graph.mahalanobis_np(unit, params["mahalanobis_l2"])
    stats = ood_graph.image_stats_np(x)
    params["image_stats"] = ood_graph.fit_mahalanobis(stats, np.zeros(len(x), np.int64))
    numpy_scores["image_stats"] = ood_graph.mahalanobis_np(stats, params["image_stats"])
    params["energy"] = {"scale": (1.0, 2.0)}
    params["mahalanobis"]["scale"] = (3.0, 4.0)
    numpy_scores["energy+mahalanobis"] = np.maximum(
        (numpy_scores["energy"] - 1) / 2, (numpy_scores["mahalanobis"] - 3) / 4
    )
    scored = ood_graph.add_score(model, taps, method, params)
    session = ort.InferenceSession(scored.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["ood_score"], {"image": x})[0]
    expected = numpy_scores[method]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3 * (1 + np.abs(expected).max()))


def test_text_model_gets_a_token_score_that_flags_gibberish(tmp_path: Path) -> None:
    built = text_model(tmp_path / "models", "reviews")
    tokenizer = built.tokenizer
    assert tokenizer is not None
    corpus = [*DEFAULT_CORPUS] * 20

    def encode(texts: list[str]) -> list[np.ndarray]:
        return [tokenizer.encode(t) for t in texts]

    rng = np.random.default_rng(0)
    data = OodData(
        train=encode(corpus),
        train_labels=np.zeros(len(corpus), np.int64),
        val=encode(corpus),
        test=encode(corpus),
        fit={"gibberish": encode(ood_sets.gibberish_texts(50, rng))},
        report={"gibberish": encode(ood_sets.gibberish_texts(50, rng))},
    )
    data.tokenizer = tokenizer
    out = tmp_path / "out"
    card = build("reviews", built.directory, out, data, log=lambda _: None)
    assert card.ood is not None
    assert {"token_coverage", "phrase_coverage"} <= set(card.ood.candidates_auroc)
    assert card.ood.flagged["gibberish"] == 1.0
    assert card.ood.test_abstain_rate <= 0.01
    assert (out / "tokenizer.json").read_bytes() == (
        built.directory / "tokenizer.json"
    ).read_bytes()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 10_000))
def test_auroc_is_the_pairwise_probability(n_in: int, n_out: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    inside = rng.integers(0, 5, n_in).astype(float)  # small range: many ties
    outside = rng.integers(0, 5, n_out).astype(float)
    pairs = (outside[:, None] > inside[None, :]) + 0.5 * (outside[:, None] == inside[None, :])
    assert auroc(inside, outside) == pytest.approx(pairs.mean())


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 0.05))
def test_threshold_keeps_every_validation_set_within_budget(seed: int, budget: float) -> None:
    rng = np.random.default_rng(seed)
    full, short = rng.normal(0, 1, 500), rng.normal(0.5, 1, 200)
    fit = {"a": rng.normal(2, 1, 100), "b": rng.normal(3, 1, 100)}
    threshold = fit_threshold([full, short], fit, budget)
    assert (full > threshold).sum() <= np.floor(budget * len(full))
    assert (short > threshold).sum() <= np.floor(budget * len(short))


def test_last_sentences_are_one_liners() -> None:
    reviews = [
        "Long story.<br /><br />I loved every minute of this wonderful film, really.",
        "Too short. Bad.",
    ]
    assert ood_sets.last_sentences(reviews) == [
        "I loved every minute of this wonderful film, really."
    ]


@pytest.mark.parametrize("phrases_only", [False, True])
def test_coverage_scores_in_the_graph_match_numpy(tmp_path: Path, phrases_only: bool) -> None:
    built = text_model(tmp_path / "models", "reviews")
    tokenizer = built.tokenizer
    assert tokenizer is not None
    train = [tokenizer.encode(t) for t in DEFAULT_CORPUS]
    table = token_weight_table(tokenizer, train, phrases_only)
    multiword = np.array([" " in g for g in sorted(tokenizer.vocab, key=tokenizer.vocab.get)])
    assert (table[1:][~multiword] == 0).all() if phrases_only else (table[1:] > 0).any()
    model = onnx.load(str(built.onnx_path))
    method = "phrase_coverage" if phrases_only else "token_coverage"
    scored = ood_graph.add_score(
        model, ood_graph.find_taps(model), method, {method: {"token_weight": table}}
    )
    session = ort.InferenceSession(scored.SerializeToString(), providers=["CPUExecutionProvider"])
    texts = [*DEFAULT_CORPUS, "zzkq blorf", "a wonderful great film"]
    ids = [tokenizer.encode(t) for t in texts]
    padded = np.zeros((len(ids), max(len(i) for i in ids)), np.int64)
    for row, item in enumerate(ids):
        padded[row, : len(item)] = item
    got = session.run(["ood_score"], {"token_ids": padded})[0]
    expected = -np.log1p(np.array([table[i].sum() for i in ids]))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_phrase_deficit_in_the_graph_matches_numpy(tmp_path: Path) -> None:
    built = text_model(tmp_path / "models", "reviews")
    tokenizer = built.tokenizer
    assert tokenizer is not None
    train = [tokenizer.encode(t) for t in DEFAULT_CORPUS]
    words, phrases = phrase_deficit_tables(tokenizer, train)
    assert words[0] == 0 and phrases[0] == 0  # padding counts for nothing
    assert ((words > 0) & (phrases > 0)).sum() == 0  # a word or a phrase, never both
    model = onnx.load(str(built.onnx_path))
    params = {"phrase_deficit": {"word_weight": words, "phrase_weight": phrases}}
    scored = ood_graph.add_score(model, ood_graph.find_taps(model), "phrase_deficit", params)
    session = ort.InferenceSession(scored.SerializeToString(), providers=["CPUExecutionProvider"])
    texts = [*DEFAULT_CORPUS, "zzkq blorf", "a wonderful great film", "film"]
    ids = [tokenizer.encode(t) for t in texts]
    padded = np.zeros((len(ids), max(1, *(len(i) for i in ids))), np.int64)
    for row, item in enumerate(ids):
        padded[row, : len(item)] = item
    got = session.run(["ood_score"], {"token_ids": padded})[0]
    expected = [np.log1p(words[i].sum()) - np.log1p(phrases[i].sum()) for i in ids]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert got[len(DEFAULT_CORPUS)] == 0  # no known word, no known phrase: log 1 - log 1


def test_image_stats_measure_contrast_within_each_colour() -> None:
    """In the graph as in numpy, the variance is about each channel's own mean: noise on a
    strong colour cast keeps the roughness of noise (texture over contrast) instead of looking
    as smooth as a photo."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 8, 8])
    graph = helper.make_graph([], "stats", [image], [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    b = ood_graph._Builder(model)
    stats = ood_graph._image_stats_nodes(b, "image")
    model.graph.node.extend(b.nodes)
    model.graph.initializer.extend(b.inits)
    model.graph.output.append(helper.make_tensor_value_info(stats, TensorProto.FLOAT, None))
    rng = np.random.default_rng(0)
    cast = np.array([0.1, 0.9, 0.5], np.float32).reshape(1, 3, 1, 1)
    noisy = np.clip(cast + rng.normal(0, 0.1, (4, 3, 8, 8)), 0, 1).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": noisy})[0]
    np.testing.assert_allclose(got, ood_graph.image_stats_np(noisy), rtol=1e-4, atol=1e-4)
    grey = np.clip(0.5 + rng.normal(0, 0.1, (4, 1, 8, 8)), 0, 1).astype(np.float32)
    # the cast adds no contrast: the same noise on grey has about the same variance
    np.testing.assert_allclose(
        got[:, 0].mean(), ood_graph.image_stats_np(grey)[:, 0].mean(), atol=0.3
    )
