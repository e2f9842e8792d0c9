"""Concept-level explanation of one image by a trained concept model.

Each concept channel's share of the concept channels' :func:`energy` says which
stroke concepts the model sees in an image, and its map says where: the measure
behind ``concept_accuracy``, applied to any 28 x 28 image (a PNG, a ``.npy`` array,
or an MNIST digit ``test:N``). See chapter ``ch-explain``, ``conceptlib explain``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from conceptlib.config import ExperimentConfig, variant_config
from conceptlib.data.catalogue import Catalogue
from conceptlib.data.mnist import IMAGE_SHAPE, load_mnist
from conceptlib.errors import ConceptlibError
from conceptlib.files import atomic_write_text
from conceptlib.measures.vocab import ON, energy, map_batches, top_k
from conceptlib.model.readout import ConceptModel, decode_mean
from conceptlib.train.loop import run_folder

SIZE = IMAGE_SHAPE[0]


@dataclass(frozen=True)
class Explanation:
    """What the concept channels say about one image: the ``(28, 28)`` input in
    [0, 1] and its reconstruction from ``z = mu``; per concept its name, source
    digit, :func:`energy`, share of all concept channels' energy, area (pixels
    above 0.5) and ``(H, W)`` map."""

    image: np.ndarray
    reconstruction: np.ndarray
    names: tuple[str, ...]
    digits: np.ndarray
    energy: np.ndarray
    share: np.ndarray
    area: np.ndarray
    maps: np.ndarray

    def ranking(self) -> np.ndarray:
        """Concept indices, largest share first."""
        return top_k(self.share, stable=True)

    def to_dict(self, top: int | None = None) -> dict:
        """JSON-ready ranking: name, source digit, share and area per concept."""
        order = self.ranking()[: top or len(self.names)]
        return {
            "units": {"share": "fraction of concept-channel energy", "area": "pixels"},
            "concepts": [
                {"rank": r + 1, "name": self.names[k], "digit": int(self.digits[k]),
                 "share": float(self.share[k]), "area": int(self.area[k])}
                for r, k in enumerate(order)
            ],
        }  # fmt: skip


def default_run(cfg: ExperimentConfig, cache_dir: str | os.PathLike) -> Path:
    """Where ``reproduce --cache cache_dir`` puts the concept run of ``cfg`` on
    this machine's default device."""
    return run_folder(cache_dir, variant_config(cfg, "concept"), "concept") / "model.pt"


def _check_pixels(array: np.ndarray, where: str) -> np.ndarray:
    """Validate a 2-D image and turn it into uint8 (float images must be in [0, 1])."""
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or array.shape != (SIZE, SIZE):
        raise ConceptlibError(
            f"{where}: image is {'x'.join(map(str, array.shape)) or 'a scalar'}, "
            f"expected {SIZE}x{SIZE} (one grey channel, MNIST size)"
        )
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind not in "fiu":
        raise ConceptlibError(f"{where}: pixels of type {array.dtype} are not numbers")
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise ConceptlibError(f"{where}: image has NaN or infinite pixels")
    hi = 1.0 if array.dtype.kind == "f" else 255.0
    if values.min() < 0 or values.max() > hi:
        raise ConceptlibError(
            f"{where}: pixels range {values.min():g}..{values.max():g}, "
            f"expected 0..{hi:g}"
        )
    return np.round(values * (255.0 / hi)).astype(np.uint8)


def read_image(spec: str, data_source: str = "embedded") -> tuple[np.ndarray, str]:
    """An image to explain, as ``(28, 28)`` uint8, and a name for it. ``spec``:
    ``test:N`` or ``train:N`` (MNIST digit N of ``data_source``), a PNG or JPEG file
    (converted to grey), or a ``.npy`` array (uint8 0..255 or float 0..1, no
    pickles)."""
    split, _, index = spec.partition(":")
    if split in ("test", "train") and index:
        if not index.isdigit():
            raise ConceptlibError(f"{spec}: expected {split}:N with N a digit index")
        mnist = load_mnist(data_source)
        x, y = getattr(mnist, f"x_{split}"), getattr(mnist, f"y_{split}")
        n = int(index)
        if n >= len(x):
            raise ConceptlibError(f"{spec}: index out of range (0..{len(x) - 1})")
        return x[n], f"MNIST {split} image {n} (label {int(y[n])})"
    path = Path(spec)
    if not path.is_file():
        raise ConceptlibError(f"{spec}: no such image file (or use test:N, train:N)")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
            raise ConceptlibError(f"{path}: cannot read .npy ({reason})") from None
        return _check_pixels(np.asarray(array), str(path)), str(path)
    from PIL import Image, UnidentifiedImageError  # only for image files

    try:
        with Image.open(path) as img:
            array = np.array(img.convert("L"))  # a writable copy for torch
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        kind = type(exc).__name__
        raise ConceptlibError(f"{path}: not a readable image ({kind})") from None
    return _check_pixels(array, str(path)), str(path)


@torch.no_grad()
def explain(cm: ConceptModel, image: np.ndarray) -> Explanation:
    """Run a ``(28, 28)`` uint8 ``image`` through the concept model (``z = mu``)
    and rank its concepts."""
    image = np.array(image, dtype=np.uint8)
    logits, hidden = decode_mean(cm, image[None])  # one pass: image and concept layer
    maps = hidden[0, : len(cm.catalogue)].float().cpu().numpy()
    e = energy(maps)
    total = e.sum()
    return Explanation(
        image=image.astype(np.float32) / 255.0,
        reconstruction=torch.sigmoid(logits[0, 0].float()).cpu().numpy(),
        names=tuple(cm.catalogue.names),
        digits=np.asarray(cm.catalogue.digit),
        energy=e,
        share=e / total if total > 0 else np.zeros_like(e),
        area=(maps > ON).sum((1, 2)),
        maps=maps,
    )


def top_concepts(cm: ConceptModel, image: np.ndarray, k: int = 3) -> list:
    """The ``k`` strongest concepts of a ``(28, 28)`` uint8 ``image``, strongest
    first: ``(index, share)`` pairs (:func:`concept_shares`)."""
    shares = concept_shares(cm, image[None])[0]
    return [(int(i), float(shares[i])) for i in top_k(shares[None], k)[0]]


@torch.no_grad()
def concept_shares(
    cm: ConceptModel, images: np.ndarray, batch_size: int = 1000
) -> np.ndarray:
    """``(N, K)`` share of each concept channel in the :func:`energy` of
    ``(N, 28, 28)`` uint8 images."""
    out = np.zeros((len(images), len(cm.catalogue)))
    for start, stop, maps in map_batches(cm, images, batch_size):
        e = energy(maps)
        total = e.sum(1, keepdim=True)
        out[start:stop] = torch.where(total > 0, e / total.clamp_min(1e-300), 0.0)
    return out


def own_digit_share(
    shares: np.ndarray, labels: np.ndarray, catalogue: Catalogue
) -> dict[str, float]:
    """How much of a digit's concept energy goes to concepts cut from its class:
    the mean over images of the share of concepts whose source digit is the image's
    label (``own``), and the same for energy spread evenly over the K concepts
    (``uniform``: concepts of that digit / K, averaged over the images)."""
    own_mask = np.asarray(catalogue.digit)[None, :] == np.asarray(labels)[:, None]
    own = float((shares * own_mask).sum(1).mean())
    return {"own": own, "uniform": float(own_mask.mean(1).mean())}


#: Fewer pixels above half intensity than this: no strokes to explain.
MIN_INK = 10


def image_warnings(image: np.ndarray) -> list[str]:
    """What makes a ``(28, 28)`` uint8 ``image`` unlike MNIST digits: a mostly
    light border (inverted, as scans are) or fewer than :data:`MIN_INK` stroke
    pixels (on the other side of half intensity from the background)."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    light = border.mean() > 127
    strokes = int((image <= 127).sum() if light else (image > 127).sum())
    found = []
    if strokes < MIN_INK:
        found.append(f"the image is (almost) blank: {strokes} stroke pixels")
    if light:
        found.append(
            "the image looks inverted (light background): MNIST digits are light "
            "strokes on black; invert it first (255 - pixel)"
        )
    return found


def format_explanation(expl: Explanation, top: int = 5) -> str:
    """A plain-text table of the ``top`` concepts; a line saying no concept was
    found when no map exceeds 0.5 anywhere (shares would rank noise)."""
    if expl.energy.sum() == 0 or expl.area.sum() == 0:
        strongest = float(expl.maps.max()) if expl.maps.size else 0.0
        return (
            "no concept found: no concept map exceeds 0.5 anywhere "
            f"(strongest activation {strongest:.2f})"
        )
    lines = [f"{'rank':>4}  {'concept':<20}{'digit':>5}{'share':>8}{'area':>6}"]
    for r, k in enumerate(expl.ranking()[:top]):
        lines.append(
            f"{r + 1:>4}  {expl.names[k]:<20}{expl.digits[k]:>5}"
            f"{expl.share[k]:>8.3f}{expl.area[k]:>6}"
        )
    return "\n".join(lines)


def write_outputs(
    figure: str | None, draw, out_json: str | None, doc: dict, indent: int | None = None
) -> None:
    """Where asked, the PNG of the figure that ``draw()`` makes to ``figure`` and
    ``doc`` as JSON to ``out_json``, atomically; one line of error for a file that
    cannot be written (``conceptlib explain`` and ``edit``)."""
    try:
        if figure is not None:
            from conceptlib.report.plots import save_figure  # matplotlib: figures only

            save_figure(draw(), figure)
        if out_json is not None:
            atomic_write_text(Path(out_json), json.dumps(doc, indent=indent) + "\n")
    except OSError as exc:
        where = exc.filename or figure or out_json
        raise ConceptlibError(f"{where}: cannot write ({exc.strerror})") from None
