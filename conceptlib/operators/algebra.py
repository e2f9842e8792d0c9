"""Operators: edit and compose images through the concept layer.

The concept layer holds K concept channels (sigmoid maps in [0, 1], one per
catalogue concept) and the rest (ReLU channels without a concept loss). An
operator takes the layer, ``(N, C, H, W)``, and returns an edited one, which the
later decoder layers turn into an image (:func:`render`). The decoder draws from
the non-concept channels, so edits reach them too (``rest=True``), inside the
concept's *region* (its map dilated by ``dilate`` px); and a blank image already
activates them strongly, so strokes add as departures from the blank image's
layer ``base`` (:func:`blank`). Operators compose:
``move(add(remove(h, b0, a, K), p, b0, c, K), b0, c, K, 2, 0)``.

See: chapter ``ch-operators``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from conceptlib.data.mnist import IMAGE_SHAPE
from conceptlib.errors import ConceptlibError
from conceptlib.model.compose import DILATE, region_of, union_layers
from conceptlib.model.readout import (
    ConceptModel,
    as_model,
    check_images,
    layer,
    to_pixels,
)
from conceptlib.model.vae import ConvVAE

Model = ConceptModel | ConvVAE


def read(model: Model, images: np.ndarray, batch_size: int = 500) -> torch.Tensor:
    """The concept layer (activation, all C channels) of ``(N, 28, 28)`` uint8
    images, decoding ``z = mu``: ``(N, C, H, W)`` float32 on the CPU."""
    return layer(model, check_images(images, "read"), batch_size)


@torch.inference_mode()
def render(model: Model, hidden: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    """Decode concept layers ``(N, C, H, W)`` to ``(N, 28, 28)`` uint8 images."""
    net = as_model(model)
    device = next(net.parameters()).device
    out = [to_pixels(net.decode_from(hidden[i : i + batch_size].to(device)))
           for i in range(0, len(hidden), batch_size)]  # fmt: skip
    return np.concatenate(out) if out else np.zeros((0, *IMAGE_SHAPE), np.uint8)


def blank(model: Model) -> torch.Tensor:
    """The concept layer of an empty image, ``(1, C, H, W)``: where to compose."""
    return read(model, np.zeros((1, *IMAGE_SHAPE), np.uint8))


def prototypes(
    model: Model, images: np.ndarray, concepts: np.ndarray, num_concepts: int
) -> torch.Tensor:
    """``(K, C, H, W)``: the mean concept layer of each concept's ``(N, 28, 28)``
    uint8 images (held out from training; ``concepts``: their index 0 .. K - 1)."""
    hidden = read(model, images)
    out = torch.zeros((num_concepts, *hidden.shape[1:]))
    for c in range(num_concepts):
        sel = torch.from_numpy(np.asarray(concepts) == c)
        if not bool(sel.any()):
            raise ConceptlibError(f"prototypes: no image of concept {c}")
        out[c] = hidden[sel].mean(0)
    return out


def _alone(hidden: torch.Tensor, concept: int, num_concepts: int) -> torch.Tensor:
    """``(N, num_concepts)`` bool: ``concept`` present in each row of ``hidden``."""
    rows = torch.full((len(hidden),), concept, device=hidden.device)
    return F.one_hot(rows, num_concepts).bool()


def region(hidden: torch.Tensor, concept: int, dilate: int = DILATE) -> torch.Tensor:
    """The soft region ``(N, 1, H, W)`` in [0, 1] of a concept: its map, dilated
    by ``dilate`` pixels (:func:`~conceptlib.model.compose.region_of` of it alone)."""
    return region_of(hidden, _alone(hidden, concept, concept + 1), dilate)


def _check(hidden: torch.Tensor, concept: int, num_concepts: int) -> None:
    if hidden.ndim != 4:
        msg = f"expected a (N, C, H, W) layer, got {tuple(hidden.shape)}"
        raise ConceptlibError(msg)
    if not 0 <= concept < num_concepts <= hidden.shape[1]:
        msg = f"concept {concept}: not one of the {num_concepts} concept channels"
        raise ConceptlibError(msg)


def remove(
    hidden: torch.Tensor, base: torch.Tensor, concept: int, num_concepts: int,
    rest: bool = True, dilate: int = DILATE,
) -> torch.Tensor:  # fmt: skip
    """Switch ``concept`` off: its channel to the blank layer's value and, with
    ``rest``, the non-concept channels inside its region back towards the blank
    layer ``base`` (``h - region * (h - base)``)."""
    _check(hidden, concept, num_concepts)
    out = hidden.clone()
    if rest:
        m = region(hidden, concept, dilate)
        out[:, num_concepts:] -= m * (hidden[:, num_concepts:] - base[:, num_concepts:])
    out[:, concept] = base[:, concept]
    return out


def add(
    hidden: torch.Tensor, source: torch.Tensor, base: torch.Tensor, concept: int,
    num_concepts: int, rest: bool = True, dilate: int = DILATE, masked: bool = True,
) -> torch.Tensor:  # fmt: skip
    """Add ``concept`` as it appears in ``source`` (the layer of N or 1 images:
    other images, or a prototype): the concept channel becomes the pixel maximum of
    both; with ``rest``, the source's departure from the blank layer ``base`` is
    added to the other channels, inside the concept's region (``masked``) or
    everywhere (for sources that hold the one concept only: concept images,
    prototypes)."""
    _check(hidden, concept, num_concepts)
    present = _alone(hidden, concept, num_concepts)
    source = source.expand_as(hidden)
    return union_layers(hidden, source, base, present, rest, dilate, masked)


def shift(
    hidden: torch.Tensor, dx: float = 0.0, dy: float = 0.0, scale: float = 1.0
) -> torch.Tensor:
    """Translate a layer by ``(dx, dy)`` pixels (right, down) and scale it by
    ``scale`` about the centre; what moves in from outside is 0. Whole-pixel
    shifts without scaling are exact."""
    if not all(math.isfinite(v) for v in (dx, dy, scale)) or scale <= 0:
        raise ConceptlibError(
            f"shift by ({dx}, {dy}) x{scale}: needs finite numbers and a positive scale"
        )
    n, _, h, w = hidden.shape
    if scale == 1 and float(dx).is_integer() and float(dy).is_integer():
        ix, iy = int(dx), int(dy)  # exact: slice and pad with zeros
        out = torch.zeros_like(hidden)
        if abs(ix) >= w or abs(iy) >= h:
            return out
        src = hidden[:, :, max(-iy, 0) : h - max(iy, 0), max(-ix, 0) : w - max(ix, 0)]
        out[:, :, max(iy, 0) : max(iy, 0) + src.shape[2],
            max(ix, 0) : max(ix, 0) + src.shape[3]] = src  # fmt: skip
        return out
    theta = torch.tensor(
        [[1 / scale, 0.0, -2 * dx / w / scale], [0.0, 1 / scale, -2 * dy / h / scale]],
        dtype=hidden.dtype, device=hidden.device,
    ).expand(n, 2, 3)  # fmt: skip
    grid = F.affine_grid(theta, list(hidden.shape), align_corners=False)
    return F.grid_sample(hidden, grid, padding_mode="zeros", align_corners=False)


def move(
    hidden: torch.Tensor, base: torch.Tensor, concept: int, num_concepts: int,
    dx: float = 0.0, dy: float = 0.0, scale: float = 1.0, dilate: int = DILATE,
) -> torch.Tensor:  # fmt: skip
    """Move (and scale) one concept: remove it, then add it back, masked by its
    region, from the layer shifted as a whole (its departure from the blank layer
    shifted, so that the background does not move)."""
    moved = base + shift(hidden - base, dx, dy, scale)
    out = remove(hidden, base, concept, num_concepts, True, dilate)
    return add(out, moved, base, concept, num_concepts, True, dilate, masked=True)


def compose(
    base: torch.Tensor, parts: Sequence[tuple[torch.Tensor, int]], num_concepts: int,
    masked: bool = False, dilate: int = DILATE,
) -> torch.Tensor:  # fmt: skip
    """Build a layer from ``(source, concept)`` parts alone (layers of N or 1
    images), on the blank layer ``base`` (:func:`blank`). Concept channels: the
    parts' pixel maximum. The rest: the blank layer plus, element by element, the
    parts' departure from it of largest magnitude (a union of strokes, chosen over
    the sum of :func:`add` on validation concept images), limited to each concept's
    region when ``masked``."""
    if not parts:
        return base
    for source, concept in parts:
        _check(source, concept, num_concepts)
    shape = torch.broadcast_shapes(*(source.shape for source, _ in parts))
    out = base.expand(shape).clone()
    rest = torch.zeros_like(out[:, num_concepts:])
    for source, concept in parts:
        source = source.expand(shape)
        out[:, concept] = torch.maximum(out[:, concept], source[:, concept])
        delta = source[:, num_concepts:] - base[:, num_concepts:]
        if masked:
            delta = delta * region(source, concept, dilate)
        rest = torch.where(delta.abs() > rest.abs(), delta, rest)
    out[:, num_concepts:] += rest
    return out


@dataclass(frozen=True)
class Step:
    """One edit of :func:`apply`: ``remove``, ``add`` or ``move`` a concept."""

    kind: str  #: ``remove``, ``add`` or ``move``
    concept: int  #: concept index ``0 .. K - 1``
    source: np.ndarray | None = None  #: add: a (28, 28) uint8 image; None: prototype
    dx: float = 0.0  #: move: pixels to the right
    dy: float = 0.0  #: move: pixels down
    scale: float = 1.0  #: move: scale about the centre


def apply(
    model: Model, image: np.ndarray, steps: Sequence[Step], protos=None
) -> tuple[torch.Tensor, np.ndarray]:
    """Edit one ``(28, 28)`` uint8 image by ``steps``, in order: the edited layer
    ``(1, C, H, W)`` and the decoded ``(28, 28)`` uint8 image. ``protos``: the
    ``(K, C, H, W)`` :func:`prototypes`, needed by an ``add`` without a source image.
    """
    k = as_model(model).num_concepts
    base = blank(model)
    hidden = read(model, np.asarray(image, np.uint8)[None])
    for step in steps:
        if step.kind == "remove":
            hidden = remove(hidden, base, step.concept, k)
        elif step.kind == "add" and step.source is not None:
            source = read(model, np.asarray(step.source, np.uint8)[None])
            hidden = add(hidden, source, base, step.concept, k, masked=True)
        elif step.kind == "add":
            if protos is None:
                raise ConceptlibError("add from a prototype: no prototypes given")
            source = protos[step.concept : step.concept + 1]
            hidden = add(hidden, source, base, step.concept, k, masked=False)
        elif step.kind == "move":
            hidden = move(hidden, base, step.concept, k, step.dx, step.dy, step.scale)
        else:
            raise ConceptlibError(f"unknown edit {step.kind!r}")
    return hidden, render(model, hidden)[0]
