"""Reporting: the headline measures of a metrics dict and the recorded runs.

:func:`conceptlib.reproduce.reproduce` writes ``metrics.json``; this module reads
such files (``results/<profile>/metrics.json``, or any run's output folder) and
formats them: the headline table that the book sets beside its own build, the
plain-text tables the command line prints, one line on where a recorded run was
made. Verdicts on the paper's claims are :mod:`conceptlib.report.scorecard`'s job.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conceptlib.config import VARIANTS
from conceptlib.errors import ConceptlibError
from conceptlib.report.scorecard import Difference, Estimate, estimate, plural
from conceptlib.report.tables import markdown_table

#: The numbers the book's scorecard sets side by side: (label, variant, split, measure).
HEADLINE = tuple(
    (f"{measure}, {name}, {variant}", variant, split, measure)
    for measure, split, name, variants in (
        (
            "concept_accuracy",
            "test_concepts",
            "test concepts",
            ("augmented", "concept_paper", "concept"),
        ),
        ("recon_bce", "val", "own val split", ("baseline", "concept_paper", "concept")),
        ("recon_bce", "test_digits", "test digits", VARIANTS),
        ("kl", "test_digits", "test digits", VARIANTS),
        ("neg_elbo", "test_digits", "test digits", VARIANTS),
        ("is_nll", "test_digits", "test digits", VARIANTS),
    )
    for variant in variants
)


def headline(metrics: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """``{label: (mean, std)}`` of the :data:`HEADLINE` measures of a metrics dict.

    ``metrics`` is what :func:`~conceptlib.reproduce.reproduce` writes, what
    :func:`~conceptlib.experiment.reproduce.run_metrics` returns, or just
    ``{"variants": ...}``
    for one seed; std is over seeds, 0 for one seed. The concept alignment on
    whole digits is added when present.
    """
    rows: dict[str, tuple[float, float]] = {}
    for label, variant, split, measure in HEADLINE:
        est = estimate(metrics, "variants", variant, split, measure)
        if est is not None:
            rows[label] = (est.mean, est.sd or 0.0)
    for key, name in (("own", "own-class share"), ("uniform", "even share")):
        est = estimate(metrics, "alignment", key)
        if est is not None:
            label = f"alignment, test digits, concept: {name}"
            rows[label] = (est.mean, est.sd or 0.0)
    return rows


def load_recorded(profile: str, root: str | os.PathLike = "results") -> dict | None:
    """The committed ``<root>/<profile>/metrics.json``, or None if there is none."""
    path = Path(root) / profile / "metrics.json"
    if not path.is_file():
        return None
    return read_metrics(path)


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """The ``metrics.json`` at ``path`` (the file, or the folder holding it).

    Raises:
        ConceptlibError: the file is missing or is not a metrics file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConceptlibError(f"{path}: no such metrics file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConceptlibError(f"{path}: cannot read results ({exc})") from None
    if not isinstance(metrics, dict) or "variants" not in metrics:
        raise ConceptlibError(
            f"{path}: not a metrics file of `conceptlib reproduce` (no variants)"
        )
    return upgrade_recorded(metrics)


def upgrade_recorded(metrics: dict[str, Any]) -> dict[str, Any]:
    """Name the variants of runs recorded before ``concept_paper`` existed.

    Until then the ``concept`` variant trained the paper's recipe (isolated
    concepts, BCE x 100 on the decoded sample), which is ``concept_paper`` now;
    such records (no ``concept_paper`` variant) get the new name.
    """
    variants = metrics.get("variants", {})
    if "concept_paper" in variants or "concept" not in variants:
        return metrics
    trees = [metrics, *(metrics.get("per_seed") or [])]
    for tree in trees:
        for key in ("variants", "variants_std", "epochs", "runs"):
            if "concept" in (tree.get(key) or {}):
                tree[key]["concept_paper"] = tree[key].pop("concept")
        for key in ("alignment", "alignment_std"):  # measured on that model too
            if key in tree:
                tree[f"{key}_concept_paper"] = tree.pop(key)
    metrics["renamed"] = {"concept": "concept_paper"}
    return metrics


def describe_recorded(profile: str, metrics: dict[str, Any]) -> str:
    """One Markdown line on where and how a recorded run was made."""
    env, t = metrics["environment"], metrics["timings"]
    device = env["gpu"] or f"{env['cpu_threads']} CPU threads"
    loaded = any(
        any(s.get("loaded_from_cache", {}).values()) for s in t.get("seeds", [])
    )
    return (
        f"- **{profile}**: seeds {metrics['seeds']}, {device}, torch {env['torch']}, "
        f"commit {env['git_commit']}; wall time of the recorded command "
        f"{t['total_seconds'] / 60:.1f} min"
        + (
            " (some runs were loaded from the run cache, not retrained: see "
            "`results/README.md`)"
            if loaded
            else ""
        )
    )


def recorded_runs(
    root: str | os.PathLike = "results", profiles: Sequence[str] = ("paper", "quick")
) -> dict[str, dict[str, Any]]:
    """The recorded runs of ``profiles`` that exist under ``root``
    (:func:`load_recorded`), named for a table's columns, e.g.
    ``recorded quick (3 seeds)``."""
    out = {}
    for profile in profiles:
        metrics = load_recorded(profile, root)
        if metrics is not None:
            n = len(metrics["seeds"])
            out[f"recorded {profile} ({plural(n, 'seed')})"] = metrics
    return out


def near(actual: Any, recorded: Any, tol: float, rel: float = 0.0) -> Any:
    """``recorded`` wherever ``actual`` is within tolerance of it, else ``actual``.

    For notebook checks that must hold on every processor: fp32 kernels differ in
    the last digits between processors (and under ``ONEDNN_MAX_CPU_ISA=AVX2``), so
    a printed float that rounds near a boundary flips. A checked cell prints
    ``near(measured, recorded, tol)``: on any machine whose numbers agree with the
    recorded ones to within ``tol + rel * |recorded|`` it prints the recorded
    values, and where one does not it prints the measured value in full, so the
    comparison with the committed output fails and shows it. Nested dicts, lists
    and tuples are walked leaf by leaf; their keys and shapes must match, and
    non-numbers must be equal.

    Args:
        actual: the measured values (floats, ints, or nested containers of them).
        recorded: the same structure, holding the values the check expects.
        tol: the absolute tolerance, in the values' own unit.
        rel: a further tolerance relative to ``|recorded|``.
    """
    if isinstance(recorded, dict) and isinstance(actual, dict):
        if actual.keys() != recorded.keys():
            return actual
        return {k: near(actual[k], recorded[k], tol, rel) for k in recorded}
    if isinstance(recorded, (list, tuple)) and isinstance(actual, (list, tuple)):
        if len(actual) != len(recorded):
            return actual
        return type(recorded)(near(a, r, tol, rel) for a, r in zip(actual, recorded))
    numbers = (int, float)
    if isinstance(recorded, numbers) and isinstance(actual, numbers):
        close = abs(float(actual) - float(recorded)) <= tol + rel * abs(recorded)
        return recorded if close else actual
    return actual


def format_table(metrics: dict[str, Any], split: str) -> str:
    """A plain-text table of the measures of every variant on one split.

    Means ± standard deviations over seeds; for one seed the values alone (no
    spread was measured).
    """
    cols = ["recon_bce", "recon_sse", "kl", "neg_elbo", "is_nll", "concept_accuracy"]
    lines = [f"{split:<12}" + "".join(f"{c:>18}" for c in cols)]
    several = len(metrics.get("seeds", [])) > 1  # one seed: no spread to show
    for v, splits in metrics["variants"].items():
        row, std = splits[split], metrics["variants_std"][v][split]
        cells = []
        for c in cols:
            if c not in row:
                cells.append(f"{'-':>18}")
            elif several:
                cells.append(f"{row[c]:>10.3f} ±{std[c]:<6.3f}")
            else:
                cells.append(f"{row[c]:>10.3f}{'':8}")
        lines.append(f"{v:<12}" + "".join(cells))
    return "\n".join(lines)


def format_headline(columns: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of the :data:`HEADLINE` measures, one column per run.

    Args:
        columns: column title -> a metrics dict (as for :func:`headline`).
    """
    rows = {name: headline(m) for name, m in columns.items()}
    labels = list(dict.fromkeys(label for r in rows.values() for label in r))
    table = "| measure | " + " | ".join(columns) + " |\n"
    table += "|---|" + "---:|" * len(columns) + "\n"
    for label in labels:
        cells = []
        for r in rows.values():
            if label not in r:  # recorded before this measure existed
                cells.append("–")
                continue
            mean, std = r[label]
            digits = 3 if mean < 2 else 1
            cells.append(f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std else ""))
        table += f"| {label} | " + " | ".join(cells) + " |\n"
    return table


#: The clusterings whose scores the scorecard shows: (key, what is clustered).
CLUSTERING_ROWS = (
    ("digits_latent", "latent images of digits, 10 clusters (Figure 3)"),
    ("concepts_latent", "latent images of concepts, K clusters (Figure 4)"),
    ("layer3_with_concept_loss", "layer 3, with the concept loss (Figure 5)"),
    ("layer3_without_concept_loss", "layer 3, without it (Figure 6)"),
    ("representatives_baseline", "baseline latents, section 3.5 step 1"),
)


def format_clustering(columns: dict[str, dict[str, Any]], score: str = "nmi") -> str:
    """A Markdown table of one clustering score (``nmi``, ``ari`` or ``purity``),
    mean ± standard deviation over seeds, one column per run."""
    table = f"| clustering ({score}) | " + " | ".join(columns) + " |\n"
    table += "|---|" + "---:|" * len(columns) + "\n"
    for key, what in CLUSTERING_ROWS:
        cells = []
        for m in columns.values():
            est = estimate(m, "clustering", key, score)
            cells.append("–" if est is None else est.text(3))
        table += f"| {what} | " + " | ".join(cells) + " |\n"
    return table


def compare_phrase(a: Estimate, b: Estimate, digits: int = 3) -> str:
    """``a`` against ``b`` in words, with the numbers: "higher", "lower" or "within
    the noise of", as :class:`~conceptlib.report.scorecard.Difference` judges them, e.g.
    ``"lower (0.819 ± 0.020 against 0.908 ± 0.015; difference -0.089 (4.1 SE))"``.
    """
    diff = Difference(a, b)
    word = {1: "higher", -1: "lower", 0: "within the noise"}[diff.sign]
    return f"{word} ({a.text(digits)} against {b.text(digits)}; {diff.text(digits)})"


def recorded_loop_speeds(root: str | os.PathLike = "results") -> dict[str, float]:
    """Training-loop throughput (img/s) per configuration at batch 128, e.g.
    ``{"fp32 NCHW": 866.0, "bf16 channels_last": 1256.0}``, as recorded by
    ``benchmarks/train_loop.py`` in ``<root>/benchmarks/train_loop.txt``; empty
    when nothing is recorded."""
    path = Path(root) / "benchmarks" / "train_loop.txt"
    if not path.is_file():
        return {}
    speeds = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[2] == "b128" and fields[3].isdigit():
            speeds[" ".join(fields[:2])] = float(fields[3])
    return speeds


def recorded_loop_speed(root: str | os.PathLike = "results") -> float | None:
    """The fastest recorded training-loop throughput (img/s, batch 128) of
    :func:`recorded_loop_speeds`."""
    return max(recorded_loop_speeds(root).values(), default=None)


def format_plan(plan: dict[str, int], img_per_s: float | None) -> str:
    """One sentence on what a chapter will train (:meth:`Pipeline.training_plan`)."""
    if not plan:
        return "nothing: every variant is already in the run cache"
    steps = sum(plan.values())
    what = ", ".join(f"`{v}`" for v in plan)
    text = f"{what} ({steps:,} image-steps in all)"
    if img_per_s:
        text += (
            f", about {steps / img_per_s / 60:.0f} min at the {img_per_s:,.0f} "
            "images/s of the fastest configuration recorded on 2 CPU cores "
            "(`results/benchmarks/train_loop.txt`; slower without native bf16); "
            "a GPU takes a small fraction of that"
        )
    return text


__all__ = [
    "CLUSTERING_ROWS",
    "HEADLINE",
    "compare_phrase",
    "describe_recorded",
    "format_clustering",
    "format_headline",
    "format_plan",
    "format_table",
    "headline",
    "load_recorded",
    "markdown_table",
    "near",
    "plural",
    "recorded_runs",
    "read_metrics",
    "recorded_loop_speed",
    "recorded_loop_speeds",
    "upgrade_recorded",
]
