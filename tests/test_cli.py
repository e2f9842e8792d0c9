"""Tests for conceptlib.cli: the catalogue listing, an end-to-end smoke reproduction
and one-line errors for bad input."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conceptlib.cli import main
from conceptlib.config import VARIANTS
from conceptlib.data.catalogue import COLUMNS
from conceptlib.experiment.pipeline import CLUSTERINGS, SPLITS
from conceptlib.measures.likelihood import MEASURES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ERROR_PREFIX = "conceptlib: error: "


# -------------------------------------------------------------------- catalogue


def test_catalogue_lists_18_concepts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalogue"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["label", "name", "digit"]
    rows = lines[1:]
    assert len(rows) == 18
    assert [int(r.split()[0]) for r in rows] == list(range(10, 28))
    assert rows[0].split()[1] == "zero_left_arc"
    assert err == ""


def test_catalogue_of_a_csv_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "two.csv"
    path.write_text(
        ",".join(COLUMNS) + "\nalpha,1,0,3,4,5,6,1.5,a\nbeta,2,0,0,0,28,28,0,b\n"
    )
    assert main(["catalogue", str(path)]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 2
    assert rows[0].split() == ["10", "alpha", "1", "0", "3", "4", "5", "6", "1.5"]
    assert rows[1].split()[1] == "beta"


# ------------------------------------------------------------------ end to end


def _without_timings(metrics: dict) -> dict:
    out = copy.deepcopy(metrics)
    out.pop("timings")
    out["environment"].pop("git_commit")  # others may commit between the two runs
    return out


def test_reproduce_smoke_writes_metrics(smoke_runs) -> None:
    out, [(status, metrics), _] = smoke_runs
    assert status == 0
    assert metrics["profile"] == "smoke"
    assert metrics["seeds"] == [0]
    assert set(metrics["variants"]) == set(VARIANTS)
    for variant in VARIANTS:
        assert set(metrics["variants"][variant]) == set(SPLITS)
        for split in SPLITS:
            values = metrics["variants"][variant][split]
            for measure in MEASURES:
                assert math.isfinite(values[measure]), (variant, split, measure)
            assert values["neg_elbo"] == pytest.approx(
                values["recon_bce"] + values["kl"]
            )
            assert values["mse"] == pytest.approx(values["recon_sse"] / 784)
        concepts = metrics["variants"][variant]["test_concepts"]
        assert 0 <= concepts["concept_accuracy"] <= 1, variant
        # the baseline's validation split holds digits only
        assert ("concept_accuracy" in metrics["variants"][variant]["val"]) == (
            variant != "baseline"
        )
        assert "concept_accuracy" not in metrics["variants"][variant]["test_digits"]
        digits = metrics["variants"][variant]["test_digits"]
        # the importance-sampled NLL bounds log p(x) more tightly than the ELBO
        assert 0 < digits["is_nll"] < digits["is_nll_neg_elbo"], variant
        assert digits["is_nll_se"] > 0, variant
        std = metrics["variants_std"][variant]["test_digits"]
        assert all(v == 0.0 for v in std.values())  # one seed
    for name in CLUSTERINGS:
        scores = metrics["clustering"][name]
        assert set(scores) >= {"nmi", "ari", "purity"}, name
        assert all(math.isfinite(v) for v in scores.values()), name
        assert 0 <= scores["purity"] <= 1
    alignment = metrics["alignment"]
    assert 0 <= alignment["own"] <= 1
    assert 0 < alignment["uniform"] < 1
    assert metrics["per_seed"][0]["alignment"] == alignment
    counts = metrics["dataset"]
    assert counts["test_digits"] == 500
    assert counts["test_concepts"] == 18 * 20
    assert counts["train_concepts"] + counts["val_concepts"] == 18 * 60
    assert counts["train_digits"] + counts["val_digits"] == 2000
    assert metrics["catalogue"]["names"][0] == "zero_left_arc"
    assert metrics["config"]["profile"] == "smoke"
    assert metrics["config"]["train"]["precision"] in ("fp32", "bf16")  # as it ran
    assert isinstance(metrics["environment"]["bf16_native"], bool)


def test_reproduce_smoke_writes_figures(smoke_runs) -> None:
    out, [(_, metrics), _] = smoke_runs
    figures = metrics["figures"]
    assert len(figures) == 8
    for name in figures:
        path = out / name
        assert path.is_file(), name
        assert path.read_bytes()[:8] == PNG_SIGNATURE, name
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_reproduce_keeps_the_clusterings_for_the_chapters(
    smoke_runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conceptlib.config import load_config
    from conceptlib.experiment.pipeline import Pipeline
    from conceptlib.measures.cluster import load_clusterings

    out, [(_, metrics), _] = smoke_runs
    pipe = Pipeline(load_config("smoke"), "cpu", out / "runs", progress=False)
    monkeypatch.setattr(pipe, "run", lambda v: pytest.fail("clustered again"))
    found = pipe.clusterings  # read from the run cache
    assert list(found) == list(CLUSTERINGS)
    scores = {n: c.scores for n, c in found.items()}
    assert scores == {n: metrics["clustering"][n] for n in CLUSTERINGS}
    for c in found.values():
        assert len(c.index) == len(c.assignment) == len(c.labels) > 0
        assert set(c.matching) <= set(range(len(c.centres)))
    cut = tmp_path / "cut.npz"
    (kept,) = (out / "runs").glob("clusterings-*.npz")
    cut.write_bytes(kept.read_bytes()[:200])
    assert load_clusterings(cut) is None
    assert load_clusterings(tmp_path / "missing.npz") is None


def test_reproduce_twice_uses_the_cache(smoke_runs) -> None:
    out, [(_, first), (status, second)] = smoke_runs
    assert status == 0
    assert not any(first["timings"]["seeds"][0]["loaded_from_cache"].values())
    assert all(second["timings"]["seeds"][0]["loaded_from_cache"].values())
    assert set(second["timings"]["seeds"][0]["loaded_from_cache"]) == set(VARIANTS)
    assert _without_timings(second) == _without_timings(first)
    # one folder per trained variant (beside the cached evaluation classifier)
    assert len([p for p in (out / "runs").iterdir() if p.is_dir()]) == len(VARIANTS)


# ------------------------------------------------------------------ bad input


def _assert_one_line_error(
    capsys: pytest.CaptureFixture[str], status: int, match: str
) -> str:
    out, err = capsys.readouterr()
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(ERROR_PREFIX)
    assert "Traceback" not in err
    assert match in lines[0], lines[0]
    return lines[0]


def _reproduce(tmp_path: Path, *extra: str) -> int:
    return main(
        ["reproduce", "--profile", "smoke", "--out", str(tmp_path / "out"), "--quiet"]
        + list(extra)
    )


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--profile", "nope"], "unknown profile 'nope'"),
        (["--set", "train.nope=1"], "unknown config key 'train.nope'"),
        (["--set", "train.num_epochs=zero"], "train.num_epochs: expected int"),
        (["--set", "data.val_fraction=1.5"], "data.val_fraction"),
        (["--data", "/nonexistent"], "/nonexistent: no such file or folder"),
        (["--seeds", "0"], "--seeds 0: must be at least 1"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cache_env,
    extra: list[str],
    match: str,
) -> None:
    _assert_one_line_error(capsys, _reproduce(tmp_path, *extra), match)


def test_missing_profile_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = _reproduce(tmp_path, "--profile", str(tmp_path / "none.yaml"))
    _assert_one_line_error(capsys, status, "no such config file")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_device_cuda_without_gpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = _reproduce(tmp_path, "--device", "cuda")
    _assert_one_line_error(capsys, status, "--device cuda: no CUDA GPU")
    assert not (tmp_path / "out").exists()  # it failed before doing anything


def test_catalogue_off_canvas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cache_env
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(",".join(COLUMNS) + "\nwide,3,0,20,4,10,10,1.0,too wide\n")
    status = _reproduce(tmp_path, "--set", f"concepts.catalogue={path}")
    line = _assert_one_line_error(capsys, status, "off the 28x28 canvas")
    assert str(path) in line
    assert not (tmp_path / "out" / "runs").exists() or not any(
        (tmp_path / "out" / "runs").iterdir()
    )  # nothing was trained


def test_catalogue_command_bad_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(",".join(COLUMNS) + "\na,11,0,1,1,5,5,1,x\n")
    _assert_one_line_error(
        capsys, main(["catalogue", str(path)]), "unknown source digit 11"
    )


def test_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    status = main(
        ["reproduce", "--profile", "smoke", "--out", str(blocker / "out"), "--quiet"]
    )
    _assert_one_line_error(capsys, status, "cannot create output folder")


@pytest.mark.slow  # a fresh interpreter imports torch: a few seconds
def test_entry_point_exit_status(tmp_path: Path) -> None:
    """``python -m conceptlib`` exits with status 2 and one line on stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "conceptlib", "reproduce", "--profile", "nope"]
        + ["--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"{ERROR_PREFIX}unknown profile 'nope' (known: smoke, quick, paper, "
        "or a .yaml path)"
    ]
    assert proc.stdout == ""


# ------------------------------------------------------------- recorded results


def test_headline_of_a_smoke_run(smoke_runs) -> None:
    from conceptlib.report.text import HEADLINE, headline

    _, [(_, metrics), _] = smoke_runs
    rows = headline(metrics)
    for label, variant, split, measure in HEADLINE:
        assert rows[label] == (metrics["variants"][variant][split][measure], 0.0)
    own = rows["alignment, test digits, concept: own-class share"]
    assert own == (metrics["alignment"]["own"], 0.0)
    one_seed = headline({"variants": metrics["variants"]})  # no std, no alignment
    assert len(one_seed) == len(HEADLINE)


def test_load_recorded(tmp_path: Path) -> None:
    from conceptlib.errors import ConceptlibError
    from conceptlib.report.records import load_recorded

    assert load_recorded("quick", tmp_path) is None
    (tmp_path / "quick").mkdir()
    recorded = {"seeds": [0, 1], "variants": {}}
    (tmp_path / "quick" / "metrics.json").write_text(json.dumps(recorded))
    assert load_recorded("quick", tmp_path) == recorded
    (tmp_path / "quick" / "metrics.json").write_text("{cut")
    with pytest.raises(ConceptlibError, match="cannot read results"):
        load_recorded("quick", tmp_path)
    (tmp_path / "quick" / "metrics.json").write_text('{"seeds": [0]}')
    with pytest.raises(ConceptlibError, match="not a metrics file"):
        load_recorded("quick", tmp_path)


def test_recorded_runs_are_named_by_profile_and_seeds(tmp_path: Path) -> None:
    from conceptlib.report.records import recorded_runs

    for profile, seeds in (("quick", [0, 1, 2]), ("paper", [0])):
        (tmp_path / profile).mkdir()
        recorded = {"seeds": seeds, "variants": {}}
        (tmp_path / profile / "metrics.json").write_text(json.dumps(recorded))
    names = list(recorded_runs(tmp_path, ("paper", "quick", "missing")))
    assert names == ["recorded paper (1 seed)", "recorded quick (3 seeds)"]


def test_markdown_table_aligns_and_checks_columns() -> None:
    from conceptlib.report.tables import markdown_table

    text = markdown_table(("name", "value"), [("a", 1), ("b", "")])
    assert text.splitlines() == [
        "| name | value |",
        "|---|---:|",
        "| a | 1 |",
        "| b |  |",
    ]
    assert markdown_table(("x", "y"), [], "rl").splitlines()[1] == "|---:|---|"
    with pytest.raises(ValueError, match="2 columns"):
        markdown_table(("x", "y"), [], "lrr")


def test_runs_recorded_before_concept_paper_are_renamed() -> None:
    from conceptlib.report.records import upgrade_recorded

    old = {
        "variants": {"baseline": {}, "concept": {"x": 1}},
        "variants_std": {"concept": {"x": 0}},
    }
    new = upgrade_recorded(old)
    assert new["variants"]["concept_paper"] == {"x": 1}
    assert "concept" not in new["variants"] and new["renamed"]
    current = {"variants": {"concept_paper": {}, "concept": {}}}
    assert upgrade_recorded(current) == current
    per_seed = upgrade_recorded(
        {"variants": {"concept": {}}, "per_seed": [{"variants": {"concept": {"y": 2}}}]}
    )
    assert per_seed["per_seed"][0]["variants"] == {"concept_paper": {"y": 2}}
    aligned = upgrade_recorded({"variants": {"concept": {}}, "alignment": {"own": 0.4}})
    assert aligned["alignment_concept_paper"] == {"own": 0.4}
    assert "alignment" not in aligned
