"""TARF's four tasks: full match, target mismatch, model mismatch and data mismatch (spec 5.2).

A TARF request names three label domains over a two-level hierarchy (fine class -> superclass):
``L_D``, the labels of the given forget data; ``L_M``, the model's label space (``"fine"`` or
``"coarse"``); ``L_T``, the target concept. Each task needs one relation between them [V-note]:

    full-match        L_D = L_M = L_T     fine model; forget a class
    target-mismatch   L_D = L_M ≺ L_T     fine model; given some fine classes, forget their superclass
    model-mismatch    L_D = L_T ≺ L_M     superclass model; forget a subclass, keep its siblings
    data-mismatch     L_D ≺ L_T = L_M     superclass model; given some subclasses, forget the superclass

Spec strings (:func:`unlearnkit.tasks.make_request`)::

    full-match:baby                      target = the given classes
    target-mismatch:baby->people         target defaults to the given classes' superclasses
    model-mismatch:baby                  target = the given classes
    data-mismatch:baby,boy->people       target defaults to the given classes' superclasses

Names left of ``->`` are the given forget classes, right of it the target; each is a fine class
or a superclass name, comma-separated. A dataset without coarse labels gets its built-in
hierarchy (:mod:`unlearnkit.tasks.hierarchy`); any other needs :func:`attach_hierarchy` first.

The request's standard sets are what a method sees: ``forget_idx`` = D_f, ``retain_idx`` =
D_un = D \\ D_f. ``test_forget_idx`` is the target concept's test data and ``test_retain_idx``
the true remaining concept's (TA, spec 5.6 [U]: "the test set restricted to the true-remaining
concept"). Extra sets (``request.extra_sets``): ``train_target`` (D_t), ``train_pseudo_remaining``
(D_fr = D_t \\ D_f), ``train_affected_remaining`` (D_ar), ``train_true_remaining`` (D_r = D \\ D_t,
the oracle's training set: ``request.oracle_idx``) and ``test_given``, ``test_pseudo_remaining``,
``test_affected_remaining`` on the test split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from unlearnkit.data import Dataset
from unlearnkit.tasks.builders import name_list, register_request
from unlearnkit.tasks.hierarchy import Hierarchy, attach_hierarchy, hierarchy_of, with_hierarchy
from unlearnkit.tasks.request import ForgetRequest, RequestError

# task -> (default model label space, required relations (L_D~L_M, L_D~L_T, L_T~L_M), as written)
TARF_TASKS: dict[str, tuple[str, tuple[str, str, str], str]] = {
    "full-match": ("fine", ("=", "=", "="), "L_D = L_M = L_T"),
    "target-mismatch": ("fine", ("=", "≺", "≻"), "L_D = L_M ≺ L_T"),
    "model-mismatch": ("coarse", ("≺", "=", "≺"), "L_D = L_T ≺ L_M"),
    "data-mismatch": ("coarse", ("≺", "≺", "="), "L_D ≺ L_T = L_M"),
}
RELATION_PAIRS = ("L_D ~ L_M", "L_D ~ L_T", "L_T ~ L_M")


@dataclass(frozen=True)
class Concept:
    """A label domain given by names: its units (each a set of fine classes) and their union."""

    names: tuple[str, ...]
    units: tuple[frozenset[int], ...]

    @property
    def fine(self) -> frozenset[int]:
        return frozenset().union(*self.units)


def resolve_concept(names: Sequence[str | int], hierarchy: Hierarchy, what: str) -> Concept:
    """Fine class or superclass names (ints are fine class indices) -> a :class:`Concept`."""
    if len(names) == 0:
        raise RequestError(f"the {what} needs at least one class or superclass name")
    resolved, units = [], []
    for name in names:
        if isinstance(name, int | np.integer):
            if not 0 <= int(name) < len(hierarchy.fine_names):
                raise RequestError(f"{what} class index {name} is out of range 0..{len(hierarchy.fine_names) - 1}")
            name = hierarchy.fine_names[int(name)]
        name = str(name).strip()
        is_fine, is_coarse = name in hierarchy.fine_names, name in hierarchy.coarse_names
        if is_fine and is_coarse:
            raise RequestError(f"{what} name {name!r} is both a fine class and a superclass; rename one in the hierarchy")
        if is_fine:
            units.append(frozenset({hierarchy.fine_names.index(name)}))
        elif is_coarse:
            units.append(frozenset(hierarchy.children(hierarchy.coarse_names.index(name))))
        else:
            raise RequestError(
                f"unknown {what} class {name!r}; valid fine classes: {', '.join(hierarchy.fine_names)}; "
                f"superclasses: {', '.join(hierarchy.coarse_names)}"
            )
        resolved.append(name)
    if sum(len(unit) for unit in units) != len(frozenset().union(*units)):
        raise RequestError(f"the {what} {resolved} names a class twice (a class and its superclass, or a repeat)")
    return Concept(tuple(resolved), tuple(units))


def model_classes(hierarchy: Hierarchy, label_space: str) -> tuple[frozenset[int], ...]:
    """The model's labels as sets of fine classes."""
    if label_space == "fine":
        return tuple(frozenset({f}) for f in range(len(hierarchy.fine_names)))
    if label_space == "coarse":
        return tuple(frozenset(hierarchy.children(c)) for c in range(hierarchy.num_superclasses))
    raise RequestError(f"unknown model label space {label_space!r}; valid: 'fine', 'coarse'")


def relation(first: Sequence[frozenset[int]], second: Sequence[frozenset[int]]) -> str:
    """Spec 5.2's relation of two label domains, each a list of labels (sets of fine classes).

    ``"="`` (match): every label of each is covered by a label of the other; ``"≺"``
    (sub-domain): every label of ``first`` is covered by a label of ``second``, not conversely;
    ``"≻"``: the reverse; ``"unrelated"`` otherwise. "Covered" is set inclusion [V-note].
    """
    first_covered = all(any(a <= b for b in second) for a in first)
    second_covered = all(any(b <= a for a in first) for b in second)
    if first_covered and second_covered:
        return "="
    if first_covered:
        return "≺"
    if second_covered:
        return "≻"
    return "unrelated"


def model_relation(concept: Concept, model: Sequence[frozenset[int]]) -> str:
    """The relation of a concept to the model's label space, through the model labels it touches
    (a model's other labels cover none of the concept and say nothing about granularity) [I]."""
    return relation(concept.units, [label for label in model if label & concept.fine])


def domain_relations(given: Concept, target: Concept, model: Sequence[frozenset[int]]) -> tuple[str, str, str]:
    """(L_D ~ L_M, L_D ~ L_T, L_T ~ L_M) for a request."""
    return model_relation(given, model), relation(given.units, target.units), model_relation(target, model)


def check_relations(task: str, given: Concept, target: Concept, label_space: str, model: Sequence[frozenset[int]]) -> None:
    """Raise RequestError unless the three domains stand in the relation ``task`` names (spec 5.2)."""
    if not given.fine <= target.fine:
        outside = sorted(set(given.names) - {n for n, u in zip(given.names, given.units, strict=True) if u <= target.fine})
        raise RequestError(f"L_D ⪯ L_T must always hold, but given classes {outside} are not in the target {list(target.names)}")
    found = domain_relations(given, target, model)
    _, required, written = TARF_TASKS[task]
    if found == required:
        return
    bad = [f"{pair.replace('~', got)} (needs {pair.replace('~', need)})" for pair, got, need in zip(RELATION_PAIRS, found, required, strict=True) if got != need]
    fits = [name for name, (_, rel, _) in TARF_TASKS.items() if rel == found]
    hint = f"; these domains make a {fits[0]} task" if fits else ""
    raise RequestError(
        f"{task} needs {written}, but with given {list(given.names)}, target {list(target.names)} and a "
        f"{label_space}-label model: {', '.join(bad)}{hint}"
    )


def tarf_request(
    dataset: Dataset,
    task: str,
    given: str | Sequence[str | int],
    target: str | Sequence[str | int] | None = None,
    *,
    label_space: str | None = None,
    hierarchy: Hierarchy | Mapping[str, str] | None = None,
) -> ForgetRequest:
    """Build one of TARF's four tasks (spec 5.2) with D_f, D_un and the extra sets named above.

    Args:
        dataset: the data; it needs a hierarchy: its coarse labels, a built-in grouping, or ``hierarchy``.
        task: ``"full-match"``, ``"target-mismatch"``, ``"model-mismatch"`` or ``"data-mismatch"``.
        given: the classes whose training data is given as D_f (fine or superclass names, or
            fine class indices; one string is one name).
        target: the target concept; default: ``given`` for full and model mismatch, the given
            classes' superclasses for target and data mismatch.
        label_space: the model's labels; default ``"fine"`` for full and target mismatch,
            ``"coarse"`` for model and data mismatch (spec 5.2 table); a full match whose given
            names are all superclasses defaults to ``"coarse"`` (forget whole superclasses) [I].
        hierarchy: attached to a copy of ``dataset`` first (a Hierarchy or a fine -> superclass mapping).

    Raises:
        RequestError: an unknown task or name, a relation other than the task's, or a task with
            nothing to tell apart (no pseudo-remaining data in target/data mismatch, no affected
            sibling data in model mismatch).
    """
    if task not in TARF_TASKS:
        raise RequestError(f"unknown TARF task {task!r}; valid: {', '.join(TARF_TASKS)}")
    dataset = attach_hierarchy(dataset, hierarchy) if hierarchy is not None else with_hierarchy(dataset)
    tree = hierarchy_of(dataset)
    given_concept = resolve_concept(name_list(given), tree, "given forget data")
    label_space = label_space or default_label_space(task, given_concept, tree)
    target_concept = resolve_concept(name_list(target), tree, "target") if target is not None else default_target(task, given_concept, tree)
    model = model_classes(tree, label_space)
    check_relations(task, given_concept, target_concept, label_space, model)
    return _build(dataset, task, tree, label_space, given_concept, target_concept)


def default_label_space(task: str, given: Concept, hierarchy: Hierarchy) -> str:
    """Spec 5.2's model labels for ``task``; full match follows the given names (superclasses: coarse) [I]."""
    if task == "full-match" and all(name in hierarchy.coarse_names for name in given.names):
        return "coarse"
    return TARF_TASKS[task][0]


def default_target(task: str, given: Concept, hierarchy: Hierarchy) -> Concept:
    """The given classes themselves (full/model mismatch) or their superclasses (target/data mismatch)."""
    if task in ("full-match", "model-mismatch"):
        return given
    parents = dict.fromkeys(hierarchy.parent[f] for unit in given.units for f in sorted(unit))
    return resolve_concept([hierarchy.coarse_names[c] for c in parents], hierarchy, "target")


def _build(dataset: Dataset, task: str, tree: Hierarchy, label_space: str, given: Concept, target: Concept) -> ForgetRequest:
    train_fine, test_fine = dataset.train.labels, dataset.test.labels
    affected_fine = _affected_classes(target, model_classes(tree, label_space))
    sets = {}
    for split, fine in (("train", train_fine), ("test", test_fine)):
        in_given = np.isin(fine, sorted(given.fine))
        in_target = np.isin(fine, sorted(target.fine))
        sets[split] = {
            "given": np.flatnonzero(in_given),
            "target": np.flatnonzero(in_target),
            "pseudo_remaining": np.flatnonzero(in_target & ~in_given),
            "affected_remaining": np.flatnonzero(np.isin(fine, sorted(affected_fine))),
            "true_remaining": np.flatnonzero(~in_target),
        }
    _check_nondegenerate(task, sets["train"], given, target)
    train, test = sets["train"], sets["test"]
    spec = f"{task}:{','.join(given.names)}" + (f"->{','.join(target.names)}" if task in ("target-mismatch", "data-mismatch") else "")
    return ForgetRequest(
        dataset=dataset,
        kind=task,
        spec=spec,
        forget_idx=train["given"],
        retain_idx=np.flatnonzero(~np.isin(train_fine, sorted(given.fine))),
        test_forget_idx=test["target"],
        test_retain_idx=test["true_remaining"],
        label_space=label_space,
        forget_classes=_forget_classes(given, tree, label_space),
        extra_sets={f"train_{name}": train[name] for name in ("target", "pseudo_remaining", "affected_remaining", "true_remaining")}
        | {f"test_{name}": test[name] for name in ("given", "pseudo_remaining", "affected_remaining")},
    )


def _affected_classes(target: Concept, model: Sequence[frozenset[int]]) -> frozenset[int]:
    """Fine classes sharing a model label with the target but outside it: D_ar's classes (spec 5.2)."""
    shared = [label for label in model if label & target.fine]
    return frozenset().union(*shared) - target.fine


def _check_nondegenerate(task: str, train: dict[str, np.ndarray], given: Concept, target: Concept) -> None:
    if len(train["given"]) == 0:
        raise RequestError(f"the given classes {list(given.names)} have no training samples: D_f would be empty")
    if len(train["true_remaining"]) == 0:
        raise RequestError(f"the target {list(target.names)} covers all training data: nothing would remain")
    if task in ("target-mismatch", "data-mismatch") and len(train["pseudo_remaining"]) == 0:
        raise RequestError(f"{task}: the given classes {list(given.names)} cover all training data of the target {list(target.names)}, so there is no pseudo-remaining data D_fr; use full-match:{','.join(target.names)}")
    if task == "model-mismatch" and len(train["affected_remaining"]) == 0:
        raise RequestError(f"model-mismatch: the target {list(target.names)} covers whole superclasses, so there is no affected sibling data D_ar; name a strict subset of a superclass")


def _forget_classes(given: Concept, tree: Hierarchy, label_space: str) -> tuple[int, ...]:
    """Model classes wholly inside D_f (fine space: the given fine classes; coarse: whole superclasses given)."""
    return tuple(i for i, label in enumerate(model_classes(tree, label_space)) if label <= given.fine)


def _parse(argument: str) -> tuple[list[str], list[str] | None]:
    given, arrow, target = argument.partition("->")
    names = [part.strip() for part in given.split(",") if part.strip()]
    targets = [part.strip() for part in target.split(",") if part.strip()] if arrow else None
    if arrow and not targets:
        raise RequestError(f"{argument!r} has '->' but no target after it; write GIVEN[,GIVEN...]->TARGET[,TARGET...]")
    return names, targets


def _register(task: str) -> None:
    usage = f"{task}:GIVEN[,GIVEN...][->TARGET[,...]] (TARF, spec 5.2; fine class or superclass names)"

    @register_request(task, usage)
    def build(dataset: Dataset, argument: str, seed: int) -> ForgetRequest:
        given, target = _parse(argument)
        return tarf_request(dataset, task, given, target)


for _task in TARF_TASKS:
    _register(_task)
