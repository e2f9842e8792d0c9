"""Speed of the real training loop, ``conceptlib.train.loop.train_vae``, per
configuration.

``benchmarks/train_throughput.py`` times one isolated training step on random
batches; this script times what ``reproduce`` runs: ``train_vae`` itself (batch
gathering, per-pixel concept targets, the step, the loss bookkeeping), one epoch
on a fixed sample of a variant's real training set (by default the ``concept``
variant: digits and concept images in the paper's proportions, half of the concept
images composites). For each candidate configuration (precision x memory format x
batch size) it reports, side by side and interleaved so that a noisy host slows
every configuration alike:

- images per second (median and range over the repeats) and the ratio to eager
  NCHW fp32 at batch 128 (the configuration the profiles trained with before);
- the same configuration's isolated step (``train_throughput.Bench``) in the same
  run, and the loop's share of it (1.0: the loop adds nothing to the step);
- FLOP/s of the real step (``torch.utils.flop_counter`` on a real batch, forward
  and backward, the concept rows' extra decoding of ``mu`` included) as a share of
  this machine's fp32 and bf16 GEMM peaks;
- the share of the loop's CPU time spent outside the convolutions (profiler).

It then prints the targets of the fast-training work and whether they are met,
and writes everything to ``results/benchmarks/train_loop.txt``.

    .venv/bin/python benchmarks/train_loop.py [--images 3072] [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import statistics
import sys
from contextlib import redirect_stdout
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from conceptlib.config import FIRST_CONCEPT_LABEL, load_config, variant_config
from conceptlib.data.mnist import to_input
from conceptlib.experiment.pipeline import Pipeline
from conceptlib.files import atomic_write_text
from conceptlib.model.losses import part_targets
from conceptlib.train.loop import build_model, train_step, train_vae
from conceptlib.train.runtime import bf16_native, resolve_device

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from train_throughput import Bench, Setup, gemm_peak  # noqa: E402

#: Candidate configurations: (precision, channels_last, batch size).
CANDIDATES = (
    ("fp32", False, 128),
    ("fp32", True, 128),
    ("bf16", False, 128),
    ("bf16", True, 128),
    ("bf16", True, 256),
)
REFERENCE = ("fp32", False, 128)
CONV_OPS = ("convolution", "conv2d", "conv_transpose")


def name(c: tuple[str, bool, int]) -> str:
    prec, cl, bs = c
    return f"{prec} {'channels_last' if cl else 'NCHW':13} b{bs}"


def with_train(cfg, c: tuple[str, bool, int], epochs: int = 1):
    prec, cl, bs = c
    tc = dataclasses.replace(
        cfg.train, precision=prec, channels_last=cl, batch_size=bs, num_epochs=epochs
    )
    return dataclasses.replace(cfg, train=tc)


def loop_rate(cfg, variant, data, device) -> float:
    """Images per second of one epoch of ``train_vae`` (model set-up excluded)."""
    x, y, parts, k = data
    _, history = train_vae(cfg, variant, x, y, k, None, device, False, parts)
    return history[0]["img_per_s"]


def step_flops(cfg, variant, data, device) -> float:
    """Forward + backward FLOPs per image of one real training step."""
    x, y, parts, k = data
    bs = cfg.train.batch_size
    xb, yb = to_input(x[:bs], device), y[:bs]
    target = None
    if parts is not None:
        rows = (yb >= FIRST_CONCEPT_LABEL).nonzero().squeeze(1)
        target = part_targets(parts[0][rows].float() / 255, parts[1][rows], k, 28)
    model = build_model(cfg, k).to(device)
    opt = torch.optim.Adam(model.parameters())
    off = torch.autocast(device.type, enabled=False)
    counter = FlopCounterMode(display=False)
    with counter:
        train_step(model, opt, xb, yb, cfg, k, True, 1.0, None, off, 1.0, target)
    return counter.get_total_flops() / bs


def outside_conv_share(cfg, variant, data, device) -> float:
    """Share of the loop's self CPU time not in convolution operators."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        loop_rate(cfg, variant, data, device)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(
        e.self_cpu_time_total
        for e in events
        if any(op in e.key for op in CONV_OPS) or "ConvolutionBackward" in e.key
    )
    return 1 - conv / max(total, 1e-9)


def _data(args, cfg, device):
    """``args.images`` random training images of the variant: x, y, parts, K."""
    pipe = Pipeline(cfg, device=device, progress=False)
    train = pipe.dataset(args.variant, "train")
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(train.y), generator=gen)[: args.images]
    parts = None
    if train.parts is not None:
        parts = (train.parts[0][idx], train.parts[1][idx])
    return (train.x[idx], train.y[idx], parts, len(pipe.catalogue))


def _header(say, args, cfg, data, device) -> tuple[dict[str, float], float]:
    """Say the set-up, the GEMM peaks and the FLOPs per image; return the last two."""
    share = float((data[1] >= FIRST_CONCEPT_LABEL).float().mean())
    say(
        f"torch {torch.__version__}, device {device}, threads "
        f"{torch.get_num_threads()}, cpus {os.cpu_count()}, native bf16 "
        f"{bf16_native(device)}"
        + (
            f", AMX {torch.cpu._is_amx_tile_supported()}"
            if device.type == "cpu"
            else ""
        )
    )
    peak = {
        p: gemm_peak(d, device)
        for p, d in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }
    flops = step_flops(with_train(cfg, REFERENCE), args.variant, data, device)
    say(
        f"GEMM peak (square torch.mm, best of 7): fp32 {peak['fp32'] / 1e9:.1f} "
        f"GFLOP/s, bf16 {peak['bf16'] / 1e9:.1f} GFLOP/s"
    )
    say(
        f"loop: train_vae, variant {args.variant}, profile {args.profile}, "
        f"{args.images} images per epoch ({share:.0%} concept images), "
        f"{args.repeats} interleaved repeats"
    )
    say(
        f"FLOPs per image of the real step, forward + backward: {flops / 1e6:.2f} MFLOP"
    )
    return peak, flops


def _measure(args, cfg, data, device):
    """Loop and isolated-step rates of every candidate, interleaved, and the share
    of each loop's CPU time outside convolutions."""
    configs = {c: with_train(cfg, c) for c in CANDIDATES}
    # the isolated step of the same configuration, same run (random batches)
    benches = {
        c: Bench(Setup(c[1], c[0], False, c[2]), cfg, device) for c in CANDIDATES
    }
    for b in benches.values():
        for i in range(3):
            b.step(i)
    loops: dict = {c: [] for c in CANDIDATES}
    steps: dict = {c: [] for c in CANDIDATES}
    for r in range(args.repeats):
        order = CANDIDATES[r % len(CANDIDATES) :] + CANDIDATES[: r % len(CANDIDATES)]
        for c in order:
            loops[c].append(loop_rate(configs[c], args.variant, data, device))
            steps[c].append(benches[c].time(args.steps))
        print(f"  repeat {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    outside = {}
    for c in CANDIDATES:
        with redirect_stdout(io.StringIO()):
            outside[c] = outside_conv_share(configs[c], args.variant, data, device)
    return loops, steps, outside


def _table(say, loops, steps, outside, peak, flops):
    """Say the table of rates; return the median loop and step rates."""
    med = {c: statistics.median(v) for c, v in loops.items()}
    step_med = {c: statistics.median(v) for c, v in steps.items()}
    ref = med[REFERENCE]
    say()
    say(
        f"{'configuration':26} {'loop img/s':>10} {'range':>11} {'x fp32':>7} "
        f"{'step img/s':>10} {'loop/step':>9} {'GFLOP/s':>8} {'% fp32':>7} "
        f"{'% bf16':>7} {'outside conv':>12}"
    )
    for c in CANDIDATES:
        gflops = med[c] * flops / 1e9
        say(
            f"{name(c):26} {med[c]:10.0f} "
            f"{min(loops[c]):5.0f}-{max(loops[c]):<5.0f} {med[c] / ref:7.2f} "
            f"{step_med[c]:10.0f} {med[c] / step_med[c]:9.2f} {gflops:8.1f} "
            f"{100 * gflops * 1e9 / peak['fp32']:6.1f}% "
            f"{100 * gflops * 1e9 / peak['bf16']:6.1f}% {outside[c]:11.1%}"
        )
    say(
        "(x fp32: against the loop in NCHW fp32 at batch 128; loop/step: the loop "
        "against the isolated step of the same configuration; % peak: of the GEMM "
        "peaks above; outside conv: share of the loop's CPU time not in convolutions)"
    )
    return med, step_med


def _targets(say, med, step_med, peak, flops, device) -> None:
    """Say the fastest loop and step and whether the speed targets are met."""
    ref = med[REFERENCE]
    best_loop = max(CANDIDATES, key=med.get)
    best_step = max(CANDIDATES, key=step_med.get)
    amx = device.type == "cpu" and torch.cpu._is_amx_tile_supported()
    say()
    say(f"fastest loop: {name(best_loop)}; fastest step: {name(best_step)}")
    ratio = med[best_loop] / step_med[best_step]
    say(
        f"target loop >= 0.9 x the fastest step: {ratio:.2f} "
        f"({'met' if ratio >= 0.9 else 'missed'})"
    )
    if device.type == "cpu" and amx:
        gain = med[best_loop] / ref
        say(
            f"target (AMX) >= 2.0 x NCHW fp32 at b128: {gain:.2f} "
            f"({'met' if gain >= 2.0 else 'missed'})"
        )
    elif device.type == "cpu":
        frac = med[best_loop] * flops / peak["bf16"]
        say(
            f"target (no AMX) >= 60 % of the bf16 GEMM peak: {frac:.1%} "
            f"({'met' if frac >= 0.6 else 'missed'})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", help="data of this profile")
    parser.add_argument("--variant", default="concept")
    parser.add_argument("--images", type=int, default=3072, help="images per epoch")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    parser.add_argument("--steps", type=int, default=15, help="steps per step timing")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--out", default=str(HERE.parent / "results/benchmarks/train_loop.txt")
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    buf = io.StringIO()

    def say(line: str = "") -> None:
        print(line, flush=True)
        buf.write(line + "\n")

    cfg = variant_config(load_config(args.profile), args.variant)
    data = _data(args, cfg, device)
    peak, flops = _header(say, args, cfg, data, device)
    loops, steps, outside = _measure(args, cfg, data, device)
    med, step_med = _table(say, loops, steps, outside, peak, flops)
    _targets(say, med, step_med, peak, flops, device)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.out), buf.getvalue())
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
