"""What limits addition: the pixel reference under other read-outs and placements.

    python scripts/addition_limits.py results/quick/checkpoints/concept.pt \
        --seeds 0 1 2 --out results/quick/addition_limits.json --cache runs

The measured additions (:func:`conceptlib.edits.edit_measures`) succeed when the
added concept enters the top 3 of the re-encoded image, ranked by energy. Their
pixel reference lays the held-out concept image on the digit's pixels (pixel
maximum) and reads the result. This script asks whether that reference is held
back by the read-out or by the placement, on the same edits (same digits, same
concepts, same images; :func:`conceptlib.edits.draw_additions`):

- ``readout``: the same pixel images ranked by other scores of the concept maps:
  ``energy`` (the read-out), ``peak`` (the largest activation), ``area`` (pixels
  above 0.5) and ``winner`` (pixels above 0.5 where the channel is the strongest
  one, so that a look-alike channel cannot claim ink that its own concept's
  channel reads more strongly);
- ``placement``: the image shifted by up to R pixels per axis, to where it
  overlaps the digit's ink least (R = 0 is the reference itself);
- ``rank``: where the added concept lands among the K concepts (energy),
  as a share of the edits per rank.

Each seed other than the checkpoint's is trained first with its stored config
(cached in ``--cache``). Values: shares of the ``eval.num_edits`` test digits.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from conceptlib.edits import TOP, draw_additions
from conceptlib.explain import concept_shares
from conceptlib.files import atomic_write_text
from conceptlib.pipeline import Pipeline
from conceptlib.scorecard import Estimate
from conceptlib.vocab import ON, concept_maps, load_concept_model

#: Largest shifts (px per axis) that placement searches.
REACH = (0, 2, 4)


def scores(maps: np.ndarray) -> dict[str, np.ndarray]:
    """``(N, K, H, W)`` concept maps -> per read-out, ``(N, K)`` scores."""
    m = torch.from_numpy(maps).double()
    flat = m.flatten(2)
    strongest = m.argmax(1, keepdim=True)  # (N, 1, H, W)
    wins = torch.zeros_like(m).scatter_(1, strongest, 1.0) * (m > ON)
    energy = flat.pow(2).sum(2)
    return {
        "energy": energy.numpy(),
        "peak": flat.max(2).values.numpy(),
        # ties between equal areas are broken by energy
        "area": ((flat > ON).sum(2) + 1e-6 * energy).numpy(),
        "winner": (wins.flatten(2).sum(2) + 1e-6 * energy).numpy(),
    }


def in_top(score: np.ndarray, concepts: np.ndarray) -> float:
    """Share of rows whose concept is among the :data:`TOP` highest scores."""
    top = np.argsort(-score, axis=1)[:, :TOP]
    return float((top == concepts[:, None]).any(1).mean())


def place(digits: np.ndarray, images: np.ndarray, reach: int) -> np.ndarray:
    """Each image shifted by at most ``reach`` px per axis to where its ink
    overlaps the digit's ink least (ties: the smallest shift; shifts that push
    more than a tenth of its ink off the image are not taken)."""
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


def measure(cm, pipe) -> dict:
    """The limits of one seed's pixel reference (see the module doc)."""
    e = pipe.cfg.eval
    x, y = pipe.digits[2][: e.num_edits], pipe.digits[3][: e.num_edits]
    tc = pipe.test_concepts
    cx, cy = tc.x, tc.y - cm.catalogue.labels[0]
    rng = np.random.default_rng(pipe.cfg.seed)  # the stream edit_measures draws from
    recon = concept_shares(cm, _render(cm, x))
    added, pick = draw_additions(cm, recon, y, cy, rng, pipe.cfg.seed)
    images = cx[pick]
    pixel = np.maximum(x, images)
    by_score = scores(concept_maps(cm, pixel))
    out = {"readout": {n: in_top(s, added) for n, s in by_score.items()}}
    out["placement"] = {
        str(r): in_top(concept_shares(cm, np.maximum(x, place(x, images, r))), added)
        for r in REACH
    }
    rank = (np.argsort(-by_score["energy"], axis=1) == added[:, None]).argmax(1)
    k = len(cm.catalogue)
    out["rank"] = (np.bincount(rank, minlength=k) / len(rank)).tolist()
    out["edits"] = len(x)
    return out


def _render(cm, x: np.ndarray) -> np.ndarray:
    from conceptlib import operators as op

    return op.render(cm, op.read(cm, x))


def summarise(per_seed: list[dict]) -> dict:
    """Mean and sd over seeds of every ``readout`` and ``placement`` rate."""
    out = {}
    for part in ("readout", "placement"):
        out[part] = {}
        for key in per_seed[0][part]:
            est = Estimate(tuple(s[part][key] for s in per_seed))
            out[part][key] = {"mean": est.mean, "sd": est.sd}
    out["rank"] = np.mean([s["rank"] for s in per_seed], axis=0).tolist()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a concept checkpoint (concept.pt)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--cache", default="runs", help="run cache (default runs)")
    args = parser.parse_args()
    committed = load_concept_model(args.checkpoint)
    per_seed = []
    for seed in args.seeds:
        cfg = dataclasses.replace(committed.cfg, seed=seed)
        pipe = Pipeline(cfg, device="cpu", cache_dir=args.cache, progress=True)
        variant = Path(args.checkpoint).stem  # concept.pt, concept_paper.pt
        cm = committed if seed == committed.cfg.seed else pipe.concept_model(variant)
        measured = measure(cm, pipe)
        measured.update(seed=seed, model=str(cm.path))
        per_seed.append(measured)
        print(seed, measured["readout"], measured["placement"], flush=True)
    out = {"seeds": args.seeds, "per_seed": per_seed, "summary": summarise(per_seed)}
    atomic_write_text(Path(args.out), json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
