"""UNSIR, Bad Teacher, Ridge and NGD: each method's defining property and its parameter checks."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CPU, TINY_RECIPE

import unlearnkit.methods.ridge as ridge_module
from unlearnkit.methods import MethodError, Split, retain_subset, unlearn
from unlearnkit.methods.bad_teacher import bad_teacher_loss, incompetent_teacher
from unlearnkit.methods.common import forget_paced_steps, retain_cycle
from unlearnkit.methods.ngd import add_gradient_noise
from unlearnkit.methods.ridge import add_l2_gradient, ridge_coefficient
from unlearnkit.methods.unsir import channel_stats, learn_noise, noise_loss, retained_subset
from unlearnkit.metrics import evaluate
from unlearnkit.runtime import cpu_generator
from unlearnkit.tasks import index_request, place

# The reference defaults are tuned for CIFAR ResNet-18; on the 600-sample MLP (one forget batch):
# - UNSIR: the retained subset is ~54 samples per class instead of 500, so the noise is copied 10
#   times instead of 80, which keeps the noise at the reference's ~36% of the impair data;
# - Bad Teacher takes 1 step per epoch here (60 forget + 30% of 540 retain samples), so 5 epochs at 1e-3;
# - Ridge and NGD take 1 step per epoch (|D_f| < one batch), so more epochs and a larger AdamW lr.
TINY_HPARAMS: dict[str, dict] = {
    "unsir": {"noise_copies": 10},
    "bad-teacher": {"lr": 1e-3, "epochs": 5},
    "ridge": {"lr": 1e-2, "epochs": 10},
    "ngd": {"lr": 3e-2, "epochs": 10},
}


@pytest.fixture(scope="module")
def splits(class_3):
    return place(class_3, CPU)


def run(original, request, splits, method, **overrides):
    hparams = {**TINY_HPARAMS.get(method, {}), **overrides}
    return unlearn(original, request, method, device=CPU, splits=splits, recipe=TINY_RECIPE, **hparams)


def flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@torch.no_grad()
def logits_of(model: torch.nn.Module, splits, indices) -> torch.Tensor:
    x, _ = splits.train.gather(indices)
    return model.eval()(x)


def kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> float:
    """Mean per-sample ``KL(softmax(teacher) || softmax(student))``."""
    return F.kl_div(F.log_softmax(student_logits, 1), F.softmax(teacher_logits, 1), reduction="batchmean").item()


def record_reads(monkeypatch) -> list[np.ndarray]:
    seen: list[np.ndarray] = []
    real = Split.batches

    def recording(self, *args, **kwargs):
        seen.append(np.asarray(self.indices))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Split, "batches", recording)
    return seen


# --------------------------------------------------------------------------------------------- UNSIR


def test_unsir_noise_maximises_the_forget_class_error(original, class_3, splits):
    retain = Split(splits.train, class_3.retain_idx, TINY_RECIPE.augment_for("digits"))
    shift, scale = channel_stats(retain, 256, cpu_generator(0))
    start = torch.randn((32, 1, 8, 8), generator=cpu_generator(0))
    grads = [None if p.grad is None else p.grad.clone() for p in original.parameters()]
    noise = learn_noise(original, 3, start, steps=25, lr=0.1, l2=0.1, shift=shift, scale=scale)
    target = torch.full((32,), 3)
    with torch.no_grad():
        random_ce = F.cross_entropy(original(shift + scale * start), target)
        learned_ce = F.cross_entropy(original(noise), target)
        # the objective (-CE + l2 penalty) went down from the random start
        z = (noise - shift) / scale
        assert noise_loss(original, z, 3, 0.1, shift, scale) < noise_loss(original, start, 3, 0.1, shift, scale)
    assert learned_ce > random_ce + 1.0
    for p, g in zip(original.parameters(), grads, strict=True):  # only the noise was differentiated
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)


def test_unsir_channel_stats_match_numpy(class_3, splits):
    retain = Split(splits.train, class_3.retain_idx, TINY_RECIPE.augment_for("digits"))
    mean, std = channel_stats(retain, 100, cpu_generator(0))
    x, _ = splits.train.gather(class_3.retain_idx)
    assert mean.shape == (1, 1, 1)
    torch.testing.assert_close(mean.flatten(), x.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(std.flatten(), x.std(dim=(0, 2, 3), unbiased=False), rtol=1e-4, atol=1e-6)


def test_unsir_impair_forgets_and_repair_restores_the_retain_set(original, class_3, splits):
    impaired, record = run(original, class_3, splits, "unsir", repair_epochs=0)
    repaired, _ = run(original, class_3, splits, "unsir", repair_epochs=1)
    before = evaluate(original, class_3, splits, ("accuracy",))
    after_impair = evaluate(impaired, class_3, splits, ("accuracy",))
    after_repair = evaluate(repaired, class_3, splits, ("accuracy",))
    assert after_impair["forget_acc"] < before["forget_acc"] - 50
    assert after_repair["retain_acc"] > after_impair["retain_acc"] + 10
    assert after_repair["forget_acc"] < 10
    assert record.extra["forget_classes"] == [3] and record.extra["noise_steps"] == 25
    n_noise = 32 * TINY_HPARAMS["unsir"]["noise_copies"]
    n_retained = sum(min(500, int((splits.train.labels.numpy()[class_3.retain_idx] == c).sum())) for c in range(10))
    assert record.extra["noise_share"] == pytest.approx(n_noise / (n_noise + n_retained))


def test_unsir_reads_no_forget_image_and_a_per_class_retain_subset(original, class_3, splits, monkeypatch):
    seen = record_reads(monkeypatch)
    run(original, class_3, splits, "unsir", samples_per_class=20)
    read = np.concatenate(seen)
    assert not np.isin(read, class_3.forget_idx).any()
    assert np.isin(read, class_3.retain_idx).all()
    labels = splits.train.labels.numpy()[np.unique(read)]
    assert sorted(np.unique(labels, return_counts=True)[1]) == [20] * 9


def test_unsir_retained_subset(class_3, splits):
    retain = Split(splits.train, class_3.retain_idx, TINY_RECIPE.augment_for("digits"))
    part = retained_subset(retain, 5, cpu_generator(1))
    labels = splits.train.labels.numpy()[part]
    assert np.isin(part, class_3.retain_idx).all() and len(np.unique(part)) == len(part) == 45
    assert (np.bincount(labels, minlength=10)[[c for c in range(10) if c != 3]] == 5).all()
    assert np.array_equal(part, retained_subset(retain, 5, cpu_generator(1)))
    assert not np.array_equal(part, retained_subset(retain, 5, cpu_generator(2)))
    everything = retained_subset(retain, 10_000, cpu_generator(1))  # capped by the class sizes
    assert np.array_equal(everything, np.sort(class_3.retain_idx))


def test_unsir_sample_wise_request_learns_noise_per_class_present(original, small_digits):
    labels = small_digits.train.labels
    forget = np.concatenate([np.flatnonzero(labels == 1)[:4], np.flatnonzero(labels == 7)[:3]])
    request = index_request(small_digits, forget)
    _, record = unlearn(original, request, "unsir", device=CPU, recipe=TINY_RECIPE, noise_steps=2, noise_copies=1)
    assert record.extra["forget_classes"] == [1, 7] and record.extra["noise_steps"] == 4


@pytest.mark.parametrize(
    "bad",
    [
        {"noise_batch_size": 0},
        {"impair_lr": 0.0},
        {"impair_epochs": 0, "repair_epochs": 0},
        {"noise_steps": -1},
        {"noise_l2": -1.0},
    ],
)
def test_unsir_bad_hyperparameters(original, class_3, splits, bad):
    with pytest.raises(MethodError, match="unsir"):
        run(original, class_3, splits, "unsir", **bad)


# --------------------------------------------------------------------------------------- Bad Teacher


def test_bad_teacher_student_follows_the_incompetent_teacher_on_forget_only(original, class_3, splits):
    student, _ = run(original, class_3, splits, "bad-teacher")
    bad = incompetent_teacher(original, 0, CPU)  # the run's seed is 0
    forget_bad = logits_of(bad, splits, class_3.forget_idx)
    forget_kl_before = kl(forget_bad, logits_of(original, splits, class_3.forget_idx))
    forget_kl_after = kl(forget_bad, logits_of(student, splits, class_3.forget_idx))
    assert forget_kl_after < 0.5 * forget_kl_before
    retain_kl = kl(logits_of(original, splits, class_3.retain_idx), logits_of(student, splits, class_3.retain_idx))
    assert retain_kl < 0.1 * forget_kl_before and retain_kl < 0.2


def test_bad_teacher_reads_only_the_granted_retain_fraction(original, class_3, splits, monkeypatch):
    seen = record_reads(monkeypatch)
    run(original, class_3, splits, "bad-teacher", retain_fraction=0.3, epochs=1)
    read = np.concatenate(seen)
    granted = retain_subset(class_3.retain_idx, 0.3, seed=0)
    assert np.array_equal(np.sort(read[np.isin(read, class_3.retain_idx)]), granted)
    assert len(granted) == round(0.3 * len(class_3.retain_idx))
    assert np.array_equal(np.sort(read[~np.isin(read, class_3.retain_idx)]), np.sort(class_3.forget_idx))


def test_bad_teacher_loss_is_the_reference_kl():
    gen = cpu_generator(0)
    student, competent, incompetent = (torch.randn(6, 4, generator=gen) for _ in range(3))
    flags = torch.tensor([1, 0, 0, 1, 1, 0])
    for temperature in (1.0, 3.0):
        expected = 0.0
        for s, c, u, f in zip(student, competent, incompetent, flags, strict=True):
            p = F.softmax((u if f else c) / temperature, 0)
            expected += (p * (p.log() - F.log_softmax(s / temperature, 0))).sum()
        expected = expected / (6 * 4)  # PyTorch's 'mean' reduction: over the batch and the classes
        torch.testing.assert_close(bad_teacher_loss(student, flags, competent, incompetent, temperature), expected)


def test_incompetent_teacher_is_a_seeded_reinitialisation(original):
    before = flat(original).clone()
    first, again, other = (incompetent_teacher(original, s, CPU) for s in (0, 0, 1))
    assert torch.equal(flat(first), flat(again)) and not torch.equal(flat(first), flat(other))
    assert not torch.equal(flat(first), before) and torch.equal(flat(original), before)
    assert not first.training and all(not p.requires_grad for p in first.parameters())


@pytest.mark.parametrize(
    "bad", [{"retain_fraction": 0.0}, {"retain_fraction": 1.5}, {"temperature": 0.0}, {"lr": -1.0}]
)
def test_bad_teacher_bad_hyperparameters(original, class_3, splits, bad):
    with pytest.raises(MethodError, match="bad-teacher"):
        run(original, class_3, splits, "bad-teacher", **bad)


# --------------------------------------------------------------------------------------------- Ridge


def test_ridge_schedule_values():
    assert ridge_coefficient(0.1, 0.9, 0) == pytest.approx(0.1)
    assert ridge_coefficient(0.1, 0.9, 1) == pytest.approx(0.09)
    assert ridge_coefficient(0.1, 0.9, 2) == pytest.approx(0.081)
    assert ridge_coefficient(0.1, 0.9, 10) == pytest.approx(0.1 * 0.9**10)
    assert ridge_coefficient(0.5, 1.0, 7) == pytest.approx(0.5)
    assert ridge_coefficient(0.5, 0.0, 1) == 0


def test_ridge_applies_the_decayed_coefficient_every_step(original, class_3, splits, monkeypatch):
    seen: list[float] = []
    real = ridge_module.add_l2_gradient
    monkeypatch.setattr(ridge_module, "add_l2_gradient", lambda params, c: (seen.append(c), real(params, c))[1])
    _, record = run(original, class_3, splits, "ridge", epochs=3, batch_size=32, lambda_reg=0.2, gamma_reg=0.5)
    per_epoch = math.ceil(len(class_3.forget_idx) / 32)
    assert record.steps == 3 * per_epoch == len(seen)
    assert seen == pytest.approx([0.2 * 0.5**t for t in range(3 * per_epoch)])


def test_ridge_penalty_shrinks_the_weights(original, class_3, splits):
    without, _ = run(original, class_3, splits, "ridge", lambda_reg=0.0, lr=1e-3)
    with_l2, _ = run(original, class_3, splits, "ridge", lambda_reg=0.1, gamma_reg=1.0, lr=1e-3)
    assert flat(with_l2).norm() < flat(without).norm() - 0.02 * flat(original).norm()


def test_l2_gradient_matches_autograd(original):
    model = copy.deepcopy(original)
    params = list(model.parameters())
    (0.3 * flat_grad(params).pow(2).sum()).backward()
    expected = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    penalty = add_l2_gradient(params, 0.3)
    for p, g in zip(params, expected, strict=True):
        torch.testing.assert_close(p.grad, g)
    torch.testing.assert_close(penalty, 0.3 * flat(model).pow(2).sum())


def flat_grad(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.flatten() for p in params])


def test_retain_batches_cycle_across_epochs(class_3, splits):
    assert forget_paced_steps(60, 256) == 1 and forget_paced_steps(65, 32) == 3 and forget_paced_steps(64, 32) == 2
    split = Split(splits.train, class_3.retain_idx[:10], TINY_RECIPE.augment_for("digits"))
    batches = retain_cycle(split, 4, cpu_generator(0))
    first_pass = [next(batches)[1] for _ in range(2)]  # 10 // 4 = 2 full batches per pass (last one dropped)
    second_pass = [next(batches)[1] for _ in range(2)]
    assert all(len(y) == 4 for y in first_pass + second_pass)
    small = Split(splits.train, class_3.retain_idx[:3], TINY_RECIPE.augment_for("digits"))
    assert [len(y) for _, y in itertools.islice(retain_cycle(small, 4, cpu_generator(0)), 3)] == [3, 3, 3]


def test_ridge_reads_only_the_granted_retain_fraction(original, class_3, splits, monkeypatch):
    seen = record_reads(monkeypatch)
    run(original, class_3, splits, "ridge", retain_fraction=0.1, epochs=2)
    read = np.concatenate(seen)
    assert np.isin(read, retain_subset(class_3.retain_idx, 0.1, seed=0)).all()


@pytest.mark.parametrize(
    "bad", [{"lambda_reg": -1.0}, {"gamma_reg": 1.5}, {"retain_fraction": 0.0}, {"epochs": 0}, {"logit_clamp": -1.0}]
)
def test_ridge_bad_hyperparameters(original, class_3, splits, bad):
    with pytest.raises(MethodError, match="ridge"):
        run(original, class_3, splits, "ridge", **bad)


# ----------------------------------------------------------------------------------------------- NGD


def plain_gd(original, class_3, splits, *, lr, epochs, batch_size=256, seed=0, clamp=30.0):
    """AdamW on the clamped retain cross-entropy, one step per forget batch, retain batches cycled."""
    model = copy.deepcopy(original).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = cpu_generator(seed)
    retain = Split(splits.train, class_3.retain_idx, TINY_RECIPE.augment_for("digits"))
    per_pass = len(retain) // batch_size if len(retain) > batch_size else 1

    def cycle():
        while True:
            yield from itertools.islice(retain.batches(batch_size, generator, augment=False), per_pass)

    batches = cycle()
    for _ in range(epochs * math.ceil(len(class_3.forget_idx) / batch_size)):
        x, y, _ = next(batches)
        loss = F.cross_entropy(model(x).clamp(-clamp, clamp), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def test_ngd_without_noise_is_plain_gradient_descent(original, class_3, splits):
    noiseless, _ = run(original, class_3, splits, "ngd", sigma=0.0, epochs=4, lr=1e-2, batch_size=32)
    expected = plain_gd(original, class_3, splits, lr=1e-2, epochs=4, batch_size=32)
    assert torch.equal(flat(noiseless), flat(expected))


def test_ngd_noise_moves_the_weights_more_with_larger_sigma(original, class_3, splits):
    # AdamW normalises the noisy gradient, so the effect grows with sigma relative to the
    # gradient's size, which is tiny on this interpolating model: compare small sigmas.
    base = flat(run(original, class_3, splits, "ngd", sigma=0.0, lr=1e-3, epochs=5)[0])
    distances = [
        (flat(run(original, class_3, splits, "ngd", sigma=s, lr=1e-3, epochs=5)[0]) - base).norm().item()
        for s in (1e-7, 1e-5, 1e-3)
    ]
    assert 0 < distances[0] < distances[1] < distances[2]


def test_ngd_is_deterministic_under_a_seed(original, class_3, splits):
    a, b, c = (flat(run(original, class_3, splits, "ngd", seed=s)[0]) for s in (5, 5, 6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_gradient_noise_is_sigma_times_a_seeded_gaussian():
    params = [
        torch.zeros(300, 40, requires_grad=True),
        torch.zeros(7, requires_grad=True),
        torch.zeros(3, requires_grad=True),
    ]
    for p in params[:2]:
        p.grad = torch.zeros_like(p)
    add_gradient_noise(params, 0.5, cpu_generator(0))
    first = torch.cat([p.grad.flatten() for p in params[:2]])
    assert params[2].grad is None  # a parameter without gradient gets no noise, as in the reference
    assert first.std().item() == pytest.approx(0.5, rel=0.05) and abs(first.mean().item()) < 0.02
    for p in params[:2]:
        p.grad = torch.zeros_like(p)
    add_gradient_noise(params, 1.0, cpu_generator(0))
    torch.testing.assert_close(torch.cat([p.grad.flatten() for p in params[:2]]), 2 * first)


def test_ngd_reads_only_the_granted_retain_fraction(original, class_3, splits, monkeypatch):
    seen = record_reads(monkeypatch)
    run(original, class_3, splits, "ngd", retain_fraction=0.2, epochs=2)
    assert np.isin(np.concatenate(seen), retain_subset(class_3.retain_idx, 0.2, seed=0)).all()


@pytest.mark.parametrize("bad", [{"sigma": -0.1}, {"retain_fraction": 1.5}, {"lr": 0.0}, {"batch_size": 0}])
def test_ngd_bad_hyperparameters(original, class_3, splits, bad):
    with pytest.raises(MethodError, match="ngd"):
        run(original, class_3, splits, "ngd", **bad)
