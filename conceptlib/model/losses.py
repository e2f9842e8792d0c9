"""Reconstruction, KL and concept losses: pure functions returning per-image parts.

See: paper sections 3.1 (BCE), 3.4 (concept loss, MSE); chapter ``ch-training``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from conceptlib.config import FIRST_CONCEPT_LABEL, LossConfig
from conceptlib.data.mnist import IMAGE_SHAPE
from conceptlib.model.compose import union_layers


def recon_loss(
    logits: torch.Tensor, x: torch.Tensor, kind: str = "bce"
) -> torch.Tensor:
    """``(B,)`` reconstruction loss of pre-sigmoid ``logits`` against ``x`` in [0, 1],
    summed over the pixels: ``bce`` (nats) or ``mse`` (squared error)."""
    logits = logits.float()
    if kind == "bce":
        per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    else:
        per_pixel = (torch.sigmoid(logits) - x) ** 2
    return per_pixel.flatten(1).sum(1)


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``(B,)`` KL(q(z|x) || N(0, I)) in nats, summed over latent elements; exactly 0
    where ``mu = 0`` and ``logvar = 0``."""
    mu, logvar = mu.float(), logvar.float()
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).flatten(1).sum(1)


def concept_targets(
    x: torch.Tensor, labels: torch.Tensor, num_concepts: int, size: int = IMAGE_SHAPE[0]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exclusive targets ``(B, K, size, size)`` of isolated concept images, and
    the mask ``(B,)`` of concept images (digits get no target): channel k of an image
    of concept k (label ``10 + k``) is the image (average-pooled to ``size``), the
    others zero."""
    mask = labels >= FIRST_CONCEPT_LABEL
    k = (labels - FIRST_CONCEPT_LABEL).clamp(min=0, max=num_concepts - 1)
    img = x if x.shape[-1] == size else F.adaptive_avg_pool2d(x, size)
    onehot = F.one_hot(k, num_concepts).to(img.dtype) * mask.unsqueeze(1).to(img.dtype)
    return onehot[:, :, None, None] * img, mask  # (B, K, size, size)


def part_targets(
    parts: torch.Tensor,
    part_concepts: torch.Tensor,
    num_concepts: int,
    size: int = IMAGE_SHAPE[0],
) -> torch.Tensor:
    """``(B, K, size, size)`` per-pixel targets of composite concept images from
    ``parts`` (``(B, P, 28, 28)``, each part's ink alone in [0, 1]) and
    ``part_concepts`` (``(B, P)``, each part's distinct concept; -1: empty): channel
    k gets its part's ink, zero if absent (one part: :func:`concept_targets`)."""
    if parts.shape[-1] != size:
        parts = F.adaptive_avg_pool2d(parts, size)
    present = (part_concepts >= 0).to(parts.dtype)
    onehot = F.one_hot(part_concepts.clamp(min=0), num_concepts).to(parts.dtype)
    onehot = onehot * present.unsqueeze(-1)  # (B, P, K)
    return torch.einsum("bpk,bphw->bkhw", onehot, parts)


class _TakeConcepts(torch.autograd.Function):
    """``h[rows, :k]`` whose backward writes into zeros of ``h``'s memory format
    (autograd's own build NCHW gradients: under channels_last the conversion costs
    more than the concept loss)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, rows: torch.Tensor | None, k: int):
        ctx.shape, ctx.k, ctx.fmt = h.shape, k, torch.contiguous_format
        if h.dim() == 4 and not h.is_contiguous():
            if h.is_contiguous(memory_format=torch.channels_last):
                ctx.fmt = torch.channels_last
        ctx.save_for_backward(rows)
        return h[:, :k] if rows is None else h[rows, :k]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (rows,) = ctx.saved_tensors
        out = torch.empty(
            ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.fmt
        ).zero_()
        out[slice(None) if rows is None else rows, : ctx.k] = grad
        return out, None, None


def take_concepts(
    hidden: torch.Tensor, rows: torch.Tensor | None, num_concepts: int
) -> torch.Tensor:
    """``hidden[rows, :K]`` (all rows if None): indexing's values and gradients, at
    a fraction of the backward's cost under channels_last."""
    if rows is None and hidden.shape[1] == num_concepts:
        return hidden
    return _TakeConcepts.apply(hidden, rows, num_concepts)


def concept_loss(
    hidden: torch.Tensor, target: torch.Tensor, kind: str = "mse"
) -> torch.Tensor:
    """``(B,)`` concept loss of ``hidden`` (``(B, C, H, W)``, ``C >= K``: the concept
    layer's *activation* for ``mse``, the paper's, its *pre-activation* for ``bce``)
    against ``target`` (``(B, K, H, W)`` in [0, 1]), summed over the K channels'
    pixels."""
    h = hidden if hidden.shape[1] == target.shape[1] else hidden[:, : target.shape[1]]
    h = h.float()
    if kind == "bce":
        err = F.binary_cross_entropy_with_logits(h, target.float(), reduction="none")
    else:
        err = (h - target.float()) ** 2
    return err.flatten(1).sum(1)


@dataclass
class LossParts:
    """The ``total`` loss to minimise, and the batch means of ``recon`` and ``kl`` per
    image, of ``concept`` per *concept* image (0 if none) and of the union term per
    pair (None without one, :func:`union_loss`)."""

    total: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    concept: torch.Tensor
    union: torch.Tensor | None = None


def total_loss(
    out,
    x: torch.Tensor,
    labels: torch.Tensor,
    cfg: LossConfig,
    num_concepts: int,
    use_concept: bool,
    beta: float | None = None,
    concept_weight: float | None = None,
    target: torch.Tensor | None = None,
) -> LossParts:
    """``mean(recon + beta * kl + lambda * concept)`` over the batch (``out``: a
    :class:`~conceptlib.model.vae.VAEOutput`; ``beta``, ``concept_weight``: the
    weights now, default ``cfg``'s: see the warm-ups). The concept loss reads the
    concept images only (labels >= 10), decoded from ``mu`` (``out.mean_hidden_pre``,
    ``loss.concept_decode``) when ``out`` carries it, else from the sample; it is
    added only if ``use_concept``. ``target``: ``(Bc, K, H, W)``, the Bc concept
    images' targets in batch order (default: :func:`concept_targets`)."""
    recon = recon_loss(out.logits, x, cfg.recon)
    kl = kl_loss(out.mu, out.logvar)
    per_image = recon + (cfg.beta if beta is None else beta) * kl
    rows = (labels >= FIRST_CONCEPT_LABEL).nonzero().squeeze(1)
    if out.mean_hidden_pre is not None:  # already the concept rows only
        hidden = out.mean_hidden_pre if cfg.concept_loss == "bce" else out.mean_hidden
        hidden = take_concepts(hidden, None, num_concepts)
    else:
        hidden = out.hidden_pre if cfg.concept_loss == "bce" else out.hidden
        hidden = take_concepts(hidden, rows, num_concepts)
    if target is None:
        target, _ = concept_targets(
            x[rows], labels[rows], num_concepts, hidden.shape[-1]
        )
    with torch.set_grad_enabled(use_concept and torch.is_grad_enabled()):
        concept_rows = concept_loss(hidden, target, cfg.concept_loss)
        concept = torch.zeros(len(labels), dtype=concept_rows.dtype, device=x.device)
        concept = concept.index_put((rows,), concept_rows)
    if use_concept:
        weight = cfg.concept_weight if concept_weight is None else concept_weight
        per_image = per_image + weight * concept
    num_concept = rows.numel() if rows.numel() else 1
    return LossParts(
        total=per_image.mean(),
        recon=recon.detach().mean(),
        kl=kl.detach().mean(),
        concept=concept.detach().sum() / num_concept,
    )


def union_loss(
    model,
    mu: torch.Tensor,
    x: torch.Tensor,
    labels: torch.Tensor,
    present: torch.Tensor,
    concept_hidden: torch.Tensor | None = None,
) -> torch.Tensor:
    """The union term: mean BCE (nats per pair) of the decoded union (unmasked, as
    the operators add an image, :func:`~conceptlib.model.compose.union_layers`) of
    the layers from ``mu`` of the batch's i-th digit and i-th concept image (the batch
    is shuffled) against the pixel maximum of the two. ``model``: the ConvVAE, not a
    DDP wrapper; ``present``: ``(Bc, K)`` bool, each concept image's concepts;
    ``concept_hidden``: the concept images' layers from ``mu`` in batch order, when
    the forward pass has them already (``out.mean_hidden``), else decoded here."""
    digits = (labels < FIRST_CONCEPT_LABEL).nonzero().squeeze(1)
    concepts = (labels >= FIRST_CONCEPT_LABEL).nonzero().squeeze(1)
    m = min(len(digits), len(concepts))
    if m == 0:
        return mu.new_zeros(()).float()
    d, c = digits[:m], concepts[:m]
    blank = model.encode(torch.zeros_like(x[:1]))[0]
    if concept_hidden is None:
        hidden = model.concept_act(model.decode_to(torch.cat([mu[d], mu[c], blank])))
        hd, hs, base = hidden[:m], hidden[m : 2 * m], hidden[2 * m :]
    else:
        hidden = model.concept_act(model.decode_to(torch.cat([mu[d], blank])))
        hd, hs, base = hidden[:m], concept_hidden[:m], hidden[m:]
    union = union_layers(hd, hs, base, present[:m], masked=False)
    return recon_loss(model.decode_from(union), torch.maximum(x[d], x[c])).mean()


def present_concepts(
    labels: torch.Tensor, part_concepts: torch.Tensor | None, num_concepts: int
) -> torch.Tensor:
    """``(Bc, K)`` bool: the concepts in each concept image of the batch (labels
    ``>= 10``), from its parts' concepts ``(Bc, P)`` (-1: none) or, without parts,
    from its label."""
    if part_concepts is None:
        k = labels[labels >= FIRST_CONCEPT_LABEL] - FIRST_CONCEPT_LABEL
        return F.one_hot(k, num_concepts).bool()
    onehot = F.one_hot(part_concepts.clamp(min=0), num_concepts).bool()
    return (onehot & (part_concepts >= 0).unsqueeze(-1)).any(1)
