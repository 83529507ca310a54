"""Dataset loaders against tiny fixture files written in each real on-disk format."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import struct
import sys
import tarfile
import zlib
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


def gzip_cut(data: bytes, keep: int) -> bytes:
    """A gzip stream of ``data[:keep]`` then an invalid deflate block: reading past ``keep`` raises zlib.error."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip framing
    return compressor.compress(data[:keep]) + compressor.flush(zlib.Z_FULL_FLUSH) + b"\xff" * 16


def test_corrupt_gzip_idx_is_a_data_error(tmp_path: Path, cache_dir: Path) -> None:
    arrays = write_fashion(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip_cut(gzip.decompress(labels.read_bytes()), keep=5))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz.*re-download"):
        idx.read_idx(labels)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz.*re-download"):
        load_dataset("fashion-mnist", root=tmp_path, cache_dir=cache_dir)
    assert len(arrays["train-labels-idx1-ubyte"]) == 6


def test_fashion_mnist_labels_out_of_range_name_the_file(tmp_path: Path, cache_dir: Path) -> None:
    write_fashion(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 12, 3, 4], np.uint8))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz holds labels from 0 to 12.*re-download"):
        load_dataset("fashion-mnist", root=tmp_path, cache_dir=cache_dir)


def test_cache_sees_same_size_files_swapped_with_equal_mtimes(tmp_path: Path, cache_dir: Path) -> None:
    tree = tmp_path / "tree"  # not tmp_path itself: the cache files would be part of the source
    # Uncompressed BMPs of one size have one file size; tar extraction gives equal mtimes.
    for split in ("train", "test"):
        for name, colour in (("a", (200, 0, 0)), ("b", (0, 200, 0))):
            (tree / split / name).mkdir(parents=True)
            Image.new("RGB", (6, 5), colour).save(tree / split / name / "0.bmp")
            os.utime(tree / split / name / "0.bmp", ns=(10**18, 10**18))
    ds = imagefolder.load_imagefolder(tree, cache_dir)
    assert ds.train.images[0, 0, 0, 0] == 200  # class a is red
    a, b = tree / "train" / "a" / "0.bmp", tree / "train" / "b" / "0.bmp"
    os.rename(a, tmp_path / "swap.bmp")  # what `mv` does: sizes and mtimes stay, paths swap contents
    os.rename(b, a)
    os.rename(tmp_path / "swap.bmp", b)
    again = imagefolder.load_imagefolder(tree, cache_dir)
    assert again.train.images[0, 0, 0, 0] == 0 and again.train.images[0, 1, 0, 0] == 200  # class a is green now


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
    with pytest.warns(UserWarning, match="skipped 1 in train/.*notes.txt"):
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


def test_imagefolder_follows_symlinked_class_folders(tmp_path: Path, cache_dir: Path) -> None:
    pixels = write_tree(tmp_path / "real", ["a", "b"], {"train": 2, "test": 1})
    tree = tmp_path / "tree"
    for split in ("train", "test"):
        (tree / split).mkdir(parents=True)
        (tree / split / "a").symlink_to(tmp_path / "real" / split / "a", target_is_directory=True)
        shutil.copytree(tmp_path / "real" / split / "b", tree / split / "b")
    (tree / "train" / "b" / "up").symlink_to(tree / "train", target_is_directory=True)  # a loop must not hang
    key = cache.source_key([tree])
    ds = imagefolder.load_imagefolder(tree, cache_dir)
    assert ds.class_names == ("a", "b") and len(ds.train) == 4
    np.testing.assert_array_equal(ds.train.images, expected(pixels, "train", ["a", "b"]))
    Image.new("RGB", (6, 5)).save(tmp_path / "real" / "train" / "a" / "0000.png")  # edited behind the link
    assert cache.source_key([tree]) != key


def tar_with_link(archive: Path, link: str, target: str, hard: bool = False) -> None:
    """A tar.gz with one image per split of class a, plus ``link`` pointing at ``target``."""
    with tarfile.open(archive, "w:gz") as tar:
        folder = tarfile.TarInfo("train/a")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name in ("train/a/0.png", "test/a/0.png"):
            data = io.BytesIO()
            Image.new("RGB", (6, 5), (9, 9, 9)).save(data, "PNG")
            info = tarfile.TarInfo(name)
            info.size = len(data.getvalue())
            tar.addfile(info, io.BytesIO(data.getvalue()))
        info = tarfile.TarInfo(link)
        info.type, info.linkname = (tarfile.LNKTYPE if hard else tarfile.SYMTYPE), target
        tar.addfile(info)


def test_imagefolder_archive_reads_link_members_like_the_tree(tmp_path: Path, cache_dir: Path) -> None:
    src = tmp_path / "src" / "d"
    write_tree(src, ["a", "b"], {"train": 2, "test": 1})
    os.link(src / "train" / "a" / "0000.png", src / "train" / "b" / "0005.png")  # tar stores a hard link
    (src / "test" / "b" / "0005.png").symlink_to("../a/0000.png")
    archive = tar_folder(src, tmp_path / "d.tar.gz", "d")
    with tarfile.open(archive) as tar:
        assert {m.type for m in tar} >= {tarfile.LNKTYPE, tarfile.SYMTYPE}
    from_tree = imagefolder.load_imagefolder(src, cache_dir)
    from_archive = imagefolder.load_imagefolder(archive, cache_dir)
    assert (len(from_archive.train), len(from_archive.test)) == (5, 3)
    for split in ("train", "test"):
        np.testing.assert_array_equal(getattr(from_archive, split).images, getattr(from_tree, split).images)
        np.testing.assert_array_equal(getattr(from_archive, split).labels, getattr(from_tree, split).labels)
    np.testing.assert_array_equal(from_archive.train.images[4], from_archive.train.images[0])


@pytest.mark.parametrize(("target", "hard", "why"), [
    ("missing.png", False, "is not in the archive"),
    ("train/a/missing.png", True, "is not in the archive"),
    ("1.png", False, "leads back to itself"),
    ("../a", False, "is not a file"),
])
def test_imagefolder_archive_bad_link_is_named(tmp_path: Path, cache_dir: Path, target: str, hard: bool,
                                               why: str) -> None:
    tar_with_link(tmp_path / "d.tar.gz", "train/a/1.png", target, hard)
    with pytest.raises(DataError, match=f"d.tar.gz:train/a/1.png links to '{target}', which {why}"):
        imagefolder.load_imagefolder(tmp_path / "d.tar.gz", cache_dir)


def test_imagefolder_reads_other_pillow_formats_and_warns_about_skipped_files(
    tmp_path: Path, cache_dir: Path
) -> None:
    write_tree(tmp_path / "tree", ["cat", "dog"], {"test": 1})
    (tmp_path / "tree" / "train" / "cat").mkdir(parents=True)
    Image.new("RGB", (6, 5), (0, 0, 0)).save(tmp_path / "tree" / "train" / "cat" / "0.png")
    (tmp_path / "tree" / "train" / "dog").mkdir()
    extensions = ["webp", "gif", "tif", "tiff", "bmp"]
    for i, ext in enumerate(extensions):
        options = {"lossless": True} if ext == "webp" else {}
        Image.new("RGB", (6, 5), (40 * i + 40, 0, 0)).save(tmp_path / "tree" / "train" / "dog" / f"{i}.{ext}", **options)
    for junk in ("train/cat/notes.txt", "train/dog/labels.csv", "test/README.md", "train/cat/.DS_Store"):
        (tmp_path / "tree" / junk).write_text("not an image")
    archive = tar_folder(tmp_path / "tree", tmp_path / "tree.tar.gz", "tree")
    for source in (tmp_path / "tree", archive):
        with pytest.warns(UserWarning, match="skipped 2 in train/ and 1 in test/") as caught:
            ds = imagefolder.load_imagefolder(source, cache_dir)
        assert len(caught) == 1 and "\n" not in str(caught[0].message) and "e.g. " in str(caught[0].message)
        assert ds.class_names == ("cat", "dog") and len(ds.train) == 1 + len(extensions)
        assert np.abs(ds.train.images[1:, 0, 0, 0].astype(int) - (40 * np.arange(5) + 40)).max() <= 2


def test_imagefolder_16_bit_and_other_gray_modes_are_one_channel(tmp_path: Path, cache_dir: Path) -> None:
    values = (np.arange(30, dtype=np.uint16).reshape(5, 6) * 2000 + 255)  # up to 58255: beyond 8 bits
    gray = np.arange(30, dtype=np.uint8).reshape(5, 6) * 8
    for folder in ("train/a", "train/b", "test/a", "test/b"):
        (tmp_path / folder).mkdir(parents=True)
    Image.fromarray(values).save(tmp_path / "train/a/0.png")  # "I;16"
    Image.frombytes("I;16B", (6, 5), values.astype(">u2").tobytes()).save(tmp_path / "train/a/1.tif")
    Image.fromarray(values.astype(np.int32)).save(tmp_path / "train/a/2.tif")  # "I"
    Image.fromarray(np.stack([gray, np.full_like(gray, 7)], axis=-1), mode="LA").save(tmp_path / "train/b/0.png")
    Image.fromarray(gray > 100).save(tmp_path / "train/b/1.png")  # "1"
    Image.fromarray(gray).save(tmp_path / "test/a/0.png")
    Image.fromarray(gray).save(tmp_path / "test/b/0.png")
    ds = imagefolder.load_imagefolder(tmp_path, cache_dir)
    assert ds.image_shape == (1, 5, 6)
    for i in range(3):
        np.testing.assert_array_equal(ds.train.images[i, 0], values >> 8)
    np.testing.assert_array_equal(ds.train.images[3, 0], gray)
    np.testing.assert_array_equal(ds.train.images[4, 0], np.where(gray > 100, 255, 0))

    Image.new("RGB", (6, 5), (1, 2, 3)).save(tmp_path / "test/b/0.png")  # one colour image: 3 channels for all
    mixed = imagefolder.load_imagefolder(tmp_path, cache_dir)
    assert mixed.image_shape == (3, 5, 6)
    np.testing.assert_array_equal(mixed.train.images[0], np.stack([values >> 8] * 3))

    Image.fromarray(values.astype(np.float32)).save(tmp_path / "train/a/3.tif")  # "F"
    with pytest.raises(DataError, match="3.tif holds floating-point pixels"):
        imagefolder.load_imagefolder(tmp_path, cache_dir)


def test_corrupt_gzip_imagefolder_archive_is_one_line_data_error(tmp_path: Path, cache_dir: Path) -> None:
    raw = io.BytesIO()
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name in ("train/a/0.png", "test/a/0.png"):
            data = io.BytesIO()
            noise.save(data, "PNG")  # 12 kB: past the 8 kB that opening the archive reads ahead
            info = tarfile.TarInfo(name)
            info.size = len(data.getvalue())
            tar.addfile(info, io.BytesIO(data.getvalue()))
    # Cut inside the first image: reading it raises zlib.error (tarfile wraps only errors in headers).
    (tmp_path / "cut.tar.gz").write_bytes(gzip_cut(raw.getvalue(), keep=512 + 10000))
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar archive at all" * 40)  # tarfile lists each method it tried
    for name, reason in (("cut.tar.gz", "corrupt compressed data"), ("junk.tar.gz", "could not be opened")):
        with pytest.raises(DataError, match=f"{name}: .*{reason}.*re-download") as info:
            imagefolder.load_imagefolder(tmp_path / name, cache_dir)
        assert "\n" not in str(info.value)


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


def test_cifar10_jpeg_archive_with_a_readme_first(tmp_path: Path, cache_dir: Path) -> None:
    write_cifar_jpeg(tmp_path / "src" / "cifar10-jpeg", CIFAR10_NAMES)
    (tmp_path / "src" / "cifar10-jpeg" / "README.txt").write_text("CIFAR-10 as JPEG")  # sorts before test/, train/
    archive = tar_folder(tmp_path / "src" / "cifar10-jpeg", tmp_path / "cifar10-jpeg.tar.gz", "cifar10-jpeg")
    with tarfile.open(archive) as tar:
        assert [m.name for m in tar if m.isfile()][0] == "cifar10-jpeg/README.txt"
    ds = load_dataset("cifar10", root=archive, cache_dir=cache_dir)
    assert "JPEG" in ds.source and ds.train.images.shape == (20, 3, 32, 32)


def test_corrupt_gzip_cifar_archive_is_a_data_error(tmp_path: Path, cache_dir: Path) -> None:
    write_cifar10(tmp_path / "src" / "cifar-10-batches-py", per_batch=4)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    with tarfile.open(fileobj=io.BytesIO(raw.getvalue())) as tar:
        cut = tar.getmember("cifar-10-batches-py/data_batch_2").offset_data + 4000
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(gzip_cut(raw.getvalue(), keep=cut))  # a zlib.error while reading data_batch_2
    with pytest.raises(DataError, match="cifar-10-python.tar.gz.*corrupt compressed data.*re-download"):
        load_dataset("cifar10", root=archive, cache_dir=cache_dir)


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
