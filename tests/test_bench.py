"""The benchmark grid's checks that must happen before any training."""

from __future__ import annotations

import pytest

from unlearnkit.bench import BenchConfig, append_result, read_results, run_bench
from unlearnkit.methods import MethodError


def test_bad_hyperparameters_fail_before_training(tmp_path):
    config = BenchConfig("digits", "mlp", ["class:3"], ["ft"], out=tmp_path / "out", hparams={"ft": {"epochs": "abc"}}, cache_dir=tmp_path / "cache")
    with pytest.raises(MethodError, match="ft.epochs must be of type int"):
        run_bench(config)
    assert not (tmp_path / "cache" / "models").exists()


def test_results_file_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "results.jsonl"
    append_result(path, {"method": "ft", "forget_acc": float("nan")})
    with path.open("a") as handle:
        handle.write('{"method": "ga", "forg')  # a crash in the middle of a write
    rows = read_results(path)
    assert rows == [{"method": "ft", "forget_acc": None}]


def test_a_diverging_method_is_recorded_and_the_grid_goes_on(tmp_path):
    config = BenchConfig(
        "digits", "mlp", ["class:3"], ["ga", "ft"], out=tmp_path / "out", cache_dir=tmp_path / "cache",
        hparams={"ga": {"lr": 1e12, "epochs": 20}}, recipe=None,
    )
    from dataclasses import replace

    from unlearnkit.train import default_recipe

    config.recipe = replace(default_recipe("digits"), epochs=2)
    rows = run_bench(config)
    by_method = {r["method"]: r for r in rows}
    assert set(by_method) == {"original", "retrain", "ga", "ft"}
    assert "loss became" in by_method["ga"]["error"] and by_method["ga"]["gap"] is None
    assert by_method["ft"]["forget_acc"] is not None and by_method["retrain"]["gap"] == 0
    assert len(read_results(tmp_path / "out" / "results.jsonl")) == 4


def test_report_command_prints_markdown(tmp_path):
    from typer.testing import CliRunner

    from unlearnkit.cli import app

    append_result(tmp_path / "results.jsonl", {"task": "class:3", "method": "retrain", "seed": 0, "forget_acc": 0.0, "retain_acc": 99.0, "test_acc": 98.0, "mia": 100.0, "gap": 0.0, "time_s": 1.0})
    append_result(tmp_path / "results.jsonl", {"task": "class:3", "method": "ft", "seed": 0, "forget_acc": 10.0, "retain_acc": 97.0, "test_acc": 96.0, "mia": 90.0, "gap": 5.5, "time_s": 0.5})
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--markdown"])
    assert result.exit_code == 0, result.output
    assert "| class:3 | **retrain (oracle)** | 0.00 | 99.00 | 98.00 | 100.00 | 0.00 | 1.00 |" in result.output
    assert "| class:3 | ft | 10.00 | 97.00 | 96.00 | 90.00 | 5.50 | 0.50 |" in result.output
    empty = CliRunner().invoke(app, ["report", str(tmp_path / "nothing.jsonl")])
    assert empty.exit_code == 2 and "no results" in empty.output


def test_bench_runs_on_a_stratified_subset_and_records_its_size(tmp_path):
    from dataclasses import replace

    from unlearnkit.train import default_recipe

    config = BenchConfig(
        "digits", "mlp", ["class:3"], ["ga"], out=tmp_path / "out", cache_dir=tmp_path / "cache",
        recipe=replace(default_recipe("digits"), epochs=1), train_size=200, test_size=80,
    )
    rows = run_bench(config)
    assert {(r["n_train"], r["n_test"]) for r in rows} == {(200, 80)}
    with pytest.raises(ValueError, match="--train-size must be a positive"):
        run_bench(replace(config, train_size=0))


def test_a_class_wise_only_method_is_skipped_in_a_random_cell(tmp_path):
    from dataclasses import replace

    from unlearnkit.report import summarise
    from unlearnkit.train import default_recipe

    config = BenchConfig("digits", "mlp", ["random:0.1"], ["pour-p", "ft"], out=tmp_path / "out", cache_dir=tmp_path / "cache")
    config.recipe = replace(default_recipe("digits"), epochs=1)
    rows = run_bench(config)
    by_method = {r["method"]: r for r in rows}
    assert "class-wise" in by_method["pour-p"]["skipped"] and by_method["pour-p"]["gap"] is None
    assert by_method["ft"]["forget_acc"] is not None
    assert {m for _, m in summarise(rows)} == {"original", "retrain", "ft"}
    assert len(run_bench(config)) == 4  # the skipped row counts as done: nothing reruns
