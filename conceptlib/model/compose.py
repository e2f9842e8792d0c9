"""How two concept layers combine: the one union rule of the operators' ``add``
and of the training's union term (``loss.union_weight``).

A layer ``(N, C, H, W)`` holds K concept channels, then the rest. The union of a
layer ``hidden`` with a ``source`` layer, for the concepts ``present`` in the
source: each present concept's channel is the pixel maximum of both; the rest of
the layer gains the source's departure from the blank image's layer ``base``, inside
the present concepts' region (their maps dilated by ``dilate`` px) when ``masked``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Dilation of a concept's region, in pixels, for the edits of the non-concept
#: channels (a map marks the stroke's centre; the rest of the layer spreads wider).
DILATE = 1


def region_of(
    source: torch.Tensor, present: torch.Tensor, dilate: int = DILATE
) -> torch.Tensor:
    """``(N, 1, H, W)`` in [0, 1]: the pixel maximum of the ``present`` (``(N, K)``
    bool) concepts' maps of ``source``, dilated by ``dilate`` px (a maximum filter)."""
    k = present.shape[1]
    on = present[:, :, None, None].to(source.dtype)
    m = (source[:, :k].clamp(0, 1) * on).amax(1, keepdim=True)
    if dilate > 0:
        m = F.max_pool2d(m, 2 * dilate + 1, stride=1, padding=dilate)
    return m


def union_layers(
    hidden: torch.Tensor,
    source: torch.Tensor,
    base: torch.Tensor,
    present: torch.Tensor,
    rest: bool = True,
    dilate: int = DILATE,
    masked: bool = True,
) -> torch.Tensor:
    """The union of ``hidden`` and ``source`` (both ``(N, C, H, W)``; ``base``:
    ``(1, C, H, W)``) for the concepts ``present`` (``(N, K)`` bool); the rest of
    the layer edited only with ``rest``. Differentiable: the training's union
    term decodes it."""
    k = present.shape[1]
    on = present[:, :, None, None]
    concepts = torch.where(
        on, torch.maximum(hidden[:, :k], source[:, :k]), hidden[:, :k]
    )
    if not rest:
        return torch.cat([concepts, hidden[:, k:]], 1)
    delta = source[:, k:] - base[:, k:]
    if masked:
        delta = delta * region_of(source, present, dilate)
    return torch.cat([concepts, hidden[:, k:] + delta], 1)
