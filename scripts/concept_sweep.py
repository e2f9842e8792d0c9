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

import numpy as np
import torch

from conceptlib.config import CONCEPT_VARIANTS, load_config
from conceptlib.pipeline import Pipeline
from conceptlib.train import atomic_write_text

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
    ("own det. rotated", lambda r: r["vocabulary"]["dissection_rotated"]["own"],
     "{:.1f}"),
    ("own-class share", lambda r: r.get("own_class_share", float("nan")), "{:.3f}"),
    ("part hit", lambda r: r["vocabulary"].get("part_hit", float("nan")), "{:.3f}"),
    ("train min", lambda r: r["train_seconds"] / 60, "{:.1f}"),
)


def gather(out: Path) -> dict[str, list[dict]]:
    """``{candidate: [result per seed]}`` of every result file in ``out``."""
    found: dict[str, list[dict]] = {}
    for path in sorted(out.glob("*-seed*.json")):
        r = json.loads(path.read_text())
        found.setdefault(r["candidate"], []).append(r)
    return {name: found[name] for name in CANDIDATES if name in found}


def table(args: argparse.Namespace) -> None:
    """Print (and write ``<out>/sweep.md``) the sweep table, mean +- std over seeds."""
    out = Path(args.out)
    found = gather(out)
    head = ["candidate", "seeds"] + [c[0] for c in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, results in found.items():
        cells = [name, str(len(results))]
        for _, read, fmt in COLUMNS:
            values = np.array([read(r) for r in results], dtype=float)
            if np.isnan(values).any():  # not measured for this variant
                cells.append("–")
                continue
            cell = fmt.format(values.mean())
            if len(values) > 1:
                cell += " ± " + fmt.format(values.std(ddof=1))
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    atomic_write_text(out / "sweep.md", text + "\n")


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
