"""Training throughput of the paper architecture, configuration by configuration.

One training step is :func:`conceptlib.train.loop.train_step` (forward, loss with the
concept term, backward, Adam), on uint8 batches converted per step exactly as in
training. For every configuration (memory format x precision x compile x batch size)
it prints images per second (median over interleaved repeats, so that a noisy host
slows every configuration alike), FLOPs per image (forward + backward, counted by
``torch.utils.flop_counter``) and the fraction of this machine's own measured GEMM
peak (fp32 and bf16 ``torch.mm``) that the step reaches. Then it profiles the
fastest eager configuration and prints where the time goes, and times the
generation of the paper's 54,000 concept images.

    .venv/bin/python benchmarks/train_throughput.py [--repeats 5] [--steps 15]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity
from torch.profiler import profile as torch_profile
from torch.utils.flop_counter import FlopCounterMode

from conceptlib.config import load_config
from conceptlib.data.mnist import to_input
from conceptlib.model.losses import FIRST_CONCEPT_LABEL
from conceptlib.model.vae import ConvVAE
from conceptlib.train.loop import train_step
from conceptlib.train.runtime import resolve_device

NUM_CONCEPTS = 18


@dataclass(frozen=True)
class Setup:
    channels_last: bool
    precision: str  # fp32 | bf16
    compiled: bool
    batch_size: int

    @property
    def name(self) -> str:
        fmt = "channels_last" if self.channels_last else "NCHW"
        comp = "compile" if self.compiled else "eager"
        return f"{comp:7} {fmt:13} {self.precision:4} b{self.batch_size}"


def make_batch(batch_size: int, gen: torch.Generator):
    """Random uint8 images and labels, 47 % of them concept images: the paper's mix
    (54,000 concept images among 114,000)."""
    x = torch.randint(0, 256, (batch_size, 28, 28), dtype=torch.uint8, generator=gen)
    digit = torch.randint(0, FIRST_CONCEPT_LABEL, (batch_size,), generator=gen)
    concept = FIRST_CONCEPT_LABEL + torch.randint(
        0, NUM_CONCEPTS, (batch_size,), generator=gen
    )
    is_concept = torch.rand(batch_size, generator=gen) < 54 / 114
    return x, torch.where(is_concept, concept, digit)


class Bench:
    """A model, optimiser and a ready step function for one setup."""

    def __init__(self, setup: Setup, cfg, device: torch.device) -> None:
        torch.manual_seed(0)
        self.setup, self.cfg, self.device = setup, cfg, device
        model = ConvVAE(cfg.model, NUM_CONCEPTS).to(device)
        if setup.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.net = torch.compile(model) if setup.compiled else model
        self.opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
        self.autocast = torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=setup.precision == "bf16"
        )
        gen = torch.Generator().manual_seed(0)
        self.batches = [  # on the device already, as in training
            tuple(t.to(device) for t in make_batch(setup.batch_size, gen))
            for _ in range(4)
        ]
        self.noise = torch.Generator(device=device).manual_seed(1)

    def step(self, i: int) -> None:
        x, y = self.batches[i % len(self.batches)]
        xb = to_input(x, self.device, self.setup.channels_last)
        train_step(
            self.net,
            self.opt,
            xb,
            y,
            self.cfg,
            NUM_CONCEPTS,
            True,
            1.0,
            None if self.setup.compiled else self.noise,
            self.autocast,
        )

    def time(self, steps: int) -> float:
        """Images per second over ``steps`` steps."""
        _sync(self.device)
        t0 = time.perf_counter()
        for i in range(steps):
            self.step(i)
        _sync(self.device)
        return steps * self.setup.batch_size / (time.perf_counter() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def flops_per_image(cfg, device: torch.device, batch_size: int = 64) -> float:
    """Forward + backward FLOPs of one training step, per image."""
    bench = Bench(Setup(False, "fp32", False, batch_size), cfg, device)
    counter = FlopCounterMode(display=False)
    with counter:
        bench.step(0)
    return counter.get_total_flops() / batch_size


def gemm_peak(dtype: torch.dtype, device: torch.device) -> float:
    """Best FLOP/s of square matrix products (2048 on a CPU, 8192 on a GPU).

    Timed over 4 products at a time, best of 7; on a GPU with TF32 off for fp32,
    so the fp32 peak is true fp32 (convolutions may still use TF32 and exceed it).
    """
    n, reps = (8192, 4) if device.type == "cuda" else (2048, 4)
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(7):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        _sync(device)
        best = min(best, (time.perf_counter() - t0) / reps)
    return 2 * n**3 / best


def profile(bench: Bench, steps: int, top: int) -> None:
    """Print the operators that take the most time in ``steps`` training steps."""
    acts = [ProfilerActivity.CPU]
    if bench.device.type == "cuda":
        acts.append(ProfilerActivity.CUDA)
    for i in range(3):
        bench.step(i)
    with torch_profile(activities=acts) as prof:
        for i in range(steps):
            bench.step(i)
    key = (
        "self_cuda_time_total" if bench.device.type == "cuda" else "self_cpu_time_total"
    )
    print(
        prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=40)
    )


def _header(cfg, device: torch.device) -> tuple[dict[str, float], float]:
    """Print the set-up, the GEMM peaks and the FLOPs per image; return the last two."""
    print(
        f"torch {torch.__version__}, device {device}, "
        f"threads {torch.get_num_threads()}, cpus {os.cpu_count()}"
    )
    if device.type == "cuda":
        print(f"gpu {torch.cuda.get_device_name()}")

    peak = {
        p: gemm_peak(d, device)
        for p, d in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }
    flops = flops_per_image(cfg, device)
    print(
        f"GEMM peak (square torch.mm, best of 7): fp32 {peak['fp32'] / 1e9:.1f} "
        f"GFLOP/s, bf16 {peak['bf16'] / 1e9:.1f} GFLOP/s"
    )
    print(
        f"FLOPs per image, forward + backward (convolutions and matrix products, "
        f"torch.utils.flop_counter): {flops / 1e6:.2f} MFLOP"
    )
    return peak, flops


def _benches(setups, cfg, device) -> tuple[dict[Setup, Bench], dict[Setup, str]]:
    """A warmed-up bench of each setup, and why those that failed failed."""
    benches: dict[Setup, Bench] = {}
    failed: dict[Setup, str] = {}
    for s in setups:
        t0 = time.perf_counter()
        try:
            bench = Bench(s, cfg, device)
            for i in range(3):  # warm-up (and compilation)
                bench.step(i)
            benches[s] = bench
        except Exception as exc:  # torch.compile can fail in many ways
            reason = str(exc).strip().splitlines()[0][:100] if str(exc).strip() else ""
            failed[s] = f"{type(exc).__name__}: {reason}"
        if s.compiled:
            print(
                f"  compiled {s.name} in {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
            )
    return benches, failed


def _table(setups, rates, failed, peak, flops) -> None:
    """Print images per second, spread, speed-up and share of the GEMM peaks."""
    ref = statistics.median(rates[setups[0]]) if setups[0] in rates else None
    print(
        f"\n{'configuration':38} {'img/s':>8} {'spread':>13} {'x eager fp32':>12} "
        f"{'GFLOP/s':>8} {'% fp32 peak':>11} {'% bf16 peak':>11}"
    )
    for s in setups:
        if s in failed:
            print(f"{s.name:38} failed: {failed[s]}")
            continue
        med = statistics.median(rates[s])
        gflops = med * flops / 1e9
        base = (
            statistics.median(rates[Setup(False, "fp32", False, s.batch_size)])
            if (Setup(False, "fp32", False, s.batch_size) in rates)
            else ref
        )
        spread = f"{min(rates[s]):.0f}-{max(rates[s]):.0f}"
        print(
            f"{s.name:38} {med:8.0f} {spread:>13} {med / base:12.2f} {gflops:8.1f} "
            f"{100 * gflops * 1e9 / peak['fp32']:10.1f}% "
            f"{100 * gflops * 1e9 / peak['bf16']:10.1f}%"
        )
    print("(x eager fp32: against eager NCHW fp32 at the same batch size)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    parser.add_argument("--steps", type=int, default=15, help="steps per repeat")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--profile-steps", type=int, default=10)
    args = parser.parse_args()
    device = resolve_device(args.device)
    cfg = load_config("paper")
    peak, flops = _header(cfg, device)

    setups = [
        Setup(cl, prec, False, bs)
        for bs in args.batch_sizes
        for prec in ("fp32", "bf16")
        for cl in (False, True)
    ]
    if not args.no_compile:
        setups += [
            Setup(cl, prec, True, 128)
            for prec in ("fp32", "bf16")
            for cl in (False, True)
        ]
    benches, failed = _benches(setups, cfg, device)
    rates: dict[Setup, list[float]] = {s: [] for s in benches}
    for _ in range(args.repeats):
        for s, bench in benches.items():
            rates[s].append(bench.time(args.steps))
    _table(setups, rates, failed, peak, flops)

    eager = [s for s in rates if not s.compiled]
    fastest = max(eager, key=lambda s: statistics.median(rates[s]))
    default = Setup(False, "fp32", False, 128)  # the profiles' configuration
    for s in dict.fromkeys([default, fastest]):
        if s not in benches:
            continue
        print(f"\nwhere the time goes: {args.profile_steps} steps of {s.name.strip()}")
        with contextlib.suppress(Exception):
            profile(benches[s], args.profile_steps, top=12)

    print("concept generation (benchmarks/concept_generation.py):")
    sys.stdout.flush()
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    import concept_generation

    sys.argv = [sys.argv[0], "--repeats", "7"]
    concept_generation.main()


if __name__ == "__main__":
    main()
