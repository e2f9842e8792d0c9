"""The sweep of concept-loss candidates: what each candidate is, and its table.

Each candidate is a variant plus config overrides; ``scripts/concept_sweep.py``
trains and measures them through the pipeline (one JSON file per candidate and
seed, ``results/sweeps/<profile>/``), and :func:`format_sweep` tabulates them for
the book. The default ``concept`` recipe is the candidate :data:`DEFAULT`.

See: chapter ``ch-vocabulary``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: The candidate whose settings are the config's defaults for ``concept``.
DEFAULT = "composite_mu_w1"

#: name -> (variant, overrides, what it tests)
CANDIDATES: dict[str, tuple[str, list[str], str]] = {
    "baseline": ("baseline", [], "digits only: the likelihood reference"),
    "augmented": ("augmented", [], "digits + concepts, no concept loss"),
    "paper": (
        "concept_paper",
        [],
        "the paper's recipe as read here: isolated concepts, exclusive targets, "
        "BCE x 100 on the decoded sample z",
    ),
    "isolated_mu_w100": (
        "concept",
        ["concepts.composite_fraction=0", "loss.concept_decode=mu"],
        "isolated concepts, BCE x 100 on the decoding of mu",
    ),
    "composite_z_w100": (
        "concept",
        ["loss.concept_decode=z", "loss.concept_weight=100"],
        "composites, BCE x 100 on the decoded sample z",
    ),
    "composite_mu_w100": (
        "concept",
        ["loss.concept_decode=mu", "loss.concept_weight=100"],
        "composites, BCE x 100 on the decoding of mu",
    ),
    "composite_mudetached_w100": (
        "concept",
        ["loss.concept_decode=mu_detached", "loss.concept_weight=100"],
        "composites, BCE x 100 on the decoding of mu, no gradient into the encoder",
    ),
    "composite_mudetached_w10": (
        "concept",
        ["loss.concept_decode=mu_detached", "loss.concept_weight=10"],
        "composites, BCE x 10 on the decoding of mu, no gradient into the encoder",
    ),
    "composite_mu_w10_warm2": (
        "concept",
        [
            "loss.concept_decode=mu",
            "loss.concept_weight=10",
            "loss.concept_warmup_epochs=2",
        ],
        "composites, BCE x 10 on the decoding of mu, weight warmed up over 2 epochs",
    ),
    "composite_mu_w10": (
        "concept",
        ["loss.concept_decode=mu", "loss.concept_weight=10"],
        "composites, BCE x 10 on the decoding of mu",
    ),
    "composite_mu_w1": (
        "concept",
        ["loss.concept_decode=mu", "loss.concept_weight=1"],
        "composites, BCE x 1 on the decoding of mu",
    ),
    "composite_z_w10": (
        "concept",
        ["loss.concept_decode=z", "loss.concept_weight=10"],
        "composites, BCE x 10 on the decoded sample z",
    ),
    "composite_mu_w10_shift2": (
        "concept",
        ["loss.concept_decode=mu", "loss.concept_weight=10", "concepts.train_shift=2"],
        "composites, BCE x 10 on the decoding of mu, training concept images shifted "
        "by up to 2 px",
    ),
    "composite_z_w1_shift2": (
        "concept",
        ["loss.concept_decode=z", "loss.concept_weight=1", "concepts.train_shift=2"],
        "composites, BCE x 1 on the decoded sample z, training concept images "
        "shifted by up to 2 px",
    ),
    "composite_mu_mse_w100": (
        "concept",
        ["loss.concept_decode=mu", "loss.concept_loss=mse", "loss.concept_weight=100"],
        "composites, the paper's plain MSE x 100 on the decoding of mu",
    ),
}


#: (column, how to read it from a result, format)
COLUMNS = (
    ("recon", lambda r: r["test_digits"]["recon_bce"], "{:.1f}"),
    ("KL", lambda r: r["test_digits"]["kl"], "{:.1f}"),
    ("-ELBO", lambda r: r["test_digits"]["neg_elbo"], "{:.1f}"),
    ("isolated", lambda r: r["vocabulary"]["accuracy"]["isolated"], "{:.3f}"),
    ("jitter 2px", lambda r: r["vocabulary"]["accuracy"]["jitter"], "{:.3f}"),
    ("shift 2px", lambda r: r["vocabulary"]["accuracy"]["shift"], "{:.3f}"),
    ("pairs top-2", lambda r: r["vocabulary"]["accuracy"]["pairs"], "{:.3f}"),
    ("pair IoU", lambda r: r["vocabulary"]["iou"]["pairs"], "{:.3f}"),
    ("own det.", lambda r: r["vocabulary"]["dissection"]["own"], "{:.1f}"),
    (
        "own det. rotated",
        lambda r: r["vocabulary"]["dissection_rotated"]["own"],
        "{:.1f}",
    ),
    ("own-class share", lambda r: r.get("own_class_share", float("nan")), "{:.3f}"),
    ("part hit", lambda r: r["vocabulary"].get("part_hit", float("nan")), "{:.3f}"),
    ("train min", lambda r: r["train_seconds"] / 60, "{:.1f}"),
)


def gather(out: str | Path) -> dict[str, list[dict]]:
    """``{candidate: [result per seed]}`` of every result file in ``out``."""
    found: dict[str, list[dict]] = {}
    for path in sorted(Path(out).glob("*-seed*.json")):
        r = json.loads(path.read_text())
        found.setdefault(r["candidate"], []).append(r)
    return {name: found[name] for name in CANDIDATES if name in found}


def format_sweep(found: dict[str, list[dict]]) -> str:
    """The sweep as a Markdown table: mean ± std over seeds (std with several)."""
    head = ["candidate", "seeds"] + [c[0] for c in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name, results in found.items():
        cells = [f"**{name}**" if name == DEFAULT else name, str(len(results))]
        for _, read, fmt in COLUMNS:
            values = np.array([read(r) for r in results], dtype=float)
            if np.isnan(values).any():  # not measured for this variant
                cells.append("–")
                continue
            cell = fmt.format(values.mean())
            if len(values) > 1:
                cell += " ± " + fmt.format(values.std(ddof=1))
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_of(results: list[dict], column: str) -> float:
    """Mean over seeds of one :data:`COLUMNS` entry of a candidate's results."""
    read = next(r for name, r, _ in COLUMNS if name == column)
    return float(np.mean([read(r) for r in results]))


def summarise(found: dict[str, list[dict]], elbo_bound: float) -> dict[str, object]:
    """What the book says about a sweep, computed from its results (means over seeds).

    Returns the number of candidates with a concept loss (``num_concept``), how many
    of them reconstruct the test digits worse than ``baseline`` (``num_recon_costly``)
    and how many better (``num_recon_cheaper``), and the names of those whose
    test-digit -ELBO is at most ``elbo_bound`` times the baseline's
    (``within_bound``, a comma-separated string, and ``num_within_bound``).
    """
    base = found["baseline"]
    concept = [
        name
        for name, results in found.items()
        if results[0]["variant"] in ("concept", "concept_paper")
    ]
    recon = {c: mean_of(found[c], "recon") for c in concept}
    ratio = {c: mean_of(found[c], "-ELBO") / mean_of(base, "-ELBO") for c in concept}
    within = [c for c in concept if ratio[c] <= elbo_bound]
    return {
        "num_concept": len(concept),
        "num_recon_costly": sum(r > mean_of(base, "recon") for r in recon.values()),
        "num_recon_cheaper": sum(r < mean_of(base, "recon") for r in recon.values()),
        "within_bound": ", ".join(within) or "none",
        "num_within_bound": len(within),
    }
