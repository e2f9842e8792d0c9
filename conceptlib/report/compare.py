"""Two recorded runs side by side, seed by seed: is a difference larger than chance?

Each run is a ``metrics.json`` written by :func:`~conceptlib.reproduce.reproduce`
with several seeds. For every headline measure (test-digit losses of each variant,
concept accuracy, the vocabulary measures of the concept variants, the clustering
NMIs) it takes the per-seed values of both runs and asks whether the difference of
their means lies within twice the standard error of that difference,
``sqrt(s_a^2 / n_a + s_b^2 / n_b)`` (sample standard deviations over seeds), the
rule of :class:`conceptlib.report.scorecard.Difference`. Used to
decide whether bf16 training may replace fp32 (``results/quick-bf16/``).

See: chapter ``ch-training``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conceptlib.report.scorecard import Difference, Estimate, Z

Getter = Callable[[dict[str, Any]], float | None]


def _path(*keys: str) -> Getter:
    def get(seed: dict[str, Any]) -> float | None:
        node: Any = seed
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return float(node) if isinstance(node, (int, float)) else None

    return get


def measures(variants: tuple[str, ...]) -> list[tuple[str, Getter]]:
    """``(label, getter of a per-seed record)`` for every compared measure."""
    rows: list[tuple[str, Getter]] = []
    for v in variants:
        for m in ("recon_bce", "kl", "neg_elbo", "is_nll"):
            get = _path("variants", v, "test_digits", m)
            rows.append((f"{v}: test digits {m}", get))
    for v in variants:
        rows.append(
            (
                f"{v}: test concepts accuracy",
                _path("variants", v, "test_concepts", "concept_accuracy"),
            )
        )
    for v in ("concept_paper", "concept"):
        if v not in variants:
            continue
        for probe in ("isolated", "jitter", "shift", "pairs"):
            rows.append(
                (f"{v}: {probe} accuracy", _path("vocabulary", v, "accuracy", probe))
            )
        rows.append(
            (f"{v}: own detectors", _path("vocabulary", v, "dissection", "own"))
        )
        rows.append((f"{v}: part hit", _path("vocabulary", v, "part_hit")))
    for name in (
        "digits_latent",
        "concepts_latent",
        "layer3_with_concept_loss",
        "layer3_without_concept_loss",
    ):
        rows.append((f"clustering {name}: NMI", _path("clustering", name, "nmi")))
    return rows


@dataclass(frozen=True)
class Row:
    """One measure in both runs (per-seed values) and whether they differ.

    The judgement is :class:`~conceptlib.report.scorecard.Difference`'s, the same rule
    as the scorecard's: a difference of means within
    :data:`~conceptlib.report.scorecard.Z`
    standard errors of the (unpaired) difference is within the seed noise.
    """

    label: str
    a: Estimate
    b: Estimate

    @property
    def difference(self) -> Difference:
        return Difference(self.b, self.a)

    mean_a = property(lambda self: self.a.mean)
    mean_b = property(lambda self: self.b.mean)
    sd_a = property(lambda self: self.a.sd)
    sd_b = property(lambda self: self.b.sd)
    n_a = property(lambda self: self.a.n)
    n_b = property(lambda self: self.b.n)

    @property
    def diff(self) -> float:
        """``mean_b - mean_a``."""
        return self.difference.value

    @property
    def se(self) -> float:
        """Standard error of the difference of the means."""
        return self.difference.se

    @property
    def within(self) -> bool:
        """The difference lies within the seed noise."""
        return self.difference.sign == 0


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
    """How many of ``num_measures`` compared measures fall outside :data:`Z` standard
    errors by chance alone when nothing changed, against the ``outside`` observed.

    With ``num_seeds`` seeds per side and equal spreads, the difference of means over
    its standard error follows a t distribution with about ``2 * (num_seeds - 1)``
    degrees of freedom (Welch). Returns ``seeds``, ``df``, ``z``, ``p`` (the chance
    that one measure falls outside), ``expected`` (``p * num_measures``),
    ``outside_count`` and ``reading``: "no change" when no more fall outside than
    chance predicts, else "a change beyond chance".
    """
    from scipy.stats import t  # scipy loads in about a second: only when asked

    df = 2 * (num_seeds - 1)
    p = float(2 * t.sf(Z, df)) if df > 0 else float("nan")
    expected = p * num_measures
    reading = "no change" if outside <= expected else "a change beyond chance"
    return {
        "seeds": num_seeds,
        "df": df,
        "z": Z,
        "p": p,
        "expected": expected,
        "outside_count": outside,
        "reading": reading,
    }


def format_comparison(rows: list[Row], name_a: str, name_b: str) -> str:
    """A Markdown table of :func:`compare`'s rows, with a count of the verdicts."""
    lines = [
        f"| measure | {name_a} | {name_b} | difference | 2 x SE | within |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.label} | {r.mean_a:.3f} ± {r.sd_a:.3f} | {r.mean_b:.3f} ± "
            f"{r.sd_b:.3f} | {r.diff:+.3f} | {2 * r.se:.3f} | "
            f"{'yes' if r.within else '**no**'} |"
        )
    inside = sum(r.within for r in rows)
    lines.append("")
    lines.append(
        f"{inside} of {len(rows)} measures within 2 standard errors of the "
        f"difference (mean ± sample sd over seeds; {rows[0].n_a if rows else 0} and "
        f"{rows[0].n_b if rows else 0} seeds)."
    )
    return "\n".join(lines)


__all__ = ["Row", "chance_outside", "compare", "format_comparison", "measures"]
