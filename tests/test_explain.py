"""Tests for conceptlib.measures.explain and the ``conceptlib explain`` command."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conceptlib.cli import main
from conceptlib.config import load_config, variant_config
from conceptlib.data.catalogue import load_catalogue
from conceptlib.errors import ConceptlibError
from conceptlib.files import atomic_torch_save
from conceptlib.measures.explain import (
    ConceptModel,
    concept_shares,
    default_run,
    explain,
    format_explanation,
    image_warnings,
    own_digit_share,
    read_image,
)
from conceptlib.model.readout import load_concept_model
from conceptlib.model.vae import ConvVAE
from conceptlib.train.loop import run_key, run_state
from conceptlib.train.runtime import resolve_device, resolve_precision

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained concept model saved as ``reproduce`` saves one.

    Its concept channels start switched on (bias +2 instead of -4), so that its
    maps exceed 0.5 and it names concepts the way a trained model does.
    """
    cfg = load_config("smoke")
    torch.manual_seed(0)
    net = ConvVAE(cfg.model, 18)
    with torch.no_grad():
        net.decoder[cfg.model.concept_layer - 1].bias[:18].fill_(2.0)
    path = tmp_path_factory.mktemp("run") / "model.pt"
    history = [{"epoch": 1, "loss": 1.0}]
    atomic_torch_save(run_state(net, history, cfg, "concept"), path)
    return path


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)


def test_load_concept_model(model_path: Path) -> None:
    cm = load_concept_model(model_path.parent)  # a run folder works too
    assert cm.path == model_path
    assert cm.cfg.profile == "smoke"
    assert len(cm.catalogue) == 18
    assert not cm.model.training


def test_explanation_shares_and_ranking(model_path: Path) -> None:
    cm = load_concept_model(model_path)
    expl = explain(cm, _image())
    assert expl.share.shape == (18,) and expl.maps.shape == (18, 28, 28)
    assert expl.share.sum() == pytest.approx(1.0)
    assert (expl.share >= 0).all()
    ranked = expl.share[expl.ranking()]
    assert (np.diff(ranked) <= 0).all()
    assert np.allclose(expl.energy, (expl.maps.astype(np.float64) ** 2).sum((1, 2)))
    d = expl.to_dict(top=3)
    assert [c["rank"] for c in d["concepts"]] == [1, 2, 3]
    assert d["concepts"][0]["name"] == expl.names[expl.ranking()[0]]


def test_batch_shares_match_single_explanations(model_path: Path) -> None:
    cm = load_concept_model(model_path)
    images = np.stack([_image(i) for i in range(5)])
    shares = concept_shares(cm, images, batch_size=2)
    for i in range(5):
        assert np.allclose(shares[i], explain(cm, images[i]).share, atol=1e-5)


def test_own_digit_share() -> None:
    cat = load_catalogue("mnist")
    labels = np.array([0, 7, 7])
    shares = np.zeros((3, len(cat)))
    zero = int(np.flatnonzero(cat.digit == 0)[0])
    seven = int(np.flatnonzero(cat.digit == 7)[0])
    shares[0, zero] = 1.0  # all on a concept of its own class
    shares[1, seven] = 0.5
    shares[1, zero] = 0.5
    shares[2, zero] = 1.0  # none on its own class
    result = own_digit_share(shares, labels, cat)
    assert result["own"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    per_digit = [(cat.digit == d).mean() for d in labels]
    assert result["uniform"] == pytest.approx(np.mean(per_digit))


def test_read_image_formats(tmp_path: Path, mnist, cache_env) -> None:
    img = _image()
    Image.fromarray(img).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([img] * 3, -1)).save(tmp_path / "rgb.png")
    np.save(tmp_path / "u8.npy", img)
    np.save(tmp_path / "float.npy", img.astype(np.float32) / 255)
    np.save(tmp_path / "chw.npy", img[None])
    for name in ("grey.png", "rgb.png", "u8.npy", "float.npy", "chw.npy"):
        array, _ = read_image(str(tmp_path / name))
        assert array.dtype == np.uint8 and array.shape == (28, 28), name
        assert np.abs(array.astype(int) - img).max() <= 1, name
    array, name = read_image("test:3")
    assert np.array_equal(array, mnist.x_test[3])
    assert f"label {mnist.y_test[3]}" in name


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((28, 29), np.uint8), "28x29"),
        (np.full((28, 28), 1.5, np.float32), "0..1"),
        (np.full((28, 28), -1, np.int16), "0..255"),
        (np.zeros((28, 28), bool), "not numbers"),
    ],
)
def test_read_image_rejects(tmp_path: Path, array: np.ndarray, match: str) -> None:
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(ConceptlibError, match=match):
        read_image(str(tmp_path / "bad.npy"))


def test_default_run_is_where_reproduce_puts_it() -> None:
    cfg = load_config("smoke")
    path = default_run(cfg, "runs")
    assert path.parts[0] == "runs" and path.name == "model.pt"
    assert path.parent.name.startswith("concept-")
    # train.precision=auto: the folder of the precision it resolves to here, as
    # get_or_train names it (the quick profile trains with auto)
    quick = load_config("quick")
    resolved = resolve_precision(variant_config(quick, "concept"), resolve_device())
    expected = f"concept-{run_key(resolved, 'concept')}"
    assert default_run(quick, "runs").parent.name == expected


def test_cli_explain_writes_json_and_figure(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], cache_env
) -> None:
    out_json, out_png = tmp_path / "e.json", tmp_path / "e.png"
    argv = ["explain", "test:0", "--run", str(model_path), "--top", "3"]
    status = main(argv + ["--json", str(out_json), "--figure", str(out_png)])
    assert status == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("image: MNIST test image 0")
    assert out[2].split() == ["rank", "concept", "digit", "share", "area"]
    assert len(out) == 3 + 3
    data = json.loads(out_json.read_text())
    assert len(data["concepts"]) == 18
    assert sum(c["share"] for c in data["concepts"]) == pytest.approx(1.0)
    assert out_png.read_bytes()[:8] == PNG_SIGNATURE


def test_png_through_explain_without_warnings(model_path: Path, tmp_path: Path) -> None:
    Image.fromarray(_image()).save(tmp_path / "d.png")
    cm = load_concept_model(model_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's "array is not writable"
        array, _ = read_image(str(tmp_path / "d.png"))
        expl = explain(cm, array)
    assert expl.share.sum() == pytest.approx(1.0)


def test_blank_image(model_path: Path) -> None:
    expl = explain(load_concept_model(model_path), np.zeros((28, 28), np.uint8))
    assert np.isfinite(expl.share).all()
    assert expl.share.sum() == pytest.approx(1.0) or expl.share.sum() == 0


def test_image_warnings(mnist) -> None:
    digit = mnist.x_test[0]
    assert image_warnings(digit) == []
    blank = image_warnings(np.zeros((28, 28), np.uint8))
    assert len(blank) == 1 and "blank" in blank[0]
    inverted = image_warnings(255 - digit)
    assert len(inverted) == 1 and "inverted" in inverted[0]
    assert len(image_warnings(np.full((28, 28), 255, np.uint8))) == 2  # white page


def test_no_concept_found_is_said_not_ranked(mnist) -> None:
    """Concept maps that stay below 0.5 everywhere give no ranking."""
    cfg = load_config("smoke")
    torch.manual_seed(0)
    net = ConvVAE(cfg.model, 18).eval()  # concept channels start near 0.018
    cm = ConceptModel(net, cfg, load_catalogue("mnist"), Path("untrained"))
    expl = explain(cm, mnist.x_test[0])
    assert expl.area.sum() == 0
    assert format_explanation(expl).startswith("no concept found")


def test_cli_explain_flags_an_inverted_image(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], mnist
) -> None:
    path = tmp_path / "scan.npy"
    np.save(path, 255 - mnist.x_test[0])
    assert main(["explain", str(path), "--run", str(model_path)]) == 0
    out = capsys.readouterr().out
    assert "warning: the image looks inverted" in out
