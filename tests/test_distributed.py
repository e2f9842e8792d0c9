"""Scale-out: the real command line under ``torchrun`` with 2 CPU processes (gloo).

Both ranks must finish, only rank 0 may write, the written checkpoints must load
(``weights_only=True``) and the training loss must fall.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import SMALL_RUN_ARGS

from conceptlib.config import VARIANTS
from conceptlib.files import load_checkpoint


def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = dict(os.environ)
    env["CONCEPTLIB_CACHE"] = str(tmp_path / "cache")
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",  # what the torchrun script runs
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "conceptlib",
        *SMALL_RUN_ARGS,
        "--out",
        str(out),
    ]
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["variants"]) == set(VARIANTS)
    # rank 0 wrote everything once; no temporary files were left behind
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    runs = sorted(p.name for p in (out / "runs").iterdir() if p.is_dir())
    assert sorted(r.split("-")[0] for r in runs) == sorted(VARIANTS)
    counts = metrics["dataset"]
    digits = counts["train_digits"]
    sizes = {"baseline": digits, "augmented": digits + counts["train_concepts"]}
    for v in ("concept", "concept_paper", "concept_paper_tuned"):  # composites
        sizes[v] = sizes["augmented"]
    # replace concept images one for one
    for run in runs:
        state = load_checkpoint(out / "runs" / run / "model.pt")
        history = json.loads(state["history"])
        assert [h["epoch"] for h in history] == [1, 2, 3]
        assert history[-1]["loss"] < history[0]["loss"], (run, history)
        # the ranks' shares add up to the whole training set (drop_last: even)
        n = sizes[run.split("-")[0]]
        assert [h["images"] for h in history] == [2 * (n // 2)] * 3, run
