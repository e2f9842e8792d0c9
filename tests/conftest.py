"""pytest configuration: tests marked ``@pytest.mark.slow`` run only with --runslow;
session fixtures shared by many tests, the long command lines among them started
in the background when the session starts."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest
from helpers import SMALL_RUN_ARGS


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--runslow", action="store_true", default=False, help="run slow tests"
    )


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    # Tests that read the background jobs' results (JOBS) run last, so that the
    # quick tests run while the jobs work instead of waiting for them.
    items.sort(key=lambda item: any(f in item.fixturenames for f in JOBS))
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


# ----------------------------------------------------------------- shared fixtures


@pytest.fixture(scope="session")
def mnist_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """A session-wide cache folder for the uint8 copy of the embedded MNIST."""
    return tmp_path_factory.mktemp("mnist-cache")


@pytest.fixture(scope="session")
def mnist(mnist_cache_dir):
    """The embedded MNIST, loaded once per session (cached under a temp folder)."""
    from conceptlib.data.mnist import load_mnist

    return load_mnist("embedded", cache_dir=mnist_cache_dir)


@pytest.fixture
def cache_env(monkeypatch: pytest.MonkeyPatch, mnist_cache_dir):
    """Point ``$CONCEPTLIB_CACHE`` at the session's temporary MNIST cache."""
    monkeypatch.setenv("CONCEPTLIB_CACHE", str(mnist_cache_dir))
    return mnist_cache_dir


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_pool():
    """Run torch, OpenMP (scikit-learn's k-means) and BLAS on one thread each.

    On a busy 2-core machine, threads of a pool that wait for each other make
    training and k-means many times slower. Tests only compare results computed
    within one session, so the thread count does not change what they check.
    """
    import sklearn.cluster  # noqa: F401  (loads its OpenMP runtime for the limit)
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(before)


# ------------------------------------------------------------ background command lines


def _cli_command(argv: list[str], cache: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of ``python -m conceptlib *argv`` on one
    thread, MNIST read from ``cache``."""
    env = dict(os.environ, CONCEPTLIB_CACHE=str(cache), OMP_NUM_THREADS="1")
    return [sys.executable, "-m", "conceptlib", *argv], env


def run_cli(argv: list[str], cache: Path) -> tuple[int, float, str]:
    """``python -m conceptlib *argv`` on one thread, MNIST read from ``cache``.

    Returns the exit status, the child's CPU seconds (user + system: unlike wall
    time, hardly changed by other work on the machine) and its stderr.
    """
    command, env = _cli_command(argv, cache)
    with subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime, err


def _checked(argv: list[str], cache: Path) -> float:
    status, seconds, err = run_cli(argv, cache)
    if status != 0:
        raise RuntimeError(f"conceptlib {' '.join(argv)}: status {status}\n{err}")
    return seconds


def _small_run(out: Path, cache: Path, *extra: str) -> tuple[Path, float]:
    return out, _checked([*SMALL_RUN_ARGS, *extra, "--out", str(out)], cache)


#: Set by ``make test``: a folder where it runs ``reproduce --profile smoke`` into
#: ``out/smoke/`` from an empty run cache, beside pytest, and then writes its exit
#: status to ``status``; the chapters (nbval) read that run, and so does the first
#: half of :func:`_smoke_twice` instead of training the same models once more.
SMOKE_ENV = "CONCEPTLIB_TEST_SMOKE"


def _made_smoke_run(folder: Path, out: Path, timeout: float = 1800) -> None:
    """Wait for ``make test``'s smoke run in ``folder``; copy its output to ``out``."""
    status = folder / "status"
    deadline = time.monotonic() + timeout
    while not status.is_file():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {status} after {timeout:.0f} s")
        time.sleep(0.5)
    code = status.read_text().strip()
    if code != "0":
        log = (folder / "reproduce.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"make test's smoke run: status {code}\n{log}")
    shutil.copytree(folder / "out" / "smoke", out)


def _smoke_twice(out: Path, cache: Path) -> tuple[Path, list[tuple[int, dict]]]:
    argv = ["reproduce", "--profile", "smoke", "--out", str(out), "--quiet"]
    made = os.environ.get(SMOKE_ENV)
    results = []
    for _ in range(2):
        if made and not results:
            _made_smoke_run(Path(made), out)  # its first run, already made
        else:
            _checked(argv, cache)
        results.append((0, json.loads((out / "metrics.json").read_text())))
    return out, results


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (None once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
    except OSError:
        return None
    fields = stat.split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _killed_and_resumed(out: Path, cache: Path, straight: Future) -> tuple[Path, int]:
    """:data:`helpers.SMALL_RUN_ARGS` into ``out``, killed (SIGKILL) three times at
    random moments of its CPU time (fractions of the ``straight`` run's: the same
    moment however busy the machine is), then let finish; the folder and the number
    of kills."""
    _, duration = straight.result()
    argv, env = _cli_command([*SMALL_RUN_ARGS, "--out", str(out)], cache)
    rng, kills = random.Random(1234), 0
    for _ in range(3):
        proc = subprocess.Popen(argv, env=env)
        moment = rng.uniform(0.3, 0.8) * duration
        while proc.poll() is None and (_cpu_seconds(proc.pid) or 0.0) < moment:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    subprocess.run(argv, env=env, check=True, timeout=300)
    return out, kills


class After(NamedTuple):
    """An argument of a job: the Future of the job named ``job``, which runs first."""

    job: str


#: Jobs of the session fixture that waits for them: name -> (function, arguments
#: after the output folder; :class:`After` for another job's Future).
JOBS: dict[str, dict[str, tuple]] = {
    "smoke_runs": {"smoke": (_smoke_twice,)},
    "small_runs": {
        "a": (_small_run,),
        "b": (_small_run,),
        "c": (_small_run, "--set", "seed=1"),
    },
    "resumed_runs": {"resumed": (_killed_and_resumed, After("a"))},
}


class Background:
    """Long command lines run in subprocesses beside the tests (two at a time on
    two cores or more), while pytest runs the quick tests one by one; the tests
    that wait for their results run last (``pytest_collection_modifyitems``)."""

    def __init__(self, root: Path, cache: Path, workers: int) -> None:
        self.root, self.cache = root, cache
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.futures: dict[str, Future] = {}

    def start(self, fixture: str) -> None:
        for name, (fn, *extra) in JOBS[fixture].items():
            if name not in self.futures:
                out = self.root / name / "out"
                # a job waits for the jobs it names, submitted before it (FIFO)
                needs = {a.job for a in extra if isinstance(a, After)}
                for other, jobs in JOBS.items():
                    if other != fixture and needs & set(jobs):
                        self.start(other)
                args = [
                    self.futures[a.job] if isinstance(a, After) else a for a in extra
                ]
                self.futures[name] = self.pool.submit(fn, out, self.cache, *args)

    def results(self, fixture: str) -> dict:
        self.start(fixture)  # already started unless the session began without it
        return {name: self.futures[name].result() for name in JOBS[fixture]}


@pytest.fixture(scope="session", autouse=True)
def background(request: pytest.FixtureRequest, tmp_path_factory, mnist_cache_dir):
    """Start, at once, the jobs of every :data:`JOBS` fixture a selected test uses."""
    wanted = [
        fixture
        for fixture in JOBS
        if any(
            fixture in item.fixturenames and not item.get_closest_marker("skip")
            for item in request.session.items
        )
    ]
    jobs = Background(
        tmp_path_factory.mktemp("background"),
        mnist_cache_dir,
        # a job that waits for make test's smoke run (SMOKE_ENV) holds no core
        workers=max(1, min(2, os.cpu_count() or 1)) + bool(os.environ.get(SMOKE_ENV)),
    )
    if wanted:
        request.getfixturevalue("mnist")  # the MNIST cache, written once, first
    for fixture in wanted:
        jobs.start(fixture)
    yield jobs
    jobs.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def smoke_runs(background: Background) -> tuple[Path, list[tuple[int, dict]]]:
    """``reproduce --profile smoke`` twice into the same folder: the output folder
    and, per run, its exit status and metrics."""
    return background.results("smoke_runs")["smoke"]


@pytest.fixture(scope="session")
def resumed_runs(background: Background) -> dict[str, tuple[Path, int]]:
    """``resumed``: :func:`_killed_and_resumed` after ``small_runs``'s ``a``."""
    return background.results("resumed_runs")


@pytest.fixture(scope="session")
def small_runs(background: Background) -> dict[str, tuple[Path, float]]:
    """:data:`helpers.SMALL_RUN_ARGS` three times, each into its own folder: ``a``
    and ``b`` (seed 0), ``c`` (seed 1); per run, the output folder and CPU seconds."""
    return background.results("small_runs")
