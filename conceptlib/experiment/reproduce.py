"""``conceptlib reproduce``: every variant, measure, clustering and figure, over seeds.

Writes the PNG figures equivalent to the paper's Figures 2-6, then ``metrics.json``
(``variants.<name>.<split>.<measure>``: means over seeds, ``variants_std`` their
standard deviations, ``per_seed`` each seed's values; ``timings`` apart, so two runs
with the same seed differ only there), every file atomically."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from conceptlib import __version__
from conceptlib.config import CONCEPT_VARIANTS, VARIANTS, ExperimentConfig, to_dict
from conceptlib.data.catalogue import make_concepts
from conceptlib.data.mnist import MNIST, NUM_CLASSES, load_mnist
from conceptlib.errors import ConceptlibError
from conceptlib.experiment.pipeline import CLUSTERINGS, SPLITS, Pipeline
from conceptlib.files import atomic_write_text
from conceptlib.measures.formulas import summary
from conceptlib.train.loop import Run
from conceptlib.train.runtime import bf16_native, is_main, resolve_device

LOSS_KEYS = ("epoch", "loss", "recon", "kl", "concept")
FIGURES = {
    "figure2_catalogue.png": "the 18 concepts: mean box on the source digit's mean",
    "figure2_gallery.png": "generated training concept images, one row per concept",
    "figure3_representatives.png": "baseline: decoded latent cluster centres "
    "(section 3.5 step 1)",
    "figure3_digit_clusters.png": "concept_paper variant: decoded centres of the "
    "digit latent clusters",
    "figure4_concept_clusters.png": "concept_paper variant: decoded centres of the "
    "concept latent clusters",
    "figure5_layer3_with_concept_loss.png": "concept_paper variant: concept-layer "
    "cluster centres, with concept loss",
    "figure6_layer3_without_concept_loss.png": "augmented variant: concept-layer "
    "cluster centres, without concept loss",
    "learning_curves.png": "training loss parts per epoch",
}
UNITS = {
    "recon_bce": "nats per image, summed over 784 pixels",
    "recon_sse": "summed squared error per image",
    "mse": "squared error per pixel",
    "kl": "nats per image",
    "neg_elbo": "recon_bce + kl, nats per image",
    "is_nll": "importance-sampled -log p(x) (k = eval.nll_samples posterior samples), "
    "nats per image, mean over the first eval.nll_digits test digits; decoder "
    "likelihood: Bernoulli cross-entropy on grey levels",
    "is_nll_se": "standard error of is_nll over those digits",
    "is_nll_neg_elbo": "-ELBO of the same digits over the same samples",
    "concept_accuracy": "fraction of held-out concept images whose highest-energy "
    "concept channel is their own",
    "concept_iou": "IoU of the own channel > 0.5 with the concept ink > 0.5, mean "
    "over concepts",
    "alignment.own": "concept variant, test digits: mean share of a digit's "
    "concept-channel energy on concepts cut from its own class",
    "alignment.uniform": "the same share for energy spread evenly over the concepts",
    "vocabulary.accuracy": "fraction of probe images whose concepts are the top "
    "channels by energy (isolated probes: top 1; pairs: both in the top 2), maps "
    "decoded from z = mu",
    "vocabulary.iou": "IoU of each concept's map > 0.5 with its own ink, pooled over "
    "the probe images holding it, mean over concepts",
    "vocabulary.dissection": "Network Dissection of the K concept channels on the "
    "isolated and pair probes (top 0.5 % quantile, IoU > 0.04): unique = concepts "
    "detected by some channel, own = channels detecting their own concept",
    "vocabulary.dissection_rotated": "the same after a random orthogonal rotation of "
    "the K channels (the control)",
    "vocabulary.own_class_share": "as alignment.own, for each concept variant",
    "vocabulary.classifier_ceiling": "accuracy on the test probes of a multi-label CNN "
    "trained only to name the concepts, on the concept variant's training images "
    "(composites, shifts), stopped on the validation probes: the ceiling that "
    "look-alike strokes of the catalogue set",
}
SPLIT_NOTES = {
    "val": "the variant's own 30 % validation split (baseline: digits only; "
    "augmented, concept: digits + concepts)",
    "test_digits": "official MNIST test digits",
    "test_concepts": "concept images cut from the test digits",
}


def code_hash() -> str:
    """Short SHA-256 of the package's own files (modules, catalogues, profiles):
    which code measured a ``metrics.json``, committed or not."""
    import hashlib

    root = Path(__file__).parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".csv", ".yaml") and "__pycache__" not in path.parts:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and machine facts recorded beside the numbers."""
    import sklearn

    git, here = ["git", "rev-parse", "--short", "HEAD"], Path(__file__).parent
    try:
        run = subprocess.run(git, capture_output=True, text=True, cwd=here, timeout=5)
        commit = run.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit_learn": sklearn.__version__,
        "conceptlib": __version__,
        "git_commit": commit or None,
        "code": code_hash(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "cpu_threads": torch.get_num_threads(),
        "bf16_native": bf16_native(device),
        "machine": platform.machine(),
    }


def _mean_std(values: list[Any]) -> tuple[Any, Any]:
    """Elementwise mean and std (ddof=1 when there are several) of nested dicts."""
    first = values[0]
    if isinstance(first, dict):
        pairs = {k: _mean_std([v[k] for v in values]) for k in first}
        return {k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return float(arr.mean()), std


def _check_out(out: Path) -> None:
    """Create ``out``; one line of error if it cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"{out}: cannot create output folder ({exc.strerror})"
        raise ConceptlibError(msg) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConceptlibError(f"{out}: output folder is not writable")


def write_figures(pipe: Pipeline, out: Path) -> list[str]:
    """The figures of one pipeline (the first seed's) as PNG files in ``out``."""
    # matplotlib and torchvision: only when drawing
    from conceptlib.report.plots import (
        catalogue_figure,
        concept_gallery,
        plot_images,
        plot_learning_curves,
        save_figure,
    )

    cat, (x, y, _, _) = pipe.catalogue, pipe.digits
    digits = [f"digit {d}" for d in range(NUM_CLASSES)]
    histories = {v: pipe.run(v).history for v in VARIANTS}  # trained: read only
    figures = {
        "figure2_catalogue.png": catalogue_figure(cat, x, y, pipe.train_variants),
        "figure2_gallery.png": concept_gallery(pipe.concepts.x, pipe.concepts.y, cat),
        "figure3_representatives.png": plot_images(
            pipe.representatives[0] / 255.0, digits
        ),
        "learning_curves.png": plot_learning_curves(histories),
    }
    names = dict(zip(cat.labels, cat.names))
    for key, fname, ncols in [
        ("digits_latent", "figure3_digit_clusters.png", NUM_CLASSES),
        ("concepts_latent", "figure4_concept_clusters.png", 6),
        ("layer3_with_concept_loss", "figure5_layer3_with_concept_loss.png", 6),
        ("layer3_without_concept_loss", "figure6_layer3_without_concept_loss.png", 6),
    ]:
        images, labels = pipe.decoded_centres(key)
        titles = [names.get(lab, f"digit {lab}" if lab >= 0 else "?") for lab in labels]
        # decoded images and sigmoid maps lie in [0, 1]: one scale for all four
        figures[fname] = plot_images(images, titles, ncols, 1.5, vrange=(0.0, 1.0))
    for fname, fig in figures.items():
        save_figure(fig, out / fname)
    return sorted(figures)


def seed_metrics(
    pipe: Pipeline, runs: dict[str, Any] | None = None, say=None
) -> dict[str, Any]:
    """Every measure of one seed's pipeline, one entry of ``per_seed`` (what the
    scorecard judges); ``runs``: the trained runs by variant (default: ``pipe.run``
    of each, trained or loaded on demand); ``say``: prints progress, or None."""
    say = say or (lambda msg: None)
    runs = runs or {v: pipe.run(v) for v in VARIANTS}
    seed = pipe.cfg.seed
    say(f"seed {seed}: measures and clusterings")
    variants = pipe.metrics()
    say(f"seed {seed}: importance-sampled likelihood")
    for v in VARIANTS:
        variants[v]["test_digits"].update(pipe.likelihood(v))
    alignment = pipe.alignment()
    say(f"seed {seed}: vocabulary probes")
    vocabulary = {v: pipe.vocabulary(v) for v in VARIANTS}
    for v in CONCEPT_VARIANTS:
        vocabulary[v]["own_class_share"] = pipe.alignment(v)["own"]
    vocabulary["classifier_ceiling"] = {"accuracy": pipe.concept_ceiling()}
    say(f"seed {seed}: operators and formulas")
    operators = {v: pipe.edits(v) for v in CONCEPT_VARIANTS}
    k = len(pipe.catalogue)
    formulas = {v: summary(pipe.formulas(v), k) for v in VARIANTS}
    clustering = {k: c.scores for k, c in pipe.clusterings.items()}
    clustering["representatives_baseline"] = pipe.representatives[1].scores
    return {
        "seed": seed,
        "variants": variants,
        "clustering": clustering,
        "alignment": alignment,
        "vocabulary": vocabulary,
        "operators": operators,
        "formulas": formulas,
        "runs": {v: f"{v}-{r.key}" for v, r in runs.items()},
        "epochs": {
            v: [{k: h[k] for k in LOSS_KEYS} for h in r.history]
            for v, r in runs.items()
        },
    }


def _one_seed(profile: str, config: dict, names, seed: dict) -> dict[str, Any]:
    """One seed's measures in the layout of ``metrics.json`` (no timings, figures)."""
    return {"profile": profile, "seeds": [seed["seed"]], "config": config,
            "catalogue": {"names": list(names)}, "per_seed": [seed]}  # fmt: skip


def run_metrics(pipe: Pipeline) -> dict[str, Any]:
    """:func:`seed_metrics` of ``pipe`` as :func:`_one_seed`, measured now."""
    cfg, names = to_dict(pipe.cfg), pipe.catalogue.names
    return _one_seed(pipe.cfg.profile, cfg, names, seed_metrics(pipe))


def _recorded(pipe: Pipeline, out: str | os.PathLike) -> dict[str, Any] | None:
    """``<out>/<profile>/metrics.json`` when ``conceptlib reproduce`` wrote it with
    ``pipe``'s config, its seed first and this very code (:func:`code_hash`)."""
    path = Path(out) / pipe.cfg.profile / "metrics.json"
    try:
        recorded = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    ok = (
        isinstance(recorded, dict)
        and recorded.get("config") == to_dict(pipe.cfg)
        and (recorded.get("environment") or {}).get("code") == code_hash()
        and recorded.get("per_seed")
        and isinstance(recorded["per_seed"][0], dict)
        and recorded["per_seed"][0].get("seed") == pipe.cfg.seed
    )
    return recorded if ok else None


def recorded_seed(pipe: Pipeline, out: str | os.PathLike) -> dict[str, Any] | None:
    """The ``per_seed`` entry of ``pipe``'s seed that :func:`_recorded` finds, else
    None: ``make book`` runs ``reproduce`` first, so that the chapters read it
    instead of measuring it all again."""
    recorded = _recorded(pipe, out)
    return None if recorded is None else recorded["per_seed"][0]


def build_metrics(pipe: Pipeline, out: str | os.PathLike) -> dict[str, Any]:
    """:func:`run_metrics` of ``pipe``, read from what :func:`_recorded` finds."""
    r = _recorded(pipe, out)
    if r is None:
        return run_metrics(pipe)
    names = r["catalogue"]["names"]
    return _one_seed(r["profile"], r["config"], names, r["per_seed"][0])


def use_recorded(pipe: Pipeline, out: str | os.PathLike) -> bool:
    """Let ``pipe`` answer its measures from :func:`recorded_seed`; whether it
    found one."""
    seed = recorded_seed(pipe, out)
    if seed is not None:
        pipe.use_recorded(seed)
    return seed is not None


def _train_seed(pipe: Pipeline, say) -> tuple[dict[str, Run], float]:
    """Train or load every variant of one seed; the runs and the seconds the
    representatives and concept images took."""
    seed = pipe.cfg.seed
    say(f"seed {seed}: baseline")
    pipe.baseline  # noqa: B018  (trains or loads)
    say(f"seed {seed}: representative images and concept images")
    t0 = time.perf_counter()
    pipe.concepts  # noqa: B018
    t_concepts = time.perf_counter() - t0
    runs = {}
    for v in VARIANTS:
        say(f"seed {seed}: variant {v}")
        runs[v] = pipe.run(v)
    return runs, t_concepts


def _seed_timings(
    seed: int, runs: dict[str, Run], seconds: float, t_concepts: float
) -> dict[str, Any]:
    """One seed's entry of ``timings.seeds``."""
    per_epoch = {
        key: {v: [h[key] for h in r.history] for v, r in runs.items()}
        for key in ("seconds", "img_per_s")
    }
    return {
        "seed": seed,
        "seconds": seconds,
        "representatives_and_concepts_seconds": t_concepts,
        "train_seconds": {v: sum(s) for v, s in per_epoch["seconds"].items()},
        "epoch_seconds": per_epoch["seconds"],
        "img_per_s": per_epoch["img_per_s"],
        "loaded_from_cache": {v: r.loaded for v, r in runs.items()},
    }


def _dataset_counts(first: Pipeline) -> dict[str, int]:
    """How many images of each kind the first seed's pipeline holds."""
    counts = {
        "train_digits": len(first.digit_split[0]),
        "val_digits": len(first.digit_split[1]),
        "train_concepts": len(first.concept_split[0]),
        "val_concepts": len(first.concept_split[1]),
        "test_digits": len(first.digits[3]),
        "test_concepts": len(first.test_concepts.y),
        "concepts_from_centres": int(first.concepts.from_centre.sum()),
    }
    counts["total_augmented"] = sum(list(counts.values())[:4])  # train + val
    return counts


def _time_paper_concepts(first: Pipeline) -> float:
    """Seconds to make the paper's 54,000 concept images (3,000 per concept)."""
    x, y, _, _ = first.digits
    t0 = time.perf_counter()
    make_concepts(
        first.catalogue, 3000, x, y, first.train_variants,
        np.random.default_rng(0), first.representatives[0], 0.8,
    )  # fmt: skip
    return time.perf_counter() - t0


def _metrics(
    first: Pipeline, per_seed: list[dict], figure_files: list[str], env: dict
) -> dict[str, Any]:
    """``metrics.json`` but for its timings: means and stds over seeds, notes."""
    out: dict[str, Any] = {
        "profile": first.cfg.profile,
        "seeds": [s["seed"] for s in per_seed],
        "units": UNITS,
        "splits": SPLIT_NOTES,
    }
    for key in ("variants", "clustering", "alignment", "vocabulary"):
        out[key], out[f"{key}_std"] = _mean_std([s[key] for s in per_seed])
    cat = first.catalogue
    out |= {
        "probes": dict(first.probes.descriptions),
        "clusterings": CLUSTERINGS,
        "dataset": _dataset_counts(first),
        "catalogue": {"source": Path(cat.source).name, "names": list(cat.names)},
        "config": to_dict(first.cfg),  # train.precision as it ran (auto resolved)
        "environment": env,
        "figures": {f: FIGURES[f] for f in figure_files},
        "per_seed": per_seed,
    }
    return out


def reproduce(
    cfg: ExperimentConfig, out: str | os.PathLike, num_seeds: int = 1,
    device: str | torch.device = "auto", cache_dir: str | os.PathLike | None = None,
    progress: bool = True, figures: bool = True, mnist: MNIST | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run the whole pipeline for seeds ``cfg.seed, cfg.seed + 1, ...`` and write
    the results to ``out`` (created; files replaced atomically); return the metrics
    written to ``<out>/metrics.json``. ``cache_dir``: the run cache (default
    ``<out>/runs``); ``progress``: progress bars and messages on stderr; ``mnist``:
    the digits, if already loaded (else ``cfg.data.source`` is read)."""
    if num_seeds < 1:
        raise ConceptlibError(f"--seeds {num_seeds}: must be at least 1")
    out = Path(out)
    _check_out(out)  # on every rank, so that all of them stop if it fails
    cache = Path(cache_dir) if cache_dir is not None else out / "runs"
    t_start = time.perf_counter()
    # versions and commit as the run starts (the tree may change while it trains)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    env = environment(dev)
    mnist = mnist if mnist is not None else load_mnist(cfg.data.source)

    def say(msg: str) -> None:
        if progress and is_main():
            print(f"[conceptlib] {msg}", file=sys.stderr, flush=True)

    per_seed, timings, pipes = [], {"seeds": []}, []
    for i in range(num_seeds):
        scfg = dataclasses.replace(cfg, seed=cfg.seed + i)
        pipes.append(Pipeline(scfg, device, cache, progress, mnist))
        t_seed = time.perf_counter()
        runs, t_concepts = _train_seed(pipes[-1], say)
        if not is_main():
            continue  # under torchrun the other ranks only help to train
        per_seed.append(seed_metrics(pipes[-1], runs, say))
        seconds = time.perf_counter() - t_seed
        timings["seeds"].append(_seed_timings(scfg.seed, runs, seconds, t_concepts))
    if not is_main():
        return {}
    first = pipes[0]
    figure_files = write_figures(first, out) if figures else []
    metrics = _metrics(first, per_seed, figure_files, env)
    timings["generate_54000_concepts_seconds"] = _time_paper_concepts(first)
    timings["total_seconds"] = time.perf_counter() - t_start
    metrics["timings"] = timings
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    say(f"wrote {out / 'metrics.json'} in {timings['total_seconds']:.0f} s")
    return metrics


__all__ = ["FIGURES", "SPLITS", "build_metrics", "code_hash", "recorded_seed",
           "reproduce", "run_metrics", "seed_metrics", "use_recorded"]  # fmt: skip
