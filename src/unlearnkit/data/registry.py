"""Registry of dataset loaders: ``load_dataset(name, root=...)`` is the one entry point."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from unlearnkit.data.dataset import DataError, Dataset

LoaderFn = Callable[[Path | None, Path], Dataset]


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: its loader and the training augmentation that suits it.

    ``crop_pad`` is the padding of the random crop (0 turns cropping off) and ``flip`` turns
    random horizontal flips on; digits, for example, must not be flipped.
    """

    name: str
    load: LoaderFn
    crop_pad: int
    flip: bool
    description: str


DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, *, crop_pad: int, flip: bool, description: str) -> Callable[[LoaderFn], LoaderFn]:
    """Register ``fn(root, cache_dir) -> Dataset`` under ``name``."""

    def decorate(fn: LoaderFn) -> LoaderFn:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        DATASETS[name] = DatasetInfo(name, fn, crop_pad, flip, description)
        return fn

    return decorate


def default_cache_dir() -> Path:
    """``$UNLEARNKIT_CACHE`` or ``~/.cache/unlearnkit``: decoded arrays and trained checkpoints live here."""
    return Path(os.environ.get("UNLEARNKIT_CACHE", Path.home() / ".cache" / "unlearnkit"))


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry (loader and augmentation) of dataset ``name``; an unknown name is a :class:`DataError`."""
    _import_loaders()
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; registered datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def available_datasets() -> list[str]:
    """The registered dataset names, sorted."""
    _import_loaders()
    return sorted(DATASETS)


def load_dataset(name: str, root: str | Path | None = None, cache_dir: str | Path | None = None) -> Dataset:
    """Load a registered dataset.

    Args:
        name: a registered name (``unlearnkit list`` shows them), e.g. ``"digits"`` or ``"cifar10"``.
        root: where the files are; each loader also looks in its usual places when it is None.
        cache_dir: where decoded arrays are cached (default :func:`default_cache_dir`).

    Raises:
        DataError: the name is unknown or the files are missing (the message says where it looked
            and how to get them).
    """
    info = dataset_info(name)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return info.load(Path(root).expanduser() if root is not None else None, cache)


def _import_loaders() -> None:
    # Importing the loader modules registers them; done lazily to keep `import unlearnkit` light.
    from unlearnkit.data import cifar, digits, idx, imagefolder  # noqa: F401
