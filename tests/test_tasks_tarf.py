"""TARF's hierarchies, four tasks, index sets, relation checks, outputs, metric and oracle (spec 5.2, 5.6)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import CPU, TINY_RECIPE, train_mlp

from unlearnkit.data import Dataset, ImageData
from unlearnkit.data.cifar import CIFAR10_CLASSES
from unlearnkit.data.idx import FASHION_MNIST_CLASSES
from unlearnkit.inference import predict
from unlearnkit.metrics import METRICS, compute_outputs, evaluate
from unlearnkit.metrics.outputs import SplitOutputs
from unlearnkit.metrics.tarf import TARF_KEYS, tarf_gaps
from unlearnkit.models import build_model
from unlearnkit.tasks import (
    TARF_TASKS,
    TRUE_REMAINING,
    ForgetRequest,
    Hierarchy,
    RequestError,
    attach_hierarchy,
    builtin_hierarchy,
    class_request,
    hierarchy_of,
    make_request,
    place,
    tarf_request,
)
from unlearnkit.train import train

DIGIT_GROUPS = {"low": ("0", "1", "2"), "mid": ("3", "4", "5"), "high": ("6", "7", "8", "9")}
TINY_NAMES = ("a", "b", "c", "d", "e")
TINY_MAPPING = {"a": "X", "b": "X", "c": "Y", "d": "Y", "e": "Y"}
TINY_TRAIN = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 2, 0]  # X = {a, b}, Y = {c, d, e}
TINY_TEST = [4, 3, 2, 1, 0, 2]


def _tiny() -> Dataset:
    def split(labels: list[int]) -> ImageData:
        images = np.random.default_rng(len(labels)).integers(0, 256, size=(len(labels), 1, 4, 4), dtype=np.uint8)
        return ImageData(images, np.array(labels, dtype=np.int64), TINY_NAMES)

    return Dataset("tiny", split(TINY_TRAIN), split(TINY_TEST))


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    return attach_hierarchy(_tiny(), TINY_MAPPING)


@pytest.fixture(scope="module")
def grouped_digits(small_digits: Dataset) -> Dataset:
    return attach_hierarchy(small_digits, Hierarchy.from_groups(small_digits.class_names, DIGIT_GROUPS))


# --- hierarchies -----------------------------------------------------------------------------


def test_mapping_builds_parents_in_order_of_first_appearance() -> None:
    tree = Hierarchy.from_mapping(TINY_NAMES, TINY_MAPPING)
    assert tree.coarse_names == ("X", "Y") and tree.parent == (0, 0, 1, 1, 1)
    assert tree.children(1) == (2, 3, 4)
    assert tree.coarse_of(np.array([4, 0, 2])).tolist() == [1, 0, 1]
    assert tree.groups() == {"X": ("a", "b"), "Y": ("c", "d", "e")}


@pytest.mark.parametrize(
    ("mapping", "pattern"),
    [
        ({"a": "X", "b": "X", "c": "Y", "d": "Y"}, r"fine classes \['e'\] have no superclass"),
        (TINY_MAPPING | {"z": "Y"}, r"unknown fine classes \['z'\]; valid classes: a, b, c, d, e"),
    ],
)
def test_mapping_refuses_unmapped_and_unknown_classes(mapping: dict[str, str], pattern: str) -> None:
    with pytest.raises(RequestError, match=pattern):
        Hierarchy.from_mapping(TINY_NAMES, mapping)


def test_groups_refuse_a_class_in_two_superclasses() -> None:
    with pytest.raises(RequestError, match="'b' is in two superclasses"):
        Hierarchy.from_groups(TINY_NAMES, {"X": ("a", "b"), "Y": ("b", "c", "d", "e")})


@pytest.mark.parametrize("names", [CIFAR10_CLASSES, FASHION_MNIST_CLASSES])
def test_builtin_groupings_cover_every_class_with_at_least_two_per_superclass(names: tuple[str, ...]) -> None:
    tree = builtin_hierarchy(names)
    assert tree is not None and tree.fine_names == names
    assert sorted(f for members in tree.groups().values() for f in members) == sorted(names)
    assert all(len(tree.children(c)) >= 2 for c in range(tree.num_superclasses))
    assert builtin_hierarchy(TINY_NAMES) is None


def test_builtin_cifar10_grouping_is_used_by_spec_strings() -> None:
    groups = builtin_hierarchy(CIFAR10_CLASSES).groups()
    assert groups["vehicle"] == ("airplane", "automobile", "ship", "truck")
    labels = np.arange(20) % 10

    def split() -> ImageData:
        return ImageData(np.zeros((20, 3, 2, 2), dtype=np.uint8), labels, CIFAR10_CLASSES)

    plain = Dataset("my-cifar", split(), split())
    request = make_request(plain, "target-mismatch:cat")
    assert request.spec == "target-mismatch:cat->mammal" and plain.train.coarse_labels is None
    assert np.array_equal(request.extra_sets["train_target"], np.flatnonzero(np.isin(labels, [3, 4, 5, 7])))


def test_attach_hierarchy_copies_and_leaves_the_original_alone(small_digits: Dataset, grouped_digits: Dataset) -> None:
    assert small_digits.train.coarse_labels is None and small_digits.test.coarse_labels is None
    assert grouped_digits.train.coarse_names == ("low", "mid", "high")
    expected = np.select([small_digits.train.labels <= 2, small_digits.train.labels <= 5], [0, 1], 2)
    assert np.array_equal(grouped_digits.train.coarse_labels, expected)
    assert np.array_equal(grouped_digits.train.images, small_digits.train.images)
    assert grouped_digits.fingerprint() != small_digits.fingerprint()
    assert hierarchy_of(grouped_digits).groups() == DIGIT_GROUPS


def test_attach_hierarchy_refuses_a_hierarchy_of_other_classes(small_digits: Dataset) -> None:
    with pytest.raises(RequestError, match="are not digits's classes"):
        attach_hierarchy(small_digits, Hierarchy.from_mapping(TINY_NAMES, TINY_MAPPING))


def test_hierarchy_is_read_off_coarse_labels_and_checked() -> None:
    base = _tiny().train
    coarse = np.array([0, 0, 1, 1, 1])[base.labels]
    split = replace(base, coarse_labels=coarse, coarse_names=("X", "Y"))
    assert Hierarchy.from_labels(split).parent == (0, 0, 1, 1, 1)
    broken = coarse.copy()
    broken[np.flatnonzero(base.labels == 1)[0]] = 1  # one 'b' sample in Y
    with pytest.raises(RequestError, match="fine class 'b' has samples in superclasses"):
        Hierarchy.from_labels(replace(base, coarse_labels=broken, coarse_names=("X", "Y")))


def test_a_dataset_without_hierarchy_is_refused_with_the_remedy(small_digits: Dataset) -> None:
    with pytest.raises(RequestError, match="attach_hierarchy"):
        make_request(small_digits, "target-mismatch:1->low")


# --- the four tasks, by hand on the tiny dataset ---------------------------------------------

# train labels  a b c d e a b c d e c a      (indices 0..11; X = {a, b}, Y = {c, d, e})
# test labels   e d c b a c                  (indices 0..5)
HAND = {
    "full-match:c": dict(
        space="fine", forget=[2, 7, 10], target=[2, 7, 10], pseudo=[], affected=[], true=[0, 1, 3, 4, 5, 6, 8, 9, 11],
        test_forget=[2, 5], test_retain=[0, 1, 3, 4],
    ),
    "target-mismatch:c->Y": dict(
        space="fine", forget=[2, 7, 10], target=[2, 3, 4, 7, 8, 9, 10], pseudo=[3, 4, 8, 9], affected=[], true=[0, 1, 5, 6, 11],
        test_forget=[0, 1, 2, 5], test_retain=[3, 4],
    ),
    "model-mismatch:c": dict(
        space="coarse", forget=[2, 7, 10], target=[2, 7, 10], pseudo=[], affected=[3, 4, 8, 9], true=[0, 1, 3, 4, 5, 6, 8, 9, 11],
        test_forget=[2, 5], test_retain=[0, 1, 3, 4],
    ),
    "data-mismatch:c,d->Y": dict(
        space="coarse", forget=[2, 3, 7, 8, 10], target=[2, 3, 4, 7, 8, 9, 10], pseudo=[4, 9], affected=[], true=[0, 1, 5, 6, 11],
        test_forget=[0, 1, 2, 5], test_retain=[3, 4],
    ),
}


@pytest.mark.parametrize("spec", list(HAND))
def test_tiny_tasks_give_the_hand_counted_sets(tiny: Dataset, spec: str) -> None:
    want = HAND[spec]
    request = make_request(tiny, spec)
    assert request.spec == spec and request.kind == spec.partition(":")[0]
    assert request.label_space == want["space"]
    assert request.forget_idx.tolist() == want["forget"]
    assert request.retain_idx.tolist() == sorted(set(range(12)) - set(want["forget"]))
    assert request.extra_sets["train_target"].tolist() == want["target"]
    assert request.extra_sets["train_pseudo_remaining"].tolist() == want["pseudo"]
    assert request.extra_sets["train_affected_remaining"].tolist() == want["affected"]
    assert request.extra_sets[TRUE_REMAINING].tolist() == want["true"]
    assert request.oracle_idx.tolist() == want["true"]
    assert request.test_forget_idx.tolist() == want["test_forget"]
    assert request.test_retain_idx.tolist() == want["test_retain"]


def test_default_targets_are_the_superclasses_and_specs_round_trip(tiny: Dataset) -> None:
    assert make_request(tiny, "target-mismatch:c").spec == "target-mismatch:c->Y"
    assert make_request(tiny, "data-mismatch:c,d").spec == "data-mismatch:c,d->Y"
    for spec in HAND:
        first = make_request(tiny, spec)
        again = make_request(tiny, first.spec)
        assert again.key() == first.key() and np.array_equal(again.oracle_idx, first.oracle_idx)


def test_tasks_with_the_same_forget_set_have_different_keys(tiny: Dataset) -> None:
    keys = {make_request(tiny, spec).key() for spec in ("full-match:c", "target-mismatch:c->Y", "model-mismatch:c")}
    assert len(keys) == 3


def test_full_match_on_superclass_names_uses_superclass_labels(tiny: Dataset) -> None:
    request = make_request(tiny, "full-match:X")
    assert request.label_space == "coarse" and request.forget_classes == (0,)
    assert request.forget_idx.tolist() == [0, 1, 5, 6, 11]
    assert np.array_equal(request.oracle_idx, request.retain_idx)


# --- the four tasks on digits: partition properties -------------------------------------------

DIGIT_SPECS = ("full-match:3", "target-mismatch:3->mid", "target-mismatch:3,4->mid", "model-mismatch:3", "data-mismatch:3->mid")


@pytest.mark.parametrize("spec", DIGIT_SPECS)
def test_index_sets_partition_as_the_spec_defines(grouped_digits: Dataset, spec: str) -> None:
    request = make_request(grouped_digits, spec)
    n = len(grouped_digits.train)
    every = np.arange(n)
    f, t = request.forget_idx, request.extra_sets["train_target"]
    fr, ar = request.extra_sets["train_pseudo_remaining"], request.extra_sets["train_affected_remaining"]
    r = request.oracle_idx
    assert np.isin(f, t).all()  # D_f ⊆ D_t
    assert np.array_equal(fr, np.setdiff1d(t, f))  # D_fr = D_t \ D_f
    assert np.array_equal(r, np.setdiff1d(every, t))  # D_r = D \ D_t
    assert np.array_equal(request.retain_idx, np.setdiff1d(every, f))  # D_un = D \ D_f
    assert np.isin(ar, r).all()  # D_ar is remaining data
    fine, coarse = grouped_digits.train.labels, grouped_digits.train.coarse_labels
    if request.kind == "model-mismatch":  # D_ar: the siblings 4, 5 of 3 in superclass 'mid'
        assert np.array_equal(ar, np.flatnonzero(np.isin(fine, [4, 5])))
        assert np.array_equal(request.train_labels, coarse)
    else:
        assert len(ar) == 0
    test_fine = grouped_digits.test.labels
    test_target = np.isin(test_fine, np.unique(fine[t]))
    assert np.array_equal(request.test_forget_idx, np.flatnonzero(test_target))
    assert np.array_equal(request.test_retain_idx, np.flatnonzero(~test_target))
    assert np.array_equal(request.extra_sets["test_given"], np.flatnonzero(np.isin(test_fine, np.unique(fine[f]))))


def test_digit_sizes_match_class_counts(grouped_digits: Dataset) -> None:
    labels = grouped_digits.train.labels
    count = {d: int(np.sum(labels == d)) for d in range(10)}
    request = make_request(grouped_digits, "target-mismatch:3->mid")
    assert len(request.forget_idx) == count[3]
    assert len(request.extra_sets["train_pseudo_remaining"]) == count[4] + count[5]
    assert len(request.oracle_idx) == len(labels) - count[3] - count[4] - count[5]


# --- refused relations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda d: make_request(d, "target-mismatch:3->low"), r"L_D ⪯ L_T must always hold, but given classes \['3'\]"),
        (lambda d: tarf_request(d, "model-mismatch", ["3"], label_space="fine"), r"model-mismatch needs L_D = L_T ≺ L_M.*L_D = L_M \(needs L_D ≺ L_M\).*full-match"),
        (lambda d: make_request(d, "target-mismatch:3->3"), r"target-mismatch needs L_D = L_M ≺ L_T.*make a full-match task"),
        (lambda d: make_request(d, "model-mismatch:3->mid"), r"L_D ≺ L_T \(needs L_D = L_T\).*data-mismatch"),
        (lambda d: tarf_request(d, "data-mismatch", ["3"], ["mid"], label_space="fine"), r"data-mismatch needs L_D ≺ L_T = L_M.*target-mismatch"),
        (lambda d: make_request(d, "full-match:3->mid"), r"full-match needs L_D = L_M = L_T"),
        (lambda d: make_request(d, "model-mismatch:mid"), r"L_D = L_M \(needs L_D ≺ L_M\)"),
        (lambda d: make_request(d, "data-mismatch:3,4,5->mid"), r"no pseudo-remaining data D_fr; use full-match:mid"),
        (lambda d: make_request(d, "model-mismatch:3,4,5"), r"no affected sibling data D_ar"),
        (lambda d: make_request(d, "target-mismatch:eleven->mid"), r"unknown given forget data class 'eleven'; valid fine classes: 0, 1"),
        (lambda d: make_request(d, "target-mismatch:3,mid"), r"names a class twice"),
        (lambda d: make_request(d, "target-mismatch:3->"), r"no target after it"),
        (lambda d: tarf_request(d, "half-match", ["3"]), r"unknown TARF task 'half-match'; valid: full-match, target-mismatch"),
        (lambda d: make_request(d, "full-match:low,mid,high"), r"covers all training data"),
        (lambda d: tarf_request(d, "full-match", "34"), r"unknown given forget data class '34'"),  # one name, not 3 and 4
        (lambda d: tarf_request(d, "full-match", [True]), r"True is not a class name or index"),
    ],
)
def test_bad_relations_are_clear_request_errors(grouped_digits: Dataset, call, pattern: str) -> None:
    with pytest.raises(RequestError, match=pattern):
        call(grouped_digits)


def test_one_string_is_one_name(grouped_digits: Dataset) -> None:
    assert tarf_request(grouped_digits, "target-mismatch", "3", "mid").spec == make_request(grouped_digits, "target-mismatch:3->mid").spec


def test_every_task_is_registered_with_its_grammar() -> None:
    from unlearnkit.tasks import REQUEST_KINDS

    for task in TARF_TASKS:
        assert task in REQUEST_KINDS and "->TARGET" in REQUEST_KINDS[task][1]


# --- ForgetRequest extension -----------------------------------------------------------------


def test_plain_requests_keep_their_meaning(small_digits: Dataset, class_3: ForgetRequest) -> None:
    assert class_3.extra_sets == {} and class_3.oracle_idx is class_3.retain_idx
    random = make_request(small_digits, "random:0.1")
    assert random.oracle_idx is random.retain_idx


@pytest.mark.parametrize(
    ("name", "indices", "pattern"),
    [
        ("target", [0], "must start with 'train_' or 'test_'"),
        ("test_forget", [0], "is taken by a standard split"),
        ("train_x", [0, 0], "duplicate"),
        ("test_x", [10_000], r"must lie in \[0, 200\) \(test split\)"),
    ],
)
def test_extra_sets_are_validated(class_3: ForgetRequest, name: str, indices: list[int], pattern: str) -> None:
    with pytest.raises(RequestError, match=pattern):
        replace(class_3, extra_sets={name: np.array(indices, dtype=np.int64)}, _key=[])


# --- outputs and metrics ---------------------------------------------------------------------


def _train_on(request: ForgetRequest, train_idx: np.ndarray, seed: int = 0) -> torch.nn.Module:
    """A small MLP in the request's label space (fine or superclass) trained on ``train_idx``."""
    torch.manual_seed(seed)
    mean, std = request.dataset.channel_stats()
    model = build_model("mlp", request.num_classes, request.dataset.image_shape, mean, std)
    train(model, place(request, CPU).train, train_idx, TINY_RECIPE, seed=seed, augment=TINY_RECIPE.augment_for(request.dataset.name))
    return model.eval()


class _CountForward(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.seen = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        return self.model(x)


def test_outputs_cover_extra_sets_without_a_second_forward_pass(grouped_digits: Dataset) -> None:
    request = make_request(grouped_digits, "target-mismatch:3->mid")
    model = train_mlp(grouped_digits, np.arange(len(grouped_digits.train)))
    counted = _CountForward(model).eval()
    splits = place(request, CPU)
    outputs = compute_outputs(counted, request, splits)
    assert counted.seen == len(grouped_digits.train) + len(grouped_digits.test)
    assert set(outputs.splits) == {"forget", "retain", "test_forget", "test_retain", *request.extra_sets}
    for name, indices in request.extra_sets.items():
        images = splits.test if name.startswith("test_") else splits.train
        if len(indices):
            direct, _ = predict(model, images, indices)
            assert torch.allclose(outputs[name].logits, direct, atol=1e-5), name
        labels = request.test_labels if name.startswith("test_") else request.train_labels
        assert np.array_equal(outputs[name].labels.numpy(), labels[indices]), name


def _acc(split: SplitOutputs) -> tuple[int, int]:
    return int((split.logits.argmax(1) == split.labels).sum()), len(split)


def test_tarf_metric_on_target_mismatch(grouped_digits: Dataset) -> None:
    request = make_request(grouped_digits, "target-mismatch:3->mid")
    splits = place(request, CPU)
    original = train_mlp(grouped_digits, np.arange(len(grouped_digits.train)))
    oracle = _train_on(request, request.oracle_idx)
    scores = {}
    for role, model in (("original", original), ("oracle", oracle)):
        outputs = compute_outputs(model, request, splits)
        scores[role] = evaluate(model, request, splits, ("accuracy", "tarf"))
        assert set(TARF_KEYS) <= set(scores[role])
        # UA on D_t is the size-weighted mean of UA on D_f and on D_fr
        (cf, nf), (cr, nr) = _acc(outputs["forget"]), _acc(outputs["train_pseudo_remaining"])
        assert scores[role]["ua_target"] == pytest.approx(100 * (cf + cr) / (nf + nr), abs=1e-6)
        assert scores[role]["ta_true"] == pytest.approx(scores[role]["test_acc"])
        assert math.isnan(scores[role]["ua_f"]) and math.isnan(scores[role]["ua_r"])
    assert scores["original"]["ua_target"] > 80 and scores["oracle"]["ua_target"] < 5  # the oracle never saw 3, 4, 5
    assert scores["oracle"]["ra_true"] > 80 and scores["oracle"]["ta_true"] > 60
    assert scores["oracle"]["mia_target"] > scores["original"]["mia_target"]
    assert tarf_gaps(scores["oracle"], scores["oracle"]) == {"gap_given": 0.0, "gap_target": 0.0}
    assert tarf_gaps(scores["original"], scores["oracle"])["gap_target"] > 10


def test_tarf_metric_on_model_mismatch_uses_superclass_labels(grouped_digits: Dataset) -> None:
    request = make_request(grouped_digits, "model-mismatch:3")
    assert request.num_classes == 3
    oracle = _train_on(request, request.oracle_idx)
    scores = evaluate(oracle, request, place(request, CPU), ("tarf",))
    assert scores["ua_f"] == scores["ua_given"] == scores["ua_target"] and scores["mia_given"] == scores["mia_target"]
    assert scores["ua_r"] > 80  # the siblings 4, 5 stay 'mid'
    assert scores["ra_true"] > 80


def test_tarf_metric_is_nan_for_plain_requests(class_3: ForgetRequest, original: torch.nn.Module) -> None:
    scores = evaluate(original, class_3, place(class_3, CPU), ("tarf",))
    assert set(scores) == set(TARF_KEYS) == set(METRICS["tarf"].keys)
    assert all(math.isnan(v) for v in scores.values())


# --- the bench's oracle ----------------------------------------------------------------------


def test_bench_trains_the_oracle_on_the_true_remaining_set(tmp_path, monkeypatch, small_digits: Dataset) -> None:
    import unlearnkit.bench as bench
    from unlearnkit.bench import BenchConfig, run_bench
    from unlearnkit.train import default_recipe

    grouped = attach_hierarchy(small_digits, Hierarchy.from_groups(small_digits.class_names, DIGIT_GROUPS))
    monkeypatch.setattr(bench, "load_dataset", lambda *args, **kwargs: grouped)
    seen: dict[str, np.ndarray] = {}
    real_train = bench._train

    def spy(config, dataset, request, train_idx, *args):
        seen[args[-1]] = np.asarray(train_idx)
        return real_train(config, dataset, request, train_idx, *args)

    monkeypatch.setattr(bench, "_train", spy)
    config = BenchConfig("digits", "mlp", ["target-mismatch:3->mid"], [], out=tmp_path / "out", cache_dir=tmp_path / "cache",
                         recipe=replace(default_recipe("digits"), epochs=1))
    rows = run_bench(config)
    request = make_request(grouped, "target-mismatch:3->mid")
    assert np.array_equal(seen["oracle"], request.oracle_idx)
    assert len(seen["oracle"]) < len(request.retain_idx)
    assert {r["method"] for r in rows} == {"original", "retrain"}


def test_class_request_oracle_is_unchanged(class_3: ForgetRequest) -> None:
    assert np.array_equal(class_3.oracle_idx, class_request(class_3.dataset, ["3"]).retain_idx)
