"""IDX files (the MNIST family's format) and the Fashion-MNIST loader.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <number of dims>``, one big-endian
uint32 per dimension, then the values in row-major order, big-endian. The files are usually
gzipped.
"""

from __future__ import annotations

import gzip
import logging
import struct
import zlib
from pathlib import Path

import numpy as np

from unlearnkit.data.cache import cached_dataset
from unlearnkit.data.dataset import DataError, Dataset, ImageData
from unlearnkit.data.registry import register_dataset

log = logging.getLogger(__name__)

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# Where the Debian package dataset-fashion-mnist installs the files.
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)

HOW_TO_GET = (
    "Get it with one of: `apt install dataset-fashion-mnist` (Debian/Ubuntu); "
    "`pip install unlearnkit[download]` on a machine with a network and pass a writable --data-root DIR "
    "(torchvision downloads into it); or download the four IDX files "
    "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz) and pass --data-root DIR pointing at their folder"
)


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            is_gzip = f.read(2) == b"\x1f\x8b"
        if is_gzip:
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: corrupt compressed data
        raise DataError(f"cannot read IDX file {path}: {exc}; the file is unreadable or damaged, re-download it") from exc


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not, detected from its content) into a native-endian array.

    Raises:
        DataError: the file is not IDX (bad magic number or dtype code) or its size does not
            match the dimensions in its header.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise DataError(
            f"{path} is not an IDX file: magic number {data[:4].hex() or '(empty)'} should be "
            f"0000<dtype code><ndim> with dtype code one of {[f'{c:#04x}' for c in IDX_DTYPES]}; "
            "the file is corrupt or not what its name says"
        )
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes for {ndim} dimensions); re-download it")
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header_size != expected:
        raise DataError(
            f"{path}: IDX header says shape {dims} ({expected} bytes of data) but the file has "
            f"{len(data) - header_size} bytes after the header; the file is truncated or corrupt, re-download it"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def find_idx_files(folder: Path, stems: dict[str, str]) -> tuple[dict[str, Path], list[str]]:
    """Locate ``<stem>.gz`` or ``<stem>`` in ``folder`` for each stem: (found paths, missing stems)."""
    found, missing = {}, []
    for key, stem in stems.items():
        path = _find_file(folder, stem)
        if path is None:
            missing.append(stem)
        else:
            found[key] = path
    return found, missing


def _search_places(root: Path | None) -> list[Path]:
    places = [] if root is None else [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]
    return places + list(SYSTEM_DIRS)


def _search(places: list[Path], notes: list[str]) -> dict[str, Path] | None:
    for place in places:
        found, missing = find_idx_files(place, FASHION_MNIST_FILES)
        if not missing:
            return found
        if found:
            notes.append(f"{place} has only some of the files (missing {', '.join(missing)})")
    return None


def _torchvision_download(root: Path, notes: list[str]) -> None:
    try:
        from torchvision.datasets import FashionMNIST
    except ImportError:
        return
    log.info("Fashion-MNIST not found locally; downloading it with torchvision into %s", root)
    try:
        for train in (True, False):
            FashionMNIST(str(root), train=train, download=True)
    except Exception as exc:  # noqa: BLE001 - any download failure falls through to the DataError
        notes.append(f"torchvision download into {root} failed: {exc}")


def _check_labels(path: Path, labels: np.ndarray) -> None:
    # ImageData would refuse these too, but without naming the file.
    if labels.dtype.kind not in "iu":
        raise DataError(f"{path} holds {labels.dtype} values, not integer labels; re-download the labels file")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(FASHION_MNIST_CLASSES)):
        raise DataError(
            f"{path} holds labels from {labels.min()} to {labels.max()}, but Fashion-MNIST has "
            f"{len(FASHION_MNIST_CLASSES)} classes (0 to {len(FASHION_MNIST_CLASSES) - 1}); the file is corrupt "
            "or not Fashion-MNIST labels, re-download it"
        )


def _build(name: str, files: dict[str, Path]) -> Dataset:
    log.info("decoding Fashion-MNIST IDX files from %s", files["train_images"].parent)
    splits = {}
    for split in ("train", "test"):
        images, labels = read_idx(files[f"{split}_images"]), read_idx(files[f"{split}_labels"])
        if images.dtype != np.uint8 or images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{files[f'{split}_images']} holds {images.dtype} {images.shape} and {files[f'{split}_labels']} "
                f"holds {labels.shape}; expected (N, H, W) uint8 images and N labels"
            )
        _check_labels(files[f"{split}_labels"], labels)
        splits[split] = ImageData(images[:, None], labels.astype(np.int64), FASHION_MNIST_CLASSES)
    return Dataset(name, splits["train"], splits["test"], source=f"IDX files in {files['train_images'].parent}")


@register_dataset(
    "fashion-mnist", crop_pad=2, flip=True, description="Fashion-MNIST, 28x28 grayscale clothes, 10 classes (IDX files)"
)
def load_fashion_mnist(root: Path | None, cache_dir: Path) -> Dataset:
    """Load Fashion-MNIST from its four IDX files as ``(N, 1, 28, 28)`` uint8 images.

    Looks in ``root``, ``root/fashion-mnist``, ``root/FashionMNIST/raw`` (torchvision's layout) and
    ``/usr/share/datasets/fashion-mnist`` (Debian's dataset-fashion-mnist); if none has the files,
    ``root`` is given and torchvision is installed, downloads them with torchvision into ``root``.

    Raises:
        DataError: no place has the files (the message lists the places and how to get them), or
            a file is malformed.
    """
    places, notes = _search_places(root), []
    files = _search(places, notes)
    if files is None and root is not None:
        _torchvision_download(root, notes)
        files = _search([root / "FashionMNIST" / "raw"], notes)
    if files is None:
        searched = "; ".join(str(p) for p in places)
        extra = f" ({'; '.join(notes)})" if notes else ""
        hint = "" if root is not None else " No data root was given."
        raise DataError(f"fashion-mnist: IDX files not found in: {searched}{extra}.{hint} {HOW_TO_GET}")
    return cached_dataset(cache_dir, "fashion-mnist", files.values(), lambda: _build("fashion-mnist", files))
