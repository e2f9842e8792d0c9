"""Tests for conceptlib.report.plots: plots return Figures; PNGs are written
atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from conceptlib.report.plots import (
    figure_png,
    plot_catalogue,
    plot_gallery,
    plot_images,
    plot_learning_curves,
    save_figure,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _images(num: int) -> np.ndarray:
    return RNG.random((num, 28, 28))


def test_plot_images() -> None:
    fig = plot_images(_images(13), [f"t{i}" for i in range(13)], ncols=5, suptitle="s")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 15  # 3 rows of 5 panels
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 13
    assert shown[4].get_title() == "t4"
    assert fig._suptitle is not None and fig._suptitle.get_text() == "s"


def test_plot_images_single_and_without_titles() -> None:
    fig = plot_images(_images(1))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == ""


def test_plot_catalogue_draws_one_box_per_concept() -> None:
    boxes = np.array([[1, 2, 10, 12], [5, 5, 8, 8], [0, 0, 28, 28]], dtype=float)
    fig = plot_catalogue(["a", "b", "c"], boxes, _images(3), ncols=2)
    assert isinstance(fig, Figure)
    for ax, box in zip(fig.axes, boxes):
        rects = [p for p in ax.patches if isinstance(p, Rectangle)]
        assert len(rects) == 1
        assert rects[0].get_width() == box[2] and rects[0].get_height() == box[3]
        assert rects[0].get_xy() == (box[0] - 0.5, box[1] - 0.5)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["a", "b", "c"]


@pytest.mark.parametrize("uint8", [True, False])
def test_plot_gallery(uint8: bool) -> None:
    images = RNG.integers(0, 256, (3 * 4, 28, 28)).astype(np.uint8)
    if not uint8:
        images = images / 255.0
    fig = plot_gallery(images, 4, ["r0", "r1", "r2"])
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    grid = ax.images[0].get_array()
    assert grid.shape == (2 + 3 * 30, 2 + 4 * 30)  # make_grid padding of 2
    assert float(grid.max()) <= 1.0
    assert [t.get_text() for t in ax.get_yticklabels()] == ["r0", "r1", "r2"]


def test_plot_learning_curves() -> None:
    histories = {
        "baseline": [{"epoch": 1, "recon": 200.0, "kl": 10.0}],
        "concept": [
            {"epoch": 1, "recon": 210.0, "kl": 12.0},
            {"epoch": 2, "recon": 150.0, "kl": 15.0},
        ],
    }
    fig = plot_learning_curves(histories)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["baseline", "concept"]
    np.testing.assert_array_equal(lines[1].get_ydata(), [210.0, 150.0])
    np.testing.assert_array_equal(fig.axes[1].get_lines()[1].get_ydata(), [12, 15])


def test_figure_png_closes_the_figure() -> None:
    fig = plot_images(_images(2))
    number = fig.number
    data = figure_png(fig)
    assert data.startswith(PNG_SIGNATURE)
    assert number not in plt.get_fignums()


def test_save_figure_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "figs"
    out.mkdir()
    path = save_figure(plot_images(_images(4)), out / "grid.png")
    assert path == out / "grid.png"
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert [p.name for p in out.iterdir()] == ["grid.png"]  # no temporary files
    # replacing an existing figure leaves one file too
    save_figure(plot_images(_images(9)), str(out / "grid.png"))
    assert [p.name for p in out.iterdir()] == ["grid.png"]
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_save_figure_into_missing_folder_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        save_figure(plot_images(_images(1)), tmp_path / "missing" / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_plot_digit_parts_colours_each_part() -> None:
    from conceptlib.report.plots import plot_digit_parts

    images = np.zeros((3, 28, 28), dtype=np.uint8)
    maps = np.zeros((3, 18, 28, 28), dtype=np.float32)
    maps[0, 4, :14] = 1.0  # first part of digit 0: red, top half
    maps[0, 7, 14:] = 1.0  # second part: green, bottom half
    names = [f"d_concept{k}" for k in range(18)]
    fig = plot_digit_parts(images, maps, [[4, 7], [1], []], names, ["a", "b", "c"])
    assert isinstance(fig, Figure)
    shown = fig.axes[0].images[0].get_array()
    assert shown[5, 5, 0] > 0.9 and shown[5, 5, 1] < 0.3  # red
    assert shown[20, 5, 1] > 0.9 and shown[20, 5, 0] < 0.3  # green
    assert "red: concept4" in fig.axes[0].get_title()
    assert len([ax for ax in fig.axes if ax.images]) == 3
    plt.close(fig)


def test_composed_figures() -> None:
    from conceptlib.data.catalogue import load_catalogue
    from conceptlib.report.plots import (
        catalogue_figure,
        concept_gallery,
        plot_concept_shares,
    )

    cat = load_catalogue("mnist")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    y = np.arange(40) % 10
    variants = (np.arange(40) // 10) % 2
    assert len(catalogue_figure(cat, x, y, variants).axes) >= len(cat)
    images = rng.integers(0, 256, (len(cat) * 3, 28, 28), dtype=np.uint8)
    labels = np.repeat(cat.labels, 3)
    assert concept_gallery(images, labels, cat, per_row=3).axes
    shares = rng.random((40, len(cat)))
    fig = plot_concept_shares(shares, y, cat)
    assert len(fig.axes[0].patches) == len(cat)  # each concept's own class outlined
