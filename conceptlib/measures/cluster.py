"""k-means on latent images and concept-layer maps; decoded cluster centres.

See: paper sections 3.5 (step 1) and 4; chapters ``ch-augmentation``, ``ch-clustering``.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from conceptlib.data.catalogue import kmeans
from conceptlib.data.mnist import IMAGE_SHAPE, NUM_CLASSES
from conceptlib.files import atomic_write
from conceptlib.measures.likelihood import cluster_scores, match_clusters
from conceptlib.model.readout import encode_mu, layer
from conceptlib.model.vae import ConvVAE


@torch.no_grad()
def encode_features(
    model: ConvVAE, x: torch.Tensor, what: str = "latent", batch_size: int = 1000
) -> np.ndarray:
    """``(N, D)`` float32 features of ``(N, 28, 28)`` uint8 images: the
    posterior-mean latent images (``what="latent"``, D = L*7*7) or the concept
    layer decoded from them (``"hidden"``, D = C*H*W)."""
    read = encode_mu if what == "latent" else layer
    rows = read(model, x, batch_size).flatten(1).numpy()
    return rows if len(rows) else np.zeros((0, 0), np.float32)


@dataclass(frozen=True)
class Clustering:
    """A k-means clustering of one set of features: which images were clustered
    (``index``, a seeded subsample), the cluster of each (``assignment``), the
    ``(k, D)`` ``centres``, the images' true ``labels``, ``scores`` (NMI, ARI,
    purity) and the Hungarian ``matching`` ``{cluster: label}``."""

    index: np.ndarray
    assignment: np.ndarray
    centres: np.ndarray
    labels: np.ndarray
    scores: dict[str, float]
    matching: dict[int, int]

    def majority_labels(self) -> list[int]:
        """The most common true label of each cluster (clusters in order)."""
        return [
            int(np.bincount(self.labels[self.assignment == j]).argmax())
            for j in range(len(self.centres))
        ]

    def centres_by_label(self) -> tuple[np.ndarray, list[int]]:
        """Centres ordered by their matched label (unmatched clusters last)."""
        order = sorted(
            range(len(self.centres)), key=lambda c: self.matching.get(c, 1e9)
        )
        return self.centres[order], [self.matching.get(c, -1) for c in order]


def save_clusterings(clusterings: dict[str, Clustering], path: Path) -> None:
    """Named clusterings as one ``.npz`` of arrays and JSON text (no pickles)."""
    arrays = {}
    for name, c in clusterings.items():
        for key, value in vars(c).items():  # a dict as the JSON text of its items
            text = isinstance(value, dict) and json.dumps(list(value.items()))
            arrays[f"{name}.{key}"] = np.array(text) if text else value
    atomic_write(path, lambda handle: np.savez(handle, **arrays))


def load_clusterings(path: Path) -> dict[str, Clustering] | None:
    """What :func:`save_clusterings` wrote to ``path``; None if missing or cut."""

    def value(a: np.ndarray):  # an array as saved, or a dict saved as JSON text
        return dict(json.loads(str(a))) if a.dtype.kind == "U" else a

    try:
        with np.load(path, allow_pickle=False) as npz:
            read = {k: value(npz[k]) for k in npz.files}
        names = dict.fromkeys(k.split(".")[0] for k in read)  # in the order written
        keys = [f.name for f in fields(Clustering)]
        return {n: Clustering(*(read[f"{n}.{k}"] for k in keys)) for n in names} or None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def fit_kmeans(
    features: np.ndarray, labels: np.ndarray, num_clusters: int, seed: int = 0,
    n_init: int = 4, max_points: int | None = None,
) -> Clustering:  # fmt: skip
    """Cluster ``(N, D)`` ``features`` with scikit-learn k-means (``n_init``
    restarts) into ``num_clusters`` and score against ``(N,)`` ``labels``; at most
    ``max_points`` points (a random subsample; None for all); ``seed``: the
    ``random_state`` of k-means and of the subsample."""
    index = np.arange(len(features))
    if max_points is not None and len(features) > max_points:
        rng = np.random.default_rng(seed)
        index = np.sort(rng.choice(len(features), max_points, replace=False))
    km = kmeans(features[index], num_clusters, n_init, seed)
    assignment, labels = km.labels_.astype(np.int64), labels[index]
    centres = km.cluster_centers_.astype(np.float32)
    scores = cluster_scores(labels, assignment)
    matching = match_clusters(labels, assignment)
    return Clustering(index, assignment, centres, labels, scores, matching)


@torch.no_grad()
def decode_centres(
    model: ConvVAE, centres: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``(k, L*7*7)`` latent centres to images ``(k, 28, 28)`` in [0, 1]
    and concept layers ``(k, C, H, W)``."""
    device = next(model.parameters()).device
    z = torch.as_tensor(centres, device=device).view(len(centres), -1, 7, 7)
    logits, hidden = model.decode(z)
    return torch.sigmoid(logits)[:, 0].cpu().numpy(), hidden.float().cpu().numpy()


def representative_images(
    model: ConvVAE, x: torch.Tensor, y: np.ndarray, num_clusters: int = 10,
    seed: int = 0, n_init: int = 4,
) -> tuple[np.ndarray, Clustering]:  # fmt: skip
    """Section 3.5 step 1, one decoded cluster centre per digit: clusters the
    latent images, decodes the centres and matches clusters to digits (Hungarian).
    Returns the ``(10, 28, 28)`` uint8 centre of each digit (row d is digit d) and
    the clustering."""
    feats = encode_features(model, x, "latent")
    clustering = fit_kmeans(feats, y, num_clusters, seed=seed, n_init=n_init)
    images, _ = decode_centres(model, clustering.centres)
    out = np.zeros((NUM_CLASSES, *IMAGE_SHAPE), dtype=np.uint8)
    for cluster, digit in clustering.matching.items():
        if 0 <= digit < NUM_CLASSES:
            out[digit] = np.rint(images[cluster] * 255).astype(np.uint8)
    return out, clustering
