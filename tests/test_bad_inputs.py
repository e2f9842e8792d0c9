"""Bad input through the real command line, one subprocess per case.

Every case must end with exit status 2 and exactly one line on stderr,
``conceptlib: error: ...``, that names the input and says what is wrong; no
traceback; and the earlier results in the output folder must be left as they were
(``metrics.json`` byte-identical, no new files). The cases run concurrently in a
module fixture, so the suite pays for interpreter start-up only a few times over.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import small_mnist
from idx_files import write_idx

from conceptlib.config import ModelConfig, load_config
from conceptlib.data.catalogue import COLUMNS
from conceptlib.files import atomic_torch_save
from conceptlib.model.vae import ConvVAE
from conceptlib.train.loop import run_key, run_state

ERROR_PREFIX = "conceptlib: error: "
PREVIOUS = b'{"previous": "results, must survive"}\n'
SMOKE = [
    "--profile",
    "smoke",
    "--device",
    "cpu",
    "--quiet",
    "--no-figures",
    "--set",
    "data.num_train_digits=300",
    "--set",
    "data.num_test_digits=100",
]


@dataclass
class Case:
    """A bad input: ``make(folder)`` writes it and returns the argv after the
    program name; ``expect`` are substrings of the error line."""

    make: Callable[[Path], list[str]]
    expect: tuple[str, ...]
    env: Callable[[Path], dict[str, str]] = field(default=lambda folder: {})


# ------------------------------------------------------------------ file builders


def _idx_folder(folder: Path, **replace: bytes) -> Path:
    """The four IDX files of a small MNIST, with some files' bytes replaced."""
    data = folder / "idx"
    data.mkdir()
    m = small_mnist()
    for name, array in (
        ("train-images-idx3-ubyte", m.x_train),
        ("train-labels-idx1-ubyte", m.y_train),
        ("t10k-images-idx3-ubyte", m.x_test),
        ("t10k-labels-idx1-ubyte", m.y_test),
    ):
        write_idx(data / name, array)
    for key, raw in replace.items():  # e.g. train_images -> train-images-idx3-ubyte
        kind = "idx3" if key.endswith("images") else "idx1"
        (data / f"{key.replace('_', '-')}-{kind}-ubyte").write_bytes(raw)
    return data


def _header(magic: int, *dims: int) -> bytes:
    return b"".join(v.to_bytes(4, "big") for v in (magic, *dims))


def _npz(folder: Path, **overrides: np.ndarray | None) -> Path:
    m = small_mnist()
    arrays = {k: getattr(m, k) for k in ("x_train", "y_train", "x_test", "y_test")}
    arrays.update(overrides)
    path = folder / "digits.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _catalogue(folder: Path, *rows: str) -> Path:
    path = folder / "catalogue.csv"
    path.write_text(",".join(COLUMNS) + "\n" + "".join(r + "\n" for r in rows))
    return path


class _RunsCode:
    """Unpickling this would create ``marker``: the payload of a malicious pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _concept_checkpoint(folder: Path, variant: str = "concept", **model) -> Path:
    """An (untrained) model.pt as ``reproduce`` writes it; ``model`` overrides the
    architecture of the weights but not of the stored config."""
    cfg = load_config("smoke")
    torch.manual_seed(0)
    net = ConvVAE(ModelConfig(**model) if model else cfg.model, 18)
    path = folder / "model.pt"
    atomic_torch_save(run_state(net, [], cfg, variant), path)
    return path


def _png(folder: Path, size: tuple[int, int], mode: str = "L") -> Path:
    from PIL import Image

    path = folder / "digit.png"
    Image.new(mode, size).save(path)
    return path


def _reproduce(*extra: str) -> Callable[[Path], list[str]]:
    return lambda folder: ["reproduce", *SMOKE, "--out", str(folder / "out"), *extra]


def _with(build: Callable[[Path], object], fmt: Callable[[object], list[str]]):
    """argv from a file builder: ``fmt(path)`` after ``reproduce``."""
    return lambda folder: _reproduce(*fmt(build(folder)))(folder)


def _data(build: Callable[[Path], Path]):
    return _with(build, lambda p: ["--data", str(p)])


def _cat(*rows: str):
    return _with(
        lambda f: _catalogue(f, *rows), lambda p: ["--set", f"concepts.catalogue={p}"]
    )


def _explain(build_run, image: Callable[[Path], str] | str = "test:0", *extra: str):
    def make(folder: Path) -> list[str]:
        img = image(folder) if callable(image) else image
        run = build_run(folder)
        return ["explain", img, "--run", str(run), *extra]

    return make


def _truncated(build: Callable[[Path], Path]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = build(folder)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path

    return make


def _malicious_checkpoint(folder: Path) -> Path:
    buf = io.BytesIO()
    torch.save({"format": 1, "model": _RunsCode(folder / "pwned")}, buf)
    path = folder / "model.pt"
    path.write_bytes(buf.getvalue())
    return path


def _malicious_pickle(folder: Path) -> Path:
    path = folder / "digits.pkl"
    path.write_bytes(pickle.dumps(_RunsCode(folder / "pwned")))
    return path


def _fake_embedded(folder: Path) -> dict[str, str]:
    """A ``mnist`` package first on the path whose data file is not the real one."""
    pkg = folder / "fake" / "mnist"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    with gzip.open(pkg / "data" / "mnist.pkl.gz", "wb") as fh:
        fh.write(pickle.dumps(_RunsCode(folder / "pwned"), protocol=2))
    return {"PYTHONPATH": os.pathsep.join([str(folder / "fake"), *sys.path[1:]])}


def _corrupt_cached_run(folder: Path) -> list[str]:
    """A truncated model.pt where ``reproduce`` looks for its baseline run."""
    argv = _reproduce("--cache", str(folder / "runs"))(folder)
    cfg = load_config(
        "smoke", ["data.num_train_digits=300", "data.num_test_digits=100"]
    )
    run = folder / "runs" / f"baseline-{run_key(cfg, 'baseline')}"
    run.mkdir(parents=True)
    (run / "model.pt").write_bytes(b"PK\x03\x04 truncated")
    return argv


def _npy(folder: Path, array: np.ndarray) -> str:
    path = folder / "digit.npy"
    np.save(path, array)
    return str(path)


def _nan_image() -> np.ndarray:
    img = np.zeros((28, 28), np.float32)
    img[3, 3] = np.nan
    return img


def _blocked_out(folder: Path) -> list[str]:
    (folder / "file").write_text("a file, not a folder")
    return ["reproduce", *SMOKE, "--out", str(folder / "file" / "out")]


def _yaml(text: str):
    def make(folder: Path) -> list[str]:
        path = folder / "profile.yaml"
        path.write_text(text)
        return ["reproduce", "--profile", str(path), "--out", str(folder / "out")]

    return make


M = small_mnist()
GOOD_ROW = "ok,1,0,3,4,5,6,1.5,fine"

CASES: dict[str, Case] = {
    # --- data: IDX files
    "idx truncated": Case(
        _data(
            lambda f: _idx_folder(
                f, train_images=_header(2051, 12, 28, 28) + bytes(100)
            )
        ),
        ("train-images-idx3-ubyte", "truncated"),
    ),
    "idx wrong magic": Case(
        _data(
            lambda f: _idx_folder(
                f, train_images=_header(2050, 12, 784) + M.x_train.tobytes()
            )
        ),
        ("train-images-idx3-ubyte", "wrong magic number 2050"),
    ),
    "idx count mismatch": Case(
        _data(
            lambda f: _idx_folder(
                f, t10k_labels=_header(2049, 6) + M.y_test[:6].astype("u1").tobytes()
            )
        ),
        ("t10k-labels-idx1-ubyte", "6 labels"),
    ),
    "idx wrong image size": Case(
        _data(
            lambda f: _idx_folder(
                f,
                train_images=_header(2051, 12, 27, 28) + M.x_train[:, :27].tobytes(),
            )
        ),
        ("train-images-idx3-ubyte", "27x28"),
    ),
    "idx label out of range": Case(
        _data(
            lambda f: _idx_folder(f, train_labels=_header(2049, 12) + bytes([10] * 12))
        ),
        ("train-labels-idx1-ubyte", "0..9"),
    ),
    "idx corrupt gzip": Case(
        _data(lambda f: _idx_folder(f, t10k_labels=b"\x1f\x8b" + bytes(30))),
        ("t10k-labels-idx1-ubyte", "corrupt gzip"),
    ),
    "idx file missing": Case(
        _data(
            lambda f: (_idx_folder(f) / "t10k-images-idx3-ubyte").unlink() or f / "idx"
        ),
        ("missing t10k-images-idx3-ubyte",),
    ),
    "idx single file": Case(
        _data(lambda f: _idx_folder(f) / "train-labels-idx1-ubyte"),
        ("train-labels-idx1-ubyte", "single IDX file"),
    ),
    # --- data: npz, pickles, paths
    "npz NaN pixels": Case(
        _data(lambda f: _npz(f, x_test=np.full((7, 28, 28), np.nan, np.float32))),
        ("digits.npz[x_test]", "NaN"),
    ),
    "npz out-of-range pixels": Case(
        _data(lambda f: _npz(f, x_train=np.full((12, 28, 28), 300, np.int32))),
        ("digits.npz[x_train]", "out of range"),
    ),
    "npz missing key": Case(
        _data(lambda f: _npz(f, y_test=None)),
        ("digits.npz", "missing key(s) y_test"),
    ),
    "npz wrong image shape": Case(
        _data(lambda f: _npz(f, x_test=np.zeros((7, 32, 32), np.uint8))),
        ("digits.npz[x_test]", "32x32"),
    ),
    "npz object array": Case(
        _data(lambda f: _npz(f, y_train=np.array([{"a": 1}] * 12, dtype=object))),
        ("digits.npz", "cannot read npz"),
    ),
    "data path missing": Case(
        _data(lambda f: f / "nowhere"), ("nowhere", "no such file or folder")
    ),
    "data unknown file type": Case(
        _data(lambda f: (f / "notes.txt").write_text("hello") and f / "notes.txt"),
        ("notes.txt", "unknown file type"),
    ),
    "pickle that runs code": Case(
        _data(_malicious_pickle), ("digits.pkl", "refusing to unpickle posix.system")
    ),
    "embedded checksum mismatch": Case(
        _reproduce(), ("mnist.pkl.gz", "SHA-256 mismatch"), env=_fake_embedded
    ),
    # --- concept catalogue
    "catalogue box off canvas": Case(
        _cat("wide,3,0,20,4,10,10,1.0,too wide"),
        ("catalogue.csv", "off the 28x28 canvas"),
    ),
    "catalogue zero width": Case(
        _cat("flat,3,0,2,4,0,10,1.0,no width"), ("catalogue.csv", "row 2")
    ),
    "catalogue negative height": Case(
        _cat("neg,3,0,2,4,5,-3,1.0,negative"), ("catalogue.csv", "row 2")
    ),
    "catalogue negative sd": Case(
        _cat("jitter,3,0,2,4,5,6,-1,negative sd"), ("catalogue.csv", "sd")
    ),
    "catalogue unknown digit": Case(
        _cat("eleven,11,0,2,4,5,6,1,no such digit"),
        ("catalogue.csv", "unknown source digit 11"),
    ),
    "catalogue duplicate names": Case(
        _cat(GOOD_ROW, GOOD_ROW.replace(",1,0,", ",2,0,")),
        ("catalogue.csv", "duplicate"),
    ),
    "catalogue not a number": Case(
        _cat("odd,3,0,two,4,5,6,1,x"), ("catalogue.csv", "row 2")
    ),
    "catalogue missing columns": Case(
        _with(
            lambda f: (f / "c.csv").write_text("name,digit\na,1\n") and f / "c.csv",
            lambda p: ["--set", f"concepts.catalogue={p}"],
        ),
        ("c.csv", "missing columns"),
    ),
    # --- config and command line
    "unknown profile": Case(
        lambda f: ["reproduce", "--profile", "nope", "--out", str(f / "out")],
        ("unknown profile 'nope'",),
    ),
    "unknown config key": Case(_reproduce("--set", "train.nope=1"), ("train.nope",)),
    "mistyped config key": Case(
        _reproduce("--set", "train.num_epoch=3"),
        ("unknown config key 'train.num_epoch'",),
    ),
    "config value of the wrong type": Case(
        _reproduce("--set", "train.num_epochs=zero"), ("train.num_epochs", "int")
    ),
    "config value out of range": Case(
        _reproduce("--set", "data.val_fraction=1.5"), ("data.val_fraction",)
    ),
    "override without =": Case(_reproduce("--set", "train.lr"), ("train.lr",)),
    "profile YAML with unknown section": Case(
        _yaml("profile: mine\ntraining:\n  num_epochs: 1\n"),
        ("profile.yaml", "unknown config key 'training'"),
    ),
    "profile YAML that does not parse": Case(
        _yaml("train: [unclosed\n"), ("profile.yaml", "cannot read YAML")
    ),
    "zero seeds": Case(_reproduce("--seeds", "0"), ("--seeds 0",)),
    "output folder under a file": Case(_blocked_out, ("cannot create output folder",)),
    # --- checkpoints
    "run cache with a truncated model.pt": Case(
        _corrupt_cached_run, ("model.pt", "not a valid conceptlib checkpoint")
    ),
    "explain: truncated checkpoint": Case(
        _explain(_truncated(_concept_checkpoint)),
        ("model.pt", "not a valid conceptlib checkpoint"),
    ),
    "explain: checkpoint of another architecture": Case(
        _explain(lambda f: _concept_checkpoint(f, enc_channels=(8, 16, 32, 32))),
        ("model.pt", "do not fit this architecture"),
    ),
    "explain: checkpoint that runs code": Case(
        _explain(_malicious_checkpoint), ("model.pt", "not a valid conceptlib")
    ),
    "explain: not a checkpoint": Case(
        _explain(lambda f: (f / "w.pt").write_text("weights?") and f / "w.pt"),
        ("w.pt", "not a valid conceptlib checkpoint"),
    ),
    "explain: baseline run": Case(
        _explain(lambda f: _concept_checkpoint(f, variant="baseline")),
        ("model.pt", "no trained concept channels"),
    ),
    "explain: no trained run in the cache": Case(
        lambda f: ["explain", "test:0", "--profile", "smoke", "--cache", str(f / "r")],
        ("no trained concept run for profile 'smoke'",),
    ),
    # --- images for explain
    "explain: PNG of the wrong shape": Case(
        _explain(_concept_checkpoint, lambda f: str(_png(f, (32, 32)))),
        ("digit.png", "image is 32x32, expected 28x28"),
    ),
    "explain: array with colour channels": Case(
        _explain(
            _concept_checkpoint, lambda f: _npy(f, np.zeros((28, 28, 3), np.uint8))
        ),
        ("digit.npy", "28x28x3"),
    ),
    "explain: NaN pixels": Case(
        _explain(_concept_checkpoint, lambda f: _npy(f, _nan_image())),
        ("digit.npy", "NaN"),
    ),
    "explain: not an image": Case(
        _explain(
            _concept_checkpoint,
            lambda f: (f / "x.png").write_text("text") and str(f / "x.png"),
        ),
        ("x.png", "not a readable image"),
    ),
    "explain: digit index out of range": Case(
        _explain(_concept_checkpoint, "test:10000"), ("test:10000", "out of range")
    ),
    "explain: missing image": Case(
        _explain(_concept_checkpoint, "nothing.png"), ("nothing.png", "no such image")
    ),
    "explain: figure into a missing folder": Case(
        _explain(_concept_checkpoint, "test:0", "--figure", "/nonexistent/e.png"),
        ("/nonexistent/e.png", "does not exist"),
    ),
}


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    folder: Path
    before: dict[str, bytes]


def _files(folder: Path) -> dict[str, bytes]:
    out = folder / "out"
    if not out.is_dir():
        return {}
    return {
        str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()
    }


def _run(name: str, case: Case, folder: Path, cache: Path) -> Outcome:
    try:
        return _run_case(case, folder, cache)
    except Exception as exc:  # one broken case must not take the others down
        return Outcome(-1, "", f"{name}: the test itself failed: {exc!r}", folder, {})


def _run_case(case: Case, folder: Path, cache: Path) -> Outcome:
    folder.mkdir(parents=True)
    (folder / "out").mkdir()
    (folder / "out" / "metrics.json").write_bytes(PREVIOUS)
    argv = case.make(folder)
    before = _files(folder)
    env = dict(os.environ)
    env.update(
        CONCEPTLIB_CACHE=str(cache), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES=""
    )
    env.update(case.env(folder))
    proc = subprocess.run(
        [sys.executable, "-m", "conceptlib", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        timeout=300,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr, folder, before)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, mnist, mnist_cache_dir):
    """Every case, run concurrently in its own folder (the MNIST cache is warm)."""
    root = tmp_path_factory.mktemp("bad-inputs")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            name: pool.submit(_run, name, case, root / f"case{i}", mnist_cache_dir)
            for i, (name, case) in enumerate(CASES.items())
        }
        return {name: f.result() for name, f in futures.items()}


def test_there_are_at_least_25_distinct_cases() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(outcomes: dict[str, Outcome], name: str) -> None:
    result = outcomes[name]
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(ERROR_PREFIX), lines[0]
    for part in CASES[name].expect:
        assert part in lines[0], (part, lines[0])
    assert "Traceback" not in result.stderr
    # nothing ran: no code from a pickle, no output written or overwritten
    assert not (result.folder / "pwned").exists()
    after = _files(result.folder)
    assert after == result.before, sorted(set(after) ^ set(result.before))
    assert after.get("metrics.json", PREVIOUS) == PREVIOUS
