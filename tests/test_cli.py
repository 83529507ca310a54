"""The command line, run in-process with typer's CliRunner on the embedded digits data."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import unlearnkit
from unlearnkit.cli import app
from unlearnkit.data import DataError, load_dataset
from unlearnkit.data import idx as idx_loader
from unlearnkit.methods import METHODS
from unlearnkit.metrics import gap_to_oracle

WIDE = {"COLUMNS": "200"}  # a wide terminal: tables are not squeezed
NARROW = {"COLUMNS": "80"}  # a classic terminal, and what rich assumes when output is piped
ROW_KEYS = {
    "dataset",
    "model",
    "task",
    "method",
    "seed",
    "forget_acc",
    "retain_acc",
    "test_acc",
    "mia",
    "gap",
    "time_s",
    "hparams",
}
PERCENT_KEYS = ("forget_acc", "retain_acc", "test_acc", "mia")


def _invoke(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(app, args, env=env or WIDE)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]


def _model_files(cache: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((cache / "models").iterdir())}


def _bench_args(out: Path, cache: Path) -> list[str]:
    return [
        "bench", "--dataset", "digits", "--model", "mlp", "--task", "class:3", "--methods", "ft,ga",
        "--seeds", "2", "--epochs", "3", "--out", str(out), "--cache-dir", str(cache), "--device", "cpu",
        "--hparam", "ft.lr=0.5",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory):
    out, cache = tmp_path_factory.mktemp("bench-out"), tmp_path_factory.mktemp("bench-cache")
    start = time.perf_counter()
    result = _invoke(_bench_args(out, cache), env=NARROW)
    elapsed = time.perf_counter() - start
    assert result.exit_code == 0, result.output
    return {"result": result, "out": out, "cache": cache, "elapsed": elapsed, "rows": _rows(out)}


# --- list ------------------------------------------------------------------------------------


def test_list_shows_every_registry() -> None:
    result = _invoke(["list"])
    assert result.exit_code == 0, result.output
    for name in ("digits", "fashion-mnist", "cifar10", "cifar100", "imagefolder"):
        assert f" {name} " in result.output, name
    for name in ("mlp", "cnn", "resnet18"):
        assert f" {name} " in result.output, name
    for name in ("retrain", "ft", "ga", "rl", "neggrad+"):
        assert f" {name} " in result.output, name
    for name in ("accuracy", "mia", "tarf"):
        assert f" {name} " in result.output, name
    for name in ("gap", "time_s"):  # bench row columns, which evaluate() does not take as metric names
        assert re.search(rf"row column\s+│?\s*{name} ", result.output), name
    assert "class:NAME" in result.output and "random:" in result.output


def test_list_shows_what_data_each_method_needs() -> None:
    # Each method row ends with "[needs: forget/retain]" (the method's declared data access).
    result = _invoke(["list"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    method_rows = [line for line in result.output.splitlines() if "│ method " in line]
    assert text.count("needs:") == len(METHODS), "\n".join(method_rows)
    assert "[needs: retain]" in text and "[needs: forget]" in text and "[needs: forget + retain]" in text


# --- bench -----------------------------------------------------------------------------------


def test_bench_writes_one_row_per_method_and_seed(bench_run) -> None:
    rows = bench_run["rows"]
    assert len(rows) == 8
    expected = set(itertools.product(["original", "retrain", "ft", "ga"], [0, 1]))
    assert {(r["method"], r["seed"]) for r in rows} == expected
    for row in rows:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert (row["dataset"], row["model"], row["task"]) == ("digits", "mlp", "class:3")
        for key in PERCENT_KEYS:
            assert 0.0 <= row[key] <= 100.0, (row["method"], key, row[key])
        assert row["time_s"] >= 0 and row["gap"] >= 0
        assert isinstance(row["hparams"], dict)
    assert (bench_run["out"] / "environment.json").exists()


def test_bench_gap_is_measured_against_the_oracle_of_the_same_seed(bench_run) -> None:
    rows = bench_run["rows"]
    oracle = {r["seed"]: r for r in rows if r["method"] == "retrain"}
    for row in rows:
        assert row["gap"] == pytest.approx(gap_to_oracle(row, oracle[row["seed"]]), abs=1e-9), row["method"]
        if row["method"] == "retrain":
            assert row["gap"] == 0.0
    for seed in (0, 1):
        original = next(r for r in rows if r["method"] == "original" and r["seed"] == seed)
        assert oracle[seed]["forget_acc"] < 5 < original["forget_acc"]


def test_bench_hparam_override_is_recorded_typed(bench_run) -> None:
    by_method = {(r["method"], r["seed"]): r for r in bench_run["rows"]}
    for seed in (0, 1):
        ft = by_method[("ft", seed)]["hparams"]
        assert ft["lr"] == 0.5 and isinstance(ft["lr"], float)
        assert ft["epochs"] == 10 and isinstance(ft["epochs"], int)  # untouched default
        assert by_method[("ga", seed)]["hparams"].get("lr") != 0.5  # other methods keep their own
        assert by_method[("original", seed)]["hparams"] == {}
        assert by_method[("retrain", seed)]["hparams"] == {}


def test_bench_resumes_without_new_rows_or_training(bench_run) -> None:
    out, cache = bench_run["out"], bench_run["cache"]
    files = _model_files(cache)
    assert len([name for name in files if name.endswith(".safetensors")]) == 4  # original + oracle per seed
    lines = (out / "results.jsonl").read_text()
    start = time.perf_counter()
    again = _invoke(_bench_args(out, cache))
    elapsed = time.perf_counter() - start
    assert again.exit_code == 0, again.output
    assert (out / "results.jsonl").read_text() == lines
    assert _model_files(cache) == files, "checkpoint cache files were rewritten"
    assert elapsed < bench_run["elapsed"] / 3, (elapsed, bench_run["elapsed"])
    assert "retrain (oracle)" in again.output


def test_bench_reuses_cached_models_for_a_new_output_folder(bench_run, tmp_path: Path) -> None:
    cache = bench_run["cache"]
    files = _model_files(cache)
    args = _bench_args(tmp_path / "fresh", cache)[:-2]  # without the ft hyperparameter
    args[args.index("--seeds") + 1] = "1"
    args[args.index("--methods") + 1] = "ga"
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    assert _model_files(cache) == files, "cached original/oracle were retrained"
    rows = {r["method"]: r for r in _rows(tmp_path / "fresh")}
    assert set(rows) == {"original", "retrain", "ga"}
    assert rows["original"]["cached"] is True and rows["retrain"]["cached"] is True
    first = {(r["method"], r["seed"]): r for r in bench_run["rows"]}
    for method in ("original", "retrain"):
        for key in PERCENT_KEYS:
            assert rows[method][key] == pytest.approx(first[(method, 0)][key]), (method, key)


def test_bench_table_is_readable_when_piped(bench_run) -> None:
    # Piped output (CI logs, COLUMNS=80): the reference rows must stay legible, not "retrain (orac…".
    output = bench_run["result"].output
    assert "retrain (oracle)" in output, output
    assert "class:3" in output, output


def test_bench_random_task_rows_are_strict_json_and_seeded(tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["bench", "--dataset", "digits", "--model", "mlp", "--task", "random:50", "--methods", "ga", "--seeds", "2",
            "--epochs", "2", "--out", str(out), "--cache-dir", str(cache), "--device", "cpu"]  # fmt: skip
    result = _invoke(args)
    assert result.exit_code == 0, result.output

    def refuse(constant: str):
        raise ValueError(f"{constant} is not valid JSON (RFC 8259)")

    rows = _rows(out)
    assert {(r["method"], r["seed"]) for r in rows} == set(itertools.product(["original", "retrain", "ga"], [0, 1]))
    # Each seed draws its own forget set, so the request differs between seeds.
    keys = {r["seed"]: r["request"] for r in rows if r["method"] == "original"}
    assert keys[0] != keys[1]
    for row in rows:
        assert row["task"] == "random:50"
        assert all(0.0 <= row[key] <= 100.0 for key in PERCENT_KEYS), row
    # A random request has no forgotten test classes; the file must still be what jq or a JSON
    # reader in another language accepts (no NaN/Infinity tokens).
    for line in (out / "results.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=refuse)


# --- errors ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def error_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    # One cache for all error cases: hyperparameter errors surface after the original/oracle are trained.
    return tmp_path_factory.mktemp("err-out"), tmp_path_factory.mktemp("err-cache")


def _bench_error(error_dirs, extra: list[str], env: dict[str, str] | None = None):
    out, cache = error_dirs
    base = ["bench", "--dataset", "digits", "--model", "mlp", "--task", "class:3", "--methods", "ft", "--epochs", "1",
            "--seeds", "1", "--out", str(out), "--cache-dir", str(cache), "--device", "cpu"]  # fmt: skip
    # Later options win, so ``extra`` overrides the defaults above.
    return _invoke(base + extra, env=env or NARROW)


def _assert_user_error(result, *fragments: str) -> None:
    output = result.output
    assert result.exit_code == 2, (result.exit_code, output, result.exception)
    assert "Traceback" not in output
    text = " ".join(output.split())
    assert text.startswith("error: "), output
    for fragment in fragments:
        assert fragment in text, (fragment, output)
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, f"the error should be one line, got {len(lines)}:\n{output}"


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--dataset", "nope"], ["unknown dataset 'nope'", "digits", "cifar10"]),
        (["--model", "nope"], ["unknown model 'nope'", "mlp", "resnet18"]),
        (["--methods", "ft,nope"], ["unknown method 'nope'", "neggrad+"]),
        (["--task", "class:nonexistent"], ["unknown class 'nonexistent'", "valid classes: 0, 1, 2"]),
        (["--task", "random:1.5"], ["(0, 1)", "1.5"]),
        (["--task", "random:0"], ["a forget count must be >= 1; got 0"]),
        (["--task", "foo:1"], ["unknown task 'foo:1'"]),
        (["--hparam", "ft.lr"], ["'ft.lr'", "METHOD.NAME=VALUE"]),
        (["--hparam", "ft.nope=1"], ["no hyperparameter nope", "lr"]),
        (["--hparam", "ft.epochs=abc"], ["ft.epochs", "int", "'abc'"]),
        (["--hparam", "ga.lr=0.1"], ["'ga'", "not among --methods"]),
        (["--hparam", "zz.lr=0.1"], ["unknown method 'zz'"]),
        (["--methods", "ft,retrain", "--hparam", "retrain.lr=0.1"], ["retrain reference row takes no hyperparameters"]),
        (["--hparam", "ft.lr=0.1", "--hparam", "ft.lr=0.2"], ["--hparam ft.lr is given more than once"]),
        (["--task", "random:1e-9"], ["rounds to 0 samples"]),
        (["--methods", "ft,ga,ft"], ["--methods names ft more than once"]),
        (["--methods", ""], ["--methods '' names no method"]),
        (["--methods", " , "], ["names no method"]),
        (["--epochs", "0"], ["--epochs must be at least 1; got 0"]),
        (["--epochs", "-2"], ["--epochs must be at least 1; got -2"]),
        (["--cache-dir", "/proc/unlearnkit-nope"], ["--cache-dir /proc/unlearnkit-nope cannot be used as a folder"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) and v and v[0].startswith("--") else None,
)
def test_bench_user_errors(error_dirs, extra: list[str], fragments: list[str]) -> None:
    _assert_user_error(_bench_error(error_dirs, extra), *fragments)


def test_bench_error_messages_are_printed_verbatim(error_dirs) -> None:
    # A user's value may contain square brackets; they must not be read as console markup.
    _assert_user_error(_bench_error(error_dirs, ["--task", "class:[x]"]), "unknown class '[x]'")


def test_bench_error_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    # CliRunner swallows tracebacks; a real interpreter shows whether one would reach the user.
    env = dict(os.environ, PYTHONPATH=str(Path(unlearnkit.__file__).parents[1]), COLUMNS="80")
    args = ["bench", "--model", "mlp", "--task", "class:nonexistent", "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "unlearnkit", *args], capture_output=True, text=True, env=env, timeout=120
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: unknown class 'nonexistent'"), output


def test_bench_out_that_is_a_file_is_a_user_error(error_dirs, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _assert_user_error(_bench_error(error_dirs, ["--out", str(blocker)]), f"--out {blocker}", "File exists")
    _assert_user_error(_bench_error(error_dirs, ["--out", str(blocker / "sub")]), "Not a directory")


def test_bench_rerun_with_other_hyperparameters_is_refused(tmp_path: Path) -> None:
    args = ["bench", "--model", "mlp", "--task", "class:3", "--methods", "ga", "--epochs", "1", "--device", "cpu",
            "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    assert _invoke(args).exit_code == 0
    again = _invoke(args)
    assert again.exit_code == 0 and "3 finished rows in" in again.output and "0 to run" in again.output
    refused = _invoke([*args, "--hparam", "ga.lr=0.01"], env=NARROW)
    _assert_user_error(refused, "ga: lr 0.0001 -> 0.01", "new --out", str(tmp_path / "out" / "results.jsonl"))
    assert len(_rows(tmp_path / "out")) == 3


def test_bench_prints_why_a_row_failed(error_dirs) -> None:
    result = _bench_error(error_dirs, ["--hparam", "ft.lr=1e30", "--out", str(error_dirs[0] / "diverged")], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "failed: ft (class:3, seed 0): ft: the loss became" in " ".join(result.output.split())
    report = _invoke(["report", str(error_dirs[0] / "diverged"), "--markdown"])
    assert report.exit_code == 0 and "failed: ft (class:3, seed 0)" in report.output


def test_bench_interrupted_says_how_to_resume(error_dirs, monkeypatch: pytest.MonkeyPatch) -> None:
    import unlearnkit.cli as cli

    def interrupted(config, console):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_bench", interrupted)
    out = _write_rows(error_dirs[0] / "interrupted", [_row("original")])
    result = _bench_error(error_dirs, ["--out", str(out)], env=WIDE)
    assert result.exit_code == 130
    assert "interrupted; finished rows are in" in result.output and "rerun the same command to resume" in result.output


def test_report_of_a_file_without_bench_keys_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text('{"a": 1}\n')
    _assert_user_error(_invoke(["report", str(path)], env=NARROW), str(path), "'method', 'seed', 'task'")


def test_report_residuals_need_audit_metrics(tmp_path: Path) -> None:
    rows = [{"dataset": "digits", "model": "mlp", "task": "class:3", "method": m, "seed": 0, "forget_acc": 1.0} for m in ("original", "retrain", "ft")]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _assert_user_error(_invoke(["report", str(tmp_path), "--residuals"], env=NARROW), "has no audit metrics", "--audit")
    audited = [r | {"rmia": v} for r, v in zip(rows, (80.0, 10.0, 45.0), strict=True)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in audited))
    result = _invoke(["report", str(tmp_path), "--residuals"])  # --audit is implied
    assert result.exit_code == 0 and "| class:3 | ft | 0.50 |" in result.output, result.output


def test_report_shows_the_std_convention_and_failed_rows(tmp_path: Path) -> None:
    rows = [{"dataset": "digits", "model": "mlp", "task": "class:3", "method": "ft", "seed": s, "forget_acc": float(s)} for s in (0, 1)]
    rows.append({"dataset": "digits", "model": "mlp", "task": "class:3", "method": "ga", "seed": 0, "error": "ga: the loss became nan"})
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = _invoke(["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "0.50 ± 0.50" in text and "population std over seeds (ddof=0)" in text
    assert "failed: ga (class:3, seed 0): ga: the loss became nan" in text


def test_bench_cuda_without_gpu(error_dirs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _assert_user_error(_bench_error(error_dirs, ["--device", "cuda"]), "'cuda'", "no CUDA GPU", "--device cpu")


def test_bench_fashion_mnist_missing_names_the_places_searched(
    error_dirs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing system-wide and no torchvision download: only the given root is searched.
    monkeypatch.setattr(idx_loader, "SYSTEM_DIRS", ())
    monkeypatch.setitem(sys.modules, "torchvision", None)
    root = tmp_path / "empty"
    root.mkdir()
    result = _bench_error(error_dirs, ["--dataset", "fashion-mnist", "--data-root", str(root), "--task", "class:0"])
    places = [str(root), str(root / "fashion-mnist"), str(root / "FashionMNIST" / "raw")]
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", root, error_dirs[1])
    # The CLI prints the loader's message as it is (no words lost to console markup).
    assert " ".join(result.output.split()) == " ".join(f"error: {info.value}".split())
    _assert_user_error(result, "fashion-mnist", "not found", *places)


# --- demo ------------------------------------------------------------------------------------


def test_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = _invoke(["demo", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    methods = {r["method"] for r in rows}
    assert methods == {"original", "retrain"} | (set(METHODS) - {"retrain"})
    assert len(rows) == len(methods)  # one seed: one row each
    for row in rows:
        assert (row["dataset"], row["model"], row["task"], row["seed"]) == ("digits", "cnn", "class:3", 0)
        assert all(0.0 <= row[key] <= 100.0 for key in PERCENT_KEYS), row
    by_method = {r["method"]: r for r in rows}
    assert by_method["retrain"]["gap"] == 0.0
    assert by_method["retrain"]["forget_acc"] < 5 < by_method["original"]["forget_acc"]
    assert "retrain (oracle)" in result.output
    for method in methods - {"retrain"}:
        assert method in result.output, method
    # rows of an older version (here: another recipe) do not block the demo: they are set aside
    (out / "results.jsonl").write_text("".join(json.dumps(r | {"recipe": r["recipe"] | {"epochs": 99}}) + "\n" for r in rows))
    again = _invoke(["demo", "--out", str(out), "--device", "cpu"])
    assert again.exit_code == 0 and "starting over" in again.output, again.output
    assert len(_rows(out)) == len(methods) and all(r["recipe"]["epochs"] != 99 for r in _rows(out))
    assert len((out / "results.previous.jsonl").read_text().splitlines()) == len(methods)


def test_the_command_prints_a_warning_as_one_line(monkeypatch) -> None:
    import warnings

    from unlearnkit import cli

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after the test
    monkeypatch.setattr(cli, "app", lambda prog_name: None)
    cli.main()
    line = warnings.formatwarning(UserWarning("the data root is not read"), UserWarning, "/x/digits.py", 40, "src")
    assert line == "warning: the data root is not read\n"


def test_the_installed_command_and_python_m_both_go_through_main() -> None:
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["unlearnkit"] == "unlearnkit.cli:main"
    assert "main()" in (root / "src" / "unlearnkit" / "__main__.py").read_text()


def _write_rows(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _row(method: str, seed: int = 0, task: str = "class:3", **extra) -> dict:
    return {"dataset": "digits", "model": "mlp", "task": task, "method": method, "seed": seed, "forget_acc": 1.0} | extra


def test_report_notes_skipped_methods_and_means_that_mix_settings(tmp_path: Path) -> None:
    rows = [_row("original"), _row("retrain"), _row("ga", 0, hparams={"lr": 0.001}), _row("ga", 1, hparams={"lr": 0.0001}),
            _row("pour-p", 0, task="random:0.1", skipped="pour-p needs a class-wise request")]  # fmt: skip
    result = _invoke(["report", str(_write_rows(tmp_path, rows)), "--markdown"])
    text = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "skipped: pour-p (random:0.1): pour-p needs a class-wise request" in text
    assert "mixed: ga (class:3): its seeds ran with different settings (lr: 0.001 (seed 0), 0.0001 (seed 1))" in text
    same = [_row("ga", s, hparams={"lr": 0.001}) for s in (0, 1)]
    assert "mixed" not in _invoke(["report", str(_write_rows(tmp_path / "same", same))]).output


def test_report_lists_tasks_in_run_order(tmp_path: Path) -> None:
    rows = [_row(m, task=t) for t in ("random:0.1", "class:3") for m in ("original", "retrain", "ft")]
    result = _invoke(["report", str(_write_rows(tmp_path, rows)), "--markdown"])
    assert result.output.index("random:0.1") < result.output.index("class:3"), result.output


@pytest.mark.parametrize(
    ("row", "fragment"),
    [(_row("ft", forget_acc="high"), "row 1 has forget_acc='high' (expected a number or null)"),
     (_row("ft", task=1), "row 1 has task=1 (expected text)"),
     (_row("ft", seed="0"), "row 1 has seed='0' (expected a whole number)")],
)
def test_report_of_rows_with_values_of_the_wrong_type_is_a_user_error(tmp_path: Path, row: dict, fragment: str) -> None:
    _assert_user_error(_invoke(["report", str(_write_rows(tmp_path, [row]))], env=NARROW), "not a bench results file", fragment)


def test_report_names_a_missing_path_and_an_audit_table_without_audits(tmp_path: Path) -> None:
    _assert_user_error(_invoke(["report", str(tmp_path / "nope")], env=NARROW), "nope does not exist")
    _assert_user_error(_invoke(["report", str(tmp_path)], env=NARROW), "holds no results.jsonl")
    folder = _write_rows(tmp_path / "plain", [_row("original"), _row("ft")])
    _assert_user_error(_invoke(["report", str(folder), "--audit"], env=NARROW), "has no audit metrics", "an audit table")


def test_bench_shows_its_own_grid_and_counts_the_rest_of_the_file(error_dirs) -> None:
    out = error_dirs[0] / "grid"
    first = _bench_error(error_dirs, ["--out", str(out), "--task", "class:2"], env=WIDE)
    assert first.exit_code == 0, first.output
    second = _bench_error(error_dirs, ["--out", str(out)], env=WIDE)
    assert second.exit_code == 0, second.output
    assert "class:2" not in second.output.split("other rows")[0]
    assert "3 other rows of" in second.output and f"unlearnkit report {out}" in " ".join(second.output.split())


def test_bench_writes_environment_only_after_checking_its_inputs(error_dirs) -> None:
    out = error_dirs[0] / "refused"
    _assert_user_error(_bench_error(error_dirs, ["--out", str(out), "--task", "class:nope"]), "unknown class 'nope'")
    assert not (out / "environment.json").exists()


def test_bench_interrupted_before_any_row_says_so(error_dirs, monkeypatch: pytest.MonkeyPatch) -> None:
    import unlearnkit.cli as cli

    def interrupted(config, console):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_bench", interrupted)
    result = _bench_error(error_dirs, ["--out", str(error_dirs[0] / "never")], env=WIDE)
    assert result.exit_code == 130 and "interrupted; no row had finished" in result.output


def test_suite_interrupted_says_how_to_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import unlearnkit.suites.runner as runner

    def interrupted(config, console):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_suite", interrupted)
    result = _invoke(["bench", "--suite", "pour", "--quick", "--out", str(tmp_path / "s")])
    assert result.exit_code == 130, result.output
    assert f"interrupted; what had finished is kept in {tmp_path / 's'}" in result.output.replace("\n", "")


def test_audit_out_that_is_a_file_is_refused_before_the_audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import unlearnkit.audit.checkpoints as checkpoints

    monkeypatch.setattr(checkpoints, "audit_checkpoints", lambda *a, **k: pytest.fail("the audit ran"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = ["audit", "--original", str(tmp_path / "o"), "--unlearned", str(tmp_path / "u"), "--dataset", "digits",
            "--task", "class:3", "--out", str(blocker)]  # fmt: skip
    _assert_user_error(_invoke(args, env=NARROW), f"--out {blocker}", "File exists")


def test_a_method_run_shows_no_count_and_training_shows_its_epochs() -> None:
    from rich.progress import Progress

    from unlearnkit.bench import _CountColumn

    with Progress(disable=True) as progress:
        method = progress.add_task("ft (seed 0)", total=None)
        training = progress.add_task("train original", total=30, completed=12)
        tasks = {t.id: t for t in progress.tasks}
    assert _CountColumn().render(tasks[method]).plain == ""
    assert _CountColumn().render(tasks[training]).plain == "12/30"


@pytest.mark.parametrize("command", ["bench", "audit", "report"])
def test_help_is_not_cut_at_80_columns(command: str) -> None:
    result = _invoke([command, "--help"], env=NARROW)
    assert result.exit_code == 0 and "…" not in result.output, result.output


def test_log_lines_without_verbose_read_like_the_clis_own_lines() -> None:
    import logging

    from unlearnkit.cli import _PlainFormatter

    formatter = _PlainFormatter("%(message)s")
    info = logging.LogRecord("unlearnkit.data.idx", logging.INFO, __file__, 1, "decoding %s", ("x",), None)
    warning = logging.LogRecord("torch", logging.WARNING, __file__, 1, "slow path", None, None)
    assert formatter.format(info) == "decoding x"
    assert formatter.format(warning) == "warning: slow path"
