"""Sweep of concept-loss candidates: which recipe makes the concept channels a
vocabulary (names that describe and build images).

Each candidate is a variant plus config overrides, trained through the same
pipeline and run cache as ``conceptlib reproduce`` and measured with the same
functions: test-digit recon BCE, KL and -ELBO, held-out concept accuracy, the
vocabulary probes (:mod:`conceptlib.vocab`) and the own-class share on whole test
digits, plus its training time.

    # one candidate, one seed (writes <out>/<candidate>-seed<seed>.json)
    python scripts/concept_sweep.py run composite_mu_w100 --profile quick --seed 0
    # every result in <out>, as a Markdown table (mean +- std over seeds)
    python scripts/concept_sweep.py table --out results/sweeps/quick

Candidates share the baseline (the representative images come from it), so run
``baseline`` first; the others can then run side by side (``--threads 1`` each).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from conceptlib.config import CONCEPT_VARIANTS, load_config
from conceptlib.files import atomic_write_text
from conceptlib.pipeline import Pipeline
from conceptlib.sweep import CANDIDATES, format_sweep, gather


def run(args: argparse.Namespace) -> None:
    """Train (or load) one candidate and write its measures."""
    torch.set_num_threads(args.threads)
    variant, overrides, about = CANDIDATES[args.candidate]
    cfg = load_config(args.profile, [f"seed={args.seed}", *overrides, *args.set])
    pipe = Pipeline(cfg, cache_dir=args.cache, progress=not args.quiet)
    t0 = time.perf_counter()
    trained = pipe.run(variant)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = {
        "candidate": args.candidate,
        "variant": variant,
        "overrides": overrides + list(args.set),
        "about": about,
        "profile": args.profile,
        "seed": args.seed,
        "threads": args.threads,
        "run": trained.path.name,
        "loaded_from_cache": trained.loaded,
        "train_seconds": sum(h["seconds"] for h in trained.history),
        "wall_seconds": seconds,
        "test_digits": pipe.evaluate(variant, "test_digits"),
        "test_concepts": pipe.evaluate(variant, "test_concepts"),
        "vocabulary": pipe.vocabulary(variant),
    }
    if variant in CONCEPT_VARIANTS:
        result["own_class_share"] = pipe.alignment(variant)["own"]
    result["measure_seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.candidate}-seed{args.seed}.json"
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


def table(args: argparse.Namespace) -> None:
    """Print (and write ``<out>/sweep.md``) the sweep table, mean +- std over seeds."""
    text = format_sweep(gather(args.out))
    print(text)
    atomic_write_text(Path(args.out) / "sweep.md", text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train and measure one candidate")
    r.add_argument("candidate", choices=sorted(CANDIDATES))
    r.add_argument("--profile", default="quick")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--cache", default="runs")
    r.add_argument("--out", default="results/sweeps/quick")
    r.add_argument("--threads", type=int, default=torch.get_num_threads())
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--quiet", action="store_true")
    t = sub.add_parser("table", help="the sweep table of every result in --out")
    t.add_argument("--out", default="results/sweeps/quick")
    args = parser.parse_args()
    run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    main()
