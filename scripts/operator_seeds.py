"""Measure the operators over seeds, from a folder of committed checkpoints.

    python scripts/operator_seeds.py results/quick/checkpoints --seeds 0 1 2 \
        --out results/quick/operators_seeds.json --cache runs

For each concept checkpoint in the folder (``concept.pt``, ``concept_paper.pt``):
the checkpoint's own seed is measured on the checkpoint itself; every other seed
is trained first with the checkpoint's stored config, only ``seed`` changed
(cached in ``--cache``, so an interrupted run resumes). Each seed is measured
with :func:`conceptlib.operators.evaluate.measure_operators` (its own latent
baseline, the strongest on its validation digits, and the meaning-changing
edits), and the file holds the per-seed measures and their mean and sample
standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from conceptlib.config import CONCEPT_VARIANTS
from conceptlib.experiment.pipeline import seed_model
from conceptlib.files import atomic_write_text
from conceptlib.operators.evaluate import measure_operators, summarise_seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", help="folder of <variant>.pt checkpoints")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--cache", default="runs", help="run cache (default runs)")
    args = parser.parse_args()
    out: dict = {"seeds": args.seeds, "per_seed": {}, "summary": {}}
    for variant in CONCEPT_VARIANTS:
        path = Path(args.checkpoints) / f"{variant}.pt"
        if not path.is_file():
            continue
        out["per_seed"][variant] = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            pipe, cm = seed_model(path, seed, args.cache, variant)
            measured = measure_operators(cm, pipe)
            measured.update(
                seed=seed, model=str(cm.path), seconds=time.perf_counter() - t0
            )
            out["per_seed"][variant].append(measured)
            print(variant, seed, json.dumps(measured["layer"]), flush=True)
        out["summary"][variant] = summarise_seeds(out["per_seed"][variant])
        atomic_write_text(Path(args.out), json.dumps(out, indent=1) + "\n")
    atomic_write_text(Path(args.out), json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
