"""The data a pipeline holds: digits, their splits, the concept images and the
image sets each variant trains and is measured on (paper sections 3.2, 3.3, 3.5).

The 30 % of the digit split are the validation digits (:mod:`conceptlib.data.splits`):
no variant trains on them, and nothing a variant trains on is cut from or fitted
on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from conceptlib.config import ExperimentConfig
from conceptlib.data import catalogue as cat
from conceptlib.data.catalogue import Catalogue, Composites, ConceptSet, VariantModel
from conceptlib.data.mnist import IMAGE_SHAPE, MNIST, load_mnist
from conceptlib.data.splits import HELD_SPLITS, HeldDigits, check_split
from conceptlib.measures.cluster import Clustering, representative_images
from conceptlib.model import variants
from conceptlib.train.loop import Run


def subsample_stratified(y: np.ndarray, num: int, seed: int) -> np.ndarray:
    """Sorted indices of a stratified subsample of ``num`` items (all if fewer)."""
    if num >= len(y):
        return np.arange(len(y))
    keep, _ = cat.stratified_split(y, 1.0 - num / len(y), seed)
    return keep


@dataclass(frozen=True)
class ImageSet:
    """Images ``x`` ``(N, 28, 28)`` uint8 and labels ``y`` ``(N,)`` int64 (0-9 digits,
    10+ concepts) as tensors; ``parts``: None, or ``(N, P, 28, 28)`` uint8 ink of
    each image's concept parts and ``(N, P)`` their concept indices (-1: none)."""

    x: torch.Tensor
    y: torch.Tensor
    parts: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def of(cls, *parts: tuple[np.ndarray, np.ndarray]) -> ImageSet:
        """Concatenate ``(x, y)`` numpy pairs."""
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts]).astype(np.int64)
        return cls(torch.from_numpy(x), torch.from_numpy(y))

    @classmethod
    def with_composites(cls, digits, comp: Composites, y: np.ndarray) -> ImageSet:
        """``(x, y)`` digits, then composite concept images (labelled by part 0)."""
        base = cls.of(digits, (comp.x, y))
        n, p = len(digits[1]), comp.parts.shape[1]
        parts = np.concatenate([np.zeros((n, p, *IMAGE_SHAPE), np.uint8), comp.parts])
        which = np.concatenate([np.full((n, p), -1, np.int64), comp.concepts])
        return cls(base.x, base.y, (torch.from_numpy(parts), torch.from_numpy(which)))

    def __len__(self) -> int:
        return len(self.y)

    def counts(self) -> dict[str, int]:
        """Number of digit and concept images."""
        num_digits = int((self.y < 10).sum())
        return {"digits": num_digits, "concepts": len(self) - num_digits}


class PipelineData:
    """The data of one config and seed, each piece computed on first use.

    The representatives (hence the concept images) need the trained baseline:
    :meth:`run` is the subclass's (:class:`~conceptlib.experiment.pipeline.Pipeline`).
    """

    cfg: ExperimentConfig
    _mnist: MNIST | None

    def run(self, variant: str) -> Run:
        raise NotImplementedError

    @cached_property
    def mnist(self) -> MNIST:
        """The full MNIST as loaded from ``cfg.data.source``."""
        return self._mnist or load_mnist(self.cfg.data.source)

    @cached_property
    def digits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``x_train, y_train, x_test, y_test`` after the configured subsampling."""
        d, m = self.cfg.data, self.mnist
        tr = subsample_stratified(m.y_train, d.num_train_digits, d.split_seed)
        te = subsample_stratified(m.y_test, d.num_test_digits, d.split_seed)
        return m.x_train[tr], m.y_train[tr], m.x_test[te], m.y_test[te]

    @cached_property
    def digit_split(self) -> tuple[np.ndarray, np.ndarray]:
        """The stratified 70/30 split of the training digits (shared by variants)."""
        d = self.cfg.data
        return cat.stratified_split(self.digits[1], d.val_fraction, d.split_seed)

    def _split_digits(self, which: int, name: str) -> HeldDigits:
        x, y, _, _ = self.digits
        idx = self.digit_split[which]
        return HeldDigits(x[idx], y[idx], self.train_variants[idx], name)

    @cached_property
    def train_digits(self) -> HeldDigits:
        """The training split's digits (70 %): the only digits variants learn from."""
        return self._split_digits(0, "train")

    @cached_property
    def val_digits(self) -> HeldDigits:
        """The validation digits (30 %), held out of training; choices read them."""
        return self._split_digits(1, "val")

    @cached_property
    def test_digits(self) -> HeldDigits:
        """The test digits, read once, for the reported numbers."""
        _, _, x, y = self.digits
        return HeldDigits(x, y, self.variants.assign(x, y), "test")

    def held_digits(self, split: str) -> HeldDigits:
        """The digits of ``split``: ``train`` (70 %), ``val`` (30 %) or ``test``."""
        check_split(split, ("train", *HELD_SPLITS))
        return getattr(self, f"{split}_digits")

    @cached_property
    def catalogue(self) -> Catalogue:
        """The concept catalogue named by ``cfg.concepts.catalogue``."""
        return cat.load_catalogue(self.cfg.concepts.catalogue)

    @cached_property
    def variants(self) -> VariantModel:
        """The 2-means digit variants (e.g. open and closed 4), fitted on the
        training split's digits (the validation digits are only assigned)."""
        x, y, _, _ = self.digits
        idx, seed = self.digit_split[0], self.cfg.data.split_seed
        return cat.fit_variants(x[idx], y[idx], self.catalogue, seed)

    @cached_property
    def train_variants(self) -> np.ndarray:
        """``(N,)`` the digit variant of each training digit (both splits)."""
        x, y, _, _ = self.digits
        return self.variants.assign(x, y)

    @cached_property
    def representatives(self) -> tuple[np.ndarray, Clustering]:
        """Section 3.5 step 1: ``(10, 28, 28)`` uint8 decoded centre per digit,
        clustered from the training split's digits by the baseline."""
        train, c = self.train_digits, self.cfg
        return representative_images(
            self.run("baseline").model, torch.from_numpy(train.x), train.y,
            num_clusters=c.concepts.num_clusters, seed=c.cluster.seed,
            n_init=c.cluster.n_init,
        )  # fmt: skip

    @cached_property
    def concepts(self) -> ConceptSet:
        """The training concept images (section 3.5), cut from the training
        split's digits only."""
        train, c = self.train_digits, self.cfg.concepts
        rng = np.random.default_rng([self.cfg.seed, 1])
        return cat.make_concepts(
            self.catalogue, c.per_concept, train.x, train.y, train.variants, rng,
            centres=self.representatives[0], p_train=c.p_train,
        )  # fmt: skip

    def _cut_held(self, digits: HeldDigits, stream: int) -> ConceptSet:
        """Held-out concept images cut from ``digits`` only (no centres), drawn
        from the seed's generator ``stream``."""
        rng = np.random.default_rng([self.cfg.seed, stream])
        n = self.cfg.concepts.test_per_concept
        return cat.make_concepts(
            self.catalogue, n, digits.x, digits.y, digits.variants, rng
        )

    @cached_property
    def test_concepts(self) -> ConceptSet:
        """Held-out concept images, cut from the test digits only."""
        return self._cut_held(self.test_digits, 2)

    @cached_property
    def val_concepts(self) -> ConceptSet:
        """Held-out concept images, cut from the validation digits only."""
        return self._cut_held(self.val_digits, 12)

    def held_concepts(self, split: str) -> ConceptSet:
        """Held-out concept images cut from the ``val`` or ``test`` digits."""
        return getattr(self, f"{check_split(split)}_concepts")

    @cached_property
    def concept_split(self) -> tuple[np.ndarray, np.ndarray]:
        """The stratified 70/30 split of the concept images."""
        d = self.cfg.data
        return cat.stratified_split(self.concepts.y, d.val_fraction, d.split_seed)

    @cached_property
    def composites(self) -> Composites:
        """The training split's concept images for a variant trained on composites:
        each shifted by up to ``concepts.train_shift`` px per axis, then with
        probability ``concepts.composite_fraction`` overlaid (pixel maximum) with 1
        to ``max_parts - 1`` images of other concepts; the others keep one part."""
        c, seed, idx = self.cfg.concepts, self.cfg.seed, self.concept_split[0]
        x, rng = self.concepts.x[idx], np.random.default_rng([seed, 4])
        if c.train_shift:
            x, _ = cat.shift_images(x, np.random.default_rng([seed, 5]), c.train_shift)
        composite = rng.random(len(x)) < c.composite_fraction
        extra = rng.integers(1, c.max_parts, size=len(x))  # 1 .. max_parts - 1
        num_parts = np.where(composite, 1 + extra, 1)
        concept = self.concepts.y[idx] - self.catalogue.labels[0]
        return cat.compose(x, concept, num_parts, rng, max_parts=c.max_parts)

    def dataset(self, variant: str, split: str) -> ImageSet:
        """The images ``variant`` (its :attr:`~conceptlib.model.variants.Variant.data`)
        trains on (``split="train"``) or is evaluated on: ``val`` (its own 30 %:
        validation digits and, if it sees concepts, the 30 % of the training concept
        images), ``val_digits``, ``val_concepts`` (cut from the validation digits),
        ``test_digits`` or ``test_concepts``."""
        if split in ("test_digits", "test_concepts", "val_digits", "val_concepts"):
            held = getattr(self, split)  # the property of that name
            return ImageSet.of((held.x, held.y))
        if split not in ("train", "val"):
            raise ValueError(f"unknown split {split!r}")
        spec = variants.get(variant)
        x, y, _, _ = self.digits
        which = {"train": 0, "val": 1}[split]
        d_idx = self.digit_split[which]
        if spec.data == variants.COMPOSITES and split == "train":
            labels = self.concepts.y[self.concept_split[0]]
            digits = (x[d_idx], y[d_idx])
            return ImageSet.with_composites(digits, self.composites, labels)
        parts = [(x[d_idx], y[d_idx])]
        if spec.sees_concepts:
            c_idx = self.concept_split[which]
            parts.append((self.concepts.x[c_idx], self.concepts.y[c_idx]))
        return ImageSet.of(*parts)

    def subsample(self, num: int) -> np.ndarray:
        """Sorted indices of at most ``cluster.max_points`` of ``num`` items,
        drawn from the cluster seed and the seed."""
        cap = self.cfg.cluster.max_points
        if num <= cap:
            return np.arange(num)
        rng = np.random.default_rng([self.cfg.cluster.seed, self.cfg.seed])
        return np.sort(rng.choice(num, cap, replace=False))
