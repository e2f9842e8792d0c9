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
from conceptlib.model.vae import ConvVAE, load_weights, ready


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
    """Load a concept variant, in eval mode on ``device``, from ``path``: a
    ``model.pt`` that ``reproduce`` caches (``runs/concept*-*``), a run folder
    holding one, or a committed checkpoint (``results/*/checkpoints/``).

    The file is read with ``weights_only=True``; its stored config rebuilds the
    architecture and names the catalogue. ConceptlibError: unreadable, not a
    concept run, or weights that do not fit.
    """
    return load_model(path, device, concept_only=True)


def load_model(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    concept_only: bool = False,
) -> ConceptModel:
    """Load a run of any variant, as :func:`load_concept_model` does (the
    baseline's and augmented's channels carry no concept names, but their layers
    can be probed the same way); ``concept_only`` refuses runs without trained
    concept channels."""
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
    return ConceptModel(ready(model.to(device)), cfg, catalogue, path)


def as_model(model: ConceptModel | ConvVAE) -> ConvVAE:
    """The network of a loaded model, or the network itself, :func:`ready` to read."""
    return ready(model.model if isinstance(model, ConceptModel) else model)


@torch.no_grad()
def decode_mean(
    model: ConceptModel | ConvVAE, images: np.ndarray | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N, 1, 28, 28)`` and the whole concept layer ``(N, C, H, W)``,
    decoded from ``z = mu`` of ``(N, 28, 28)`` uint8 images, on the model's device
    (one batch: callers split large sets)."""
    net = as_model(model)
    device = next(net.parameters()).device
    x_u8 = images if torch.is_tensor(images) else torch.from_numpy(np.array(images))
    return net.decode(net.encode(to_input(x_u8, device))[0])


def check_images(images: np.ndarray | torch.Tensor, where: str) -> np.ndarray:
    """``images`` as a ``(N, 28, 28)`` uint8 array; a one-line error otherwise."""
    images = images.numpy() if torch.is_tensor(images) else np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE or images.dtype != np.uint8:
        raise ConceptlibError(
            f"{where}: expected (N, 28, 28) uint8 images, got "
            f"{images.dtype} {tuple(images.shape)}"
        )
    return images


def _per_batch(model, images, batch_size: int, read) -> list[torch.Tensor]:
    """``read(net, mu)`` of the uint8 ``images``, ``batch_size`` at a time: float32
    on the CPU, one tensor a batch (``mu``: the batch's posterior means)."""
    net = as_model(model)
    device = next(net.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        xb = chunk if torch.is_tensor(chunk) else torch.from_numpy(np.asarray(chunk))
        out.append(read(net, net.encode(to_input(xb, device))[0]).float().cpu())
    return out


@torch.inference_mode()
def encode_mu(
    model: ConceptModel | ConvVAE,
    images: np.ndarray | torch.Tensor,
    batch_size: int = 500,
) -> torch.Tensor:
    """The posterior means ``mu`` (latent images ``(N, L, 7, 7)``) of uint8
    images, float32 on the CPU."""
    out = _per_batch(model, images, batch_size, lambda net, mu: mu)
    if not out:
        return torch.zeros((0, as_model(model).cfg.latent_channels, 7, 7))
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

    def read(net: ConvVAE, mu: torch.Tensor) -> torch.Tensor:
        return net.concept_act(net.decode_to(mu))[:, :channels]

    out = _per_batch(model, images, batch_size, read)
    if not out:
        net = as_model(model)
        width = net.cfg.dec_channels[net.cfg.concept_layer - 1]
        return torch.zeros((0, channels or width, net.concept_size, net.concept_size))
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
    """The concept maps of ``(N, 28, 28)`` uint8 images (255 = ink): the K concept
    channels decoded from ``z = mu``, ``(N, K, H, W)`` float32 (sigmoid outputs in
    [0, 1] for concept variants; H = W = 28 at the default concept layer 3).

    ``model``: a :func:`load_concept_model` or a ConvVAE of any variant (for
    ``baseline`` and ``augmented`` the first K channels carry no concept loss,
    which is what makes them a control); ``batch_size``: images per forward pass.

    Example:
        >>> cm = load_concept_model("results/paper/checkpoints/concept.pt")
        >>> maps = concept_maps(cm, mnist.x_test[:8])  # (8, 18, 28, 28)
    """
    images = check_images(images, "concept_maps")
    k = as_model(model).num_concepts
    return layer(model, images, batch_size, channels=k).numpy()
