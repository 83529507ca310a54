"""ImageFolder trees (``train/<class>/*.jpg`` and ``test/<class>/*.jpg``), on disk or in a tar archive.

Images are decoded with Pillow, in worker processes when there are many (about 70 us per 32x32
JPEG, so CIFAR-10 takes seconds), and the decoded arrays are cached (:mod:`unlearnkit.data.cache`),
so only the first load pays for decoding. Archives are read member by member in one sequential pass and
never extracted, so a hostile member name (absolute, ``..``) cannot write anywhere.
"""

from __future__ import annotations

import io
import logging
import math
import os
import tarfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from unlearnkit.data.cache import cached_dataset
from unlearnkit.data.dataset import DataError, Dataset, ImageData
from unlearnkit.data.registry import register_dataset

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
# Below this many images, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 2000

Payload = bytes | str  # encoded bytes (from an archive) or a file path (from a tree)


@dataclass(frozen=True)
class _Entry:
    split: str
    class_name: str
    name: str  # file path, or "archive:member"; orders images within a class and names them in errors
    payload: Payload


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a file named like a tar archive (.tar.gz, .tgz, .tar)."""
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def is_tree(path: Path) -> bool:
    """Whether ``path`` is a folder with ``train/`` and ``test/`` subfolders."""
    return all((path / split).is_dir() for split in SPLITS)


def resolve_imagefolder(path: Path) -> Path:
    """The tree folder or archive that ``path`` designates.

    ``path`` may be a tree (with ``train/`` and ``test/``), an archive, or a folder holding exactly
    one tree or (when it has no tree) exactly one archive.

    Raises:
        DataError: ``path`` does not exist, or holds no tree/archive or several of them.
    """
    path = Path(path)
    if is_archive(path) or (path.is_dir() and is_tree(path)):
        return path
    if not path.is_dir():
        raise DataError(
            f"{path} is neither a folder nor a .tar.gz/.tgz/.tar archive; point --data-root at an "
            "ImageFolder tree (train/<class>/*.jpg, test/<class>/*.jpg) or an archive of one"
        )
    trees = sorted(p for p in path.iterdir() if p.is_dir() and is_tree(p))
    archives = sorted(p for p in path.iterdir() if is_archive(p))
    if len(trees) == 1:
        return trees[0]
    if not trees and len(archives) == 1:
        return archives[0]
    found = ", ".join(p.name for p in trees + archives) or "nothing suitable"
    raise DataError(
        f"{path} must hold train/ and test/ folders, or exactly one ImageFolder tree or archive "
        f"(found: {found}); point --data-root at the one to use"
    )


def _image_parts(parts: tuple[str, ...]) -> tuple[str, str] | None:
    """(split, class) for ``split/class/.../file.ext`` paths of images, else None."""
    if len(parts) < 3 or parts[0] not in SPLITS:
        return None
    if any(part.startswith(".") for part in parts[1:]):  # hidden files, e.g. macOS "._x.jpg"
        return None
    if PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
        return None
    return parts[0], parts[1]


def _tree_entries(tree: Path) -> Iterator[_Entry]:
    for split in SPLITS:
        for dirpath, dirnames, filenames in os.walk(tree / split):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(tree).parts
            for filename in filenames:
                where = _image_parts((*rel_dir, filename))
                if where is not None:
                    path = os.path.join(dirpath, filename)
                    yield _Entry(*where, path, path)


def _archive_entries(archive: Path) -> list[_Entry]:
    entries_by_prefix: dict[str, list[_Entry]] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = tuple(p for p in PurePosixPath(member.name).parts if p not in ("", "."))
                # The tree may sit at the top of the archive or inside one folder (cifar10-jpeg/train/...).
                prefix, where = "", _image_parts(parts)
                if where is None and len(parts) > 1:
                    prefix, where = parts[0], _image_parts(parts[1:])
                if where is None or not member.isfile():
                    continue
                payload = tar.extractfile(member).read()  # type: ignore[union-attr]
                entry = _Entry(*where, f"{archive}:{member.name}", payload)
                entries_by_prefix.setdefault(prefix, []).append(entry)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"cannot read archive {archive}: {exc}; check or re-download it") from exc
    if len(entries_by_prefix) > 1:
        tops = ", ".join(repr(p or "(top level)") for p in sorted(entries_by_prefix))
        raise DataError(f"{archive} holds several ImageFolder trees ({tops}); keep one per archive")
    return next(iter(entries_by_prefix.values()), [])


def _decode_one(name: str, payload: Payload) -> tuple[np.ndarray, bool]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(payload) if isinstance(payload, bytes) else payload) as img:
            # Converting L to RGB copies the gray value into all three channels, so a 1-channel
            # dataset is recovered exactly from channel 0.
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            return np.asarray(rgb), img.mode == "L"
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {name}: {exc}; remove or replace the file") from exc


def _decode_chunk(items: list[tuple[str, Payload]]) -> tuple[np.ndarray, np.ndarray]:
    """Decode images that must share one size: ``(n, H, W, 3)`` uint8 and an "is grayscale" mask."""
    arrays, gray = [], np.zeros(len(items), dtype=bool)
    for i, (name, payload) in enumerate(items):
        array, gray[i] = _decode_one(name, payload)
        if arrays and array.shape != arrays[0].shape:
            raise DataError(
                f"image {name} is {array.shape[1]}x{array.shape[0]} but {items[0][0]} is "
                f"{arrays[0].shape[1]}x{arrays[0].shape[0]}; all images of a dataset must have one size"
            )
        arrays.append(array)
    return np.stack(arrays), gray


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def decode_images(items: list[tuple[str, Payload]]) -> np.ndarray:
    """Decode (name, bytes or path) images into one uint8 ``(N, C, H, W)`` array.

    C is 1 when every image is grayscale ("L" mode) and 3 otherwise (other modes are converted to
    RGB). Runs in worker processes when there are more than ``PARALLEL_THRESHOLD`` images.

    Raises:
        DataError: an image cannot be decoded or has a different size from the others.
    """
    workers = min(_cpu_count(), 32)
    if len(items) <= PARALLEL_THRESHOLD or workers < 2:
        chunks = [items]
        results = [_decode_chunk(items)]
    else:
        size = max(64, math.ceil(len(items) / (workers * 4)))
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        log.debug("decoding %d images in %d chunks with %d processes", len(items), len(chunks), workers)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_decode_chunk, chunks))
    first_shape = results[0][0].shape[1:]
    for chunk, (array, _) in zip(chunks, results, strict=True):
        if array.shape[1:] != first_shape:
            raise DataError(
                f"image {chunk[0][0]} is {array.shape[2]}x{array.shape[1]} but {items[0][0]} is "
                f"{first_shape[1]}x{first_shape[0]}; all images of a dataset must have one size"
            )
    images = np.concatenate([array for array, _ in results])
    if all(gray.all() for _, gray in results):
        images = images[..., :1]
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _split_data(entries: list[_Entry], images: np.ndarray, class_names: tuple[str, ...]) -> ImageData:
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.array([index[e.class_name] for e in entries], dtype=np.int64)
    return ImageData(images, labels, class_names)


def _class_names(source: Path, by_split: dict[str, list[_Entry]]) -> tuple[str, ...]:
    train_classes = {e.class_name for e in by_split["train"]}
    test_classes = {e.class_name for e in by_split["test"]}
    if not train_classes:
        raise DataError(f"{source} has no images under train/<class>/ (extensions: {sorted(IMAGE_EXTENSIONS)})")
    if train_classes != test_classes:
        raise DataError(
            f"{source}: train and test have different class folders (only in train: "
            f"{sorted(train_classes - test_classes)}, only in test: {sorted(test_classes - train_classes)}); "
            "both splits need one folder per class"
        )
    return tuple(sorted(train_classes))


def _build(source: Path, name: str) -> Dataset:
    entries = _archive_entries(source) if source.is_file() else list(_tree_entries(source))
    by_split = {
        split: sorted((e for e in entries if e.split == split), key=lambda e: (e.class_name, e.name))
        for split in SPLITS
    }
    class_names = _class_names(source, by_split)
    ordered = by_split["train"] + by_split["test"]
    log.info("decoding %d images from %s (cached after this first load)", len(ordered), source)
    images = decode_images([(e.name, e.payload) for e in ordered])
    n_train = len(by_split["train"])
    kind = "archive" if source.is_file() else "tree"
    return Dataset(
        name,
        train=_split_data(by_split["train"], images[:n_train], class_names),
        test=_split_data(by_split["test"], images[n_train:], class_names),
        source=f"ImageFolder {kind} {source.absolute()}",
    )


def load_imagefolder(path: Path, cache_dir: Path, name: str = "imagefolder") -> Dataset:
    """Load an ImageFolder tree or archive (see :func:`resolve_imagefolder`) as a :class:`Dataset`.

    Class names are the sorted class folder names of ``train/`` (``test/`` must have the same ones);
    labels index them. Within a class, images are ordered by path. Decoded arrays are cached under
    ``cache_dir``, keyed by ``name`` and the source files' paths, sizes and mtimes.

    Raises:
        DataError: no tree/archive at ``path``, mismatched classes, or an undecodable or odd-sized image.
    """
    source = resolve_imagefolder(Path(path))
    return cached_dataset(cache_dir, name, [source], lambda: _build(source, name), extra="imagefolder")


@register_dataset(
    "imagefolder",
    crop_pad=4,
    flip=True,
    description="any train/<class>/*.jpg + test/<class>/*.jpg tree or .tar.gz of one (--data-root)",
)
def load_imagefolder_dataset(root: Path | None, cache_dir: Path) -> Dataset:
    """Load the ImageFolder tree or archive at ``root`` (required)."""
    if root is None:
        raise DataError(
            "imagefolder needs a data root: pass --data-root DIR (or root=...) pointing at a folder with "
            "train/<class>/*.jpg and test/<class>/*.jpg, or at a .tar.gz of such a folder"
        )
    return load_imagefolder(root, cache_dir, name="imagefolder")
