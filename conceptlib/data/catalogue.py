"""The concept catalogue and the generation of concept images (paper 3.2-3.5).

A *concept* is a box ``x, y, w, h`` (pixels of the 28 x 28 canvas) on a source digit;
its images keep the digit's pixels inside a jittered box, zero elsewhere. All of it
is vectorised and draws from an explicit ``np.random.Generator``. See chapters
``ch-data`` and ``ch-augmentation``.
"""

from __future__ import annotations

import csv
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conceptlib.config import FIRST_CONCEPT_LABEL
from conceptlib.data.mnist import IMAGE_SHAPE
from conceptlib.errors import ConceptlibError

SIZE = IMAGE_SHAPE[0]  # concept boxes live on the digits' canvas
CATALOGUE_DIR = Path(__file__).parent.parent / "catalogues"
COLUMNS = ("name", "digit", "variant", "x", "y", "w", "h", "sd", "description")


@dataclass(frozen=True)
class Catalogue:
    """K concepts as parallel arrays: ``names`` (concept k has label ``10 + k``),
    source ``digit`` and its ``variant`` (see ``fit_variants``), mean ``box``
    ``(K, 4)`` ``x, y, w, h`` and its per-coordinate ``sd`` in pixels, one phrase
    of ``descriptions`` each, and the ``source`` file."""

    names: tuple[str, ...]
    digit: np.ndarray
    variant: np.ndarray
    box: np.ndarray
    sd: np.ndarray
    descriptions: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.names)

    @property
    def labels(self) -> np.ndarray:
        """``(K,)`` the label of each concept: 10, 11, ..."""
        return FIRST_CONCEPT_LABEL + np.arange(len(self))

    def num_variants(self, digit: int) -> int:
        """How many variants of ``digit`` the catalogue distinguishes."""
        sel = self.variant[self.digit == digit]
        return int(sel.max()) + 1 if sel.size else 1


def _number(where: str, row: int, key: str, text: str, integer: bool) -> float:
    at = f"{where}: row {row}: {key} is {text!r}"
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConceptlibError(f"{at}, not a number") from None
    if not np.isfinite(value) or (integer and value != int(value)):
        kind = "an integer" if integer else "a finite number"
        raise ConceptlibError(f"{at}, not {kind}")
    return value


def _read_rows(name_or_path: str | os.PathLike) -> tuple[str, list[dict]]:
    """The catalogue's path (a packaged name or a path) and its CSV rows."""
    text = str(name_or_path)
    packaged = "/" not in text and not text.endswith(".csv")
    path = CATALOGUE_DIR / f"{text}.csv" if packaged else Path(text)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CATALOGUE_DIR.glob("*.csv")))
        raise ConceptlibError(f"{path}: no such catalogue (packaged: {known})")
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConceptlibError(f"{path}: cannot read CSV ({exc})") from None
    missing = [c for c in COLUMNS[:-1] if c not in (rows[0].keys() if rows else [])]
    if not rows or missing:
        raise ConceptlibError(f"{path}: missing columns {missing or list(COLUMNS)}")
    return str(path), rows


def _parse_row(where: str, i: int, row: dict, names: list[str]) -> tuple:
    """``name, digit, variant, box, sd`` of CSV row ``i``, checked."""
    name = (row["name"] or "").strip()
    if not name:
        raise ConceptlibError(f"{where}: row {i}: empty concept name")
    if name in names:
        raise ConceptlibError(f"{where}: row {i}: duplicate concept name {name!r}")
    at = f"{where}: row {i} ({name})"
    d = _number(where, i, "digit", row["digit"], integer=True)
    if not 0 <= d <= 9:
        raise ConceptlibError(f"{at}: unknown source digit {d:g}")
    v = _number(where, i, "variant", row["variant"], integer=True)
    if v < 0:
        raise ConceptlibError(f"{at}: negative variant {v:g}")
    x, y, w, h = b = [_number(where, i, k, row[k], integer=False) for k in "xywh"]
    if w <= 0 or h <= 0:
        raise ConceptlibError(f"{at}: box size w={w:g}, h={h:g} must be positive")
    if x < 0 or y < 0 or x + w > SIZE or y + h > SIZE:
        box = f"box x={x:g} y={y:g} w={w:g} h={h:g}"
        raise ConceptlibError(f"{at}: {box} is off the {SIZE}x{SIZE} canvas")
    s = _number(where, i, "sd", row["sd"], integer=False)
    if s < 0:
        raise ConceptlibError(f"{at}: negative sd {s:g}")
    return name, int(d), int(v), b, s


def load_catalogue(name_or_path: str | os.PathLike = "mnist") -> Catalogue:
    """Read and validate a catalogue CSV (a packaged name such as ``mnist``, or a path)
    of columns ``name, digit, variant, x, y, w, h, sd, description``: each box on the
    28 x 28 canvas with positive size; ``sd >= 0``; ``digit`` in 0..9; names unique;
    variants of a digit numbered 0, 1, ... without gaps."""
    where, rows = _read_rows(name_or_path)
    parsed: list[tuple] = []
    for i, row in enumerate(rows, start=2):  # row 1: the header
        parsed.append(_parse_row(where, i, row, [p[0] for p in parsed]))
    names, digit, variant, box, sd = zip(*parsed)
    digit, variant = np.array(digit), np.array(variant)
    for d in np.unique(digit):
        used = set(variant[digit == d].tolist())
        if used != set(range(max(used) + 1)):
            uses = f"digit {d} uses variants {sorted(used)}"
            raise ConceptlibError(f"{where}: {uses}; number them from 0")
    descriptions = tuple((r.get("description") or "").strip() for r in rows)
    box, sd = np.array(box, dtype=np.float64), np.array(sd, dtype=np.float64)
    return Catalogue(names, digit, variant, box, sd, descriptions, where)


@dataclass(frozen=True)
class VariantModel:
    """Prototype images of each digit's variants: ``centres`` maps a digit to its
    ``(V, 784)`` float k-means centres, row v being variant v."""

    centres: dict[int, np.ndarray]

    def assign(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``(N,)`` variant of each image ``x`` of digit ``y`` (nearest centre; 0
        for single-variant digits)."""
        out = np.zeros(len(y), dtype=np.int64)
        flat = x.reshape(len(x), -1).astype(np.float32)
        for d, c in self.centres.items():
            sel = np.flatnonzero(y == d)
            dist = ((flat[sel, None, :] - c[None].astype(np.float32)) ** 2).sum(-1)
            out[sel] = dist.argmin(1)
        return out


#: k-means sums each thread's share of the points apart, so its clusters depend on
#: the thread count: fixed at the 2 every record ran with (a 1-CPU machine: one).
KMEANS_THREADS = 2


def kmeans(points: np.ndarray, num_clusters: int, n_init: int, seed: int):
    """scikit-learn's ``KMeans`` fitted on :data:`KMEANS_THREADS` OpenMP threads."""
    from sklearn.cluster import KMeans  # heavy (seconds): only the pipeline clusters
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=KMEANS_THREADS, user_api="openmp"):
        return KMeans(num_clusters, n_init=n_init, random_state=seed).fit(points)


def fit_variants(
    x: np.ndarray, y: np.ndarray, catalogue: Catalogue, seed: int = 0
) -> VariantModel:
    """Find the variants of each digit the catalogue splits (e.g. open and closed 4):
    k-means (``random_state=seed``) with V clusters on that digit's training images
    ``x``, ``y``; cluster ``c`` becomes variant ``v`` when its mean image puts the
    largest share of its ink into the boxes of ``v``'s concepts (Hungarian matching).
    """
    # scipy: heavy (seconds), and only the pipeline fits variants
    from scipy.optimize import linear_sum_assignment

    centres = {}
    for d in np.unique(catalogue.digit):
        num = catalogue.num_variants(int(d))
        if num < 2:
            continue
        flat = x[y == d].reshape(-1, SIZE * SIZE).astype(np.float32)
        if len(flat) < num:
            raise ConceptlibError(f"too few training images of digit {d} for variants")
        km = kmeans(flat, num, n_init=4, seed=seed)
        imgs = km.cluster_centers_.reshape(num, SIZE, SIZE)
        share = np.zeros((num, num))  # (cluster, variant)
        for k in np.flatnonzero(catalogue.digit == d):
            mask = box_masks(np.rint(catalogue.box[k : k + 1]).astype(np.int64))[0]
            ink = (imgs * mask).sum((1, 2)) / np.maximum(imgs.sum((1, 2)), 1e-9)
            share[:, catalogue.variant[k]] += ink
        clusters, variants = linear_sum_assignment(-share)
        order = clusters[np.argsort(variants)]  # order[v] = cluster of variant v
        centres[int(d)] = km.cluster_centers_[order]
    return VariantModel(centres)


def sample_boxes(
    catalogue: Catalogue, concept: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """``(N, 4)`` int64 jittered boxes of the ``(N,)`` 0-based ``concept`` indices:
    each of ``x, y, w, h`` ~ Normal(mean, sd), rounded; sizes at least 1 px, boxes
    shifted (not cropped) to stay on the canvas."""
    mean = catalogue.box[concept]  # (N, 4)
    sd = catalogue.sd[concept][:, None]
    box = np.rint(mean + sd * rng.standard_normal(mean.shape)).astype(np.int64)
    box[:, 2:] = np.clip(box[:, 2:], 1, SIZE)
    box[:, :2] = np.clip(box[:, :2], 0, SIZE - box[:, 2:])
    return box


def box_masks(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` boxes -> ``(N, 28, 28)`` bool masks (True inside the box)."""
    r = np.arange(SIZE)
    x, y, w, h = (boxes[:, i, None] for i in range(4))
    rows = (r >= y) & (r < y + h)  # (N, 28)
    cols = (r >= x) & (r < x + w)  # (N, 28)
    return rows[:, :, None] & cols[:, None, :]


@dataclass(frozen=True)
class ConceptSet:
    """Concept images ``x`` (uint8), their labels ``y`` (``10 + k``), the ``boxes``
    cut, and ``from_centre``: True where the source was a decoded cluster centre."""

    x: np.ndarray
    y: np.ndarray
    boxes: np.ndarray
    from_centre: np.ndarray


def make_concepts(
    catalogue: Catalogue, per_concept: int, digits_x: np.ndarray,
    digits_y: np.ndarray, digits_variant: np.ndarray, rng: np.random.Generator,
    centres: np.ndarray | None = None, p_train: float = 0.8,
) -> ConceptSet:  # fmt: skip
    """``per_concept`` images of each concept (section 3.5): for each image of concept
    k, with probability ``p_train`` cut from a random source digit (``digits_x``,
    ``digits_y``, ``digits_variant``) of class ``digit[k]`` and variant ``variant[k]``,
    else from that digit's decoded cluster centre (``centres``, ``(10, 28, 28)``
    uint8; None: always from a digit): the pixels inside a drawn box."""
    num = len(catalogue)
    concept = np.repeat(np.arange(num), per_concept)  # (N,)
    # pool of source digits for each concept, concatenated; pick by offset + rank
    pools = [
        np.flatnonzero((digits_y == d) & (digits_variant == v))
        for d, v in zip(catalogue.digit, catalogue.variant)
    ]
    for k, pool in enumerate(pools):
        if pool.size == 0:
            which = f"digit {catalogue.digit[k]}, variant {catalogue.variant[k]}"
            name = catalogue.names[k]
            raise ConceptlibError(f"no source digits for concept {name!r} ({which})")
    sizes = np.array([p.size for p in pools])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    flat_pool = np.concatenate(pools)
    rank = (rng.random(len(concept)) * sizes[concept]).astype(np.int64)
    src = digits_x[flat_pool[offsets[concept] + rank]]  # (N, 28, 28)
    from_centre = np.zeros(len(concept), dtype=bool)
    if centres is not None and p_train < 1.0:
        from_centre = rng.random(len(concept)) >= p_train
        src[from_centre] = centres[catalogue.digit[concept[from_centre]]]
    boxes = sample_boxes(catalogue, concept, rng)
    x = src * box_masks(boxes)
    return ConceptSet(x.astype(np.uint8), catalogue.labels[concept], boxes, from_centre)


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted stratified train and validation indices (the paper's 70/30 split)."""
    from sklearn.model_selection import train_test_split  # heavy: as above

    idx = np.arange(len(labels))
    try:
        train, val = train_test_split(
            idx, test_size=val_fraction, random_state=seed, stratify=labels
        )
    except ValueError as exc:
        raise ConceptlibError(
            f"cannot split {len(labels)} images with {len(np.unique(labels))} labels "
            f"{1 - val_fraction:.0%}/{val_fraction:.0%} by label ({exc}); "
            "use more images"
        ) from None
    return np.sort(train), np.sort(val)


@dataclass(frozen=True)
class Composites:
    """Concept images overlaid (pixel maximum): composites ``x``, the ink of each
    part alone ``parts`` ``(N, P, 28, 28)``, and ``concepts`` ``(N, P)``, each part's
    0-based concept (-1: empty slot; part 0 is the image the row was built on)."""

    x: np.ndarray
    parts: np.ndarray
    concepts: np.ndarray


def compose(
    images: np.ndarray, concept: np.ndarray, num_parts: np.ndarray,
    rng: np.random.Generator, concept_digit: np.ndarray | None = None,
    max_parts: int | None = None,
) -> Composites:  # fmt: skip
    """Overlay concept images: row i is image i plus ``num_parts[i] - 1`` others drawn
    uniformly from ``images``, each of a ``concept`` (0-based) not yet in the row
    and, with ``concept_digit`` (each concept's source digit), of a digit not yet in
    it. ``max_parts`` is P, the width of ``parts`` (default ``num_parts.max()``)."""
    n = len(images)
    width = int(max_parts or max(int(num_parts.max()), 1))
    chosen = np.full((n, width), -1, dtype=np.int64)  # indices into images
    chosen[:, 0] = np.arange(n)
    key = concept if concept_digit is None else concept_digit[concept]
    for slot in range(1, width):
        todo = np.flatnonzero(num_parts > slot)
        for _ in range(1000):  # rejection sampling; conflicts are a few per cent
            if not todo.size:
                break
            pick = rng.integers(0, n, size=todo.size)
            taken = chosen[todo, :slot]
            prev, new = np.maximum(taken, 0), pick[:, None]
            # a clash: the same key (digit or concept), or the same concept anyway
            clash = (key[new] == key[prev]) | (concept[new] == concept[prev])
            ok = ~(clash & (taken >= 0)).any(1)
            chosen[todo[ok], slot] = pick[ok]
            todo = todo[~ok]
        if todo.size:
            raise ConceptlibError("cannot compose concepts: too few distinct concepts")
    present = chosen >= 0
    parts = images[np.maximum(chosen, 0)] * present[:, :, None, None]
    concepts = np.where(present, concept[np.maximum(chosen, 0)], -1)
    return Composites(parts.max(axis=1).astype(np.uint8), parts, concepts)


def shift_images(
    x: np.ndarray, rng: np.random.Generator, max_shift: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Shift each image by uniform whole-pixel offsets in ``[-max_shift,
    max_shift]``, zero-filling; returns the images and ``(N, 2)`` offsets ``dx, dy``
    (right, down)."""
    pad = max_shift
    offsets = rng.integers(-pad, pad + 1, size=(len(x), 2))
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    out = np.empty_like(x)
    for dx, dy in itertools.product(range(-pad, pad + 1), repeat=2):
        sel = (offsets[:, 0] == dx) & (offsets[:, 1] == dy)
        out[sel] = padded[sel, pad - dy : pad - dy + SIZE, pad - dx : pad - dx + SIZE]
    return out, offsets
