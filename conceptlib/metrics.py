"""Measures: clustering agreement, reconstruction losses and concept alignment.

Units (see DESIGN): ``recon_bce`` nats per image summed over 784 pixels;
``recon_sse`` summed squared error per image; ``mse`` per pixel; ``kl`` nats per
image; ``neg_elbo = recon_bce + kl``.

See: paper section 4; chapters ``ch-clustering`` and ``ch-scorecard``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from conceptlib.losses import FIRST_CONCEPT_LABEL, kl_loss, recon_loss
from conceptlib.model import ConvVAE

MEASURES = ("recon_bce", "recon_sse", "mse", "kl", "neg_elbo")


def purity(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Fraction of points whose cluster's majority label is their own label."""
    table = contingency_matrix(labels, clusters)
    return float(table.max(axis=0).sum() / table.sum())


def cluster_scores(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    """NMI, ARI and purity of a clustering against true labels."""
    return {
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
        "purity": purity(labels, clusters),
    }


def match_clusters(labels: np.ndarray, clusters: np.ndarray) -> dict[int, int]:
    """One-to-one cluster -> label matching that maximises agreement (Hungarian).

    Args:
        labels: ``(N,)`` true labels; clusters: ``(N,)`` cluster ids.

    Returns:
        ``{cluster_id: label}`` for every matched cluster.
    """
    label_ids, labels_inv = np.unique(labels, return_inverse=True)
    cluster_ids, clusters_inv = np.unique(clusters, return_inverse=True)
    table = contingency_matrix(labels_inv, clusters_inv)  # (labels, clusters)
    rows, cols = linear_sum_assignment(-table)
    return {int(cluster_ids[c]): int(label_ids[r]) for r, c in zip(rows, cols)}


@torch.no_grad()
def evaluate(
    model: ConvVAE,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1000,
    seed: int = 0,
    device: torch.device | None = None,
) -> dict[str, float]:
    """Every loss measure of DESIGN.md on one split, plus concept identification.

    The ELBO uses one posterior sample per image, from a generator seeded by
    ``seed`` (deterministic). Concept measures are computed on the concept images
    of the split (labels >= 10), when there are any, from the read-out
    :func:`~conceptlib.vocab.concept_maps` (decoding ``z = mu``):

    - ``concept_accuracy``: fraction of concept images whose concept channel with
      the most energy (sum of squared activations) is their own concept's channel.
    - ``concept_iou``: for each concept, IoU between its channel thresholded at 0.5
      and the concept's ink (image > 0.5), pooled over its images; mean over concepts.

    Args:
        model: a trained model.
        x: ``(N, 28, 28)`` uint8 images; y: ``(N,)`` labels.
        batch_size: evaluation batch size.
        seed: seed of the posterior samples.
        device: where to run (default: the model's device).

    Returns:
        Means per image (per pixel for ``mse``) and concept measures.
    """
    from conceptlib.concepts import Composites
    from conceptlib.train import to_input
    from conceptlib.vocab import recognition

    device = device or next(model.parameters()).device
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    totals = dict.fromkeys(("recon_bce", "recon_sse", "kl"), 0.0)
    for start in range(0, len(x), batch_size):
        xb = to_input(x[start : start + batch_size], device)
        out = model(xb, generator=gen)
        totals["recon_bce"] += float(recon_loss(out.logits, xb, "bce").sum())
        totals["recon_sse"] += float(recon_loss(out.logits, xb, "mse").sum())
        totals["kl"] += float(kl_loss(out.mu, out.logvar).sum())
    n = max(len(x), 1)
    result = {
        "recon_bce": totals["recon_bce"] / n,
        "recon_sse": totals["recon_sse"] / n,
        "mse": totals["recon_sse"] / n / 784,
        "kl": totals["kl"] / n,
    }
    result["neg_elbo"] = result["recon_bce"] + result["kl"]
    sel = (y >= FIRST_CONCEPT_LABEL).numpy()
    if sel.any():
        xs = x.numpy()[sel]
        concept = (y.numpy()[sel] - FIRST_CONCEPT_LABEL).astype(np.int64)
        probe = Composites(xs, xs[:, None], concept[:, None])
        r = recognition(model, probe, batch_size)
        result["concept_accuracy"] = r["accuracy"]
        result["concept_iou"] = r["iou"]
    return result
