"""Measuring the operators: edits of test digits, checked independently.

Every edit of :mod:`conceptlib.operators` is decoded to an image and checked by two
readers that are not the edited model's concept channels on the edited layer:

- a small CNN digit classifier, trained by the project on the MNIST training
  digits for evaluation only (:func:`digit_classifier`);
- the concept model itself, *re-encoding* the decoded image and reading its concept
  maps (the edit must survive a round trip through the encoder).

Three kinds of edit are scored (:func:`edit_measures`), each beside the same edit
done in the latent space, the usual baseline: adding or subtracting the mean
latent difference between training digits with and without the concept.

- *removal*: the digit's strongest concept is switched off; success when it leaves
  the top 3 concepts of the re-encoded image and the image outside the concept's
  region is kept (mean absolute change at most :data:`KEEP`);
- *addition*: a concept of another digit class, absent from the digit's top 3, is
  added from a held-out image of it; success when it enters the top 3;
- *composition*: a digit built from the held-out concept images of its class alone
  (on the blank layer, :func:`~conceptlib.operators.compose`); success when the
  classifier reads the intended digit.

A third reference needs no edit of the model: the same addition and composition
done on the pixels (pixel maximum of the images), read the same way. It shows
what the read-out and the parts allow: an edit that drew exactly the concept
image would score the same.

See: chapter ``ch-operators``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from conceptlib import operators as op
from conceptlib.data.mnist import IMAGE_SHAPE, NUM_CLASSES
from conceptlib.data.splits import HeldDigits, refuse_test, split_of
from conceptlib.errors import ConceptlibError
from conceptlib.measures.classifier import SmallCNN, predict, train_classifier
from conceptlib.measures.explain import concept_shares
from conceptlib.measures.vocab import ON
from conceptlib.model.readout import ConceptModel, encode_mu, to_pixels
from conceptlib.report.scorecard import Difference, Estimate

#: Removal keeps the rest of the image: mean absolute change outside the removed
#: concept's region (its map above :data:`~conceptlib.measures.vocab.ON`, dilated by
#: :data:`KEEP_DILATE` px), on [0, 1] pixels.
KEEP = 0.05
KEEP_DILATE = 2
#: Success of removal and addition: out of or into the top this many concepts.
TOP = 3
#: The rates of success each operator aims at, on test digits.
TARGETS = {"removal": 0.9, "addition": 0.9, "composition": 0.8}
#: How :func:`versus` reads :attr:`~conceptlib.report.scorecard.Difference.sign`.
VERSUS = {1: "better than", 0: "within the seed noise of", -1: "worse than"}
#: What :func:`edit_measures` adds a concept from (``image`` chosen on training
#: digits by ``scripts/choose_operators.py``).
ADD_FROM = ("image", "prototype")


def target_phrase(rate: float, target: float) -> str:
    """Whether a success rate meets its target, in words with the numbers."""
    short = 100 * (target - rate)
    if short <= 0:
        return f"meets the {target:.0%} target"
    return f"misses the {target:.0%} target by {short:.1f} points"


def versus(a: Estimate, b: Estimate) -> str:
    """``a`` against ``b`` in words (:data:`VERSUS`), judged by
    :class:`~conceptlib.report.scorecard.Difference`: beyond the seed noise or within
    it."""
    return VERSUS[Difference(a, b).sign]


def digit_classifier(
    x: np.ndarray,
    y: np.ndarray,
    cache: str | os.PathLike | None = None,
    seed: int = 0,
    num_epochs: int = 6,
    progress: bool = False,
) -> SmallCNN:
    """The evaluation-only 10-way digit classifier (Adam on ``x``).

    Args:
        x, y: training digits ``(N, 28, 28)`` uint8 and labels.
        num_epochs: passes over ``x``.
        cache: a ``.pt`` file: loaded if present (``weights_only``), else written
            after training (atomically).
        seed: initialisation and data order.
        progress: a progress bar per epoch.
    """
    from conceptlib.files import CHECKPOINT_FORMAT, atomic_torch_save, load_checkpoint

    if cache is not None and Path(cache).is_file():
        model = SmallCNN(NUM_CLASSES)
        model.load_state_dict(load_checkpoint(Path(cache))["model"])
        return model.eval()
    model = train_classifier(
        x, y, 10, num_epochs=num_epochs, seed=seed, progress=progress
    )
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        state = {"format": CHECKPOINT_FORMAT, "model": model.state_dict()}
        atomic_torch_save(state, Path(cache))
    return model


@dataclass(frozen=True)
class LatentEdits:
    """The latent baseline: per-concept directions and the blank image's latent."""

    model: ConceptModel
    directions: torch.Tensor  #: (K, L, 7, 7) mean mu with minus without
    blank: torch.Tensor  #: (1, L, 7, 7)

    def encode(self, images: np.ndarray) -> torch.Tensor:
        return encode_mu(self.model, images)

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> np.ndarray:
        net = self.model.model
        device = next(net.parameters()).device
        return to_pixels(net.decode(z.to(device))[0])


def latent_directions(
    cm: ConceptModel, x: np.ndarray, y: np.ndarray, variants: np.ndarray
) -> LatentEdits:
    """Mean latent of training digits holding each concept (its source class and
    variant) minus the mean latent of all others; zero for a concept that no digit
    (or every digit) holds, so that its latent edits change nothing."""
    edits = LatentEdits(cm, torch.empty(0), torch.empty(0))
    mu = edits.encode(x)
    cat = cm.catalogue
    dirs = []
    for c in range(len(cat)):
        has = torch.from_numpy((y == cat.digit[c]) & (variants == cat.variant[c]))
        if has.all() or not has.any():  # no contrast to take: the edit does nothing
            dirs.append(torch.zeros_like(mu[0]))
            continue
        dirs.append(mu[has].mean(0) - mu[~has].mean(0))
    blank = edits.encode(np.zeros((1, *IMAGE_SHAPE), np.uint8))
    return LatentEdits(cm, torch.stack(dirs), blank)


def _top(shares: np.ndarray, concepts: np.ndarray) -> np.ndarray:
    """Whether each row's concept is among its :data:`TOP` largest shares."""
    top = np.argsort(-shares, axis=1)[:, :TOP]
    return (top == concepts[:, None]).any(1)


def _outside_change(
    before: np.ndarray, after: np.ndarray, hidden: torch.Tensor, concepts: np.ndarray
) -> np.ndarray:
    """Mean absolute change (on [0, 1]) outside each concept's dilated region."""
    idx = torch.arange(len(concepts))
    maps = hidden[idx, torch.from_numpy(concepts)][:, None]
    size = 2 * KEEP_DILATE + 1
    grown = torch.nn.functional.max_pool2d(maps, size, 1, KEEP_DILATE)[:, 0]
    inside = (grown > ON).numpy()
    diff = np.abs(after.astype(np.float32) - before.astype(np.float32)) / 255.0
    outside = ~inside
    return (diff * outside).sum((1, 2)) / np.maximum(outside.sum((1, 2)), 1)


def _removed(
    cm: ConceptModel,
    h: torch.Tensor,
    base: torch.Tensor,
    concepts: np.ndarray,
    dilate: int,
) -> np.ndarray:
    """Images of ``h`` with each row's concept removed, decoded."""
    k = len(cm.catalogue)
    return np.concatenate(
        [
            op.render(cm, op.remove(h[i : i + 1], base, int(c), k, dilate=dilate))
            for i, c in enumerate(concepts)
        ]
    )


def _removal_success(
    cm: ConceptModel,
    recon: np.ndarray,
    removed: np.ndarray,
    h: torch.Tensor,
    concepts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per removal: whether its concept left the top :data:`TOP` of the
    re-encoded image (``gone``) and whether the image outside the concept's
    region was kept (``kept``)."""
    kept = _outside_change(recon, removed, h, concepts) <= KEEP
    gone = ~_top(concept_shares(cm, removed), concepts)
    return gone, kept


#: The dilations :func:`choose_dilation` chooses the removal's from, in pixels.
DILATIONS = (0, 1, 2)


def choose_dilation(
    cm: ConceptModel,
    x: np.ndarray | HeldDigits,
    dilations: tuple[int, ...] = DILATIONS,
    *,
    split: str | None = None,
) -> tuple[int, dict[str, float]]:
    """How far removal should reach, for one model: the dilation of the region
    it resets whose removals succeed most often on ``x`` (validation or training
    digits, never the digits the edits are reported on), and the success of each.

    A wider region erases more of the stroke but changes more of the image
    around it, since the later decoder layers spread any change of the layer;
    where the balance lies differs between models.

    Args:
        cm: the model.
        x: ``(N, 28, 28)`` uint8 digits, or a
            :class:`~conceptlib.data.splits.HeldDigits` (which names its split).
        dilations: the candidates, in pixels (ties: the first listed).
        split: the split of ``x`` when it is an array: ``val`` or ``train``.

    Raises:
        ConceptlibError: on test digits, or when the split is not said.
    """
    refuse_test(split_of(x, split), "choose_dilation")
    if isinstance(x, HeldDigits):
        x = x.x
    base = op.blank(cm)
    h = op.read(cm, x)
    recon = op.render(cm, h)
    removed_c = concept_shares(cm, recon).argmax(1)
    rates = {}
    for dilate in dilations:
        rm = _removed(cm, h, base, removed_c, dilate)
        gone, kept = _removal_success(cm, recon, rm, h, removed_c)
        rates[str(dilate)] = float((gone & kept).mean())
    best = max(dilations, key=lambda d: rates[str(d)])  # ties: the first listed
    return best, rates


def draw_additions(
    cm: ConceptModel,
    shares: np.ndarray,
    labels: np.ndarray,
    concept_of: np.ndarray,
    rng: np.random.Generator,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The additions of :func:`edit_measures`: which concept each digit gets and
    the held-out concept image it is added from.

    Each digit gets a concept of another digit class that is absent from its
    :data:`TOP` (drawn from ``rng``, the measures' own stream); the image is
    drawn at random among the held-out images of that concept from a stream of
    its own, ``[seed, 11]``, so that drawing it leaves the other edits as they
    were.

    Args:
        cm: the concept model.
        shares: ``(N, K)`` concept shares of the digits (:func:`concept_shares`).
        labels: ``(N,)`` the digits' classes.
        concept_of: concept index ``0..K-1`` of each held-out concept image.
        rng: the generator that draws the concepts.
        seed: the measures' seed.

    Returns:
        ``(added, pick)``: ``(N,)`` concept indices and ``(N,)`` indices into the
        held-out concept images.

    Raises:
        ConceptlibError: a concept to add has no held-out image.
    """
    k = len(cm.catalogue)
    digit_of = np.asarray(cm.catalogue.digit)
    added = np.array(
        [
            rng.choice(
                [c for c in range(k) if digit_of[c] != labels[i] and c not in top]
            )
            for i, top in enumerate(np.argsort(-shares, axis=1)[:, :TOP])
        ]
    )
    concept_of = np.asarray(concept_of)
    missing = sorted(set(added.tolist()) - set(concept_of.tolist()))
    if missing:
        raise ConceptlibError(f"additions: no held-out image of concept {missing[0]}")
    pick_rng = np.random.default_rng([seed, 11])
    pick = np.array([pick_rng.choice(np.flatnonzero(concept_of == c)) for c in added])
    return added, pick


def edit_measures(
    cm: ConceptModel,
    digits: tuple[np.ndarray, np.ndarray],
    concept_images: tuple[np.ndarray, np.ndarray],
    latent: LatentEdits,
    classifier: SmallCNN,
    num_edits: int = 1000,
    per_digit: int = 100,
    seed: int = 0,
    dilate: int = op.DILATE,
    add_from: str = "image",
) -> dict[str, dict[str, float]]:
    """Removal, addition and composition success, concept layer against latent.

    Args:
        cm: the concept model to edit.
        digits: held-out digits ``(N, 28, 28)`` uint8 and labels; the first
            ``num_edits`` are edited.
        concept_images: held-out concept images and their concept index ``0..K-1``
            (the added concepts and the parts of composed digits).
        latent: the latent baseline (:func:`latent_directions`).
        classifier: the digit classifier (:func:`digit_classifier`).
        num_edits: digits edited by removal and by addition.
        per_digit: composed digits per digit class.
        seed: which concepts are added and which concept images are composed.
        dilate: the dilation of the region that removal resets.
        add_from: what each concept is added from: ``image``, a held-out image
            of it (drawn at random; the pixel reference lays the same image on
            the digit), or ``prototype`` (:func:`~conceptlib.operators.prototypes`
            of the held-out images).

    Returns:
        ``{"layer": {...}, "latent": {...}}`` with ``removal``, ``removal_gone``
        (the share of removals whose concept left the top 3), ``removal_kept``
        (the share that kept the rest of the image), ``addition``,
        ``composition``, ``composition_<d>`` per digit class and
        ``addition_<c>`` per added concept index; and
        ``"pixel"``, the same edits done on the pixels: ``addition`` when each
        digit's pixel maximum with the held-out image of the added concept is
        read, and ``composition`` of the parts' pixel maximum (and
        ``addition_<c>``).
    """
    rng = np.random.default_rng(seed)
    k = len(cm.catalogue)
    digit_of = np.asarray(cm.catalogue.digit)
    x, y = digits[0][:num_edits], digits[1][:num_edits]
    cx, cy = concept_images
    if add_from not in ADD_FROM:
        raise ConceptlibError(f"add_from {add_from!r}: not one of {list(ADD_FROM)}")
    base = op.blank(cm)
    h = op.read(cm, x)
    recon = op.render(cm, h)
    shares = concept_shares(cm, recon)
    removed_c = shares.argmax(1)
    added_c, pick = draw_additions(cm, shares, y, cy, rng, seed)
    # the same edits, in the concept layer and in the latent
    c_rm, c_add = torch.from_numpy(removed_c), torch.from_numpy(added_c)
    layer_rm = _removed(cm, h, base, removed_c, dilate)
    if add_from == "image":
        sources = op.read(cm, cx[pick])
    else:
        sources = op.prototypes(cm, cx, cy, k)[torch.from_numpy(added_c)]
    layer_add = np.concatenate(
        [
            op.render(
                cm,
                op.add(h[i : i + 1], sources[i : i + 1], base, int(c), k, masked=False),
            )
            for i, c in enumerate(added_c)
        ]
    )
    pixel_add = np.maximum(x, cx[pick])
    mu = latent.encode(x)
    latent_rm = latent.decode(mu - latent.directions[c_rm])
    latent_add = latent.decode(mu + latent.directions[c_add])
    # composed digits: for each class, its variant-0 concepts from held-out images
    layer_comp, latent_comp, pixel_comp, targets = [], [], [], []
    cz = latent.encode(cx)
    hc = op.read(cm, cx)
    for d in range(NUM_CLASSES):
        parts = [
            c for c in range(k) if digit_of[c] == d and cm.catalogue.variant[c] == 0
        ]
        if not parts:
            continue
        picks = [rng.choice(np.flatnonzero(cy == c), per_digit) for c in parts]
        layers = op.compose(base, [(hc[p], c) for c, p in zip(parts, picks)], k)
        z = latent.blank.expand(per_digit, -1, -1, -1).clone()
        for pick in picks:
            z = z + cz[pick] - latent.blank
        layer_comp.append(op.render(cm, layers))
        latent_comp.append(latent.decode(z))
        pixel_comp.append(np.stack([cx[p] for p in picks]).max(0))
        targets.append(np.full(per_digit, d))
    targets = np.concatenate(targets)
    out = {}
    for name, rm, add, comp in (
        ("layer", layer_rm, layer_add, np.concatenate(layer_comp)),
        ("latent", latent_rm, latent_add, np.concatenate(latent_comp)),
    ):
        gone, kept = _removal_success(cm, recon, rm, h, removed_c)
        entered = _top(concept_shares(cm, add), added_c)
        read = predict(classifier, comp).argmax(1) == targets
        row = {
            "removal": float((gone & kept).mean()),
            "removal_gone": float(gone.mean()),
            "removal_kept": float(kept.mean()),
            "addition": float(entered.mean()),
            "composition": float(read.mean()),
        }
        for d in np.unique(targets):
            row[f"composition_{d}"] = float(read[targets == d].mean())
        row.update(_per_concept(entered, added_c))
        out[name] = row
    read = predict(classifier, np.concatenate(pixel_comp)).argmax(1) == targets
    entered = _top(concept_shares(cm, pixel_add), added_c)
    out["pixel"] = {
        "addition": float(entered.mean()),
        "composition": float(read.mean()),
        **_per_concept(entered, added_c),
    }
    return out


def _per_concept(entered: np.ndarray, added: np.ndarray) -> dict[str, float]:
    """``addition_<c>``: the addition success of each concept index ``c`` that
    was added, over the edits that added it."""
    return {
        f"addition_{c}": float(entered[added == c].mean()) for c in np.unique(added)
    }


def measure_operators(cm: ConceptModel, pipe) -> dict[str, Any]:
    """:func:`edit_measures` of ``cm`` on the data of a
    :class:`~conceptlib.experiment.pipeline.Pipeline` of its profile: the test digits,
    the
    held-out concept images, latent directions from (a subsample of) the training
    digits (the 70 % of the digit split), and the pipeline's digit classifier,
    whose accuracy on all MNIST test digits is added as ``classifier_accuracy``.
    Removal reaches as far as :func:`choose_dilation` finds best for ``cm`` on
    ``eval.num_edits`` validation digits (``removal_dilate``; the success of each
    in ``removal_by_dilate``; ``removal_dilate_split`` names the split)."""
    train, val = pipe.train_digits, pipe.val_digits
    _, _, x_test, y_test = pipe.digits
    sub = train.take(pipe._subsample(len(train)))
    latent = latent_directions(cm, sub.x, sub.y, sub.variants)
    tc, e = pipe.test_concepts, pipe.cfg.eval
    rng = np.random.default_rng([pipe.cfg.seed, 9])
    pick = rng.choice(len(val), min(e.num_edits, len(val)), replace=False)
    dilate, by_dilate = choose_dilation(cm, val.take(pick))
    out: dict[str, Any] = edit_measures(
        cm, (x_test, y_test), (tc.x, tc.y - cm.catalogue.labels[0]), latent,
        pipe.digit_classifier, e.num_edits, e.edits_per_digit, pipe.cfg.seed,
        dilate,
    )  # fmt: skip
    out["removal_dilate"] = dilate
    out["removal_by_dilate"] = by_dilate
    out["removal_dilate_split"] = val.split
    out["num_edits"] = min(e.num_edits, len(y_test))
    out["per_digit"] = e.edits_per_digit
    out["classifier_accuracy"] = pipe.classifier_accuracy
    return out


#: Rows of :func:`format_operators`: (key, label).
OPERATOR_ROWS = (
    ("removal", "removal: out of the top 3, rest kept"),
    ("removal_gone", "removal: out of the top 3"),
    ("removal_kept", "removal: rest of the image kept"),
    ("addition", "addition: into the top 3"),
    ("composition", "composition: read as the digit"),
)


def summarise_seeds(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof 1; None for one seed) over
    seeds of every success rate of :data:`OPERATOR_ROWS`, in the concept layer,
    in the latent and, where measured, the pixel reference:
    ``{where: {key: {"mean": m, "sd": s}}}``."""
    out: dict[str, Any] = {"seeds": len(per_seed)}
    for where in ("layer", "latent", "pixel"):
        if not all(where in m for m in per_seed):
            continue
        out[where] = {}
        for key, _ in OPERATOR_ROWS:
            if all(key in m[where] for m in per_seed):
                rate = Estimate(tuple(m[where][key] for m in per_seed))
                out[where][key] = {"mean": rate.mean, "sd": rate.sd}
    return out


def _rate(value: float | dict[str, Any]) -> str:
    if isinstance(value, dict):  # summarise_seeds: mean ± sd over seeds
        sd = value["sd"]
        return f"{value['mean']:.3f}" + ("" if sd is None else f" ± {sd:.3f}")
    return f"{value:.3f}"


def format_operators(columns: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of success rates: for each column (one model's
    :func:`measure_operators`, or :func:`summarise_seeds` of several seeds), the
    concept layer and the latent baseline."""
    from conceptlib.report.tables import markdown_table

    head = ["edit"] + [
        f"{name}: {where}" for name in columns for where in ("layer", "latent")
    ]
    rows = [
        (label, *(_rate(m[where][key]) for m in columns.values()
                  for where in ("layer", "latent")))
        for key, label in OPERATOR_ROWS
    ]  # fmt: skip
    return markdown_table(head, rows)


__all__ = [
    "ADD_FROM",
    "DILATIONS",
    "choose_dilation",
    "KEEP",
    "KEEP_DILATE",
    "TARGETS",
    "VERSUS",
    "OPERATOR_ROWS",
    "format_operators",
    "TOP",
    "LatentEdits",
    "digit_classifier",
    "draw_additions",
    "edit_measures",
    "latent_directions",
    "measure_operators",
    "summarise_seeds",
    "target_phrase",
    "versus",
]
