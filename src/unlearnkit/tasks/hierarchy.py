"""Two-level label hierarchies (fine class -> superclass) for TARF's mismatch tasks (spec 5.2).

CIFAR-100 ships its official 20 superclasses as coarse labels [V-note]. CIFAR-10 and
Fashion-MNIST have none: TARF's authors grouped CIFAR-10 themselves and the grouping is unknown
[U], so the groupings below are ours, chosen so that every superclass has at least two fine
classes (a mismatch task needs a sibling subclass). Users may give any mapping instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from unlearnkit.data import Dataset, ImageData
from unlearnkit.data.cifar import CIFAR10_CLASSES
from unlearnkit.data.idx import FASHION_MNIST_CLASSES
from unlearnkit.tasks.request import RequestError

# [U] for TARF's CIFAR-10 runs (spec 5.2: "a plausible split is vehicles versus animal groups").
# Ours: the four vehicles; the four mammals; the two non-mammal animals.
CIFAR10_GROUPS: dict[str, tuple[str, ...]] = {
    "vehicle": ("airplane", "automobile", "ship", "truck"),
    "mammal": ("cat", "deer", "dog", "horse"),
    "non_mammal": ("bird", "frog"),
}

# [I] ours (no TARF run uses Fashion-MNIST): upper-body garments, shoes, and the rest.
FASHION_MNIST_GROUPS: dict[str, tuple[str, ...]] = {
    "top": ("T-shirt/top", "Pullover", "Coat", "Shirt"),
    "footwear": ("Sandal", "Sneaker", "Ankle boot"),
    "other": ("Trouser", "Dress", "Bag"),
}


@dataclass(frozen=True)
class Hierarchy:
    """A mapping from every fine class to one superclass, by index and by name.

    Attributes:
        fine_names: the fine class names, indexed by fine label.
        coarse_names: the superclass names, indexed by coarse label.
        parent: ``parent[f]`` is the superclass index of fine class ``f``.
        source: where the grouping comes from (shown in docs and errors).
    """

    fine_names: tuple[str, ...]
    coarse_names: tuple[str, ...]
    parent: tuple[int, ...]
    source: str = "user mapping"

    def __post_init__(self) -> None:
        if len(self.parent) != len(self.fine_names):
            raise RequestError(f"a hierarchy needs one superclass per fine class: {len(self.parent)} parents for {len(self.fine_names)} classes")
        for name, names in (("fine class", self.fine_names), ("superclass", self.coarse_names)):
            if len(set(names)) != len(names):
                raise RequestError(f"{name} names must be unique; got {list(names)}")
        bad = [p for p in self.parent if not 0 <= p < len(self.coarse_names)]
        if bad:
            raise RequestError(f"superclass indices {bad} are out of range 0..{len(self.coarse_names) - 1}")
        empty = [c for i, c in enumerate(self.coarse_names) if i not in self.parent]
        if empty:
            raise RequestError(f"superclasses {empty} have no fine class; every superclass needs at least one")

    @classmethod
    def from_mapping(cls, fine_names: Sequence[str], mapping: Mapping[str, str], source: str = "user mapping") -> Hierarchy:
        """Build from ``{fine name: superclass name}``; every fine class must be mapped, and only those.

        Superclasses are numbered in order of first appearance along ``fine_names``.
        """
        unknown = [name for name in mapping if name not in fine_names]
        if unknown:
            raise RequestError(f"the mapping names unknown fine classes {unknown}; valid classes: {', '.join(fine_names)}")
        unmapped = [name for name in fine_names if name not in mapping]
        if unmapped:
            raise RequestError(f"fine classes {unmapped} have no superclass; map every class of {', '.join(fine_names)}")
        coarse_names = tuple(dict.fromkeys(mapping[name] for name in fine_names))
        parent = tuple(coarse_names.index(mapping[name]) for name in fine_names)
        return cls(tuple(fine_names), coarse_names, parent, source)

    @classmethod
    def from_groups(cls, fine_names: Sequence[str], groups: Mapping[str, Sequence[str]], source: str = "user groups") -> Hierarchy:
        """Build from ``{superclass name: [fine names]}`` (each fine class in exactly one group)."""
        mapping: dict[str, str] = {}
        for coarse, members in groups.items():
            for name in members:
                if name in mapping:
                    raise RequestError(f"fine class {name!r} is in two superclasses: {mapping[name]!r} and {coarse!r}")
                mapping[name] = coarse
        return cls.from_mapping(fine_names, mapping, source)

    @classmethod
    def from_labels(cls, split: ImageData, source: str = "dataset coarse labels") -> Hierarchy:
        """Read the hierarchy off a split's coarse labels (e.g. CIFAR-100's official 20 superclasses).

        Raises RequestError when the split has no coarse labels, or when one fine class carries
        two coarse labels (then the coarse labels are not a hierarchy over the fine classes).
        """
        if split.coarse_labels is None or split.coarse_names is None:
            raise RequestError("this dataset has no coarse labels; give a Hierarchy (see unlearnkit.tasks.hierarchy)")
        parent = []
        for fine, name in enumerate(split.class_names):
            coarse = np.unique(split.coarse_labels[split.labels == fine])
            if len(coarse) > 1:
                raise RequestError(f"fine class {name!r} has samples in superclasses {coarse.tolist()}: the coarse labels are not a hierarchy")
            parent.append(int(coarse[0]) if len(coarse) else -1)
        if -1 in parent:
            missing = [split.class_names[f] for f, p in enumerate(parent) if p == -1]
            raise RequestError(f"fine classes {missing} have no samples, so their superclass cannot be read off the labels")
        return cls(split.class_names, split.coarse_names, tuple(parent), source)

    @property
    def num_superclasses(self) -> int:
        return len(self.coarse_names)

    def children(self, coarse: int) -> tuple[int, ...]:
        """Fine class indices of superclass ``coarse``."""
        return tuple(f for f, p in enumerate(self.parent) if p == coarse)

    def coarse_of(self, fine_labels: np.ndarray) -> np.ndarray:
        """Superclass labels of an array of fine labels."""
        return np.asarray(self.parent, dtype=np.int64)[np.asarray(fine_labels, dtype=np.int64)]

    def groups(self) -> dict[str, tuple[str, ...]]:
        """``{superclass name: fine names}``, for display and docs."""
        return {c: tuple(self.fine_names[f] for f in self.children(i)) for i, c in enumerate(self.coarse_names)}


def builtin_hierarchy(class_names: Sequence[str]) -> Hierarchy | None:
    """Our documented grouping for CIFAR-10 or Fashion-MNIST class names, else None (see module doc)."""
    if tuple(class_names) == CIFAR10_CLASSES:
        return Hierarchy.from_groups(CIFAR10_CLASSES, CIFAR10_GROUPS, "unlearnkit CIFAR-10 grouping [U]")
    if tuple(class_names) == FASHION_MNIST_CLASSES:
        return Hierarchy.from_groups(FASHION_MNIST_CLASSES, FASHION_MNIST_GROUPS, "unlearnkit Fashion-MNIST grouping [I]")
    return None


def hierarchy_of(dataset: Dataset) -> Hierarchy:
    """The dataset's own coarse labels if it has them, else the built-in grouping for its classes.

    Raises RequestError naming the remedy (:func:`attach_hierarchy`) when neither exists.
    """
    if dataset.train.coarse_labels is not None:
        return Hierarchy.from_labels(dataset.train)
    found = builtin_hierarchy(dataset.class_names)
    if found is None:
        raise RequestError(
            f"{dataset.name} has no superclasses and no built-in grouping (built in: CIFAR-100's coarse labels, "
            "CIFAR-10, Fashion-MNIST). On the command line, use one of those datasets; `bench` has no hierarchy "
            "option, but a suite config's `hierarchy:` key supplies one (`unlearnkit bench --suite tarf --quick` "
            "runs these tasks on digits; docs/suites.md). From Python, attach one with "
            "attach_hierarchy(dataset, Hierarchy.from_mapping(...)) or BenchConfig(hierarchy=...)"
        )
    return found


def attach_hierarchy(dataset: Dataset, hierarchy: Hierarchy | Mapping[str, str]) -> Dataset:
    """A copy of ``dataset`` whose splits carry ``hierarchy``'s coarse labels and names.

    ``hierarchy`` may be a :class:`Hierarchy` or a ``{fine name: superclass name}`` mapping. Any
    coarse labels the dataset had are replaced; the original dataset is left unchanged. The copy
    keeps the name (so augmentation and recipes still apply) but not the fingerprint.
    """
    if not isinstance(hierarchy, Hierarchy):
        hierarchy = Hierarchy.from_mapping(dataset.class_names, hierarchy)
    if hierarchy.fine_names != dataset.class_names:
        raise RequestError(
            f"the hierarchy's fine classes {list(hierarchy.fine_names)} are not {dataset.name}'s classes "
            f"{list(dataset.class_names)} (same names, same order)"
        )

    def with_coarse(split: ImageData) -> ImageData:
        return replace(split, coarse_labels=hierarchy.coarse_of(split.labels), coarse_names=hierarchy.coarse_names)

    # A new Dataset, not dataclasses.replace: replace would share the cached fingerprint.
    return Dataset(dataset.name, with_coarse(dataset.train), with_coarse(dataset.test), dataset.source)


def with_hierarchy(dataset: Dataset) -> Dataset:
    """``dataset`` itself when it has coarse labels, else a copy with its built-in hierarchy."""
    if dataset.train.coarse_labels is not None:
        return dataset
    return attach_hierarchy(dataset, hierarchy_of(dataset))
