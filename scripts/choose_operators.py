"""Choose two settings of the operators on data the chapter does not report on.

    python scripts/choose_operators.py results/quick/checkpoints --seeds 0 1 2 \
        --out results/quick/operator_choices.json --cache runs

For each seed of the folder's ``concept`` checkpoint (other seeds trained with
its config, only ``seed`` changed, or loaded from ``--cache``):

- *how* :func:`conceptlib.operators.compose` *combines its parts*: digits composed
  from the validation concept images (cut from the validation digits) of each
  class's variant-0 concepts, 100 per class, read by the digit classifier, under
  two rules for the non-concept channels: ``sum``, the parts' departures from the
  blank layer added up (:func:`conceptlib.operators.add`, part by part), and
  ``union``, the departure of largest magnitude (:func:`conceptlib.operators.compose`);
- *what* :func:`conceptlib.operators.evaluate.edit_measures` *adds a concept from*:
  addition success on 1,000 *validation* digits, adding a validation concept image
  of the concept or its prototype (the mean layer of its validation images).

Both choices read validation data only (:mod:`conceptlib.data.splits`): handed test
data, :func:`compose_rates` and :func:`addition_rates` stop with an error.
(How far removal reaches is chosen for each model by
:func:`conceptlib.operators.evaluate.measure_operators` itself, on validation digits.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from conceptlib import operators as op
from conceptlib.data.splits import refuse_test
from conceptlib.experiment.pipeline import Pipeline, seed_model
from conceptlib.files import atomic_write_text
from conceptlib.measures.classifier import predict
from conceptlib.operators.evaluate import (
    ADD_FROM,
    composition_parts,
    edit_measures,
    latent_directions,
    mean_sd,
)

RULES = ("sum", "union")


def validation_concepts(
    pipe: Pipeline, cm, split: str = "val"
) -> tuple[np.ndarray, np.ndarray]:
    """Concept images cut from the ``split`` digits and their concept indices."""
    held = pipe.held_concepts(split)
    return held.x, held.y - cm.catalogue.labels[0]


def compose_rates(
    pipe: Pipeline, cm, per_digit: int, seed: int, split: str = "val"
) -> dict:
    """Share of digits composed from ``split`` concept images read as intended,
    per rule; refuses test data."""
    refuse_test(split, "choose_operators.compose_rates")
    rng = np.random.default_rng(seed)
    k = len(cm.catalogue)
    cx, cy = validation_concepts(pipe, cm, split)
    hc, base = op.read(cm, cx), op.blank(cm)
    read: dict[str, list[np.ndarray]] = {rule: [] for rule in RULES}
    for d, parts, picks in composition_parts(cm.catalogue, cy, per_digit, rng):
        sources = [(hc[p], c) for c, p in zip(parts, picks)]
        summed = base.expand(per_digit, -1, -1, -1)
        for source, c in sources:
            summed = op.add(summed, source, base, c, k, masked=False)
        for rule, layer in zip(RULES, (summed, op.compose(base, sources, k))):
            probs = predict(pipe.digit_classifier, op.render(cm, layer))
            read[rule].append(probs.argmax(1) == d)
    return {rule: float(np.concatenate(r).mean()) for rule, r in read.items()}


def addition_rates(pipe: Pipeline, cm, num: int, seed: int, split: str = "val") -> dict:
    """Addition success on ``num`` ``split`` digits, per source; refuses test data."""
    refuse_test(split, "choose_operators.addition_rates")
    held = pipe.held_digits(split)
    num = min(num, len(held))
    pick = np.random.default_rng([seed, 9]).choice(len(held), num, replace=False)
    train = pipe.train_digits
    sub = train.take(pipe.subsample(len(train)))
    latent = latent_directions(cm, sub.x, sub.y, sub.variants)
    out = {}
    for source in ADD_FROM:
        m = edit_measures(
            cm, (held.x[pick], held.y[pick]), validation_concepts(pipe, cm, split),
            latent,
            pipe.digit_classifier, num, per_digit=1, seed=seed, add_from=source,
        )  # fmt: skip
        out[source] = m["layer"]["addition"]
    return out


def summarise(per_seed: list[dict], keys) -> dict:
    """Mean and sd over seeds of each of ``keys``."""
    return {key: mean_sd([r[key] for r in per_seed]) for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", help="folder with concept.pt")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--per-digit", type=int, default=100)
    parser.add_argument("--edits", type=int, default=1000, help="validation digits")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--cache", default="runs", help="run cache (default runs)")
    args = parser.parse_args()
    compose, add = [], []
    for seed in args.seeds:
        pipe, cm = seed_model(Path(args.checkpoints) / "concept.pt", seed, args.cache)
        compose.append(compose_rates(pipe, cm, args.per_digit, seed))
        add.append(addition_rates(pipe, cm, args.edits, seed))
        print(seed, json.dumps(compose[-1]), json.dumps(add[-1]), flush=True)
    out = {
        "split": "val",
        "seeds": args.seeds,
        "compose": {
            "per_digit": args.per_digit,
            "per_seed": compose,
            "summary": summarise(compose, RULES),
        },
        "add": {
            "digits": args.edits,
            "per_seed": add,
            "summary": summarise(add, ADD_FROM),
        },
    }
    atomic_write_text(Path(args.out), json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
