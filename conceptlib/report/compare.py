"""Two recorded runs side by side, seed by seed: for every headline measure of two
``metrics.json`` with several seeds, whether the difference of the means lies within
:data:`~conceptlib.report.stats.Z` standard errors of it (the rule of
:class:`~conceptlib.report.stats.Difference`). Used to decide whether bf16 training
may replace fp32 (``results/quick-bf16/``; chapter ``ch-training``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conceptlib.config import CONCEPT_VARIANTS
from conceptlib.report.stats import Difference, Estimate, Z
from conceptlib.report.tables import at, markdown_table, plus_minus

Getter = Callable[[dict[str, Any]], float | None]


def _path(*keys: str) -> Getter:
    def get(seed: dict[str, Any]) -> float | None:
        value = at(seed, keys)
        return float(value) if isinstance(value, (int, float)) else None

    return get


def measures(variants: tuple[str, ...]) -> list[tuple[str, Getter]]:
    """``(label, getter of a per-seed record)`` for every compared measure."""
    rows = [
        (f"{v}: test digits {m}", _path("variants", v, "test_digits", m))
        for v in variants
        for m in ("recon_bce", "kl", "neg_elbo", "is_nll")
    ]
    accuracy = ("test_concepts", "concept_accuracy")
    rows += [(f"{v}: test concepts accuracy", _path("variants", v, *accuracy))
             for v in variants]  # fmt: skip
    for v in (v for v in CONCEPT_VARIANTS if v in variants):
        rows += [
            *((f"{v}: {p} accuracy", _path("vocabulary", v, "accuracy", p))
              for p in ("isolated", "jitter", "shift", "pairs")),
            (f"{v}: own detectors", _path("vocabulary", v, "dissection", "own")),
            (f"{v}: part hit", _path("vocabulary", v, "part_hit")),
        ]  # fmt: skip
    layer3 = ("layer3_with_concept_loss", "layer3_without_concept_loss")
    for name in ("digits_latent", "concepts_latent", *layer3):
        rows.append((f"clustering {name}: NMI", _path("clustering", name, "nmi")))
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
    sd_a = property(lambda self: self.a.sd)
    sd_b = property(lambda self: self.b.sd)
    n_a = property(lambda self: self.a.n)
    n_b = property(lambda self: self.b.n)
    diff = property(lambda self: self.difference.value)
    se = property(lambda self: self.difference.se)
    within = property(lambda self: self.difference.sign == 0)


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[Row]:
    """Every measure present in both ``metrics.json`` dicts with >= 2 seeds each."""
    variants = tuple(v for v in a["variants"] if v in b["variants"])
    rows = []
    for label, get in measures(variants):
        va = tuple(x for x in map(get, a["per_seed"]) if x is not None)
        vb = tuple(x for x in map(get, b["per_seed"]) if x is not None)
        if len(va) >= 2 and len(vb) >= 2:
            rows.append(Row(label, Estimate(va), Estimate(vb)))
    return rows


def chance_outside(num_seeds: int, num_measures: int, outside: int) -> dict[str, Any]:
    """How many of ``num_measures`` measures fall outside :data:`Z` standard errors
    by chance alone when nothing changed (a t distribution, about ``2 * (num_seeds
    - 1)`` degrees of freedom, Welch), against the ``outside`` observed: ``seeds``,
    ``df``, ``z``, ``p`` (one measure's chance), ``expected``, ``outside_count`` and
    ``reading`` ("no change" or "a change beyond chance")."""
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
        (r.label, plus_minus(r.mean_a, r.sd_a), plus_minus(r.mean_b, r.sd_b),
         f"{r.diff:+.3f}", f"{2 * r.se:.3f}", "yes" if r.within else "**no**")
        for r in rows
    ]  # fmt: skip
    n_a, n_b = (rows[0].n_a, rows[0].n_b) if rows else (0, 0)
    return (
        markdown_table(head, cells, "l" * len(head))
        + f"\n\n{sum(r.within for r in rows)} of {len(rows)} measures within 2 "
        f"standard errors of the difference (mean ± sample sd over seeds; {n_a} and "
        f"{n_b} seeds)."
    )
