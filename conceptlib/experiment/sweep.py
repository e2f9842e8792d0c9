"""The sweep of concept-loss candidates: what each is, its table, and the rule
that picks the best of a family on validation data.

A candidate is a variant plus config overrides; ``scripts/concept_sweep.py``
trains and measures it (``results/sweeps/<profile>/<candidate>-seed<n>.json``,
test blocks and ``val_*`` blocks, each naming its ``split``). Families
(:func:`family_of`): ``reference`` (``baseline``, ``augmented``), ``concept``
(this project's recipe; the default is :data:`DEFAULT`) and ``paper``
(overrides applied after :data:`~conceptlib.config.PAPER_RECIPE`: MSE or BCE,
weights 1 to 1000, decoded from ``z`` or ``mu``). See chapter ``ch-vocabulary``.
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
from conceptlib.model import variants
from conceptlib.report.tables import at, markdown_table, plus_minus

#: The candidate whose settings are the config's defaults for ``concept``.
DEFAULT = "composite_mu_w1_union03"

#: Words for the decodings a concept loss reads, and for extra settings.
_DECODE_WORDS = {
    "z": "the decoded sample z",
    "mu": "the decoding of mu",
    "mu_detached": "the decoding of mu, no gradient into the encoder",
}
_EXTRAS = {
    "warm2": ("loss.concept_warmup_epochs=2", "weight warmed up over 2 epochs"),
    "shift2": (
        "concepts.train_shift=2",
        "training concept images shifted by up to 2 px",
    ),
    **{
        f"union{w.replace('.', '')}": (
            f"loss.union_weight={w}",
            f"union term x {w} (a digit's and a concept image's layers "
            "decode to the pixel union)",
        )
        for w in ("0.3", "1", "3")
    },
}
_LOSS_WORDS = {"mse": "MSE (the paper's section 3.4)", "bce": "BCE on the logits"}
Candidate = tuple[str, list[str], str]


def _composite(decode: str, weight: int, extra: str = "") -> tuple[str, Candidate]:
    """A ``concept`` candidate: composites, BCE x ``weight`` on ``decode``."""
    name = f"composite_{decode.replace('_', '')}_w{weight}" + (extra and f"_{extra}")
    overrides = [f"loss.concept_decode={decode}", f"loss.concept_weight={weight}"]
    about = f"composites, BCE x {weight} on {_DECODE_WORDS[decode]}"
    if extra:
        overrides.append(_EXTRAS[extra][0])
        about += f", {_EXTRAS[extra][1]}"
    return name, ("concept", overrides, about)


def _paper(loss: str, decode: str, weight: int) -> tuple[str, Candidate]:
    """A ``paper`` candidate: the paper's recipe, another loss, decoding or weight."""
    overrides = [f"loss.concept_{k}={v}" for k, v in (("loss", loss),
                 ("decode", decode), ("weight", weight))]  # fmt: skip
    about = (
        "the paper's recipe (isolated concepts, exclusive targets), "
        f"{_LOSS_WORDS[loss]} x {weight} on {_DECODE_WORDS[decode]}"
    )
    return f"paper_{loss}_{decode}_w{weight}", ("concept_paper", overrides, about)


#: The paper family's grid: concept loss x weight x decoding (``paper`` itself is
#: BCE x 100 on ``z``, the recipe as first read here).
PAPER_LOSSES = ("mse", "bce")
PAPER_WEIGHTS = (1, 10, 100, 1000)
PAPER_DECODES = ("z", "mu")

# fmt: off
#: The ``concept`` candidates' (decoding, weight, extra setting), in table order.
_COMPOSITES = [
    ("z", 100), ("mu", 100), ("mu_detached", 100), ("mu_detached", 10),
    ("mu", 10, "warm2"), ("mu", 10), ("mu", 1), ("z", 10), ("mu", 10, "shift2"),
    ("z", 1, "shift2"), ("mu", 1, "union03"), ("mu", 1, "union1"), ("mu", 1, "union3"),
]
# fmt: on

#: name -> (variant, overrides, what it tests)
CANDIDATES: dict[str, Candidate] = {
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
    **dict(_composite(*args) for args in _COMPOSITES),
    "composite_mu_mse_w100": (
        "concept",
        ["loss.concept_decode=mu", "loss.concept_loss=mse", "loss.concept_weight=100"],
        "composites, the paper's plain MSE x 100 on the decoding of mu",
    ),
    **dict(
        _paper(loss, decode, weight)
        for loss in PAPER_LOSSES
        for decode in PAPER_DECODES
        for weight in PAPER_WEIGHTS
        if (loss, decode, weight) != ("bce", "z", 100)  # that is ``paper``
    ),
}


def family_of(name: str) -> str:
    """A candidate's variant's family: ``paper``, ``concept`` or ``reference``."""
    return variants.get(CANDIDATES[name][0]).family


def family(name: str) -> list[str]:
    """The candidates of family ``name``, in :data:`CANDIDATES` order."""
    names = [c for c in CANDIDATES if family_of(c) == name]
    if not names:
        known = sorted({family_of(c) for c in CANDIDATES})
        raise ConceptlibError(f"unknown family {name!r} (known: {', '.join(known)})")
    return names


def _meaning(block: str, where: str):
    """Read the mean over a result's meaning-changing edits (``block``) of one
    way of editing (``layer``, ``pixel``...), NaN where not measured."""

    def read(r: dict) -> float:
        rows = [v for v in r.get(block, {}).values() if isinstance(v, dict)]
        return float(np.mean([v[where] for v in rows])) if rows else float("nan")

    return read


#: (column, how to read it from a result, decimals)
COLUMNS = (
    ("recon", lambda r: r["test_digits"]["recon_bce"], 1),
    ("KL", lambda r: r["test_digits"]["kl"], 1),
    ("-ELBO", lambda r: r["test_digits"]["neg_elbo"], 1),
    ("isolated", lambda r: r["vocabulary"]["accuracy"]["isolated"], 3),
    ("jitter 2px", lambda r: r["vocabulary"]["accuracy"]["jitter"], 3),
    ("shift 2px", lambda r: r["vocabulary"]["accuracy"]["shift"], 3),
    ("pairs top-2", lambda r: r["vocabulary"]["accuracy"]["pairs"], 3),
    ("pair IoU", lambda r: r["vocabulary"]["iou"]["pairs"], 3),
    ("own det.", lambda r: r["vocabulary"]["dissection"]["own"], 1),
    ("own det. rotated", lambda r: r["vocabulary"]["dissection_rotated"]["own"], 1),
    ("own-class share", lambda r: r.get("own_class_share", float("nan")), 3),
    ("part hit", lambda r: r["vocabulary"].get("part_hit", float("nan")), 3),
    ("meaning layer", _meaning("meaning", "layer"), 3),
    ("meaning IoU", _meaning("meaning", "iou_layer"), 3),
    ("meaning pixels", _meaning("meaning", "pixel"), 3),
    ("train min", lambda r: r["train_seconds"] / 60, 1),
)


def _val(*path: str):
    """Read ``path`` of a result, NaN where it was not measured."""
    return lambda r: at(r, path, float("nan"))


#: The validation columns, as :data:`COLUMNS`, NaN (a dash) where not measured.
VAL_COLUMNS = (
    ("val recon", _val("val_digits", "recon_bce"), 1),
    ("val KL", _val("val_digits", "kl"), 1),
    ("val -ELBO", _val("val_digits", "neg_elbo"), 1),
    ("val isolated", _val("val_vocabulary", "accuracy", "isolated"), 3),
    ("val jitter 2px", _val("val_vocabulary", "accuracy", "jitter"), 3),
    ("val shift 2px", _val("val_vocabulary", "accuracy", "shift"), 3),
    ("val pairs top-2", _val("val_vocabulary", "accuracy", "pairs"), 3),
    ("val pair IoU", _val("val_vocabulary", "iou", "pairs"), 3),
    ("val meaning layer", _meaning("val_meaning", "layer"), 3),
    ("val meaning IoU", _meaning("val_meaning", "iou_layer"), 3),
    ("val meaning pixels", _meaning("val_meaning", "pixel"), 3),
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


def _cell(values: np.ndarray, digits: int) -> str:
    """Mean (± std with several seeds), a dash where not measured."""
    if np.isnan(values).any():  # not measured for this variant
        return "–"
    sd = values.std(ddof=1) if len(values) > 1 else None
    return plus_minus(values.mean(), sd, digits)


def format_sweep(found: dict[str, list[dict]], split: str = "test") -> str:
    """The sweep as a Markdown table, mean ± std over seeds: :data:`COLUMNS` (test)
    or, ``split="val"``, :data:`VAL_COLUMNS` (what :func:`choose` reads)."""
    columns = {"test": COLUMNS, "val": VAL_COLUMNS}[split]
    rows = [
        [f"**{name}**" if name == DEFAULT else name, str(len(results))]
        + [
            _cell(np.array([read(r) for r in results], dtype=float), digits)
            for _, read, digits in columns
        ]
        for name, results in found.items()
    ]
    return markdown_table(["candidate", "seeds"] + [c[0] for c in columns], rows)


def mean_of(results: list[dict], column: str) -> float:
    """Mean over seeds of one :data:`COLUMNS` or :data:`VAL_COLUMNS` column."""
    read = next(r for name, r, _ in COLUMNS + VAL_COLUMNS if name == column)
    return float(np.mean([read(r) for r in results]))


#: :func:`choose`'s likelihood budget: val -ELBO at most this times the baseline's
#: (:data:`~conceptlib.measures.vocab.ELBO_RATIO_TARGET`).
ELBO_BUDGET = ELBO_RATIO_TARGET

_CHOICE_COLUMNS = ("val -ELBO", "val isolated", "val pairs top-2")


def _val_means(
    results: list[dict], name: str, columns: tuple[str, ...] = _CHOICE_COLUMNS
) -> list[float]:
    """Means over seeds of validation ``columns``; an error unless every
    result's validation blocks name ``split: val``."""
    for r in results:
        for block in VAL_BLOCKS:
            split = r.get(block, {}).get("split") if isinstance(r, dict) else None
            if split != "val":
                raise ConceptlibError(
                    f"candidate {name!r}: result of seed {r.get('seed')} has no "
                    f"validation block {block!r} with split 'val' (found {split!r})"
                )
    values = [mean_of(results, column) for column in columns]
    if nan := [c for c, v in zip(columns, values) if math.isnan(v)]:
        raise ConceptlibError(f"candidate {name!r}: {nan[0]} was not measured")
    return values


#: What :func:`choose` maximises besides val pairs: ``names``, val isolated
#: accuracy; ``edits``, the agreement (mean ink IoU) of the val meaning-changing
#: edits through the layer with the same edits on the pixels, candidates without
#: them left out (their classifier rates also reward a decoder that draws a
#: typical digit instead of the edit).
SCORES = ("names", "edits")
_SCORE_WORDS = {"names": "val isolated", "edits": "val meaning IoU (layer)"}


def _scores(
    found: dict[str, list[dict]], names: list[str], base: float, score: str
) -> dict:
    """Each candidate's validation measures and its ``score`` (:data:`SCORES`)."""
    scores = {}
    for name in names:
        elbo, iso, pairs = _val_means(found[name], name)
        edits = mean_of(found[name], "val meaning IoU")
        scores[name] = {
            "val_neg_elbo": elbo,
            "val_elbo_ratio": elbo / base,
            "val_isolated": iso,
            "val_pairs": pairs,
            "val_meaning_iou": edits,
            "score": (iso if score == "names" else edits) + pairs,
            "seeds": len(found[name]),
        }
    return scores


def _candidates(
    found: dict[str, list[dict]], family_name: str, score: str, baseline: str
) -> list[str]:
    """The candidates of a family :func:`choose` compares under ``score``."""
    if score not in SCORES:
        raise ConceptlibError(f"unknown score {score!r} (known: {', '.join(SCORES)})")
    names = [c for c in family(family_name) if c in found]
    if score == "edits":
        edits = [mean_of(found[n], "val meaning IoU") for n in names]
        names = [n for n, e in zip(names, edits) if not math.isnan(e)]
    if not names:
        raise ConceptlibError(
            f"no results of the {family_name!r} family to choose from"
        )
    if baseline not in found:
        raise ConceptlibError(
            f"no results of {baseline!r}: its val -ELBO sets the budget"
        )
    return names


def choose(
    found: dict[str, list[dict]], family_name: str, budget: float = ELBO_BUDGET,
    baseline: str = "baseline", split: str = "val", score: str = "names",
) -> dict[str, Any]:  # fmt: skip
    """The best candidate of a family in ``found`` (:func:`gather`), on validation
    data only (a ``split`` but ``val`` is refused).

    Of the candidates whose val -ELBO (mean over seeds) is at most ``budget`` times
    the ``baseline``'s, the highest :data:`SCORES` ``score`` + val pairs accuracy;
    ties go to the lower val -ELBO, then to the first in :data:`CANDIDATES`. If
    none keeps within the budget, the lowest val -ELBO (``within_budget`` False).
    Returns ``chosen``, ``family``, ``rule``, ``split``, ``within_budget``,
    ``budget``, ``baseline_val_neg_elbo`` and ``scores`` (by candidate).
    """
    if refuse_test(split, "sweep.choose") != "val":
        raise ConceptlibError(
            f"sweep.choose reads validation data (split 'val'), not {split!r}"
        )
    names = _candidates(found, family_name, score, baseline)
    base = _val_means(found[baseline], baseline, ("val -ELBO",))[0]
    scores = _scores(found, names, base, score)
    within = [n for n in names if scores[n]["val_elbo_ratio"] <= budget]
    rank = {n: (s["score"], -s["val_neg_elbo"]) for n, s in scores.items()}
    best = max(within, key=rank.get) if within else max(names, key=lambda n: rank[n][1])
    return {
        "chosen": best,
        "family": family_name,
        "rule": f"max {_SCORE_WORDS[score]} + val pairs s.t. val -ELBO <= {budget} "
        f"x {baseline}'s; else min val -ELBO",
        "split": "val",
        "within_budget": bool(within),
        "budget": budget,
        "baseline_val_neg_elbo": base,
        "scores": scores,
    }


def summarise(found: dict[str, list[dict]], elbo_bound: float) -> dict[str, object]:
    """What the book says of a sweep's candidates with a concept loss, on validation
    digits (means over seeds): how many (``num_concept``), how many reconstruct
    worse or better than ``baseline`` (``num_recon_costly``, ``_cheaper``), and
    which have a val -ELBO within ``elbo_bound`` times its (``within_bound``,
    comma-separated; ``num_within_bound``)."""
    base = {k: mean_of(found["baseline"], k) for k in ("val recon", "val -ELBO")}
    concept = [
        n for n, r in found.items() if variants.get(r[0]["variant"]).concept_loss
    ]
    recon = [mean_of(found[c], "val recon") for c in concept]
    ratio = {c: mean_of(found[c], "val -ELBO") / base["val -ELBO"] for c in concept}
    within = [c for c in concept if ratio[c] <= elbo_bound]
    return {
        "num_concept": len(concept),
        "num_recon_costly": sum(r > base["val recon"] for r in recon),
        "num_recon_cheaper": sum(r < base["val recon"] for r in recon),
        "within_bound": ", ".join(within) or "none",
        "num_within_bound": len(within),
    }
