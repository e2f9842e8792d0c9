"""Tests for conceptlib.operators, conceptlib.operators.evaluate and ``conceptlib
edit``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conceptlib import operators as op
from conceptlib.cli import main
from conceptlib.config import load_config
from conceptlib.data.catalogue import load_catalogue
from conceptlib.errors import ConceptlibError
from conceptlib.files import atomic_torch_save
from conceptlib.model.readout import ConceptModel
from conceptlib.model.vae import ConvVAE
from conceptlib.train.loop import run_state

K = 18


@pytest.fixture(scope="module")
def cm(tmp_path_factory: pytest.TempPathFactory) -> ConceptModel:
    """An untrained concept model, saved as ``reproduce`` saves one."""
    cfg = load_config("smoke")
    torch.manual_seed(0)
    net = ConvVAE(cfg.model, K).eval()
    path = tmp_path_factory.mktemp("run") / "model.pt"
    atomic_torch_save(run_state(net, [{"epoch": 1}], cfg, "concept"), path)
    return ConceptModel(net, cfg, load_catalogue(cfg.concepts.catalogue), path)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def test_read_and_render_are_the_models_own_decoding(cm: ConceptModel) -> None:
    from conceptlib.model.readout import decode_mean

    x = _images(5)
    h = op.read(cm, x)
    assert h.shape == (5, cm.model.cfg.dec_channels[2], 28, 28)
    logits, hidden = decode_mean(cm, x)
    torch.testing.assert_close(h, hidden, rtol=0, atol=0)
    expected = (torch.sigmoid(logits[:, 0]) * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(op.render(cm, h), expected)
    torch.testing.assert_close(op.read(cm, x, batch_size=2), h)  # batches agree
    assert np.abs(op.render(cm, h, batch_size=3).astype(int) - expected).max() <= 1
    with pytest.raises(ConceptlibError, match="uint8"):
        op.read(cm, x.astype(np.float32))


def test_remove_touches_the_concept_and_its_region_only(cm: ConceptModel) -> None:
    h, base = op.read(cm, _images(2)), op.blank(cm)
    alone = op.remove(h, base, 3, K, rest=False)
    assert torch.equal(alone[:, 3], base[:, 3].expand(2, -1, -1))
    others = [c for c in range(h.shape[1]) if c != 3]
    assert torch.equal(alone[:, others], h[:, others])
    h = h.clone()  # concept 3 on a 3 x 3 patch only, so that "outside" exists
    h[:, 3] = 0.0
    h[:, 3, 10:13, 10:13] = 1.0
    both = op.remove(h, base, 3, K, dilate=0)  # the map itself, not dilated
    outside = h[:, 3] == 0
    rest, before = (t[:, K:].permute(1, 0, 2, 3) for t in (both, h))
    assert torch.equal(rest[:, outside], before[:, outside])
    torch.testing.assert_close(rest[:, ~outside], base[0, K:, 10:13, 10:13]
                               .flatten(1).repeat(1, 2))  # fmt: skip
    wider = op.remove(h, base, 3, K)[:, K:].permute(1, 0, 2, 3)  # 1 px wider
    assert not torch.equal(wider[:, outside], before[:, outside])
    with pytest.raises(ConceptlibError, match="concept 18"):
        op.remove(h, base, 18, K)


def test_add_is_a_departure_from_the_blank_layer(cm: ConceptModel) -> None:
    h, base = op.read(cm, _images(2)), op.blank(cm)
    same = op.add(h, base, base, 5, K, masked=False)  # adding nothing
    assert torch.equal(same[:, K:], h[:, K:])
    assert torch.equal(same[:, 5], torch.maximum(h[:, 5], base[:, 5]))
    src = op.read(cm, _images(1, seed=3))
    added = op.add(base, src, base, 5, K, masked=False)
    torch.testing.assert_close(added[:, K:], src[:, K:])
    assert torch.equal(op.compose(base, [], K), base)
    one = op.compose(base, [(src, 5)], K)  # one part: as adding it to the blank
    torch.testing.assert_close(one, added)
    twice = op.compose(base, [(src, 5), (src, 6)], K)  # a union: no double ink
    torch.testing.assert_close(twice[:, K:], src[:, K:])
    assert torch.equal(twice[:, 6], torch.maximum(base[:, 6], src[:, 6]))
    other = op.read(cm, _images(1, seed=4))
    two = op.compose(base, [(src, 5), (other, 6)], K)
    d_src, d_other = src[:, K:] - base[:, K:], other[:, K:] - base[:, K:]
    larger = torch.where(d_other.abs() > d_src.abs(), d_other, d_src)
    torch.testing.assert_close(two[:, K:], base[:, K:] + larger)


def test_shift_and_move() -> None:
    h = torch.arange(2 * 3 * 28 * 28, dtype=torch.float32).reshape(2, 3, 28, 28)
    moved = op.shift(h, dx=2, dy=-1)
    torch.testing.assert_close(moved[:, :, :27, 2:], h[:, :, 1:, :26])
    assert moved[:, :, :, :2].abs().sum() == 0 and moved[:, :, 27].abs().sum() == 0
    torch.testing.assert_close(op.shift(h), h)
    assert op.shift(h, dx=30).abs().sum() == 0  # moved out of the frame
    half = op.shift(h, dx=0.5)  # sub-pixel: interpolated
    torch.testing.assert_close(half[:, :, :, 5], (h[:, :, :, 4] + h[:, :, :, 5]) / 2)
    with pytest.raises(ConceptlibError, match="positive scale"):
        op.shift(h, scale=0)
    with pytest.raises(ConceptlibError, match="finite"):
        op.shift(h, dx=float("inf"))
    base = torch.zeros(1, 3, 28, 28)
    layer = torch.zeros(1, 3, 28, 28)
    layer[0, 0, 10, 10] = 1.0  # concept 0 at (10, 10)
    layer[0, 2, 10, 10] = 3.0  # and the rest of the layer under it
    out = op.move(layer, base, 0, 2, dx=4, dy=0, dilate=0)
    assert out[0, 0, 10, 14] == 1.0 and out[0, 0, 10, 10] == 0.0
    assert out[0, 2, 10, 14] == 3.0 and out[0, 2, 10, 10] == 0.0


def test_apply_in_order(cm: ConceptModel) -> None:
    x = _images(1)[0]
    protos = op.prototypes(cm, _images(36), np.repeat(np.arange(K), 2), K)
    assert protos.shape[0] == K
    steps = [op.Step("remove", 1), op.Step("add", 2), op.Step("move", 3, dx=1)]
    hidden, image = op.apply(cm, x, steps, protos)
    assert hidden.shape[0] == 1 and image.shape == (28, 28) and image.dtype == np.uint8
    with pytest.raises(ConceptlibError, match="prototype"):
        op.apply(cm, x, [op.Step("add", 2)])
    with pytest.raises(ConceptlibError, match="no image of concept"):
        op.prototypes(cm, _images(2), np.array([0, 1]), K)


def test_edit_measures_are_rates(cm: ConceptModel, mnist) -> None:
    from conceptlib.measures.classifier import SmallCNN
    from conceptlib.operators.evaluate import edit_measures, latent_directions

    x, y = mnist.x_train[:200], mnist.y_train[:200]
    latent = latent_directions(cm, x, y, np.zeros(200, dtype=int))
    concepts = (_images(K * 3, seed=4), np.repeat(np.arange(K), 3))
    torch.manual_seed(0)
    out = edit_measures(
        cm,
        (mnist.x_test[:12], mnist.y_test[:12]),
        concepts,
        latent,
        SmallCNN(10).eval(),
        num_edits=12,
        per_digit=2,
    )
    assert set(out) == {"layer", "latent", "pixel"}
    for where in ("layer", "latent"):
        keys = {"removal", "addition", "composition", "removal_kept"}
        assert keys <= set(out[where])
    per = {key for key in out["pixel"] if key.startswith("addition_")}
    assert per and per == {key for key in out["layer"] if key.startswith("addition_")}
    # no pixel removal
    assert set(out["pixel"]) - per == {"addition", "composition"}
    for row in out.values():
        assert all(0.0 <= v <= 1.0 for v in row.values())
        # the per-concept rates split the overall one: it lies within their range
        rates = [row[key] for key in per]
        assert min(rates) <= row["addition"] <= max(rates)
    args = (cm, (mnist.x_test[:4], mnist.y_test[:4]), concepts, latent)
    proto = edit_measures(*args, SmallCNN(10).eval(), 4, 1, add_from="prototype")
    assert proto["pixel"]["addition"] == pytest.approx(
        edit_measures(*args, SmallCNN(10).eval(), 4, 1)["pixel"]["addition"]
    )  # the pixel reference does not depend on the layer's source
    with pytest.raises(ConceptlibError, match="add_from 'mean'"):
        edit_measures(*args, SmallCNN(10).eval(), 4, 1, add_from="mean")
    few = (concepts[0][:3], concepts[1][:3])  # concepts 0-2 only: none to add
    with pytest.raises(ConceptlibError, match="no held-out image of concept"):
        edit_measures(*args[:2], few, latent, SmallCNN(10).eval(), 4, 1)


def test_removal_reach_is_chosen_on_given_digits(cm: ConceptModel, mnist) -> None:
    from conceptlib.measures.classifier import SmallCNN
    from conceptlib.operators.evaluate import (
        choose_dilation,
        edit_measures,
        latent_directions,
    )

    x, y = mnist.x_train[:8], mnist.y_train[:8]
    best, rates = choose_dilation(cm, x, dilations=(0, 2), split="train")
    assert set(rates) == {"0", "2"} and rates[str(best)] == max(rates.values())
    latent = latent_directions(cm, x, y, np.zeros(8, dtype=int))
    concepts = (_images(K, seed=4), np.arange(K))
    for dilate in (0, 2):  # the same removals as the measured ones, on these digits
        out = edit_measures(
            cm, (x, y), concepts, latent, SmallCNN(10).eval(), 8, 1, dilate=dilate
        )
        assert out["layer"]["removal"] == pytest.approx(rates[str(dilate)])


def test_digit_classifier_is_cached(tmp_path: Path, mnist) -> None:
    from conceptlib.operators.evaluate import digit_classifier

    path = tmp_path / "clf.pt"
    a = digit_classifier(mnist.x_train[:64], mnist.y_train[:64], path, num_epochs=1)
    b = digit_classifier(None, None, path)  # loaded: nothing to train on
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(a(x), b(x))


def test_cli_edit(cm: ConceptModel, tmp_path: Path, capsys, cache_env) -> None:
    out_json, out_png = tmp_path / "e.json", tmp_path / "e.png"
    argv = ["edit", "test:0", "--run", str(cm.path), "--cache", str(tmp_path)]
    ops = [
        "--remove",
        "seven_top_bar",
        "--move",
        "seven_diagonal:1,-2",
        "--add",
        "nine_loop@test:7",
    ]
    assert main(argv + ops + ["--json", str(out_json), "--figure", str(out_png)]) == 0
    out = capsys.readouterr().out
    assert (
        "edits: remove seven_top_bar; move seven_diagonal by (1, -2) x1; add nine_loop"
    ) in out
    doc = json.loads(out_json.read_text())
    assert np.asarray(doc["edited"]).shape == (28, 28)
    assert out_png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "ops, message",
    [
        ([], "nothing to do"),
        (["--remove", "sevenn"], "unknown concept 'sevenn'"),
        (["--move", "seven_top_bar:1"], "expected NAME:DX,DY"),
        (["--move", "seven_top_bar:1,2,0"], "SCALE > 0"),
        (["--move", "seven_top_bar:nan,0"], "expected NAME:DX,DY"),
        (["--add", "nine_loop@test:x"], "test:x"),
        (
            ["--remove", "one_stroke", "--json", "/no/such/folder/e.json"],
            "does not exist",
        ),
    ],
)
def test_cli_edit_bad_input(cm, ops, message, capsys, cache_env) -> None:
    assert main(["edit", "test:0", "--run", str(cm.path)] + ops) == 2
    err = capsys.readouterr().err
    assert err.startswith("conceptlib: error: ") and message in err
    assert err.count("\n") == 1


def test_operator_table_of_one_run_and_of_seeds() -> None:
    from conceptlib.operators.evaluate import (
        OPERATOR_ROWS,
        format_operators,
        summarise_seeds,
    )

    def run(rate: float) -> dict:
        rates = {key: rate for key, _ in OPERATOR_ROWS}
        return {"layer": rates, "latent": {k: v / 2 for k, v in rates.items()}}

    summary = summarise_seeds([run(0.8), run(0.9), run(1.0)])
    assert summary["seeds"] == 3
    assert summary["layer"]["removal"]["mean"] == pytest.approx(0.9)
    assert summary["layer"]["removal"]["sd"] == pytest.approx(0.1)
    assert summarise_seeds([run(0.5)])["latent"]["addition"]["sd"] is None
    assert "pixel" not in summary  # summarised only where every seed has it
    with_pixel = [{**run(r), "pixel": {"addition": r}} for r in (0.4, 0.6)]
    pixel = summarise_seeds(with_pixel)["pixel"]
    assert set(pixel) == {"addition"}
    assert pixel["addition"]["mean"] == pytest.approx(0.5)
    lines = format_operators({"one": run(0.5), "seeds": summary}).splitlines()
    assert (
        lines[0] == "| edit | one: layer | one: latent | seeds: layer | seeds: latent |"
    )
    assert len(lines) == 2 + len(OPERATOR_ROWS)
    assert lines[2].endswith("| 0.500 | 0.250 | 0.900 ± 0.100 | 0.450 ± 0.050 |")


def test_meaning_edits_read_each_way_of_editing(cm: ConceptModel, mnist) -> None:
    from conceptlib.data.splits import HeldDigits
    from conceptlib.measures.classifier import SmallCNN
    from conceptlib.operators.evaluate import latent_directions
    from conceptlib.operators.meaning import (
        MEANING_EDITS,
        against_pixels,
        erase_box,
        format_meaning,
        ink_iou,
        meaning_edits,
        summarise_meaning,
    )

    x, y = mnist.x_test[:300], mnist.y_test[:300]
    latent = latent_directions(cm, x, y, np.zeros(300, dtype=int))
    held = HeldDigits(x, y, np.zeros(300, dtype=int), "val")
    concepts = (_images(K * 2, seed=5), np.repeat(np.arange(K), 2))
    torch.manual_seed(0)
    out = meaning_edits(cm, held, concepts, latent, SmallCNN(10).eval(), per_edit=5)
    assert out["split"] == "val"
    for edit in MEANING_EDITS:
        row = out[edit.name]
        assert row["n"] == 5 and row["expected"] == edit.expected
        rates = [row[w] for w in ("before", "layer", "latent", "pixel")]
        assert all(0.0 <= r <= 1.0 for r in rates)
        assert 0.0 <= row["iou_layer"] <= 1.0
    assert "a 7 without its top bar" in format_meaning(out)
    both = summarise_meaning([out, out])
    assert both["one_top_bar"]["layer"]["sd"] == 0.0

    def offset(*ds):  # the layer's rate the pixel edit's + d, one seed per d
        return [{n: {**r, "layer": r["pixel"] + d} for n, r in out.items()
                 if n != "split"} for d in ds]  # fmt: skip

    ahead = against_pixels(offset(0.3, 0.31, 0.29))["one_top_bar"]
    assert ahead[1] == 1 and abs(ahead[0] - 0.3) < 1e-9
    assert against_pixels(offset(0.3, -0.3, 0.0))["one_top_bar"][1] == 0
    assert against_pixels(offset(-0.3, -0.31, -0.29))["one_top_bar"][1] == -1
    # the pixel edits: an image agrees with itself; a box's ink is gone
    assert ink_iou(x[:3], x[:3]).tolist() == [1.0, 1.0, 1.0]
    erased = erase_box(np.full((1, 28, 28), 255, np.uint8), np.array([6, 5, 16, 6]))
    assert erased[0, 5:11, 6:22].max() == 0 and erased.sum() == 255 * (784 - 96)
    with pytest.raises(ConceptlibError, match="no digit or image"):
        meaning_edits(cm, held, (concepts[0][:2], concepts[1][:2]), latent,
                      SmallCNN(10).eval(), per_edit=5)  # fmt: skip


def test_latent_baselines_and_their_choice(cm: ConceptModel, mnist) -> None:
    from conceptlib.data.splits import HeldDigits
    from conceptlib.operators.evaluate import choose_latent
    from conceptlib.operators.latent import box_cells, latent_directions

    cells = box_cells(cm.catalogue)
    bar = list(cm.catalogue.names).index("seven_top_bar")  # box x 6, y 5, w 16, h 6
    assert cells[bar, 0].nonzero().tolist() == [
        [r, c] for r in (1, 2) for c in range(1, 6)
    ]
    x, y = mnist.x_train[:60], mnist.y_train[:60]
    images = (_images(K * 2, seed=6), np.repeat(np.arange(K), 2))
    latent = latent_directions(cm, x, y, np.zeros(60, dtype=int), images)
    concepts = np.array([bar, 0, bar])
    assert torch.equal(latent.delta(concepts), latent.directions[concepts])
    names = [v.name for v in latent.variants()]
    assert len(names) == 12 and names[0] == "class x0.5"
    local = next(v for v in latent.variants() if v.name == "image_local x2")
    d = local.delta(concepts)
    assert torch.equal(d[0], 2 * latent.images[bar] * cells[bar])
    assert not d[0][:, 4:].any()  # nothing below the bar's cells
    val = HeldDigits(x[:20], y[:20], np.zeros(20, dtype=int), "val")
    best, scores = choose_latent(cm, latent, val, images)
    assert set(scores) == set(names) and scores[best.name] == max(scores.values())
    with pytest.raises(ConceptlibError, match="test"):
        choose_latent(cm, latent, HeldDigits(x, y, y * 0, "test"), images)


def test_meaning_edits_skip_concepts_another_catalogue_lacks(cm, mnist) -> None:
    import dataclasses

    from conceptlib.data.splits import HeldDigits
    from conceptlib.measures.classifier import SmallCNN
    from conceptlib.operators.latent import latent_directions
    from conceptlib.operators.meaning import format_meaning, meaning_edits

    names = list(cm.catalogue.names)
    names[names.index("nine_loop")] = "a_loop"  # a catalogue without nine_loop
    other = dataclasses.replace(cm, catalogue=dataclasses.replace(
        cm.catalogue, names=tuple(names)))  # fmt: skip
    x, y = mnist.x_test[:300], mnist.y_test[:300]
    latent = latent_directions(other, x, y, np.zeros(300, dtype=int))
    held = HeldDigits(x, y, np.zeros(300, dtype=int), "test")
    concepts = (_images(K, seed=7), np.arange(K))
    out = meaning_edits(other, held, concepts, latent, SmallCNN(10).eval(), per_edit=3)
    assert "one_top_bar" in out and "one_top_loop" not in out
    assert "nine_no_loop" not in out and "loop on top" not in format_meaning(out)
