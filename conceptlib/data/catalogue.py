"""The concept catalogue and the generation of concept images (paper 3.2, 3.3, 3.5).

A *concept* is a stroke segment of a digit: a box (top-left ``x``, ``y``, width ``w``,
height ``h``, in pixels of the 28 x 28 canvas) on a source digit. Concept images keep
the source pixels inside a randomly jittered box and are zero elsewhere. Everything
here is vectorised over images and draws from an explicit ``np.random.Generator``.

See: paper sections 3.3 and 3.5, Figure 2; chapters ``ch-data`` and ``ch-augmentation``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.model_selection import train_test_split

from conceptlib.config import FIRST_CONCEPT_LABEL
from conceptlib.data.mnist import IMAGE_SHAPE
from conceptlib.errors import ConceptlibError

SIZE = IMAGE_SHAPE[0]  # concept boxes live on the digits' canvas
CATALOGUE_DIR = Path(__file__).parent.parent / "catalogues"
COLUMNS = ("name", "digit", "variant", "x", "y", "w", "h", "sd", "description")


@dataclass(frozen=True)
class Catalogue:
    """K concepts as parallel arrays (one entry per concept).

    Attributes:
        names: concept names; concept k gets label ``10 + k``.
        digit: ``(K,)`` source digit class.
        variant: ``(K,)`` which 2-means variant of the digit (see ``fit_variants``).
        box: ``(K, 4)`` float mean box ``x, y, w, h`` in pixels.
        sd: ``(K,)`` standard deviation of each box coordinate, pixels.
        descriptions: one phrase per concept.
        source: where the catalogue was read from.
    """

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


def _parse_number(path: str, row: int, key: str, text: str, integer: bool) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConceptlibError(
            f"{path}: row {row}: {key} is {text!r}, not a number"
        ) from None
    if not np.isfinite(value) or (integer and value != int(value)):
        kind = "an integer" if integer else "a finite number"
        raise ConceptlibError(f"{path}: row {row}: {key} is {text!r}, not {kind}")
    return value


def load_catalogue(name_or_path: str | os.PathLike = "mnist") -> Catalogue:
    """Read and validate a catalogue CSV (a packaged name such as ``mnist``, or a path).

    Columns: ``name, digit, variant, x, y, w, h, sd, description``. Each box must lie
    on the 28 x 28 canvas with positive size; ``sd >= 0``; ``digit`` in 0..9; names
    unique; variants of a digit numbered 0, 1, ... without gaps.
    """
    text = str(name_or_path)
    path = (
        CATALOGUE_DIR / f"{text}.csv"
        if "/" not in text and not text.endswith(".csv")
        else Path(text)
    )
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CATALOGUE_DIR.glob("*.csv")))
        raise ConceptlibError(f"{path}: no such catalogue (packaged: {known})")
    where = str(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
            header = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConceptlibError(f"{where}: cannot read CSV ({exc})") from None
    missing = [c for c in COLUMNS[:-1] if c not in header]
    if not rows or missing:
        raise ConceptlibError(f"{where}: missing columns {missing or list(COLUMNS)}")
    names, digit, variant, box, sd, desc = [], [], [], [], [], []
    for i, row in enumerate(rows, start=2):
        name = (row["name"] or "").strip()
        if not name:
            raise ConceptlibError(f"{where}: row {i}: empty concept name")
        if name in names:
            raise ConceptlibError(f"{where}: row {i}: duplicate concept name {name!r}")
        d = _parse_number(where, i, "digit", row["digit"], integer=True)
        if not 0 <= d <= 9:
            raise ConceptlibError(
                f"{where}: row {i} ({name}): unknown source digit {d:g}"
            )
        v = _parse_number(where, i, "variant", row["variant"], integer=True)
        if v < 0:
            raise ConceptlibError(f"{where}: row {i} ({name}): negative variant {v:g}")
        b = [_parse_number(where, i, k, row[k], integer=False) for k in "xywh"]
        if b[2] <= 0 or b[3] <= 0:
            raise ConceptlibError(
                f"{where}: row {i} ({name}): box size w={b[2]:g}, h={b[3]:g} "
                "must be positive"
            )
        if b[0] < 0 or b[1] < 0 or b[0] + b[2] > SIZE or b[1] + b[3] > SIZE:
            raise ConceptlibError(
                f"{where}: row {i} ({name}): box x={b[0]:g} y={b[1]:g} w={b[2]:g} "
                f"h={b[3]:g} is off the {SIZE}x{SIZE} canvas"
            )
        s = _parse_number(where, i, "sd", row["sd"], integer=False)
        if s < 0:
            raise ConceptlibError(f"{where}: row {i} ({name}): negative sd {s:g}")
        names.append(name)
        digit.append(int(d))
        variant.append(int(v))
        box.append(b)
        sd.append(s)
        desc.append((row.get("description") or "").strip())
    digit_a, variant_a = np.array(digit), np.array(variant)
    for d in np.unique(digit_a):
        used = set(variant_a[digit_a == d].tolist())
        if used != set(range(max(used) + 1)):
            raise ConceptlibError(
                f"{where}: digit {d} uses variants {sorted(used)}; number them from 0"
            )
    return Catalogue(
        names=tuple(names),
        digit=digit_a,
        variant=variant_a,
        box=np.array(box, dtype=np.float64),
        sd=np.array(sd, dtype=np.float64),
        descriptions=tuple(desc),
        source=where,
    )


@dataclass(frozen=True)
class VariantModel:
    """Prototype images of each digit's variants (k-means on pixels).

    Attributes:
        centres: digit -> ``(V, 784)`` float centres; row v is variant v.
    """

    centres: dict[int, np.ndarray]

    def assign(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``(N,)`` variant of each image (nearest centre; 0 for single-variant digits).

        Args:
            x: ``(N, 28, 28)`` uint8 images; y: ``(N,)`` digit labels.
        """
        out = np.zeros(len(y), dtype=np.int64)
        flat = x.reshape(len(x), -1).astype(np.float32)
        for d, c in self.centres.items():
            sel = np.flatnonzero(y == d)
            dist = ((flat[sel, None, :] - c[None].astype(np.float32)) ** 2).sum(-1)
            out[sel] = dist.argmin(1)
        return out


def fit_variants(
    x: np.ndarray, y: np.ndarray, catalogue: Catalogue, seed: int = 0
) -> VariantModel:
    """Find the variants of each digit the catalogue splits (e.g. open and closed 4).

    k-means with V clusters on the pixels of that digit's training images. Cluster
    ``c`` becomes variant ``v`` when its mean image puts the largest share of its
    ink into the boxes of the concepts of variant ``v`` (a one-to-one Hungarian
    matching), so the catalogue's boxes, not the cluster sizes, name the variants.

    Args:
        x: ``(N, 28, 28)`` uint8 training digits; y: ``(N,)`` labels.
        catalogue: the concepts (tells which digits have several variants).
        seed: k-means ``random_state``.
    """
    centres = {}
    for d in np.unique(catalogue.digit):
        num = catalogue.num_variants(int(d))
        if num < 2:
            continue
        flat = x[y == d].reshape(-1, SIZE * SIZE).astype(np.float32)
        if len(flat) < num:
            raise ConceptlibError(f"too few training images of digit {d} for variants")
        km = KMeans(num, n_init=4, random_state=seed).fit(flat)
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
    """Draw jittered boxes: each of ``x, y, w, h`` ~ Normal(mean, sd), rounded.

    Sizes are at least 1 px and boxes are shifted (not cropped) to stay on canvas.

    Args:
        catalogue: the concepts.
        concept: ``(N,)`` concept index (0-based) of each image.
        rng: the random source.

    Returns:
        ``(N, 4)`` int64 boxes ``x, y, w, h``.
    """
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
    """Generated concept images.

    Attributes:
        x: ``(N, 28, 28)`` uint8 images.
        y: ``(N,)`` int64 labels ``10 + k``.
        boxes: ``(N, 4)`` the boxes that were cut.
        from_centre: ``(N,)`` True where the source was a decoded cluster centre.
    """

    x: np.ndarray
    y: np.ndarray
    boxes: np.ndarray
    from_centre: np.ndarray


def make_concepts(
    catalogue: Catalogue,
    per_concept: int,
    digits_x: np.ndarray,
    digits_y: np.ndarray,
    digits_variant: np.ndarray,
    rng: np.random.Generator,
    centres: np.ndarray | None = None,
    p_train: float = 0.8,
) -> ConceptSet:
    """The procedure of section 3.5, vectorised over all images.

    For each image of concept k: with probability ``p_train`` cut from a random
    digit of class ``digit[k]`` (and variant ``variant[k]``), else from the decoded
    cluster centre matched to that digit; draw the box; keep the pixels inside it.

    Args:
        catalogue: the concepts.
        per_concept: images per concept.
        digits_x: ``(N, 28, 28)`` uint8 source digits; digits_y: ``(N,)`` labels.
        digits_variant: ``(N,)`` variant of each source digit.
        rng: the random source.
        centres: ``(10, 28, 28)`` uint8 decoded centre per digit, or None (then
            every image is cut from a digit, as for the held-out concept test set).
        p_train: probability of cutting from a digit rather than a centre.
    """
    num = len(catalogue)
    concept = np.repeat(np.arange(num), per_concept)  # (N,)
    # pool of source digits for each concept, concatenated; pick by offset + rank
    pools = [
        np.flatnonzero((digits_y == d) & (digits_variant == v))
        for d, v in zip(catalogue.digit, catalogue.variant)
    ]
    for k, pool in enumerate(pools):
        if pool.size == 0:
            raise ConceptlibError(
                f"no source digits for concept {catalogue.names[k]!r} "
                f"(digit {catalogue.digit[k]}, variant {catalogue.variant[k]})"
            )
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
    """Stratified train/validation indices (the paper's 70/30 split).

    Returns:
        Sorted ``train_idx`` and ``val_idx`` into ``labels``.
    """
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
    """Images made of several concept images overlaid (pixel maximum).

    Attributes:
        x: ``(N, 28, 28)`` uint8 composites.
        parts: ``(N, P, 28, 28)`` uint8 ink of each part alone (zeros: empty slot).
        concepts: ``(N, P)`` int64 concept index of each part (0-based), -1 where
            the slot is empty; part 0 is the image the composite was built on.
    """

    x: np.ndarray
    parts: np.ndarray
    concepts: np.ndarray


def compose(
    images: np.ndarray,
    concept: np.ndarray,
    num_parts: np.ndarray,
    rng: np.random.Generator,
    concept_digit: np.ndarray | None = None,
    max_parts: int | None = None,
) -> Composites:
    """Overlay concept images: row i starts from image i and adds others to it.

    Row i gets ``num_parts[i] - 1`` further images drawn uniformly from
    ``images``, each of a concept not yet in the row (and, with ``concept_digit``,
    of a source digit class not yet in it), so the parts of a composite are
    distinct concepts cut from different source images.

    Args:
        images: ``(N, 28, 28)`` uint8 concept images; concept: ``(N,)`` their
            concept indices (0-based).
        num_parts: ``(N,)`` parts per row, 1 (the image alone) or more.
        rng: the random source.
        concept_digit: ``(K,)`` source digit class of each concept, or None.
        max_parts: P, the width of ``parts`` (default ``num_parts.max()``).
    """
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
            clash = (key[pick][:, None] == key[np.maximum(taken, 0)]) & (taken >= 0)
            if concept_digit is not None:  # distinct concepts in any case
                same = concept[pick][:, None] == concept[np.maximum(taken, 0)]
                clash |= same & (taken >= 0)
            ok = ~clash.any(1)
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
    """Shift each image by a random whole-pixel offset, zero-filling the border.

    Args:
        x: ``(N, 28, 28)`` images.
        rng: the random source.
        max_shift: offsets are uniform integers in ``[-max_shift, max_shift]``
            per axis.

    Returns:
        The shifted images and ``(N, 2)`` offsets ``dx, dy`` (right, down).
    """
    offsets = rng.integers(-max_shift, max_shift + 1, size=(len(x), 2))
    pad = max_shift
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    out = np.empty_like(x)
    for dx in range(-pad, pad + 1):
        for dy in range(-pad, pad + 1):
            sel = (offsets[:, 0] == dx) & (offsets[:, 1] == dy)
            if sel.any():
                out[sel] = padded[
                    sel, pad - dy : pad - dy + SIZE, pad - dx : pad - dx + SIZE
                ]
    return out, offsets
