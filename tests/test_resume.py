"""Interrupted training: SIGKILL at random moments, resume, compare bitwise.

Runs the real command line in subprocesses (CPU, fp32, a small smoke config). The
comparison holds on one machine and one set of kernels, not across processors
(``make test-kernels`` runs it under AVX2 kernels too).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import SMALL_RUN_ARGS

from conceptlib.config import VARIANTS

ARGS = SMALL_RUN_ARGS


def _cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "conceptlib", *ARGS, "--out", str(out)]


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["CONCEPTLIB_CACHE"] = str(cache)
    env["OMP_NUM_THREADS"] = "1"  # same thread count in every run: same arithmetic
    return env


def _weights(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    found = {}
    for path in sorted((out / "runs").glob("*/model.pt")):
        state = torch.load(path, map_location="cpu", weights_only=True)
        found[path.parent.name] = state["model"]
    return found


def _wait_cpu(proc: subprocess.Popen, seconds: float) -> None:
    """Wait until ``proc`` has run ``seconds`` of CPU time, or has ended: the same
    moment of its run however busy the machine is."""
    tick = os.sysconf("SC_CLK_TCK")
    while proc.poll() is None:
        try:
            stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1]
        except OSError:
            return
        fields = stat.split()
        if (int(fields[11]) + int(fields[12])) / tick >= seconds:
            return
        time.sleep(0.05)


def _metrics(out: Path) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.pop("timings")
    return metrics


@pytest.mark.timeout(600)
def test_sigkill_and_resume_is_bitwise_identical(tmp_path, small_runs, mnist_cache_dir):
    env = _env(mnist_cache_dir)
    straight, duration = small_runs["a"]  # straight through; its CPU seconds

    resumed = tmp_path / "resumed"
    rng = random.Random(1234)
    kills = 0
    for _ in range(3):  # kill at random moments, then let it go on
        proc = subprocess.Popen(_cmd(resumed), env=env)
        _wait_cpu(proc, rng.uniform(0.3, 0.8) * duration)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    assert kills >= 1, "every run finished before it could be killed"
    subprocess.run(_cmd(resumed), env=env, check=True, timeout=300)

    a, b = _weights(straight), _weights(resumed)
    assert sorted(a) == sorted(b) and len(a) == len(VARIANTS)
    for run in a:
        for name, tensor in a[run].items():
            assert torch.equal(tensor, b[run][name]), f"{run}: {name} differs"
    assert _metrics(straight) == _metrics(resumed)
    leftovers = [p for p in resumed.rglob("*.tmp")]
    assert not leftovers, leftovers
