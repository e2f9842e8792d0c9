"""Two recorded runs side by side, seed by seed: is a difference larger than chance?

Each run is a ``metrics.json`` written by :func:`~conceptlib.reproduce.reproduce`
with several seeds. For every headline measure (test-digit losses of each variant,
concept accuracy, the vocabulary measures of the concept variants, the clustering
NMIs) it takes the per-seed values of both runs and asks whether the difference of
their means lies within twice the standard error of that difference,
``sqrt(s_a^2 / n_a + s_b^2 / n_b)`` (sample standard deviations over seeds). Used to
decide whether bf16 training may replace fp32 (``results/quick-bf16/``).

See: chapter ``ch-training``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

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
    """One measure in both runs: means, sample sds over seeds and the verdict."""

    label: str
    mean_a: float
    sd_a: float
    mean_b: float
    sd_b: float
    n_a: int
    n_b: int

    @property
    def diff(self) -> float:
        return self.mean_b - self.mean_a

    @property
    def se(self) -> float:
        """Standard error of the difference of the means."""
        return math.sqrt(self.sd_a**2 / self.n_a + self.sd_b**2 / self.n_b)

    @property
    def within(self) -> bool:
        """``|diff| <= 2 se`` (a zero difference with zero spread is within)."""
        return abs(self.diff) <= 2 * self.se


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[Row]:
    """Every measure present in both ``metrics.json`` dicts with >= 2 seeds each."""
    variants = tuple(v for v in a["variants"] if v in b["variants"])
    rows = []
    for label, get in measures(variants):
        va = [x for x in map(get, a["per_seed"]) if x is not None]
        vb = [x for x in map(get, b["per_seed"]) if x is not None]
        if len(va) < 2 or len(vb) < 2:
            continue
        rows.append(
            Row(
                label,
                float(np.mean(va)),
                float(np.std(va, ddof=1)),
                float(np.mean(vb)),
                float(np.std(vb, ddof=1)),
                len(va),
                len(vb),
            )
        )
    return rows


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


__all__ = ["Row", "compare", "format_comparison", "measures"]
