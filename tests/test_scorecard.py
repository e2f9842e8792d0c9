"""The scorecard's rules on hand-made metrics dicts: each verdict must come out."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from conceptlib.cli import main
from conceptlib.report import scorecard as sc


def _curve(recon: list[float], kl: float = 40.0) -> list[dict]:
    return [
        {"epoch": i + 1, "loss": r + kl, "recon": r, "kl": kl, "concept": 0.0}
        for i, r in enumerate(recon)
    ]


#: Learning curves: concept_paper reaches the baseline's final recon (80) and
#: -ELBO (120) at epoch 2, augmented and baseline only at epoch 5.
CURVES = {
    "baseline": _curve([200.0, 120.0, 100.0, 90.0, 80.0]),
    "augmented": _curve([200.0, 120.0, 100.0, 90.0, 79.0]),
    "concept_paper": _curve([150.0, 79.0, 70.0, 65.0, 60.0]),
}


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
        "curves": CURVES,
    }
    v.update(kw)
    split = lambda recon: {"recon_bce": recon}  # noqa: E731
    return {
        "variants": {
            "baseline": {"val": split(recon_base), "test_digits": split(recon_base)},
            "augmented": {
                "test_concepts": {"concept_accuracy": v["acc_augmented"]},
            },
            "concept_paper": {
                "val": split(recon_concept),
                "test_digits": split(recon_concept),
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
        "epochs": copy.deepcopy(v["curves"]),
    }


def _run(*seeds: dict, epochs: int = 50) -> dict:
    return {
        "seeds": list(range(len(seeds))),
        "config": {"train": {"num_epochs": epochs}},
        "catalogue": {"names": [f"c{i}" for i in range(18)]},
        "per_seed": list(seeds),
    }


def _verdicts(metrics: dict, reference: dict | None = None) -> dict[str, str]:
    return {v.claim: v.verdict for v in sc.judge(metrics, reference)}


ALL = ["1a", "1b", "2", "2s", "2b", "3", "4", "5", "5b"]
PAPER_IDS = ["1a", "2", "2b", "3", "4", "5"]


def _full(recon_concept: float = 60.0) -> dict:
    """Three seeds that show every claim (with ``recon_concept`` around 60)."""
    return _run(*(_seed(recon_concept + d, 120.0 - d) for d in (0.0, 1.0, -1.0)))


def test_a_run_that_shows_everything_reproduces_every_claim() -> None:
    verdicts = _verdicts(_full())
    assert set(verdicts.values()) == {sc.REPRODUCED}
    assert list(verdicts) == ALL


def test_each_verdict_says_whether_it_is_the_papers_claim_or_a_project_test() -> None:
    kinds = {v.claim: v.kind for v in sc.judge(_run(_seed()))}
    assert [c for c, k in kinds.items() if k == sc.PAPER_CLAIM] == PAPER_IDS
    assert [c for c, k in kinds.items() if k == sc.PROJECT_TEST] == ["1b", "2s", "5b"]
    # the verdict that names the recipe names it for what it is
    v1a = sc.claim_loss_halves(_run(_seed()), "val")
    assert "BCE x 100" in v1a.evidence and "MSE" not in v1a.evidence.split("not")[0]


def test_claim_1_on_the_papers_split_apart_from_the_test_digits() -> None:
    seed = _seed()
    seed["variants"]["concept_paper"]["test_digits"]["recon_bce"] = 119.0
    verdicts = _verdicts(_run(seed))
    assert verdicts["1a"] == sc.REPRODUCED and verdicts["1b"] == sc.NOT_REPRODUCED


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
    # one seed, no reference: a 5 % difference is within the fallback margin,
    # a 15 % one is not
    assert _verdicts(_run(_seed(114.0)))["1b"] == sc.NOT_REPRODUCED
    assert _verdicts(_run(_seed(102.0)))["1b"] == sc.PARTLY
    rule = sc.claim_loss_halves(_run(_seed(102.0))).rule
    assert "one seed" in rule and f"{sc.ONE_SEED_MARGIN:.0%}" in rule


def _reference(spread: float) -> dict:
    """A 3-seed run whose recon_bce of both variants spreads by ``spread``."""
    return _run(*(_seed(100.0 + d, 100.0 + d) for d in (-spread, 0.0, spread)))


def test_one_seed_borrows_the_recorded_spread() -> None:
    one = _run(_seed(92.0, 100.0))  # 8 % lower
    assert _verdicts(one)["1b"] == sc.NOT_REPRODUCED  # fallback margin 10 %
    # a reference whose seeds spread by 1 %: the bar is 2 * hypot(1 %, 1 %) ≈ 2.8
    assert _verdicts(one, _reference(1.0))["1b"] == sc.PARTLY
    # a reference whose seeds spread by 5 %: the bar is about 14
    assert _verdicts(one, _reference(5.0))["1b"] == sc.NOT_REPRODUCED
    rule = sc.claim_loss_halves(one, reference=_reference(1.0)).rule
    assert "seed spread the reference run recorded" in rule
    # the spread is read from the reference, not from the run judged
    assert sc.spread(_reference(5.0), "variants", "baseline", "val", "recon_bce")
    assert sc.spread(None, "variants") is None
    assert sc.spread(one, "variants", "baseline", "val", "recon_bce") is None


@pytest.mark.parametrize("n", [2, 3, 5, 10])
@pytest.mark.parametrize("sd", [0.5, 2.0, 7.0])
def test_one_seed_is_never_laxer_than_seeds_with_the_same_spread(n, sd) -> None:
    a_mean, b_mean = 90.0, 100.0
    # n seeds of each with sample sd exactly ``sd``, and one seed of each
    offsets = [sd * x for x in _unit_sd(n)]
    seeded = sc.Difference(
        sc.Estimate(tuple(a_mean + o for o in offsets)),
        sc.Estimate(tuple(b_mean + o for o in offsets)),
    )
    one = sc.Difference(
        sc.Estimate((a_mean,)), sc.Estimate((b_mean,)), (sd / a_mean, sd / b_mean)
    )
    assert seeded.a.sd == pytest.approx(sd)
    assert one.bar >= seeded.bar
    assert one.bar == pytest.approx(seeded.bar * math.sqrt(n))
    assert abs(one.sign) <= abs(seeded.sign)


def _unit_sd(n: int) -> list[float]:
    """n offsets with mean 0 and sample standard deviation 1."""
    raw = [i - (n - 1) / 2 for i in range(n)]
    sd = math.sqrt(sum(r * r for r in raw) / (n - 1))
    return [r / sd for r in raw]


def test_layer3_in_the_papers_sense_dissection_and_its_control() -> None:
    # the project's shift and pair test does not move the paper's verdict
    low_shift = _verdicts(_run(_seed(shift=0.7, pairs=0.1)))
    assert low_shift["2"] == sc.REPRODUCED and low_shift["2s"] == sc.NOT_REPRODUCED
    assert _verdicts(_run(_seed(pairs=0.1)))["2s"] == sc.PARTLY
    # 15 of 18 detectors, none after rotation: partly, and the evidence says so
    v = sc.claim_layer3(_run(_seed(dissection_own=15.0)))
    assert v.verdict == sc.PARTLY and "holds for 15 of 18" in v.evidence
    assert _verdicts(_run(_seed(dissection_own=9.0)))["2"] == sc.NOT_REPRODUCED
    # a rotation that keeps the detectors: the channels are not the concepts
    assert _verdicts(_run(_seed(rotated_own=9.0)))["2"] == sc.NOT_REPRODUCED
    # the concept accuracy must exceed augmented's
    assert _verdicts(_run(_seed(acc_concept=0.06)))["2"] == sc.NOT_REPRODUCED


def test_clusters() -> None:
    assert _verdicts(_run(_seed(nmi_with=0.6)))["2b"] == sc.NOT_REPRODUCED
    assert _verdicts(_run(_seed(purity_digits=0.75)))["3"] == sc.PARTLY
    assert _verdicts(_run(_seed(purity_concepts=0.3)))["4"] == sc.NOT_REPRODUCED
    # purity 0.91 +- noise straddling 0.9: not "reproduced" with seeds
    seeds = [_seed(purity_digits=p) for p in (0.85, 0.97, 0.91)]
    assert _verdicts(_run(*seeds))["3"] == sc.PARTLY
    # one seed at 0.93: reproduced only if the recorded spread is narrow enough
    one = _run(_seed(purity_digits=0.93))
    narrow = _run(*(_seed(purity_digits=p) for p in (0.92, 0.93, 0.94)))
    wide = _run(*(_seed(purity_digits=p) for p in (0.85, 0.93, 1.0)))
    assert _verdicts(one, narrow)["3"] == sc.REPRODUCED
    assert _verdicts(one, wide)["3"] == sc.PARTLY
    assert _verdicts(one)["3"] == sc.PARTLY  # fallback: ± 10 %


def test_fewer_epochs_from_the_curves() -> None:
    reach = sc.epochs_to_reach(_run(_seed()), "concept_paper", "recon")
    assert reach.epochs.values == (2.0,) and reach.target.mean == 80.0
    assert sc.epochs_to_reach(_run(_seed()), "augmented", "neg_elbo").epochs.mean == 5
    verdicts = _verdicts(_run(_seed(), _seed()))
    assert verdicts["5"] == verdicts["5b"] == sc.REPRODUCED
    # a concept loss that inflates the KL: the -ELBO is never reached
    curves = {**CURVES, "concept_paper": _curve([150.0, 79.0, 70.0, 65.0, 60.0], 90)}
    slow = _run(_seed(curves=curves))
    v = sc.claim_fewer_epochs(slow)
    assert v.verdict == sc.PARTLY and "never in 5 epochs" in v.evidence
    assert sc.epochs_to_reach(slow, "concept_paper", "neg_elbo").never == 1
    # augmented as fast as concept_paper: the concept loss alone gains nothing
    curves = {**CURVES, "augmented": CURVES["concept_paper"]}
    same = _verdicts(_run(_seed(curves=curves)))
    assert same["5"] == sc.REPRODUCED and same["5b"] == sc.NOT_REPRODUCED
    assert "training" in v.evidence and "validation" in v.evidence


def test_counts_per_kind() -> None:
    seed = _seed(dissection_own=15.0, pairs=0.1, nmi_with=0.5)
    verdicts = sc.judge(_run(seed))  # one seed, no reference: purity 0.95 ± 10 %
    assert sc.counts(verdicts, sc.PAPER_CLAIM) == {
        sc.REPRODUCED: 2,
        sc.PARTLY: 3,
        sc.NOT_REPRODUCED: 1,
        sc.NOT_MEASURABLE: 0,
    }
    assert sc.counts(verdicts, sc.PROJECT_TEST)[sc.PARTLY] == 1
    assert sum(sc.counts(verdicts).values()) == len(sc.CLAIMS)
    assert sc.summary(verdicts).startswith(
        "6 of the paper's claims: 2 reproduced, 3 partly, 1 not reproduced, "
        "0 not measurable; 3 project tests: 2 reproduced, 1 partly"
    )


def test_plural() -> None:
    from conceptlib.report.stats import plural

    assert [plural(n, "epoch") for n in (0, 1, 8)] == [
        "0 epochs",
        "1 epoch",
        "8 epochs",
    ]


def test_short_runs_and_missing_measures_are_not_measurable() -> None:
    smoke = sc.judge(_run(_seed(), epochs=1))
    assert {v.verdict for v in smoke} == {sc.NOT_MEASURABLE}
    assert {v.kind for v in smoke} == set(sc.KINDS)
    assert {v.rule for v in smoke} == {
        "trained 1 epoch, fewer than 3: too short to judge"
    }
    old = _run(_seed())
    del old["per_seed"][0]["vocabulary"]
    del old["per_seed"][0]["epochs"]
    for verdict in (sc.claim_layer3(old), sc.claim_fewer_epochs(old)):
        assert verdict.verdict == sc.NOT_MEASURABLE
        assert "not in this run" in verdict.evidence


def test_estimate_reads_every_seed() -> None:
    run = _run(_seed(60.0), _seed(70.0))
    est = sc.estimate(run, "variants", "concept_paper", "val", "recon_bce")
    assert est.values == (60.0, 70.0) and est.mean == 65.0
    assert est.sd == pytest.approx(7.0710678) and est.text() == "65.0 ± 7.1"
    assert sc.estimate(run, "variants", "nothing") is None
    flat = copy.deepcopy(run["per_seed"][0])  # no per_seed: itself is the one seed
    assert sc.estimate(flat, "variants", "baseline", "val", "recon_bce").n == 1


def test_tables() -> None:
    columns = {"a": sc.judge(_full()), "b": sc.judge(_full(130.0))}
    md = sc.format_markdown(columns)
    paper_at = md.index("The paper's claims, judged")
    project_at = md.index("**This project's stricter tests")
    assert md.index("| 1a.") > paper_at and md.index("| 1b.") > project_at
    assert md.index("| 5.") < project_at < md.index("| 5b.")
    assert "| a | 6 reproduced, 0 partly" in md
    assert "**reproduced**" in md and "**not reproduced**" in md
    text = sc.format_text(columns)
    assert text.splitlines()[-1].startswith("b: 6 of the paper's claims: 5 reproduced")
    rules = sc.format_rules(columns["a"])
    assert rules.index("**1a.") < rules.index("This project's") < rules.index("**1b.")


def test_scorecard_command(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"variants": {}, **_full()}))
    assert main(["scorecard", "--results", str(tmp_path), "--run", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith(
        "3 project tests: 3 reproduced, 0 partly, 0 not reproduced, 0 not measurable"
    )
    assert f"{run}: 6 of the paper's claims: 6 reproduced" in out
    assert (
        main(["scorecard", "--results", str(tmp_path), "--run", str(run), "--markdown"])
        == 0
    )
    out = capsys.readouterr().out
    assert "This project's stricter tests" in out and "| 5b. " in out
    assert main(["scorecard", "--results", str(tmp_path)]) == 2
    assert "no recorded runs" in capsys.readouterr().err
    (run / "metrics.json").write_text("{}")
    assert main(["scorecard", "--run", str(run)]) == 2
    assert "not a metrics file" in capsys.readouterr().err


def test_a_one_seed_run_is_judged_with_the_recorded_quick_spread(
    tmp_path: Path, capsys
) -> None:
    one = tmp_path / "one"
    one.mkdir()
    (one / "metrics.json").write_text(
        json.dumps({"variants": {}, **_run(_seed(92.0, 100.0))})
    )
    (tmp_path / "quick").mkdir()
    (tmp_path / "quick" / "metrics.json").write_text(
        json.dumps({"variants": {}, **_reference(1.0)})
    )
    assert main(["scorecard", "--results", str(tmp_path), "--run", str(one)]) == 0
    out = capsys.readouterr().out
    line = next(
        x for x in out.splitlines() if x.strip().startswith(str(one)) and "92.0" in x
    )
    assert "partly" in line and "SE of the recorded seed spread" in line


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_the_recorded_runs_are_judged_in_both_kinds(profile: str) -> None:
    from conceptlib.report.records import load_recorded

    root = Path(__file__).resolve().parents[1] / "results"
    metrics = load_recorded(profile, root)
    if metrics is None:
        pytest.skip(f"no recorded {profile} run")
    verdicts = sc.judge(metrics, load_recorded("quick", root))
    assert [v.claim for v in verdicts] == ALL
    assert {v.kind for v in verdicts} == set(sc.KINDS)
    assert all(v.verdict in sc.VERDICTS and v.evidence and v.rule for v in verdicts)
    assert sum(sc.counts(verdicts).values()) == len(verdicts)
    five = next(v for v in verdicts if v.claim == "5")
    assert five.verdict != sc.NOT_MEASURABLE and "training" in five.evidence
    two = next(v for v in verdicts if v.claim == "2")
    assert "Network Dissection" in two.evidence and "rotation" in two.evidence
    assert "BCE x 100" in two.evidence


def test_a_diverged_run_is_not_judged() -> None:
    nan = float("nan")
    verdicts = _verdicts(_run(_seed(purity_digits=nan, recon_concept=nan)))
    assert verdicts["3"] == verdicts["1b"] == sc.NOT_MEASURABLE
    curves = {**CURVES, "concept_paper": _curve([150.0, nan])}
    assert _verdicts(_run(_seed(curves=curves)))["5"] == sc.NOT_MEASURABLE


def test_seeds_that_agree_exactly_fall_back_to_the_margin() -> None:
    same = _run(_seed(purity_digits=0.9), _seed(purity_digits=0.9))
    diff = sc.Difference(
        sc.estimate(same, "clustering", "digits_latent", "purity"),
        sc.Estimate((0.9 + 1e-7, 0.9 + 1e-7)),
    )
    assert diff.se == 0 and diff.sign == 0
    assert "seeds agree exactly" in diff.text()


def test_build_metrics_reads_what_reproduce_wrote_for_this_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conceptlib.config import load_config, to_dict
    from conceptlib.experiment import reproduce as rp
    from conceptlib.experiment.pipeline import Pipeline

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
    from conceptlib.config import load_config, to_dict
    from conceptlib.experiment import reproduce as rp
    from conceptlib.experiment.pipeline import Pipeline

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
    from conceptlib.report.text import near

    recorded = {"a": (357, 0.0), "b": [1.25, "x"]}
    measured = {"a": (357.4, 0.06), "b": [1.27, "x"]}
    assert near(measured, recorded, tol=0.5, rel=0.02) == recorded
    out = near({"a": (357.4, 0.2), "b": [1.25, "x"]}, recorded, tol=0.1)
    assert out == {"a": (357.4, 0.2), "b": [1.25, "x"]}
    assert near({"a": 1}, {"b": 1}, tol=1) == {"a": 1}  # other keys: shown as measured
    assert near([1.0, 2.0], [1.0], tol=1) == [1.0, 2.0]
    assert near(0.3, 0.0, tol=0.1, rel=10.0) == 0.3  # rel scales |recorded|, here 0


def test_recorded_results_are_read_by_name(tmp_path: Path, monkeypatch) -> None:
    from conceptlib.errors import ConceptlibError
    from conceptlib.report import records

    root = Path(__file__).resolve().parents[1] / "results"
    assert records.results_root() == root
    assert records.recorded("quick") == records.load_recorded("quick", root)
    ops = json.loads((root / "quick" / "operators.json").read_text())
    assert records.recorded("quick/operators") == ops
    assert records.recorded_path("sweeps/quick-val") == root / "sweeps" / "quick-val"
    ckpt = records.recorded_checkpoint("quick", "concept")
    assert ckpt == root / "quick" / "checkpoints" / "concept.pt"
    monkeypatch.setenv("CONCEPTLIB_RESULTS", str(tmp_path))
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "y.json").write_text('{"a": 1}')
    assert records.recorded("x/y") == {"a": 1}
    for name, message in (("x/missing", "no such record"), ("x", "no such metrics")):
        with pytest.raises(ConceptlibError, match=message):
            records.recorded(name)
    (tmp_path / "x" / "y.json").write_text("{cut")
    with pytest.raises(ConceptlibError, match="cannot read results"):
        records.recorded("x/y")
