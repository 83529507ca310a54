"""The sine data-poisoning task and suite (spec 3.4a): data, metric, trial summaries, methods on MSE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from unlearnkit.methods.base import Granted, TensorSplit
from unlearnkit.methods.minnorm_og import gradient_sample, max_logit_gradients, projection_fraction, shrink_orthogonal
from unlearnkit.methods.runner import unlearn_tensors
from unlearnkit.runtime import cpu_generator
from unlearnkit.suites.sine_poisoning import (
    MINNORM_TABLE6,
    default_grid,
    full_cpu_grid,
    full_grid,
    one_factor_grid,
    reduced_grid,
    run_sine_benchmark,
    trial_error,
)
from unlearnkit.suites.trials import JournalSettingsError, TrialJournal, central_range, select_best, summarise
from unlearnkit.tasks.sine import (
    HALF_WIDTH,
    evaluation_grid,
    make_sine_data,
    mse_loss,
    sine_mlp,
    sup_norm_error,
    train_original,
)
from unlearnkit.train import TrainRecipe


class Shifted(nn.Module):
    """``sin(x) + offset``: a model with a known sup-norm error."""

    def __init__(self, offset: float):
        super().__init__()
        self.offset = offset
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x) + self.offset


@pytest.fixture(scope="module")
def tiny() -> tuple:
    """Seed 1's data and a width-16 MLP trained 300 epochs on D_r u D_f."""
    data = make_sine_data(1)
    model = sine_mlp(16, seed=1)
    train_original(model, data.train_x, data.train_y, epochs=300, lr=1e-2)
    return data, model


def test_sine_data_counts_ranges_poison_and_determinism() -> None:
    data = make_sine_data(3)
    assert data.retain_x.shape == data.retain_y.shape == (50, 1)
    assert data.forget_x.shape == data.forget_y.shape == (5, 1)
    for x in (data.retain_x, data.forget_x):
        assert x.abs().max() <= HALF_WIDTH and x.std() > 3  # spread over [-5 pi, 5 pi]
    assert torch.allclose(data.retain_y, torch.sin(data.retain_x))
    assert torch.all(data.forget_y == 1.5)
    again, other = make_sine_data(3), make_sine_data(4)
    assert torch.equal(data.retain_x, again.retain_x) and torch.equal(data.forget_x, again.forget_x)
    assert not torch.equal(data.retain_x, other.retain_x)
    assert data.train_x.shape == (55, 1) and torch.equal(data.train_y[50:], data.forget_y)


def test_mlp_shape_and_grid() -> None:
    model = sine_mlp()
    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    assert widths == [300, 300, 1] and sum(isinstance(m, nn.SiLU) for m in model.modules()) == 2
    grid = evaluation_grid()
    assert grid.shape == (1000, 1)
    assert grid[0].item() == pytest.approx(-5 * math.pi) and grid[-1].item() == pytest.approx(5 * math.pi)


def test_sup_norm_error_on_known_functions() -> None:
    assert sup_norm_error(Shifted(0.0)) < 1e-6
    assert sup_norm_error(Shifted(0.5)) == pytest.approx(0.5, abs=1e-6)
    assert sup_norm_error(Shifted(-2.0)) == pytest.approx(2.0, abs=1e-6)


def test_central_range_median_mean_and_selection() -> None:
    values = [9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0, 10.0]
    assert central_range(values) == (3.0, 8.0)  # 3rd and 8th smallest of 10
    summary = summarise(values)
    assert summary.median == 5.5 and summary.mean == 5.5 and (summary.low, summary.high) == (3.0, 8.0)
    assert central_range([2.0, 1.0]) == (1.0, 2.0)  # too few to drop any
    assert summarise([1.0, math.inf, 2.0]).mean == math.inf
    wide, narrow, worse = summarise([0, 3, 5, 7, 10] * 2), summarise([4, 5, 5, 5, 6] * 2), summarise([6] * 10)
    assert select_best({"wide": wide, "narrow": narrow, "worse": worse}) == "narrow"  # equal means, narrower range
    assert select_best({"a": worse, "b": narrow}) == "b"


def test_original_training_fits_the_training_points(tiny: tuple) -> None:
    data, model = tiny
    with torch.no_grad():
        before = mse_loss(sine_mlp(16, seed=1)(data.train_x), data.train_y)
        after = mse_loss(model(data.train_x), data.train_y)
    assert after < 0.5 * before


def test_regression_targets_give_a_random_subset() -> None:
    generator = cpu_generator(0)
    chosen = gradient_sample(torch.rand(60, 1), 50, generator)
    assert len(chosen) == 50 and len(set(chosen.tolist())) == 50
    assert len(gradient_sample(torch.rand(20, 1), 50, generator)) == 20


def test_minnorm_og_runs_on_mse_and_its_shrink_is_orthogonal(tiny: tuple) -> None:
    data, original = tiny
    hp = dict(MINNORM_TABLE6[10], epochs=10, batch_size=50, logit_clamp=0.0)
    model, record = unlearn_tensors(
        original,
        (data.retain_x, data.retain_y),
        (data.forget_x, data.forget_y),
        "minnorm-og",
        loss=mse_loss,
        seed=1,
        **hp,
    )
    assert record.steps == 10 and record.extra["projections"] == 8  # T - T_GD projection epochs
    assert record.extra["gradient_columns"] == [50] * 8  # all 50 retain points (random subset)
    assert math.isfinite(sup_norm_error(model))
    # One projection step by hand: the update is orthogonal to the sampled output-gradient span.
    probe = sine_mlp(16, seed=1)
    probe.load_state_dict(original.state_dict())
    parameters = list(probe.parameters())
    grads = max_logit_gradients(probe, data.retain_x, parameters)
    assert grads.shape == (sum(p.numel() for p in parameters), 50)
    delta = shrink_orthogonal(parameters, grads, 0.1)
    assert delta.norm() > 0 and projection_fraction(delta, grads) < 1e-4


def test_baseline_runs_on_mse_and_pluggable_loss_is_used(tiny: tuple) -> None:
    data, original = tiny
    retain, forget = (data.retain_x, data.retain_y), (data.forget_x, data.forget_y)
    model, record = unlearn_tensors(
        original, retain, forget, "ridge", loss=mse_loss, seed=1, epochs=5, batch_size=50, logit_clamp=0.0, lr=1e-3
    )
    assert record.steps == 5
    with torch.no_grad():
        assert mse_loss(model(data.retain_x), data.retain_y) < mse_loss(original(data.retain_x), data.retain_y) + 1e-3
    for method in ("retrain", "gd", "ga", "ngp", "ngd", "l1-sparse"):
        hp = default_grid(10)[method][0]
        assert math.isfinite(trial_error(method, original, data, 3, 1, hp)), method


def test_tensor_split_batches_cover_the_split() -> None:
    split = TensorSplit(torch.arange(7.0)[:, None], torch.arange(7.0)[:, None])
    seen = torch.cat([x for x, _, _ in split.batches(3, cpu_generator(0))])
    assert sorted(seen.flatten().tolist()) == list(range(7))
    with pytest.raises(ValueError, match="same length"):
        TensorSplit(torch.zeros(3, 1), torch.zeros(2, 1))
    granted = Granted("x", nn.Linear(1, 1), 1, torch.device("cpu"), 0, TrainRecipe(), cpu_generator(0))
    with pytest.raises(TypeError, match="heads"):
        granted.loss((torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2, dtype=torch.long))


def test_whole_benchmark_on_a_tiny_instance(tmp_path) -> None:
    rows = run_sine_benchmark(
        seeds=(1, 2), budgets=(10,), methods=("minnorm-og", "gd"), original_epochs=50, hidden=8, cache_dir=tmp_path
    )
    assert [(r.method, r.epochs) for r in rows] == [("minnorm-og", 10), ("gd", 10)]
    assert rows[1].candidates == 3 and rows[1].hparams["lr"] in (1e-2, 1e-3, 1e-4)
    assert all(r.low <= r.median <= r.high and len(r.values) == 2 for r in rows)
    assert len(list(tmp_path.glob("sine-original-*.safetensors"))) == 2


def test_reduced_grid_keeps_rates_and_one_own_value_at_1000() -> None:
    full, reduced = default_grid(1000), reduced_grid(1000)
    assert reduced["minnorm-og"] == [MINNORM_TABLE6[1000]] and reduced["gd"] == full["gd"]
    assert [hp["lr"] for hp in reduced["ngp"]] == [1e-3, 5e-4, 1e-4]
    assert {hp["lambda_ga"] for hp in reduced["ngp"]} == {1e-3} and {hp["sigma"] for hp in reduced["ngd"]} == {0.1}
    assert reduced_grid(100) == default_grid(100)


@pytest.mark.parametrize(("epochs", "minnorm_count"), [(10, 162), (100, 72), (1000, 162)])
def test_full_grid_is_spec_table_7(epochs: int, minnorm_count: int) -> None:
    grid = full_grid(epochs)
    sizes = {method: len(candidates) for method, candidates in grid.items()}
    assert sizes == {"retrain": 3, "minnorm-og": minnorm_count, "gd": 3, "ga": 3, "ngp": 12, "ngd": 9, "ridge": 27, "l1-sparse": 9}
    assert MINNORM_TABLE6[epochs] in grid["minnorm-og"]  # the paper's best setting is a candidate
    assert {hp["lambda_reg"] for hp in grid["minnorm-og"]} == {0.1, 1.0}  # 3 would break c <= 1
    assert {hp["lambda_reg"] for hp in grid["ridge"]} == {0.1, 1.0, 3.0}
    for candidates in grid.values():  # no duplicates
        assert len({tuple(sorted(hp.items())) for hp in candidates}) == len(candidates)
    with pytest.raises(ValueError, match="T in \\[10, 100, 1000\\]"):
        full_grid(50)


def test_full_cpu_grid_searches_minnorm_one_factor_at_a_time_from_t_100() -> None:
    assert full_cpu_grid(10) == full_grid(10)
    for epochs, count in ((100, 8), (1000, 10)):
        grid, centre = full_cpu_grid(epochs), MINNORM_TABLE6[epochs]
        assert {m: c for m, c in grid.items() if m != "minnorm-og"} == {m: c for m, c in full_grid(epochs).items() if m != "minnorm-og"}
        assert grid["minnorm-og"][0] == centre and len(grid["minnorm-og"]) == count
        assert all(sum(hp[k] != centre[k] for k in centre) == 1 for hp in grid["minnorm-og"][1:])
        assert all(hp in full_grid(epochs)["minnorm-og"] for hp in grid["minnorm-og"])


def test_one_factor_grid() -> None:
    grid = one_factor_grid({"a": 1, "b": "x"}, {"a": [1, 2, 3], "b": ["x", "y"]})
    assert grid == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}, {"a": 3, "b": "x"}, {"a": 1, "b": "y"}]


def test_a_journaled_search_resumes_without_recomputing(tmp_path, monkeypatch) -> None:
    import unlearnkit.suites.sine_poisoning as sine

    settings = {"seeds": [1], "hidden": 8}
    kwargs = {"seeds": (1,), "budgets": (10,), "methods": ("gd",), "original_epochs": 20, "hidden": 8, "cache_dir": tmp_path}
    first = run_sine_benchmark(**kwargs, journal=TrialJournal(tmp_path / "j.jsonl", settings))
    calls = []
    monkeypatch.setattr(sine, "trial_error", lambda *args: calls.append(args) or 0.0)
    again = run_sine_benchmark(**kwargs, journal=TrialJournal(tmp_path / "j.jsonl", settings))
    assert calls == [] and again == first  # every candidate read back, the same row and seconds
    kept = (tmp_path / "j.jsonl").read_bytes()
    with pytest.raises(JournalSettingsError, match=r"holds 3 candidates scored with other settings \(hidden: 8 then, 9 now\)"):
        TrialJournal(tmp_path / "j.jsonl", {**settings, "hidden": 9})
    assert (tmp_path / "j.jsonl").read_bytes() == kept  # refused, not overwritten


def test_trial_journal_drops_a_torn_last_line(tmp_path) -> None:
    journal = TrialJournal(tmp_path / "j.jsonl", {"a": 1})
    summary = summarise([1.0, 2.0, 3.0])
    journal.add(summary, 1.5, 10, "gd", {"lr": 1e-3})
    with journal.path.open("a") as handle:
        handle.write('{"key": "[10, \\"gd\"')  # a crash mid-write
    with pytest.warns(UserWarning, match=r"line\(s\) 3 are not JSON"):
        reopened = TrialJournal(journal.path, {"a": 1})
    assert reopened.get(10, "gd", {"lr": 1e-3}) == (summary, 1.5) and reopened.get(10, "gd", {"lr": 1e-4}) is None
    reopened.add(summary, 2.0, 10, "gd", {"lr": 1e-4})  # appends on a clean line
    assert TrialJournal(journal.path, {"a": 1}).get(10, "gd", {"lr": 1e-4}) == (summary, 2.0)
