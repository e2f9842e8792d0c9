"""Figures (the paper's Figures 2-6): arrays in, a matplotlib ``Figure`` out."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torchvision.utils import make_grid

from conceptlib.data.mnist import NUM_CLASSES
from conceptlib.files import atomic_write_bytes


def _unit(images: np.ndarray) -> np.ndarray:
    """``images`` as float32 in [0, 1] (uint8 grey levels are divided by 255)."""
    images = np.asarray(images, dtype=np.float32)
    return images / 255.0 if images.max() > 1 else images


def _grid(n: int, ncols: int, width: float, height: float) -> tuple[Figure, list]:
    """``n`` panels of ``width`` x ``height`` inches, ``ncols`` a row: the figure
    and the ``n`` axes in reading order (all hidden)."""
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * width, nrows * height), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def plot_images(
    images: np.ndarray,
    titles: Sequence[str] | None = None,
    ncols: int = 10,
    size: float = 1.3,
    suptitle: str | None = None,
    vrange: tuple[float, float] | None = None,
) -> Figure:
    """Grey images ``(N, H, W)`` with optional titles (Figures 3-6), ``ncols`` a row
    of ``size`` inches; ``vrange``: ``(black, white)``, None to scale each alone."""
    lo, hi = vrange if vrange is not None else (None, None)
    fig, axes = _grid(len(images), max(1, min(ncols, len(images))), size, size + 0.25)
    for i, ax in enumerate(axes):
        ax.imshow(images[i], cmap="gray", vmin=lo, vmax=hi)
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def plot_catalogue(
    names: Sequence[str], boxes: np.ndarray, prototypes: np.ndarray, ncols: int = 6
) -> Figure:
    """Figure 2: each concept's mean box (``(K, 4)``, ``x, y, w, h``) on the
    mean image of its source digit (``prototypes``, ``(K, 28, 28)``)."""
    fig = plot_images(prototypes, list(names), ncols=ncols, size=1.7)
    for ax, (x, y, w, h) in zip(fig.axes, boxes):
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, ec="red", lw=1.5))
    return fig


def plot_gallery(images: np.ndarray, nrow: int, row_names: Sequence[str]) -> Figure:
    """Rows of ``nrow`` example images (``(K * nrow, 28, 28)``, uint8 or float,
    row-major), one row per concept named in ``row_names``."""
    x = torch.as_tensor(_unit(images))
    grid = make_grid(x[:, None], nrow=nrow, padding=2, pad_value=0.5)
    k = len(row_names)
    fig, ax = plt.subplots(figsize=(nrow * 0.45 + 1.8, k * 0.45 + 0.3))
    ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_yticks([2 + 30 * i + 14 for i in range(k)], list(row_names), fontsize=7)
    ax.set_xticks([])
    fig.tight_layout()
    return fig


def plot_learning_curves(
    histories: dict[str, list[dict[str, float]]], keys: Sequence[str] = ("recon", "kl")
) -> Figure:
    """Training loss parts per epoch for each variant (means per training image)."""
    n = len(keys)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for name, hist in histories.items():
            epochs, values = [h["epoch"] for h in hist], [h[key] for h in hist]
            ax.plot(epochs, values, "o-", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{key} (nats per training image)")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_explanation(expl, top: int = 5, title: str = "") -> Figure:
    """Input, reconstruction and the ``top`` concept maps of an
    :class:`~conceptlib.measures.explain.Explanation`, in one row."""
    order = expl.ranking()[:top]
    fig, axes = plt.subplots(1, 2 + len(order), figsize=(1.6 * (2 + len(order)), 2.1))
    panels = [("input", expl.image), ("reconstruction", expl.reconstruction)]
    panels += [(f"{expl.names[k]}\n{expl.share[k]:.0%}", expl.maps[k]) for k in order]
    for i, (ax, (name, img)) in enumerate(zip(axes, panels)):
        cmap = "gray" if i < 2 else "magma"
        ax.imshow(img, cmap=cmap, vmin=0, vmax=1)
        ax.set_title(name, fontsize=7)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig


def catalogue_figure(catalogue, x: np.ndarray, y: np.ndarray, variant_of: np.ndarray):
    """Figure 2: each concept's mean box on the mean image of its source digit's
    variant (``x, y``: uint8 digits and labels; ``variant_of``: their variants)."""
    forms = zip(catalogue.digit, catalogue.variant)
    protos = [x[(y == d) & (variant_of == v)].mean(0) / 255.0 for d, v in forms]
    return plot_catalogue(catalogue.names, catalogue.box, np.stack(protos))


def concept_gallery(
    images: np.ndarray, labels: np.ndarray, catalogue, per_row: int = 8
):
    """The first ``per_row`` concept images of each concept, one row per concept."""
    rows = np.concatenate([images[labels == lab][:per_row] for lab in catalogue.labels])
    return plot_gallery(rows, per_row, catalogue.names)


def plot_concept_shares(shares: np.ndarray, labels: np.ndarray, catalogue) -> Figure:
    """Mean share of concept energy by digit class (rows) and concept (columns,
    ordered by source digit), each concept's own class outlined."""
    order = np.argsort(catalogue.digit, kind="stable")
    digits = range(NUM_CLASSES)
    mean = np.stack([shares[labels == d].mean(0) for d in digits])[:, order]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    im = ax.imshow(mean, cmap="magma", vmin=0, vmax=max(mean.max(), 1e-9))
    ax.set_xticks(range(len(order)), [catalogue.names[k] for k in order], rotation=70,
                  fontsize=7)  # fmt: skip
    ax.set_yticks(digits, [f"digit {d}" for d in digits], fontsize=7)
    for k, d in enumerate(catalogue.digit[order]):
        ax.add_patch(Rectangle((k - 0.5, d - 0.5), 1, 1, fill=False, ec="c", lw=1))
    fig.colorbar(im, ax=ax, label="mean share of concept energy")
    ax.set_title("concept shares by digit class (test digits); outlined: own class")
    fig.tight_layout()
    return fig


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (and closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write a figure as PNG atomically (temporary file, then rename)."""
    atomic_write_bytes(Path(path), figure_png(fig, dpi))
    return Path(path)


#: Colours of a digit's own concepts in :func:`plot_digit_parts` (RGB, by rank).
PART_COLOURS = dict(red=(1.0, 0.2, 0.2), green=(0.2, 1.0, 0.2), blue=(0.3, 0.5, 1.0))


def plot_digit_parts(
    images: np.ndarray,
    maps: np.ndarray,
    parts: Sequence[Sequence[int]],
    names: Sequence[str],
    titles: Sequence[str],
    ncols: int = 5,
) -> Figure:
    """Each digit (``(N, 28, 28)``, uint8 or [0, 1]) with the maps (``(N, K, 28,
    28)``) of its own concepts (``parts``: at most three indices per digit) drawn
    over it in red, green and blue; ``names``: the K concept names."""
    images = _unit(images)
    fig, axes = _grid(len(images), ncols, 1.9, 2.35)
    for i, ax in enumerate(axes):
        rgb = np.repeat(0.3 * images[i][:, :, None], 3, axis=2)
        legend = []
        for (colour, value), k in zip(PART_COLOURS.items(), parts[i]):
            rgb = np.maximum(rgb, maps[i, k][:, :, None] * np.asarray(value))
            legend.append(f"{colour}: {names[k].split('_', 1)[-1]}")
        ax.imshow(np.clip(rgb, 0, 1))
        ax.set_title(titles[i] + "\n" + "\n".join(legend), fontsize=7)
    fig.tight_layout()
    return fig
