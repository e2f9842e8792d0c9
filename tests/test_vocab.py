"""Tests for conceptlib.measures.vocab: the concept read-out and the vocabulary
measures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import conceptlib
from conceptlib.config import load_config
from conceptlib.data.catalogue import Composites, compose, load_catalogue, shift_images
from conceptlib.errors import ConceptlibError
from conceptlib.files import atomic_torch_save
from conceptlib.measures.classifier import top_accuracy
from conceptlib.measures.probes import make_probes
from conceptlib.measures.vocab import (
    TARGETS,
    VOCAB_COLUMNS,
    _Recognition,
    _rotation,
    check_targets,
    digit_parts,
    dissect,
    energy,
    format_recipes,
    format_targets,
    format_vocabulary,
    top_k,
    vocabulary_measures,
)
from conceptlib.model.readout import concept_maps, decode_mean, load_concept_model
from conceptlib.model.vae import ConvVAE
from conceptlib.train.loop import run_state

K = 18


@pytest.fixture(scope="module")
def net() -> ConvVAE:
    torch.manual_seed(0)
    return ConvVAE(load_config("smoke").model, K).eval()


@pytest.fixture(scope="module")
def probes(mnist):
    cat = load_catalogue("mnist")
    x, y = mnist.x_test[:2000], mnist.y_test[:2000]
    variant = np.arange(len(y)) % 2  # both variants of every digit occur
    return make_probes(cat, x, y, variant, size=90, seed=3)


def _digits(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


# ------------------------------------------------------------------ the read-out


def test_public_api_is_importable_from_the_package() -> None:
    assert conceptlib.concept_maps is concept_maps
    assert conceptlib.load_concept_model is load_concept_model


def test_concept_maps_shape_and_range(net: ConvVAE) -> None:
    maps = concept_maps(net, _digits(5), batch_size=2)  # several batches
    assert maps.shape == (5, K, 28, 28) and maps.dtype == np.float32
    assert (maps >= 0).all() and (maps <= 1).all()  # sigmoid channels


def test_concept_maps_decode_the_mean(net: ConvVAE) -> None:
    images = _digits(3, seed=1)
    _, hidden = decode_mean(net, images)  # the whole decoder from z = mu
    torch.testing.assert_close(
        torch.from_numpy(concept_maps(net, images)), hidden[:, :K]
    )
    # deterministic: no sampling noise
    np.testing.assert_array_equal(concept_maps(net, images), concept_maps(net, images))


def test_concept_maps_accepts_a_loaded_model_and_tensors(
    net: ConvVAE, tmp_path: Path
) -> None:
    path = tmp_path / "model.pt"
    cfg = load_config("smoke")
    atomic_torch_save(run_state(net, [{"epoch": 1}], cfg, "concept_paper"), path)
    cm = load_concept_model(tmp_path)
    images = _digits(2)
    np.testing.assert_array_equal(
        concept_maps(cm, torch.from_numpy(images)), concept_maps(net, images)
    )


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((2, 28, 28), dtype=np.float32),
        np.zeros((28, 28), dtype=np.uint8),
        np.zeros((2, 32, 32), dtype=np.uint8),
    ],
)
def test_concept_maps_rejects_other_images(net: ConvVAE, images) -> None:
    with pytest.raises(ConceptlibError, match=r"expected \(N, 28, 28\) uint8"):
        concept_maps(net, images)


def test_load_concept_model_refuses_a_baseline(net: ConvVAE, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    atomic_torch_save(run_state(net, [], load_config("smoke"), "baseline"), path)
    with pytest.raises(ConceptlibError, match="no trained concept channels"):
        load_concept_model(path)


# ------------------------------------------------------------------ composition


def test_compose_overlays_distinct_concepts() -> None:
    rng = np.random.default_rng(0)
    images = _digits(60)
    concept = np.arange(60) % K
    num_parts = np.array([1, 2, 3] * 20)
    comp = compose(images, concept, num_parts, rng, max_parts=3)
    assert comp.parts.shape == (60, 3, 28, 28) and comp.concepts.shape == (60, 3)
    np.testing.assert_array_equal(comp.concepts[:, 0], concept)  # part 0: itself
    assert ((comp.concepts >= 0).sum(1) == num_parts).all()
    for row in comp.concepts:
        used = row[row >= 0]
        assert len(set(used.tolist())) == len(used)  # distinct concepts
    np.testing.assert_array_equal(comp.x, comp.parts.max(axis=1))
    assert (comp.parts[comp.concepts < 0] == 0).all()  # empty slots hold no ink


def test_compose_with_distinct_source_digits() -> None:
    cat = load_catalogue("mnist")
    concept = np.arange(200) % K
    comp = compose(
        _digits(200), concept, np.full(200, 2), np.random.default_rng(1), cat.digit
    )
    digits = cat.digit[comp.concepts]
    assert (digits[:, 0] != digits[:, 1]).all()


def test_shift_images_moves_ink() -> None:
    x = np.zeros((50, 28, 28), dtype=np.uint8)
    x[:, 10, 12] = 255
    shifted, offsets = shift_images(x, np.random.default_rng(0), 2)
    assert np.abs(offsets).max() <= 2 and len(np.unique(offsets, axis=0)) > 5
    for img, (dx, dy) in zip(shifted, offsets):
        assert img[10 + dy, 12 + dx] == 255 and img.sum() == 255


def test_probes_are_cut_as_described(probes, mnist) -> None:
    assert set(probes.sets) == {"isolated", "jitter", "shift", "pairs"}
    cat = load_catalogue("mnist")
    for name, s in probes.sets.items():
        assert len(s.x) == 90  # 5 per concept
        assert s.x.dtype == np.uint8
        width = 2 if name == "pairs" else 1
        assert s.parts.shape[1] == width and (s.concepts >= 0).all()
    pair_digits = cat.digit[probes.sets["pairs"].concepts]
    assert (pair_digits[:, 0] != pair_digits[:, 1]).all()
    # the same seed gives the same probes
    x, y = mnist.x_test[:2000], mnist.y_test[:2000]
    again = make_probes(cat, x, y, np.arange(2000) % 2, size=90, seed=3)
    np.testing.assert_array_equal(again.sets["pairs"].x, probes.sets["pairs"].x)


# ------------------------------------------------------------------ the measures


def _ink_maps(s: Composites) -> torch.Tensor:
    """Maps of a perfect vocabulary: channel k is concept k's own ink."""
    maps = np.zeros((len(s.x), K, 28, 28), dtype=np.float32)
    for j in range(s.parts.shape[1]):
        rows = np.flatnonzero(s.concepts[:, j] >= 0)
        maps[rows, s.concepts[rows, j]] = s.parts[rows, j] / 255.0
    return torch.from_numpy(maps)


def test_a_perfect_vocabulary_scores_one(probes) -> None:
    for name in ("isolated", "pairs"):
        s = probes.sets[name]
        acc = _Recognition(K)
        acc.add(_ink_maps(s), s, 0, len(s.x))
        result = acc.result()
        assert result["accuracy"] == 1.0
        assert result["iou"] > 0.95  # ink > 127 against maps > 0.5


def test_a_vocabulary_of_swapped_channels_scores_zero(probes) -> None:
    s = probes.sets["isolated"]
    acc = _Recognition(K)
    acc.add(torch.roll(_ink_maps(s), 1, dims=1), s, 0, len(s.x))
    assert acc.result()["accuracy"] == 0.0


def test_dissection_finds_aligned_channels_and_the_rotation_does_not(probes) -> None:
    sets = [probes.sets["isolated"], probes.sets["pairs"]]
    maps = [_ink_maps(s) for s in sets]
    plain = dissect(maps, sets)
    assert plain["own"] == K and plain["unique"] == K
    rotated = dissect(maps, sets, _rotation(K, seed=0))
    assert rotated["own"] <= 2
    q = _rotation(K, seed=0)
    torch.testing.assert_close(q @ q.T, torch.eye(K), atol=1e-5, rtol=0)


def test_vocabulary_measures_of_an_untrained_model(net: ConvVAE, probes) -> None:
    result = vocabulary_measures(net, probes, seed=0, dissection_size=40)
    assert set(result["accuracy"]) == {"isolated", "jitter", "shift", "pairs"}
    for value in result["accuracy"].values():
        assert 0.0 <= value <= 0.5  # no trained concept channels: near chance
    assert result["size"]["pairs"] == 90
    assert 0 <= result["dissection"]["own"] <= K


def test_digit_parts_of_an_untrained_model(net: ConvVAE, mnist) -> None:
    cat = load_catalogue("mnist")
    x, y = mnist.x_test[:300], mnist.y_test[:300]
    parts = digit_parts(net, cat, x, y, np.arange(300) % 2)
    assert parts.hit.shape == (K,) and parts.overlap.shape == (10,)
    assert np.isnan(parts.overlap[1])  # one concept of digit 1: no pairs
    assert (y[parts.examples] == np.arange(10)).all()
    summary = parts.summary()
    assert 0.0 <= summary["part_hit"] <= 1.0


# ------------------------------------------------------------------- reporting


def _measures(own=18, rotated=0, shift=0.95, pairs=0.95, isolated=0.98) -> dict:
    return {
        "accuracy": {
            "isolated": isolated,
            "jitter": 0.93,
            "shift": shift,
            "pairs": pairs,
        },
        "iou": {"pairs": 0.5},
        "dissection": {"own": own},
        "dissection_rotated": {"own": rotated},
    }


def test_targets_are_checked_in_both_directions() -> None:
    met = check_targets(_measures())
    assert len(met) == len(TARGETS) and all(m[3] for m in met)
    missed = {m[0]: m[3] for m in check_targets(_measures(isolated=0.9, rotated=5))}
    assert not missed["isolated accuracy"]
    assert not missed["the same after a random rotation"]
    assert check_targets({})[0][2] is None


def test_targets_table_marks_met_missed_and_missing() -> None:
    text = format_targets(
        {"good": _measures(), "bad": _measures(isolated=0.9), "none": {}}
    )
    lines = text.splitlines()
    assert lines[0] == "| target | rule | good | bad | none |"
    assert lines[1] == "|---|---|---:|---:|---:|"
    assert len(lines) == 2 + len(TARGETS)
    assert lines[2] == "| isolated accuracy | >= 0.97 | 0.980 met | 0.900 missed | – |"


def test_recipes_side_by_side_over_seeds() -> None:
    def seed(iso: float, elbo: float) -> dict:
        probes = ("isolated", "jitter", "shift", "pairs")
        vocab = {"accuracy": {p: iso for p in probes},
                 "dissection": {"own": 17},
                 "dissection_rotated": {"own": 1}}  # fmt: skip
        test = {"neg_elbo": elbo, "recon_bce": elbo - 30}
        return {
            "vocabulary": {"concept": vocab, "concept_paper": vocab,
                           "classifier_ceiling": {"accuracy": {"isolated": 0.95}}},
            "variants": {v: {"test_digits": test} for v in ("concept", "concept_paper")}
            | {"baseline": {"test_digits": {"neg_elbo": 100.0, "recon_bce": 70.0}}},
        }  # fmt: skip

    metrics = {"vocabulary": {"concept": {}, "concept_paper": {}},
               "per_seed": [seed(0.8, 110.0), seed(0.9, 130.0)]}  # fmt: skip
    lines = format_recipes(metrics).splitlines()
    assert lines[0] == "| measure | concept_paper | concept | ceiling |"
    assert lines[2] == "| isolated | 0.850 ± 0.071 | 0.850 ± 0.071 | 0.950 ± 0.000 |"
    assert lines[5].endswith("| – |")  # no ceiling for pairs here
    assert lines[6] == "| own detectors | 17.0 ± 0.0 | 17.0 ± 0.0 | – |"
    assert lines[8] == "| test -ELBO / base | 1.200 ± 0.141 | 1.200 ± 0.141 | – |"
    assert lines[9] == "| recon - base | 20.0 ± 14.1 | 20.0 ± 14.1 | – |"


def test_vocabulary_table_has_a_row_per_model_and_spreads() -> None:
    text = format_vocabulary(
        {"a": _measures(), "b": {}}, {"a": {"accuracy": {"pairs": 0.01}}}
    )
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0].count("|") == len(VOCAB_COLUMNS) + 2
    assert "0.950 ± 0.010" in lines[2] and "–" in lines[3]


def test_classifier_top_accuracy() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    assert top_accuracy(probs, np.array([[0], [1]])) == 0.5
    assert top_accuracy(probs, np.array([[1, 0], [2, 1]])) == 1.0


def test_energy_is_the_sum_of_squares_for_arrays_and_tensors() -> None:
    maps = np.random.default_rng(0).random((3, 4, 5, 5), dtype=np.float32)
    e = energy(maps)
    assert e.shape == (3, 4) and e.dtype == np.float64
    np.testing.assert_allclose(e, (maps.astype(np.float64) ** 2).sum((2, 3)))
    np.testing.assert_allclose(energy(torch.from_numpy(maps)).numpy(), e, rtol=1e-12)
    np.testing.assert_array_equal(top_k(np.array([[0.1, 0.7, 0.2]]), 2), [[1, 2]])
    np.testing.assert_array_equal(top_k(np.array([0.3, 0.1, 0.9])), [2, 0, 1])
    np.testing.assert_array_equal(top_k(np.zeros(20), 3, stable=True), [0, 1, 2])


def test_multilabel_ceiling_names_planted_concepts_and_stops_on_validation() -> None:
    from conceptlib.measures.classifier import multi_hot, predict, train_multilabel

    assert multi_hot(np.array([[2, -1], [0, 1]]), 3).tolist() == [
        [0, 0, 1],
        [1, 1, 0],
    ]
    rng = np.random.default_rng(0)
    # concept k: a bright row at height 4 + 8 k; images hold one or two of them
    concepts = np.where(rng.random((300, 2)) < 0.5, -1, rng.integers(0, 3, (300, 2)))
    concepts[:, 0] = rng.integers(0, 3, 300)
    x = np.zeros((300, 28, 28), np.uint8)
    for k in range(3):
        x[(concepts == k).any(1), 4 + 8 * k : 6 + 8 * k, 4:24] = 255
    targets = multi_hot(concepts, 3)
    scores = []

    def score(model) -> float:
        top = predict(model, x[:100]).argmax(1)
        scores.append(float(targets[np.arange(100), top].mean()))
        # rising over epochs 1 and 2, then "worse"
        return scores[-1] + 0.01 * len(scores) if len(scores) < 3 else 0.0

    model, info = train_multilabel(x, targets, score, max_epochs=10, patience=2)
    assert info["best_epoch"] == 2 and info["epochs"] == 4  # stopped by patience
    assert info["val_score"] == scores[1] + 0.02 and scores[1] > 0.9  # learnt
    top = predict(model, x[:100]).argmax(1)
    assert float(targets[np.arange(100), top].mean()) == scores[1]  # best kept


def test_ceiling_gap_words() -> None:
    from conceptlib.measures.vocab import ceiling_gap

    assert ceiling_gap(0.91, 0.93) == "at the catalogue's limit"
    assert ceiling_gap(0.95, 0.93) == "at the catalogue's limit"
    assert ceiling_gap(0.385, 0.67) == "28.5 points below"
