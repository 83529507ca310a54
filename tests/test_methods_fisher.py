"""SSD, IU, Boundary Shrink and NPO: their defining properties on the tiny digits problem."""

from __future__ import annotations

import copy
import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CPU, TINY_RECIPE

from unlearnkit.data import NO_AUGMENT
from unlearnkit.methods import MethodError, Split, unlearn
from unlearnkit.methods import boundary_shrink as bs_module
from unlearnkit.methods import ssd as ssd_module
from unlearnkit.methods.boundary_shrink import neighbour_labels
from unlearnkit.methods.common import frozen_copy
from unlearnkit.methods.iu import influence_vector, inverse_hvp, optml_recursion
from unlearnkit.methods.npo import npo_loss
from unlearnkit.methods.ssd import importances
from unlearnkit.models import as_classifier
from unlearnkit.tasks import place, random_request

# The defaults are the reference values for CIFAR ResNet-18. SSD's alpha = 10 selects almost
# nothing when |D| / |D_f| is ~10 (here 600 / 67): I_f / I_D cannot exceed about that ratio (see
# test_ssd_importance_ratio_is_bounded_by_the_batch_ratio). On a 600-sample MLP that fits its
# training set perfectly the gradients are tiny, so IU's alpha = 0.2 barely moves the weights, and
# BS (lr 1e-5) and NPO (lr 1e-4) take only 10 / 5 steps.
TINY_HPARAMS: dict[str, dict] = {
    "ssd": {"selection": 1.0},
    "iu": {"alpha": 10.0},
    "boundary-shrink": {"lr": 0.01},
    "npo": {"lr": 1e-3},
}


@pytest.fixture(scope="module")
def splits(class_3):
    return place(class_3, CPU)


def weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def forget_data(class_3, splits) -> tuple[torch.Tensor, torch.Tensor]:
    return splits.train.gather(class_3.forget_idx)


# --------------------------------------------------------------------------------------- SSD


def by_label(request, indices: np.ndarray) -> np.ndarray:
    """``indices`` sorted by their training label, index order within a class (numpy, test-side)."""
    return indices[np.argsort(request.train_labels[indices], kind="stable")]


def test_ssd_dampens_exactly_the_selected_entries(original, class_3, splits):
    hp = {"selection": 1.0, "dampening": 0.5, "importance_batch_size": 64}
    unlearned, record = unlearn(original, class_3, "ssd", device=CPU, splits=splits, recipe=TINY_RECIPE, **hp)
    # The importances the method saw: same public function, same splits, the reference's full-class
    # order (D = retain then forget, each sorted by label, so every batch holds one class).
    augment = TINY_RECIPE.augment_for("digits")
    retain_order, forget_order = by_label(class_3, class_3.retain_idx), by_label(class_3, class_3.forget_idx)
    full = Split(splits.train, np.concatenate([retain_order, forget_order]), augment)
    forget = Split(splits.train, forget_order, augment)
    model = copy.deepcopy(original)
    i_full = importances(model, full, torch.Generator(), 64)
    i_forget = importances(model, forget, torch.Generator(), 64)
    changed_any = unchanged_any = False
    after = dict(unlearned.named_parameters())
    for name, w in original.named_parameters():
        selected = i_forget[name] > hp["selection"] * i_full[name]
        new = after[name].detach()
        assert torch.equal(new[~selected], w.detach()[~selected]), f"{name}: an unselected entry changed"
        factor = torch.clamp(hp["dampening"] * i_full[name] / i_forget[name], max=1.0)
        torch.testing.assert_close(new[selected], (w.detach() * factor)[selected], rtol=1e-6, atol=0)
        changed_any |= bool(selected.any())
        unchanged_any |= bool((~selected).any())
    assert changed_any and unchanged_any
    assert 0 < record.extra["dampened_fraction"] < 1


def test_ssd_importances_are_mean_squared_batch_gradients(original, class_3, splits):
    forget = Split(splits.train, class_3.forget_idx, NO_AUGMENT)
    model = copy.deepcopy(original)
    result = importances(model, forget, torch.Generator(), 40)  # 67 samples: batches of 40 and 27
    x, y = forget_data(class_3, splits)
    expected = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for part in (slice(0, 40), slice(40, None)):
        model.zero_grad()
        F.cross_entropy(model(x[part]), y[part]).backward()
        for name, p in model.named_parameters():
            expected[name] += p.grad.square() / 2
    for name in expected:
        torch.testing.assert_close(result[name], expected[name])


def recorded_importance_splits(monkeypatch) -> list[Split]:
    """Patch SSD's importance pass to record the splits it is given: [D, D_f] per run."""
    seen: list[Split] = []
    real = ssd_module.importances

    def recording(model, split, generator, batch_size):
        seen.append(split)
        return real(model, split, generator, batch_size)

    monkeypatch.setattr(ssd_module, "importances", recording)
    return seen


def test_ssd_class_wise_batches_hold_one_class_like_the_reference(original, class_3, splits, monkeypatch):
    # Regression: D_r used to be batched in index order (mixed classes) while D_f's batches hold
    # one class; the reference's full-class script builds both class by class. With mixed retain
    # batches the class gradients cancel, I_D is dominated by D's forget batches and I_f / I_D piles
    # up at its bound for most entries (see the SSD docstring).
    seen = recorded_importance_splits(monkeypatch)
    unlearn(original, class_3, "ssd", device=CPU, splits=splits, selection=1.0)
    full, forget = seen
    retain_order, forget_order = by_label(class_3, class_3.retain_idx), by_label(class_3, class_3.forget_idx)
    np.testing.assert_array_equal(full.indices, np.concatenate([retain_order, forget_order]))
    np.testing.assert_array_equal(forget.indices, forget_order)
    labels = class_3.train_labels[full.indices[: len(retain_order)]]
    assert (np.diff(labels) >= 0).all() and len(np.unique(labels)) == 9
    # Every full batch of D that lies inside one class holds that class only.
    batch_labels = [set(class_3.train_labels[full.indices[i : i + 64]]) for i in range(0, len(full), 64)]
    assert sum(len(b) == 1 for b in batch_labels) >= len(batch_labels) - 9


def test_ssd_random_request_keeps_the_index_order(original, small_digits, monkeypatch):
    # The reference's random script keeps the random order of random_split: no sorting there.
    request = random_request(small_digits, 0.1, seed=0)
    seen = recorded_importance_splits(monkeypatch)
    unlearn(original, request, "ssd", device=CPU, splits=place(request, CPU))
    full, forget = seen
    np.testing.assert_array_equal(full.indices, np.concatenate([request.retain_idx, request.forget_idx]))
    np.testing.assert_array_equal(forget.indices, request.forget_idx)


def test_ssd_importance_ratio_is_bounded_by_the_batch_ratio(original, class_3, splits, caplog):
    # Documented property: D contains D_f, so when |D_r| is a multiple of the batch size D's forget
    # batches are exactly D_f's and I_f / I_D <= B_D / B_f for every entry; a selection alpha at or
    # above that bound selects nothing (class-wise forgetting on 10 balanced classes: ~10 = alpha).
    batch = 41
    n_r, n_f = len(class_3.retain_idx), len(class_3.forget_idx)
    assert n_r % batch == 0  # 533 = 13 x 41 on this split
    bound = math.ceil((n_r + n_f) / batch) / math.ceil(n_f / batch)  # 15 / 2
    _, record = unlearn(original, class_3, "ssd", device=CPU, splits=splits, selection=1.0, importance_batch_size=batch)
    assert 0.5 * bound < record.extra["max_importance_ratio"] <= bound * (1 + 1e-5)
    with caplog.at_level(logging.WARNING, logger="unlearnkit.methods.ssd"):
        unlearned, record = unlearn(
            original, class_3, "ssd", device=CPU, splits=splits, selection=bound * (1 + 1e-4), importance_batch_size=batch
        )
    assert record.extra["dampened_fraction"] == 0
    assert torch.equal(weights(unlearned), weights(original))
    assert "the model is unchanged" in caplog.text


def test_ssd_with_huge_alpha_changes_nothing(original, class_3, splits):
    unlearned, _ = unlearn(original, class_3, "ssd", device=CPU, splits=splits, selection=1e30)
    assert torch.equal(weights(unlearned), weights(original))


@pytest.mark.parametrize(
    "bad", [{"dampening": 0.0}, {"selection": -1.0}, {"importance_batch_size": 0}, {"lower_bound": 0.0}]
)
def test_ssd_bad_hyperparameters(original, class_3, splits, bad):
    with pytest.raises(MethodError):
        unlearn(original, class_3, "ssd", device=CPU, splits=splits, **bad)


# ---------------------------------------------------------------------------------------- IU


def linear_digits_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return as_classifier(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)))


def per_sample_grads(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    grads = []
    for i in range(len(y)):
        loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))]))
    return grads


def test_iu_inverse_hvp_matches_the_explicit_matrix_and_the_literal_recursion(class_3, splits):
    model = linear_digits_model().eval()
    n_damp = 20  # N: uses the first N + 2 = 22 retain samples
    retain = Split(splits.train, class_3.retain_idx, NO_AUGMENT)
    p = sum(q.numel() for q in model.parameters())
    v = torch.randn(p, generator=torch.Generator().manual_seed(1))
    result, _ = inverse_hvp(model, retain, v, n_damp, 8, torch.Generator(), augment=False)

    x, y = splits.train.gather(class_3.retain_idx[: n_damp + 2])
    grads = per_sample_grads(model, x, y)
    literal = optml_recursion(v, grads, n_damp)
    torch.testing.assert_close(result, literal, rtol=1e-5, atol=1e-6)

    # The same estimator as an explicit p x p matrix: M = I + g_1 s^T / N, s = g_2 + ... + g_m.
    g = torch.stack(grads).double()
    matrix = torch.eye(p, dtype=torch.float64) + torch.outer(g[0], g[1:].sum(0)) / n_damp
    explicit = torch.linalg.solve(matrix, v.double())
    torch.testing.assert_close(result.double(), explicit, rtol=1e-5, atol=1e-6)
    assert (result - v).norm() > 1e-3 * v.norm()  # the correction is not negligible here

    # Documented finding: OPTML's recursion is NOT the damped empirical Fisher inverse.
    fisher = torch.eye(p, dtype=torch.float64) + g.T @ g / n_damp
    assert not torch.allclose(explicit, torch.linalg.solve(fisher, v.double()), rtol=1e-3, atol=1e-4)


def test_iu_influence_vector_is_size_weighted_mean_gradient_difference(class_3, splits):
    model = linear_digits_model().eval()
    forget = Split(splits.train, class_3.forget_idx, NO_AUGMENT)
    retain = Split(splits.train, class_3.retain_idx, NO_AUGMENT)
    v, _ = influence_vector(model, forget, retain, 64, torch.Generator(), augment=False)
    mean_grad = {}
    for name, idx in (("f", class_3.forget_idx), ("r", class_3.retain_idx)):
        x, y = splits.train.gather(idx)
        mean_grad[name] = torch.cat(
            [g.flatten() for g in torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))]
        )
    n_f, n_r = len(class_3.forget_idx), len(class_3.retain_idx)
    torch.testing.assert_close(v, n_f / (n_f + n_r) * (mean_grad["f"] - mean_grad["r"]), rtol=1e-4, atol=1e-7)


def test_iu_update_is_linear_in_alpha(original, class_3, splits):
    deltas = []
    for alpha in (3.0, 6.0):
        unlearned, record = unlearn(original, class_3, "iu", device=CPU, splits=splits, alpha=alpha)
        deltas.append(weights(unlearned) - weights(original))
        assert record.extra["update_norm"] > 0
    torch.testing.assert_close(deltas[1], 2 * deltas[0], rtol=1e-4, atol=1e-6)


def test_iu_raises_forget_loss(original, class_3, splits):
    unlearned, _ = unlearn(original, class_3, "iu", device=CPU, splits=splits, **TINY_HPARAMS["iu"])
    x, y = forget_data(class_3, splits)
    with torch.no_grad():
        assert F.cross_entropy(unlearned(x), y) > F.cross_entropy(original(x), y)


def test_iu_reports_the_scale_of_its_step(original, class_3, splits):
    # alpha is scale-dependent (IU docstring): the record says how big the step was relative to the
    # weights and how much the rank-one term of OPTML's estimator changed v.
    alpha, n_damp = 10.0, 1000
    unlearned, record = unlearn(original, class_3, "iu", device=CPU, splits=splits, alpha=alpha, augment=False)
    delta = weights(unlearned) - weights(original)
    assert record.extra["update_norm"] == pytest.approx(float(delta.norm()), rel=1e-4)
    assert record.extra["relative_update"] == pytest.approx(float(delta.norm() / weights(original).norm()), rel=1e-4)

    model = copy.deepcopy(original)
    forget = Split(splits.train, class_3.forget_idx, NO_AUGMENT)
    retain = Split(splits.train, class_3.retain_idx, NO_AUGMENT)
    v, _ = influence_vector(model, forget, retain, 256, torch.Generator(), augment=False)
    direction, _ = inverse_hvp(model, retain, v, n_damp, 256, torch.Generator(), augment=False)
    torch.testing.assert_close(delta, alpha * direction, rtol=1e-4, atol=1e-6)
    assert record.extra["correction_ratio"] == pytest.approx(float((direction - v).norm() / v.norm()), rel=1e-3, abs=1e-6)
    x, y = splits.train.gather(class_3.retain_idx[: n_damp + 2])
    grads = per_sample_grads(model, x, y)
    eigenvalue = 1 + float(torch.dot(torch.stack(grads[1:]).sum(0), grads[0])) / n_damp
    assert record.extra["rank_one_eigenvalue"] == pytest.approx(eigenvalue, rel=1e-5)


@pytest.mark.parametrize("bad", [{"recursion_samples": 0}, {"batch_size": 0}, {"alpha": float("inf")}])
def test_iu_bad_hyperparameters(original, class_3, splits, bad):
    with pytest.raises(MethodError):
        unlearn(original, class_3, "iu", device=CPU, splits=splits, **bad)


# ---------------------------------------------------------------------------- Boundary Shrink

# At the reference bound 0.1 FGSM changes the frozen MLP's label on only ~40% of the 8x8
# digits; 0.2 crosses the boundary for almost all of them, which the defining tests need.
TEST_BOUND = 0.2


def test_boundary_shrink_labels_come_from_the_frozen_original(original, class_3, splits, monkeypatch):
    calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.nn.Module]] = []
    real = bs_module.neighbour_labels

    def recording(attacker, x, y, bound):
        labels = real(attacker, x, y, bound)
        calls.append((x.clone(), y.clone(), labels.clone(), attacker))
        return labels

    monkeypatch.setattr(bs_module, "neighbour_labels", recording)
    unlearn(original, class_3, "boundary-shrink", device=CPU, splits=splits, lr=0.01, bound=TEST_BOUND, epochs=5)
    reference = frozen_copy(original)
    assert len(calls) == 5
    for x, y, labels, attacker in calls:
        assert not attacker.training
        assert torch.equal(weights(attacker), weights(original)), "the attack model changed during training"
        assert torch.equal(labels, neighbour_labels(reference, x, y, TEST_BOUND))


def test_boundary_shrink_neighbour_labels_mostly_differ_and_are_learned(original, class_3, splits):
    x, y = forget_data(class_3, splits)
    labels = neighbour_labels(frozen_copy(original), x, y, TEST_BOUND)
    assert (labels != y).float().mean() > 0.8
    unlearned, record = unlearn(
        original, class_3, "boundary-shrink", device=CPU, splits=splits, lr=0.01, bound=TEST_BOUND, epochs=30
    )
    assert record.extra["neighbour_label_changed"] > 0.8
    with torch.no_grad():
        predicted = unlearned(x).argmax(1)
    assert (predicted == labels).float().mean() > 0.9


def test_boundary_shrink_fgsm_stays_in_pixel_range(original, class_3, splits):
    x, y = forget_data(class_3, splits)
    x_adv = bs_module.fgsm(frozen_copy(original), x, y, 0.5)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.equal(x_adv, torch.round(x_adv * 255) / 255)
    assert ((x_adv - x).abs() <= 0.5 + 1 / 255).all()


@pytest.mark.parametrize("bad", [{"bound": 0.0}, {"bound": 1.5}, {"epochs": 0}, {"lr": -1.0}])
def test_boundary_shrink_bad_hyperparameters(original, class_3, splits, bad):
    with pytest.raises(MethodError):
        unlearn(original, class_3, "boundary-shrink", device=CPU, splits=splits, **bad)


# --------------------------------------------------------------------------------------- NPO


@pytest.mark.parametrize("beta", [1e-3, 0.1, 1.0])
def test_npo_loss_at_the_original_is_2_over_beta_log_2(original, class_3, splits, beta):
    x, y = forget_data(class_3, splits)
    with torch.no_grad():
        logits = original(x)
    loss = npo_loss(logits, logits.clone(), y, beta)
    torch.testing.assert_close(loss, torch.tensor(2 / beta * math.log(2)), rtol=1e-6, atol=0)


def test_npo_gradient_weight_vanishes_as_probability_goes_to_zero():
    beta = 0.1
    reference = torch.tensor([[2.0, 0.0, 0.0]])
    y = torch.tensor([0])
    weights_seen = []
    for target_logit in (2.0, 0.0, -5.0, -20.0, -80.0, -300.0):
        logits = torch.tensor([[target_logit, 0.0, 0.0]], requires_grad=True)
        (grad,) = torch.autograd.grad(npo_loss(logits, reference, y, beta), logits)
        p_y = F.softmax(logits.detach(), dim=1)[0, 0]
        # grad = w * d log p_y / d z = w * (e_y - p): recover the per-sample weight w.
        weights_seen.append(float(grad[0, 0] / (1 - p_y)))
    assert weights_seen[0] == pytest.approx(1.0, rel=1e-5)  # 2 * sigmoid(0) at theta = theta_o
    assert all(a > b for a, b in zip(weights_seen, weights_seen[1:], strict=False))
    assert all(0 < w <= 2 for w in weights_seen)
    assert weights_seen[-1] < 1e-6  # bounded and vanishing, unlike GA's constant weight 1


def test_npo_clamps_the_model_logits_not_the_reference(original, class_3, splits):
    # S1 clamps the model's outputs to +-30 (MAX_LOGIT_THRESHOLD) before every loss; pi_o's are not clamped.
    x, y = forget_data(class_3, splits)
    with torch.no_grad():
        reference = original(x)
    logits = reference.clone()
    logits[:, 0] = 40.0
    logits.requires_grad_(True)
    loss = npo_loss(logits, reference, y, 0.1, clamp=30.0)
    torch.testing.assert_close(loss, npo_loss(logits.detach().clamp(-30, 30), reference, y, 0.1))
    (grad,) = torch.autograd.grad(loss, logits)
    assert (grad[:, 0] == 0).all() and (grad[:, 1:] != 0).any()
    far_reference = reference.clone()
    far_reference[:, 0] = 40.0  # would change the loss if it were clamped
    assert npo_loss(reference, far_reference, y, 0.1, clamp=30.0) != npo_loss(
        reference, far_reference.clamp(-30, 30), y, 0.1, clamp=30.0
    )


def test_npo_forget_batches_are_unaugmented_by_default(original, class_3, splits, monkeypatch):
    # Regression: S1's unlearning datasets are never augmented; the forget batches used to take the
    # dataset's training augmentation because ``augment`` was not passed.
    flags: list[bool] = []
    real = Split.batches

    def recording(self, *args, **kwargs):
        flags.append(kwargs.get("augment", True))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Split, "batches", recording)
    unlearn(original, class_3, "npo", device=CPU, splits=splits, recipe=TINY_RECIPE, epochs=2)
    assert flags and not any(flags)
    flags.clear()
    unlearn(original, class_3, "npo", device=CPU, splits=splits, recipe=TINY_RECIPE, epochs=2, augment=True)
    assert flags and all(flags)


def test_npo_lowers_its_loss_and_the_forget_likelihood(original, class_3, splits):
    beta = 0.1
    unlearned, _ = unlearn(original, class_3, "npo", device=CPU, splits=splits, beta=beta, **TINY_HPARAMS["npo"])
    x, y = forget_data(class_3, splits)
    with torch.no_grad():
        before, after = original(x), unlearned(x)
    assert npo_loss(after, before, y, beta) < npo_loss(before, before, y, beta)
    log_likelihood = [F.log_softmax(z, 1).gather(1, y[:, None]).mean() for z in (before, after)]
    assert log_likelihood[1] < log_likelihood[0]


@pytest.mark.parametrize("bad", [{"beta": 0.0}, {"lr": 0.0}, {"epochs": 0}, {"logit_clamp": -1.0}])
def test_npo_bad_hyperparameters(original, class_3, splits, bad):
    with pytest.raises(MethodError):
        unlearn(original, class_3, "npo", device=CPU, splits=splits, **bad)
