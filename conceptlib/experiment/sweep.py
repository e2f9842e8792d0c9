"""The sweep of concept-loss candidates: what each candidate is, its table, and
the rule that picks the best of a family on validation data.

Each candidate is a variant plus config overrides; ``scripts/concept_sweep.py``
trains and measures them through the pipeline (one JSON file per candidate and
seed, ``results/sweeps/<profile>/``), and :func:`format_sweep` tabulates them for
the book. The default ``concept`` recipe is the candidate :data:`DEFAULT`.

Candidates come in families (:func:`family_of`): ``reference`` (``baseline``,
``augmented``), ``concept`` (this project's recipe, overrides of the config) and
``paper`` (the paper's recipe, overrides of ``concept_paper``'s config applied
after :data:`~conceptlib.config.PAPER_RECIPE`: the loss as the paper writes it,
MSE, and the BCE form, weights 1 to 1000, decoded from ``z`` and from ``mu``).
Each result holds test blocks (``test_digits``, ``test_concepts``,
``vocabulary``) and validation blocks (``val_digits``, ``val_concepts``,
``val_vocabulary``), each naming its ``split``; :func:`choose` reads the
validation blocks only.

See: chapter ``ch-vocabulary``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from conceptlib.data.splits import refuse_test
from conceptlib.errors import ConceptlibError
from conceptlib.measures.vocab import ELBO_RATIO_TARGET

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

#: The paper family's grid: concept loss x weight x decoding (``paper`` itself is
#: BCE x 100 on ``z``, the recipe as first read here).
PAPER_LOSSES = ("mse", "bce")
PAPER_WEIGHTS = (1, 10, 100, 1000)
PAPER_DECODES = ("z", "mu")
_LOSS_WORDS = {"mse": "MSE (the paper's section 3.4)", "bce": "BCE on the logits"}
_DECODE_WORDS = {"z": "the decoded sample z", "mu": "the decoding of mu"}


def _paper_grid() -> dict[str, tuple[str, list[str], str]]:
    """The paper family beside ``paper``: every other point of the grid."""
    out = {}
    for loss in PAPER_LOSSES:
        for decode in PAPER_DECODES:
            for weight in PAPER_WEIGHTS:
                if (loss, decode, weight) == ("bce", "z", 100):
                    continue  # that is ``paper``
                out[f"paper_{loss}_{decode}_w{weight}"] = (
                    "concept_paper",
                    [
                        f"loss.concept_loss={loss}",
                        f"loss.concept_decode={decode}",
                        f"loss.concept_weight={weight}",
                    ],
                    f"the paper's recipe (isolated concepts, exclusive targets), "
                    f"{_LOSS_WORDS[loss]} x {weight} on {_DECODE_WORDS[decode]}",
                )
    return out


CANDIDATES.update(_paper_grid())

#: Family of each variant's candidates (see :func:`family_of`).
FAMILIES = {"concept": "concept", "concept_paper": "paper"}


def family_of(name: str) -> str:
    """``paper`` (overrides of ``concept_paper``), ``concept`` (overrides of the
    ``concept`` variant) or ``reference`` (``baseline``, ``augmented``)."""
    return FAMILIES.get(CANDIDATES[name][0], "reference")


def family(name: str) -> list[str]:
    """The candidates of family ``name``, in :data:`CANDIDATES` order."""
    names = [c for c in CANDIDATES if family_of(c) == name]
    if not names:
        known = sorted({family_of(c) for c in CANDIDATES})
        raise ConceptlibError(f"unknown family {name!r} (known: {', '.join(known)})")
    return names


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


def _at(r: dict, *path: str) -> Any:
    """The value at ``path`` in a result, NaN where it was not measured."""
    node: Any = r
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return float("nan")
        node = node[key]
    return node


#: The validation columns: (column, how to read it from a result, format). Each
#: reads a block that names ``split: val`` (results older than the validation
#: blocks give NaN, shown as a dash).
VAL_COLUMNS = (
    ("val recon", lambda r: _at(r, "val_digits", "recon_bce"), "{:.1f}"),
    ("val KL", lambda r: _at(r, "val_digits", "kl"), "{:.1f}"),
    ("val -ELBO", lambda r: _at(r, "val_digits", "neg_elbo"), "{:.1f}"),
    (
        "val isolated",
        lambda r: _at(r, "val_vocabulary", "accuracy", "isolated"),
        "{:.3f}",
    ),
    (
        "val jitter 2px",
        lambda r: _at(r, "val_vocabulary", "accuracy", "jitter"),
        "{:.3f}",
    ),
    (
        "val shift 2px",
        lambda r: _at(r, "val_vocabulary", "accuracy", "shift"),
        "{:.3f}",
    ),
    (
        "val pairs top-2",
        lambda r: _at(r, "val_vocabulary", "accuracy", "pairs"),
        "{:.3f}",
    ),
    ("val pair IoU", lambda r: _at(r, "val_vocabulary", "iou", "pairs"), "{:.3f}"),
)

#: The blocks of a result that the validation columns read.
VAL_BLOCKS = ("val_digits", "val_vocabulary")


def gather(out: str | Path) -> dict[str, list[dict]]:
    """``{candidate: [result per seed]}`` of every result file in ``out``."""
    found: dict[str, list[dict]] = {}
    for path in sorted(Path(out).glob("*-seed*.json")):
        r = json.loads(path.read_text())
        found.setdefault(r["candidate"], []).append(r)
    return {name: found[name] for name in CANDIDATES if name in found}


def format_sweep(found: dict[str, list[dict]], split: str = "test") -> str:
    """The sweep as a Markdown table: mean ± std over seeds (std with several).

    ``split="test"``: the test columns (:data:`COLUMNS`); ``split="val"``: the
    validation columns (:data:`VAL_COLUMNS`), what :func:`choose` reads.
    """
    columns = {"test": COLUMNS, "val": VAL_COLUMNS}[split]
    head = ["candidate", "seeds"] + [c[0] for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name, results in found.items():
        cells = [f"**{name}**" if name == DEFAULT else name, str(len(results))]
        for _, read, fmt in columns:
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
    """Mean over seeds of one :data:`COLUMNS` or :data:`VAL_COLUMNS` entry of a
    candidate's results."""
    read = next(r for name, r, _ in COLUMNS + VAL_COLUMNS if name == column)
    return float(np.mean([read(r) for r in results]))


#: :func:`choose`'s likelihood budget: val -ELBO at most this times the baseline's
#: (the vocabulary's likelihood target,
#: :data:`~conceptlib.measures.vocab.ELBO_RATIO_TARGET`).
ELBO_BUDGET = ELBO_RATIO_TARGET


def _val_mean(results: list[dict], column: str, name: str) -> float:
    """Mean over seeds of a validation column; an error unless every result's
    validation blocks name ``split: val``."""
    for r in results:
        for block in VAL_BLOCKS:
            split = r.get(block, {}).get("split") if isinstance(r, dict) else None
            if split != "val":
                raise ConceptlibError(
                    f"candidate {name!r}: result of seed {r.get('seed')} has no "
                    f"validation block {block!r} with split 'val' (found {split!r})"
                )
    value = mean_of(results, column)
    if math.isnan(value):
        raise ConceptlibError(f"candidate {name!r}: {column} was not measured")
    return value


def choose(
    found: dict[str, list[dict]],
    family_name: str,
    budget: float = ELBO_BUDGET,
    baseline: str = "baseline",
    split: str = "val",
) -> dict[str, Any]:
    """The best candidate of a family, by a rule that reads validation data only.

    Rule: among the family's candidates in ``found`` (means over their seeds),
    keep those whose validation-digit -ELBO is at most ``budget`` (1.05,
    :data:`ELBO_BUDGET`) times
    the ``baseline`` candidate's validation-digit -ELBO; of those, pick the
    highest sum of validation-probe accuracies *isolated + pairs (top-2)*; ties go
    to the lower validation -ELBO, then to the first in :data:`CANDIDATES`. If no
    candidate keeps within the budget, pick the one of lowest validation -ELBO
    (``within_budget`` is then False). Only the ``val_digits`` and
    ``val_vocabulary`` blocks are read, and each must say ``split: val``.

    Args:
        found: ``{candidate: [result per seed]}`` (see :func:`gather`).
        family_name: ``paper`` or ``concept`` (see :func:`family_of`).
        budget: the likelihood budget, as a ratio to the baseline's val -ELBO.
        baseline: the candidate whose val -ELBO sets the budget.
        split: the split the choice reads; anything but ``val`` is refused
            (``test`` above all: test data are read once, for the reported numbers).

    Returns:
        ``{"chosen", "family", "rule", "split", "within_budget", "budget",
        "baseline_val_neg_elbo", "scores": {candidate: {"val_neg_elbo",
        "val_elbo_ratio", "val_isolated", "val_pairs", "score", "seeds"}}}``.

    Raises:
        ConceptlibError: on test data, an unknown family, no measured candidate
            of the family or of the baseline, or a result without validation blocks.
    """
    refuse_test(split, "sweep.choose")
    if split != "val":
        raise ConceptlibError(
            f"sweep.choose reads validation data (split 'val'), not {split!r}"
        )
    names = [c for c in family(family_name) if c in found]
    if not names:
        raise ConceptlibError(
            f"no results of the {family_name!r} family to choose from"
        )
    if baseline not in found:
        raise ConceptlibError(
            f"no results of {baseline!r}: its val -ELBO sets the budget"
        )
    base = _val_mean(found[baseline], "val -ELBO", baseline)
    scores = {}
    for name in names:
        elbo = _val_mean(found[name], "val -ELBO", name)
        iso = _val_mean(found[name], "val isolated", name)
        pairs = _val_mean(found[name], "val pairs top-2", name)
        scores[name] = {
            "val_neg_elbo": elbo,
            "val_elbo_ratio": elbo / base,
            "val_isolated": iso,
            "val_pairs": pairs,
            "score": iso + pairs,
            "seeds": len(found[name]),
        }
    within = [n for n in names if scores[n]["val_elbo_ratio"] <= budget]
    if within:
        chosen = max(
            within,
            key=lambda n: (scores[n]["score"], -scores[n]["val_neg_elbo"]),
        )
    else:
        chosen = min(names, key=lambda n: scores[n]["val_neg_elbo"])
    return {
        "chosen": chosen,
        "family": family_name,
        "rule": f"max val isolated + val pairs s.t. val -ELBO <= {budget} x "
        f"{baseline}'s; else min val -ELBO",
        "split": "val",
        "within_budget": bool(within),
        "budget": budget,
        "baseline_val_neg_elbo": base,
        "scores": scores,
    }


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
