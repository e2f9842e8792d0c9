"""Reconstruction, KL and concept losses: pure functions returning per-image parts.

See: paper sections 3.1 (BCE), 3.4 (concept loss, MSE); chapter ``ch-training``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from conceptlib.config import FIRST_CONCEPT_LABEL, LossConfig
from conceptlib.data.mnist import IMAGE_SHAPE


def recon_loss(
    logits: torch.Tensor, x: torch.Tensor, kind: str = "bce"
) -> torch.Tensor:
    """Per-image reconstruction loss, summed over the 784 pixels.

    Args:
        logits: ``(B, 1, 28, 28)`` decoder output before the sigmoid.
        x: ``(B, 1, 28, 28)`` targets in [0, 1].
        kind: ``bce`` (nats per image) or ``mse`` (summed squared error per image).

    Returns:
        ``(B,)`` loss per image.
    """
    logits = logits.float()
    if kind == "bce":
        per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    else:
        per_pixel = (torch.sigmoid(logits) - x) ** 2
    return per_pixel.flatten(1).sum(1)


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-image KL(q(z|x) || N(0, I)), summed over latent elements (nats).

    Args:
        mu, logvar: ``(B, L, 7, 7)``.

    Returns:
        ``(B,)``; exactly 0 where ``mu = 0`` and ``logvar = 0``.
    """
    mu, logvar = mu.float(), logvar.float()
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).flatten(1).sum(1)


def concept_targets(
    x: torch.Tensor, labels: torch.Tensor, num_concepts: int, size: int = IMAGE_SHAPE[0]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exclusive targets for the concept channels of isolated concept images.

    For a sample of concept k, channel k should equal the concept image and every
    other concept channel should be zero. Digits (labels < 10) get no target.

    Args:
        x: ``(B, 1, 28, 28)`` images.
        labels: ``(B,)`` labels; concept k has label ``10 + k``.
        num_concepts: K.
        size: spatial size of the concept layer (images are average-pooled to it).

    Returns:
        targets ``(B, K, size, size)`` and mask ``(B,)`` (True for concept samples).
    """
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
    """Per-pixel targets of composite concept images: channel k gets its part's ink.

    Args:
        parts: ``(B, P, 28, 28)`` float images in [0, 1], the ink of each part alone.
        part_concepts: ``(B, P)`` concept index of each part (0-based), -1 for an
            empty slot; the concepts of one image are distinct.
        num_concepts: K.
        size: spatial size of the concept layer (parts are average-pooled to it).

    Returns:
        ``(B, K, size, size)``; channels of concepts absent from an image are zero.
        For one part it equals :func:`concept_targets` (exclusive targets).
    """
    if parts.shape[-1] != size:
        parts = F.adaptive_avg_pool2d(parts, size)
    present = (part_concepts >= 0).to(parts.dtype)
    onehot = F.one_hot(part_concepts.clamp(min=0), num_concepts).to(parts.dtype)
    onehot = onehot * present.unsqueeze(-1)  # (B, P, K)
    return torch.einsum("bpk,bphw->bkhw", onehot, parts)


class _TakeConcepts(torch.autograd.Function):
    """``h[rows, :k]`` whose backward writes into zeros of ``h``'s memory format.

    Autograd's own gather and slice build their gradients in the default (NCHW)
    format; under channels_last the sum with the activation's gradient then
    converts between formats, which cost more than the concept loss itself.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, rows: torch.Tensor | None, k: int):
        ctx.shape, ctx.k = h.shape, k
        ctx.channels_last = (
            h.dim() == 4
            and not h.is_contiguous()
            and h.is_contiguous(memory_format=torch.channels_last)
        )
        ctx.save_for_backward(rows)
        return h[:, :k] if rows is None else h[rows, :k]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (rows,) = ctx.saved_tensors
        fmt = torch.channels_last if ctx.channels_last else torch.contiguous_format
        out = torch.empty(
            ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=fmt
        ).zero_()
        if rows is None:
            out[:, : ctx.k] = grad
        else:
            out[rows, : ctx.k] = grad
        return out, None, None


def take_concepts(
    hidden: torch.Tensor, rows: torch.Tensor | None, num_concepts: int
) -> torch.Tensor:
    """The concept channels of ``rows`` (all rows if None): ``hidden[rows, :K]``.

    Values and gradients equal indexing's (rows are distinct), at a fraction of
    the backward's cost under channels_last (see :class:`_TakeConcepts`).
    """
    if rows is None and hidden.shape[1] == num_concepts:
        return hidden
    return _TakeConcepts.apply(hidden, rows, num_concepts)


def concept_loss(
    hidden: torch.Tensor, target: torch.Tensor, kind: str = "mse"
) -> torch.Tensor:
    """Per-image concept loss on the K concept channels, summed over their pixels.

    Summed like the reconstruction loss it stands beside.

    Args:
        hidden: ``(B, C, H, W)``, ``C >= K``: the concept-layer *activation* for
            ``mse`` (the paper's squared error), its *pre-activation* (logits of the
            sigmoid) for ``bce`` (binary cross-entropy).
        target: ``(B, K, H, W)`` in [0, 1] (:func:`concept_targets`,
            :func:`part_targets`).
        kind: ``mse`` or ``bce``.

    Returns:
        ``(B,)``; for ``mse`` exactly 0 where the concept channels equal the targets.
    """
    h = hidden if hidden.shape[1] == target.shape[1] else hidden[:, : target.shape[1]]
    h = h.float()
    if kind == "bce":
        err = F.binary_cross_entropy_with_logits(h, target.float(), reduction="none")
    else:
        err = (h - target.float()) ** 2
    return err.flatten(1).sum(1)


@dataclass
class LossParts:
    """The total loss to minimise and its batch-mean parts (floats are per image)."""

    total: torch.Tensor  # scalar, what backward() is called on
    recon: torch.Tensor  # mean recon loss per image
    kl: torch.Tensor  # mean KL per image
    concept: torch.Tensor  # mean concept loss per *concept* image (0 if none)


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
    """``mean(recon + beta * kl + lambda * concept)`` over the batch.

    The concept loss is computed on the concept images only (labels >= 10), on the
    decoding that ``out`` carries for them: ``out.mean_hidden_pre`` (the decoding of
    ``mu``, see ``loss.concept_decode``) when present, else the decoded sample.

    Args:
        out: a :class:`~conceptlib.model.vae.VAEOutput`.
        x: ``(B, 1, 28, 28)``; labels: ``(B,)``.
        cfg: loss weights; ``cfg.concept_weight`` is lambda.
        num_concepts: K.
        use_concept: add the concept loss (the concept variants) or not.
        beta: the KL weight to use now (default ``cfg.beta``; see KL warm-up).
        concept_weight: lambda now (default ``cfg.concept_weight``; see warm-up).
        target: ``(Bc, K, H, W)`` targets of the Bc concept images, in batch order
            (default: exclusive targets, :func:`concept_targets`).
    """
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
