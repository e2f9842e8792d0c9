"""Tests for conceptlib.data.catalogue: the catalogue, box sampling and concept
images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conceptlib.data.catalogue import (
    COLUMNS,
    SIZE,
    Catalogue,
    box_masks,
    fit_variants,
    load_catalogue,
    make_concepts,
    sample_boxes,
    stratified_split,
)
from conceptlib.errors import ConceptlibError

HEADER = ",".join(COLUMNS)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue("mnist")


def _write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _small_catalogue(tmp_path: Path, rows: list[str]) -> Catalogue:
    return load_catalogue(_write_csv(tmp_path / "small.csv", rows))


# ------------------------------------------------------------------ the catalogue


def test_packaged_catalogue(catalogue: Catalogue) -> None:
    assert len(catalogue) == 18
    assert len(set(catalogue.names)) == 18
    np.testing.assert_array_equal(catalogue.labels, np.arange(10, 28))
    assert catalogue.box.shape == (18, 4)
    assert catalogue.sd.shape == (18,)
    assert len(catalogue.descriptions) == 18
    assert all(catalogue.descriptions)
    assert set(catalogue.digit.tolist()) == set(range(10))
    assert Path(catalogue.source).name == "mnist.csv"


def test_packaged_catalogue_variants(catalogue: Catalogue) -> None:
    for d in range(10):
        expected = 2 if d in (2, 4) else 1
        assert catalogue.num_variants(d) == expected, d
        used = set(catalogue.variant[catalogue.digit == d].tolist())
        assert used == set(range(expected)), d


def test_packaged_boxes_on_canvas(catalogue: Catalogue) -> None:
    x, y, w, h = catalogue.box.T
    assert (w > 0).all() and (h > 0).all()
    assert (x >= 0).all() and (y >= 0).all()
    assert (x + w <= SIZE).all() and (y + h <= SIZE).all()
    assert (catalogue.sd >= 0).all()


def test_catalogue_by_path_equals_by_name(catalogue: Catalogue) -> None:
    by_path = load_catalogue(catalogue.source)
    assert by_path.names == catalogue.names
    np.testing.assert_array_equal(by_path.box, catalogue.box)


def test_mean_boxes_cover_ink(catalogue: Catalogue, mnist) -> None:
    """Each mean box, on the class-mean training image of its digit, covers ink."""
    masks = box_masks(np.rint(catalogue.box).astype(np.int64))
    for k, name in enumerate(catalogue.names):
        d = catalogue.digit[k]
        mean_image = mnist.x_train[mnist.y_train == d].mean(0)
        inside = mean_image[masks[k]].mean()
        assert inside > 2 * mean_image.mean(), (
            f"{name}: mean pixel in box {inside:.1f} vs image {mean_image.mean():.1f}"
        )


def test_num_variants_of_absent_digit(tmp_path: Path) -> None:
    cat = _small_catalogue(tmp_path, ["a,3,0,1,1,5,5,1,"])
    assert cat.num_variants(7) == 1
    assert cat.descriptions == ("",)


# --------------------------------------------------------------- bad catalogues

GOOD = "a,3,0,4,4,10,10,1.0,fine"


@pytest.mark.parametrize(
    "rows, header, match",
    [
        (["a,3,0,20,4,10,10,1.0,x"], HEADER, r"row 2 \(a\).*off the 28x28 canvas"),
        (["a,3,0,4,-1,10,10,1.0,x"], HEADER, r"off the 28x28 canvas"),
        (["a,3,0,4,4,0,10,1.0,x"], HEADER, r"row 2 \(a\).*w=0.*must be positive"),
        (["a,3,0,4,4,10,10,-1,x"], HEADER, r"row 2 \(a\): negative sd"),
        (["a,11,0,4,4,10,10,1,x"], HEADER, r"row 2 \(a\): unknown source digit 11"),
        ([GOOD, "a,5,0,4,4,10,10,1,y"], HEADER, r"row 3: duplicate concept name 'a'"),
        (
            ["a,3,0,4,4,10,10,x"],
            "name,digit,variant,x,y,w,h,description",
            r"missing columns \['sd'\]",
        ),
        (["a,3,0,abc,4,10,10,1,x"], HEADER, r"row 2: x is 'abc', not a number"),
        (["a,3,0,4,4,10,10,nan,x"], HEADER, r"row 2: sd is 'nan', not a finite"),
        (["a,3.5,0,4,4,10,10,1,x"], HEADER, r"row 2: digit is '3.5', not an integer"),
        (["a,3,-1,4,4,10,10,1,x"], HEADER, r"negative variant"),
        (
            [GOOD, "b,3,2,4,4,10,10,1,y"],
            HEADER,
            r"digit 3 uses variants \[0, 2\]; number them from 0",
        ),
        ([",3,0,4,4,10,10,1,x"], HEADER, r"row 2: empty concept name"),
        ([], HEADER, r"missing columns"),
    ],
)
def test_bad_catalogue_raises(
    tmp_path: Path, rows: list[str], header: str, match: str
) -> None:
    path = _write_csv(tmp_path / "bad.csv", rows, header)
    with pytest.raises(ConceptlibError, match=match) as info:
        load_catalogue(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message


def test_unknown_catalogue_name() -> None:
    with pytest.raises(ConceptlibError, match=r"no such catalogue \(packaged: mnist"):
        load_catalogue("fashion")


def test_missing_catalogue_path(tmp_path: Path) -> None:
    with pytest.raises(ConceptlibError, match="no such catalogue"):
        load_catalogue(tmp_path / "nothing.csv")


def test_undecodable_catalogue(tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\xff\xfe\x00\x81" * 20)
    with pytest.raises(ConceptlibError, match="binary.csv"):
        load_catalogue(path)


# ------------------------------------------------------------------ box sampling


def _central_concept(cat: Catalogue) -> int:
    """The concept whose mean box is furthest (in sds) from every clipping limit."""
    x, y, w, h = cat.box.T
    margin = np.minimum.reduce([x, y, SIZE - x - w, SIZE - y - h, w - 1, h - 1])
    score = np.where(cat.sd > 0, margin / np.maximum(cat.sd, 1e-9), -np.inf)
    return int(np.argmax(score))


def test_sample_boxes_statistics(catalogue: Catalogue) -> None:
    k = _central_concept(catalogue)
    sd = catalogue.sd[k]
    x, y, w, h = catalogue.box[k]
    assert min(x, y, SIZE - x - w, SIZE - y - h) >= 3 * sd  # no clipping bias
    rng = np.random.default_rng(123)
    boxes = sample_boxes(catalogue, np.full(20_000, k), rng)
    assert boxes.shape == (20_000, 4)
    assert boxes.dtype == np.int64
    np.testing.assert_allclose(boxes.mean(0), catalogue.box[k], atol=0.1)
    # rounding to whole pixels adds the variance of a uniform on [-1/2, 1/2]
    expected_sd = np.sqrt(sd**2 + 1 / 12)
    np.testing.assert_allclose(boxes.std(0), expected_sd, rtol=0.1)
    # the four coordinates are drawn independently
    corr = np.corrcoef(boxes.T.astype(float))
    assert np.abs(corr[np.triu_indices(4, 1)]).max() < 0.05


def test_sample_boxes_zero_sd_is_exact(tmp_path: Path) -> None:
    cat = _small_catalogue(tmp_path, ["a,3,0,4,5,10,11,0,x"])
    boxes = sample_boxes(cat, np.zeros(50, dtype=np.int64), np.random.default_rng(0))
    assert (boxes == [4, 5, 10, 11]).all()


@pytest.mark.parametrize("packaged", [True, False])
def test_sample_boxes_stay_on_canvas(tmp_path: Path, packaged: bool) -> None:
    if packaged:
        cat = load_catalogue("mnist")
    else:  # boxes at the edges and corners with a large jitter
        cat = _small_catalogue(
            tmp_path,
            [
                "tl,1,0,0,0,1,1,4,x",
                "br,2,0,26,26,2,2,4,x",
                "big,3,0,0,0,28,28,4,x",
                "thin,4,0,27,0,1,28,6,x",
            ],
        )
    concept = np.arange(20_000) % len(cat)
    boxes = sample_boxes(cat, concept, np.random.default_rng(5))
    x, y, w, h = boxes.T
    assert (w >= 1).all() and (h >= 1).all()
    assert (x >= 0).all() and (y >= 0).all()
    assert (x + w <= SIZE).all() and (y + h <= SIZE).all()
    if not packaged:  # the jitter does reach the limits
        assert (x == 0).any() and (x + w == SIZE).any() and (w == 1).any()


def test_box_masks() -> None:
    boxes = np.array([[0, 0, 1, 1], [3, 5, 4, 2], [0, 0, 28, 28]])
    masks = box_masks(boxes)
    assert masks.shape == (3, 28, 28) and masks.dtype == bool
    assert masks[0].sum() == 1 and masks[0, 0, 0]
    expected = np.zeros((28, 28), bool)
    expected[5:7, 3:7] = True  # rows are y, columns are x
    np.testing.assert_array_equal(masks[1], expected)
    assert masks[2].all()


# -------------------------------------------------------------- concept images


@pytest.fixture(scope="module")
def synthetic_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """200 images, each a constant 1..200: digit i % 10, variant (i // 10) % 2."""
    num = 200
    values = np.arange(1, num + 1, dtype=np.uint8)
    x = np.broadcast_to(values[:, None, None], (num, SIZE, SIZE)).copy()
    y = np.arange(num, dtype=np.int64) % 10
    variant = (np.arange(num) // 10) % 2
    return x, y, variant


def test_make_concepts_cuts_boxes_from_sources(
    catalogue: Catalogue, synthetic_digits
) -> None:
    x, y, variant = synthetic_digits
    per = 40
    cs = make_concepts(
        catalogue, per, x, y, variant, np.random.default_rng(0), p_train=1.0
    )
    n = len(catalogue) * per
    assert cs.x.shape == (n, SIZE, SIZE) and cs.x.dtype == np.uint8
    assert cs.boxes.shape == (n, 4)
    assert not cs.from_centre.any()
    masks = box_masks(cs.boxes)
    src = cs.x.reshape(n, -1).max(1).astype(np.int64) - 1  # the source's index
    assert (src >= 0).all()
    # inside the box: exactly the source's pixels; outside: zero
    np.testing.assert_array_equal(
        cs.x[masks], np.repeat(x[src, 0, 0], masks.sum((1, 2)))
    )
    assert (cs.x[~masks] == 0).all()
    # the source has the concept's digit and variant
    k = cs.y - 10
    np.testing.assert_array_equal(y[src], catalogue.digit[k])
    np.testing.assert_array_equal(variant[src], catalogue.variant[k])
    # several different sources are used for each concept
    for kk in range(len(catalogue)):
        assert len(np.unique(src[k == kk])) > 3


def test_make_concepts_labels(catalogue: Catalogue, synthetic_digits) -> None:
    x, y, variant = synthetic_digits
    cs = make_concepts(catalogue, 7, x, y, variant, np.random.default_rng(1))
    assert cs.y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(cs.y), [0] * 10 + [7] * 18)
    np.testing.assert_array_equal(cs.y, np.repeat(np.arange(10, 28), 7))


def test_make_concepts_fraction_from_centres(
    catalogue: Catalogue, synthetic_digits
) -> None:
    x, y, variant = synthetic_digits
    centres = np.broadcast_to(
        (np.arange(10, dtype=np.uint8) + 240)[:, None, None], (10, SIZE, SIZE)
    ).copy()
    cs = make_concepts(
        catalogue,
        1000,
        x,
        y,
        variant,
        np.random.default_rng(2),
        centres=centres,
        p_train=0.8,
    )
    assert len(cs.y) == 18_000
    assert abs(cs.from_centre.mean() - 0.2) < 0.02
    top = cs.x.reshape(len(cs.x), -1).max(1)
    digit = catalogue.digit[cs.y - 10]
    # images from centres carry the centre of their own digit, the rest a digit
    np.testing.assert_array_equal(top[cs.from_centre], 240 + digit[cs.from_centre])
    assert (top[~cs.from_centre] <= 200).all()


@pytest.mark.parametrize("p_train", [1.0, 0.0])
def test_make_concepts_p_train_limits(
    catalogue: Catalogue, synthetic_digits, p_train: float
) -> None:
    x, y, variant = synthetic_digits
    centres = np.full((10, SIZE, SIZE), 250, dtype=np.uint8)
    cs = make_concepts(
        catalogue,
        20,
        x,
        y,
        variant,
        np.random.default_rng(3),
        centres=centres,
        p_train=p_train,
    )
    assert cs.from_centre.all() if p_train == 0.0 else not cs.from_centre.any()


def test_make_concepts_seeded(catalogue: Catalogue, synthetic_digits) -> None:
    x, y, variant = synthetic_digits
    centres = np.full((10, SIZE, SIZE), 250, dtype=np.uint8)

    def make(seed: int):
        return make_concepts(
            catalogue,
            30,
            x,
            y,
            variant,
            np.random.default_rng(seed),
            centres=centres,
            p_train=0.8,
        )

    a, b, c = make(7), make(7), make(8)
    for field in ("x", "y", "boxes", "from_centre"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.x, c.x)
    assert not np.array_equal(a.boxes, c.boxes)


def test_make_concepts_without_sources(catalogue: Catalogue, synthetic_digits) -> None:
    x, y, variant = synthetic_digits
    keep = ~((y == 4) & (variant == 1))
    with pytest.raises(ConceptlibError, match="four_open_left"):
        make_concepts(
            catalogue, 5, x[keep], y[keep], variant[keep], np.random.default_rng(0)
        )


# ---------------------------------------------------------------------- variants


def test_fit_variants_follow_the_boxes(tmp_path: Path) -> None:
    """Variant v is the form whose ink falls into the boxes of variant v's concepts."""
    cat = _small_catalogue(
        tmp_path,
        ["a,4,0,16,0,10,10,1,x", "b,4,1,0,0,10,10,1,x", "c,7,0,0,0,10,10,1,x"],
    )
    rng = np.random.default_rng(0)
    left = np.zeros((SIZE, SIZE), np.uint8)
    left[:, :14] = 200  # the common form: ink on the left, in the box of b
    right = np.zeros((SIZE, SIZE), np.uint8)
    right[:, 14:] = 200  # the rare form: ink on the right, in the box of a
    forms = np.array([0] * 30 + [1] * 10 + [0] * 8)  # 0 = left form, 1 = right form
    rng.shuffle(forms[:40])
    x = np.where(forms[:, None, None] == 0, left, right).astype(np.uint8)
    noise = rng.integers(0, 20, x.shape)
    x = np.clip(x.astype(int) + noise, 0, 255).astype(np.uint8)
    y = np.array([4] * 40 + [7] * 8)
    model = fit_variants(x, y, cat, seed=0)
    assert set(model.centres) == {4}  # digit 7 has a single variant
    assert model.centres[4].shape == (2, SIZE * SIZE)
    c0 = model.centres[4][0].reshape(SIZE, SIZE)  # variant 0: the right form
    assert c0[:, 14:].mean() > 150 and c0[:, :14].mean() < 50
    assigned = model.assign(x, y)
    np.testing.assert_array_equal(assigned[:40], 1 - forms[:40])
    assert (assigned[40:] == 0).all()


def test_fit_variants_needs_enough_images(tmp_path: Path) -> None:
    cat = _small_catalogue(tmp_path, ["a,4,0,0,0,10,10,1,x", "b,4,1,0,0,10,10,1,x"])
    x = np.zeros((1, SIZE, SIZE), np.uint8)
    with pytest.raises(ConceptlibError, match="too few training images of digit 4"):
        fit_variants(x, np.array([4]), cat)


# ------------------------------------------------------------------------ splits


def test_stratified_split() -> None:
    counts = [50, 73, 100, 31, 64, 88, 47, 90, 55, 102]
    labels = np.repeat(np.arange(10), counts)
    np.random.default_rng(0).shuffle(labels)
    train, val = stratified_split(labels, 0.3, seed=0)
    n = len(labels)
    assert abs(len(val) - 0.3 * n) <= 1
    assert len(train) + len(val) == n
    assert np.intersect1d(train, val).size == 0
    np.testing.assert_array_equal(np.union1d(train, val), np.arange(n))
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()
    for c, count in enumerate(counts):
        assert abs((labels[val] == c).sum() - 0.3 * count) <= 1, c
    again = stratified_split(labels, 0.3, seed=0)
    np.testing.assert_array_equal(again[1], val)
    other = stratified_split(labels, 0.3, seed=1)
    assert not np.array_equal(other[1], val)
