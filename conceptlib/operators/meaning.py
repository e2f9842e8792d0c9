"""Edits that change what a digit means, read by a reader that never saw the model.

Each :class:`MeaningEdit` takes digits of one class, removes a concept from them
or adds one (from a held-out concept image cut from *another* digit), and says
which digit the result should read as: a 7 without its top bar is a 1, a 1 with
a top bar is a 7. The same edit is made three ways and each result is read by the
evaluation-only digit classifier:

- ``layer``: through the concept layer (:func:`~conceptlib.operators.remove`,
  :func:`~conceptlib.operators.add` of the concept image's layer, unmasked, as
  :func:`~conceptlib.operators.evaluate.edit_measures` adds images);
- ``latent``: the latent baseline, ``mu`` plus or minus the concept's direction
  (:class:`~conceptlib.operators.latent.LatentEdits`, as chosen on validation);
- ``pixel``: on the pixels: the concept image laid on the digit (pixel maximum),
  or the digit's ink inside the concept's catalogue box erased.

Beside each rate, how far the decoded edit agrees with its pixel counterpart:
the IoU of their ink (pixels >= :data:`INK`).

See: chapter ``ch-operators``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from conceptlib import operators as op
from conceptlib.data.splits import HeldDigits
from conceptlib.errors import ConceptlibError
from conceptlib.measures.classifier import SmallCNN, predict
from conceptlib.model.readout import ConceptModel, encode_mu
from conceptlib.operators.latent import LatentEdits
from conceptlib.report.stats import Difference, Estimate, mean_sd, rate_text
from conceptlib.report.tables import markdown_table

#: Ink: a pixel at least this bright (uint8) counts in the IoU of two edits.
INK = 128
#: Digits edited per edit (fewer where the split holds fewer of the class).
PER_EDIT = 300
#: What each edit records: the share read as expected, unedited and three ways
#: edited, and the ink IoU of the layer's and the latent's edit with the pixels'.
MEASURES = ("before", "layer", "latent", "pixel", "iou_layer", "iou_latent")


@dataclass(frozen=True)
class MeaningEdit:
    """Digits of class ``digit`` with ``concept`` removed or added (``kind``)
    should read as ``expected``; ``what`` says so in words."""

    name: str
    digit: int
    kind: str  #: ``remove`` or ``add``
    concept: str
    expected: int
    what: str


#: The edits the MNIST catalogue supports, each with the digit it should read as.
MEANING_EDITS = (
    MeaningEdit("seven_no_bar", 7, "remove", "seven_top_bar", 1,
                "a 7 without its top bar reads as a 1"),
    MeaningEdit("nine_no_loop", 9, "remove", "nine_loop", 1,
                "a 9 without its loop reads as a 1"),
    MeaningEdit("one_top_bar", 1, "add", "seven_top_bar", 7,
                "a 1 with a top bar reads as a 7"),
    MeaningEdit("one_top_loop", 1, "add", "nine_loop", 9,
                "a 1 with a loop on top reads as a 9"),
    MeaningEdit("one_low_loop", 1, "add", "six_loop", 6,
                "a 1 with a loop at its foot reads as a 6"),
    MeaningEdit("three_closed", 3, "add", "zero_left_arc", 8,
                "a 3 closed on the left reads as an 8"),
)  # fmt: skip


def ink_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N,)`` IoU of the ink (``>= INK``) of two stacks of uint8 images (1 where
    neither has ink)."""
    ia, ib = a >= INK, b >= INK
    union = (ia | ib).sum((1, 2))
    return np.where(union > 0, (ia & ib).sum((1, 2)) / np.maximum(union, 1), 1.0)


def erase_box(images: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The images with their ink inside the box ``(x, y, w, h)`` (pixels) erased."""
    x, y, w, h = (int(round(v)) for v in box)
    out = images.copy()
    out[:, max(y, 0) : y + h, max(x, 0) : x + w] = 0
    return out


def _edited(cm, edit: MeaningEdit, c: int, x, sources, latent) -> dict[str, np.ndarray]:
    """The edit of digits ``x`` in the layer, the latent and the pixels."""
    k = len(cm.catalogue)
    base, h = op.blank(cm), op.read(cm, x)
    if edit.kind == "remove":
        sign, layer = -1.0, op.remove(h, base, c, k)
        pixel = erase_box(x, cm.catalogue.box[c])
    else:
        sign, layer = 1.0, op.add(h, op.read(cm, sources), base, c, k, masked=False)
        pixel = np.maximum(x, sources)
    z = encode_mu(cm, x) + sign * latent.delta(np.full(len(x), c))
    images = (op.render(cm, h), op.render(cm, layer), latent.decode(z), pixel)
    return dict(zip(("before", "layer", "latent", "pixel"), images))


def meaning_edits(
    cm: ConceptModel, digits: HeldDigits, concept_images: tuple[np.ndarray, np.ndarray],
    latent: LatentEdits, classifier: SmallCNN, per_edit: int = PER_EDIT, seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Every edit of :data:`MEANING_EDITS` whose concept the model's catalogue
    holds, on up to ``per_edit`` ``digits`` of its class: the share read as the
    expected digit (``before``: the unedited reconstruction; ``layer``, ``latent``
    (a :class:`~conceptlib.operators.latent.LatentEdits` of ``cm``), ``pixel``) and
    the ink IoU of the layer and latent edits with the pixel edit (``iou_layer``,
    ``iou_latent``). ``concept_images``: held-out concept images (cut from digits of
    the same split) and their concept index ``0..K-1``; additions draw one per digit
    from stream ``[seed, 13]``."""
    names = list(cm.catalogue.names)
    rng = np.random.default_rng([seed, 13])
    out: dict[str, Any] = {"split": digits.split}
    for edit in MEANING_EDITS:
        if edit.concept not in names:  # another catalogue: not this edit
            continue
        c = names.index(edit.concept)
        x = digits.x[digits.y == edit.digit][:per_edit]
        pool = np.flatnonzero(concept_images[1] == c)
        if not len(x) or not len(pool):
            raise ConceptlibError(f"meaning edit {edit.name}: no digit or image")
        sources = concept_images[0][rng.choice(pool, len(x))]
        images = _edited(cm, edit, c, x, sources, latent)
        row: dict[str, Any] = {"what": edit.what, "expected": edit.expected}
        row["n"] = len(x)
        for where, im in images.items():
            read = predict(classifier, im).argmax(1) == edit.expected
            row[where] = float(read.mean())
        for where in ("layer", "latent"):
            row[f"iou_{where}"] = float(ink_iou(images[where], images["pixel"]).mean())
        out[edit.name] = row
    return out


def summarise_meaning(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Per edit and measure, ``{"mean", "sd"}`` over seeds (sd None for one)."""
    out: dict[str, Any] = {"split": per_seed[0]["split"]}
    for name in _edits(per_seed[0]):
        rows = [s[name] for s in per_seed]
        out[name] = {k: rows[0][k] for k in ("what", "expected")} | {
            key: mean_sd([r[key] for r in rows]) for key in MEASURES
        }
    return out


def against_pixels(per_seed: list[dict[str, Any]]) -> dict[str, tuple[float, int]]:
    """Per edit of ``per_seed`` (one :func:`meaning_edits` per seed): the layer's
    mean rate minus the pixel edit's, and its sign beyond the seed noise
    (:class:`~conceptlib.report.stats.Difference`: 1, 0 or -1)."""
    out = {}
    for name in _edits(per_seed[0]):
        layer, pixel = (Estimate(tuple(s[name][k] for s in per_seed))
                        for k in ("layer", "pixel"))  # fmt: skip
        diff = Difference(layer, pixel)
        out[name] = (diff.value, diff.sign)
    return out


def _edits(record: dict[str, Any]) -> list[str]:
    """The edits a record holds, in :data:`MEANING_EDITS` order."""
    return [e.name for e in MEANING_EDITS if e.name in record]


def format_meaning(summary: dict[str, Any]) -> str:
    """A Markdown table of :func:`meaning_edits` (one seed) or
    :func:`summarise_meaning`: per edit, the share read as expected."""
    head = ["edit", "unedited", "layer", "latent", "pixels", "IoU layer", "IoU latent"]
    rows = [[summary[n]["what"], *(rate_text(summary[n][c], 2) for c in MEASURES)]
            for n in _edits(summary)]  # fmt: skip
    return markdown_table(head, rows)
