"""What limits addition: the pixel reference under other read-outs and placements.

    python scripts/addition_limits.py results/quick/checkpoints/concept.pt \
        --seeds 0 1 2 --out results/quick/addition_limits.json --cache runs

For each seed, :func:`conceptlib.operators.limits.addition_limits` of the checkpoint's
variant: the pixel reference of its additions ranked by other scores of the
concept maps, with the added image moved off the digit's ink, and the rank the
added concept reaches (see :mod:`conceptlib.operators.limits`). The checkpoint's
own seed is measured on the checkpoint; every other seed is trained first with its
stored config, only the seed changed (cached in ``--cache``). Values: shares of the
``eval.num_edits`` test digits; ``summary``: mean and sd over the seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from conceptlib.experiment.pipeline import seed_model
from conceptlib.files import atomic_write_text
from conceptlib.operators.limits import addition_limits, summarise_limits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a concept checkpoint (concept.pt)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--cache", default="runs", help="run cache (default runs)")
    args = parser.parse_args()
    per_seed = []
    for seed in args.seeds:
        pipe, cm = seed_model(args.checkpoint, seed, args.cache)
        measured = addition_limits(cm, pipe)
        measured.update(seed=seed, model=str(cm.path))
        per_seed.append(measured)
        print(seed, measured["readout"], measured["placement"], flush=True)
    out = {
        "seeds": args.seeds,
        "per_seed": per_seed,
        "summary": summarise_limits(per_seed),
    }
    atomic_write_text(Path(args.out), json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
