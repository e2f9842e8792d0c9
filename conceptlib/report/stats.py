"""Estimates over seeds and the one rule that judges a difference against the seed
noise (a leaf: text, scorecard, compare and the operators use it). With several seeds
an effect counts only when the difference of the means exceeds :data:`Z` standard
errors of it. A one-seed run borrows the relative seed spread (sd / |mean|) that a
seeded reference run recorded for the measure, with n = 1, so it is never judged
more laxly; without a recorded spread the bar is :data:`ONE_SEED_MARGIN` of the value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from conceptlib.report.tables import at, plus_minus

#: An effect must exceed this many standard errors of the difference of means.
Z = 2.0
#: Without any seed spread, a difference must exceed this fraction of the
#: reference value: above the one-seed bar ``Z * sqrt(2) * r`` for every relative
#: seed spread r up to 3.5 %, which covers most measures of the quick run.
ONE_SEED_MARGIN = 0.10


@dataclass(frozen=True)
class Estimate:
    """One measure over seeds: its per-seed values, mean, sd (ddof 1) and standard
    error of the mean (both None for one seed)."""

    values: tuple[float, ...]

    n = property(lambda self: len(self.values))
    mean = property(lambda self: math.fsum(self.values) / self.n)

    @property
    def sd(self) -> float | None:
        if self.n < 2:
            return None
        m = self.mean
        return math.sqrt(math.fsum((v - m) ** 2 for v in self.values) / (self.n - 1))

    se = property(lambda self: None if self.sd is None else self.sd / math.sqrt(self.n))

    def text(self, digits: int = 1) -> str:
        """``mean`` or ``mean ± sd`` (sd over seeds)."""
        return plus_minus(self.mean, self.sd, digits)


def mean_sd(values: Sequence[float]) -> dict[str, float | None]:
    """``{"mean", "sd"}`` of a rate over seeds (sd: ddof 1, None for one seed)."""
    rate = Estimate(tuple(values))
    return {"mean": rate.mean, "sd": rate.sd}


def rate_text(rate: float | dict[str, Any], digits: int = 3) -> str:
    """A rate, or a :func:`mean_sd` of one over seeds, as ``0.900 ± 0.100``."""
    if isinstance(rate, dict):
        return plus_minus(rate["mean"], rate["sd"], digits)
    return plus_minus(rate, None, digits)


def noise_se(est: Estimate, rel: float | None) -> float | None:
    """The standard error a rule uses for ``est``: its own where the seeds spread,
    else ``rel * |mean| / sqrt(n)`` (``rel``: a recorded relative spread), else None."""
    if est.sd:
        return est.se
    return rel * abs(est.mean) / math.sqrt(est.n) if rel else None


@dataclass(frozen=True)
class Difference:
    """``a - b`` of two estimates, judged against the seed noise; ``spread``: the
    relative seed spreads of a reference run (:func:`spread`), for one seed."""

    a: Estimate
    b: Estimate
    spread: tuple[float | None, float | None] | None = None

    value = property(lambda self: self.a.mean - self.b.mean)

    @property
    def se(self) -> float | None:
        """Standard error of the difference of means; None with one seed."""
        a, b = self.a.se, self.b.se
        return None if a is None or b is None else math.hypot(a, b)

    @property
    def noise_se(self) -> float | None:
        """The standard error the rule uses: :attr:`se` where the seeds spread,
        else that of the recorded spread (n = 1 for one seed); None if unknown."""
        rel_a, rel_b = self.spread or (None, None)
        se_a, se_b = noise_se(self.a, rel_a), noise_se(self.b, rel_b)
        return None if se_a is None or se_b is None else math.hypot(se_a, se_b)

    @property
    def bar(self) -> float:
        """How far apart the means must be: :data:`Z` times :attr:`noise_se`, or
        :data:`ONE_SEED_MARGIN` of ``|b|`` when no spread is known."""
        se = self.noise_se
        return Z * se if se else ONE_SEED_MARGIN * abs(self.b.mean)

    @property
    def sign(self) -> int:
        """+1 or -1 when ``a`` is clearly above or below ``b``, 0 within noise
        (:data:`Z` SE is a convention, not a 95 % test)."""
        if abs(self.value) <= self.bar:
            return 0
        return 1 if self.value > 0 else -1

    def text(self, digits: int = 1) -> str:
        se, value = self.noise_se, f"difference {self.value:+.{digits}f}"
        if se is None:
            if min(self.a.n, self.b.n) > 1:
                return f"{value} (seeds agree exactly: no spread)"
            return f"{value} (one seed: no recorded spread)"
        ratio = abs(self.value) / se if se > 0 else math.inf
        if self.se:
            return f"{value} ({ratio:.1f} SE)"
        return f"{value} (one seed: {ratio:.1f} SE of the recorded seed spread)"


def plural(count: int, word: str) -> str:
    """``"1 epoch"``, ``"8 epochs"``: a count with its noun."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def seeds_of(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-seed measure dicts of a metrics dict (itself, if it has none)."""
    return list(metrics.get("per_seed") or [metrics])


def estimate(metrics: dict[str, Any], *path: str) -> Estimate | None:
    """The measure at ``path`` (e.g. ``"variants", "baseline", "val", "kl"``) in
    every seed of ``metrics``, or None if a seed lacks it."""
    values = [at(tree, path) for tree in seeds_of(metrics)]
    for value in values:
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return None  # missing, or a diverged run's NaN: nothing to judge
    return Estimate(tuple(map(float, values))) if values else None


def relative_sd(est: Estimate | None) -> float | None:
    """``sd / |mean|`` of a seeded estimate; None for one seed or a zero mean."""
    if est is None or est.sd is None or est.mean == 0:
        return None
    return est.sd / abs(est.mean)


def spread(reference: dict[str, Any] | None, *path: str) -> float | None:
    """The relative seed spread of the measure at ``path`` in a seeded
    ``reference`` run (the recorded quick run): what a one-seed run borrows."""
    return None if reference is None else relative_sd(estimate(reference, *path))
