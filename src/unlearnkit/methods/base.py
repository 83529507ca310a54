"""The method protocol: declared data access, typed hyperparameters, a registry.

A method is a class registered by name with a ``Params`` dataclass (defaults from the spec) and
an ``Access`` declaration. The runner (:func:`unlearnkit.methods.unlearn`) hands it a
:class:`Granted` bundle holding only the data it declared; reading anything else raises
:class:`AccessError`, so a method cannot silently peek at the retain set.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnkit.data import NO_AUGMENT, Augment, DeviceImages
from unlearnkit.train import NonFiniteLossError, TrainRecipe


class AccessError(PermissionError):
    """A method read data it did not declare in ``needs``."""


class MethodError(ValueError):
    """An unknown method or a bad hyperparameter."""


@dataclass(frozen=True)
class Access:
    """What a method may see: the forget set, the retain set, and which fraction of the latter."""

    forget: bool = False
    retain: bool = False
    retain_fraction: float = 1.0

    def describe(self) -> str:
        parts = ["forget" if self.forget else "", "retain" if self.retain else ""]
        text = " + ".join(p for p in parts if p) or "none"
        if self.retain and self.retain_fraction < 1:
            text += f" ({self.retain_fraction:.0%} of retain)"
        return text


@dataclass(frozen=True)
class Split:
    """A granted index set of a device-resident split, with the dataset's training augmentation."""

    images: DeviceImages
    indices: np.ndarray
    augment: Augment

    def __len__(self) -> int:
        return len(self.indices)

    def batches(
        self,
        batch_size: int,
        generator: torch.Generator,
        *,
        shuffle: bool = True,
        augment: bool = True,
        labels: torch.Tensor | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(x, y, idx)`` batches; x is channels_last on CUDA. ``labels`` overrides y by dataset index."""
        for x, y, idx in self.images.batches(
            self.indices,
            batch_size,
            shuffle=shuffle,
            augment=self.augment if augment else NO_AUGMENT,
            generator=generator,
            labels=labels,
        ):
            if x.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y, idx


@dataclass(frozen=True)
class TensorSplit:
    """A granted split held as in-memory tensors, for tasks that are not image datasets.

    The sine data-poisoning benchmark (spec 3.4a) feeds 1-D inputs and float targets; this type
    offers the part of :class:`Split` that the forget-paced methods read (``len`` and
    ``batches``), so the same method code runs on it [I]. There is no augmentation and no
    relabelling; batches are index slices of ``inputs``/``targets`` in an order drawn on the CPU
    from the run's generator, as :meth:`Split.batches`.
    """

    inputs: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.targets):
            raise ValueError(f"inputs and targets must have the same length; got {len(self.inputs)} and {len(self.targets)}")

    def __len__(self) -> int:
        return len(self.inputs)

    def batches(
        self,
        batch_size: int,
        generator: torch.Generator,
        *,
        shuffle: bool = True,
        augment: bool = True,
        labels: torch.Tensor | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(x, y, idx)`` batches; ``augment`` is accepted and ignored, ``labels`` is refused."""
        if labels is not None:
            raise ValueError("a TensorSplit has no relabelling; give the targets when building it")
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        for start in range(0, len(self), batch_size):
            idx = order[start : start + batch_size].to(self.inputs.device)
            yield self.inputs[idx], self.targets[idx], idx


# The data loss J of a method's descent steps: (model output, targets) -> scalar. The output may
# be a tuple of heads (a multi-head model); the default is the cross-entropy of one head.
DataLoss = Callable[[Any, torch.Tensor], torch.Tensor]


def cross_entropy_loss(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The default data loss: cross-entropy of a single logit tensor against class indices."""
    if isinstance(output, (tuple, list)):
        raise TypeError(
            f"the model returns {len(output)} heads; give a data loss for multi-head outputs "
            "(e.g. unlearnkit.tasks.colour.two_head_cross_entropy)"
        )
    return F.cross_entropy(output, targets)


@dataclass
class Granted:
    """The data and context a method receives. ``forget``/``retain`` exist only if declared."""

    method: str
    original: nn.Module
    num_classes: int
    device: torch.device
    seed: int
    recipe: TrainRecipe
    generator: torch.Generator
    forget_split: Split | TensorSplit | None = None
    retain_split: Split | TensorSplit | None = None
    forget_classes: tuple[int, ...] = ()  # the forgotten classes of a class-wise request, else ()
    # The data loss J of the S1-family methods (minnorm-og, ngd, ridge, l1-sparse): MSE for the
    # sine regression benchmark, a two-head cross-entropy for the colour benchmarks (spec 3.3).
    loss: DataLoss = cross_entropy_loss

    @property
    def forget(self) -> Split | TensorSplit:
        if self.forget_split is None:
            raise AccessError(f"method {self.method!r} did not declare access to the forget set")
        return self.forget_split

    @property
    def retain(self) -> Split | TensorSplit:
        if self.retain_split is None:
            raise AccessError(f"method {self.method!r} did not declare access to the retain set")
        return self.retain_split


class LossGuard:
    """Sums a method's losses on the device and checks them once per epoch (no per-step sync)."""

    def __init__(self, method: str, device: torch.device):
        self.method = method
        self.total = torch.zeros((), device=device)
        self.steps = 0

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss.detach().float()
        self.steps += 1

    def check(self, epoch: int, hint: str = "lower its learning rate") -> float:
        value = self.total.item()
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"{self.method}: the loss became {value} in epoch {epoch}; {hint}. The original model is unchanged."
            )
        self.total.zero_()
        return value


class Method:
    """Base class: subclasses set ``needs``, a ``Params`` dataclass and implement ``run``."""

    name: ClassVar[str] = ""
    needs: ClassVar[Access] = Access()
    Params: ClassVar[type] = dataclass(type("Params", (), {}))
    summary: ClassVar[str] = ""
    class_wise_only: ClassVar[bool] = False  # needs whole forgotten classes (e.g. removes their head rows)

    @classmethod
    def inapplicable(cls, forget_classes: tuple[int, ...]) -> str | None:
        """Why this method cannot serve a request with these forgotten classes, or None if it can."""
        if cls.class_wise_only and not forget_classes:
            return (
                f"{cls.name} needs a class-wise request (whole classes of the model's labels); this request forgets "
                "only part of a class (individual samples, or a sub-concept of a superclass label)"
            )
        return None

    @classmethod
    def request_overrides(cls, overrides: dict[str, Any], request: Any) -> dict[str, Any]:
        """``overrides`` completed with hyperparameters this method derives from the request
        (e.g. TARF's known target-class count); explicit overrides always win."""
        return overrides

    @classmethod
    def check(cls, params: Any) -> None:
        """Refuse hyperparameter values this method cannot run (a :class:`MethodError`).

        :func:`make_params` calls it once, so a bad value fails when the grid is configured, not
        after the original model is trained. Checks that need the request stay in ``run``.
        """

    def access(self, params: Any) -> Access:
        """The access of this run (a method may take its retain fraction from ``params``)."""
        return self.needs

    def run(self, model: nn.Module, data: Granted, params: Any) -> dict[str, Any]:
        """Unlearn in place on ``model``; return extra record fields (e.g. ``steps``)."""
        raise NotImplementedError


METHODS: dict[str, type[Method]] = {}


def register_method(name: str):
    """Class decorator registering a :class:`Method` under ``name``."""

    def decorate(cls: type[Method]) -> type[Method]:
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        cls.name = name
        METHODS[name] = cls
        return cls

    return decorate


def get_method(name: str) -> type[Method]:
    """The registered method class called ``name``; an unknown name is a :class:`MethodError` listing the registered ones."""
    if name not in METHODS:
        raise MethodError(f"unknown method {name!r}; registered methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def make_params(method: type[Method], overrides: dict[str, Any]) -> Any:
    """``method.Params`` with ``overrides`` applied and checked.

    Strings (from the CLI) are converted to the field type; other values must already have it
    (an int field refuses 2.5 and True, a float field takes ints but not NaN/inf, None only for
    an optional field, a tuple field takes a list). Then ``method.check`` and the loop-setting
    rules every method shares (:func:`check_loop_settings`) run.
    """
    fields = {f.name: f for f in dataclasses.fields(method.Params)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise MethodError(
            f"{method.name} has no hyperparameter {', '.join(unknown)}; valid: {', '.join(fields) or '(none)'}"
        )
    hints = typing.get_type_hints(method.Params)
    converted = {}
    for key, value in overrides.items():
        label = f"{method.name}.{key}"
        finite = fields[key].metadata.get("finite", True)
        converted[key] = _typed(label, _convert(label, value, hints[key]), hints[key], finite)
    params = method.Params(**converted)
    method.check(params)
    check_loop_settings(method.name, params)
    return params


def check_loop_settings(method: str, params: Any) -> None:
    """Rules every method shares, by field name: ``epochs`` >= 1 (no method defines a zero-epoch
    run), other ``*_epochs`` >= 0 (an optional phase), batch sizes >= 1, learning rates > 0,
    ``weight_decay`` >= 0 and ``momentum`` in [0, 1)."""
    for field in dataclasses.fields(params):
        name, value = field.name, getattr(params, field.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if name == "epochs" and value < 1:
            raise MethodError(f"{method}.epochs must be >= 1; got {value}")
        if name.endswith("_epochs") and value < 0:
            raise MethodError(f"{method}.{name} must be >= 0; got {value}")
        if (name == "batch_size" or name.endswith("_batch_size")) and value < 1:
            raise MethodError(f"{method}.{name} must be >= 1; got {value}")
        if (name == "lr" or name.endswith("_lr")) and not value > 0:
            raise MethodError(f"{method}.{name} (a learning rate) must be > 0; got {value}")
        if name == "weight_decay" and not value >= 0:
            raise MethodError(f"{method}.weight_decay must be >= 0; got {value}")
        if name == "momentum" and not 0 <= value < 1:
            raise MethodError(f"{method}.momentum must lie in [0, 1); got {value}")


def _optional_target(hint: Any) -> tuple[Any, bool]:
    """The type a hint asks for and whether None is allowed (``int | None`` -> ``(int, True)``)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = typing.get_args(hint)
        return next((a for a in args if a is not type(None)), str), type(None) in args
    return hint, False


def _convert(label: str, value: Any, hint: Any) -> Any:
    """A CLI string converted to the field type; any other value is returned as given."""
    if not isinstance(value, str):
        return value
    target, optional = _optional_target(hint)
    if optional and value.lower() == "none":
        return None
    try:
        if target is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if typing.get_origin(target) is tuple:
            inner = typing.get_args(target)[0]
            return tuple(inner(v) for v in value.split(",") if v)
        return target(value)
    except (TypeError, ValueError):
        raise MethodError(f"{label} must be of type {_type_name(target)}; got {value!r}") from None


def _typed(label: str, value: Any, hint: Any, finite: bool = True) -> Any:
    """``value`` as the field's type, or a :class:`MethodError` naming the field, type and value.

    Python and NumPy scalars are accepted (``np.int64(3)`` for an int); bools are not numbers here.
    """
    target, optional = _optional_target(hint)
    if value is None:
        if optional:
            return None
        raise MethodError(f"{label} must be of type {_type_name(target)}, not None; got None")
    if typing.get_origin(target) is tuple:
        if not isinstance(value, tuple | list):
            raise MethodError(f"{label} must be a tuple (or list) of {_type_name(typing.get_args(target)[0])}; got {value!r}")
        inner = typing.get_args(target)[0]
        return tuple(_typed(f"{label}[{i}]", item, inner, finite) for i, item in enumerate(value))
    is_bool = isinstance(value, bool | np.bool_)
    if target is bool and is_bool:
        return bool(value)
    if target is int and isinstance(value, int | np.integer) and not is_bool:
        return int(value)
    if target is float and isinstance(value, int | float | np.integer | np.floating) and not is_bool:
        if finite and not math.isfinite(value):
            raise MethodError(f"{label} must be a finite float; got {value!r}")
        return float(value)
    if target is str and isinstance(value, str):
        return value
    if target not in (bool, int, float, str):
        return value  # a type this check does not know: left to the method
    raise MethodError(f"{label} must be of type {_type_name(target)}; got {value!r} ({type(value).__name__})")


def _type_name(target: Any) -> str:
    return getattr(target, "__name__", str(target))
