"""A run's measures in words and tables: the headline table the book sets beside
its own build, the plain-text tables of the command line, ``near`` for checked
notebook cells."""

from __future__ import annotations

from typing import Any

from conceptlib.config import VARIANTS
from conceptlib.model import variants
from conceptlib.report.stats import Difference, Estimate, estimate
from conceptlib.report.tables import markdown_table, plus_minus

_CONCEPT_VARIANTS = tuple(v for v in VARIANTS if variants.get(v).sees_concepts)
#: The numbers the book's scorecard sets side by side: (label, variant, split, measure).
HEADLINE = tuple(
    (f"{measure}, {name}, {variant}", variant, split, measure)
    for measure, split, name, variants in (
        ("concept_accuracy", "test_concepts", "test concepts", _CONCEPT_VARIANTS),
        ("recon_bce", "val", "own val split", ("baseline", "concept_paper", "concept")),
        *((m, "test_digits", "test digits", VARIANTS)
          for m in ("recon_bce", "kl", "neg_elbo", "is_nll")),
    )
    for variant in variants
)  # fmt: skip


def headline(metrics: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """``{label: (mean, std)}`` of the :data:`HEADLINE` measures (and the concept
    alignment, when present) of a metrics dict; std 0 for one seed."""
    found = [(label, ("variants", *path)) for label, *path in HEADLINE]
    found += [
        (f"alignment, test digits, concept: {name}", ("alignment", key))
        for key, name in (("own", "own-class share"), ("uniform", "even share"))
    ]
    ests = {label: estimate(metrics, *path) for label, path in found}
    return {k: (e.mean, e.sd or 0.0) for k, e in ests.items() if e is not None}


def near(actual: Any, recorded: Any, tol: float, rel: float = 0.0) -> Any:
    """``recorded`` wherever ``actual`` is within ``tol + rel * |recorded|`` of
    it, else ``actual``, leaf by leaf through nested dicts, lists and tuples: a
    checked notebook cell prints ``near(measured, recorded, tol)``, as fp32 kernels
    differ in the last digits between processors."""
    if isinstance(recorded, dict) and isinstance(actual, dict):
        if actual.keys() != recorded.keys():
            return actual
        return {k: near(actual[k], recorded[k], tol, rel) for k in recorded}
    if isinstance(recorded, (list, tuple)) and isinstance(actual, (list, tuple)):
        if len(actual) != len(recorded):
            return actual
        return type(recorded)(near(a, r, tol, rel) for a, r in zip(actual, recorded))
    if isinstance(recorded, (int, float)) and isinstance(actual, (int, float)):
        close = abs(float(actual) - float(recorded)) <= tol + rel * abs(recorded)
        return recorded if close else actual
    return actual


def format_table(metrics: dict[str, Any], split: str) -> str:
    """A plain-text table of every variant's measures on one split: means ±
    standard deviations over seeds (the values alone for one seed)."""
    cols = ["recon_bce", "recon_sse", "kl", "neg_elbo", "is_nll", "concept_accuracy"]
    lines = [f"{split:<12}" + "".join(f"{c:>18}" for c in cols)]
    several = len(metrics.get("seeds", [])) > 1  # one seed: no spread to show
    for v, splits in metrics["variants"].items():
        row, std = splits[split], metrics["variants_std"][v][split]
        cells = (
            f"{'-':>18}" if c not in row
            else f"{row[c]:>10.3f} ±{std[c]:<6.3f}" if several
            else f"{row[c]:>10.3f}{'':8}"
            for c in cols
        )  # fmt: skip
        lines.append(f"{v:<12}" + "".join(cells))
    return "\n".join(lines)


def format_headline(columns: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of the :data:`HEADLINE` measures, one column per run
    (column title -> a metrics dict, as for :func:`headline`)."""
    rows = {name: headline(m) for name, m in columns.items()}
    labels = list(dict.fromkeys(label for r in rows.values() for label in r))

    def cell(r: dict[str, tuple[float, float]], label: str) -> str:
        if label not in r:  # recorded before this measure existed
            return "–"
        mean, std = r[label]
        return plus_minus(mean, std or None, 3 if mean < 2 else 1)

    table = [(label, *(cell(r, label) for r in rows.values())) for label in labels]
    return markdown_table(["measure", *columns], table) + "\n"


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
    rows = []
    for key, what in CLUSTERING_ROWS:
        ests = (estimate(m, "clustering", key, score) for m in columns.values())
        rows.append((what, *("–" if e is None else e.text(3) for e in ests)))
    return markdown_table([f"clustering ({score})", *columns], rows) + "\n"


def compare_phrase(a: Estimate, b: Estimate, digits: int = 3) -> str:
    """``a`` against ``b`` in words ("higher", "lower", "within the noise", as
    :class:`~conceptlib.report.stats.Difference` judges), with the numbers."""
    diff = Difference(a, b)
    word = {1: "higher", -1: "lower", 0: "within the noise"}[diff.sign]
    return f"{word} ({a.text(digits)} against {b.text(digits)}; {diff.text(digits)})"


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
