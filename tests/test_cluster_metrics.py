"""Tests for conceptlib.measures.cluster and conceptlib.measures.likelihood."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import conceptlib.measures.vocab
from conceptlib.config import ModelConfig
from conceptlib.measures.cluster import (
    Clustering,
    decode_centres,
    encode_features,
    fit_kmeans,
    representative_images,
)
from conceptlib.measures.likelihood import (
    MEASURES,
    cluster_scores,
    evaluate,
    importance_nll,
    match_clusters,
    purity,
)
from conceptlib.model.losses import kl_loss, recon_loss
from conceptlib.model.vae import ConvVAE

K = 18
SMALL = ModelConfig(enc_channels=(4, 8, 8, 8), dec_channels=(8, 20, 20, 4))


@pytest.fixture
def model() -> ConvVAE:
    torch.manual_seed(0)
    return ConvVAE(SMALL, K).eval()


def _images(num: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (num, 28, 28), generator=g, dtype=torch.uint8)


# ---------------------------------------------------------------- cluster scores


def test_perfect_clustering_scores_one() -> None:
    labels = np.repeat(np.arange(5), 20)
    scores = cluster_scores(labels, labels.copy())
    assert scores == pytest.approx({"nmi": 1.0, "ari": 1.0, "purity": 1.0})


def test_permuted_cluster_ids_still_score_one() -> None:
    labels = np.repeat(np.arange(5), 20)
    perm = np.array([3, 0, 4, 1, 2])
    scores = cluster_scores(labels, perm[labels] + 100)
    assert scores == pytest.approx({"nmi": 1.0, "ari": 1.0, "purity": 1.0})


def test_purity_hand_example() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    clusters = np.array([0, 0, 1, 1, 1, 1])
    # cluster 0: {0, 0} -> 2; cluster 1: {0, 1, 1, 2} -> 2; purity 4/6
    assert purity(labels, clusters) == pytest.approx(4 / 6)
    assert purity(labels, np.zeros(6, dtype=int)) == pytest.approx(3 / 6)
    assert purity(labels, np.arange(6)) == 1.0  # singletons are trivially pure


def test_random_clustering_scores_low() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 5000)
    clusters = rng.integers(0, 10, 5000)
    scores = cluster_scores(labels, clusters)
    assert scores["nmi"] < 0.02
    assert abs(scores["ari"]) < 0.02
    assert scores["purity"] < 0.15


def test_match_clusters_recovers_a_permutation() -> None:
    labels = np.repeat(np.arange(10, 16), 7)
    perm = np.array([4, 2, 5, 0, 3, 1])
    clusters = perm[labels - 10]
    matching = match_clusters(labels, clusters)
    assert matching == {int(perm[i]): 10 + i for i in range(6)}


def test_match_clusters_is_one_to_one_with_noise() -> None:
    labels = np.array([0] * 10 + [1] * 10 + [2] * 10)
    clusters = np.array([2] * 8 + [1] * 2 + [0] * 9 + [2] + [1] * 10)
    # cluster 2 is mostly label 0 and cluster 1 mostly label 2
    assert match_clusters(labels, clusters) == {2: 0, 0: 1, 1: 2}


def test_match_clusters_with_more_clusters_than_labels() -> None:
    labels = np.array([0, 0, 1, 1, 1, 1])
    clusters = np.array([5, 6, 7, 7, 8, 8])
    matching = match_clusters(labels, clusters)
    assert len(matching) == 2
    assert sorted(matching.values()) == [0, 1]
    assert matching[5] == 0 or matching[6] == 0
    assert matching.get(7) == 1 or matching.get(8) == 1


# ------------------------------------------------------------------- k-means


def _blobs(num_per: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 5.0], [0.0, 10.0, -5.0]])
    x = np.concatenate([c + rng.normal(size=(num_per, 3)) for c in centres])
    y = np.repeat(np.arange(3), num_per)
    return x.astype(np.float32), y


def test_fit_kmeans_on_separated_blobs() -> None:
    x, y = _blobs()
    c = fit_kmeans(x, y, 3, seed=0, n_init=2)
    assert c.scores["nmi"] > 0.99
    assert c.scores["purity"] > 0.99
    assert c.centres.shape == (3, 3) and c.centres.dtype == np.float32
    assert len(c.assignment) == len(y) and c.assignment.dtype == np.int64
    np.testing.assert_array_equal(c.index, np.arange(len(y)))
    np.testing.assert_array_equal(c.labels, y)
    # each matched centre lies near the blob of its label
    for cluster, label in c.matching.items():
        assert np.linalg.norm(c.centres[cluster] - x[y == label].mean(0)) < 0.5
    ordered, labels = c.centres_by_label()
    assert labels == [0, 1, 2]
    for label in range(3):
        assert np.linalg.norm(ordered[label] - x[y == label].mean(0)) < 0.5


def test_fit_kmeans_subsample_is_seeded() -> None:
    x, y = _blobs(200)
    a = fit_kmeans(x, y, 3, seed=1, n_init=1, max_points=50)
    b = fit_kmeans(x, y, 3, seed=1, n_init=1, max_points=50)
    assert len(a.index) == 50 and len(np.unique(a.index)) == 50
    assert (np.diff(a.index) > 0).all()
    np.testing.assert_array_equal(a.index, b.index)
    np.testing.assert_array_equal(a.assignment, b.assignment)
    np.testing.assert_array_equal(a.labels, y[a.index])
    c = fit_kmeans(x, y, 3, seed=2, n_init=1, max_points=50)
    assert not np.array_equal(a.index, c.index)


def test_centres_by_label_puts_unmatched_last() -> None:
    x, y = _blobs(50)
    y2 = np.where(y == 2, 1, y)  # two labels, three clusters
    c = fit_kmeans(x, y2, 3, seed=0, n_init=1)
    _, labels = c.centres_by_label()
    assert labels[:2] == [0, 1] and labels[2] == -1


# ------------------------------------------------------- features and centres


def test_encode_features_shapes(model: ConvVAE) -> None:
    x = _images(7)
    latent = encode_features(model, x, "latent", batch_size=3)
    assert latent.shape == (7, 4 * 7 * 7) and latent.dtype == np.float32
    mu, _ = model.encode(x[:, None].float() / 255)
    np.testing.assert_allclose(latent, mu.flatten(1).detach().numpy(), atol=1e-5)
    hidden = encode_features(model, x, "hidden", batch_size=4)
    assert hidden.shape == (7, 20 * 28 * 28)


def test_decode_centres_and_representatives(model: ConvVAE) -> None:
    x = _images(60)
    y = np.arange(60) % 10
    images, maps = decode_centres(model, np.zeros((3, 4 * 49), np.float32))
    assert images.shape == (3, 28, 28) and maps.shape == (3, 20, 28, 28)
    assert ((images >= 0) & (images <= 1)).all()
    reps, clustering = representative_images(model, x, y, num_clusters=10, n_init=1)
    assert reps.shape == (10, 28, 28) and reps.dtype == np.uint8
    assert sorted(clustering.matching.values()) == list(range(10))
    decoded, _ = decode_centres(model, clustering.centres)
    for cluster, digit in clustering.matching.items():
        np.testing.assert_array_equal(
            reps[digit], np.rint(decoded[cluster] * 255).astype(np.uint8)
        )


# ------------------------------------------------------------------- evaluate


def test_evaluate_measures(model: ConvVAE) -> None:
    x = _images(50)
    y = torch.arange(50) % 28  # digits 0-9 and concepts 10-27
    result = evaluate(model, x, y, batch_size=16, seed=0)
    for key in (*MEASURES, "concept_accuracy", "concept_iou"):
        assert key in result and math.isfinite(result[key]), key
    assert result["neg_elbo"] == pytest.approx(result["recon_bce"] + result["kl"])
    assert result["mse"] == pytest.approx(result["recon_sse"] / 784)
    assert result["kl"] > 0 and result["recon_bce"] > 0
    assert 0 <= result["concept_accuracy"] <= 1
    assert 0 <= result["concept_iou"] <= 1


def test_evaluate_is_deterministic(model: ConvVAE) -> None:
    x = _images(40)
    y = torch.arange(40) % 12
    a = evaluate(model, x, y, batch_size=16, seed=3)
    b = evaluate(model, x, y, batch_size=16, seed=3)
    assert a == b
    assert not model.training


def test_evaluate_values_match_the_losses(model: ConvVAE) -> None:
    x = _images(12)
    y = torch.zeros(12, dtype=torch.long)
    result = evaluate(model, x, y, batch_size=12, seed=0)
    xin = x[:, None].float() / 255
    with torch.no_grad():
        out = model(xin, generator=torch.Generator().manual_seed(0))
    assert result["recon_bce"] == pytest.approx(
        float(recon_loss(out.logits, xin).mean()), rel=1e-5
    )
    assert result["kl"] == pytest.approx(
        float(kl_loss(out.mu, out.logvar).mean()), rel=1e-5
    )


def test_evaluate_without_concepts(model: ConvVAE) -> None:
    x = _images(20)
    y = torch.arange(20) % 10
    result = evaluate(model, x, y, batch_size=8)
    assert set(result) == set(MEASURES)


def _concept_images(num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Concept images whose ink value (130 + k) tells their concept k."""
    rng = np.random.default_rng(0)
    k = np.arange(num) % K
    x = np.zeros((num, 28, 28), np.uint8)
    for i in range(num):
        r, c = rng.integers(0, 20, 2)
        x[i, r : r + 6, c : c + 5] = 130 + k[i]
    return torch.from_numpy(x), torch.from_numpy(k + 10)


def _patch_forward(
    monkeypatch: pytest.MonkeyPatch, model: ConvVAE, shift: int = 0
) -> None:
    """Make the concept map ``k + shift`` of each image hold the image itself.

    Concept measures read the maps through
    :func:`conceptlib.model.readout.concept_maps`,
    so that is what is replaced.
    """

    def concept_maps(net, images, batch_size=256):
        x = np.asarray(images, dtype=np.float32) / 255.0
        maps = np.zeros((len(x), K, 28, 28), dtype=np.float32)
        k = np.round(x.reshape(len(x), -1).max(1) * 255).astype(int) - 130
        maps[np.arange(len(x)), (k + shift) % K] = x
        return maps

    monkeypatch.setattr(conceptlib.measures.vocab, "concept_maps", concept_maps)


def test_concept_accuracy_one_when_channels_match(
    model: ConvVAE, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = _concept_images(54)
    _patch_forward(monkeypatch, model)
    result = evaluate(model, x, y, batch_size=20)
    assert result["concept_accuracy"] == 1.0
    assert result["concept_iou"] == pytest.approx(1.0)


def test_concept_accuracy_zero_when_channels_are_wrong(
    model: ConvVAE, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = _concept_images(54)
    _patch_forward(monkeypatch, model, shift=1)
    result = evaluate(model, x, y, batch_size=20)
    assert result["concept_accuracy"] == 0.0
    assert result["concept_iou"] == 0.0


def test_concept_accuracy_counts_only_concept_images(
    model: ConvVAE, monkeypatch: pytest.MonkeyPatch
) -> None:
    xc, yc = _concept_images(18)
    digits = _images(30) // 4  # ink below 130: decoded as no concept in particular
    x = torch.cat([xc, digits])
    y = torch.cat([yc, torch.arange(30) % 10])
    _patch_forward(monkeypatch, model)
    result = evaluate(model, x, y, batch_size=16)
    assert result["concept_accuracy"] == 1.0


# ------------------------------------------------------ importance-sampled NLL


def test_importance_nll_is_below_the_elbo(model: ConvVAE) -> None:
    """log-mean-exp >= mean of logs: per image, IS-NLL <= the -ELBO of its samples."""
    nll, neg_elbo = importance_nll(model, _images(6), samples=50, chunk=64, seed=0)
    assert nll.shape == neg_elbo.shape == (6,)
    assert np.all(np.isfinite(nll)) and np.all(nll <= neg_elbo + 1e-9)
    assert np.all(nll < neg_elbo - 0.01)  # 50 samples of a spread posterior: tighter


def test_importance_nll_with_one_sample_is_the_elbo(model: ConvVAE) -> None:
    """k = 1: the estimate is the single-sample -ELBO, which evaluate() computes."""
    x = _images(5)
    nll, neg_elbo = importance_nll(model, x, samples=1, seed=0)
    np.testing.assert_allclose(nll, neg_elbo)
    # the posterior mean of 1-sample -ELBOs over many seeds is evaluate()'s -ELBO
    runs = [importance_nll(model, x, samples=1, seed=s)[0].mean() for s in range(40)]
    single = evaluate(model, x, torch.zeros(5, dtype=torch.long), seed=0)
    assert np.mean(runs) == pytest.approx(single["neg_elbo"], rel=0.02)


def test_importance_nll_is_seeded_and_chunk_free(model: ConvVAE) -> None:
    x = _images(4)
    a = importance_nll(model, x, samples=30, chunk=60, seed=2)
    b = importance_nll(model, x, samples=30, chunk=30, seed=2)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5)
    c = importance_nll(model, x, samples=30, chunk=60, seed=3)
    assert not np.allclose(a[0], c[0])


def test_majority_labels() -> None:
    c = Clustering(
        index=np.arange(6),
        assignment=np.array([0, 0, 1, 1, 1, 0]),
        centres=np.zeros((2, 3)),
        labels=np.array([4, 4, 7, 2, 7, 1]),
        scores={},
        matching={},
    )
    assert c.majority_labels() == [4, 7]
