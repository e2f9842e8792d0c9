"""Probe images: held-out concept images whose per-concept ink is known, for the
vocabulary measures (:mod:`~conceptlib.measures.vocab`) and the compositional
explanations (:mod:`~conceptlib.measures.formulas`). See chapter ``ch-vocabulary``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from conceptlib.data.catalogue import (
    Catalogue,
    Composites,
    compose,
    make_concepts,
    shift_images,
)
from conceptlib.data.splits import check_split
from conceptlib.model.losses import part_targets


def part_masks(s: Composites, start: int, stop: int, k: int, size: int):
    """``(B, K, H, W)`` bool: each concept's own ink (> 127) in images
    ``start:stop``, pooled to the concept layer's ``size`` (where any pixel has ink:
    the :func:`~conceptlib.model.losses.part_targets` of the ink, above 0)."""
    ink = (torch.from_numpy(s.parts[start:stop]) > 127).float()  # (B, P, 28, 28)
    return part_targets(ink, torch.from_numpy(s.concepts[start:stop]), k, size) > 0


@dataclass(frozen=True)
class Probes:
    """Held-out probe images with known concepts and per-concept ink: probe name
    -> :class:`~conceptlib.data.catalogue.Composites` (``sets``) and what it
    holds (``descriptions``)."""

    sets: dict[str, Composites]
    descriptions: dict[str, str]


def make_probes(
    catalogue: Catalogue, x: np.ndarray, y: np.ndarray, variant_of: np.ndarray,
    size: int, seed: int, split: str = "test",
) -> Probes:  # fmt: skip
    """The four probe sets (described in the result) of ``size`` images each
    (rounded up to a multiple of K), cut from ``(N, 28, 28)`` uint8 held-out digits
    ``x`` (labels ``y``, variants ``variant_of``; ``split``: ``test`` or ``val``):
    concept images as in training, with the box sd doubled, shifted, and overlaid
    pairs of different source digit classes. Each probe draws from its own stream
    of ``seed``."""
    per = -(-size // len(catalogue))
    digits = {"test": "test digits", "val": "validation digits"}[check_split(split)]

    def cut(cat: Catalogue, stream: int):
        rng = np.random.default_rng([seed, 7, stream])
        s = make_concepts(cat, per, x, y, variant_of, rng)
        return s.x, s.y - catalogue.labels[0], rng

    def alone(images: np.ndarray, concept: np.ndarray) -> Composites:
        return Composites(images, images[:, None], concept[:, None])

    iso_x, iso_c, _ = cut(catalogue, 0)
    jit_x, jit_c, _ = cut(replace(catalogue, sd=2 * catalogue.sd), 1)
    sh_x, sh_c, rng = cut(catalogue, 2)
    sh_x, _ = shift_images(sh_x, rng, 2)
    pair_x, pair_c, rng = cut(catalogue, 3)
    pairs = compose(pair_x, pair_c, np.full(len(pair_x), 2), rng, catalogue.digit)
    return Probes(
        sets={
            "isolated": alone(iso_x, iso_c),
            "jitter": alone(jit_x, jit_c),
            "shift": alone(sh_x, sh_c),
            "pairs": pairs,
        },
        descriptions={
            "isolated": f"concept images cut from {digits}, box sd 1 px",
            "jitter": "the same with box sd 2 px",
            "shift": "isolated images shifted by a random offset in [-2, 2] px "
            "per axis",
            "pairs": "two concept images of different source digit classes, from "
            f"different {digits}, overlaid (pixel maximum)",
        },
    )
