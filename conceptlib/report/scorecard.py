"""The paper's claims as verdicts (chapter ``ch-scorecard``, ``conceptlib scorecard``):
each claim maps a metrics dict (one seed or several) to a :class:`Verdict` on the
claim as the paper means it (:data:`PAPER_CLAIM`) or on this project's stricter test
of it (:data:`PROJECT_TEST`), by :class:`~conceptlib.report.stats.Difference`'s rule."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from conceptlib.config import PAPER_RECIPE
from conceptlib.report.stats import (  # re-exported for the chapters and tests
    ONE_SEED_MARGIN,
    Difference,
    Estimate,
    Z,
    estimate,
    noise_se,
    plural,
    relative_sd,
    seeds_of,
    spread,
)
from conceptlib.report.tables import at, markdown_table

Run = dict[str, Any]  #: a metrics dict (what ``conceptlib reproduce`` writes)

#: The numbers the paper states (abstract, sections 4 and 5): the average
#: validation reconstruction loss without and with augmentation and concept loss.
PAPER = {"val_loss_without": 120.0, "val_loss_with": 60.0, "num_epochs": 50}
PAPER_RATIO = PAPER["val_loss_with"] / PAPER["val_loss_without"]

_LOSS = PAPER_RECIPE["loss"]
_DECODED = "sample z" if _LOSS["concept_decode"] == "z" else "mean mu"
#: What the ``concept_paper`` variant trains, in words.
RECIPE = (
    f"the paper's recipe as read here ({_LOSS['concept_loss'].upper()} x "
    f"{_LOSS['concept_weight']:g} on the decoded {_DECODED}, not the paper's MSE)"
)

REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"
NOT_MEASURABLE = "not measurable at this profile"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_MEASURABLE)

PAPER_CLAIM = "the paper's claim"  #: a verdict on the claim as the paper means it
PROJECT_TEST = "this project's test"  #: a stricter test (not what the paper claims)
KINDS = (PAPER_CLAIM, PROJECT_TEST)

#: A loss ratio within this of the paper's ratio (0.5) counts as halved.
RATIO_TOLERANCE = 0.1
#: Fewer training epochs than this: too short for any verdict.
MIN_EPOCHS = 3
#: Cluster purity (share of points whose cluster's majority label is their own) at
#: which "one label per cluster" holds, and below which it does not at all.
PURE, MIXED = 0.9, 0.6
#: This project's test of layer 3: accuracy under 2 px shifts and on pairs.
SHIFT_ACCURACY, PAIRS_ACCURACY = 0.8, 0.5
#: Most channels rotated at random may still detect their own concept.
MAX_ROTATED = 2
#: The learning curves' measures: per-epoch reconstruction and -ELBO (recon + KL).
CURVE_MEASURES = {"recon": "reconstruction", "neg_elbo": "-ELBO"}


@dataclass(frozen=True)
class Verdict:
    """The judgement of one claim, or of one test of this project, on one run."""

    claim: str  #: short id, e.g. ``1b``
    title: str  #: the claim in a few words
    paper: str  #: what the paper states or shows
    verdict: str  #: one of :data:`VERDICTS`
    evidence: str  #: the measured numbers the verdict used
    rule: str  #: how the evidence became the verdict
    kind: str = PAPER_CLAIM  #: :data:`PAPER_CLAIM` or :data:`PROJECT_TEST`


def num_epochs(metrics: Run) -> int | None:
    """Training epochs of the run (from its config, else its loss history)."""
    if (epochs := at(metrics, "config.train.num_epochs")) is not None:
        return int(epochs)
    history = seeds_of(metrics)[0].get("epochs", {})
    return max((len(h) for h in history.values()), default=None)


def _noise_note(diff: Difference) -> str:
    if diff.se:
        n = min(diff.a.n, diff.b.n)
        return f"{n} seeds: a difference counts when it exceeds {Z:g} standard errors"
    if diff.noise_se:
        return (
            f"one seed: a difference counts when it exceeds {Z:g} standard errors "
            "taken from the seed spread the reference run recorded for this measure "
            "(relative sd x value, n = 1: never laxer than the seeded rule)"
        )
    return (
        "no seed spread for this measure (one seed and none recorded, or seeds "
        f"that agree exactly): a difference counts when it exceeds "
        f"{ONE_SEED_MARGIN:.0%} of the reference"
    )


def _missing(claim: str, title: str, paper: str, what: str, kind: str) -> Verdict:
    evidence = f"{what}: not in this run"
    return Verdict(claim, title, paper, NOT_MEASURABLE, evidence, "", kind)


def _held(count: int) -> str:
    """The verdict when ``count`` of two conditions hold: none, one or both."""
    return (NOT_REPRODUCED, PARTLY, REPRODUCED)[count]


def _difference(
    metrics: Run, reference: Run | None, *paths: tuple[str, ...]
) -> Difference | None:
    """``Difference`` of the measures at two paths, with the reference's spread."""
    a, b = (estimate(metrics, *p) for p in paths)
    if a is None or b is None:
        return None
    return Difference(a, b, tuple(spread(reference, *p) for p in paths))


def claim_loss_halves(
    metrics: Run, split: str = "test_digits", reference: Run | None = None
) -> Verdict:
    """Claim 1: the reconstruction loss (BCE) halves from ``baseline`` to
    ``concept_paper`` on ``split``: ``val`` (each variant's own, the paper's
    setting) is claim ``1a``; ``test_digits`` is this project's test ``1b``."""
    paper_sense = split == "val"
    kind = PAPER_CLAIM if paper_sense else PROJECT_TEST
    where = {"val": "own validation split", "test_digits": "test digits"}[split]
    claim, title = ("1a" if paper_sense else "1b"), f"the loss halves, {where}"
    paper = (
        f"{PAPER['val_loss_without']:g} → {PAPER['val_loss_with']:g} "
        f"(ratio {PAPER_RATIO:.2f}) on its validation split"
        if paper_sense
        else "not claimed: the paper reports its validation split only"
    )
    paths = [("variants", v, split, "recon_bce") for v in ("concept_paper", "baseline")]
    if (diff := _difference(metrics, reference, *paths)) is None:
        what = "recon_bce of baseline, concept_paper"
        return _missing(claim, title, paper, what, kind)
    ratio, bound = diff.a.mean / diff.b.mean, PAPER_RATIO + RATIO_TOLERANCE
    evidence = (
        f"baseline {diff.b.text()} → concept_paper {diff.a.text()} (ratio "
        f"{ratio:.2f}; {diff.text()}); concept_paper trains {RECIPE}"
    )
    rule = f"reproduced: lower and ratio <= {bound:.2f}; partly: lower; "
    rule += _noise_note(diff)
    verdict = NOT_REPRODUCED if diff.sign >= 0 else _held(1 + (ratio <= bound))
    return Verdict(claim, title, paper, verdict, evidence, rule, kind)


def claim_layer3(metrics: Run, reference: Run | None = None) -> Verdict:
    """Claim 2: with the concept loss, layer 3's channels are the concepts, by
    Network Dissection and its control (a random rotation of the channels), once
    ``concept_paper``'s concept accuracy is above ``augmented``'s."""
    claim, title, kind = "2", "layer 3 learns the concepts", PAPER_CLAIM
    paper = "Figures 5 and 6 (pictures of the layer-3 channels)"
    paths = [
        ("variants", v, "test_concepts", "concept_accuracy")
        for v in ("concept_paper", "augmented")
    ]
    diff = _difference(metrics, reference, *paths)
    vocab = ("vocabulary", "concept_paper")
    own = estimate(metrics, *vocab, "dissection", "own")
    rotated = estimate(metrics, *vocab, "dissection_rotated", "own")
    if diff is None or own is None or rotated is None:
        what = "dissection and concept accuracy of concept_paper"
        return _missing(claim, title, paper, what, kind)
    k = len(metrics.get("catalogue", {}).get("names", [])) or 18
    digits = 0 if own.n == 1 else 1
    evidence = (
        f"{RECIPE}: {own.text(digits)} of {k} channels detect their own concept "
        f"(Network Dissection), {rotated.text(digits)} after a random rotation of "
        f"the channels; concept accuracy {diff.a.text(3)} against {diff.b.text(3)} "
        f"without the loss ({diff.text(3)})"
    )
    rule = (
        f"reproduced: >= {k - 1} of {k} channels detect their own concept and <= "
        f"{MAX_ROTATED} after the rotation; partly: more than {k // 2} and <= "
        f"{MAX_ROTATED} after it (means over seeds); both need the concept accuracy "
        f"above augmented's; {_noise_note(diff)}"
    )
    if diff.sign <= 0 or rotated.mean > MAX_ROTATED or own.mean <= k / 2:
        verdict = NOT_REPRODUCED
    elif own.mean >= k - 1:
        verdict = REPRODUCED
    else:
        verdict = PARTLY
        evidence += (
            f": the dissection holds for {own.mean:.0f} of {k} concepts, and the "
            f"rotation control holds ({rotated.mean:.1f} <= {MAX_ROTATED} channels "
            "still detect their concept after the rotation)"
        )
    return Verdict(claim, title, paper, verdict, evidence, rule, kind)


def claim_layer3_shifts(metrics: Run, reference: Run | None = None) -> Verdict:
    """This project's test of claim 2: ``concept_paper``'s layer 3 names concepts
    shifted by 2 px and two concepts at once."""
    claim, title, kind = "2s", "layer 3 names shifted and paired concepts", PROJECT_TEST
    paper = "not claimed: the paper shows isolated concepts only"
    path = ("vocabulary", "concept_paper", "accuracy")
    shift, pairs = estimate(metrics, *path, "shift"), estimate(metrics, *path, "pairs")
    if shift is None or pairs is None:
        return _missing(claim, title, paper, "shift and pair accuracy", kind)
    evidence = f"accuracy under ±2 px shifts {shift.text(3)}, on pairs {pairs.text(3)}"
    rule = (
        f"reproduced: shift >= {SHIFT_ACCURACY:g} and pairs >= {PAIRS_ACCURACY:g} "
        "(means over seeds); partly: one of them; not reproduced: neither"
    )
    verdict = _held((shift.mean >= SHIFT_ACCURACY) + (pairs.mean >= PAIRS_ACCURACY))
    return Verdict(claim, title, paper, verdict, evidence, rule, kind)


def claim_layer3_clusters(metrics: Run, reference: Run | None = None) -> Verdict:
    """Claim 2b: with the concept loss, layer-3 clusters of concept images follow
    the concepts (Figure 5 against 6), in NMI."""
    claim, title = "2b", "layer-3 clusters follow the concepts with the loss"
    paper = "Figure 5 against Figure 6 (pictures)"
    paths = [
        ("clustering", f"layer3_{w}_concept_loss", "nmi") for w in ("with", "without")
    ]
    if (diff := _difference(metrics, reference, *paths)) is None:
        return _missing(claim, title, paper, "layer-3 clustering scores", PAPER_CLAIM)
    evidence = (
        f"NMI {diff.a.text(3)} with the loss, {diff.b.text(3)} without ({diff.text(3)})"
    )
    rule = f"reproduced: NMI higher with the loss; {_noise_note(diff)}"
    verdict = REPRODUCED if diff.sign > 0 else NOT_REPRODUCED
    return Verdict(claim, title, paper, verdict, evidence, rule)


def _purity_claim(metrics: Run, reference: Run | None, clustering: str) -> Verdict:
    """Claims 3 and 4: one label per latent cluster, by the clusters' purity."""
    claim, title, paper = _PURITY_CLAIMS[clustering]
    purity = estimate(metrics, "clustering", clustering, "purity")
    nmi = estimate(metrics, "clustering", clustering, "nmi")
    if purity is None or nmi is None:
        what = f"{clustering} clustering scores"
        return _missing(claim, title, paper, what, PAPER_CLAIM)
    evidence = f"purity {purity.text(3)}, NMI {nmi.text(3)}"
    se = noise_se(purity, spread(reference, "clustering", clustering, "purity"))
    half = Z * se if se else ONE_SEED_MARGIN * abs(purity.mean)
    verdict = _held((purity.mean - half >= PURE) + (purity.mean + half >= MIXED))
    if purity.sd:
        noise = f"{purity.n} seeds: mean ± {Z:g} SE"
    elif se:
        noise = f"one seed: ± {Z:g} SE taken from the reference run's seed spread"
    else:
        noise = f"no recorded seed spread: ± {ONE_SEED_MARGIN:.0%} of the purity"
    rule = (
        f"reproduced: purity >= {PURE:g}; not reproduced: < {MIXED:g}; "
        f"{noise} must lie on one side"
    )
    return Verdict(claim, title, paper, verdict, evidence, rule)


_PURITY_CLAIMS = {
    "digits_latent": ("3", "one digit per latent cluster", "Figure 3"),
    "concepts_latent": ("4", "one concept per latent cluster", "Figure 4"),
}


#: What the recorded learning curves are.
CURVES = (
    "training-loss curves: per-epoch means over each variant's own 70 % training "
    "split (digits only for baseline, digits + concept images for the others); "
    "no validation curve is recorded; -ELBO = recon + KL"
)


def curve(seed: Run, variant: str, measure: str) -> list[float] | None:
    """One seed's per-epoch ``recon`` or ``neg_elbo`` (recon + KL) of ``variant``
    from its ``epochs`` history; None if missing or not finite."""
    rows = seed.get("epochs", {}).get(variant) if isinstance(seed, dict) else None
    if not rows:
        return None
    try:
        values = [r["recon"] + (r["kl"] if measure == "neg_elbo" else 0) for r in rows]
    except (KeyError, TypeError):
        return None
    return values if all(math.isfinite(v) for v in values) else None


@dataclass(frozen=True)
class Reach:
    """When a variant's curve first reaches a target, over seeds."""

    epochs: Estimate  #: first epoch at or below the target (N + 1 if never)
    target: Estimate  #: the target: the final value of the target variant's curve
    never: int  #: seeds whose curve never reached it
    num_epochs: int  #: N, the length of the curves

    def text(self) -> str:
        if self.never == (seeds := self.epochs.n):
            return f"never in {self.num_epochs} epochs"
        never = f", never in {self.never} of {seeds} seeds" if self.never else ""
        return f"epoch {self.epochs.text(1 if seeds > 1 else 0)}{never}"


def epochs_to_reach(
    metrics: Run | None, variant: str, measure: str, target_variant: str = "baseline"
) -> Reach | None:
    """Per seed, the first epoch at which ``variant``'s curve of ``measure`` is at
    or below the final value of ``target_variant``'s curve in the same seed
    (N + 1, and counted in :attr:`Reach.never`, when it never is)."""
    if metrics is None:
        return None
    epochs, targets, never, length = [], [], 0, 0
    for seed in seeds_of(metrics):
        values = curve(seed, variant, measure)
        goal = curve(seed, target_variant, measure)
        if values is None or goal is None:
            return None
        length = max(length, len(values))
        first = next((i + 1 for i, v in enumerate(values) if v <= goal[-1]), None)
        never += first is None
        epochs.append(float(first or len(values) + 1))
        targets.append(goal[-1])
    return Reach(Estimate(tuple(epochs)), Estimate(tuple(targets)), never, length)


def _reach_difference(
    metrics: Run, reference: Run | None, measure: str, other: str
) -> tuple[Reach, Reach, Difference] | None:
    a, b = (epochs_to_reach(metrics, v, measure) for v in ("concept_paper", other))
    if a is None or b is None:
        return None
    ref = [epochs_to_reach(reference, v, measure) for v in ("concept_paper", other)]
    rel = tuple(relative_sd(r.epochs) if r else None for r in ref)
    return a, b, Difference(a.epochs, b.epochs, rel)


def claim_fewer_epochs(
    metrics: Run, reference: Run | None = None, against: str = "baseline"
) -> Verdict:
    """Claim 5: losses at hidden layers train in fewer epochs: the epoch at which
    ``concept_paper`` first reaches the baseline's final training loss (:data:`CURVES`)
    against ``against``'s: ``baseline`` is claim ``5``, ``augmented`` test ``5b``."""
    paper_sense = against == "baseline"
    kind = PAPER_CLAIM if paper_sense else PROJECT_TEST
    claim = "5" if paper_sense else "5b"
    title = "fewer epochs" if paper_sense else "fewer epochs from the concept loss"
    paper = "argued, not measured (section 1)"
    if not paper_sense:
        paper = "not claimed: concept_paper against augmented (same images)"
    faster, parts = [], []
    for measure, name in CURVE_MEASURES.items():
        if (found := _reach_difference(metrics, reference, measure, against)) is None:
            return _missing(claim, title, paper, "learning curves", kind)
        a, b, diff = found
        faster.append(diff.sign < 0)
        parts.append(
            f"{name} {a.target.text()}: concept_paper {a.text()}, {against} "
            f"{b.text()} ({diff.text()})"
        )
    joined = "; ".join(parts)
    evidence = f"first epoch at the baseline's final training {joined} ({CURVES})"
    rule = (
        f"reproduced: concept_paper reaches both in fewer epochs than {against}; "
        f"partly: one of them; never counts as N + 1; {_noise_note(diff)}"
    )
    return Verdict(claim, title, paper, _held(sum(faster)), evidence, rule, kind)


#: Every claim, in the paper's order, each as the paper means it and then this
#: project's tests of it; each is called ``claim(metrics, reference)``.
CLAIMS: tuple[Callable[..., Verdict], ...] = (
    lambda m, r=None: claim_loss_halves(m, "val", r),
    lambda m, r=None: claim_loss_halves(m, "test_digits", r),
    claim_layer3,
    claim_layer3_shifts,
    claim_layer3_clusters,
    lambda m, r=None: _purity_claim(m, r, "digits_latent"),
    lambda m, r=None: _purity_claim(m, r, "concepts_latent"),
    claim_fewer_epochs,
    lambda m, r=None: claim_fewer_epochs(m, r, "augmented"),
)


def judge(metrics: Run, reference: Run | None = None) -> list[Verdict]:
    """Every claim of :data:`CLAIMS` on one run; a one-seed run borrows the seed
    spread of ``reference`` (the recorded quick run). Runs shorter than
    :data:`MIN_EPOCHS` epochs are :data:`NOT_MEASURABLE` throughout."""
    verdicts = [claim(metrics, reference) for claim in CLAIMS]
    epochs = num_epochs(metrics)
    if epochs is not None and epochs < MIN_EPOCHS:
        short = f"trained {plural(epochs, 'epoch')}, fewer than {MIN_EPOCHS}: "
        short += "too short to judge"
        verdicts = [replace(v, verdict=NOT_MEASURABLE, rule=short) for v in verdicts]
    return verdicts


def counts(verdicts: list[Verdict], kind: str | None = None) -> dict[str, int]:
    """How many verdicts (of ``kind``, or all) are each of :data:`VERDICTS`."""
    chosen = [v for v in verdicts if kind is None or v.kind == kind]
    return {name: sum(v.verdict == name for v in chosen) for name in VERDICTS}


def _count_text(verdicts: list[Verdict], kind: str) -> str:
    found = counts(verdicts, kind)
    short = {NOT_MEASURABLE: "not measurable"}
    words = ", ".join(f"{n} {short.get(name, name)}" for name, n in found.items())
    return f"{sum(found.values())} {_KIND_COUNTED[kind]}: {words}"


_KIND_COUNTED = {PAPER_CLAIM: "of the paper's claims", PROJECT_TEST: "project tests"}
_KIND_HEADING = {
    PAPER_CLAIM: "The paper's claims, judged as the paper means them",
    PROJECT_TEST: "This project's stricter tests (not the paper's claims)",
}


def summary(verdicts: list[Verdict]) -> str:
    """One line: reproduced / partly / not / not measurable, the paper's claims
    apart from this project's tests."""
    return "; ".join(_count_text(verdicts, kind) for kind in KINDS)


def _rows(columns: dict[str, list[Verdict]], kind: str) -> list[tuple[int, Verdict]]:
    """The claims of ``kind``: (index, the first run's verdict)."""
    first = next(iter(columns.values()))
    return [(i, v) for i, v in enumerate(first) if v.kind == kind]


def format_markdown(columns: dict[str, list[Verdict]]) -> str:
    """Markdown: the counts per run, then a table of the paper's claims and one
    of this project's tests (a row per claim: the paper, then a column per run)."""
    counted = [
        (name, *(_count_text(vs, kind).split(": ", 1)[1] for kind in KINDS))
        for name, vs in columns.items()
    ]
    heads = [_KIND_HEADING[k] for k in KINDS]
    out = [markdown_table(["run", *heads], counted, "l" * (1 + len(KINDS)))]
    for kind in KINDS:
        rows = [
            (f"{v.claim}. {v.title}", v.paper)
            + tuple(f"**{vs[i].verdict}**: {vs[i].evidence}" for vs in columns.values())
            for i, v in _rows(columns, kind)
        ]
        head = ["claim", "the paper", *columns]
        out += ["", f"**{_KIND_HEADING[kind]}**", ""]
        out.append(markdown_table(head, rows, "l" * len(head)))
    return "\n".join(out)


def format_rules(verdicts: list[Verdict]) -> str:
    """A Markdown list of the rule behind each verdict, the paper's claims first."""
    lines = []
    for kind in KINDS:
        lines.append(f"- {_KIND_HEADING[kind]}:")
        lines += [f"  - **{v.claim}. {v.title}**: {v.rule}" for v in verdicts
                  if v.kind == kind]  # fmt: skip
    return "\n".join(lines)


def format_text(columns: dict[str, list[Verdict]]) -> str:
    """The scorecard for a terminal: the paper's claims, then this project's tests
    (one block per claim, one line per run), then the counts of each run."""
    width = max(len("the paper"), *(len(name) for name in columns))
    lines = []
    for kind in KINDS:
        lines += [f"== {_KIND_HEADING[kind]}", ""]
        for i, v in _rows(columns, kind):
            lines += [f"{v.claim}. {v.title}", f"  {'the paper':<{width}}  {v.paper}"]
            lines += [f"  {name:<{width}}  {vs[i].verdict}: {vs[i].evidence}"
                      for name, vs in columns.items()]  # fmt: skip
            lines.append("")
    lines += [f"{name}: {summary(vs)}" for name, vs in columns.items()]
    return "\n".join(lines)
