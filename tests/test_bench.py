"""The benchmark grid's checks that must happen before any training."""

from __future__ import annotations

import pytest

from unlearnkit.bench import BenchConfig, SettingsChangedError, append_result, read_results, run_bench
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
    with pytest.warns(UserWarning, match=r"line\(s\) 2 are not JSON"):
        rows = read_results(path)
    assert rows == [{"method": "ft", "forget_acc": None}]
    append_result(path, {"method": "rl"})  # the next row starts on a line of its own, not glued to the fragment
    with pytest.warns(UserWarning, match=r"line\(s\) 2 are not JSON"):
        assert [r["method"] for r in read_results(path)] == ["ft", "rl"]


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
    assert empty.exit_code == 2 and "nothing.jsonl does not exist" in empty.output
    (tmp_path / "text.jsonl").write_text("not json\n")
    garbled = CliRunner().invoke(app, ["report", str(tmp_path / "text.jsonl")])
    assert garbled.exit_code == 2 and "no results in" in garbled.output


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
    assert {m for _, m in summarise(rows)} == {"original", "retrain", "ft"}  # (task, method) keys for one setting
    assert len(run_bench(config)) == 4  # the skipped row counts as done: nothing reruns


def _one_epoch_config(tmp_path, methods, **changes) -> BenchConfig:
    from dataclasses import replace

    from unlearnkit.train import default_recipe

    config = BenchConfig("digits", "mlp", ["class:3"], methods, out=tmp_path / "out", cache_dir=tmp_path / "cache")
    config.recipe = replace(default_recipe("digits"), epochs=1)
    return replace(config, **changes)


def test_a_row_keeps_the_methods_single_number_diagnostics(tmp_path):
    import numpy as np
    import torch

    from unlearnkit.bench import scalar_details

    run_bench(_one_epoch_config(tmp_path, ["ssd", "salun"]))
    rows = {r["method"]: r for r in read_results(tmp_path / "out" / "results.jsonl")}  # what the file keeps
    assert 0.0 <= rows["ssd"]["record"]["dampened_fraction"] <= 1.0
    assert 0.0 < rows["salun"]["record"]["mask_fraction"] <= 1.0
    assert rows["salun"]["steps"] >= 1 and "record" not in rows["original"]
    extra = {"a": np.float32(0.5), "b": np.int64(3), "c": torch.tensor(2.0), "per_step": [1.0, 2.0], "d": "x",
             "e": torch.tensor([1.5]), "f": np.array([[4]]), "g": torch.zeros(2), "h": True}
    assert scalar_details(extra) == {"a": 0.5, "b": 3, "c": 2.0, "d": "x", "e": 1.5, "f": 4, "h": True}
    assert all(type(v) in (float, int, str, bool) for v in scalar_details(extra).values())


def _cached_models(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "cache" / "models").iterdir())


def test_a_rerun_with_other_settings_is_refused_before_any_work(tmp_path):
    from dataclasses import replace

    from unlearnkit.bench import SettingsChangedError

    config = _one_epoch_config(tmp_path, ["ga"])
    rows = run_bench(config)
    assert {r["method"] for r in rows} == {"original", "retrain", "ga"}
    assert all(r["recipe"]["epochs"] == 1 and r["request"] for r in rows)
    assert rows[-1]["hparams"]["lr"] == next(r for r in rows if r["method"] == "ga")["hparams"]["lr"]
    lines, models = (tmp_path / "out" / "results.jsonl").read_text(), _cached_models(tmp_path)
    changed = [
        (replace(config, hparams={"ga": {"lr": "0.01"}}), "ga: lr 0.0001 -> 0.01"),
        (replace(config, recipe=replace(config.recipe, epochs=2)), "recipe: epochs 1 -> 2"),
        (replace(config, train_size=300), "class:3: request"),
    ]
    for other, difference in changed:
        with pytest.raises(SettingsChangedError, match="new --out") as info:
            run_bench(other)
        assert difference in str(info.value)
    assert (tmp_path / "out" / "results.jsonl").read_text() == lines
    assert _cached_models(tmp_path) == models  # refused before training anything
    assert len(run_bench(config)) == 3  # the same settings still resume


def test_a_row_from_before_settings_tracking_is_refused_not_crashed(tmp_path):
    from unlearnkit.bench import SettingsChangedError

    legacy = {"dataset": "digits", "model": "mlp", "task": "class:3", "method": "ga", "seed": 0, "forget_acc": 1.0}
    append_result(tmp_path / "out" / "results.jsonl", legacy)
    with pytest.raises(SettingsChangedError, match="ga: its row predates settings tracking"):
        run_bench(_one_epoch_config(tmp_path, ["ga"]))


def test_a_failed_row_is_retried_and_the_retry_supersedes_it(tmp_path, capsys):
    from unlearnkit.report import error_notes, summarise

    failed = run_bench(_one_epoch_config(tmp_path, ["ga"], hparams={"ga": {"lr": 1e12, "epochs": 20}}))
    assert "loss became" in next(r for r in failed if r["method"] == "ga")["error"]
    from rich.console import Console

    rows = run_bench(_one_epoch_config(tmp_path, ["ga"]), Console(force_terminal=False, width=200))
    assert "2 finished rows in" in capsys.readouterr().out  # the note says what is reused
    ga = [r for r in rows if r["method"] == "ga"]
    assert len(ga) == 1 and "error" not in ga[0] and ga[0]["forget_acc"] is not None
    assert len([r for r in read_results(tmp_path / "out" / "results.jsonl") if r["method"] == "ga"]) == 2
    assert error_notes(read_results(tmp_path / "out" / "results.jsonl")) == []
    assert summarise(read_results(tmp_path / "out" / "results.jsonl"))[("class:3", "ga")]["forget_acc"][2] == 1


def test_each_row_is_written_as_soon_as_it_is_scored(tmp_path, monkeypatch):
    import time

    import unlearnkit.bench as bench

    results, seen = tmp_path / "out" / "results.jsonl", {}
    real_unlearn = bench.unlearn

    def unlearn_then_watch(original, request, method, **kwargs):
        if method == "ft":  # the second method: the first one's row must land while this one runs
            deadline = time.monotonic() + 30
            while len(read_results(results)) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            seen["rows"] = {r["method"] for r in read_results(results)}
            raise KeyboardInterrupt  # like Ctrl-C (or kill -9) in the middle of the cell
        return real_unlearn(original, request, method, **kwargs)

    monkeypatch.setattr(bench, "unlearn", unlearn_then_watch)
    with pytest.raises(KeyboardInterrupt):
        run_bench(_one_epoch_config(tmp_path, ["ga", "ft"]))
    assert seen["rows"] == {"original", "retrain", "ga"}


def test_a_row_that_cannot_be_written_fails_the_run_instead_of_vanishing(tmp_path, monkeypatch):
    import unlearnkit.bench as bench

    real_append = bench.append_result

    def disk_full_for_ga(path, row):
        if row["method"] == "ga":
            raise OSError(28, "No space left on device")
        real_append(path, row)

    monkeypatch.setattr(bench, "append_result", disk_full_for_ga)
    with pytest.raises(OSError, match="No space left"):
        run_bench(_one_epoch_config(tmp_path, ["ft", "ga", "rl"]))
    written = {r["method"] for r in read_results(tmp_path / "out" / "results.jsonl")}
    assert {"original", "retrain", "ft", "rl"} <= written and "ga" not in written  # every other row is kept


def test_a_rerun_asking_for_audits_or_saved_models_redoes_the_rows_that_lack_them(tmp_path):
    from dataclasses import replace

    from unlearnkit.audit import AuditConfig

    config = _one_epoch_config(tmp_path, ["ga"])
    run_bench(config)
    audit = AuditConfig(families=("membership",), reconstruction_samples=0)
    rows = run_bench(replace(config, audit=audit, save_models=True))
    assert all("rmia" in r for r in rows) and len(rows) == 3
    assert len(list((tmp_path / "out" / "models").glob("*/seed0/*.safetensors"))) == 3
    assert len(run_bench(replace(config, audit=audit, save_models=True))) == 3  # now finished: nothing redone
    with pytest.raises(SettingsChangedError, match="audit: families"):
        run_bench(replace(config, audit=AuditConfig(families=("representation",), reconstruction_samples=0)))
    assert len(run_bench(config)) == 3  # asking for less reuses the audited rows


def test_a_model_with_nan_outputs_is_an_error_row_not_a_crash(tmp_path, monkeypatch):
    import torch

    import unlearnkit.bench as bench

    real_unlearn = bench.unlearn

    def diverge(original, request, method, **kwargs):
        model, record = real_unlearn(original, request, method, **kwargs)
        with torch.no_grad():  # finite weights, overflowing outputs: the loss never saw a NaN
            for p in model.parameters():
                p.fill_(1e30)
        return model, record

    monkeypatch.setattr(bench, "unlearn", diverge)
    rows = run_bench(_one_epoch_config(tmp_path, ["ga"]))
    ga = next(r for r in rows if r["method"] == "ga")
    assert "NaN/inf" in ga["error"] and {r["method"] for r in rows} == {"original", "retrain", "ga"}


def test_a_foreign_results_file_in_out_is_a_clear_error(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text('{"a": 1}\n')
    with pytest.raises(ValueError, match="is not a bench results file"):
        run_bench(_one_epoch_config(tmp_path, ["ga"]))


def test_duplicate_methods_and_zero_epochs_are_refused(tmp_path):
    from dataclasses import replace

    with pytest.raises(ValueError, match="rl more than once"):
        run_bench(_one_epoch_config(tmp_path, ["rl", "salun", "rl"]))
    with pytest.raises(ValueError, match="--task names class:3 more than once"):
        run_bench(_one_epoch_config(tmp_path, ["ga"], tasks=["class:3", "class:3"]))
    config = _one_epoch_config(tmp_path, ["ga"])
    for epochs in (0, -1):
        with pytest.raises(ValueError, match=f"--epochs must be at least 1; got {epochs}"):
            run_bench(replace(config, recipe=replace(config.recipe, epochs=epochs)))
    assert not (tmp_path / "cache" / "models").exists()


def test_summarise_keeps_models_and_datasets_apart():
    from unlearnkit.report import markdown_table, summarise, summarise_settings

    def row(dataset, model, forget_acc):
        return {"dataset": dataset, "model": model, "task": "class:3", "method": "ft", "seed": 0, "forget_acc": forget_acc}

    rows = [row("digits", "mlp", 10.0), row("digits", "cnn", 30.0), row("cifar10", "mlp", 50.0)]
    summary = summarise_settings(rows)
    assert summary[("digits", "mlp", "class:3", "ft")]["forget_acc"] == (10.0, 0.0, 1)
    assert summary[("digits", "cnn", "class:3", "ft")]["forget_acc"] == (30.0, 0.0, 1)
    assert "| digits | cnn | class:3 | ft | 30.00 |" in markdown_table(rows)
    with pytest.raises(ValueError, match="mix 3 dataset/model settings"):
        summarise(rows)
    assert summarise(rows[:1])[("class:3", "ft")]["forget_acc"] == (10.0, 0.0, 1)


def test_report_lists_references_first_then_methods_in_the_order_they_were_run():
    from unlearnkit.report import residual_rows, summarise

    def row(method, seed):
        return {"dataset": "digits", "model": "mlp", "task": "class:3", "method": method, "seed": seed, "forget_acc": 1.0,
                "mia_entropy_lr": {"original": 80.0, "retrain": 0.0}.get(method, 40.0)}

    rows = [row(m, 0) for m in ("scrub", "ft", "retrain", "original", "ga")] + [row("ft", 1), row("scrub", 1)]
    assert [method for _, method in summarise(rows)] == ["original", "retrain", "scrub", "ft", "ga"]
    assert [method for _, method in residual_rows(rows)] == ["scrub", "ft", "ga"]  # the audit table agrees


def test_the_results_file_keeps_the_methods_order_even_when_a_row_is_ready_first(tmp_path):
    from unlearnkit.report import summarise

    config = _one_epoch_config(tmp_path, ["ft", "pour-p"], tasks=["random:0.1"])  # pour-p is skipped: ready at once
    run_bench(config)
    assert [r["method"] for r in read_results(tmp_path / "out" / "results.jsonl")] == ["original", "retrain", "ft", "pour-p"]
    assert [m for _, m in summarise(read_results(tmp_path / "out" / "results.jsonl"))] == ["original", "retrain", "ft"]


def test_a_folder_resumed_on_another_machine_keeps_both_environments(tmp_path, monkeypatch):
    import json

    import unlearnkit.bench as bench

    record = bench.record_environment
    record(tmp_path)
    first = json.loads((tmp_path / "environment.json").read_text())
    assert "earlier" not in first and first["torch"]
    record(tmp_path)  # same machine again: nothing to warn about, nothing kept twice
    assert json.loads((tmp_path / "environment.json").read_text()) == first
    monkeypatch.setattr(bench, "environment", lambda: {**first, "gpu": "NVIDIA H100"})
    with pytest.warns(UserWarning, match="also computed on another machine"):
        record(tmp_path)
    second = json.loads((tmp_path / "environment.json").read_text())
    assert second["gpu"] == "NVIDIA H100" and second["earlier"] == [first]
    monkeypatch.setattr(bench, "environment", lambda: first)  # back on the first machine
    with pytest.warns(UserWarning, match="also computed on another machine"):
        record(tmp_path)
    assert json.loads((tmp_path / "environment.json").read_text()) == {**first, "earlier": [{**first, "gpu": "NVIDIA H100"}]}
