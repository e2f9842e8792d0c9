"""MNIST IDX writers for the tests and benchmarks (the library only reads IDX)."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from conceptlib.data.mnist import IDX_NAMES, MNIST
from conceptlib.errors import ConceptlibError
from conceptlib.files import atomic_write_bytes


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a ``uint8`` array (or integers in 0..255) as an IDX file, atomically.

    Images ``(N, 28, 28)`` get magic number 2051 and labels ``(N,)`` 2049 (in
    general ``0x0800 + ndim``); gzip-compressed when the name ends with ``.gz``.

    Raises:
        ValueError: not integer, values outside 0..255, or no dimensions.
        ConceptlibError: the file cannot be written.
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
        raise ConceptlibError(f"{path}: cannot write: {exc.strerror or exc}") from None


def write_torchvision_raw(mnist: MNIST, root: str | os.PathLike[str]) -> Path:
    """Write the digits as the uncompressed IDX files torchvision reads
    (``root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``); returns
    the ``root/MNIST/raw`` folder."""
    raw = Path(root) / "MNIST" / "raw"
    for split, (images_name, labels_name) in IDX_NAMES.items():
        write_idx(raw / images_name, getattr(mnist, f"x_{split}"))
        write_idx(raw / labels_name, getattr(mnist, f"y_{split}"))
    return raw
