"""Two recorded runs side by side, seed by seed: for every headline measure of two
``metrics.json`` with several seeds, whether the difference of the means lies within
:data:`~conceptlib.report.stats.Z` standard errors of it (the rule of
:class:`~conceptlib.report.stats.Difference`). Used to decide whether bf16 training
may replace fp32 (``results/quick-bf16/``; chapter ``ch-training``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conceptlib.config import CONCEPT_VARIANTS
from conceptlib.report.stats import Difference, Estimate, Z
from conceptlib.report.tables import at, markdown_table


def measures(variants: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    """``(label, path in a per-seed record)`` for every compared measure."""
    rows = [
        (f"{v}: test digits {m}", ("variants", v, "test_digits", m))
        for v in variants
        for m in ("recon_bce", "kl", "neg_elbo", "is_nll")
    ]
    accuracy = ("test_concepts", "concept_accuracy")
    rows += [(f"{v}: test concepts accuracy", ("variants", v, *accuracy))
             for v in variants]  # fmt: skip
    for v in (v for v in CONCEPT_VARIANTS if v in variants):
        rows += [
            *((f"{v}: {p} accuracy", ("vocabulary", v, "accuracy", p))
              for p in ("isolated", "jitter", "shift", "pairs")),
            (f"{v}: own detectors", ("vocabulary", v, "dissection", "own")),
            (f"{v}: part hit", ("vocabulary", v, "part_hit")),
        ]  # fmt: skip
    layer3 = ("layer3_with_concept_loss", "layer3_without_concept_loss")
    for name in ("digits_latent", "concepts_latent", *layer3):
        rows.append((f"clustering {name}: NMI", ("clustering", name, "nmi")))
    return rows


@dataclass(frozen=True)
class Row:
    """One measure in both runs (per-seed values) and whether they differ, by
    :class:`~conceptlib.report.stats.Difference`'s rule (``b - a``, unpaired):
    ``diff`` is ``mean_b - mean_a``, ``se`` its standard error, ``within`` whether
    it lies within the seed noise."""

    label: str
    a: Estimate
    b: Estimate

    difference = property(lambda self: Difference(self.b, self.a))
    mean_a = property(lambda self: self.a.mean)
    mean_b = property(lambda self: self.b.mean)
    diff = property(lambda self: self.difference.value)
    se = property(lambda self: self.difference.se)
    within = property(lambda self: self.difference.sign == 0)


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[Row]:
    """Every measure present in both ``metrics.json`` dicts with >= 2 seeds each."""
    variants = tuple(v for v in a["variants"] if v in b["variants"])
    rows = []
    for label, path in measures(variants):
        va, vb = (
            tuple(float(x) for x in (at(seed, path) for seed in run["per_seed"])
                  if isinstance(x, (int, float)))
            for run in (a, b)
        )  # fmt: skip
        if len(va) >= 2 and len(vb) >= 2:
            rows.append(Row(label, Estimate(va), Estimate(vb)))
    return rows


def chance_outside(num_seeds: int, num_measures: int, outside: int) -> dict[str, Any]:
    """How many of ``num_measures`` measures fall outside :data:`Z` standard errors
    by chance alone when nothing changed (a t distribution, ``2 * (num_seeds - 1)``
    degrees of freedom, Welch), against the ``outside`` observed: a dict of ``seeds,
    df, z, p`` (one measure's chance) and ``expected, outside_count, reading``."""
    from scipy.stats import t  # scipy loads in about a second: only when asked

    df = 2 * (num_seeds - 1)
    p = float(2 * t.sf(Z, df)) if df > 0 else float("nan")
    expected = p * num_measures
    reading = "no change" if outside <= expected else "a change beyond chance"
    keys = ("seeds", "df", "z", "p", "expected", "outside_count", "reading")
    return dict(zip(keys, (num_seeds, df, Z, p, expected, outside, reading)))


def format_comparison(rows: list[Row], name_a: str, name_b: str) -> str:
    """A Markdown table of :func:`compare`'s rows, with a count of the verdicts."""
    head = ["measure", name_a, name_b, "difference", "2 x SE", "within"]
    cells = [
        (r.label, r.a.text(3), r.b.text(3),
         f"{r.diff:+.3f}", f"{2 * r.se:.3f}", "yes" if r.within else "**no**")
        for r in rows
    ]  # fmt: skip
    n_a, n_b = (rows[0].a.n, rows[0].b.n) if rows else (0, 0)
    return (
        markdown_table(head, cells, "l" * len(head))
        + f"\n\n{sum(r.within for r in rows)} of {len(rows)} measures within 2 "
        f"standard errors of the difference (mean ± sample sd over seeds; {n_a} and "
        f"{n_b} seeds)."
    )
