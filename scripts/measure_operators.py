"""Measure the operators on committed concept checkpoints, without training them.

    python scripts/measure_operators.py results/quick/checkpoints \
        --out results/quick/operators.json

For each concept checkpoint in the folder: removal, addition and composition
success in the concept layer and in the latent
(:func:`conceptlib.operators.evaluate.measure_operators`), on the data of the
checkpoint's own profile; for every checkpoint, under ``formulas``, a logical
formula over concepts for each channel of its concept layer
(:func:`conceptlib.measures.formulas.explain_model`).
The digit classifier is trained once and cached in ``--cache``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from conceptlib.config import CONCEPT_VARIANTS, VARIANTS
from conceptlib.experiment.pipeline import Pipeline
from conceptlib.files import atomic_write_text
from conceptlib.measures.formulas import explain_model, summary
from conceptlib.model.readout import load_concept_model, load_model
from conceptlib.operators.evaluate import measure_operators


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", help="folder of <variant>.pt checkpoints")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument(
        "--cache", default="runs", help="where the classifier is cached"
    )
    args = parser.parse_args()
    out = {}
    for variant in CONCEPT_VARIANTS:
        path = Path(args.checkpoints) / f"{variant}.pt"
        if not path.is_file():
            continue
        cm = load_concept_model(path)
        pipe = Pipeline(cm.cfg, device="cpu", cache_dir=args.cache, progress=True)
        t0 = time.perf_counter()
        out[variant] = measure_operators(cm, pipe)
        out[variant]["seconds"] = time.perf_counter() - t0
        out[variant]["checkpoint"] = str(path)
        out[variant]["seed"] = cm.cfg.seed
        print(variant, json.dumps(out[variant], indent=1), flush=True)
    out["formulas"] = {}
    for variant in VARIANTS:
        path = Path(args.checkpoints) / f"{variant}.pt"
        if not path.is_file():
            continue
        run = load_model(path)
        names = list(run.catalogue.names)
        pipe = Pipeline(run.cfg, device="cpu", cache_dir=args.cache, progress=False)
        found = explain_model(run.model, pipe.probes)
        out["formulas"][variant] = {
            **summary(found, len(names)),
            "channels": [
                {"channel": e.channel, "formula": e.formula.text(names),
                 "iou": e.iou, "single": names[e.single], "single_iou": e.single_iou}
                for e in found
            ],
        }  # fmt: skip
        print(variant, summary(found, len(names)), flush=True)
    atomic_write_text(Path(args.out), json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
