"""Sweep of concept-loss candidates: which recipe makes the concept channels a
vocabulary (names that describe and build images).

Writes ``results/sweeps/<profile>/<candidate>-seed<seed>.json`` (``run``),
``results/sweeps/<profile>/sweep.md`` (``table``) and ``choices.json``
(``choose``), in ``--out``.

Each candidate is a variant plus config overrides (for ``concept_paper``,
overrides of its recipe), trained through the same pipeline and run cache as
``conceptlib reproduce`` and measured with the same functions, on the validation
digits (the 30 % of the digit split no variant trains on) and on the test digits:
recon BCE, KL and -ELBO, held-out concept accuracy, the vocabulary probes
(:mod:`conceptlib.measures.vocab`), the own-class share on whole digits and the
meaning-changing edits (:mod:`conceptlib.operators.meaning`), plus its training
time. Every measure block names its ``split`` (``val`` or ``test``).

    # one candidate, one seed (writes <out>/<candidate>-seed<seed>.json)
    python scripts/concept_sweep.py run composite_mu_w100 --profile quick --seed 0
    # every result in <out>, as Markdown tables (mean +- std over seeds)
    python scripts/concept_sweep.py table --out results/sweeps/quick-val
    # the best of each family by sweep.choose (validation columns only)
    python scripts/concept_sweep.py choose --out results/sweeps/quick-val

Candidates share the baseline (the representative images come from it), so run
``baseline`` first; the others can then run side by side (``--threads 1`` each).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from conceptlib.config import load_config
from conceptlib.errors import ConceptlibError
from conceptlib.experiment.pipeline import Pipeline
from conceptlib.experiment.sweep import (
    CANDIDATES,
    ELBO_BUDGET,
    SCORES,
    choose,
    format_sweep,
    gather,
)
from conceptlib.files import atomic_write_text
from conceptlib.model import variants


def _named(block: dict, split: str) -> dict:
    """A measure block with the split it was measured on."""
    return {"split": split, **block}


def run(args: argparse.Namespace) -> None:
    """Train (or load) one candidate and write its measures."""
    torch.set_num_threads(args.threads)
    variant, overrides, about = CANDIDATES[args.candidate]
    # overrides of a variant's fixed recipe (concept_paper) go after that recipe
    recipe = overrides if variants.get(variant).recipe is not None else []
    config_overrides = [] if recipe else overrides
    cfg = load_config(args.profile, [f"seed={args.seed}", *config_overrides, *args.set])
    pipe = Pipeline(
        cfg,
        device=args.device,
        cache_dir=args.cache,
        progress=not args.quiet,
        recipe=recipe,
    )
    t0 = time.perf_counter()
    trained = pipe.run(variant)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = {
        "candidate": args.candidate,
        "variant": variant,
        "overrides": overrides + list(args.set),
        "recipe": recipe,
        "about": about,
        "profile": args.profile,
        "seed": args.seed,
        "threads": args.threads,
        "run": trained.path.name,
        "loaded_from_cache": trained.loaded,
        "train_seconds": sum(h["seconds"] for h in trained.history),
        "wall_seconds": seconds,
        "val_digits": _named(pipe.evaluate(variant, "val_digits"), "val"),
        "val_concepts": _named(pipe.evaluate(variant, "val_concepts"), "val"),
        "val_vocabulary": _named(pipe.vocabulary(variant, "val"), "val"),
        "test_digits": _named(pipe.evaluate(variant, "test_digits"), "test"),
        "test_concepts": _named(pipe.evaluate(variant, "test_concepts"), "test"),
        "vocabulary": _named(pipe.vocabulary(variant, "test"), "test"),
    }
    if variants.get(variant).concept_loss:
        result["val_own_class_share"] = pipe.alignment(variant, "val")["own"]
        result["own_class_share"] = pipe.alignment(variant, "test")["own"]
        result["val_meaning"] = pipe.meaning(variant, "val")
        result["meaning"] = pipe.meaning(variant, "test")
    result["measure_seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.candidate}-seed{args.seed}.json"
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    print(
        f"{args.candidate} seed {args.seed}: train {result['train_seconds']:.0f} s, "
        f"measure {result['measure_seconds']:.0f} s, wrote {path}"
    )


def table(args: argparse.Namespace) -> None:
    """Print (and write ``<out>/sweep.md``) the sweep tables, validation then
    test, mean +- std over seeds."""
    found = gather(args.out)
    text = (
        "Validation digits and probes (split val: the choices read these)\n\n"
        + format_sweep(found, "val")
        + "\n\nTest digits and probes (split test: read once, for the book)\n\n"
        + format_sweep(found, "test")
    )
    print(text)
    atomic_write_text(Path(args.out) / "sweep.md", text + "\n")


def choose_families(args: argparse.Namespace) -> None:
    """Print (and write ``<out>/choices.json``) the best candidate of each family
    by :func:`conceptlib.experiment.sweep.choose`, on the validation columns."""
    found = gather(args.out)
    choices = {}
    for f in args.families:
        try:
            choices[f] = choose(found, f, budget=args.budget, score=args.score)
        except ConceptlibError as exc:
            print(f"{f}: no choice: {exc}")
    for f, c in choices.items():
        s = c["scores"][c["chosen"]]
        print(
            f"{f}: {c['chosen']} (val isolated {s['val_isolated']:.3f}, val pairs "
            f"{s['val_pairs']:.3f}, val -ELBO ratio {s['val_elbo_ratio']:.3f}, "
            f"within budget: {c['within_budget']})"
        )
    atomic_write_text(
        Path(args.out)
        / f"choices{'' if args.score == 'names' else '-' + args.score}.json",
        json.dumps(choices, indent=1) + "\n",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train and measure one candidate")
    r.add_argument("candidate", choices=sorted(CANDIDATES))
    r.add_argument("--profile", default="quick")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--cache", default="runs")
    r.add_argument("--out", default="results/sweeps/quick-val")
    r.add_argument("--threads", type=int, default=torch.get_num_threads())
    r.add_argument("--device", default="auto", help="auto, cpu or cuda")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--quiet", action="store_true")
    t = sub.add_parser("table", help="the sweep table of every result in --out")
    t.add_argument("--out", default="results/sweeps/quick-val")
    c = sub.add_parser("choose", help="the best of each family, on validation data")
    c.add_argument("--out", default="results/sweeps/quick-val")
    c.add_argument("--families", nargs="+", default=["concept", "paper"])
    c.add_argument("--budget", type=float, default=ELBO_BUDGET)
    c.add_argument("--score", choices=SCORES, default="names")
    args = parser.parse_args()
    {"run": run, "table": table, "choose": choose_families}[args.command](args)


if __name__ == "__main__":
    main()
