"""Measures: clustering agreement, reconstruction losses and concept alignment.

Units (see DESIGN): ``recon_bce`` nats per image summed over 784 pixels; ``recon_sse``
summed squared error per image; ``mse`` per pixel; ``kl`` nats per image;
``neg_elbo = recon_bce + kl``; ``is_nll`` nats per image (:func:`importance_nll`).
See: paper section 4; chapters ``ch-clustering`` and ``ch-scorecard``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix
from tqdm.auto import tqdm

from conceptlib.data.catalogue import Composites
from conceptlib.data.mnist import to_input
from conceptlib.measures.vocab import recognition
from conceptlib.model.losses import FIRST_CONCEPT_LABEL, kl_loss, recon_loss
from conceptlib.model.vae import ConvVAE, ready

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
    """``{cluster id: label}``: the one-to-one matching of ``(N,)`` cluster ids to
    ``(N,)`` labels that maximises agreement (Hungarian)."""
    label_ids, labels_inv = np.unique(labels, return_inverse=True)
    cluster_ids, clusters_inv = np.unique(clusters, return_inverse=True)
    table = contingency_matrix(labels_inv, clusters_inv)  # (labels, clusters)
    rows, cols = linear_sum_assignment(-table)
    return {int(cluster_ids[c]): int(label_ids[r]) for r, c in zip(rows, cols)}


@torch.no_grad()
def evaluate(
    model: ConvVAE, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000,
    seed: int = 0, device: torch.device | None = None,
) -> dict[str, float]:  # fmt: skip
    """Every loss measure of DESIGN.md (means per image, per pixel for ``mse``) on
    ``(N, 28, 28)`` uint8 images ``x`` with labels ``y``, on ``device`` (default: the
    model's); the ELBO from one posterior sample per image, seeded by ``seed``. On
    the concept images (labels >= 10), if any, ``concept_accuracy`` and
    ``concept_iou`` of :func:`~conceptlib.measures.vocab.recognition`."""
    device = device or next(model.parameters()).device
    ready(model)
    gen = torch.Generator(device=device).manual_seed(seed)
    bce = sse = kl = 0.0
    for start in range(0, len(x), batch_size):
        xb = to_input(x[start : start + batch_size], device)
        out = model(xb, generator=gen)
        bce += float(recon_loss(out.logits, xb, "bce").sum())
        sse += float(recon_loss(out.logits, xb, "mse").sum())
        kl += float(kl_loss(out.mu, out.logvar).sum())
    bce, sse, kl = (t / max(len(x), 1) for t in (bce, sse, kl))
    result = {"recon_bce": bce, "recon_sse": sse, "mse": sse / 784, "kl": kl}
    result["neg_elbo"] = bce + kl
    sel = (y >= FIRST_CONCEPT_LABEL).numpy()
    if sel.any():
        xs = x.numpy()[sel]
        concept = (y.numpy()[sel] - FIRST_CONCEPT_LABEL).astype(np.int64)
        probe = Composites(xs, xs[:, None], concept[:, None])
        for key, value in recognition(model, probe, batch_size).items():
            result[f"concept_{key}"] = value  # accuracy, iou
    return result


def _log_weights(
    model: ConvVAE, xb: torch.Tensor, samples: int, chunk: int, gen: torch.Generator
) -> torch.Tensor:
    """``(k, b)`` float64 ``log p(x|z) + log p(z) - log q(z|x)`` of ``k = samples``
    draws ``z ~ q(z|x)`` per image of the batch ``xb``."""
    half_log_2pi = 0.5 * float(np.log(2 * np.pi))
    mu, logvar = model.encode(xb)
    b, draw = len(xb), dict(generator=gen, device=xb.device, dtype=mu.dtype)
    shape = (samples, *mu.shape[1:])  # image by image: independent of chunk
    eps = torch.stack([torch.randn(shape, **draw) for _ in range(b)], dim=1)
    std = torch.exp(0.5 * logvar)
    z = mu + std * eps  # (k, b, L, 7, 7)
    log_q = (-0.5 * eps.pow(2) - 0.5 * logvar - half_log_2pi).flatten(2).sum(2)
    log_p = (-0.5 * z.pow(2) - half_log_2pi).flatten(2).sum(2)  # (k, b)
    logits = torch.cat(
        [model.decode(zc)[0] for zc in z.flatten(0, 1).split(chunk)]
    )  # (k * b, 1, 28, 28), sample-major
    target = xb.expand(samples, *xb.shape).flatten(0, 1)
    log_px = -recon_loss(logits, target, "bce").view(samples, b)
    return (log_px + log_p - log_q).double()


@torch.no_grad()
def importance_nll(
    model: ConvVAE, x: torch.Tensor, samples: int = 1000, chunk: int = 1000,
    seed: int = 0, device: torch.device | None = None, progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Importance-sampled negative log-likelihood of each image (Burda et al. 2016).

    ``log p(x) ~ logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k``
    with ``k = samples`` draws ``z_i ~ q(z|x)``: a lower bound on ``log p(x)``
    that tightens as ``k`` grows (``k = 1``: the ELBO). ``p(x|z)`` is the
    decoder's Bernoulli cross-entropy on grey levels in [0, 1], as in training:
    comparable with ``neg_elbo``, not with published figures on binarized digits.
    ``x``: ``(N, 28, 28)`` uint8 images; ``chunk``: decodings per forward pass
    (images x samples), bounding memory.
    Returns ``(N,)`` importance-sampled NLL and ``(N,)`` the -ELBO averaged over the
    same k samples, both in nats per image.
    """
    device = device or next(model.parameters()).device
    ready(model)
    gen = torch.Generator(device=device).manual_seed(seed)
    per_pass = max(1, chunk // samples)  # images per pass
    nll, neg_elbo = [], []
    starts = range(0, len(x), per_pass)
    for start in tqdm(starts, desc="IS-NLL", disable=not progress, leave=False):
        xb = to_input(x[start : start + per_pass], device)  # (b, 1, 28, 28)
        log_w = _log_weights(model, xb, samples, chunk, gen)  # (k, b)
        nll.append(-(torch.logsumexp(log_w, 0) - np.log(samples)))
        neg_elbo.append(-log_w.mean(0))
    return torch.cat(nll).cpu().numpy(), torch.cat(neg_elbo).cpu().numpy()
