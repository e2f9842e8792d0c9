"""Measuring the operators: edits of test digits, checked independently.

Each edit (:func:`edit_measures`) is decoded and read by the concept model
re-encoding the image and by a small CNN digit classifier trained for evaluation
only (:func:`digit_classifier`), beside the same edit in the latent
(:mod:`~conceptlib.operators.latent`) and on the pixels (the images' maximum):

- *removal*: the digit's strongest concept off; success when it leaves the top
  :data:`TOP` and the image outside its region is kept (change at most :data:`KEEP`);
- *addition*: a concept of another class, absent from the top :data:`TOP`, added
  from a held-out image of it; success when it enters the top :data:`TOP`;
- *composition*: a digit built from held-out concept images of its class alone;
  success when the classifier reads it.

See: chapter ``ch-operators``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from conceptlib import operators as op
from conceptlib.data.catalogue import Catalogue
from conceptlib.data.mnist import NUM_CLASSES
from conceptlib.data.splits import HeldDigits, refuse_test, split_of
from conceptlib.errors import ConceptlibError
from conceptlib.files import CHECKPOINT_FORMAT, atomic_torch_save, load_checkpoint
from conceptlib.measures.classifier import SmallCNN, predict, train_classifier
from conceptlib.measures.explain import concept_shares
from conceptlib.measures.vocab import ON, top_k
from conceptlib.model.compose import region_of
from conceptlib.model.readout import ConceptModel, encode_mu
from conceptlib.operators.latent import LatentEdits, latent_directions
from conceptlib.operators.meaning import meaning_edits, summarise_meaning
from conceptlib.report.stats import Difference, Estimate, mean_sd, rate_text
from conceptlib.report.tables import markdown_table

#: Removal keeps the rest of the image: mean absolute change outside the removed
#: concept's region (its map above :data:`~conceptlib.measures.vocab.ON`, dilated by
#: :data:`KEEP_DILATE` px), on [0, 1] pixels.
KEEP = 0.05
KEEP_DILATE = 2
#: Success of removal and addition: out of or into the top this many concepts.
TOP = 3
#: The rates of success each operator aims at, on test digits.
TARGETS = {"removal": 0.9, "addition": 0.9, "composition": 0.8}
#: What :func:`edit_measures` adds a concept from (``image``: the pixel edit of the
#: same image beside it; ``scripts/choose_operators.py`` compares the two).
ADD_FROM = ("image", "prototype")
#: The dilations :func:`choose_dilation` chooses the removal's from, in pixels.
DILATIONS = (0, 1, 2)
#: Rows of :func:`format_operators`: (key, label).
OPERATOR_ROWS = (
    ("removal", "removal: out of the top 3, rest kept"),
    ("removal_gone", "removal: out of the top 3"),
    ("removal_kept", "removal: rest of the image kept"),
    ("addition", "addition: into the top 3"),
    ("composition", "composition: read as the digit"),
)


def target_phrase(rate: float, target: float) -> str:
    """Whether a success rate meets its target, in words with the numbers."""
    short = 100 * (target - rate)
    if short <= 0:
        return f"meets the {target:.0%} target"
    return f"misses the {target:.0%} target by {short:.1f} points"


def versus(a: Estimate, b: Estimate) -> str:
    """``a`` against ``b`` in the chapter's words ("better than", ...), judged by
    :class:`~conceptlib.report.stats.Difference` (beyond the seed noise or not)."""
    words = {1: "better than", 0: "within the seed noise of", -1: "worse than"}
    return words[Difference(a, b).sign]


def in_top(scores: np.ndarray, concepts: np.ndarray) -> np.ndarray:
    """``(N,)``: whether each row's concept is among its :data:`TOP` highest scores."""
    return (top_k(scores, TOP) == concepts[:, None]).any(1)


def digit_classifier(
    x: np.ndarray, y: np.ndarray, cache: str | os.PathLike | None = None,
    seed: int = 0, num_epochs: int = 6, progress: bool = False,
) -> SmallCNN:  # fmt: skip
    """The evaluation-only 10-way digit classifier (Adam on ``x``, labels ``y``);
    ``cache``: a ``.pt`` file, loaded if present, else written after training."""
    if cache is not None and Path(cache).is_file():
        model = SmallCNN(NUM_CLASSES)
        model.load_state_dict(load_checkpoint(Path(cache))["model"])
        return model.eval()
    model = train_classifier(x, y, 10, num_epochs=num_epochs, seed=seed,
                             progress=progress)  # fmt: skip
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        state = {"format": CHECKPOINT_FORMAT, "model": model.state_dict()}
        atomic_torch_save(state, Path(cache))
    return model


def _removed(cm: ConceptModel, h, base, concepts, dilate: int) -> np.ndarray:
    """The layers ``h`` with each row's concept removed, decoded."""
    k = len(cm.catalogue)
    return _each(cm, partial(op.remove, base=base, num_concepts=k, dilate=dilate),
                 concepts, h)  # fmt: skip


def _each(cm: ConceptModel, edit, concepts: np.ndarray, *layers) -> np.ndarray:
    """The decoded ``edit(*rows, concept=c)``, one edit per row of ``layers``
    (``(N, C, H, W)`` each) and its concept ``c``."""
    rows = enumerate(concepts)
    edited = (edit(*(t[i : i + 1] for t in layers), concept=int(c)) for i, c in rows)
    return np.concatenate([op.render(cm, layer) for layer in edited])


def _removal_success(
    cm: ConceptModel, recon: np.ndarray, removed: np.ndarray, h, concepts
) -> tuple[np.ndarray, np.ndarray]:
    """Per removal: whether its concept left the top :data:`TOP` of the re-encoded
    image (``gone``), and whether the image outside the concept's region was kept
    (``kept``: mean absolute change on [0, 1] at most :data:`KEEP`)."""
    present = F.one_hot(torch.from_numpy(concepts), len(cm.catalogue)).bool()
    outside = ~(region_of(h, present, KEEP_DILATE)[:, 0] > ON).numpy()
    diff = np.abs(removed.astype(np.float32) - recon.astype(np.float32)) / 255.0
    change = (diff * outside).sum((1, 2)) / np.maximum(outside.sum((1, 2)), 1)
    return ~in_top(concept_shares(cm, removed), concepts), change <= KEEP


def choose_dilation(
    cm: ConceptModel, x: np.ndarray | HeldDigits,
    dilations: tuple[int, ...] = DILATIONS, *, split: str | None = None,
) -> tuple[int, dict[str, float]]:  # fmt: skip
    """How far removal should reach, for one model: the dilation (of the region it
    resets, one of ``dilations``, ties: the first) whose removals succeed most often
    on ``x``, and the success of each. A wider region erases more of the stroke but
    changes more of the image around it.

    ``x``: validation or training digits, a :class:`~conceptlib.data.splits.
    HeldDigits` (which names its split) or ``(N, 28, 28)`` uint8 with its ``split``
    (``val`` or ``train``; no default: an array does not say where it comes from,
    and choosers refuse test digits, :func:`~conceptlib.data.splits.refuse_test`).
    """
    refuse_test(split_of(x, split), "choose_dilation")
    if isinstance(x, HeldDigits):
        x = x.x
    base, h = op.blank(cm), op.read(cm, x)
    recon = op.render(cm, h)
    removed = concept_shares(cm, recon).argmax(1)
    rates = {}
    for dilate in dilations:
        rm = _removed(cm, h, base, removed, dilate)
        gone, kept = _removal_success(cm, recon, rm, h, removed)
        rates[str(dilate)] = float((gone & kept).mean())
    best = max(dilations, key=lambda d: rates[str(d)])  # ties: the first listed
    return best, rates


def choose_latent(
    cm: ConceptModel, latent: LatentEdits, digits: HeldDigits,
    concept_images: tuple[np.ndarray, np.ndarray], seed: int = 0,
) -> tuple[LatentEdits, dict[str, float]]:  # fmt: skip
    """The strongest latent baseline: of ``latent.variants()`` (kinds x steps,
    :mod:`~conceptlib.operators.latent`), the one whose removals (out of the top
    :data:`TOP`, the rest kept) and additions (of ``concept_images``, into the top
    :data:`TOP`) succeed most often on ``digits``, the mean of both rates (ties:
    the first); and each variant's score. Refuses test digits."""
    refuse_test(digits.split, "choose_latent")
    h = op.read(cm, digits.x)
    recon = op.render(cm, h)
    shares = concept_shares(cm, recon)
    removed = shares.argmax(1)
    rng = np.random.default_rng(seed)
    added, _ = draw_additions(cm, shares, digits.y, concept_images[1], rng, seed)
    mu = encode_mu(cm, digits.x)
    scores = {}
    for v in latent.variants():
        out = v.decode(mu - v.delta(removed))
        gone, kept = _removal_success(cm, recon, out, h, removed)
        entered = in_top(concept_shares(cm, v.decode(mu + v.delta(added))), added)
        scores[v.name] = float(((gone & kept).mean() + entered.mean()) / 2)
    return max(latent.variants(), key=lambda v: scores[v.name]), scores


def choice_digits(val: HeldDigits, num: int, seed: int) -> HeldDigits:
    """The ``num`` validation digits the choices read (stream ``[seed, 9]``)."""
    rng = np.random.default_rng([seed, 9])
    return val.take(rng.choice(len(val), min(num, len(val)), replace=False))


def strongest_latent(cm: ConceptModel, pipe) -> tuple[LatentEdits, dict[str, float]]:
    """The latent baseline of ``cm`` and each variant's score: directions from (a
    subsample of) the training digits of a :class:`~conceptlib.experiment.pipeline.
    Pipeline` of ``cm``'s profile and the concept images cut from its validation
    digits, the strongest by :func:`choose_latent` on its :func:`choice_digits`."""
    train = pipe.train_digits.take(pipe.subsample(len(pipe.train_digits)))
    vc = pipe.val_concepts
    val_concepts = (vc.x, vc.y - cm.catalogue.labels[0])
    latent = latent_directions(cm, train.x, train.y, train.variants, val_concepts)
    val = choice_digits(pipe.val_digits, pipe.cfg.eval.num_edits, pipe.cfg.seed)
    return choose_latent(cm, latent, val, val_concepts, pipe.cfg.seed)


def draw_additions(
    cm: ConceptModel, shares: np.ndarray, labels: np.ndarray, concept_of: np.ndarray,
    rng: np.random.Generator, seed: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The additions of :func:`edit_measures`: ``(added, pick)``, the concept each
    digit gets and the held-out concept image (index into ``concept_of``, their
    concepts) it is added from. Each digit (``shares``: its concept shares;
    ``labels``: its class) gets a concept of another class absent from its
    :data:`TOP`, drawn from ``rng``; the image is drawn among that concept's from a
    stream of its own, ``[seed, 11]``."""
    k, digit_of = len(cm.catalogue), np.asarray(cm.catalogue.digit)
    others = [[c for c in range(k) if digit_of[c] != labels[i] and c not in top]
              for i, top in enumerate(top_k(shares, TOP))]  # fmt: skip
    added = np.array([rng.choice(o) for o in others])
    concept_of = np.asarray(concept_of)
    missing = sorted(set(added.tolist()) - set(concept_of.tolist()))
    if missing:
        raise ConceptlibError(f"additions: no held-out image of concept {missing[0]}")
    pick_rng = np.random.default_rng([seed, 11])
    pick = np.array([pick_rng.choice(np.flatnonzero(concept_of == c)) for c in added])
    return added, pick


def composition_parts(
    catalogue: Catalogue, concept_of: np.ndarray, per_digit: int,
    rng: np.random.Generator,
) -> Iterator[tuple[int, list[int], list[np.ndarray]]]:  # fmt: skip
    """The parts of composed digits: for each digit class with variant-0 concepts,
    ``(digit, parts, picks)``, its variant-0 concepts and, per part, ``per_digit``
    indices into the held-out concept images (``concept_of``: their concepts)."""
    for d in range(NUM_CLASSES):
        parts = [c for c in range(len(catalogue))
                 if catalogue.digit[c] == d and catalogue.variant[c] == 0]  # fmt: skip
        if parts:
            yield d, parts, [rng.choice(np.flatnonzero(concept_of == c), per_digit)
                             for c in parts]  # fmt: skip


def _composed(cm, latent, base, concept_images, per_digit, rng):
    """Digits composed from held-out concept images, in the concept layer, the
    latent and the pixels: ``({where: images}, targets)``."""
    cx, cy = concept_images
    k = len(cm.catalogue)
    cz, hc = encode_mu(cm, cx), op.read(cm, cx)
    out: dict[str, list[np.ndarray]] = {"layer": [], "latent": [], "pixel": []}
    targets = []
    for d, parts, picks in composition_parts(cm.catalogue, cy, per_digit, rng):
        layers = op.compose(base, [(hc[p], c) for c, p in zip(parts, picks)], k)
        z = latent.blank.expand(per_digit, -1, -1, -1).clone()
        for pick in picks:
            z = z + cz[pick] - latent.blank
        out["layer"].append(op.render(cm, layers))
        out["latent"].append(latent.decode(z))
        out["pixel"].append(np.stack([cx[p] for p in picks]).max(0))
        targets.append(np.full(per_digit, d))
    return {w: np.concatenate(v) for w, v in out.items()}, np.concatenate(targets)


def _additions(cm, latent, base, digits, concept_images, added, pick, add_from):
    """The digits (images, layers, latents) with concepts ``added``, in the concept
    layer (from the concept images at ``pick`` or prototypes), latent and pixels."""
    x, h, mu = digits
    cx, cy = concept_images
    k = len(cm.catalogue)
    if add_from == "image":
        sources = op.read(cm, cx[pick])
    else:
        sources = op.prototypes(cm, cx, cy, k)[torch.from_numpy(added)]
    add = partial(op.add, base=base, num_concepts=k, masked=False)
    return {
        "layer": _each(cm, add, added, h, sources),
        "latent": latent.decode(mu + latent.delta(added)),
        "pixel": np.maximum(x, cx[pick]),
    }


def _rates(removal, entered, read, added, targets) -> dict[str, float]:
    """One row of :func:`edit_measures` from its per-edit successes (``removal``:
    ``(gone, kept)``, or None for the pixel reference)."""
    row = {"addition": entered.mean(), "composition": read.mean()}
    if removal is not None:
        gone, kept = removal
        row = {"removal": (gone & kept).mean(), "removal_gone": gone.mean(),
               "removal_kept": kept.mean()} | row  # fmt: skip
        row |= {f"composition_{d}": read[targets == d].mean()
                for d in np.unique(targets)}  # fmt: skip
    row |= {f"addition_{c}": entered[added == c].mean() for c in np.unique(added)}
    return {key: float(v) for key, v in row.items()}


def edit_measures(
    cm: ConceptModel, digits: tuple[np.ndarray, np.ndarray],
    concept_images: tuple[np.ndarray, np.ndarray], latent: LatentEdits,
    classifier: SmallCNN, num_edits: int = 1000, per_digit: int = 100, seed: int = 0,
    dilate: int = op.DILATE, add_from: str = "image",
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Removal, addition and composition success: concept layer, latent, pixels.

    Removal and addition edit the first ``num_edits`` held-out ``digits`` (uint8,
    labels); ``per_digit`` digits per class are composed from the held-out
    ``concept_images`` (and their concept index ``0..K-1``); ``seed``: which
    concepts are added and which images composed; ``dilate``: the region that
    removal resets; ``add_from``: ``image`` (a held-out image of the concept, drawn
    at random; the pixel reference lays the same image on the digit) or
    ``prototype``. Returns ``{"layer": row, "latent": row, "pixel": row}``; a row
    holds ``removal`` (with ``removal_gone``, ``removal_kept``), ``addition``,
    ``composition``, ``composition_<d>`` per digit class and ``addition_<c>`` per
    added concept; the pixel row has no removal and no ``composition_<d>``.
    """
    if add_from not in ADD_FROM:
        raise ConceptlibError(f"add_from {add_from!r}: not one of {list(ADD_FROM)}")
    rng = np.random.default_rng(seed)
    x, y = digits[0][:num_edits], digits[1][:num_edits]
    base, h, mu = op.blank(cm), op.read(cm, x), encode_mu(cm, x)
    recon = op.render(cm, h)
    shares = concept_shares(cm, recon)
    removed = shares.argmax(1)
    added, pick = draw_additions(cm, shares, y, concept_images[1], rng, seed)
    rm = {"layer": _removed(cm, h, base, removed, dilate),
          "latent": latent.decode(mu - latent.delta(removed))}  # fmt: skip
    digs = (x, h, mu)
    add = _additions(cm, latent, base, digs, concept_images, added, pick, add_from)
    comp, targets = _composed(cm, latent, base, concept_images, per_digit, rng)
    out = {}
    for where in ("layer", "latent", "pixel"):
        gone_kept = None
        if where in rm:
            gone_kept = _removal_success(cm, recon, rm[where], h, removed)
        entered = in_top(concept_shares(cm, add[where]), added)
        read = predict(classifier, comp[where]).argmax(1) == targets
        out[where] = _rates(gone_kept, entered, read, added, targets)
    return out


def measure_operators(cm: ConceptModel, pipe) -> dict[str, Any]:
    """:func:`edit_measures` of ``cm`` on the ``eval.num_edits`` test digits and the
    held-out concept images of a :class:`~conceptlib.experiment.pipeline.Pipeline`
    of ``cm``'s profile, read by its digit classifier (``classifier_accuracy``: on
    all MNIST test digits). Removal reaches as far as :func:`choose_dilation` finds
    best on the validation :func:`choice_digits` (``removal_dilate``); the latent
    baseline is :func:`strongest_latent` (``latent_kind``, ``latent_by_kind``); the
    meaning-changing edits of the test digits are measured too (``meaning``,
    :func:`~conceptlib.operators.meaning.meaning_edits`)."""
    e, seed, first = pipe.cfg.eval, pipe.cfg.seed, cm.catalogue.labels[0]
    x, y = pipe.digits[2:]
    concepts = (pipe.test_concepts.x, pipe.test_concepts.y - first)
    val = choice_digits(pipe.val_digits, e.num_edits, seed)
    dilate, by_dilate = choose_dilation(cm, val)
    latent, by_kind = strongest_latent(cm, pipe)
    clf = pipe.digit_classifier
    out: dict[str, Any] = edit_measures(
        cm, (x, y), concepts, latent, clf, e.num_edits, e.edits_per_digit, seed, dilate
    )
    out |= {"removal_dilate": dilate, "removal_by_dilate": by_dilate,
            "removal_dilate_split": val.split, "latent_kind": latent.name,
            "latent_by_kind": by_kind}  # fmt: skip
    tests = HeldDigits(x, y, np.zeros(len(y), int), "test")
    out["meaning"] = meaning_edits(cm, tests, concepts, latent, clf, seed=seed)
    out |= {"num_edits": min(e.num_edits, len(y)), "per_digit": e.edits_per_digit,
            "classifier_accuracy": pipe.classifier_accuracy}  # fmt: skip
    return out


def latent_kind_of(record: dict[str, Any]) -> str:
    """The latent baseline a :func:`measure_operators` record used (``<kind>
    x<step>``): ``class x1`` for records made before the baseline was chosen on
    validation digits (they hold no ``latent_kind``)."""
    return record.get("latent_kind", "class x1")


def summarise_seeds(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`mean_sd` over seeds of every rate of :data:`OPERATOR_ROWS`, in the
    concept layer, the latent and, where every seed has it, the pixel reference:
    ``{"seeds": n, where: {key: {"mean": m, "sd": s}}}``."""
    out: dict[str, Any] = {"seeds": len(per_seed)}
    for where in ("layer", "latent", "pixel"):
        if all(where in m for m in per_seed):
            out[where] = {key: mean_sd([m[where][key] for m in per_seed])
                          for key, _ in OPERATOR_ROWS
                          if all(key in m[where] for m in per_seed)}  # fmt: skip
    if all("meaning" in m for m in per_seed):
        out["meaning"] = summarise_meaning([m["meaning"] for m in per_seed])
    return out


def format_operators(columns: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of success rates: for each column (one model's
    :func:`measure_operators`, or :func:`summarise_seeds` of several seeds), the
    concept layer and the latent baseline."""
    wheres = ("layer", "latent")
    head = ["edit"] + [f"{name}: {where}" for name in columns for where in wheres]
    rows = [
        (label, *(rate_text(m[w][key]) for m in columns.values() for w in wheres))
        for key, label in OPERATOR_ROWS
    ]
    return markdown_table(head, rows)
