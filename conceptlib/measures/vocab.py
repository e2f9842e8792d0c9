"""The concept vocabulary: whether the concept maps name, find and localise concepts.

:func:`vocabulary_measures` names the concepts of held-out probes under box jitter
and shifts, finds both of overlaid pairs, and runs Network Dissection (Bau et al.,
2017) with its random-rotation control; :func:`digit_parts` looks for the parts of
real digits; :func:`energy` names the concepts of an image. See ``ch-vocabulary``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch

from conceptlib.data.catalogue import Catalogue, Composites
from conceptlib.data.mnist import IMAGE_SHAPE, NUM_CLASSES
from conceptlib.measures.probes import Probes, part_masks
from conceptlib.model.readout import ConceptModel, as_model, concept_maps
from conceptlib.model.vae import ConvVAE
from conceptlib.report.stats import Estimate, estimate
from conceptlib.report.tables import at, markdown_table, plus_minus

#: Network Dissection: a channel is on where it exceeds its top-0.5 % quantile
#: over the probe set, and detects a concept when that IoU exceeds 0.04.
DISSECTION_QUANTILE = 0.995
DISSECTION_IOU = 0.04
#: A map pixel is "on" above 0.5 (sigmoid channels); ink is a pixel above 0.5.
ON = 0.5
#: Pixels added on each side of a catalogue box when a digit part is looked for.
PART_GROW = 2
#: Level of the intervals quoted for an accuracy over a probe set.
CONFIDENCE = 0.95
#: The likelihood target of a concept variant: test-digit -ELBO at most this
#: multiple of the baseline's.
ELBO_RATIO_TARGET = 1.05


def energy(maps: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """``(..., K, H, W)`` maps -> ``(..., K)`` sum of squared activations, in
    float64 (a tensor for a tensor, an array for an array)."""
    if torch.is_tensor(maps):
        return maps.double().pow(2).flatten(-2).sum(-1)
    return (np.asarray(maps, np.float64) ** 2).reshape(*maps.shape[:-2], -1).sum(-1)


def top_k(scores: np.ndarray, k: int | None = None, stable: bool = False):
    """Indices of the ``k`` largest scores along the last axis, largest first
    (all of them for ``k=None``; ties in index order if ``stable``)."""
    return np.argsort(-scores, axis=-1, kind="stable" if stable else None)[..., :k]


def map_batches(
    model: ConceptModel | ConvVAE, images: np.ndarray, batch_size: int
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``(start, stop, maps)`` over ``images``, one batch of concept maps at a time."""
    for start in range(0, len(images), batch_size):
        stop = min(start + batch_size, len(images))
        yield start, stop, torch.from_numpy(concept_maps(model, images[start:stop]))


def flat_channels(acts: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(C, N*H*W)``, in the dtype of ``acts``."""
    return acts.transpose(0, 1).reshape(acts.shape[1], -1)


def on_threshold(flat: torch.Tensor) -> torch.Tensor:
    """``(C,)`` float32 :data:`DISSECTION_QUANTILE` of each row of ``(C, P)``
    activations: where Network Dissection turns a channel on."""
    q = np.quantile(flat.numpy(), DISSECTION_QUANTILE, axis=1)
    return torch.from_numpy(q).float()


class _Recognition:
    """Accumulates :func:`recognition` over batches."""

    def __init__(self, k: int) -> None:
        self.correct, self.seen = 0, 0
        self.inter, self.union = np.zeros(k), np.zeros(k)

    def add(self, maps: torch.Tensor, s: Composites, start: int, stop: int) -> None:
        k, size = maps.shape[1], maps.shape[-1]
        num_parts = int((s.concepts[start:stop] >= 0).sum(1).max())
        top = energy(maps).topk(num_parts, dim=1).indices.sort(1).values.numpy()
        want = np.sort(s.concepts[start:stop, :num_parts], axis=1)
        self.correct += int((top == want).all(1).sum())
        self.seen += stop - start
        own = part_masks(s, start, stop, k, size)  # (B, K, H, W)
        on = maps > ON
        self.inter += (on & own).flatten(2).sum(2).sum(0).double().numpy()
        held = own.flatten(2).any(2)  # union only in the images holding a concept
        self.union += ((on | own).flatten(2).sum(2) * held).sum(0).double().numpy()

    def result(self) -> dict[str, float]:
        present = self.union > 0
        iou = self.inter[present] / self.union[present]
        mean_iou = float(iou.mean()) if present.any() else 0.0
        return {"accuracy": self.correct / max(self.seen, 1), "iou": mean_iou}


def recognition(
    model: ConceptModel | ConvVAE, probe: Composites, batch_size: int = 256
) -> dict[str, float]:
    """How well the concept channels name and localise the concepts of a probe:
    ``accuracy``, the fraction of images whose P concepts are exactly the top-P
    channels by :func:`energy`; ``iou``, per concept the IoU of its channel > 0.5
    with its own ink, pooled over the images holding it, then the mean."""
    return _read_probe(as_model(model), probe, batch_size)[0]


def _read_probe(
    net: ConvVAE, s: Composites, batch_size: int, keep: int = 0
) -> tuple[dict[str, float], list[torch.Tensor]]:
    """:func:`recognition` of a probe and the maps of its first ``keep`` images."""
    acc, kept = _Recognition(net.num_concepts), []
    for start, stop, maps in map_batches(net, s.x, batch_size):
        acc.add(maps, s, start, stop)
        if start < keep:
            kept.append(maps[: keep - start])
    return acc.result(), kept


def _rotation(k: int, seed: int) -> torch.Tensor:
    """A random ``(K, K)`` orthogonal matrix (Haar measure, seeded)."""
    from scipy.stats import ortho_group  # scipy.stats loads in 0.7 s: only here

    return torch.from_numpy(ortho_group.rvs(k, random_state=seed)).float()


def dissect(
    maps: list[torch.Tensor], probes: list[Composites],
    rotation: torch.Tensor | None = None,
) -> dict[str, object]:  # fmt: skip
    """Network Dissection of K channels on probe images with known ink.

    ``maps``: per probe, ``(N_i, K, H, W)`` maps of its first ``N_i`` images. Each
    channel is on above its :func:`on_threshold` over all the images; its IoU with
    each concept's ink is pooled over them, and it *detects* its best concept when
    that IoU exceeds :data:`DISSECTION_IOU`. ``rotation``: a ``(K, K)`` orthogonal
    matrix applied to the channels first (the control: alignment should live in the
    channels, not the space). Returns ``unique`` (concepts detected by some
    channel), ``own`` (channels k detecting concept k) and the ``(K, K)`` ``iou``.
    """
    if rotation is not None:
        maps = [torch.einsum("jk,bkhw->bjhw", rotation, m) for m in maps]
    k, size = maps[0].shape[1], maps[0].shape[-1]
    thresh = on_threshold(flat_channels(torch.cat(maps)))[None, :, None, None]
    inter = torch.zeros(k, k, dtype=torch.float64)
    on_sum = torch.zeros(k, dtype=torch.float64)
    ink_sum = torch.zeros(k, dtype=torch.float64)
    for m, s in zip(maps, probes):
        for start in range(0, len(m), 1000):
            stop = min(start + 1000, len(m))
            on = (m[start:stop] > thresh).flatten(2).float()  # (B, K, HW)
            ink = part_masks(s, start, stop, k, size).flatten(2).float()
            inter += torch.einsum("bjp,bkp->jk", on, ink).double()
            on_sum += on.sum((0, 2)).double()
            ink_sum += ink.sum((0, 2)).double()
    union = on_sum[:, None] + ink_sum[None, :] - inter
    iou = (inter / union.clamp_min(1)).numpy()  # (channel, concept)
    best = iou.argmax(1)
    detects = iou.max(1) > DISSECTION_IOU
    return {
        "unique": int(len(set(best[detects].tolist()))),
        "own": int((detects & (best == np.arange(k))).sum()),
        "iou": iou.round(4).tolist(),
    }


def vocabulary_measures(
    model: ConceptModel | ConvVAE, probes: Probes, seed: int,
    dissection_size: int = 3000, batch_size: int = 256,
) -> dict[str, object]:  # fmt: skip
    """Every vocabulary measure of one model, each probe's maps computed once:
    ``accuracy`` and ``iou`` per probe (:func:`recognition`), the probes' ``size``,
    and ``dissection`` and ``dissection_rotated`` (``unique`` and ``own`` of
    :func:`dissect` on the first ``dissection_size`` images of the isolated and
    pair probes, plain and after a random rotation seeded by ``seed``)."""
    net = as_model(model)
    result: dict[str, dict] = {"accuracy": {}, "iou": {}, "size": {}}
    dissected, kept = ("isolated", "pairs"), {}
    for name, s in probes.sets.items():
        keep = dissection_size if name in dissected else 0
        r, kept[name] = _read_probe(net, s, batch_size, keep)
        result["accuracy"][name] = r["accuracy"]
        result["iou"][name] = r["iou"]
        result["size"][name] = len(s.x)
    maps = [torch.cat(kept[name]) for name in dissected]
    sets = [probes.sets[name] for name in dissected]
    plain = dissect(maps, sets)
    rotated = dissect(maps, sets, _rotation(net.num_concepts, seed))
    result["dissection"] = {"unique": plain["unique"], "own": plain["own"]}
    result["dissection_rotated"] = {"unique": rotated["unique"], "own": rotated["own"]}
    return result


@dataclass(frozen=True)
class DigitParts:
    """Whether each concept map lights its own part of real digits. A digit's
    *own* concepts are those cut from its class and variant; one *hits* when its map
    is on somewhere (> 0.5) with its centroid in the concept's catalogue box, grown
    by ``grow`` px. ``hit``: ``(K,)`` hit rate of each concept over its digits;
    ``overlap``: ``(10,)`` per class, the mean IoU of the on-regions of pairs of own
    concepts (NaN without pairs; low is apart); ``examples``: ``(10,)`` the first
    digit of each class."""

    hit: np.ndarray
    overlap: np.ndarray
    examples: np.ndarray

    def summary(self) -> dict[str, float]:
        """Mean hit rate over concepts, mean overlap over classes with pairs."""
        return {
            "part_hit": float(np.nanmean(self.hit)),
            "part_overlap": float(np.nanmean(self.overlap)),
        }


def _centred(maps: torch.Tensor, box: torch.Tensor, grow: int) -> torch.Tensor:
    """``(B, K)`` whether each map's centroid lies in its ``(K, 4)`` box
    (x, y, w, h) grown by ``grow`` px."""
    size = maps.shape[-1]
    coords = torch.arange(size, dtype=torch.float32) * (IMAGE_SHAPE[0] / size)
    mass = maps.flatten(2).sum(2).clamp_min(1e-12)  # (B, K)
    cy = (maps.sum(3) * coords).sum(2) / mass
    cx = (maps.sum(2) * coords).sum(2) / mass
    low, high = box[:, :2] - grow, box[:, :2] + box[:, 2:] + grow  # (K, 2): x, y
    inside_x = (cx >= low[:, 0]) & (cx <= high[:, 0])
    return inside_x & (cy >= low[:, 1]) & (cy <= high[:, 1])


def digit_parts(
    model: ConceptModel | ConvVAE, catalogue: Catalogue, x: np.ndarray,
    y: np.ndarray, variant_of: np.ndarray, grow: int = PART_GROW,
) -> DigitParts:  # fmt: skip
    """How well the concept maps split ``(N, 28, 28)`` uint8 test digits ``x``
    (labels ``y``, variants ``variant_of``: see ``fit_variants``) into their parts;
    ``grow``: pixels added on each side of a catalogue box."""
    k = len(catalogue)
    box = torch.from_numpy(catalogue.box).float()  # (K, 4) x, y, w, h
    own = torch.from_numpy(
        (catalogue.digit[None, :] == y[:, None])
        & (catalogue.variant[None, :] == variant_of[:, None])
    )  # (N, K)
    same = (catalogue.digit[:, None] == catalogue.digit[None, :]) & (
        catalogue.variant[:, None] == catalogue.variant[None, :]
    )  # (K, K): concepts cut from the same digit class and variant
    pairs = list(zip(*np.nonzero(np.triu(same, 1))))  # a < b
    hits = torch.zeros(k, dtype=torch.float64)
    iou_sum, iou_num = np.zeros(10), np.zeros(10)
    for start, stop, maps in map_batches(as_model(model), x, 1000):
        on = maps > ON
        hit = on.flatten(2).any(2) & _centred(maps, box, grow)  # (B, K)
        hits += (hit & own[start:stop]).sum(0).double()
        for a, b in pairs:
            rows = own[start:stop, a].nonzero().squeeze(1)
            inter = (on[rows, a] & on[rows, b]).flatten(1).sum(1).double()
            union = (on[rows, a] | on[rows, b]).flatten(1).sum(1).double()
            d = int(catalogue.digit[a])
            iou_sum[d] += float((inter / union.clamp_min(1)).sum())
            iou_num[d] += len(rows)
    counts = own.sum(0).double()
    hit = torch.where(counts > 0, hits / counts.clamp_min(1), torch.nan).numpy()
    with np.errstate(invalid="ignore"):
        overlap = np.where(iou_num > 0, iou_sum / np.maximum(iou_num, 1), np.nan)
    examples = np.array([int(np.flatnonzero(y == d)[0]) for d in range(NUM_CLASSES)])
    return DigitParts(hit, overlap, examples)


#: A probe accuracy within this of the ceiling classifier's (a share) is at the
#: catalogue's limit; further below, the gap is the model's.
CEILING_MARGIN = 0.02


def ceiling_gap(measure: float, ceiling: float, margin: float = CEILING_MARGIN) -> str:
    """Where a probe accuracy stands against the ceiling classifier's, in words:
    ``at the catalogue's limit`` (within ``margin`` of it, or above) or ``N.N
    points below``."""
    gap = round(100 * (ceiling - measure), 9)  # 0.93 - 0.91 is 2 points, not more
    if gap <= 100 * margin:
        return "at the catalogue's limit"
    return f"{gap:.1f} points below"


def binomial_halfwidth(p: float, n: int, level: float = CONFIDENCE) -> float:
    """Half-width of the normal interval at ``level`` of an accuracy ``p`` over
    ``n`` images."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return z * float(np.sqrt(max(p * (1 - p), 0.0) / max(n, 1)))


#: The targets a vocabulary should meet (quick profile, mean of 3 seeds): name,
#: path into the vocabulary dict, comparison, threshold.
TARGETS = (
    ("isolated accuracy", ("accuracy", "isolated"), ">=", 0.97),
    ("accuracy, box jitter sd 2 px", ("accuracy", "jitter"), ">=", 0.92),
    ("accuracy, shift in [-2, 2] px", ("accuracy", "shift"), ">=", 0.92),
    ("pairs: both in the top 2", ("accuracy", "pairs"), ">=", 0.90),
    ("channels detecting their own concept", ("dissection", "own"), ">=", 17),
    ("the same after a random rotation", ("dissection_rotated", "own"), "<=", 2),
)
#: Columns of :func:`format_vocabulary`: (header, path, digits).
VOCAB_COLUMNS = (
    ("isolated", ("accuracy", "isolated"), 3),
    ("jitter 2 px", ("accuracy", "jitter"), 3),
    ("shift ±2 px", ("accuracy", "shift"), 3),
    ("pairs top-2", ("accuracy", "pairs"), 3),
    ("pair IoU", ("iou", "pairs"), 3),
    ("own detectors", ("dissection", "own"), 1),
    ("rotated", ("dissection_rotated", "own"), 1),
    ("part hit", ("part_hit",), 3),
)


def format_vocabulary(
    rows: dict[str, dict], stds: dict[str, dict] | None = None
) -> str:
    """A Markdown table of vocabulary measures (:data:`VOCAB_COLUMNS`), one row
    per model name; ``stds``: the same names with standard deviations over seeds."""

    def cell(m: dict, sd: dict, path: tuple[str, ...], digits: int) -> str:
        value = at(m, path)
        return "–" if value is None else plus_minus(value, at(sd, path) or None, digits)

    stds = stds or {}
    body = [
        (name, *(cell(m, stds.get(name, {}), p, d) for _, p, d in VOCAB_COLUMNS))
        for name, m in rows.items()
    ]
    return markdown_table(("model", *(c[0] for c in VOCAB_COLUMNS)), body)


def check_targets(measures: dict) -> list[tuple[str, str, float | None, bool | None]]:
    """Each of :data:`TARGETS` against one model's measures: ``(name, rule, value,
    met)``, value and met None where the measure is missing."""
    out = []
    for name, path, op, threshold in TARGETS:
        value = at(measures, path)
        rule = f"{op} {threshold:g}"
        if value is None:
            out.append((name, rule, None, None))
        else:
            met = value >= threshold if op == ">=" else value <= threshold
            out.append((name, rule, float(value), bool(met)))
    return out


def format_targets(columns: dict[str, dict]) -> str:
    """A Markdown table of :func:`check_targets`, one column per model's measures
    (e.g. this build's and the recorded runs'): the value and met / missed."""
    checks = [check_targets(m) for m in columns.values()]

    def cell(check: tuple) -> str:
        _, _, value, met = check
        return "–" if value is None else f"{value:.3f} {'met' if met else 'missed'}"

    rows = [
        (name, rule, *(cell(c[i]) for c in checks))
        for i, (name, rule, _, _) in enumerate(check_targets({}))
    ]
    return markdown_table(("target", "rule", *columns), rows, "ll" + "r" * len(columns))


#: Rows of :func:`format_recipes`: label, path under a variant's vocabulary.
RECIPE_ROWS = (
    *((p, ("accuracy", p)) for p in ("isolated", "jitter", "shift", "pairs")),
    ("own detectors", ("dissection", "own")),
    ("own, rotated", ("dissection_rotated", "own")),
)
RECIPES = ("concept_paper", "concept_paper_tuned", "concept")


def format_recipes(metrics: dict, variants: tuple[str, ...] = RECIPES) -> str:
    """The concept recipes of one recorded run side by side, mean ± sd over its
    seeds: the probes' accuracies with the ceiling classifier's beside them, the
    own-concept detectors with and without the rotation, the test-digit -ELBO as a
    multiple of the baseline's and ``recon_bce`` minus the baseline's (nats)."""
    have = [v for v in variants if v in metrics["vocabulary"]]
    rows = []
    for label, path in RECIPE_ROWS:
        cells = [estimate(metrics, "vocabulary", v, *path) for v in have]
        top = estimate(metrics, "vocabulary", "classifier_ceiling", *path)
        d = 1 if path[0].startswith("dissection") else 3  # counts of detectors
        rows.append([label, *(e.text(d) for e in cells), top.text(d) if top else "–"])
    for name, key in (("test -ELBO / base", "neg_elbo"), ("recon - base", "recon_bce")):
        base = estimate(metrics, "variants", "baseline", "test_digits", key).values
        cells = []
        for v in have:
            own = estimate(metrics, "variants", v, "test_digits", key).values
            vs = (a / b if key == "neg_elbo" else a - b for a, b in zip(own, base))
            cells.append(Estimate(tuple(vs)).text(3 if key == "neg_elbo" else 1))
        rows.append([name, *cells, "–"])
    return markdown_table(("measure", *have, "ceiling"), rows)
