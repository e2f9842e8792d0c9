"""Validation data: held out of everything a variant trains on; choosers refuse
test data; the sweep's paper family and its chooser."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from conceptlib.config import PAPER_RECIPE, load_config, variant_config
from conceptlib.data.catalogue import box_masks
from conceptlib.data.splits import HeldDigits, refuse_test
from conceptlib.errors import ConceptlibError
from conceptlib.experiment import sweep
from conceptlib.experiment.pipeline import Pipeline

ROOT = Path(__file__).resolve().parent.parent
SMALL = [
    "data.num_train_digits=800",
    "data.num_test_digits=200",
    "concepts.per_concept=20",
    "concepts.test_per_concept=5",
    "concepts.probe_size=90",
    "cluster.max_points=200",
]


@pytest.fixture(scope="module")
def pipe(mnist, tmp_path_factory) -> Pipeline:
    cfg = load_config("smoke", SMALL)
    runs = tmp_path_factory.mktemp("runs")
    return Pipeline(cfg, device="cpu", cache_dir=runs, progress=False, mnist=mnist)


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the validation digits are held out ------------------------------------------


def test_digit_split_is_a_partition(pipe: Pipeline) -> None:
    train, val = pipe.digit_split
    assert len(np.intersect1d(train, val)) == 0
    assert len(train) + len(val) == len(pipe.digits[1])
    assert pipe.train_digits.split == "train" and len(pipe.train_digits) == len(train)
    assert pipe.val_digits.split == "val" and len(pipe.val_digits) == len(val)
    assert pipe.test_digits.split == "test"


def _is_cut_from(images: np.ndarray, boxes: np.ndarray, digits: np.ndarray):
    """Whether each image is its box's crop of one of ``digits``."""
    masks = box_masks(boxes)
    return np.array(
        [((digits * m) == x).all(axis=(1, 2)).any() for x, m in zip(images, masks)]
    )


def test_training_concept_images_are_cut_from_training_digits_only(
    pipe: Pipeline,
) -> None:
    c = pipe.concepts
    cut = ~c.from_centre
    from_train = _is_cut_from(c.x[cut], c.boxes[cut], pipe.train_digits.x)
    assert from_train.all()  # none needs a validation digit as its source


def test_held_concepts_are_cut_from_their_own_digits(pipe: Pipeline) -> None:
    for split in ("val", "test"):
        c = pipe.held_concepts(split)
        assert not c.from_centre.any()
        assert _is_cut_from(c.x, c.boxes, pipe.held_digits(split).x).all()


def test_validation_probes_are_built_like_the_test_probes(pipe: Pipeline) -> None:
    val, test = pipe.probe_set("val"), pipe.probe_set("test")
    assert pipe.probe_set("test") is pipe.probes
    assert val.sets.keys() == test.sets.keys()
    for name in test.sets:
        assert val.sets[name].x.shape == test.sets[name].x.shape
        assert not np.array_equal(val.sets[name].x, test.sets[name].x)
    assert "validation digits" in val.descriptions["isolated"]
    assert "test digits" in test.descriptions["isolated"]
    with pytest.raises(ConceptlibError, match="unknown split"):
        pipe.probe_set("train")


def test_measures_on_validation_data(pipe: Pipeline) -> None:
    digits = pipe.evaluate("baseline", "val_digits")
    assert math.isfinite(digits["neg_elbo"])
    assert len(pipe.dataset("baseline", "val_digits")) == len(pipe.val_digits)
    vocab = pipe.vocabulary("baseline", "val")
    assert set(vocab["accuracy"]) == set(pipe.val_probes.sets)
    assert vocab["size"]["isolated"] == len(pipe.val_probes.sets["isolated"].x)


# -- choosers refuse test data -----------------------------------------------------


def _choosers(pipe: Pipeline):
    """Every function that chooses, handed test data."""
    from conceptlib.operators.evaluate import choose_dilation

    ops = _script("choose_operators")
    test = pipe.test_digits
    return {
        "choose_dilation (HeldDigits)": lambda: choose_dilation(None, test),
        "choose_dilation (split)": lambda: choose_dilation(None, test.x, split="test"),
        "choose_dilation (no split)": lambda: choose_dilation(None, test.x),
        "sweep.choose": lambda: sweep.choose({}, "paper", split="test"),
        "compose_rates": lambda: ops.compose_rates(pipe, None, 1, 0, split="test"),
        "addition_rates": lambda: ops.addition_rates(pipe, None, 1, 0, split="test"),
    }


def test_every_chooser_refuses_test_data(pipe: Pipeline) -> None:
    for name, call in _choosers(pipe).items():
        with pytest.raises(ConceptlibError, match="test data|which split") as info:
            call()
        assert "\n" not in str(info.value), name


def test_refuse_test_lets_validation_and_training_data_through() -> None:
    assert refuse_test("val", "x") == "val" and refuse_test("train", "x") == "train"
    with pytest.raises(ConceptlibError, match="unknown split"):
        refuse_test("holdout", "x")


def test_choose_dilation_reads_the_split_of_held_digits() -> None:
    from conceptlib.operators.evaluate import choose_dilation

    held = HeldDigits(np.zeros((1, 28, 28), np.uint8), np.zeros(1), np.zeros(1), "val")
    with pytest.raises(ConceptlibError, match="passed as split"):
        choose_dilation(None, held, split="train")


# -- the paper family --------------------------------------------------------------


def test_paper_family_is_swept_as_widely_as_ours() -> None:
    paper = sweep.family("paper")
    assert "paper" in paper
    cfg = load_config("smoke")
    seen = set()
    for name in paper:
        variant, overrides, _ = sweep.CANDIDATES[name]
        assert variant == "concept_paper"
        loss = variant_config(cfg, variant, overrides).loss
        seen.add((loss.concept_loss, loss.concept_decode, loss.concept_weight))
    losses, decodes, weights = (set(v) for v in zip(*seen))
    assert losses == {"mse", "bce"} and decodes == {"z", "mu"}
    assert math.log10(max(weights) / min(weights)) >= 3  # three decades at least
    assert len(seen) == len(losses) * len(decodes) * len(weights) == len(paper)
    literal = variant_config(cfg, "concept_paper").loss
    assert literal.concept_weight == PAPER_RECIPE["loss"]["concept_weight"]


def test_every_candidate_configures() -> None:
    cfg = load_config("smoke")
    for name, (variant, overrides, _) in sweep.CANDIDATES.items():
        if variant == "concept_paper":
            variant_config(cfg, variant, overrides)
        else:
            load_config("smoke", overrides)
        assert sweep.family_of(name) in ("reference", "concept", "paper")


def test_recipe_overrides_only_concept_paper(mnist, tmp_path: Path) -> None:
    cfg = load_config("smoke")
    recipe = ["loss.concept_loss=mse"]
    pipe = Pipeline(cfg, device="cpu", cache_dir=tmp_path, mnist=mnist, recipe=recipe)
    assert pipe.variant_config("concept_paper").loss.concept_loss == "mse"
    assert pipe.variant_config("concept") == pipe.cfg
    with pytest.raises(ConceptlibError, match="unknown config key"):
        Pipeline(cfg, device="cpu", recipe=["loss.nothing=1"])


def test_clusterings_are_kept_apart_for_each_recipe(
    mnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conceptlib.experiment.pipeline as pipeline

    asked = []
    monkeypatch.setattr(pipeline, "load_clusterings", lambda path: asked.append(path))
    monkeypatch.setattr(Pipeline, "run", lambda self, v: pytest.fail("stop here"))
    for recipe in ([], ["loss.concept_loss=mse"], []):
        pipe = Pipeline(load_config("smoke"), "cpu", tmp_path, False, mnist, recipe)
        with pytest.raises(pytest.fail.Exception, match="stop here"):
            pipe.clusterings  # noqa: B018  (looks in the cache, then clusters)
    assert asked[0] == asked[2] != asked[1]  # another recipe: another concept_paper
    assert all(p.parent == tmp_path and p.suffix == ".npz" for p in asked)


# -- the chooser ---------------------------------------------------------------------


def _result(name: str, elbo: float, iso: float, pairs: float, split="val") -> dict:
    vocab = {"split": split, "accuracy": {"isolated": iso, "pairs": pairs}}
    return {
        "candidate": name,
        "seed": 0,
        "val_digits": {"split": split, "neg_elbo": elbo},
        "val_vocabulary": vocab,
        # test blocks that would choose otherwise: the chooser must not read them
        "test_digits": {"split": "test", "neg_elbo": elbo / 2},
        "vocabulary": {"split": "test", "accuracy": {"isolated": 1 - iso, "pairs": 1}},
    }


def test_choose_by_the_validation_rule() -> None:
    base, budget = 100.0, sweep.ELBO_BUDGET
    a, b, c = sweep.family("paper")[:3]
    over = base * budget * 1.01  # outside the budget
    found = {
        "baseline": [_result("baseline", base, 0.0, 0.0)],
        a: [_result(a, over, 0.9, 0.9)],  # the best score, but over budget
        b: [_result(b, base * budget, 0.5, 0.4), _result(b, base, 0.5, 0.4)],
        c: [_result(c, base, 0.6, 0.1)],
    }
    out = sweep.choose(found, "paper")
    assert out["chosen"] == b and out["within_budget"] and out["split"] == "val"
    assert out["scores"][b]["seeds"] == len(found[b])
    assert out["scores"][a]["val_elbo_ratio"] > budget
    none_within = {"baseline": found["baseline"], a: found[a]}
    fallback = sweep.choose(none_within, "paper")
    assert fallback["chosen"] == a and not fallback["within_budget"]


def test_choose_refuses_results_without_validation_blocks() -> None:
    name = sweep.family("paper")[0]
    found = {
        "baseline": [_result("baseline", 1.0, 0.0, 0.0)],
        name: [_result(name, 1.0, 0.5, 0.5, split="test")],
    }
    with pytest.raises(ConceptlibError, match="split 'val'"):
        sweep.choose(found, "paper")
    with pytest.raises(ConceptlibError, match="unknown family"):
        sweep.choose(found, "nothing")


def test_sweep_tables_name_their_split() -> None:
    name = sweep.family("paper")[0]
    found = {name: [_result(name, 1.0, 0.5, 0.5)]}
    val = sweep.format_sweep(found, "val")
    assert "val -ELBO" in val and "val pairs top-2" in val
    assert sweep.mean_of(found[name], "val isolated") == pytest.approx(0.5)


@pytest.mark.slow
def test_sweep_driver_end_to_end(mnist, mnist_cache_dir, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    out = tmp_path / "out"
    name = sweep.family("paper")[-1]
    cmd = [
        sys.executable, str(ROOT / "scripts" / "sweep_gpu.py"), "run",
        "--data", str(mnist_cache_dir), "--profile", "smoke", "--out", str(out),
        "--cache", str(tmp_path / "runs"), "--candidates", "baseline", name,
        "--seeds", "--jobs", "1", "--threads", "1", "--device", "cpu",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{name} seed 0:" in done.stdout
    record = json.loads((out / f"{name}-seed0.json").read_text())
    assert record["val_vocabulary"]["split"] == "val"
    assert record["vocabulary"]["split"] == "test"
    assert json.loads((out / "choices.json").read_text())["paper"]["chosen"] == name


def test_choose_by_the_edits_reads_the_val_meaning_edits() -> None:
    a, b, c = [n for n in sweep.family("concept") if "union" in n]
    found = {"baseline": [_result("baseline", 100.0, 0.0, 0.0)]}
    for name, iso, edits in ((a, 0.9, 0.2), (b, 0.5, 0.6), (c, 0.9, None)):
        r = _result(name, 100.0, iso, 0.3)
        if edits is not None:  # c was measured before the edits: left out
            r["val_meaning"] = {"split": "val", "e": {"iou_layer": edits}}
            r["meaning"] = {"split": "test", "e": {"iou_layer": 1 - edits}}
        found[name] = [r]
    assert sweep.choose(found, "concept")["chosen"] in (a, c)  # by the names
    out = sweep.choose(found, "concept", score="edits")
    assert out["chosen"] == b and set(out["scores"]) == {a, b}
    assert out["scores"][b]["score"] == pytest.approx(0.9)
    with pytest.raises(ConceptlibError, match="unknown score"):
        sweep.choose(found, "concept", score="speed")


def test_concept_ceiling_is_trained_once_per_config(
    pipe: Pipeline, monkeypatch
) -> None:
    from conceptlib.experiment import measures

    first = pipe.concept_ceiling()
    assert set(first) == {"isolated", "jitter", "shift", "pairs"}
    assert all(0.0 <= v <= 1.0 for v in first.values())
    assert list(pipe.cache_dir.glob("concept_ceiling-*.pt"))

    def trained(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(measures, "train_multilabel", trained)
    assert pipe.concept_ceiling() == first  # the cached classifier, read again


# -- the recorded choices are the registry's ---------------------------------------

CHOICES = Path(__file__).parents[1] / "results/sweeps/quick-val/choices.json"


def test_default_and_tuned_paper_recipe_are_the_validation_choices() -> None:
    choices = json.loads(CHOICES.read_text())
    assert choices["concept"]["split"] == choices["paper"]["split"] == "val"
    assert choices["concept"]["chosen"] == sweep.DEFAULT
    for profile in ("smoke", "quick", "paper"):  # DEFAULT is what the profiles train
        cfg = load_config(profile)
        assert load_config(profile, sweep.CANDIDATES[sweep.DEFAULT][1]) == cfg
        variant, overrides, _ = sweep.CANDIDATES[choices["paper"]["chosen"]]
        chosen = variant_config(cfg, variant, overrides)
        tuned = variant_config(cfg, "concept_paper_tuned")
        assert (chosen.loss, chosen.concepts) == (tuned.loss, tuned.concepts)
        assert tuned.loss != variant_config(cfg, "concept_paper").loss
