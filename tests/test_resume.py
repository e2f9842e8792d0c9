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


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["CONCEPTLIB_CACHE"] = str(tmp_path / "cache")
    env["OMP_NUM_THREADS"] = "1"  # same thread count in every run: same arithmetic
    return env


def _weights(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    found = {}
    for path in sorted((out / "runs").glob("*/model.pt")):
        state = torch.load(path, map_location="cpu", weights_only=True)
        found[path.parent.name] = state["model"]
    return found


def _metrics(out: Path) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.pop("timings")
    return metrics


@pytest.mark.timeout(600)
def test_sigkill_and_resume_is_bitwise_identical(tmp_path):
    env = _env(tmp_path)
    straight = tmp_path / "straight"
    t0 = time.monotonic()
    subprocess.run(_cmd(straight), env=env, check=True, timeout=300)
    duration = time.monotonic() - t0

    resumed = tmp_path / "resumed"
    rng = random.Random(1234)
    kills = 0
    for _ in range(3):  # kill at random moments, then let it go on
        proc = subprocess.Popen(_cmd(resumed), env=env)
        time.sleep(rng.uniform(0.3, 0.8) * duration)
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
