"""The read-out: load a trained model and read its concept layer, the one way
every measure, operator, ``explain`` and the book read a model.

- :func:`load_concept_model` (public API, also ``conceptlib.load_concept_model``)
  loads a trained concept variant (``model.pt`` of a run folder, or a committed
  checkpoint); :func:`load_model` loads any variant;
- :func:`encode_mu` gives the posterior-mean latent images ``(N, L, 7, 7)``;
- :func:`layer` gives the whole concept layer ``(N, C, H, W)`` decoded from
  ``z = mu``; :func:`concept_maps` (public API) its K concept channels as numpy;
- :func:`to_pixels` turns decoder logits into uint8 images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from conceptlib.config import CONCEPT_VARIANTS, ExperimentConfig, from_dict
from conceptlib.data.catalogue import Catalogue, load_catalogue
from conceptlib.data.mnist import IMAGE_SHAPE, to_input
from conceptlib.errors import ConceptlibError
from conceptlib.files import load_checkpoint
from conceptlib.model.vae import ConvVAE, load_weights


@dataclass(frozen=True)
class ConceptModel:
    """A trained concept variant with what is needed to name its channels."""

    model: ConvVAE
    cfg: ExperimentConfig
    catalogue: Catalogue
    path: Path


def load_concept_model(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> ConceptModel:
    """Load a concept variant from ``model.pt`` (or a run folder holding one).

    Works for every run that ``reproduce`` caches (``runs/concept-*``,
    ``runs/concept_paper-*``) and for the committed checkpoints under
    ``results/*/checkpoints/``. The file is read with ``weights_only=True``; its
    stored config rebuilds the architecture and names the catalogue.

    Args:
        path: ``model.pt``, a checkpoint, or a run folder.
        device: where to put the model.

    Returns:
        A :class:`ConceptModel` in eval mode.

    Raises:
        ConceptlibError: unreadable, not a concept run, or weights that do not fit.
    """
    return load_model(path, device, concept_only=True)


def load_model(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    concept_only: bool = False,
) -> ConceptModel:
    """Load a run of any variant, as :func:`load_concept_model` does.

    The baseline's and augmented's channels carry no concept names, but their
    layers can be probed the same way (e.g. by :mod:`conceptlib.measures.formulas`).
    ``concept_only`` refuses runs without trained concept channels.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    state = load_checkpoint(path)
    if concept_only and state.get("variant") not in CONCEPT_VARIANTS:
        raise ConceptlibError(
            f"{path}: a {state.get('variant')!r} run has no trained concept "
            "channels; pass a concept run (runs/concept-*/model.pt)"
        )
    try:
        raw = yaml.safe_load(state.get("config", ""))
    except yaml.YAMLError:
        raw = None
    if not isinstance(raw, dict):
        raise ConceptlibError(f"{path}: checkpoint holds no readable config")
    cfg = from_dict(raw, where=f"{path} (stored config)")
    catalogue = load_catalogue(cfg.concepts.catalogue)
    model = ConvVAE(cfg.model, len(catalogue))
    load_weights(model, state["model"], str(path))
    return ConceptModel(model.to(device).eval(), cfg, catalogue, path)


def as_model(model: ConceptModel | ConvVAE) -> ConvVAE:
    """The network of a loaded model, or the network itself."""
    return model.model if isinstance(model, ConceptModel) else model


@torch.no_grad()
def decode_mean(
    model: ConceptModel | ConvVAE, images: np.ndarray | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N, 1, 28, 28)`` and the whole concept layer ``(N, C, H, W)``.

    Both decoded from ``z = mu`` of ``(N, 28, 28)`` uint8 images, on the model's
    device (one batch: callers split large sets).
    """
    net = as_model(model)
    device = next(net.parameters()).device
    x_u8 = images if torch.is_tensor(images) else torch.from_numpy(np.array(images))
    mu, _ = net.encode(to_input(x_u8, device))
    logits, hidden = net.decode(mu)
    return logits, hidden


def check_images(images: np.ndarray | torch.Tensor, where: str) -> np.ndarray:
    """``images`` as a ``(N, 28, 28)`` uint8 array; a one-line error otherwise."""
    images = images.numpy() if torch.is_tensor(images) else np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE or images.dtype != np.uint8:
        raise ConceptlibError(
            f"{where}: expected (N, 28, 28) uint8 images, got "
            f"{images.dtype} {tuple(images.shape)}"
        )
    return images


def _batches(images: np.ndarray | torch.Tensor, batch_size: int):
    """Slices of ``images`` as uint8 tensors, ``batch_size`` at a time."""
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        yield chunk if torch.is_tensor(chunk) else torch.from_numpy(np.asarray(chunk))


@torch.inference_mode()
def encode_mu(
    model: ConceptModel | ConvVAE,
    images: np.ndarray | torch.Tensor,
    batch_size: int = 500,
) -> torch.Tensor:
    """The posterior means ``mu`` (latent images ``(N, L, 7, 7)``) of uint8
    images, float32 on the CPU."""
    net = as_model(model).eval()
    device = next(net.parameters()).device
    out = [
        net.encode(to_input(xb, device))[0].float().cpu()
        for xb in _batches(images, batch_size)
    ]
    if not out:
        return torch.zeros((0, net.cfg.latent_channels, 7, 7))
    return torch.cat(out)


@torch.inference_mode()
def layer(
    model: ConceptModel | ConvVAE,
    images: np.ndarray | torch.Tensor,
    batch_size: int = 500,
    channels: int | None = None,
) -> torch.Tensor:
    """The concept layer (activation) of uint8 images, decoding ``z = mu``:
    ``(N, C, H, W)`` float32 on the CPU, or its first ``channels`` channels."""
    net = as_model(model).eval()
    device = next(net.parameters()).device
    out = []
    for xb in _batches(images, batch_size):
        mu, _ = net.encode(to_input(xb, device))
        out.append(net.concept_act(net.decode_to(mu))[:, :channels].float().cpu())
    if not out:
        size = net.concept_size
        width = net.cfg.dec_channels[net.cfg.concept_layer - 1]
        return torch.zeros((0, channels or width, size, size))
    return torch.cat(out)


def to_pixels(logits: torch.Tensor) -> np.ndarray:
    """Decoder logits ``(N, 1, 28, 28)`` as ``(N, 28, 28)`` uint8 images."""
    x = torch.sigmoid(logits.float())[:, 0]
    return (x * 255).round().to(torch.uint8).cpu().numpy()


def concept_maps(
    model: ConceptModel | ConvVAE,
    images: np.ndarray | torch.Tensor,
    batch_size: int = 256,
) -> np.ndarray:
    """The concept maps of images: the K concept channels, decoding ``z = mu``.

    Args:
        model: a loaded concept model (:func:`load_concept_model`) or a
            :class:`~conceptlib.model.vae.ConvVAE` (of any variant: for ``baseline``
            and ``augmented`` the first K channels of the layer carry no concept
            loss, which is what makes them a control).
        images: ``(N, 28, 28)`` uint8 images (0 = background, 255 = ink).
        batch_size: images per forward pass.

    Returns:
        ``(N, K, H, W)`` float32 maps (sigmoid outputs in [0, 1] for concept
        variants; H = W = 28 at the default concept layer 3).

    Example:
        >>> cm = load_concept_model("results/paper/checkpoints/concept.pt")
        >>> maps = concept_maps(cm, mnist.x_test[:8])  # (8, 18, 28, 28)
    """
    images = check_images(images, "concept_maps")
    k = as_model(model).num_concepts
    return layer(model, images, batch_size, channels=k).numpy()
