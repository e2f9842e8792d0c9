"""The paper's claims as verdicts, computed from a run's measures.

Each claim of the paper is a function from a metrics dict (what
``conceptlib reproduce`` writes: one seed or several, see
:func:`conceptlib.reproduce.seed_metrics`) to a :class:`Verdict`: one of
:data:`VERDICTS`, the evidence it used, and the rule that turned the evidence into
the verdict. The rules are noise-aware: with several seeds an effect counts only
when the difference of the means exceeds :data:`Z` standard errors of that
difference; with one seed there is no spread to compare with, the verdict says so,
and a difference counts only when it exceeds :data:`ONE_SEED_MARGIN` of the
reference value.

The command line prints the same verdicts: ``conceptlib scorecard [--run DIR]``.

See: chapter ``ch-scorecard``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The numbers the paper states (abstract, sections 4 and 5): the average
#: validation reconstruction loss without and with augmentation and concept loss.
PAPER = {"val_loss_without": 120.0, "val_loss_with": 60.0, "num_epochs": 50}
PAPER_RATIO = PAPER["val_loss_with"] / PAPER["val_loss_without"]

REPRODUCED = "reproduced"
PARTLY = "partly"
NOT_REPRODUCED = "not reproduced"
NOT_MEASURABLE = "not measurable at this profile"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_MEASURABLE)

#: An effect must exceed this many standard errors of the difference of means.
Z = 2.0
#: With one seed, a difference must exceed this fraction of the reference value
#: (the 3-seed quick run's spread of the test-digit reconstruction loss is about
#: 3 % of its mean).
ONE_SEED_MARGIN = 0.03
#: A loss ratio within this of the paper's ratio (0.5) counts as halved.
RATIO_TOLERANCE = 0.1
#: Fewer training epochs than this: too short for any verdict.
MIN_EPOCHS = 3
#: Cluster purity (share of points whose cluster's majority label is their own)
#: at which "one label per cluster" holds, and below which it does not at all.
PURE, MIXED = 0.9, 0.6


@dataclass(frozen=True)
class Estimate:
    """One measure over seeds: its per-seed values, mean and standard error."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / self.n

    @property
    def sd(self) -> float | None:
        """Standard deviation over seeds (ddof 1); None for one seed."""
        if self.n < 2:
            return None
        m = self.mean
        return math.sqrt(math.fsum((v - m) ** 2 for v in self.values) / (self.n - 1))

    @property
    def se(self) -> float | None:
        """Standard error of the mean; None for one seed."""
        sd = self.sd
        return None if sd is None else sd / math.sqrt(self.n)

    def text(self, digits: int = 1) -> str:
        """``mean`` or ``mean ± sd`` (sd over seeds)."""
        sd = self.sd
        spread = "" if sd is None else f" ± {sd:.{digits}f}"
        return f"{self.mean:.{digits}f}{spread}"


@dataclass(frozen=True)
class Difference:
    """``a - b`` of two estimates, judged against the seed noise."""

    a: Estimate
    b: Estimate

    @property
    def value(self) -> float:
        return self.a.mean - self.b.mean

    @property
    def se(self) -> float | None:
        """Standard error of the difference of means; None with one seed."""
        if self.a.se is None or self.b.se is None:
            return None
        return math.hypot(self.a.se, self.b.se)

    @property
    def sign(self) -> int:
        """+1 or -1 when ``a`` is clearly above or below ``b``, 0 within noise.

        With seeds the bar is :data:`Z` standard errors of the (unpaired)
        difference: a convention, not a 95 % test (with 3 seeds per side that
        would need about 2.8). Without a spread (one seed, or seeds that agree
        exactly) it is :data:`ONE_SEED_MARGIN` of ``b``.
        """
        se = self.se
        bar = Z * se if se else ONE_SEED_MARGIN * abs(self.b.mean)
        if abs(self.value) <= bar:
            return 0
        return 1 if self.value > 0 else -1

    def text(self, digits: int = 1) -> str:
        se = self.se
        if se is None:
            return f"difference {self.value:+.{digits}f} (one seed: no spread)"
        ratio = abs(self.value) / se if se > 0 else math.inf
        return f"difference {self.value:+.{digits}f} ({ratio:.1f} SE)"


@dataclass(frozen=True)
class Verdict:
    """The judgement of one claim on one run."""

    claim: str  #: short id, e.g. ``1b``
    title: str  #: the claim in a few words
    paper: str  #: what the paper states or shows
    verdict: str  #: one of :data:`VERDICTS`
    evidence: str  #: the measured numbers the verdict used
    rule: str  #: how the evidence became the verdict


# -- reading measures --------------------------------------------------------------


def seeds_of(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-seed measure dicts of a metrics dict (itself, if it has none)."""
    return list(metrics.get("per_seed") or [metrics])


def estimate(metrics: dict[str, Any], *path: str) -> Estimate | None:
    """The measure at ``path`` (e.g. ``"variants", "baseline", "val", "kl"``) in
    every seed of ``metrics``, or None if a seed lacks it."""
    values = []
    for tree in seeds_of(metrics):
        for key in path:
            if not isinstance(tree, dict) or key not in tree:
                return None
            tree = tree[key]
        if not isinstance(tree, (int, float)) or not math.isfinite(tree):
            return None  # missing, or a diverged run's NaN: nothing to judge
        values.append(float(tree))
    return Estimate(tuple(values)) if values else None


def num_epochs(metrics: dict[str, Any]) -> int | None:
    """Training epochs of the run (from its config, else its loss history)."""
    epochs = metrics.get("config", {}).get("train", {}).get("num_epochs")
    if epochs is not None:
        return int(epochs)
    history = seeds_of(metrics)[0].get("epochs", {})
    return max((len(h) for h in history.values()), default=None)


def plural(count: int, noun: str) -> str:
    """``count`` with ``noun`` in the number it takes: "1 epoch", "8 epochs"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _noise_note(*estimates: Estimate) -> str:
    n = min(e.n for e in estimates)
    if n < 2:
        return (
            f"one seed: no seed spread, so a difference counts when it exceeds "
            f"{ONE_SEED_MARGIN:.0%} of the reference"
        )
    return f"{n} seeds: a difference counts when it exceeds {Z:g} standard errors"


def _missing(claim: str, title: str, paper: str, what: str) -> Verdict:
    return Verdict(claim, title, paper, NOT_MEASURABLE, f"{what}: not in this run", "")


# -- the claims ---------------------------------------------------------------------


def claim_loss_halves(metrics: dict[str, Any], split: str = "test_digits") -> Verdict:
    """Claim 1: the reconstruction loss falls from 120 to 60 (``baseline`` ->
    ``concept_paper``, binary cross-entropy per image) on ``split``: ``val`` (each
    variant's own validation split, the paper's setting) or ``test_digits``."""
    where = {"val": "own validation split", "test_digits": "test digits"}[split]
    claim, title = ("1a" if split == "val" else "1b"), f"the loss halves, {where}"
    paper = (
        f"{PAPER['val_loss_without']:g} → {PAPER['val_loss_with']:g} "
        f"(ratio {PAPER_RATIO:.2f})"
    )
    a = estimate(metrics, "variants", "concept_paper", split, "recon_bce")
    b = estimate(metrics, "variants", "baseline", split, "recon_bce")
    if a is None or b is None:
        return _missing(claim, title, paper, "recon_bce of baseline, concept_paper")
    diff, ratio = Difference(a, b), a.mean / b.mean
    evidence = f"{b.text()} → {a.text()} (ratio {ratio:.2f}; {diff.text()})"
    rule = (
        f"reproduced: lower and ratio <= {PAPER_RATIO + RATIO_TOLERANCE:.2f}; "
        f"partly: lower; {_noise_note(a, b)}"
    )
    if diff.sign < 0:
        verdict = REPRODUCED if ratio <= PAPER_RATIO + RATIO_TOLERANCE else PARTLY
    else:
        verdict = NOT_REPRODUCED
    return Verdict(claim, title, paper, verdict, evidence, rule)


def claim_layer3(metrics: dict[str, Any]) -> Verdict:
    """Claim 2: with the concept loss, layer 3 learns the concepts.

    Judged on measures the concept loss does not train directly (Network
    Dissection with its random-rotation control, 2 px shifts, pairs; see
    :func:`conceptlib.vocab.layer3_verdict`), once the concept accuracy of
    ``concept_paper`` is above that of ``augmented`` beyond the noise.
    """
    from conceptlib.vocab import layer3_verdict

    claim, title = "2", "layer 3 learns the concepts"
    paper = "Figures 5 and 6 (pictures)"
    a = estimate(
        metrics, "variants", "concept_paper", "test_concepts", "concept_accuracy"
    )
    b = estimate(metrics, "variants", "augmented", "test_concepts", "concept_accuracy")
    paths = {
        ("dissection", "own"),
        ("dissection_rotated", "own"),
        ("accuracy", "shift"),
        ("accuracy", "pairs"),
    }
    vocab = {p: estimate(metrics, "vocabulary", "concept_paper", *p) for p in paths}
    if a is None or b is None or None in vocab.values():
        return _missing(claim, title, paper, "vocabulary measures of concept_paper")
    means: dict[str, dict[str, float]] = {}
    for (group, key), est in vocab.items():
        means.setdefault(group, {})[key] = est.mean
    k = len(metrics.get("catalogue", {}).get("names", [])) or 18
    verdict, evidence = layer3_verdict(means, k)
    diff = Difference(a, b)
    evidence = (
        f"concept accuracy {a.text(3)} against {b.text(3)} without the loss; "
        + evidence
    )
    rule = (
        f"reproduced: >= {k - 1} of {k} channels detect their own concept, <= 2 after "
        "a random rotation, shift accuracy >= 0.8, pairs >= 0.5; partly: the "
        "dissection alone; both need the concept accuracy above augmented's; "
        + _noise_note(a, b)
    )
    if diff.sign <= 0:
        verdict = NOT_REPRODUCED
    return Verdict(claim, title, paper, verdict, evidence, rule)


def claim_layer3_clusters(metrics: dict[str, Any]) -> Verdict:
    """Claim 2b: the concept loss makes layer-3 clusters of concept images follow
    the concepts (Figure 5 against Figure 6), in normalised mutual information."""
    claim, title = "2b", "layer-3 clusters follow the concepts with the loss"
    paper = "Figure 5 against Figure 6 (pictures)"
    a = estimate(metrics, "clustering", "layer3_with_concept_loss", "nmi")
    b = estimate(metrics, "clustering", "layer3_without_concept_loss", "nmi")
    if a is None or b is None:
        return _missing(claim, title, paper, "layer-3 clustering scores")
    diff = Difference(a, b)
    evidence = f"NMI {a.text(3)} with the loss, {b.text(3)} without ({diff.text(3)})"
    rule = f"reproduced: NMI higher with the loss; {_noise_note(a, b)}"
    verdict = REPRODUCED if diff.sign > 0 else NOT_REPRODUCED
    return Verdict(claim, title, paper, verdict, evidence, rule)


def _purity_claim(
    metrics: dict[str, Any], clustering: str, claim: str, title: str, paper: str
) -> Verdict:
    purity = estimate(metrics, "clustering", clustering, "purity")
    nmi = estimate(metrics, "clustering", clustering, "nmi")
    if purity is None or nmi is None:
        return _missing(claim, title, paper, f"{clustering} clustering scores")
    evidence = f"purity {purity.text(3)}, NMI {nmi.text(3)}"
    se = purity.se or 0.0
    low, high = purity.mean - Z * se, purity.mean + Z * se
    if low >= PURE:
        verdict = REPRODUCED
    elif high < MIXED:
        verdict = NOT_REPRODUCED
    else:
        verdict = PARTLY
    noise = (
        "one seed: the purity itself"
        if purity.se is None
        else f"{purity.n} seeds: mean ± {Z:g} SE"
    )
    rule = f"reproduced: purity >= {PURE:g}; not reproduced: < {MIXED:g}; {noise}"
    return Verdict(claim, title, paper, verdict, evidence, rule)


def claim_digit_clusters(metrics: dict[str, Any]) -> Verdict:
    """Claim 3: each decoded centre of the 10 latent digit clusters is one digit
    (Figure 3): the purity of those clusters against the digit labels."""
    return _purity_claim(
        metrics, "digits_latent", "3", "one digit per latent cluster", "Figure 3"
    )


def claim_concept_clusters(metrics: dict[str, Any]) -> Verdict:
    """Claim 4: the K latent concept clusters show every concept (Figure 4): their
    purity against the concept labels."""
    return _purity_claim(
        metrics, "concepts_latent", "4", "one concept per latent cluster", "Figure 4"
    )


def claim_fewer_epochs(metrics: dict[str, Any]) -> Verdict:
    """Claim 5: losses at hidden layers train a model in fewer epochs.

    At equal epochs, ``concept_paper`` (the paper's concept loss) must reach a lower
    total held-out loss (-ELBO on the test digits) than ``augmented``, which trains
    on the same images without it; a training loss alone would ignore the KL term.
    """
    claim, title = "5", "fewer epochs"
    paper = "argued, not measured"
    a = estimate(metrics, "variants", "concept_paper", "test_digits", "neg_elbo")
    b = estimate(metrics, "variants", "augmented", "test_digits", "neg_elbo")
    if a is None or b is None:
        return _missing(claim, title, paper, "test-digit -ELBO")
    diff = Difference(a, b)
    epochs = num_epochs(metrics)
    evidence = (
        f"test-digit -ELBO after {epochs} epochs: {a.text()} with the concept loss, "
        f"{b.text()} without ({diff.text()})"
    )
    rule = f"reproduced: lower with the concept loss; {_noise_note(a, b)}"
    verdict = REPRODUCED if diff.sign < 0 else NOT_REPRODUCED
    return Verdict(claim, title, paper, verdict, evidence, rule)


#: Every claim, in the paper's order.
CLAIMS: tuple[Callable[[dict[str, Any]], Verdict], ...] = (
    lambda m: claim_loss_halves(m, "val"),
    lambda m: claim_loss_halves(m, "test_digits"),
    claim_layer3,
    claim_layer3_clusters,
    claim_digit_clusters,
    claim_concept_clusters,
    claim_fewer_epochs,
)


def judge(metrics: dict[str, Any]) -> list[Verdict]:
    """Every claim of :data:`CLAIMS` on one run (one seed or several).

    A run trained for fewer than :data:`MIN_EPOCHS` epochs (the smoke profile) gets
    :data:`NOT_MEASURABLE` throughout, with the evidence still shown.
    """
    verdicts = [claim(metrics) for claim in CLAIMS]
    epochs = num_epochs(metrics)
    if epochs is not None and epochs < MIN_EPOCHS:
        short = (
            f"trained {plural(epochs, 'epoch')}, fewer than {MIN_EPOCHS}: "
            "too short to judge"
        )
        verdicts = [
            Verdict(v.claim, v.title, v.paper, NOT_MEASURABLE, v.evidence, short)
            for v in verdicts
        ]
    return verdicts


# -- tables -------------------------------------------------------------------------


def format_markdown(columns: dict[str, list[Verdict]]) -> str:
    """A Markdown table: one row per claim, the paper, then one column per run."""
    first = next(iter(columns.values()))
    head = "| claim | the paper | " + " | ".join(columns) + " |\n"
    head += "|---|---|" + "---|" * len(columns) + "\n"
    rows = []
    for i, v in enumerate(first):
        cells = [f"**{vs[i].verdict}**: {vs[i].evidence}" for vs in columns.values()]
        rows.append(f"| {v.claim}. {v.title} | {v.paper} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows)


def format_rules(verdicts: list[Verdict]) -> str:
    """A Markdown list of the rule behind each claim's verdict."""
    return "\n".join(f"- **{v.claim}. {v.title}**: {v.rule}" for v in verdicts)


def format_text(columns: dict[str, list[Verdict]]) -> str:
    """The scorecard for a terminal: one block per claim, one line per run."""
    first = next(iter(columns.values()))
    width = max(len("the paper"), *(len(name) for name in columns))
    lines = []
    for i, v in enumerate(first):
        lines.append(f"{v.claim}. {v.title}")
        lines.append(f"  {'the paper':<{width}}  {v.paper}")
        for name, vs in columns.items():
            lines.append(f"  {name:<{width}}  {vs[i].verdict}: {vs[i].evidence}")
        lines.append("")
    counts = ", ".join(
        f"{name}: {sum(x.verdict == REPRODUCED for x in vs)} of {len(vs)} reproduced"
        for name, vs in columns.items()
    )
    return "\n".join(lines) + counts


__all__ = [
    "CLAIMS",
    "NOT_MEASURABLE",
    "NOT_REPRODUCED",
    "PAPER",
    "PARTLY",
    "REPRODUCED",
    "VERDICTS",
    "Difference",
    "Estimate",
    "Verdict",
    "claim_concept_clusters",
    "claim_digit_clusters",
    "claim_fewer_epochs",
    "claim_layer3",
    "claim_layer3_clusters",
    "claim_loss_halves",
    "estimate",
    "format_markdown",
    "format_rules",
    "format_text",
    "judge",
    "plural",
    "seeds_of",
]
