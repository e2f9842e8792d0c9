"""The whole pipeline of the paper, step by step, for one config and one seed.

:class:`Pipeline` computes each step on first use and keeps it (``pipe.catalogue``,
``pipe.baseline``, ``pipe.run("concept")``, ``pipe.metrics()``...); trained variants
come from the run cache when present. Steps [paper section]: the digits and their
70/30 split [3.2]; the baseline [3.1]; representatives [3.5 step 1]; concept images
[3.3, 3.5]; the other variants [3.4]; measures on the splits and the vocabulary
probes (:mod:`~conceptlib.experiment.measures`); the four clusterings of section 4.
The data live in :mod:`~conceptlib.experiment.data`.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from conceptlib.config import VARIANTS, ExperimentConfig, variant_config
from conceptlib.data.mnist import MNIST, NUM_CLASSES
from conceptlib.experiment.measures import SPLITS, PipelineMeasures
from conceptlib.measures.cluster import (
    Clustering,
    decode_centres,
    encode_features,
    fit_kmeans,
    load_clusterings,
    save_clusterings,
)
from conceptlib.model import variants
from conceptlib.model.readout import ConceptModel, load_concept_model
from conceptlib.train.loop import Run, get_or_train, run_folder
from conceptlib.train.runtime import resolve_device, resolve_precision

CLUSTERINGS = {
    "digits_latent": "1. latent images of training digits (labels 0-9), 10 clusters",
    "concepts_latent": "2. latent images of training concepts (labels 10-27), "
    "K clusters",
    "layer3_with_concept_loss": "3. concept-layer maps of training concepts, "
    "concept_paper variant (the paper's method), K clusters",
    "layer3_without_concept_loss": "4. concept-layer maps of training concepts, "
    "augmented variant, K clusters",
}
#: The variants of section 4's clusterings: with and without a concept loss.
WITH_LOSS, WITHOUT_LOSS = "concept_paper", "augmented"
__all__ = ["CLUSTERINGS", "Pipeline", "SPLITS", "seed_model"]


class Pipeline(PipelineMeasures):
    """One config (its ``seed`` used throughout), every step of the paper, computed on
    demand. ``device``: ``auto``, ``cpu``, ``cuda`` or a :class:`torch.device`;
    ``cache_dir``: the run cache; ``mnist``: an already loaded :class:`MNIST` (else
    ``cfg.data.source`` is read); ``recipe``: ``section.key=value`` overrides of
    ``concept_paper``'s fixed recipe (:func:`~conceptlib.config.variant_config`),
    keyed by the run cache."""

    def __init__(
        self, cfg: ExperimentConfig, device: str | torch.device = "auto",
        cache_dir: str | Path = "runs", progress: bool = True,
        mnist: MNIST | None = None, recipe: tuple[str, ...] | list[str] = (),
    ) -> None:  # fmt: skip
        dev = device if isinstance(device, torch.device) else resolve_device(device)
        self.device, self.cfg = dev, resolve_precision(cfg, dev)  # precision=auto
        self.cache_dir = Path(cache_dir)
        self.progress = progress
        self._mnist = mnist
        self.recipe = tuple(recipe)
        if self.recipe:
            for v in VARIANTS:  # a bad override stops here
                self.variant_config(v)
        self._runs: dict[str, Run] = {}
        self._recorded: dict[str, Any] = {}
        self._latents: dict[str, Any] = {}  # variant -> its latent baseline

    @cached_property
    def baseline(self) -> Run:
        """The baseline VAE, trained on the training split of the digits only."""
        return self.run("baseline")

    def variant_config(self, variant: str) -> ExperimentConfig:
        """``variant``'s config: :func:`variant_config` with :attr:`recipe`."""
        return variant_config(self.cfg, variant, self.recipe)

    def run(self, variant: str) -> Run:
        """The trained ``variant`` (from the run cache, or trained now)."""
        variants.get(variant)  # ValueError for an unknown name
        if variant not in self._runs:
            train = self.dataset(variant, "train")
            self._runs[variant] = get_or_train(
                self.variant_config(variant), variant, train.x, train.y,
                len(self.catalogue), cache_dir=self.cache_dir, device=self.device,
                progress=self.progress, parts=train.parts,
            )  # fmt: skip
        return self._runs[variant]

    def training_plan(self) -> dict[str, int]:
        """Image-steps (training images x epochs) of each variant not yet in the run
        cache, from the config alone: no model is trained or loaded."""
        c = self.cfg
        keep = 1 - c.data.val_fraction
        digits = min(c.data.num_train_digits, len(self.mnist.y_train)) * keep
        concepts = c.concepts.per_concept * len(self.catalogue) * keep
        plan = {}
        for v in VARIANTS:
            folder = run_folder(self.cache_dir, self.variant_config(v), v, self.device)
            if not (folder / "model.pt").exists():
                images = digits + (concepts if variants.get(v).sees_concepts else 0)
                plan[v] = round(images * c.train.num_epochs)
        return plan

    @cached_property
    def clusterings(self) -> dict[str, Clustering]:
        """The four clusterings of section 4, on seeded subsamples of the training
        images of ``augmented`` (isolated concepts, as in the paper); kept in the
        run cache by config, seed and recipe (chapters read what ``reproduce`` made)."""
        cache = self.cache_file("clusterings", "npz", recipe=self.recipe)
        if (found := load_clusterings(cache)) is not None:
            return found
        c, k = self.cfg.cluster, len(self.catalogue)
        train = self.dataset(WITHOUT_LOSS, "train")
        y = train.y.numpy()
        digit_idx, concept_idx = (np.flatnonzero(keep) for keep in (y < 10, y >= 10))
        digit_idx = digit_idx[self.subsample(len(digit_idx))]
        concept_idx = concept_idx[self.subsample(len(concept_idx))]
        jobs = {
            "digits_latent": (WITH_LOSS, digit_idx, "latent", NUM_CLASSES),
            "concepts_latent": (WITH_LOSS, concept_idx, "latent", k),
            "layer3_with_concept_loss": (WITH_LOSS, concept_idx, "hidden", k),
            "layer3_without_concept_loss": (WITHOUT_LOSS, concept_idx, "hidden", k),
        }
        out = {}
        for name, (variant, idx, what, num) in jobs.items():
            feats = encode_features(self.run(variant).model, train.x[idx], what)
            out[name] = fit_kmeans(feats, y[idx], num, seed=c.seed, n_init=c.n_init)
        save_clusterings(out, cache)
        return out

    def decoded_centres(self, name: str) -> tuple[np.ndarray, list[int]]:
        """Pictures of a clustering's centres, ordered by matched label: latent
        centres decoded, concept-layer centres as the maximum over concept channels."""
        centres, labels = self.clusterings[name].centres_by_label()
        model = self.run(WITH_LOSS).model
        if name.endswith("latent"):
            images, _ = decode_centres(model, centres)
            return images, labels
        size = model.concept_size
        maps = centres.reshape(len(centres), -1, size, size)
        return maps[:, : len(self.catalogue)].max(axis=1), labels


def seed_model(
    checkpoint: str | Path, seed: int, cache: str | Path, variant: str | None = None
) -> tuple[Pipeline, ConceptModel]:
    """The pipeline of a checkpoint's config at ``seed``, and the model of that
    seed: the checkpoint itself at its own seed, else ``variant`` (default: the
    checkpoint's file name) trained with the stored config, only ``seed``
    changed (or loaded from the run cache ``cache``)."""
    committed = load_concept_model(checkpoint)
    cfg = dataclasses.replace(committed.cfg, seed=seed)
    pipe = Pipeline(cfg, device="cpu", cache_dir=cache, progress=True)
    if seed == committed.cfg.seed:
        return pipe, committed
    return pipe, pipe.concept_model(variant or Path(checkpoint).stem)
