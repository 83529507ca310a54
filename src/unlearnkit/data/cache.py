"""Cache of decoded dataset arrays as ``.npz`` files under ``cache_dir / "datasets"``.

A cache file is named after the dataset and a hash of its source files (absolute path, size,
mtime, ctime and inode of each), so editing, replacing or moving the data makes a new entry instead
of reusing a stale one. Files are written atomically and read with ``allow_pickle=False``; an unreadable or
malformed file is logged, ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

from unlearnkit.data.dataset import DataError, Dataset, ImageData

log = logging.getLogger(__name__)

# Bump when the layout of the cached arrays changes, so old files are not misread.
CACHE_FORMAT = 1


def walk_files(top: Path) -> Iterator[Path]:
    """Every file under the folder ``top``, sorted, following symlinked folders.

    Datasets are often assembled from symlinked class folders, so links are followed; a link back
    to one of its own ancestor folders is skipped, as following it would never end.
    """
    ancestors = {os.fspath(top): frozenset({os.path.realpath(top)})}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        above = ancestors.pop(dirpath)
        kept = []
        for dirname in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, dirname))
            if real not in above:
                kept.append(dirname)
                ancestors[os.path.join(dirpath, dirname)] = above | {real}
        dirnames[:] = kept
        for filename in sorted(filenames):
            yield Path(dirpath, filename)


def _iter_files(path: Path) -> Iterable[Path]:
    return walk_files(path) if path.is_dir() else [path]


def _file_key(file: Path) -> str:
    try:
        stat = file.stat()
    except OSError as exc:  # a dangling symlink: the loader decides whether it matters
        return f"{file}\x1f{type(exc).__name__}"
    # ctime and inode too: moving same-size files with equal mtimes over each other (mv after a tar
    # extraction) keeps each path's size and mtime but not its inode, and sets its ctime.
    return f"{file}\x1f{stat.st_size}\x1f{stat.st_mtime_ns}\x1f{stat.st_ctime_ns}\x1f{stat.st_ino}"


def source_key(sources: Iterable[Path], extra: str = "") -> str:
    """Hash the absolute path, size, mtime, ctime and inode of every source file (folders are walked).

    ``extra`` is mixed in too, for loader options that change the decoded arrays.
    """
    digest = hashlib.sha256(f"format={CACHE_FORMAT}\x1f{extra}".encode())
    for source in sources:
        for file in _iter_files(Path(source).absolute()):
            digest.update(f"\x1e{_file_key(file)}".encode())
    return digest.hexdigest()[:20]


def cache_path(cache_dir: Path, name: str, key: str) -> Path:
    """The ``.npz`` file for dataset ``name`` with source hash ``key``."""
    safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    return Path(cache_dir) / "datasets" / f"{safe_name}-{key}.npz"


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """Read every array of a cache file, or None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("ignoring unreadable dataset cache %s (%s); rebuilding it", path, exc)
        return None


def save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically: a temp file in the same folder, then ``os.replace``.

    A failure (read-only or full disk) is logged and otherwise ignored: the cache is an optimisation.
    """
    tmp = path.with_name(f".{path.stem}-{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # os.open with 0o666 lets the umask decide the permissions (tempfile would force 0600).
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not write dataset cache %s (%s)", path, exc)
    finally:
        tmp.unlink(missing_ok=True)


def _split_arrays(prefix: str, split: ImageData) -> dict[str, np.ndarray]:
    arrays = {
        f"{prefix}_images": split.images,
        f"{prefix}_labels": split.labels,
        f"{prefix}_class_names": np.array(split.class_names, dtype=str),
    }
    if split.coarse_labels is not None and split.coarse_names is not None:
        arrays[f"{prefix}_coarse_labels"] = split.coarse_labels
        arrays[f"{prefix}_coarse_names"] = np.array(split.coarse_names, dtype=str)
    return arrays


def dataset_to_arrays(dataset: Dataset) -> dict[str, np.ndarray]:
    """Flatten a dataset into plain (non-object) arrays that ``np.savez`` stores without pickling."""
    return {
        **_split_arrays("train", dataset.train),
        **_split_arrays("test", dataset.test),
        "source": np.array(dataset.source, dtype=str),
    }


def _split_from_arrays(prefix: str, arrays: Mapping[str, np.ndarray]) -> ImageData:
    coarse_names = arrays.get(f"{prefix}_coarse_names")
    return ImageData(
        images=arrays[f"{prefix}_images"],
        labels=arrays[f"{prefix}_labels"],
        class_names=tuple(str(n) for n in arrays[f"{prefix}_class_names"]),
        coarse_labels=arrays.get(f"{prefix}_coarse_labels"),
        coarse_names=None if coarse_names is None else tuple(str(n) for n in coarse_names),
    )


def dataset_from_arrays(name: str, arrays: Mapping[str, np.ndarray]) -> Dataset:
    """Rebuild a dataset from :func:`dataset_to_arrays` output (KeyError or DataError if malformed)."""
    return Dataset(
        name=name,
        train=_split_from_arrays("train", arrays),
        test=_split_from_arrays("test", arrays),
        source=str(arrays["source"]),
    )


def cached_dataset(
    cache_dir: Path, name: str, sources: Iterable[Path], build: Callable[[], Dataset], extra: str = ""
) -> Dataset:
    """Return the cached dataset for these source files, or ``build()`` it and cache the result."""
    path = cache_path(cache_dir, name, source_key(sources, extra))
    arrays = load_arrays(path)
    if arrays is not None:
        try:
            return dataset_from_arrays(name, arrays)
        except (KeyError, DataError) as exc:
            log.warning("ignoring malformed dataset cache %s (%s); rebuilding it", path, exc)
    dataset = build()
    save_arrays(path, dataset_to_arrays(dataset))
    return dataset
