"""Dataset loaders against tiny fixture files written in each real on-disk format."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unlearnkit.data import DataError, available_datasets, cache, cifar, dataset_info, idx, imagefolder, load_dataset

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No test may write to the home cache, find a system-wide copy or download with torchvision.
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "env-cache"))
    monkeypatch.setattr(idx, "SYSTEM_DIRS", ())
    monkeypatch.setitem(sys.modules, "torchvision", None)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _fail(*args: object, **kwargs: object) -> None:
    raise AssertionError("the decoder ran although the cache should have been used")


# ---------------------------------------------------------------------------------------- IDX


def write_idx(path: Path, array: np.ndarray, magic: int | None = None, gz: bool = True) -> None:
    header = struct.pack(">I", magic if magic is not None else 0x0800 | array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_fashion(folder: Path, n_train: int = 6, n_test: int = 4, gz: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        write_idx(folder / stem, array, gz=gz)
    return arrays


def test_read_idx_round_trip(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", array)
    write_idx(tmp_path / "b", array, gz=False)
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "a.gz"), array)
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "b"), array)


def test_read_idx_bad_magic_and_size(tmp_path: Path) -> None:
    write_idx(tmp_path / "bad", np.zeros((2, 2), np.uint8), magic=0x12345678)
    with pytest.raises(DataError, match="bad.gz"):
        idx.read_idx(tmp_path / "bad.gz")
    (tmp_path / "short").write_bytes(struct.pack(">IIII", 0x0803, 5, 28, 28) + b"\0" * 100)
    with pytest.raises(DataError, match="short.*truncated"):
        idx.read_idx(tmp_path / "short")


def test_fashion_mnist_from_idx_gz(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = write_fashion(tmp_path / "data" / "fashion-mnist")
    ds = load_dataset("fashion-mnist", root=tmp_path / "data", cache_dir=cache_dir)
    assert ds.train.images.shape == (6, 1, 28, 28) and ds.test.images.shape == (4, 1, 28, 28)
    assert ds.train.images.dtype == np.uint8 and ds.train.labels.dtype == np.int64
    np.testing.assert_array_equal(ds.train.images[:, 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.test.labels, arrays["t10k-labels-idx1-ubyte"])
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[-1] == "Ankle boot"

    monkeypatch.setattr(idx, "read_idx", _fail)
    again = load_dataset("fashion-mnist", root=tmp_path / "data", cache_dir=cache_dir)
    assert again.fingerprint() == ds.fingerprint() and again.source == ds.source


def test_fashion_mnist_torchvision_layout_uncompressed(tmp_path: Path, cache_dir: Path) -> None:
    arrays = write_fashion(tmp_path / "FashionMNIST" / "raw", gz=False)
    ds = load_dataset("fashion-mnist", root=tmp_path, cache_dir=cache_dir)
    np.testing.assert_array_equal(ds.test.images[:, 0], arrays["t10k-images-idx3-ubyte"])


def test_fashion_mnist_bad_file_is_named(tmp_path: Path, cache_dir: Path) -> None:
    write_fashion(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8), magic=0xDEADBEEF)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        load_dataset("fashion-mnist", root=tmp_path, cache_dir=cache_dir)


def test_fashion_mnist_missing_names_places(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", root=tmp_path, cache_dir=cache_dir)
    message = str(info.value)
    for place in (tmp_path, tmp_path / "fashion-mnist", tmp_path / "FashionMNIST" / "raw"):
        assert str(place) in message
    assert "apt install dataset-fashion-mnist" in message and "--data-root" in message


def test_corrupt_cache_is_rebuilt(tmp_path: Path, cache_dir: Path) -> None:
    write_fashion(tmp_path)
    ds = load_dataset("fashion-mnist", root=tmp_path, cache_dir=cache_dir)
    (cached,) = (cache_dir / "datasets").glob("fashion-mnist-*.npz")
    cached.write_bytes(b"not a zip file")
    again = load_dataset("fashion-mnist", root=tmp_path, cache_dir=cache_dir)
    assert again.fingerprint() == ds.fingerprint()
    assert cache.load_arrays(cached) is not None  # rewritten
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no temp files left


def test_cache_key_changes_with_the_source(tmp_path: Path) -> None:
    file = tmp_path / "f.bin"
    file.write_bytes(b"abc")
    key = cache.source_key([file])
    file.write_bytes(b"abcd")
    assert cache.source_key([file]) != key


# ---------------------------------------------------------------------------------------- CIFAR


def cifar_batch(n: int, seed: int, labels_key: bytes = b"labels", n_classes: int = 10) -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    batch: dict[bytes, object] = {
        b"batch_label": b"fixture batch",
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        labels_key: [int(v) for v in rng.integers(0, n_classes, n)],
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    return batch


def dump(obj: object, path: Path, protocol: int = 2) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def write_cifar10(folder: Path, per_batch: int = 2) -> dict[str, dict[bytes, object]]:
    folder.mkdir(parents=True, exist_ok=True)
    batches = {f"data_batch_{i}": cifar_batch(per_batch, i) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(3, 9)
    for name, batch in batches.items():
        dump(batch, folder / name)
    first = batches["data_batch_1"]
    (folder / "data_batch_1").write_bytes(py2_batch(first[b"data"], first[b"labels"]))  # type: ignore[arg-type]
    (folder / "batches.meta").write_bytes(py2_pickle(b"label_names", [n.encode() for n in CIFAR10_NAMES]))
    return batches


def py2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A CIFAR batch pickled byte for byte as Python 2 + numpy 1 wrote the official files."""
    uint8 = b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    shape = b"(" + b"".join(b"M" + struct.pack("<H", n) for n in data.shape) + b"t"
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
        + b"(K\x01" + shape + uint8 + b"\x89T" + struct.pack("<I", data.nbytes) + data.tobytes() + b"tb"
    )
    label_list = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return b"\x80\x02}(U\x04data" + array + b"U\x06labels" + label_list + b"u."


def py2_pickle(key: bytes, values: list[bytes]) -> bytes:
    """``{key: values}`` pickled the way Python 2 wrote the official files (str as SHORT_BINSTRING)."""

    def string(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b

    return b"\x80\x02}(" + string(key) + b"](" + b"".join(map(string, values)) + b"eu."


def tar_folder(folder: Path, archive: Path, arcname: str) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return archive


def test_cifar10_pickles(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = write_cifar10(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", root=tmp_path, cache_dir=cache_dir)
    assert ds.train.images.shape == (10, 3, 32, 32) and ds.test.images.shape == (3, 3, 32, 32)
    assert ds.class_names == tuple(CIFAR10_NAMES) and ds.train.coarse_labels is None
    first = batches["data_batch_1"]
    np.testing.assert_array_equal(ds.train.images[0], first[b"data"][0].reshape(3, 32, 32))  # type: ignore[index]
    # Row layout: the red plane first, row-major.
    assert ds.train.images[0, 0, 0, 1] == first[b"data"][0][1]  # type: ignore[index]
    assert ds.train.images[0, 2, 31, 31] == first[b"data"][0][3071]  # type: ignore[index]
    assert list(ds.test.labels) == batches["test_batch"][b"labels"]
    assert "pickles" in ds.source

    monkeypatch.setattr(cifar, "safe_unpickle", _fail)
    assert load_dataset("cifar10", root=tmp_path, cache_dir=cache_dir).fingerprint() == ds.fingerprint()


@pytest.mark.parametrize("as_root", [False, True])
def test_cifar10_tar_gz(tmp_path: Path, cache_dir: Path, as_root: bool) -> None:
    batches = write_cifar10(tmp_path / "src" / "cifar-10-batches-py")
    (tmp_path / "data").mkdir()
    archive = tar_folder(tmp_path / "src" / "cifar-10-batches-py", tmp_path / "data" / "cifar-10-python.tar.gz",
                         "cifar-10-batches-py")
    ds = load_dataset("cifar10", root=archive if as_root else tmp_path / "data", cache_dir=cache_dir)
    np.testing.assert_array_equal(ds.test.images.reshape(3, -1), batches["test_batch"][b"data"])
    assert str(archive) in ds.source


def test_cifar100_pickles_with_coarse_labels(tmp_path: Path, cache_dir: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    splits = {}
    for seed, split in enumerate(("train", "test")):
        batch = cifar_batch(5, seed, b"fine_labels", n_classes=100)
        batch[b"coarse_labels"] = [label // 5 for label in batch[b"fine_labels"]]  # type: ignore[attr-defined]
        dump(batch, folder / split, protocol=pickle.HIGHEST_PROTOCOL)  # protocol 5: arrays via _frombuffer
        splits[split] = batch
    fine, coarse = [f"fine{i}" for i in range(100)], [f"super{i}" for i in range(20)]
    dump({b"fine_label_names": [n.encode() for n in fine], b"coarse_label_names": [n.encode() for n in coarse]},
         folder / "meta")
    ds = load_dataset("cifar100", root=tmp_path, cache_dir=cache_dir)
    assert ds.train.images.shape == (5, 3, 32, 32) and ds.num_classes == 100
    assert ds.train.coarse_names == tuple(coarse) and len(ds.train.coarse_names) == 20
    assert list(ds.test.coarse_labels) == splits["test"][b"coarse_labels"]  # type: ignore[arg-type]
    assert list(ds.test.labels) == splits["test"][b"fine_labels"]
    np.testing.assert_array_equal(ds.train.images.reshape(5, -1), splits["train"][b"data"])

    again = load_dataset("cifar100", root=tmp_path, cache_dir=cache_dir)  # from the cache
    np.testing.assert_array_equal(again.test.coarse_labels, ds.test.coarse_labels)
    assert again.train.coarse_names == tuple(coarse)


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"echo hi > {self.marker}",)


def test_restricted_unpickler_refuses_os_system(tmp_path: Path, cache_dir: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"data": Evil(marker)}, protocol=2)
    with pytest.raises(DataError, match="system"):
        cifar.safe_unpickle(io.BytesIO(payload), "evil.pkl")
    assert not marker.exists()

    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    (folder / "data_batch_3").write_bytes(payload)
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", root=tmp_path, cache_dir=cache_dir)
    assert not marker.exists()


def test_restricted_unpickler_refuses_other_globals() -> None:
    for payload in (pickle.dumps(eval, protocol=2), pickle.dumps(Path("x")), b"cbuiltins\nexec\n."):
        with pytest.raises(DataError, match="refusing"):
            cifar.safe_unpickle(io.BytesIO(payload), "x.pkl")
    with pytest.raises(DataError, match="not a readable"):
        cifar.safe_unpickle(io.BytesIO(b"garbage"), "x.pkl")
    with pytest.raises(DataError, match="refusing _codecs.encode"):
        cifar.safe_unpickle(io.BytesIO(b"c_codecs\nencode\n(X\x01\x00\x00\x00xX\x04\x00\x00\x00zlibtR."), "x.pkl")


def test_cifar_missing_names_places(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", root=tmp_path, cache_dir=cache_dir)
    message = str(info.value)
    for place in ("cifar-10-batches-py", "cifar-10-python.tar.gz", "cifar10-jpeg.tar.gz", str(tmp_path)):
        assert place in message
    with pytest.raises(DataError, match="no data root"):
        load_dataset("cifar100", root=None, cache_dir=cache_dir)


# ---------------------------------------------------------------------------------------- ImageFolder


def write_tree(root: Path, classes: list[str], per_class: dict[str, int], size: tuple[int, int] = (6, 5),
               mode: str = "RGB", ext: str = "png") -> dict[tuple[str, str], list[np.ndarray]]:
    """``root/{train,test}/<class>/NNNN.<ext>`` with random pixels; returns the pixels in load order."""
    rng = np.random.default_rng(1)
    pixels: dict[tuple[str, str], list[np.ndarray]] = {}
    channels = 1 if mode == "L" else 3
    for split, count in per_class.items():
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                array = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
                image = Image.fromarray(array[..., 0] if mode == "L" else array, mode=mode)
                image.save(root / split / name / f"{i:04d}.{ext}")
                pixels.setdefault((split, name), []).append(array)
    return pixels


def expected(pixels: dict[tuple[str, str], list[np.ndarray]], split: str, classes: list[str]) -> np.ndarray:
    return np.stack([a for name in classes for a in pixels[(split, name)]]).transpose(0, 3, 1, 2)


def test_imagefolder_png_tree(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    classes = ["cat", "ant", "bee"]
    pixels = write_tree(tmp_path / "tree", classes, {"train": 3, "test": 2})
    (tmp_path / "tree" / "train" / "ant" / "notes.txt").write_text("ignored")
    ds = load_dataset("imagefolder", root=tmp_path / "tree", cache_dir=cache_dir)
    assert ds.class_names == ("ant", "bee", "cat")
    assert ds.train.images.shape == (9, 3, 5, 6) and ds.train.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.train.images, expected(pixels, "train", sorted(classes)))
    np.testing.assert_array_equal(ds.test.labels, [0, 0, 1, 1, 2, 2])

    monkeypatch.setattr(imagefolder, "decode_images", _fail)
    assert load_dataset("imagefolder", root=tmp_path / "tree", cache_dir=cache_dir).fingerprint() == ds.fingerprint()


def test_imagefolder_grayscale_is_one_channel(tmp_path: Path, cache_dir: Path) -> None:
    pixels = write_tree(tmp_path, ["a", "b"], {"train": 2, "test": 1}, mode="L")
    ds = imagefolder.load_imagefolder(tmp_path, cache_dir)
    assert ds.image_shape == (1, 5, 6)
    np.testing.assert_array_equal(ds.test.images, expected(pixels, "test", ["a", "b"]))


def test_imagefolder_nested_tar_gz(tmp_path: Path, cache_dir: Path) -> None:
    pixels = write_tree(tmp_path / "src" / "mydata", ["x", "y"], {"train": 2, "test": 2})
    (tmp_path / "data").mkdir()
    archive = tar_folder(tmp_path / "src" / "mydata", tmp_path / "data" / "mydata.tar.gz", "mydata")
    from_folder = load_dataset("imagefolder", root=tmp_path / "data", cache_dir=cache_dir)  # folder with one archive
    from_archive = load_dataset("imagefolder", root=archive, cache_dir=cache_dir)
    for ds in (from_folder, from_archive):
        np.testing.assert_array_equal(ds.train.images, expected(pixels, "train", ["x", "y"]))
        assert ds.class_names == ("x", "y") and "archive" in ds.source


def test_imagefolder_parallel_decode_matches(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pixels = write_tree(tmp_path, ["a", "b"], {"train": 5, "test": 3})
    monkeypatch.setattr(imagefolder, "PARALLEL_THRESHOLD", 0)
    monkeypatch.setattr(imagefolder, "_cpu_count", lambda: 2)
    ds = imagefolder.load_imagefolder(tmp_path, cache_dir)
    np.testing.assert_array_equal(ds.train.images, expected(pixels, "train", ["a", "b"]))


def test_imagefolder_errors(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(DataError, match="data-root"):
        load_dataset("imagefolder", root=None, cache_dir=cache_dir)
    write_tree(tmp_path / "mismatch", ["a", "b"], {"train": 1})
    write_tree(tmp_path / "mismatch", ["a", "c"], {"test": 1})
    with pytest.raises(DataError, match="only in train: \\['b'\\]"):
        imagefolder.load_imagefolder(tmp_path / "mismatch", cache_dir)
    write_tree(tmp_path / "sizes", ["a"], {"train": 1, "test": 1})
    Image.new("RGB", (3, 3)).save(tmp_path / "sizes" / "test" / "a" / "0009.png")
    with pytest.raises(DataError, match="one size"):
        imagefolder.load_imagefolder(tmp_path / "sizes", cache_dir)
    (tmp_path / "bad" / "train" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "test" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "train" / "a" / "x.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "bad" / "test" / "a" / "y.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="x.jpg"):
        imagefolder.load_imagefolder(tmp_path / "bad", cache_dir)


# ---------------------------------------------------------------------------------------- CIFAR-10 JPEG


def write_cifar_jpeg(root: Path, classes: list[str]) -> None:
    for split, count in (("train", 2), ("test", 1)):
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (32, 32), (20 * label, 100, 200 - 10 * i)).save(root / split / name / f"{i:04d}.jpg")


@pytest.mark.parametrize("layout", ["archive", "tree"])
def test_cifar10_jpeg_fallback(tmp_path: Path, cache_dir: Path, layout: str) -> None:
    write_cifar_jpeg(tmp_path / "src" / "cifar10-jpeg", CIFAR10_NAMES)
    root = tmp_path / "data"
    root.mkdir()
    if layout == "archive":
        tar_folder(tmp_path / "src" / "cifar10-jpeg", root / "cifar10-jpeg.tar.gz", "cifar10-jpeg")
    else:
        (tmp_path / "src" / "cifar10-jpeg").rename(root / "cifar10-jpeg")
    ds = load_dataset("cifar10", root=root, cache_dir=cache_dir)
    assert ds.name == "cifar10" and "JPEG" in ds.source
    assert ds.train.images.shape == (20, 3, 32, 32) and ds.test.images.shape == (10, 3, 32, 32)
    assert ds.class_names == tuple(CIFAR10_NAMES)
    np.testing.assert_array_equal(ds.test.labels, np.arange(10))
    red = ds.test.images[:, 0].mean(axis=(1, 2))
    assert np.abs(red - 20 * np.arange(10)).max() < 3  # lossy, but close

    again = load_dataset("cifar10", root=root, cache_dir=cache_dir)
    assert again.source == ds.source and again.fingerprint() == ds.fingerprint()


def test_cifar10_jpeg_with_wrong_classes(tmp_path: Path, cache_dir: Path) -> None:
    write_cifar_jpeg(tmp_path / "cifar10-jpeg", CIFAR10_NAMES[:9] + ["zebra"])
    with pytest.raises(DataError, match="does not look like CIFAR-10"):
        load_dataset("cifar10", root=tmp_path, cache_dir=cache_dir)


# ---------------------------------------------------------------------------------------- digits


def test_digits_fixed_split() -> None:
    ds = load_dataset("digits")
    assert ds.train.images.shape == (1437, 1, 8, 8) and ds.test.images.shape == (360, 1, 8, 8)
    assert ds.train.images.dtype == np.uint8 and ds.train.images.max() == 255
    assert ds.class_names == tuple(str(d) for d in range(10)) and ds.source == "scikit-learn load_digits"
    assert np.bincount(ds.test.labels).min() >= 35  # stratified: about 36 per class
    assert load_dataset("digits").fingerprint() == ds.fingerprint()


def test_digits_warns_that_a_data_root_is_not_read(tmp_path) -> None:
    with pytest.warns(UserWarning, match="digits ships with scikit-learn.*imagefolder"):
        ds = load_dataset("digits", root=tmp_path)
    assert ds.fingerprint() == load_dataset("digits").fingerprint()


def test_registry_lists_the_loaders() -> None:
    assert {"digits", "fashion-mnist", "cifar10", "cifar100", "imagefolder"} <= set(available_datasets())
    assert (dataset_info("digits").crop_pad, dataset_info("digits").flip) == (0, False)
    assert (dataset_info("fashion-mnist").crop_pad, dataset_info("fashion-mnist").flip) == (2, True)
    assert (dataset_info("cifar100").crop_pad, dataset_info("imagefolder").crop_pad) == (4, 4)
