"""Interrupted training: SIGKILL at random moments, resume, compare bitwise.

Runs the real command line in subprocesses (CPU, fp32, a small smoke config:
``tests/helpers.py``), in the background jobs of ``tests/conftest.py``. The
comparison holds on one machine and one set of kernels, not across processors
(``make test-kernels`` runs it under AVX2 kernels too).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conceptlib.config import VARIANTS


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
def test_sigkill_and_resume_is_bitwise_identical(small_runs, resumed_runs):
    straight, _ = small_runs["a"]  # straight through
    # the same command, killed three times at random moments, then let go on
    # (conftest._killed_and_resumed, a background job)
    resumed, kills = resumed_runs["resumed"]
    assert kills >= 1, "every run finished before it could be killed"

    a, b = _weights(straight), _weights(resumed)
    assert sorted(a) == sorted(b) and len(a) == len(VARIANTS)
    for run in a:
        for name, tensor in a[run].items():
            assert torch.equal(tensor, b[run][name]), f"{run}: {name} differs"
    assert _metrics(straight) == _metrics(resumed)
    leftovers = [p for p in resumed.rglob("*.tmp")]
    assert not leftovers, leftovers
