"""What limits addition: its pixel reference under other read-outs and placements.

An addition succeeds when the added concept enters the top 3 (by energy) of the
re-encoded image; its pixel reference lays the held-out concept image on the digit
(pixel maximum). :func:`addition_limits` asks, on the very edits of
:func:`~conceptlib.operators.evaluate.edit_measures`, whether the read-out or the
placement holds that reference back: ``readout``, the pixel images ranked by other
scores of the maps (:data:`READOUTS`); ``placement``, the image moved up to R px per
axis to where it overlaps the digit's ink least (R in :data:`REACH`; 0: as cut);
``rank``, the share of the edits whose added concept lands at each energy rank.
See chapter ``ch-operators``, ``scripts/addition_limits.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage

from conceptlib import operators as op
from conceptlib.measures.explain import concept_shares
from conceptlib.measures.vocab import ON, top_k
from conceptlib.measures.vocab import energy as concept_energy
from conceptlib.model.readout import ConceptModel, concept_maps
from conceptlib.operators.evaluate import TOP, draw_additions, in_top
from conceptlib.report.stats import mean_sd, rate_text
from conceptlib.report.tables import markdown_table

#: Scores that rank the concepts of an image, from its concept maps.
READOUTS = {
    "energy": "energy (the read-out)",
    "peak": "largest activation",
    "area": "pixels above 0.5",
    "winner": "pixels above 0.5 where the concept is the strongest",
}
#: Largest shifts (px per axis) that the placement searches.
REACH = (0, 2, 4)


def readout_scores(maps: np.ndarray) -> dict[str, np.ndarray]:
    """``(N, K, H, W)`` concept maps -> ``(N, K)`` scores per :data:`READOUTS`.
    ``winner``: a look-alike channel cannot claim ink that another reads more
    strongly. The energy breaks ties of the two counts."""
    m = torch.from_numpy(maps).double()
    flat = m.flatten(2)
    strongest = m.argmax(1, keepdim=True)  # (N, 1, H, W)
    wins = torch.zeros_like(m).scatter_(1, strongest, 1.0) * (m > ON)
    energy = concept_energy(m)
    return {
        "energy": energy.numpy(),
        "peak": flat.max(2).values.numpy(),
        "area": ((flat > ON).sum(2) + 1e-6 * energy).numpy(),
        "winner": (wins.flatten(2).sum(2) + 1e-6 * energy).numpy(),
    }


def place_apart(digits: np.ndarray, images: np.ndarray, reach: int) -> np.ndarray:
    """Each of the ``(N, 28, 28)`` uint8 ``images`` shifted by at most ``reach`` px
    per axis to where its ink overlaps its digit's ink least (ties: the smallest
    shift); no shift that pushes more than a tenth of its ink off the image."""
    best = images.copy()
    cost = np.full(len(images), np.inf)
    ink = (images > 127).sum((1, 2))
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            moved = ndimage.shift(images, (0, dy, dx), order=0, cval=0)
            kept = (moved > 127).sum((1, 2)) >= 0.9 * ink
            overlap = ((moved > 127) & (digits > 127)).sum((1, 2))
            c = np.where(kept, overlap + 0.01 * (dy * dy + dx * dx), np.inf)
            better = c < cost
            best[better], cost[better] = moved[better], c[better]
    return best


def addition_limits(cm: ConceptModel, pipe) -> dict[str, Any]:
    """The limits of ``cm``'s pixel reference of addition (module doc) on the
    ``eval.num_edits`` test digits of a :class:`~conceptlib.experiment.pipeline.
    Pipeline` of ``cm``'s profile and seed, adding its held-out concept images as
    :func:`~conceptlib.operators.evaluate.edit_measures` does."""
    num, seed, tc = pipe.cfg.eval.num_edits, pipe.cfg.seed, pipe.test_concepts
    x, y = pipe.digits[2][:num], pipe.digits[3][:num]
    shares = concept_shares(cm, op.render(cm, op.read(cm, x)))
    rng = np.random.default_rng(seed)  # edit_measures' stream
    concept_of = tc.y - cm.catalogue.labels[0]
    added, pick = draw_additions(cm, shares, y, concept_of, rng, seed)
    images = tc.x[pick]
    scores = readout_scores(concept_maps(cm, np.maximum(x, images)))
    out: dict[str, Any] = {
        "readout": {name: float(in_top(s, added).mean()) for name, s in scores.items()},
        "placement": {},
    }
    for r in REACH:
        placed = concept_shares(cm, np.maximum(x, place_apart(x, images, r)))
        out["placement"][str(r)] = float(in_top(placed, added).mean())
    rank = (top_k(scores["energy"]) == added[:, None]).argmax(1)
    out["rank"] = (np.bincount(rank, minlength=len(cm.catalogue)) / len(rank)).tolist()
    out["edits"] = len(x)
    return out


def summarise_limits(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample sd over seeds of every ``readout`` and ``placement``
    rate, and the mean share per ``rank``."""
    out: dict[str, Any] = {
        part: {
            key: mean_sd([s[part][key] for s in per_seed]) for key in per_seed[0][part]
        }
        for part in ("readout", "placement")
    }
    out["rank"] = np.mean([s["rank"] for s in per_seed], axis=0).tolist()
    return out


def format_limits(summary: dict[str, Any]) -> str:
    """A Markdown table of :func:`summarise_limits`: the pixel reference under
    each read-out and each placement."""
    rows = [(f"score: {READOUTS[n]}", r) for n, r in summary["readout"].items()]
    rows += [(f"placed: shifted up to {n} px" if n != "0" else "placed: as cut", r)
             for n, r in summary["placement"].items()]  # fmt: skip
    rows = [(label, rate_text(r)) for label, r in rows]
    return markdown_table(("pixel reference", "into the top 3"), rows, "lr")


def limit_findings(summary: dict[str, Any]) -> dict[str, Any]:
    """What :func:`summarise_limits` says, for the book's prose: does another
    read-out name the added concept more often than the energy (``score_said``), is
    the farthest placement harder or easier (``placed_said``), the shares landing in
    the top 3 and at rank 4 or 5 (``rank_top3``, ``rank_4_5``, ``near_ranks``), and
    the shifts tried beyond none (``placements``)."""
    energy = summary["readout"]["energy"]["mean"]
    best, name = max(
        (r["mean"], n) for n, r in summary["readout"].items() if n != "energy"
    )
    if best <= energy:
        score = ("no other score of the maps names the added concept more often "
                 f"than the energy does (at best {best:.3f}, {READOUTS[name]}, "
                 f"against {energy:.3f})")  # fmt: skip
    else:
        score = (f"another score, {READOUTS[name]}, names it more often "
                 f"({best:.3f} against {energy:.3f} for the energy)")  # fmt: skip
    far = max(summary["placement"], key=int)
    placed = summary["placement"][far]["mean"]
    word = "harder" if placed < energy else "easier"
    rank = summary["rank"]
    return {
        "score_said": score,
        "placed_said": f"{word} to name ({placed:.3f} when shifted up to {far} px)",
        "rank_top3": float(sum(rank[:TOP])),
        "rank_4_5": float(sum(rank[TOP : TOP + 2])),
        "near_ranks": f"{TOP + 1} or {TOP + 2}",
        "placements": " or ".join(p for p in sorted(summary["placement"], key=int)[1:]),
    }


def addition_per_concept(
    per_seed: list[dict[str, Any]], where: str
) -> dict[int, float]:
    """Addition success per added concept index, the mean over the seeds that added
    it, from :func:`~conceptlib.operators.evaluate.measure_operators` of several
    seeds (``where``: ``layer``, ``latent`` or ``pixel``)."""
    rates: dict[int, list[float]] = {}
    for measured in per_seed:
        for key, value in measured[where].items():
            if key.startswith("addition_"):
                rates.setdefault(int(key.removeprefix("addition_")), []).append(value)
    return {c: float(np.mean(v)) for c, v in sorted(rates.items())}
