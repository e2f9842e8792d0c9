"""Every figure that README.md and results/README.md quote matches the committed
results it comes from: change a recorded run, and the text must follow."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest

from conceptlib.report.compare import compare
from conceptlib.report.records import load_recorded

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
README = (ROOT / "README.md").read_text()
RESULTS_README = (RESULTS / "README.md").read_text()


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _quoted(text: str, snippet: str) -> None:
    assert snippet in _flat(text), f"not quoted: {snippet!r}"


def test_bf16_comparison_is_quoted_as_recorded() -> None:
    fp32 = load_recorded("quick-fp32", RESULTS)
    bf16 = load_recorded("quick-bf16", RESULTS)
    rows = compare(fp32, bf16)
    inside = sum(r.within for r in rows)
    _quoted(README, f"{inside} of {len(rows)} headline measures")
    pairs = [r for r in rows if not r.within]
    assert len(pairs) == len(rows) - inside
    for r in pairs:
        _quoted(README, f"({r.mean_b:.3f} against {r.mean_a:.3f}")


def test_loop_benchmark_is_quoted_as_recorded() -> None:
    table = (RESULTS / "benchmarks" / "train_loop.txt").read_text()
    for name, quoted in (
        ("fp32 NCHW", "fp32 NCHW b128 (before)"),
        ("bf16 channels_last", "bf16 channels_last b128 (now)"),
    ):
        line = next(x for x in table.splitlines() if x.startswith(name) and "b128" in x)
        img_s, ratio = int(line.split()[3]), line.split()[5]
        _quoted(README, f"| {quoted} | {img_s:,} | {ratio} |")


def test_operator_figures_are_quoted_as_recorded() -> None:
    ops = json.loads((RESULTS / "quick" / "operators.json").read_text())
    acc = ops["concept"]["classifier_accuracy"]
    _quoted(RESULTS_README, f"test accuracy {acc:.3f}")
    _quoted(RESULTS_README, f"the success of {ops['concept']['num_edits']:,} removals")


def test_paper_training_times_are_quoted_as_recorded() -> None:
    """Undisturbed training time of each variant: median epoch x epochs."""
    paper = load_recorded("paper", RESULTS)
    epochs = paper["timings"]["seeds"][0]["epoch_seconds"]
    total = 0.0
    for variant, seconds in epochs.items():
        undisturbed = statistics.median(seconds) * len(seconds)
        total += undisturbed
        for text in (README, RESULTS_README):
            _quoted(text, f"{variant} {undisturbed:,.0f} s")
        _quoted(RESULTS_README, f"{variant} {statistics.median(seconds):.1f} s")
    for text in (README, RESULTS_README):
        _quoted(text, f"about {round(total, -2):,.0f} s")
    _quoted(README, f"{total / 60:.0f} min of training undisturbed")


@pytest.mark.parametrize("profile", ["paper", "quick", "quick-bf16"])
def test_recorded_runs_named_in_results_readme_exist(profile: str) -> None:
    assert f"`{profile}/`" in RESULTS_README
    assert load_recorded(profile, RESULTS) is not None


def test_recorded_figure_descriptions_are_the_codes() -> None:
    """What results/*/metrics.json says each figure shows is what reproduce says."""
    import json
    from pathlib import Path

    from conceptlib.experiment.reproduce import FIGURES

    root = Path(__file__).resolve().parents[1] / "results"
    for path in sorted(root.glob("*/metrics.json")):
        figures = json.loads(path.read_text()).get("figures", {})
        assert figures == {f: FIGURES[f] for f in figures}, path


def test_quick_record_wall_time_is_quoted_as_recorded() -> None:
    timings = load_recorded("quick", RESULTS)["timings"]
    _quoted(
        RESULTS_README, f"{timings['total_seconds']:,.0f} s (`timings.total_seconds`)"
    )
    loaded = [all(s["loaded_from_cache"].values()) for s in timings["seeds"]]
    if all(loaded):
        runs = sum(len(s["loaded_from_cache"]) for s in timings["seeds"])
        _quoted(
            RESULTS_README, f"all {runs} runs of the {len(loaded)} seeds were loaded"
        )
