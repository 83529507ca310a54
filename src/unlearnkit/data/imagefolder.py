"""ImageFolder trees (``train/<class>/*.jpg`` and ``test/<class>/*.jpg``), on disk or in a tar archive.

Images are decoded with Pillow, in worker processes when there are many (about 70 us per 32x32
JPEG, so CIFAR-10 takes seconds), and the decoded arrays are cached (:mod:`unlearnkit.data.cache`),
so only the first load pays for decoding. Archives are read member by member in one sequential pass and
never extracted, so a hostile member name (absolute, ``..``) cannot write anywhere; a link member
(hard or symbolic) reads the archived file it points to, as the extracted tree would.

Files under ``train/`` and ``test/`` whose extension is not an image one are skipped with a warning
(one per load, with a count and an example), so that a forgotten format does not silently empty a class.
"""

from __future__ import annotations

import io
import logging
import math
import os
import posixpath
import tarfile
import warnings
import zlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from unlearnkit.data.cache import cached_dataset, walk_files
from unlearnkit.data.dataset import DataError, Dataset, ImageData
from unlearnkit.data.registry import register_dataset

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
# Formats Pillow decodes without optional plugins.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm"}
)
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
# Below this many images, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 2000

Payload = bytes | str  # encoded bytes (from an archive) or a file path (from a tree)
Skipped = list[tuple[str, str]]  # (split, file or "archive:member") of non-image files under a split
GRAY_MODES = frozenset({"1", "L", "LA"})


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


def archive_error(path: Path, exc: BaseException) -> DataError:
    """A one-line DataError for an unreadable archive (tarfile puts each method it tried on its own line)."""
    lines = [line.strip(" -") for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    reason = " ".join([lines[0], "; ".join(lines[1:])]).strip()
    if isinstance(exc, zlib.error):
        reason = f"corrupt compressed data ({reason})"
    return DataError(f"cannot read archive {path}: {reason}; the file is damaged or incomplete, re-download it")


# What reading a damaged tar or gzip stream raises (zlib.error is none of the others).
ARCHIVE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


def _image_parts(parts: tuple[str, ...]) -> tuple[str, str | None] | None:
    """Where the file ``split/class/.../file.ext`` goes: (split, class) for an image, (split, None)
    for another file under a split (skipped with a warning), None for hidden files and files outside."""
    if len(parts) < 2 or parts[0] not in SPLITS:
        return None
    if any(part.startswith(".") for part in parts[1:]):  # hidden files, e.g. macOS "._x.jpg"
        return None
    if len(parts) < 3 or PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
        return parts[0], None
    return parts[0], parts[1]


def _tree_entries(tree: Path) -> tuple[list[_Entry], Skipped]:
    entries, skipped = [], []
    for split in SPLITS:
        for path in walk_files(tree / split):  # follows symlinked class folders
            where = _image_parts(path.relative_to(tree).parts)
            if where is not None and where[1] is None:
                skipped.append((split, str(path)))
            elif where is not None:
                entries.append(_Entry(split, where[1], str(path), str(path)))
    return entries, skipped


def _member_place(name: str) -> tuple[str, tuple[str, str | None] | None]:
    """(prefix, place) of a member: the tree may sit at the top or inside one folder (cifar10-jpeg/train/...)."""
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    where = _image_parts(parts)
    if where is None and len(parts) > 1:
        return parts[0], _image_parts(parts[1:])
    return "", where


def _link_target(member: tarfile.TarInfo, index: dict[str, tarfile.TarInfo], archive: Path) -> tarfile.TarInfo:
    """The regular member that a hard or symbolic link member points to, through chains of links."""
    target, seen = member, {member.name}
    while target.islnk() or target.issym():
        # tar's rules: a hard link names a member; a symlink is relative to its own folder.
        folder = posixpath.dirname(target.name) if target.issym() else ""
        found = index.get(posixpath.normpath(posixpath.join(folder, target.linkname)))
        if found is None or found.name in seen:
            what = "is not in the archive" if found is None else "leads back to itself through links"
            raise DataError(
                f"{archive}:{member.name} links to {member.linkname!r}, which {what}; re-create the archive "
                "with the files themselves (tar --dereference) or add the missing file"
            )
        target = found
        seen.add(target.name)
    if not target.isfile():
        raise DataError(f"{archive}:{member.name} links to {member.linkname!r}, which is not a file; remove the link")
    return target


def _link_payloads(
    tar: tarfile.TarFile, links: list[tarfile.TarInfo], read: dict[str, bytes], archive: Path
) -> list[bytes]:
    """The bytes of the files that ``links`` point to (``read``: the files already read, by normalised name)."""
    index = {posixpath.normpath(m.name): m for m in tar.getmembers()}  # the pass has loaded every header
    targets = [_link_target(member, index, archive) for member in links]
    # Targets not read yet are read in archive order, so a gzip stream is rewound at most once.
    for target in sorted(targets, key=lambda t: t.offset):
        key = posixpath.normpath(target.name)
        if key not in read:
            read[key] = tar.extractfile(target).read()  # type: ignore[union-attr]
    return [read[posixpath.normpath(t.name)] for t in targets]


def _read_members(tar: tarfile.TarFile, archive: Path) -> tuple[dict[str, list[_Entry]], Skipped]:
    """Image entries by tree prefix, and the skipped files, in one sequential pass (links resolved after it)."""
    by_prefix: dict[str, list[_Entry]] = {}
    skipped: Skipped = []
    read: dict[str, bytes] = {}
    links: list[tuple[str, str, str, tarfile.TarInfo]] = []  # (prefix, split, class, member)
    for member in tar:
        prefix, where = _member_place(member.name)
        if where is None or member.isdir():
            continue
        if where[1] is None:
            skipped.append((where[0], f"{archive}:{member.name}"))
        elif member.isfile():
            payload = read[posixpath.normpath(member.name)] = tar.extractfile(member).read()  # type: ignore[union-attr]
            by_prefix.setdefault(prefix, []).append(_Entry(*where, f"{archive}:{member.name}", payload))
        elif member.islnk() or member.issym():
            links.append((prefix, where[0], where[1], member))
    if links:
        payloads = _link_payloads(tar, [link[3] for link in links], read, archive)
        for (prefix, split, class_name, member), payload in zip(links, payloads, strict=True):
            by_prefix.setdefault(prefix, []).append(_Entry(split, class_name, f"{archive}:{member.name}", payload))
    return by_prefix, skipped


def _archive_entries(archive: Path) -> tuple[list[_Entry], Skipped]:
    try:
        with tarfile.open(archive, "r:*") as tar:
            entries_by_prefix, skipped = _read_members(tar, archive)
    except ARCHIVE_ERRORS as exc:
        raise archive_error(archive, exc) from exc
    if len(entries_by_prefix) > 1:
        tops = ", ".join(repr(p or "(top level)") for p in sorted(entries_by_prefix))
        raise DataError(f"{archive} holds several ImageFolder trees ({tops}); keep one per archive")
    return next(iter(entries_by_prefix.values()), []), skipped


def _gray_levels(name: str, img: Image.Image) -> np.ndarray | None:
    """The (H, W) uint8 gray levels of a grayscale image, or None for a colour one."""
    if img.mode in GRAY_MODES:
        return np.asarray(img.convert("L"))  # "1" becomes 0/255, the alpha of "LA" is dropped
    if img.mode == "I" or img.mode.startswith("I;16"):
        # 16-bit gray (scans, depth maps): keep the high byte; converting to L would clip at 255.
        values = np.asarray(img)
        if values.min() < 0 or values.max() > 0xFFFF:
            raise DataError(f"image {name} has pixel values outside 0..65535 (mode I); convert it to 8 or 16 bits")
        return (values >> 8).astype(np.uint8)
    if img.mode == "F":
        raise DataError(f"image {name} holds floating-point pixels (mode F); convert it to an 8-bit PNG")
    return None


def _decode_one(name: str, payload: Payload) -> tuple[np.ndarray, bool]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(payload) if isinstance(payload, bytes) else payload) as img:
            gray = _gray_levels(name, img)
            if gray is not None:
                # The gray value goes into all three channels, so that gray and colour images stack and
                # a 1-channel dataset is recovered exactly from channel 0.
                return np.repeat(gray[..., None], 3, axis=2), True
            return np.asarray(img if img.mode == "RGB" else img.convert("RGB")), False
    except DataError:
        raise
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

    C is 1 when every image is grayscale (modes "1", "L", "LA", and 16-bit "I;16*"/"I", scaled to 8 bits)
    and 3 otherwise (other modes are converted to RGB, gray images copied into all three channels).
    Runs in worker processes when there are more than ``PARALLEL_THRESHOLD`` images.

    Raises:
        DataError: an image cannot be decoded, has float pixels (mode "F") or a different size from the others.
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


def _warn_skipped(source: Path, skipped: Skipped) -> None:
    if not skipped:
        return
    counts = Counter(split for split, _ in skipped)
    where = " and ".join(f"{counts[split]} in {split}/" for split in SPLITS if counts[split])
    warnings.warn(
        f"{source}: skipped {where} that are not images in a class folder (extensions: "
        f"{' '.join(sorted(IMAGE_EXTENSIONS))}), e.g. {min(name for _, name in skipped)}; "
        "convert them if they belong to the dataset",
        stacklevel=2,
    )


def _build(source: Path, name: str) -> Dataset:
    entries, skipped = _archive_entries(source) if source.is_file() else _tree_entries(source)
    _warn_skipped(source, skipped)
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
    labels index them. Within a class, images are ordered by path. Symlinked folders in a tree and
    link members in an archive are followed. Decoded arrays are cached under ``cache_dir``, keyed by
    ``name`` and the source files' paths, sizes, mtimes, ctimes and inodes.

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
