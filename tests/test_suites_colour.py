"""The colour-benchmark runners (spec 3.4b label erasure, 3.4c representation collapse) on tiny digits data."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from unlearnkit.suites.colour_collapse import QUICK_COLLAPSE, run_collapse_benchmark
from unlearnkit.suites.colour_erasure import (
    QUICK_ERASURE,
    SGDRecipe,
    erasure_original,
    erasure_trial,
    hypervolume,
    pareto_front,
    run_erasure_benchmark,
    unlearn_trial,
)
from unlearnkit.tasks.colour import erasure_metrics, make_erasure_data

CPU = torch.device("cpu")
MINNORM = {"lr": 1e-3, "lambda_reg": 0.05, "gamma_reg": 0.8, "gd_epochs": 0, "proj_period": 1, "n_pert": 50}


def test_pareto_front_keeps_exactly_the_non_dominated_points() -> None:
    points = [
        (0.90, 0.10),  # 0 front
        (0.80, 0.05),  # 1 front
        (0.70, 0.20),  # 2 dominated by 0
        (0.90, 0.10),  # 3 equal to 0: kept
        (math.nan, 0.0),  # 4 never on the front
        (0.95, 0.30),  # 5 front (best quality)
        (0.80, 0.07),  # 6 dominated by 1 (same quality, larger error)
        (0.60, 0.00),  # 7 front (lowest error)
        (0.95, 0.35),  # 8 dominated by 5 (same quality, larger error)
    ]
    assert pareto_front(points) == [7, 1, 0, 3, 5]
    assert pareto_front([]) == []
    assert pareto_front([(0.5, 0.5)]) == [0]


def test_hypervolume_of_hand_made_fronts() -> None:
    assert hypervolume([(1.0, 0.0)]) == pytest.approx(1.0)
    assert hypervolume([(0.5, 0.5)]) == pytest.approx(0.25)
    assert hypervolume([(0.5, 0.0), (1.0, 0.5)]) == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)
    assert hypervolume([(0.5, 0.0), (1.0, 0.5), (0.4, 0.1)]) == pytest.approx(0.75)  # a dominated point adds nothing
    assert hypervolume([(math.nan, 0.0)]) == 0.0


@pytest.fixture(scope="module")
def tiny_erasure(digits, tmp_path_factory):
    preset = replace(
        QUICK_ERASURE,
        seeds=(1, 2),
        retain_fractions=(0.1,),
        p_color=0.05,
        original=SGDRecipe(epochs=8, batch_size=32, step_size=6),
        grid=lambda epochs: {"minnorm-og": [MINNORM], "retrain": [{"lr": 1e-2}]},
        train_size=300,
        test_size=60,
    )
    folder = tmp_path_factory.mktemp("erasure")
    result = run_erasure_benchmark(
        digits, preset=preset, methods=("minnorm-og", "retrain"), cache_dir=folder, out_json=folder / "erasure.json"
    )
    return result, preset, folder


def test_quick_erasure_rows_have_finite_metrics_and_a_front(tiny_erasure) -> None:
    result, _, folder = tiny_erasure
    assert [row.method for row in result.rows] == ["minnorm-og", "retrain"]
    for row in result.rows:
        point = row.points[0]
        assert len(point.retain_values) == 2 and all(math.isfinite(v) for v in point.retain_values + point.forget_values)
        assert 0 <= point.retain_quality <= 1 and 0 <= point.forget_error <= 1
        assert row.front == [0] and 0 <= row.hypervolume <= 1 and math.isfinite(row.distance_to_gt)
    # The original learned the colours (red/green copies are not called gray); GT never saw them.
    assert result.references["original"]["forget_error"] > 0.4
    assert result.references["gt"]["forget_error"] < 0.05
    saved = json.loads((folder / "erasure.json").read_text())
    assert saved["rows"][0]["method"] == "minnorm-og" and saved["settings"]["train_size"] == 300


def test_retrain_row_is_the_metric_of_a_model_that_never_saw_coloured_data(digits, tiny_erasure) -> None:
    result, preset, folder = tiny_erasure
    dataset = digits.subset(preset.train_size, preset.test_size, seed=preset.data_seed)
    data = make_erasure_data(dataset.train, dataset.test, preset.p_color, preset.data_seed)
    gt = erasure_original(data, preset, CPU, folder, gray_only=True)  # loaded from the run's cache
    row = next(r for r in result.rows if r.method == "retrain")
    for k, seed in enumerate(preset.seeds):
        trial = erasure_trial(data, 0.1, seed, preset, CPU)
        # Retrain must depend neither on the coloured copies nor on what the original learned from
        # them: start it from GT (which never saw colour) with the coloured copies blanked out.
        blank = replace(trial, forget=(torch.zeros_like(trial.forget[0]), trial.forget[1]))
        metrics = erasure_metrics(unlearn_trial("retrain", gt, blank, {"lr": 1e-2}), data.test, CPU)
        assert metrics["forget_quality_error"] == pytest.approx(row.points[0].forget_values[k], abs=1e-6)
        assert metrics["retain_quality"] == pytest.approx(row.points[0].retain_values[k], abs=1e-6)
    # Trained on gray only, it calls every copy gray (P(gray) ~ 1), as GT does; the original does not.
    assert row.points[0].forget_error < 0.05 < result.references["original"]["forget_error"]


def test_collapse_runner_end_to_end(digits, tmp_path) -> None:
    preset = replace(
        QUICK_COLLAPSE,
        seeds=(1,),
        retain_fractions=(0.01,),
        budgets=(5,),
        forget_fraction=0.05,
        weight_p=0.05,
        warm_start=SGDRecipe(epochs=2, batch_size=32, step_size=2),
        original=SGDRecipe(epochs=6, batch_size=32, step_size=4),
        grid=lambda epochs: {"minnorm-og": [dict(MINNORM, gd_epochs=2)], "gd": [{"lr": 5e-3}, {"lr": 1e-3}]},
        train_size=300,
        test_size=40,
    )
    result = run_collapse_benchmark(digits, preset=preset, methods=("minnorm-og", "gd", "ga"), out_json=tmp_path / "c.json")
    assert [row.method for row in result.rows] == ["minnorm-og", "gd"]  # ga has no candidates in this grid
    for row in result.rows:
        assert 0 <= row.mean <= 100 and len(row.values) == 1 and row.se == 0.0
    gd = result.rows[1]
    assert gd.mean == max(gd.candidate_means) and gd.hparams == preset.grid(5)["gd"][int(np.argmax(gd.candidate_means))]
    assert result.rows[0].paper_mean == 59.5 and result.rows[1].paper_mean == 40.7  # Table 2/17 at 1%, T = 5
    # GT was trained where colour predicts the label, so it reads colour far better than the original.
    assert result.references["gt"] > result.references["original"] + 20
    assert json.loads((tmp_path / "c.json").read_text())["rows"][1]["method"] == "gd"
