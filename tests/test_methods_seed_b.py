"""MinNorm-OG and TARF: each method's defining property and its parameter checks."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from conftest import CPU, TINY_RECIPE

import unlearnkit.methods.minnorm_og as minnorm_module
import unlearnkit.methods.tarf as tarf_module
from unlearnkit.methods import MethodError, Split, unlearn
from unlearnkit.methods.minnorm_og import (
    class_balanced_sample,
    is_projection_epoch,
    max_logit_gradients,
    projection_fraction,
    shrink_orthogonal,
)
from unlearnkit.methods.tarf import ascent_weight, select_classes, top_count
from unlearnkit.metrics import evaluate
from unlearnkit.models import as_classifier
from unlearnkit.runtime import cpu_generator
from unlearnkit.tasks import place

# The reference defaults are for CIFAR ResNet-18; on the 600-sample MLP:
# - MinNorm-OG forgets with its defaults (2 steps: the shrink of the off-span parameters does it);
# - TARF's unbounded ascent at k = 1 (lr 0.01, momentum 0.9) wrecks the small MLP (test accuracy
#   11-30% over seeds 0-4, the same forget batch is ascended 5 times per epoch); k = 0.5 forgets
#   (forget accuracy 0) and keeps 83-92% test accuracy.
TINY_HPARAMS: dict[str, dict] = {
    "tarf": {"k": 0.5},
}


@pytest.fixture(scope="module")
def splits(class_3):
    return place(class_3, CPU)


def run(original, request, splits, method, **overrides):
    hparams = {**TINY_HPARAMS.get(method, {}), **overrides}
    return unlearn(original, request, method, device=CPU, splits=splits, recipe=TINY_RECIPE, **hparams)


def retain_batch(class_3, splits, n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    return splits.train.gather(class_3.retain_idx[:n])


# ---------------------------------------------------------------------------------------- MinNorm-OG


@pytest.mark.parametrize("mode", ["loop", "vmap"])
def test_minnorm_projection_update_is_orthogonal_to_the_sampled_gradients(original, class_3, splits, mode):
    model = copy.deepcopy(original).train()
    parameters = list(model.parameters())
    x, y = retain_batch(class_3, splits)
    chosen = class_balanced_sample(y, 50, cpu_generator(0))
    grads = max_logit_gradients(model, x[chosen], parameters, mode=mode)
    before = torch.cat([p.detach().flatten() for p in parameters]).clone()
    delta = shrink_orthogonal(parameters, grads, 0.5)
    after = torch.cat([p.detach().flatten() for p in parameters])
    assert grads.shape == (before.numel(), len(chosen)) and len(chosen) == 45  # 9 classes x 5
    torch.testing.assert_close(after - before, delta)
    assert delta.norm() > 0.1 * before.norm()  # a real move: c = 0.5 of the off-span part
    assert projection_fraction(delta, grads) < 1e-5
    assert (grads.T @ delta).abs().max() < 1e-5 * grads.norm() * delta.norm()


@pytest.mark.parametrize("mode", ["loop", "vmap"])
def test_minnorm_projection_keeps_a_linear_models_max_logits_on_the_sampled_points(class_3, splits, mode):
    torch.manual_seed(0)
    linear = as_classifier(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)))
    x, y = retain_batch(class_3, splits)
    chosen = class_balanced_sample(y, 50, cpu_generator(1))
    others = torch.tensor([i for i in range(len(x)) if i not in set(chosen.tolist())])
    parameters = list(linear.parameters())
    with torch.no_grad():
        logits = linear(x)
    top = logits.argmax(dim=1)  # the max-logit index of each point, held fixed as in the gradients
    grads = max_logit_gradients(linear, x[chosen], parameters, mode=mode)
    delta = shrink_orthogonal(parameters, grads, 0.9)
    assert delta.norm() > 0.5
    with torch.no_grad():
        moved = linear(x)
    rows = torch.arange(len(x))
    # f(theta, x) = W x + b is linear in theta: the max logit is <its gradient, theta>, and the
    # update is orthogonal to every sampled gradient, so these outputs do not move ...
    torch.testing.assert_close(moved[rows, top][chosen], logits[rows, top][chosen], atol=1e-5, rtol=1e-5)
    # ... while the same outputs at points outside the sample, and the other logits, do.
    assert (moved[rows, top][others] - logits[rows, top][others]).abs().max() > 0.1
    assert (moved - logits).abs().max() > 0.1


def test_minnorm_vmap_and_loop_gradients_agree_without_batchnorm(original, class_3, splits):
    x, _ = retain_batch(class_3, splits, 12)
    parameters = list(original.parameters())
    loop = max_logit_gradients(original.eval(), x, parameters, mode="loop")
    vmapped = max_logit_gradients(original, x, parameters, mode="vmap")
    torch.testing.assert_close(loop, vmapped, atol=1e-5, rtol=1e-4)


def test_minnorm_gradients_stack_one_block_per_head(class_3, splits):
    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8), torch.nn.ReLU())
            self.a, self.b = torch.nn.Linear(8, 10), torch.nn.Linear(8, 3)

        def forward(self, x):
            h = self.body(x)
            return self.a(h), self.b(h)

    torch.manual_seed(0)
    net = TwoHeads()
    x, _ = retain_batch(class_3, splits, 6)
    parameters = list(net.parameters())
    for mode in ("loop", "vmap"):
        both = max_logit_gradients(net, x, parameters, mode=mode)
        first = max_logit_gradients(net, x, parameters, mode=mode, heads=lambda out: [out[0]])
        assert both.shape == (sum(p.numel() for p in parameters), 12)
        torch.testing.assert_close(both[:, :6], first)
        assert both[-3:, 6:].abs().sum() > 0 and both[-3:, :6].abs().sum() == 0  # head b's bias


def test_minnorm_class_balanced_sample():
    labels = torch.tensor([0] * 30 + [1] * 30 + [2] * 5)[torch.randperm(65, generator=cpu_generator(0))]
    picked = class_balanced_sample(labels, 50, cpu_generator(1))
    counts = np.bincount(labels[picked].numpy(), minlength=3)
    assert counts.tolist() == [16, 16, 5]  # 50 // 3 = 16 per class; class 2 has only 5
    assert len(set(picked.tolist())) == len(picked)
    assert torch.equal(picked, class_balanced_sample(labels, 50, cpu_generator(1)))
    assert not torch.equal(picked, class_balanced_sample(labels, 50, cpu_generator(2)))
    assert len(class_balanced_sample(labels, 2, cpu_generator(1))) == 0  # 2 // 3 = 0, as the reference


def test_minnorm_projection_schedule_and_c_decay(original, class_3, splits):
    assert [is_projection_epoch(t, 4, 1, 2) for t in range(4)] == [True, False, True, False]
    assert [is_projection_epoch(t, 3, 0, 1) for t in range(3)] == [True, True, True]
    # |D_f| = 67 < one batch: one step per epoch
    _, record = run(original, class_3, splits, "minnorm-og", epochs=4, gd_epochs=1, proj_period=2, lambda_reg=0.5, gamma_reg=0.5)
    assert record.steps == 4 and record.extra["projections"] == 2
    assert record.extra["c_per_step"] == [0.5, 0.0, 0.25, 0.0]
    assert record.extra["c_final"] == pytest.approx(0.125)
    assert record.extra["gradient_columns"] == [45, 45]
    _, record = run(original, class_3, splits, "minnorm-og", epochs=2, lambda_reg=0.1, gamma_reg=0.8, batch_size=34)
    steps = 2 * math.ceil(len(class_3.forget_idx) / 34)  # ceil(|D_f| / B) steps per epoch
    assert steps == 4 and record.steps == steps and record.extra["projections"] == steps
    assert record.extra["c_per_step"] == pytest.approx([0.1 * 0.8**i for i in range(steps)])
    assert record.extra["c_final"] == pytest.approx(0.1 * 0.8**steps)
    assert all(0 < n <= 34 for n in record.extra["gradient_columns"])  # at most the 34-sample batch


def test_minnorm_forward_order_flag(original, class_3, splits):
    def flat(model):
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    # with c = 0 the projection is a no-op, so where the forward pass runs does not matter ...
    same = [flat(run(original, class_3, splits, "minnorm-og", epochs=1, lambda_reg=0.0, forward_before_projection=f)[0]) for f in (True, False)]
    assert torch.equal(same[0], same[1])
    # ... with c > 0 the faithful order descends along the pre-projection graph, which differs
    moved = [flat(run(original, class_3, splits, "minnorm-og", epochs=1, forward_before_projection=f)[0]) for f in (True, False)]
    assert not torch.equal(moved[0], moved[1])


def test_minnorm_parameter_checks(original, class_3, splits):
    for bad in (
        {"lambda_reg": 1.5},
        {"lambda_reg": -0.1},
        {"gamma_reg": 1.2},
        {"n_pert": 0},
        {"proj_period": 0},
        {"gd_epochs": -1},
        {"per_sample_grads": "jacobian"},
        {"lr": 0.0},
    ):
        with pytest.raises(MethodError, match="minnorm-og"):
            run(original, class_3, splits, "minnorm-og", **bad)


def test_minnorm_projection_runs_on_the_retain_batch_only(original, class_3, splits, monkeypatch):
    seen = []
    real = minnorm_module.max_logit_gradients

    def recording(model, x, parameters, **kwargs):
        seen.append(x.clone())
        return real(model, x, parameters, **kwargs)

    monkeypatch.setattr(minnorm_module, "max_logit_gradients", recording)
    run(original, class_3, splits, "minnorm-og", epochs=2)
    retain_images, _ = splits.train.gather(class_3.retain_idx)
    assert len(seen) == 2
    for x in seen:  # each sampled point is an (unaugmented) retain image
        assert all((retain_images == row).flatten(1).all(1).any() for row in x)


# ---------------------------------------------------------------------------------------------- TARF


def test_tarf_ascent_weight_schedules():
    final = [ascent_weight(t, 1.0, 10, 3, "final_gd_epochs") for t in range(10)]
    assert final == pytest.approx([0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, 0.0, 0.0])
    assert [ascent_weight(t, 2.0, 5, 0) for t in range(5)] == pytest.approx([2.0, 1.6, 1.2, 0.8, 0.4])
    end = [ascent_weight(t, 1.0, 10, 3, "end_epoch") for t in range(10)]
    assert end == pytest.approx([1.0, 2 / 3, 1 / 3] + [0.0] * 7)
    with pytest.raises(ValueError):
        ascent_weight(0, 1.0, 10, 3, "later")


def test_tarf_gate_counts():
    assert [top_count(9, 0.1), top_count(99, 0.1), top_count(10, 0.1), top_count(533, 0.1), top_count(9, 0.0)] == [1, 10, 1, 54, 0]
    drops = {0: 5.0, 1: 40.0, 2: 0.0, 4: 40.0, 5: 12.5, 6: -3.0}
    assert select_classes(drops, 2) == [1, 4]
    assert select_classes(drops, 3) == [1, 4, 5]
    assert select_classes(drops, 6) == [0, 1, 2, 4, 5, 6]
    assert select_classes(drops, 6, positive_only=True) == [0, 1, 4, 5]


def record_events(monkeypatch, class_3) -> list[tuple[str, np.ndarray]]:
    """Log every batch read as ("forget" | "descent" | "score", indices) and every gate computation."""
    events: list[tuple[str, np.ndarray]] = []
    real = Split.batches

    def recording(self, batch_size, generator, *, shuffle=True, augment=True, labels=None):
        indices = np.asarray(self.indices)
        if not shuffle:
            kind = "score"
        elif np.isin(indices, class_3.forget_idx).all():
            kind = "forget"
        else:
            kind = "descent"
        for x, y, idx in real(self, batch_size, generator, shuffle=shuffle, augment=augment, labels=labels):
            events.append((kind, idx.cpu().numpy()))
            yield x, y, idx

    monkeypatch.setattr(Split, "batches", recording)
    real_gate = tarf_module.apply_gate

    def gate(*args, **kwargs):
        events.append(("gate", np.array([])))
        return real_gate(*args, **kwargs)

    monkeypatch.setattr(tarf_module, "apply_gate", gate)
    return events


def test_tarf_known_count_gates_the_classes_that_dropped_most(original, class_3, splits, monkeypatch):
    events = record_events(monkeypatch, class_3)
    drops = {c: float(c) for c in range(10) if c != 3}
    drops.update({5: 60.0, 8: 45.0, 9: 44.0})  # 5 and 8 "fell" most under the early ascent
    monkeypatch.setattr(tarf_module, "class_accuracy_drop", lambda reference, current: dict(drops))
    unlearned, record = run(original, class_3, splits, "tarf", t1=2, beta_mode="known_count", n_target_classes=2)
    assert record.extra["gated_classes"] == [5, 8] and record.extra["gated_class_ids"] == "5,8"
    labels = splits.train.labels.numpy()
    assert record.extra["gated_samples"] == int(np.isin(labels[class_3.retain_idx], [5, 8]).sum())
    kinds = [kind for kind, _ in events]
    gate_at = kinds.index("gate")
    assert kinds.count("gate") == 1
    # tau = 0 for every remaining sample before t1: the first two epochs only ascend on D_f
    assert set(kinds[:gate_at]) <= {"forget", "score"} and kinds[:gate_at].count("forget") == 2
    descended = [idx for kind, idx in events[gate_at:] if kind == "descent"]
    assert len(descended) == 8 * math.ceil((len(class_3.retain_idx) - record.extra["gated_samples"]) / 128)
    used = np.concatenate(descended)
    assert not np.isin(labels[used], [5, 8]).any()  # the gated classes are never descended on
    per_epoch = np.split(used, 8)  # tau fixed after t1: every epoch descends on the same kept set
    assert all(np.array_equal(np.sort(part), np.sort(per_epoch[0])) for part in per_epoch)
    assert len(np.unique(used)) == len(class_3.retain_idx) - record.extra["gated_samples"]
    metrics = evaluate(unlearned, class_3, splits, ("accuracy",))
    assert metrics["forget_acc"] < 10 and metrics["test_acc"] > 60


def test_tarf_real_class_gate_ranks_the_measured_drops(original, class_3, splits):
    # three long Phase-I epochs of ascent (5 steps each) so that remaining classes do drop
    _, record = run(original, class_3, splits, "tarf", k=1.0, t1=3, t0=0, epochs=4, phase1_epoch="remaining_pass", beta_mode="known_count", n_target_classes=2)
    drops = record.extra["class_accuracy_drop"]
    assert sorted(drops) == [c for c in range(10) if c != 3]
    gated = record.extra["gated_classes"]
    assert len(gated) == 2 and min(drops[c] for c in gated) >= max(drops[c] for c in drops if c not in gated)
    assert len(set(drops.values())) > 1  # a real, non-uniform score
    assert record.extra["ascent_weights"] == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_tarf_sample_gate_excludes_the_most_changed_samples(original, class_3, splits, monkeypatch):
    events = record_events(monkeypatch, class_3)
    scores = {}
    real_change = tarf_module.sample_loss_change

    def capture(reference, current):
        scores["values"], scores["index"] = real_change(reference, current), current["index"].numpy()
        return scores["values"]

    monkeypatch.setattr(tarf_module, "sample_loss_change", capture)
    _, record = run(original, class_3, splits, "tarf", gate="sample_loss_change", beta_quantile=0.2)
    n = len(class_3.retain_idx)
    expected = min(math.ceil(0.2 * n), int((scores["values"] > 0).sum()))
    assert record.extra["gated_samples"] == expected > 0 and record.extra["gated_classes"] == []
    top = scores["index"][torch.argsort(scores["values"], descending=True, stable=True).numpy()[:expected]]
    gate_at = [kind for kind, _ in events].index("gate")
    used = np.concatenate([idx for kind, idx in events[gate_at:] if kind == "descent"])
    assert not np.isin(used, top).any()
    assert len(np.unique(used)) == n - expected


def test_tarf_parameter_checks(original, class_3, splits):
    for bad, match in (
        ({"beta_mode": "known_count"}, "n_target_classes"),
        ({"beta_mode": "known_count", "n_target_classes": 2, "gate": "sample_loss_change"}, "class_accuracy_drop"),
        ({"t1": 0}, "t1"),
        ({"t1": 10}, "t1"),
        ({"t0": 11}, "t0"),
        ({"t0_mode": "end_epoch", "t0": 0}, "t0"),
        ({"t0_mode": "start"}, "t0_mode"),
        ({"gate": "features"}, "gate"),
        ({"beta_quantile": 1.0}, "beta_quantile"),
        ({"k": -1.0}, "k"),
        ({"phase1_epoch": "both"}, "phase1_epoch"),
        ({"n_target_classes": 2}, "used by beta_mode 'known_count' only"),  # would be ignored under 'quantile'
    ):
        with pytest.raises(MethodError, match=match):
            run(original, class_3, splits, "tarf", **bad)
    with pytest.raises(MethodError, match="exceeds the 9 classes"):
        run(original, class_3, splits, "tarf", beta_mode="known_count", n_target_classes=10)
