"""The scorecard's rules on hand-made metrics dicts: each verdict must come out."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from conceptlib import scorecard as sc
from conceptlib.cli import main


def _seed(recon_concept: float = 60.0, recon_base: float = 120.0, **kw) -> dict:
    """One seed's measures; keyword arguments override the defaults."""
    v = {
        "dissection_own": 18.0,
        "rotated_own": 0.0,
        "shift": 0.95,
        "pairs": 0.9,
        "acc_concept": 0.95,
        "acc_augmented": 0.06,
        "nmi_with": 0.8,
        "nmi_without": 0.6,
        "purity_digits": 0.95,
        "purity_concepts": 0.95,
        "elbo_concept": 100.0,
        "elbo_augmented": 120.0,
    }
    v.update(kw)
    split = lambda recon: {"recon_bce": recon}  # noqa: E731
    return {
        "variants": {
            "baseline": {"val": split(recon_base), "test_digits": split(recon_base)},
            "augmented": {
                "test_digits": {"neg_elbo": v["elbo_augmented"]},
                "test_concepts": {"concept_accuracy": v["acc_augmented"]},
            },
            "concept_paper": {
                "val": split(recon_concept),
                "test_digits": {
                    "recon_bce": recon_concept,
                    "neg_elbo": v["elbo_concept"],
                },
                "test_concepts": {"concept_accuracy": v["acc_concept"]},
            },
        },
        "vocabulary": {
            "concept_paper": {
                "dissection": {"own": v["dissection_own"]},
                "dissection_rotated": {"own": v["rotated_own"]},
                "accuracy": {"shift": v["shift"], "pairs": v["pairs"]},
            }
        },
        "clustering": {
            "layer3_with_concept_loss": {"nmi": v["nmi_with"]},
            "layer3_without_concept_loss": {"nmi": v["nmi_without"]},
            "digits_latent": {"purity": v["purity_digits"], "nmi": 0.9},
            "concepts_latent": {"purity": v["purity_concepts"], "nmi": 0.9},
        },
    }


def _run(*seeds: dict, epochs: int = 50) -> dict:
    return {
        "seeds": list(range(len(seeds))),
        "config": {"train": {"num_epochs": epochs}},
        "catalogue": {"names": [f"c{i}" for i in range(18)]},
        "per_seed": list(seeds),
    }


def _verdicts(metrics: dict) -> dict[str, str]:
    return {v.claim: v.verdict for v in sc.judge(metrics)}


def test_a_run_that_shows_everything_reproduces_every_claim() -> None:
    verdicts = _verdicts(_run(_seed(), _seed(61.0, 119.0), _seed(59.0, 121.0)))
    assert set(verdicts.values()) == {sc.REPRODUCED}
    assert list(verdicts) == ["1a", "1b", "2", "2b", "3", "4", "5"]


def test_loss_rules_partly_not_and_noise() -> None:
    # lower, but not halved (ratio 0.8), clearly beyond the noise
    lower = _run(_seed(96.0), _seed(97.0), _seed(95.0))
    assert _verdicts(lower)["1b"] == sc.PARTLY
    # halved on average, but the seeds scatter more than the effect
    noisy = _run(_seed(60.0, 120.0), _seed(10.0, 20.0), _seed(110.0, 60.0))
    assert _verdicts(noisy)["1b"] == sc.NOT_REPRODUCED
    # higher
    higher = _run(_seed(130.0), _seed(131.0))
    assert _verdicts(higher)["1a"] == sc.NOT_REPRODUCED
    # one seed: a 2 % difference is within the one-seed margin, a 10 % one is not
    assert _verdicts(_run(_seed(117.6)))["1b"] == sc.NOT_REPRODUCED
    assert _verdicts(_run(_seed(108.0)))["1b"] == sc.PARTLY
    rule = sc.claim_loss_halves(_run(_seed(108.0))).rule
    assert "one seed" in rule


def test_layer3_needs_the_dissection_and_its_control() -> None:
    assert _verdicts(_run(_seed(shift=0.7)))["2"] == sc.PARTLY
    assert _verdicts(_run(_seed(dissection_own=12.0)))["2"] == sc.NOT_REPRODUCED
    # a rotation that keeps the detectors: the channels are not the concepts
    assert _verdicts(_run(_seed(rotated_own=9.0)))["2"] == sc.NOT_REPRODUCED
    # the concept accuracy must exceed augmented's
    assert _verdicts(_run(_seed(acc_concept=0.06)))["2"] == sc.NOT_REPRODUCED


def test_plural() -> None:
    assert [sc.plural(n, "epoch") for n in (0, 1, 8)] == [
        "0 epochs",
        "1 epoch",
        "8 epochs",
    ]


def test_clusters_and_epochs() -> None:
    assert _verdicts(_run(_seed(nmi_with=0.6)))["2b"] == sc.NOT_REPRODUCED
    assert _verdicts(_run(_seed(purity_digits=0.75)))["3"] == sc.PARTLY
    assert _verdicts(_run(_seed(purity_concepts=0.3)))["4"] == sc.NOT_REPRODUCED
    # purity 0.91 +- noise straddling 0.9: not "reproduced" with seeds
    seeds = [_seed(purity_digits=p) for p in (0.85, 0.97, 0.91)]
    assert _verdicts(_run(*seeds))["3"] == sc.PARTLY
    assert _verdicts(_run(_seed(elbo_concept=230.0)))["5"] == sc.NOT_REPRODUCED


def test_short_runs_and_missing_measures_are_not_measurable() -> None:
    smoke = _verdicts(_run(_seed(), epochs=1))
    assert set(smoke.values()) == {sc.NOT_MEASURABLE}
    notes = {v.rule for v in sc.judge(_run(_seed(), epochs=1))}
    assert notes == {"trained 1 epoch, fewer than 3: too short to judge"}
    old = _run(_seed())
    del old["per_seed"][0]["vocabulary"]
    verdict = sc.claim_layer3(old)
    assert (
        verdict.verdict == sc.NOT_MEASURABLE and "not in this run" in verdict.evidence
    )


def test_estimate_reads_every_seed() -> None:
    run = _run(_seed(60.0), _seed(70.0))
    est = sc.estimate(run, "variants", "concept_paper", "val", "recon_bce")
    assert est.values == (60.0, 70.0) and est.mean == 65.0
    assert est.sd == pytest.approx(7.0710678) and est.text() == "65.0 ± 7.1"
    assert sc.estimate(run, "variants", "nothing") is None
    flat = copy.deepcopy(run["per_seed"][0])  # no per_seed: itself is the one seed
    assert sc.estimate(flat, "variants", "baseline", "val", "recon_bce").n == 1


def test_tables() -> None:
    columns = {"a": sc.judge(_run(_seed())), "b": sc.judge(_run(_seed(130.0)))}
    md = sc.format_markdown(columns)
    assert md.count("\n") == 1 + len(sc.CLAIMS)
    assert "**reproduced**" in md and "**not reproduced**" in md
    text = sc.format_text(columns)
    assert text.endswith("a: 7 of 7 reproduced, b: 5 of 7 reproduced")


def test_scorecard_command(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"variants": {}, **_run(_seed())}))
    assert main(["scorecard", "--results", str(tmp_path), "--run", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith(f"{run}: 7 of 7 reproduced")
    assert main(["scorecard", "--results", str(tmp_path)]) == 2
    assert "no recorded runs" in capsys.readouterr().err
    (run / "metrics.json").write_text("{}")
    assert main(["scorecard", "--run", str(run)]) == 2
    assert "not a metrics file" in capsys.readouterr().err


def test_a_diverged_run_is_not_judged() -> None:
    nan = float("nan")
    verdicts = _verdicts(
        _run(_seed(elbo_concept=nan, purity_digits=nan, recon_concept=nan))
    )
    assert verdicts["5"] == verdicts["3"] == verdicts["1b"] == sc.NOT_MEASURABLE


def test_seeds_that_agree_exactly_fall_back_to_the_margin() -> None:
    same = _run(_seed(purity_digits=0.9), _seed(purity_digits=0.9))
    diff = sc.Difference(
        sc.estimate(same, "clustering", "digits_latent", "purity"),
        sc.Estimate((0.9 + 1e-7, 0.9 + 1e-7)),
    )
    assert diff.se == 0 and diff.sign == 0


def test_build_metrics_reads_what_reproduce_wrote_for_this_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conceptlib import reproduce as rp
    from conceptlib.config import load_config, to_dict
    from conceptlib.pipeline import Pipeline

    cfg = load_config("smoke")
    pipe = Pipeline(cfg, device="cpu", cache_dir=tmp_path / "runs", progress=False)
    monkeypatch.setattr(rp, "run_metrics", lambda p: {"measured": "now"})
    assert rp.build_metrics(pipe, tmp_path) == {"measured": "now"}  # no file yet
    written = {
        "profile": "smoke",
        "config": to_dict(pipe.cfg),
        "environment": {"code": rp.code_hash()},
        "catalogue": {"names": ["a", "b"]},
        "per_seed": [{"seed": cfg.seed, "variants": {}}, {"seed": cfg.seed + 1}],
    }
    path = tmp_path / "smoke" / "metrics.json"
    path.parent.mkdir()
    path.write_text(json.dumps(written))
    read = rp.build_metrics(pipe, tmp_path)
    assert read["per_seed"] == written["per_seed"][:1]
    assert read["seeds"] == [cfg.seed] and read["catalogue"]["names"] == ["a", "b"]
    stale = [
        ("environment", {"code": "another code"}),
        ("config", {**written["config"], "seed": cfg.seed + 7}),
        ("per_seed", [{"seed": cfg.seed + 1}]),
    ]
    for key, value in stale:  # another code, config or seed: measured again
        path.write_text(json.dumps({**written, key: value}))
        assert rp.build_metrics(pipe, tmp_path) == {"measured": "now"}
    path.write_text("{not json")
    assert rp.build_metrics(pipe, tmp_path) == {"measured": "now"}


def test_pipeline_answers_from_the_record_of_this_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conceptlib import reproduce as rp
    from conceptlib.config import load_config, to_dict
    from conceptlib.pipeline import Pipeline

    cfg = load_config("smoke")
    pipe = Pipeline(cfg, device="cpu", cache_dir=tmp_path / "runs", progress=False)
    assert not rp.use_recorded(pipe, tmp_path)  # nothing recorded yet
    seed = {
        "seed": cfg.seed,
        "variants": {"concept": {"val": {"neg_elbo": 99.5}}},
        "vocabulary": {
            "concept": {"accuracy": {"pairs": 0.25}},
            "classifier_ceiling": {"accuracy": {"isolated": 0.75}},
        },
        "operators": {"concept": {"layer": {"removal": 0.5}}},
    }
    written = {
        "profile": "smoke",
        "config": to_dict(pipe.cfg),
        "environment": {"code": rp.code_hash()},
        "catalogue": {"names": ["a"]},
        "per_seed": [seed],
    }
    path = tmp_path / "smoke" / "metrics.json"
    path.parent.mkdir()
    path.write_text(json.dumps(written))
    assert rp.recorded_seed(pipe, tmp_path) == seed
    assert rp.use_recorded(pipe, tmp_path)

    def measured(*args, **kwargs):
        raise AssertionError("measured although recorded")

    monkeypatch.setattr(pipe, "run", measured)
    monkeypatch.setattr(pipe, "dataset", measured)
    monkeypatch.setattr(pipe, "concept_model", measured)
    assert pipe.evaluate("concept", "val") == {"neg_elbo": 99.5}
    assert pipe.vocabulary("concept") == {"accuracy": {"pairs": 0.25}}
    assert pipe.concept_ceiling() == {"isolated": 0.75}
    edits = pipe.edits("concept")
    assert edits == {"layer": {"removal": 0.5}}
    edits["layer"]["removal"] = 0.0  # a copy: the record is not changed
    assert pipe.edits("concept")["layer"]["removal"] == 0.5
    with pytest.raises(AssertionError, match="measured although recorded"):
        pipe.vocabulary("baseline")  # not in the record: measured


def test_near_prints_the_recorded_value_within_tolerance_and_the_measured_outside():
    from conceptlib.report import near

    recorded = {"a": (357, 0.0), "b": [1.25, "x"]}
    measured = {"a": (357.4, 0.06), "b": [1.27, "x"]}
    assert near(measured, recorded, tol=0.5, rel=0.02) == recorded
    out = near({"a": (357.4, 0.2), "b": [1.25, "x"]}, recorded, tol=0.1)
    assert out == {"a": (357.4, 0.2), "b": [1.25, "x"]}
    assert near({"a": 1}, {"b": 1}, tol=1) == {"a": 1}  # other keys: shown as measured
    assert near([1.0, 2.0], [1.0], tol=1) == [1.0, 2.0]
    assert near(0.3, 0.0, tol=0.1, rel=10.0) == 0.3  # rel scales |recorded|, here 0
