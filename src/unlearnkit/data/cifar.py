"""CIFAR-10 and CIFAR-100 from the official python pickles, read with a restricted unpickler.

``pickle.load`` runs whatever code a file names, so a tampered download could run a command. The
CIFAR pickles only hold dicts, lists, strings, numbers and numpy arrays, so :class:`SafeUnpickler`
resolves exactly the numpy globals that arrays need and refuses every other global.

CIFAR-10 can also come from a JPEG ImageFolder copy (``cifar10-jpeg.tar.gz``); its pixels are a
lossy re-encoding, and ``Dataset.source`` says so.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np

from unlearnkit.data.cache import cached_dataset
from unlearnkit.data.dataset import DataError, Dataset, ImageData
from unlearnkit.data.imagefolder import (
    ARCHIVE_ERRORS,
    IMAGE_EXTENSIONS,
    archive_error,
    is_tree,
    load_imagefolder,
    resolve_imagefolder,
)
from unlearnkit.data.registry import register_dataset

log = logging.getLogger(__name__)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_JPEG_NAME = "cifar10-jpeg"


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1"); only that
    # exact use is let through, not the codec machinery in general.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise DataError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r}) in a pickle")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    # Pickles name the module numpy had when they were written: numpy.core before 2.0, numpy._core after.
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        # Protocol-5 pickles (a CIFAR batch re-saved by Python 3) build arrays from a raw buffer.
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the numpy globals that plain arrays need.

    Any other global (``os.system``, ``builtins.eval``, a class...) raises :class:`DataError`
    before it can be called.
    """

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed numpy global; refuse anything else with DataError."""
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(
                f"refusing to unpickle the global {module}.{name}: CIFAR pickles hold only dicts, lists, "
                "strings, numbers and numpy arrays, so this file is corrupt or tampered with; re-download it"
            ) from None


def safe_unpickle(file: IO[bytes], origin: str) -> Any:
    """Unpickle ``file`` (keys and strings decoded as bytes) with :class:`SafeUnpickler`.

    Raises:
        DataError: naming ``origin``, when the pickle references a forbidden global or is malformed.
    """
    try:
        return SafeUnpickler(file, encoding="bytes").load()
    except DataError as exc:
        raise DataError(f"{origin}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a malformed pickle can raise nearly anything
        raise DataError(f"{origin}: not a readable CIFAR pickle ({type(exc).__name__}: {exc}); re-download it") from exc


@dataclass(frozen=True)
class CifarLayout:
    """Where the files of one CIFAR variant are and which keys they use."""

    name: str
    title: str
    folder: str
    archive: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    labels_key: str
    names_key: str
    coarse: bool
    torchvision_class: str
    url: str

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train_files, *self.test_files, self.meta_file)


CIFAR10 = CifarLayout(
    name="cifar10",
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    labels_key="labels",
    names_key="label_names",
    coarse=False,
    torchvision_class="CIFAR10",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
)
CIFAR100 = CifarLayout(
    name="cifar100",
    title="CIFAR-100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    labels_key="fine_labels",
    names_key="fine_label_names",
    coarse=True,
    torchvision_class="CIFAR100",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
)


# ---------------------------------------------------------------------------------------- finding

PICKLE_FILES = frozenset(CIFAR10.files + CIFAR100.files)
# Members looked at to tell a JPEG archive from a pickle one.
PROBE_MEMBERS = 64


def _is_image_archive(path: Path) -> bool:
    """Whether a tar archive holds images (the JPEG copy) rather than CIFAR pickles.

    A README or licence may come first, so members are looked at until an image or a pickle file name
    decides, up to ``PROBE_MEMBERS`` of them; reading stops there (the pickle archives are 160 MB).
    """
    try:
        with tarfile.open(path, "r:*") as tar:
            for _, member in zip(range(PROBE_MEMBERS), tar, strict=False):
                name = PurePosixPath(member.name)
                if not member.isdir() and name.suffix.lower() in IMAGE_EXTENSIONS:
                    return True
                if member.isfile() and name.name in PICKLE_FILES:
                    return False
    except ARCHIVE_ERRORS as exc:
        raise archive_error(path, exc) from exc
    return False


def _find_pickles(layout: CifarLayout, root: Path, places: list[str]) -> Path | None:
    """A folder with all the pickle files or an archive of them, recording each place looked at."""
    if root.is_file():
        places.append(f"{root} (as an archive of {layout.folder}/)")
        return root if not _is_image_archive(root) else None
    for folder in (root, root / layout.folder):
        missing = [f for f in layout.files if not (folder / f).is_file()]
        partial = f" (missing {', '.join(missing)})" if folder.is_dir() and len(missing) < len(layout.files) else ""
        places.append(f"{folder}/{partial}")
        if not missing:
            return folder
    archive = root / layout.archive
    places.append(str(archive))
    return archive if archive.is_file() else None


def _find_jpeg(root: Path, places: list[str], notes: list[str]) -> Path | None:
    """The CIFAR-10 JPEG ImageFolder archive or tree in ``root``, recording each place looked at."""
    if root.is_file():
        return root if _is_image_archive(root) else None
    archive, folder = root / f"{CIFAR_JPEG_NAME}.tar.gz", root / CIFAR_JPEG_NAME
    places += [str(archive), f"{folder}/ (train/ and test/, or {archive.name})", f"{root}/train/ and test/"]
    for candidate in (archive, folder):
        if candidate.exists():
            try:
                return resolve_imagefolder(candidate)
            except DataError as exc:
                notes.append(str(exc))
    return root if is_tree(root) else None


# ---------------------------------------------------------------------------------------- reading


def _read_folder(layout: CifarLayout, folder: Path) -> dict[str, Any]:
    objects = {}
    for filename in layout.files:
        with open(folder / filename, "rb") as f:
            objects[filename] = safe_unpickle(f, str(folder / filename))
    return objects


def _read_archive(layout: CifarLayout, archive: Path) -> dict[str, Any]:
    objects = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = tuple(p for p in PurePosixPath(member.name).parts if p != ".")
                in_folder = len(parts) == 1 or (len(parts) == 2 and parts[0] == layout.folder)
                if member.isfile() and in_folder and parts[-1] in layout.files:
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    objects[parts[-1]] = safe_unpickle(io.BytesIO(data), f"{archive}:{member.name}")
    except ARCHIVE_ERRORS as exc:
        raise archive_error(archive, exc) from exc
    missing = [f for f in layout.files if f not in objects]
    if missing:
        raise DataError(
            f"{archive} lacks {', '.join(missing)} (expected {layout.folder}/<file>); is it {layout.archive}?"
        )
    return objects


def _field(obj: Any, key: str, origin: str) -> Any:
    if not isinstance(obj, dict):
        raise DataError(f"{origin}: expected a dict, found {type(obj).__name__}; is this a CIFAR python pickle?")
    for candidate in (key.encode(), key):
        if candidate in obj:
            return obj[candidate]
    raise DataError(f"{origin}: no {key!r} entry (keys: {sorted(map(str, obj))}); is this a CIFAR python pickle?")


def _names(meta: Any, key: str, origin: str) -> tuple[str, ...]:
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in _field(meta, key, origin))


def _int_array(obj: Any, key: str, origin: str) -> np.ndarray:
    try:
        values = np.asarray(_field(obj, key, origin), dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"{origin}: {key!r} should be a list of integers ({exc})") from exc
    if values.ndim != 1:
        raise DataError(f"{origin}: {key!r} should be a flat list of integers, found shape {values.shape}")
    return values


def _batch(obj: Any, key: str, origin: str) -> tuple[np.ndarray, np.ndarray]:
    data = _field(obj, "data", origin)
    labels = _int_array(obj, key, origin)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        shape = getattr(data, "shape", None)
        raise DataError(f"{origin}: 'data' should be a uint8 (N, 3072) array, found {type(data).__name__} {shape}")
    if labels.shape != (len(data),):
        raise DataError(f"{origin}: {len(data)} images but {key!r} has shape {labels.shape}")
    # Each row is the red, green, then blue 32x32 plane, row-major: exactly C x H x W.
    return data.reshape(-1, 3, 32, 32), labels


def _split(layout: CifarLayout, objects: dict[str, Any], files: tuple[str, ...], origin: str) -> ImageData:
    meta_origin = f"{origin}/{layout.meta_file}"
    parts = [_batch(objects[f], layout.labels_key, f"{origin}/{f}") for f in files]
    coarse_labels = coarse_names = None
    if layout.coarse:
        coarse_labels = np.concatenate([_int_array(objects[f], "coarse_labels", f"{origin}/{f}") for f in files])
        coarse_names = _names(objects[layout.meta_file], "coarse_label_names", meta_origin)
        if coarse_labels.shape != (sum(len(labels) for _, labels in parts),):
            raise DataError(f"{origin}: {len(coarse_labels)} coarse labels do not match the number of images")
        if len(coarse_labels) and not 0 <= coarse_labels.min() <= coarse_labels.max() < len(coarse_names):
            raise DataError(f"{origin}: coarse labels outside [0, {len(coarse_names)}) for the meta's coarse names")
    return ImageData(
        images=np.concatenate([images for images, _ in parts]),
        labels=np.concatenate([labels for _, labels in parts]),
        class_names=_names(objects[layout.meta_file], layout.names_key, meta_origin),
        coarse_labels=coarse_labels,
        coarse_names=coarse_names,
    )


def _build_from_pickles(layout: CifarLayout, source: Path) -> Dataset:
    log.info("reading %s pickles from %s", layout.title, source)
    objects = _read_archive(layout, source) if source.is_file() else _read_folder(layout, source)
    origin = str(source)
    return Dataset(
        layout.name,
        train=_split(layout, objects, layout.train_files, origin),
        test=_split(layout, objects, layout.test_files, origin),
        source=f"{layout.title} python pickles in {source.absolute()}",
    )


def _load_pickles(layout: CifarLayout, source: Path, cache_dir: Path) -> Dataset:
    files = [source] if source.is_file() else [source / f for f in layout.files]
    return cached_dataset(cache_dir, layout.name, files, lambda: _build_from_pickles(layout, source), extra="pickles")


def _load_jpeg(source: Path, cache_dir: Path) -> Dataset:
    dataset = load_imagefolder(source, cache_dir, name="cifar10")
    if dataset.class_names != CIFAR10_CLASSES or dataset.image_shape != (3, 32, 32):
        raise DataError(
            f"{source} does not look like CIFAR-10: classes {list(dataset.class_names)} and image shape "
            f"{dataset.image_shape}, expected {list(CIFAR10_CLASSES)} and (3, 32, 32); use the imagefolder "
            "dataset for other image trees"
        )
    return dataclasses.replace(
        dataset, source=f"CIFAR-10 JPEG re-encoding (lossy; not the original pickles) from {source.absolute()}"
    )


# ---------------------------------------------------------------------------------------- loading


def _torchvision_download(layout: CifarLayout, root: Path, notes: list[str]) -> Path | None:
    try:
        import torchvision.datasets
    except ImportError:
        return None
    log.info("%s not found locally; downloading it with torchvision into %s", layout.title, root)
    try:
        getattr(torchvision.datasets, layout.torchvision_class)(str(root), train=True, download=True)
    except Exception as exc:  # noqa: BLE001 - any download failure falls through to the DataError
        notes.append(f"torchvision download into {root} failed: {exc}")
        return None
    return _find_pickles(layout, root, [])


def _missing_error(layout: CifarLayout, root: Path | None, places: list[str], notes: list[str]) -> DataError:
    where = "no data root was given" if root is None else "looked in: " + "; ".join(places)
    extra = f" ({'; '.join(notes)})" if notes else ""
    return DataError(
        f"{layout.name}: {layout.title} python pickles ({', '.join(layout.files)}) not found; {where}{extra}. "
        "Get them with "
        f"`pip install unlearnkit[download]` on a machine with a network and --data-root DIR (a writable folder; "
        f"torchvision downloads {layout.archive} into it), or download {layout.url} and pass --data-root "
        f"pointing at the archive or at its folder"
        + (f" (a {CIFAR_JPEG_NAME}.tar.gz ImageFolder copy in that folder works too)" if layout is CIFAR10 else "")
    )


def load_cifar(layout: CifarLayout, root: Path | None, cache_dir: Path) -> Dataset:
    """Load a CIFAR variant: pickles in ``root``, then (CIFAR-10) the JPEG copy, then a torchvision download."""
    places: list[str] = []
    notes: list[str] = []
    if root is not None:
        pickles = _find_pickles(layout, root, places)
        if pickles is not None:
            return _load_pickles(layout, pickles, cache_dir)
        jpeg = _find_jpeg(root, places, notes) if layout is CIFAR10 else None
        if jpeg is not None:
            log.info("no CIFAR-10 pickles in %s; using the JPEG ImageFolder copy %s", root, jpeg)
            return _load_jpeg(jpeg, cache_dir)
        pickles = _torchvision_download(layout, root, notes)
        if pickles is not None:
            return _load_pickles(layout, pickles, cache_dir)
    raise _missing_error(layout, root, places, notes)


@register_dataset("cifar10", crop_pad=4, flip=True, description="CIFAR-10, 32x32 colour images, 10 classes")
def load_cifar10(root: Path | None, cache_dir: Path) -> Dataset:
    """Load CIFAR-10 as ``(N, 3, 32, 32)`` uint8 images (50,000 train, 10,000 test).

    Looks for ``data_batch_1..5``, ``test_batch`` and ``batches.meta`` in ``root`` and
    ``root/cifar-10-batches-py``, then for ``root/cifar-10-python.tar.gz`` (``root`` may also be
    the archive). Without pickles, falls back to the JPEG ImageFolder copy ``root/cifar10-jpeg.tar.gz``
    or its tree (``root/cifar10-jpeg/``, or ``root`` itself), then to a torchvision download.

    Raises:
        DataError: nothing found (the message lists the places and how to get the data), or a
            file is malformed or holds anything but plain data.
    """
    return load_cifar(CIFAR10, root, cache_dir)


@register_dataset(
    "cifar100", crop_pad=4, flip=True, description="CIFAR-100, 32x32 colour images, 100 classes in 20 superclasses"
)
def load_cifar100(root: Path | None, cache_dir: Path) -> Dataset:
    """Load CIFAR-100 as ``(N, 3, 32, 32)`` uint8 images with fine labels and 20 coarse superclasses.

    Looks for ``train``, ``test`` and ``meta`` in ``root`` and ``root/cifar-100-python``, then for
    ``root/cifar-100-python.tar.gz`` (``root`` may also be the archive), then downloads with
    torchvision when it is installed.

    Raises:
        DataError: nothing found (the message lists the places and how to get the data), or a
            file is malformed or holds anything but plain data.
    """
    return load_cifar(CIFAR100, root, cache_dir)
