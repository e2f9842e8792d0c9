"""Held-out -ELBO against wall-clock time: the pytorch/examples MNIST VAE and ours.

The peer is the canonical ``vae/main.py`` of pytorch/examples (an MLP VAE,
784-400-20, Adam 1e-3, batch 128), fetched, not committed. It reads torchvision's
``MNIST/raw`` IDX files, which ``write_torchvision_raw`` (``tests/idx_files.py``)
writes from the same digits we train on. Ours is the paper's fully convolutional VAE
(the ``baseline`` variant: digits only, no concept loss) trained by
:func:`conceptlib.train.loop.train_step` with the same optimiser, learning rate and
batch size on the same 60,000 training digits.

Both run as subprocesses, one after the other, with the same thread count and a
time budget each; after every epoch each prints its -ELBO on the 10,000 test digits
(nats per image, one posterior sample, BCE summed over pixels + KL: the peer's
``Test set loss`` is exactly this). The script prints both curves and, at common
times, the best -ELBO each reached so far and their ratio.

    git --git-dir <mirror of pytorch/examples> show HEAD:vae/main.py > /tmp/main.py
    .venv/bin/python benchmarks/peer_vae.py --peer /tmp/main.py [--seconds 150]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from conceptlib.config import load_config
from conceptlib.data.mnist import load_mnist, to_input
from conceptlib.measures.likelihood import evaluate
from conceptlib.model.vae import ConvVAE
from conceptlib.train.loop import _epoch_generator, train_step

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from idx_files import write_torchvision_raw  # noqa: E402  (the tests' IDX writer)

PEER_LINE = re.compile(r"====> Test set loss: ([0-9.]+)")
OURS_LINE = re.compile(r"^ours test -ELBO: ([0-9.]+)")


def run_ours(seconds: float) -> None:
    """Train our baseline VAE epoch by epoch until ``seconds`` have passed."""
    t0 = time.perf_counter()
    cfg = load_config("paper")
    mnist = load_mnist("embedded")
    x, y = torch.from_numpy(mnist.x_train), torch.from_numpy(mnist.y_train)
    xt, yt = torch.from_numpy(mnist.x_test), torch.from_numpy(mnist.y_test)
    torch.manual_seed(1)
    model = ConvVAE(cfg.model, 18)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    off = torch.autocast("cpu", enabled=False)
    epoch = 0
    while time.perf_counter() - t0 < seconds:
        model.train()
        perm = torch.randperm(len(x), generator=_epoch_generator(1, epoch, 0))
        noise = _epoch_generator(1, epoch, 1)
        for idx in perm.split(128):
            xb = to_input(x[idx], torch.device("cpu"))
            train_step(model, opt, xb, y[idx], cfg, 18, False, 1.0, noise, off)
        epoch += 1
        score = evaluate(model, xt, yt, batch_size=1000, seed=0)["neg_elbo"]
        print(f"ours test -ELBO: {score:.4f}", flush=True)


def curve(cmd: list[str], cwd: Path, pattern: re.Pattern, seconds: float, env):
    """Run ``cmd``; return ``[(seconds since start, -ELBO)]`` until the budget ends."""
    points: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    err = (cwd / f"stderr-{len(list(cwd.glob('stderr-*')))}.txt").open("w")
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=err, text=True, env=env
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            match = pattern.search(line)
            if match:
                points.append((time.perf_counter() - t0, float(match.group(1))))
            if time.perf_counter() - t0 > seconds:
                break
    finally:
        proc.kill()
        proc.wait()
        err.close()
    if not points:  # say why instead of printing an empty curve
        tail = Path(err.name).read_text().strip().splitlines()[-5:]
        print(
            f"{cmd[1]}: no test -ELBO printed; its stderr ends with:",
            *tail,
            sep="\n  ",
            file=sys.stderr,
        )
    return points


def best_by(points: list[tuple[float, float]], t: float) -> float | None:
    seen = [v for s, v in points if s <= t]
    return min(seen) if seen else None


def _report(peer, ours) -> None:
    """Print both curves, then the best -ELBO of each at common times."""
    for name, points in (
        ("pytorch/examples VAE (MLP)", peer),
        ("conceptlib ConvVAE (baseline)", ours),
    ):
        print(f"\n{name}: test -ELBO (nats per image) after each epoch")
        for i, (s, v) in enumerate(points, 1):
            print(f"  epoch {i:3d}  {s:7.1f} s  {v:9.3f}")
    end = min(peer[-1][0], ours[-1][0]) if peer and ours else 0
    print("\nat equal wall-clock time (best test -ELBO so far; lower is better)")
    print(f"{'seconds':>8} {'peer':>10} {'ours':>10} {'ours/peer':>10}")
    for t in [30, 60, 90, 120, 150, 180, 240, 300, end]:
        if t > end:
            continue
        p, o = best_by(peer, t), best_by(ours, t)
        if p is None or o is None:
            nan = float("nan")
            print(f"{t:8.0f} {p or nan:10.3f} {o or nan:10.3f} {'-':>10}")
        else:
            print(f"{t:8.0f} {p:10.3f} {o:10.3f} {o / p:10.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--peer", required=False, help="path of pytorch/examples vae/main.py"
    )
    parser.add_argument("--seconds", type=float, default=150, help="budget per model")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ours-only", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours_only is not None:
        run_ours(args.ours_only)
        return
    if not args.peer or not Path(args.peer).is_file():
        sys.exit(
            "peer_vae.py: error: --peer must name pytorch/examples' vae/main.py "
            "(see the module docstring for how to get it)"
        )
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), CUDA_VISIBLE_DEVICES="")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_torchvision_raw(load_mnist("embedded"), root / "data")
        work = root / "run"
        (work / "results").mkdir(parents=True)  # the peer saves sample images here
        script = work / "main.py"
        script.write_text(Path(args.peer).read_text())
        print(
            f"torch {torch.__version__}, {args.threads} threads, "
            f"{args.seconds:.0f} s per model",
            flush=True,
        )
        peer = curve(
            [sys.executable, str(script), "--epochs", "1000", "--no-accel"],
            work,
            PEER_LINE,
            args.seconds,
            env,
        )
        ours = curve(
            [sys.executable, __file__, "--ours-only", str(args.seconds)],
            work,
            OURS_LINE,
            args.seconds + 60,
            env,
        )
    _report(peer, ours)


if __name__ == "__main__":
    main()
