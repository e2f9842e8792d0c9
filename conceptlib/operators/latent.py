"""The latent baseline of the operators: edits of the 7x7 latent image ``mu``.

A concept is removed by subtracting a direction from a digit's ``mu`` and added
by adding it (times a ``step``). The directions, per concept (``kind``):

- ``class``: the mean ``mu`` of training digits holding the concept (its source
  class and variant) minus that of all other digits, over the whole latent;
- ``class_local``: the same, kept inside the concept's region of the latent (the
  4x4-pixel cells its catalogue box touches);
- ``image_local``: the mean ``mu`` of concept images of the concept minus the
  blank image's, inside the same region.

:func:`~conceptlib.operators.evaluate.choose_latent` picks the kind and step on
validation digits; the chosen one stands beside the layer operators.

See: chapter ``ch-operators``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from conceptlib.data.catalogue import Catalogue
from conceptlib.data.mnist import IMAGE_SHAPE
from conceptlib.model.readout import ConceptModel, encode_mu, to_pixels
from conceptlib.model.vae import LATENT_SIZE

#: The kinds of direction and the steps :func:`~conceptlib.operators.evaluate.
#: choose_latent` chooses from.
KINDS = ("class", "class_local", "image_local")
STEPS = (0.5, 1.0, 2.0, 4.0)


def box_cells(catalogue: Catalogue) -> torch.Tensor:
    """``(K, 1, 7, 7)``: 1 on the latent cells (4x4 pixels each) that each
    concept's mean catalogue box touches, else 0."""
    cell = IMAGE_SHAPE[0] // LATENT_SIZE
    out = torch.zeros((len(catalogue), 1, LATENT_SIZE, LATENT_SIZE))
    for k, (x, y, w, h) in enumerate(np.asarray(catalogue.box, float)):
        rows = slice(int(y // cell), int(np.ceil((y + h) / cell)))
        cols = slice(int(x // cell), int(np.ceil((x + w) / cell)))
        out[k, 0, rows, cols] = 1.0
    return out


@dataclass(frozen=True)
class LatentEdits:
    """Per-concept latent directions of one model, the blank image's latent, and
    the kind and step of the edits (:data:`KINDS`, :data:`STEPS`)."""

    model: ConceptModel
    directions: torch.Tensor  #: (K, L, 7, 7) mean mu with minus without
    blank: torch.Tensor  #: (1, L, 7, 7)
    images: torch.Tensor | None = None  #: (K, L, 7, 7) concept images minus blank
    kind: str = "class"
    step: float = 1.0

    def delta(self, concepts: np.ndarray) -> torch.Tensor:
        """``(N, L, 7, 7)``: what adding each row's concept adds to ``mu``."""
        idx = torch.as_tensor(np.asarray(concepts), dtype=torch.long)
        d = (self.images if self.kind.startswith("image") else self.directions)[idx]
        if self.kind.endswith("local"):
            d = d * box_cells(self.model.catalogue)[idx]
        return d if self.step == 1.0 else self.step * d

    def variants(self) -> list[LatentEdits]:
        """This baseline under every kind (those with directions) and step."""
        kinds = KINDS if self.images is not None else KINDS[:2]
        return [dataclasses.replace(self, kind=k, step=s) for k in kinds for s in STEPS]

    @property
    def name(self) -> str:
        """``<kind> x<step>``."""
        return f"{self.kind} x{self.step:g}"

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> np.ndarray:
        net = self.model.model
        device = next(net.parameters()).device
        return to_pixels(net.decode(z.to(device))[0])


def latent_directions(
    cm: ConceptModel, x: np.ndarray, y: np.ndarray, variants: np.ndarray,
    concept_images: tuple[np.ndarray, np.ndarray] | None = None,
) -> LatentEdits:  # fmt: skip
    """Mean latent of training digits holding each concept (its source class and
    variant) minus the mean latent of all others; zero for a concept that no digit
    (or every digit) holds, so that its latent edits change nothing. With
    ``concept_images`` (images and their concept ``0..K-1``), also each concept's
    mean image latent minus the blank image's (zero where it has none)."""
    mu, cat = encode_mu(cm, x), cm.catalogue
    dirs = mu.new_zeros((len(cat), *mu.shape[1:]))
    for c in range(len(cat)):
        has = torch.from_numpy((y == cat.digit[c]) & (variants == cat.variant[c]))
        if has.any() and not has.all():  # else no contrast: zero, the edit does nothing
            dirs[c] = mu[has].mean(0) - mu[~has].mean(0)
    blank = encode_mu(cm, np.zeros((1, *IMAGE_SHAPE), np.uint8))
    images = None
    if concept_images is not None:
        cz, concepts = encode_mu(cm, concept_images[0]), np.asarray(concept_images[1])
        images = torch.zeros_like(dirs)
        for c in np.unique(concepts):
            images[c] = cz[torch.from_numpy(concepts == c)].mean(0) - blank[0]
    return LatentEdits(cm, dirs, blank, images)
