"""Forget requests: class-wise, random and explicit-index index sets, the spec parser, and every refusal."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import subset

from unlearnkit.data import Dataset, ImageData
from unlearnkit.tasks import (
    ForgetRequest,
    RequestError,
    check_partition,
    class_request,
    index_request,
    make_request,
    random_request,
)


def _assert_train_partition(request: ForgetRequest, n_train: int) -> None:
    forget, retain = request.forget_idx, request.retain_idx
    assert len(np.unique(forget)) == len(forget) and len(np.unique(retain)) == len(retain)
    assert np.intersect1d(forget, retain).size == 0
    assert np.array_equal(np.union1d(forget, retain), np.arange(n_train))


def _tiny_dataset(train_labels: list[int], test_labels: list[int], names: tuple[str, ...]) -> Dataset:
    def split(labels: list[int]) -> ImageData:
        rng = np.random.default_rng(len(labels))
        images = rng.integers(0, 256, size=(len(labels), 1, 4, 4), dtype=np.uint8)
        return ImageData(images, np.array(labels, dtype=np.int64), names)

    return Dataset("tiny", split(train_labels), split(test_labels))


# --- class-wise requests ---------------------------------------------------------------------


def test_class_request_by_name_and_by_index_give_the_same_sets(small_digits: Dataset) -> None:
    by_name = class_request(small_digits, ["3"])
    by_int = class_request(small_digits, [3])
    by_spec_index = make_request(small_digits, "class:3")
    for other in (by_int, by_spec_index):
        for attr in ("forget_idx", "retain_idx", "test_forget_idx", "test_retain_idx"):
            assert np.array_equal(getattr(by_name, attr), getattr(other, attr)), attr
        assert other.forget_classes == (3,)
    assert by_name.key() == by_int.key()


def test_class_request_accepts_numpy_integer_indices(small_digits: Dataset) -> None:
    # Indices often come out of numpy (np.unique(labels), labels[i]); they are indices like ints.
    expected = class_request(small_digits, [3, 5])
    for classes in ([np.int64(3), np.int64(5)], np.array([3, 5])):
        request = class_request(small_digits, classes)
        assert np.array_equal(request.forget_idx, expected.forget_idx)
        assert request.forget_classes == (3, 5)


def test_class_request_index_and_name_agree_when_names_are_not_digits() -> None:
    data = _tiny_dataset([0, 1, 2, 1, 0, 2, 1], [2, 1, 0, 1], ("cat", "dog", "bird"))
    by_name = make_request(data, "class:dog")
    by_index = make_request(data, "class:1")
    assert np.array_equal(by_name.forget_idx, [1, 3, 6])
    assert np.array_equal(by_index.forget_idx, by_name.forget_idx)
    assert np.array_equal(by_index.test_forget_idx, [1, 3])
    # The spec is normalised to names, so both requests are recorded identically.
    assert by_index.spec == by_name.spec == "class:dog"


def test_class_request_partitions_train_into_the_class_and_the_rest(
    small_digits: Dataset, class_3: ForgetRequest
) -> None:
    labels = small_digits.train.labels
    _assert_train_partition(class_3, len(small_digits.train))
    assert np.array_equal(class_3.forget_idx, np.flatnonzero(labels == 3))
    assert len(class_3.forget_idx) > 0
    assert np.all(labels[class_3.retain_idx] != 3)
    assert class_3.kind == "class" and class_3.forget_classes == (3,)


def test_class_request_test_splits(small_digits: Dataset, class_3: ForgetRequest) -> None:
    test_labels = small_digits.test.labels
    assert np.array_equal(class_3.test_forget_idx, np.flatnonzero(test_labels == 3))
    assert len(class_3.test_forget_idx) > 0
    assert np.array_equal(class_3.test_retain_idx, np.flatnonzero(test_labels != 3))
    assert np.intersect1d(class_3.test_forget_idx, class_3.test_retain_idx).size == 0
    assert len(class_3.test_forget_idx) + len(class_3.test_retain_idx) == len(small_digits.test)


def test_multi_class_request(small_digits: Dataset) -> None:
    request = make_request(small_digits, "class:1,2")
    train, test = small_digits.train.labels, small_digits.test.labels
    _assert_train_partition(request, len(train))
    assert np.array_equal(request.forget_idx, np.flatnonzero(np.isin(train, [1, 2])))
    assert np.array_equal(request.test_forget_idx, np.flatnonzero(np.isin(test, [1, 2])))
    assert np.array_equal(request.test_retain_idx, np.flatnonzero(~np.isin(test, [1, 2])))
    assert set(request.forget_classes) == {1, 2}
    # Spaces around names are tolerated.
    spaced = make_request(small_digits, "class: 1 , 2")
    assert np.array_equal(spaced.forget_idx, request.forget_idx)


# --- random requests -------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_random_request_fraction_size_is_rounded(digits: Dataset, fraction: float) -> None:
    n = len(digits.train)  # 1437: 0.1 * n = 143.7, so rounding (144) differs from truncation (143)
    request = random_request(digits, fraction, seed=0)
    assert len(request.forget_idx) == round(fraction * n)
    _assert_train_partition(request, n)
    assert request.kind == "random"


def test_random_request_count(small_digits: Dataset) -> None:
    request = random_request(small_digits, 50, seed=0)
    assert len(request.forget_idx) == 50
    _assert_train_partition(request, len(small_digits.train))


def test_random_request_is_seeded(small_digits: Dataset) -> None:
    a = random_request(small_digits, 0.1, seed=0)
    b = random_request(small_digits, 0.1, seed=0)
    c = random_request(small_digits, 0.1, seed=1)
    assert np.array_equal(a.forget_idx, b.forget_idx)
    assert not np.array_equal(np.sort(a.forget_idx), np.sort(c.forget_idx))
    assert len(a.forget_idx) == len(c.forget_idx)
    # The spec parser passes the seed on.
    assert np.array_equal(make_request(small_digits, "random:0.1", seed=1).forget_idx, c.forget_idx)


def test_random_request_test_splits(small_digits: Dataset) -> None:
    for request in (random_request(small_digits, 0.2, seed=3), random_request(small_digits, 7, seed=3)):
        assert np.array_equal(request.test_retain_idx, np.arange(len(small_digits.test)))
        assert len(request.test_forget_idx) == 0


def test_make_request_parses_each_form(small_digits: Dataset) -> None:
    n = len(small_digits.train)
    by_class = make_request(small_digits, "class:3")
    assert by_class.kind == "class" and np.array_equal(
        by_class.forget_idx, np.flatnonzero(small_digits.train.labels == 3)
    )
    fraction = make_request(small_digits, "random:0.1", seed=5)
    assert fraction.kind == "random" and len(fraction.forget_idx) == round(0.1 * n)
    assert np.array_equal(fraction.forget_idx, random_request(small_digits, 0.1, seed=5).forget_idx)
    count = make_request(small_digits, "random:50", seed=5)
    assert count.kind == "random" and len(count.forget_idx) == 50
    assert np.array_equal(count.forget_idx, random_request(small_digits, 50, seed=5).forget_idx)


# --- explicit indices ------------------------------------------------------------------------


def test_index_request_forgets_exactly_the_given_indices(small_digits: Dataset) -> None:
    request = index_request(small_digits, [5, 1, 42])
    assert sorted(request.forget_idx.tolist()) == [1, 5, 42]
    _assert_train_partition(request, len(small_digits.train))
    assert np.array_equal(request.test_retain_idx, np.arange(len(small_digits.test)))
    assert len(request.test_forget_idx) == 0


# --- refusals --------------------------------------------------------------------------------


def test_request_error_is_a_value_error() -> None:
    assert issubclass(RequestError, ValueError)


def test_unknown_class_name_lists_valid_classes(small_digits: Dataset) -> None:
    with pytest.raises(RequestError, match="unknown class 'cat'") as info:
        class_request(small_digits, ["cat"])
    message = str(info.value)
    assert all(name in message for name in small_digits.class_names)


def test_unknown_class_name_with_named_classes_lists_them() -> None:
    data = _tiny_dataset([0, 1, 2, 1], [2, 1], ("cat", "dog", "bird"))
    with pytest.raises(RequestError, match="cat, dog, bird"):
        make_request(data, "class:horse")


@pytest.mark.parametrize("index", [10, 99, -1, "10", "-1"])
def test_out_of_range_class_index(small_digits: Dataset, index) -> None:
    with pytest.raises(RequestError, match=r"out of range.*0\.\.9"):
        class_request(small_digits, [index])


def test_empty_class_list(small_digits: Dataset) -> None:
    with pytest.raises(RequestError, match="at least one class"):
        class_request(small_digits, [])
    with pytest.raises(RequestError, match="at least one class"):
        make_request(small_digits, "class: , ")


def test_class_named_twice(small_digits: Dataset) -> None:
    with pytest.raises(RequestError, match="twice"):
        class_request(small_digits, ["3", 3])


def test_class_without_training_samples(digits: Dataset) -> None:
    # Keep only the training samples that are not a 7; the test split keeps its 7s.
    keep = digits.train.labels != 7
    train = replace(digits.train, images=digits.train.images[keep], labels=digits.train.labels[keep])
    no_sevens = Dataset("digits", train, digits.test)
    with pytest.raises(RequestError, match="no training samples"):
        class_request(no_sevens, ["7"])
    # The same on a constructed dataset where class 2 never appears.
    tiny = _tiny_dataset([0, 1, 0, 1], [0, 1, 2], ("a", "b", "c"))
    with pytest.raises(RequestError, match="no training samples"):
        make_request(tiny, "class:c")


def test_class_without_training_samples_in_a_subset(digits: Dataset) -> None:
    # A very small subset misses some classes entirely.
    tiny = subset(digits, 5, 5)
    missing = sorted(set(range(10)) - set(tiny.train.labels.tolist()))
    assert missing, "the subset should miss at least one class"
    with pytest.raises(RequestError, match="no training samples"):
        class_request(tiny, [missing[0]])


def test_all_classes_at_once(small_digits: Dataset) -> None:
    with pytest.raises(RequestError, match="nothing to retain"):
        class_request(small_digits, list(range(10)))
    with pytest.raises(RequestError, match="nothing to retain"):
        make_request(small_digits, "class:" + ",".join(str(c) for c in range(10)))


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1])
def test_bad_fraction(small_digits: Dataset, fraction: float) -> None:
    with pytest.raises(RequestError, match=r"fraction must lie in \(0, 1\)"):
        random_request(small_digits, fraction)


@pytest.mark.parametrize("count", [0, -5])
def test_non_positive_count(small_digits: Dataset, count: int) -> None:
    with pytest.raises(RequestError, match=rf"a forget count must be >= 1; got {count}"):
        random_request(small_digits, count)


@pytest.mark.parametrize("extra", [0, 1, 100])
def test_count_at_least_n(small_digits: Dataset, extra: int) -> None:
    n = len(small_digits.train)
    with pytest.raises(RequestError, match="nothing to retain"):
        random_request(small_digits, n + extra)


def test_count_just_below_n_is_allowed(small_digits: Dataset) -> None:
    n = len(small_digits.train)
    request = random_request(small_digits, n - 1)
    assert len(request.retain_idx) == 1


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ("random:0", "a forget count must be >= 1; got 0"),
        ("random:0.0001", r"empty forget set \(0.0001 x 600 rounds to 0 samples\)"),
        ("random:1.0", r"\(0, 1\)"),
        ("random:1.5", r"\(0, 1\)"),
        ("random:-0.2", r"\(0, 1\)"),
        ("random:-5", "a forget count must be >= 1; got -5"),
        ("random:600", "nothing to retain"),
        ("random:abc", "needs a number"),
        ("random:", "needs an argument"),
        ("class:", "needs an argument"),
        ("class", "needs an argument"),
        ("foo:1", "unknown task 'foo:1'"),
        ("", "unknown task"),
    ],
)
def test_make_request_refusals(small_digits: Dataset, spec: str, pattern: str) -> None:
    with pytest.raises(RequestError, match=pattern):
        make_request(small_digits, spec)


def test_unknown_task_kind_lists_valid_forms(small_digits: Dataset) -> None:
    with pytest.raises(RequestError) as info:
        make_request(small_digits, "foo:1")
    assert "class:NAME" in str(info.value) and "random:" in str(info.value)


def test_index_request_duplicates(small_digits: Dataset) -> None:
    with pytest.raises(RequestError, match="duplicates"):
        index_request(small_digits, [3, 4, 3])


@pytest.mark.parametrize("bad", [[0, 600], [-1, 2], [10_000]])
def test_index_request_out_of_range(small_digits: Dataset, bad: list[int]) -> None:
    with pytest.raises(RequestError, match=r"\[0, 600\)"):
        index_request(small_digits, bad)


def test_index_request_empty(small_digits: Dataset) -> None:
    with pytest.raises(RequestError, match="empty"):
        index_request(small_digits, [])


def test_index_request_covering_everything(small_digits: Dataset) -> None:
    with pytest.raises(RequestError, match="nothing would remain"):
        index_request(small_digits, np.arange(len(small_digits.train)))


def test_index_request_non_integer(small_digits: Dataset) -> None:
    with pytest.raises(RequestError, match="integers"):
        index_request(small_digits, [0.5, 1.5])


def test_check_partition_accepts_a_valid_partition() -> None:
    check_partition(np.array([0, 3]), np.array([1, 2, 4]), 5, "training")


@pytest.mark.parametrize(
    ("forget", "retain", "pattern"),
    [
        ([0, 1], [1, 2, 3], "overlap in 1"),
        ([0, 1], [2], "cover all 4"),
        ([0, 0, 1], [2, 3], "duplicates"),
        ([0, 1], [2, 3, 4], r"\[0, 4\)"),
        ([], [0, 1, 2, 3], "empty"),
        ([0, 1, 2, 3], [], "nothing would remain"),
    ],
)
def test_check_partition_refusals(forget: list[int], retain: list[int], pattern: str) -> None:
    with pytest.raises(RequestError, match=pattern):
        check_partition(np.array(forget, dtype=np.int64), np.array(retain, dtype=np.int64), 4, "training")


def test_forget_request_validates_its_sets(small_digits: Dataset) -> None:
    n = len(small_digits.train)
    with pytest.raises(RequestError, match="overlap"):
        ForgetRequest(
            dataset=small_digits,
            kind="indices",
            spec="bad",
            forget_idx=np.array([0, 1]),
            retain_idx=np.arange(1, n),
            test_forget_idx=np.empty(0, dtype=np.int64),
            test_retain_idx=np.arange(len(small_digits.test)),
        )


def test_one_class_name_string_is_one_name_and_bools_are_refused(small_digits: Dataset) -> None:
    assert class_request(small_digits, "3").spec == class_request(small_digits, ["3"]).spec
    with pytest.raises(RequestError, match="class index 34 is out of range"):  # one index, not classes 3 and 4
        class_request(small_digits, "34")
    with pytest.raises(RequestError, match="True is not a class name or index"):
        class_request(small_digits, [True])
