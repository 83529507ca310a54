"""Request builders: class-wise, random-sample and explicit-index forgetting, and the spec parser."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from unlearnkit.data import Dataset
from unlearnkit.tasks.request import ForgetRequest, RequestError, class_names_in_space, labels_in_space

RequestBuilder = Callable[[Dataset, str, int], ForgetRequest]
REQUEST_KINDS: dict[str, tuple[RequestBuilder, str]] = {}


def register_request(kind: str, usage: str) -> Callable[[RequestBuilder], RequestBuilder]:
    """Register ``build(dataset, argument, seed)`` for specs of the form ``kind:argument``."""

    def decorate(fn: RequestBuilder) -> RequestBuilder:
        REQUEST_KINDS[kind] = (fn, usage)
        return fn

    return decorate


def make_request(dataset: Dataset, spec: str, seed: int = 0) -> ForgetRequest:
    """Build a request from a spec string: ``class:NAME[,NAME...]``, ``random:FRACTION|COUNT`` or
    one of TARF's four tasks (``full-match``, ``target-mismatch``, ``model-mismatch``,
    ``data-mismatch``; they need a hierarchy on the dataset, see docs/tasks.md). ``unlearnkit
    list`` shows every form; ``seed`` draws a random request's samples."""
    kind, _, argument = spec.partition(":")
    if kind not in REQUEST_KINDS:
        usages = "; ".join(usage for _, usage in REQUEST_KINDS.values())
        raise RequestError(f"unknown task {spec!r}; valid forms: {usages}")
    if not argument:
        raise RequestError(f"task {spec!r} needs an argument after ':' ({REQUEST_KINDS[kind][1]})")
    return REQUEST_KINDS[kind][0](dataset, argument, seed)


def name_list(names: str | Sequence[str | int]) -> list[str | int]:
    """``names`` as a list; one string is one name (``"34"`` is class 34, not classes 3 and 4), and a
    bool is refused (``True`` would otherwise read as class index 1)."""
    names = [names] if isinstance(names, str) else list(names)
    bools = [n for n in names if isinstance(n, bool | np.bool_)]
    if bools:
        raise RequestError(f"{bools[0]} is not a class name or index; give names (str) or indices (int)")
    return names


def resolve_classes(names: Sequence[str | int], class_names: Sequence[str]) -> tuple[int, ...]:
    """Map class names or indices (ints or digit strings) to indices; unknown ones are an error."""
    resolved = []
    for name in names:
        if isinstance(name, str) and name in class_names:
            resolved.append(class_names.index(name))
        elif isinstance(name, int | np.integer) or (isinstance(name, str) and name.strip().lstrip("-").isdigit()):
            index = int(name)
            if not 0 <= index < len(class_names):
                raise RequestError(f"class index {index} is out of range: valid indices are 0..{len(class_names) - 1}")
            resolved.append(index)
        else:
            raise RequestError(f"unknown class {name!r}; valid classes: {', '.join(class_names)} (or their indices)")
    if len(set(resolved)) != len(resolved):
        raise RequestError(f"classes {list(names)} name the same class twice")
    return tuple(resolved)


def class_request(dataset: Dataset, classes: str | Sequence[str | int], label_space: str = "fine") -> ForgetRequest:
    """Forget every training sample of ``classes`` (names or indices); test accuracy uses the other classes.

    ``label_space`` is ``"fine"`` (the class labels) or ``"coarse"`` (a dataset's superclasses,
    e.g. CIFAR-100's 20): the classes are named in, and the model predicts, that label space.
    """
    classes = name_list(classes)
    if len(classes) == 0:
        raise RequestError("class-wise forgetting needs at least one class")
    train_labels = labels_in_space(dataset.train, label_space, dataset.name)
    test_labels = labels_in_space(dataset.test, label_space, dataset.name)
    class_names = class_names_in_space(dataset, label_space)
    forget_classes = resolve_classes(classes, list(class_names))
    if len(forget_classes) == len(class_names):
        raise RequestError(f"forgetting all {len(forget_classes)} classes leaves nothing to retain")
    in_forget = np.isin(train_labels, forget_classes)
    if not in_forget.any():
        raise RequestError(f"classes {list(classes)} have no training samples: the forget set would be empty")
    test_in_forget = np.isin(test_labels, forget_classes)
    return ForgetRequest(
        dataset=dataset,
        kind="class",
        spec="class:" + ",".join(class_names[c] for c in forget_classes),
        forget_idx=np.flatnonzero(in_forget),
        retain_idx=np.flatnonzero(~in_forget),
        test_forget_idx=np.flatnonzero(test_in_forget),
        test_retain_idx=np.flatnonzero(~test_in_forget),
        label_space=label_space,
        forget_classes=forget_classes,
    )


def random_request(dataset: Dataset, amount: float | int, seed: int = 0) -> ForgetRequest:
    """Forget a seeded uniform sample of the training set: a fraction in (0, 1) or a whole count.

    Any integer (Python or NumPy) is a count; any other real (``0.1``, ``np.float32(0.1)``) is a
    fraction. A bool is refused: ``True`` is not a meaningful amount.
    """
    n = len(dataset.train)
    count = _forget_count(amount, n)
    if count <= 0:  # only a fraction gets here: _forget_count refuses counts below 1
        raise RequestError(
            f"forgetting {amount} of {n} samples gives an empty forget set ({amount} x {n} rounds to 0 samples); "
            "use a larger fraction or a count >= 1"
        )
    if count >= n:
        raise RequestError(f"forgetting {count} of {n} samples would leave nothing to retain; use a fraction in (0, 1)")
    chosen = np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))
    return ForgetRequest(
        dataset=dataset,
        kind="random",
        spec=f"random:{amount}",
        forget_idx=chosen,
        retain_idx=np.setdiff1d(np.arange(n), chosen),
        test_forget_idx=np.empty(0, dtype=np.int64),
        test_retain_idx=np.arange(len(dataset.test)),
    )


def _forget_count(amount: float | int, n: int) -> int:
    """How many of ``n`` samples ``amount`` (a count or a fraction) asks to forget."""
    if isinstance(amount, bool | np.bool_):
        raise RequestError(f"a forget amount must be a fraction in (0, 1) or a whole count; got the bool {amount}")
    if isinstance(amount, int | np.integer):
        if amount < 1:
            raise RequestError(f"a forget count must be >= 1; got {amount}")
        return int(amount)
    if not isinstance(amount, float | np.floating):
        raise RequestError(f"a forget amount must be a number (a fraction in (0, 1) or a count); got {amount!r}")
    if not 0 < amount < 1:
        hint = f" (to forget {int(amount)} samples, give the whole number {int(amount)})" if amount >= 1 and float(amount).is_integer() else ""
        raise RequestError(f"a forget fraction must lie in (0, 1); got {amount}{hint}")
    return round(float(amount) * n)


def index_request(dataset: Dataset, forget_idx: Sequence[int] | np.ndarray, spec: str = "indices") -> ForgetRequest:
    """Forget exactly the given training indices (a deletion request on one's own data).

    ``spec`` is the request's name in results and reports (e.g. ``"ticket-4711"``).
    """
    forget = np.asarray(forget_idx)
    if forget.ndim != 1 or (len(forget) and not np.issubdtype(forget.dtype, np.integer)):
        raise RequestError(f"forget indices must be a 1-D list of integers; got dtype {forget.dtype}, shape {forget.shape}")
    forget = forget.astype(np.int64)
    n = len(dataset.train)
    return ForgetRequest(
        dataset=dataset,
        kind="indices",
        spec=spec,
        forget_idx=forget,
        retain_idx=np.setdiff1d(np.arange(n), forget),
        test_forget_idx=np.empty(0, dtype=np.int64),
        test_retain_idx=np.arange(len(dataset.test)),
    )


@register_request("class", "class:NAME[,NAME...] (class names or indices)")
def _class_from_spec(dataset: Dataset, argument: str, seed: int) -> ForgetRequest:
    return class_request(dataset, [part.strip() for part in argument.split(",") if part.strip()])


@register_request("random", "random:FRACTION (in (0, 1)) or random:COUNT")
def _random_from_spec(dataset: Dataset, argument: str, seed: int) -> ForgetRequest:
    try:
        amount: float | int = _int_or_float(argument)
    except ValueError:
        raise RequestError(f"random:{argument} needs a number: a fraction in (0, 1) or a whole count") from None
    return random_request(dataset, amount, seed)


def _int_or_float(text: str) -> int | float:
    """``"20"`` and ``"+20"`` as a count, anything else numeric (``"0.1"``, ``"5.0"``) as a fraction."""
    try:
        return int(text)
    except ValueError:
        return float(text)
