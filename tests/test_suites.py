"""Benchmark suites: config loading and validation, override precedence, paper-layout tables,
TARF metric wiring in the benchmark, and end-to-end quick runs on digits (tiny budgets)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from unlearnkit.bench import BenchConfig, run_bench
from unlearnkit.cli import app
from unlearnkit.data import Dataset
from unlearnkit.methods.tarf import TARF, known_target_count
from unlearnkit.suites import runner
from unlearnkit.suites.config import SuiteError, load_suite, parse_suite, suite_names, with_overrides
from unlearnkit.suites.paper_tables import POUR_CIFAR10, paper_table
from unlearnkit.tasks import Hierarchy, attach_hierarchy, class_request, make_request
from unlearnkit.train import TrainRecipe

DIGIT_GROUPS = {"low": ["0", "1", "2"], "mid": ["3", "4", "5"], "high": ["6", "7", "8", "9"]}
WIDE = {"COLUMNS": "250"}


def _minimal(**extra) -> dict:
    return {
        "name": "x", "title": "t", "source": "s", "dataset": "digits", "model": "cnn",
        "tasks": ["class:0"], "methods": ["ga"], "metrics": {"test_acc": "Acc_r"},
    } | extra  # fmt: skip


# --- loading and validation ---------------------------------------------------------------------


def test_the_five_suites_ship_and_their_quick_sections_run_on_digits() -> None:
    assert suite_names() == ["famr", "minnorm", "opc", "pour", "tarf"]
    for name in suite_names():
        full, quick = load_suite(name), load_suite(name, quick=True)
        assert not full.quick and quick.quick
        if full.kind == "bench":
            assert full.dataset in ("cifar10", "cifar100") and quick.dataset == "digits"
            assert quick.out_dir.name == f"{name}-quick"
            quick.bench_config().validate()  # every method and hyperparameter is valid
        else:
            assert quick.sine.seeds == 3 and quick.sine.original_epochs < full.sine.original_epochs


def test_an_unknown_suite_lists_the_valid_ones() -> None:
    with pytest.raises(SuiteError, match="unknown suite 'trf'; valid suites: famr, minnorm, opc, pour, tarf"):
        load_suite("trf")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_minimal(epoch=3), r"unknown key\(s\) 'epoch'; valid keys: .*epochs"),
        (_minimal(quick={"dataset": "digits", "sizes": 3}), r"quick section\): unknown key\(s\) 'sizes'"),
        (_minimal(kind="minnorm", sine={"budget": [10]}), r"sine section\): unknown key\(s\) 'budget'"),
        (_minimal(kind="minnorm", sine={"grid": "huge"}), r"sine.grid 'huge' is not one of full, full-cpu, default, reduced"),
        (_minimal(kind="minnorm", sine={"grid": "full", "budgets": [10, 50]}), r"defined for budgets \[10, 100, 1000\] only"),
        (_minimal(methods=["gaa"]), r"unknown method 'gaa'|gaa"),
        (_minimal(hparams={"ft": {"epochs": 1}}), r"hparams given for 'ft', which is not among the methods"),
        (_minimal(hparams={"ga": {"epoch": 1}}), r"hparams.ga: .*no hyperparameter epoch"),
        (_minimal(metrics={"rus": "RUS"}), r"metrics \['rus'\] are not row keys; valid: .*rus_o"),
        (_minimal(audit=["membership", "probe"]), r"audit families \['probe'\] are not valid"),
        (_minimal(seeds=0), r"seeds must be at least 1"),
        (_minimal(seeds="3"), r"'seeds' must be a int"),
        (_minimal(kind="grid"), r"kind 'grid' is not one of bench, minnorm"),
        (_minimal(paper_table="salun"), r"paper_table 'salun' is not one of"),
        ({k: v for k, v in _minimal().items() if k != "model"}, r"required key 'model' is missing"),
    ],
)
def test_bad_suite_files_are_refused_with_what_is_valid(raw: dict, message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        parse_suite(raw, quick=True)


def test_precedence_file_then_quick_then_command_line() -> None:
    full, quick = load_suite("tarf"), load_suite("tarf", quick=True)
    assert full.hparams == {"tarf": {"beta_mode": "known_count"}}
    assert quick.hparams["tarf"] == {"beta_mode": "known_count", "epochs": 4, "t1": 1, "t0": 1}  # merged per key
    assert quick.hierarchy == DIGIT_GROUPS and quick.epochs == 8
    cli = with_overrides(quick, {"hparams": {"tarf": {"epochs": "3"}}, "seeds": 2, "methods": ("ga", "tarf")})
    assert cli.hparams == {"tarf": {"beta_mode": "known_count", "epochs": "3", "t1": 1, "t0": 1}, "ga": {"epochs": 2}}  # ft, scrub, salun dropped
    assert cli.seeds == 2 and cli.tasks == quick.tasks and cli.dataset == "digits"
    other = with_overrides(quick, {"dataset": "fashion-mnist"})
    assert other.hierarchy is None  # the file's hierarchy names digits' classes
    with pytest.raises(SuiteError, match="unknown key"):
        with_overrides(quick, {"colour": ["erasure"]})
    minnorm = with_overrides(load_suite("minnorm", quick=True), {"seeds": 2, "dataset": "fashion-mnist"})
    assert minnorm.sine.seeds == 2 and minnorm.colour_dataset == "fashion-mnist"
    with pytest.raises(SuiteError, match="methods, hparams do not apply to the MinNorm-OG suite"):
        with_overrides(load_suite("minnorm", quick=True), {"methods": ["ga"], "hparams": {"ga": {"lr": "banana"}}})


def test_cli_options_given_explicitly_override_the_suite_and_defaults_do_not(tmp_path, monkeypatch) -> None:
    seen = []
    monkeypatch.setattr(runner, "run_suite", lambda config, console: seen.append(config))
    args = ["bench", "--suite", "pour", "--seeds", "2", "--hparam", "pour-d.lr=0.5", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args, env=WIDE)
    assert result.exit_code == 0, result.output
    config = seen[-1]
    # bench's own defaults (digits, cnn, class:0, 'ft,ga,rl,neggrad+') must not replace the file's values
    assert (config.dataset, config.model, config.tasks) == ("cifar10", "resnet18", ("class:airplane",))
    assert config.methods == ("ga", "boundary-shrink", "pour-p", "pour-d")
    assert config.seeds == 2 and config.out == tmp_path and config.hparams == {"pour-d": {"lr": "0.5"}}
    assert config.audit == ("membership", "representation") and not config.quick
    result = CliRunner().invoke(app, [*args, "--quick", "--epochs", "3", "--dataset", "digits", "--no-audit"], env=WIDE)
    assert result.exit_code == 0, result.output
    config = seen[-1]
    assert config.quick and config.epochs == 3 and config.audit == () and config.hparams["ga"] == {"epochs": 2}


def test_cli_suite_errors_are_user_errors() -> None:
    result = CliRunner().invoke(app, ["bench", "--suite", "nope"], env=WIDE)
    assert result.exit_code == 2 and "valid suites: famr, minnorm, opc, pour, tarf" in result.output
    result = CliRunner().invoke(app, ["bench", "--quick"], env=WIDE)
    assert result.exit_code == 2 and "--quick needs --suite" in result.output


# --- paper tables and layout ------------------------------------------------------------------


def test_paper_numbers_are_the_specs_and_consistent() -> None:
    # spec 2.7 checks AUS from the table's own accuracies: (1 - (Acc_r^o - Acc_r^u)) / (1 + Acc_f^u)
    original = POUR_CIFAR10.rows[("class", "original")]
    for method in ("ga", "pour-p", "original"):
        row = POUR_CIFAR10.rows[("class", method)]
        aus = (1 - (original["test_acc"] - row["test_acc"]) / 100) / (1 + row["test_forget_acc"] / 100)
        assert aus == pytest.approx(row["aus"], abs=0.006)
    assert paper_table("tarf", "cifar100").value("target-mismatch", "tarf", "gap_target") == 0.21
    assert paper_table("tarf", "digits").dataset == "cifar10"  # no digits table: the paper's first setup


def _row(task: str, method: str, **metrics) -> dict:
    return {"dataset": "digits", "model": "cnn", "task": task, "method": method, "seed": 0} | metrics


def test_the_layout_puts_paper_numbers_beside_ours_and_notes_the_setup() -> None:
    config = replace(load_suite("pour", quick=True), audit=())
    rows = [
        _row("class:0", "ga", test_acc=90.0, test_forget_acc=5.0),
        _row("class:0", "original", test_acc=99.0, test_forget_acc=99.0),
        _row("class:0", "retrain", test_acc=98.0, test_forget_acc=0.0),
        _row("class:0", "pour-d", skipped="no"),
    ]
    _, markdown, notes = runner.paper_layout(rows, config)
    lines = markdown.splitlines()
    assert lines[2].startswith("| Task | Method | Acc_r | Acc_r (paper) | Acc_f | Acc_f (paper) | AUS | AUS (paper) |")
    body = [line for line in lines[4:]]
    assert body[0].startswith("| class:0 | original | 99.00 | 94.47 | 99.00 | 95.03 | - | 0.51 |")
    assert body[1].startswith("| class:0 | retrain (oracle) | 98.00 | 94.68 |")
    assert body[2].startswith("| class:0 | ga | 90.00 | 86.71 | 5.00 | 15.37 |")
    assert body[-1].startswith("| class:0 | DELETE (paper) | - | 88.73 |")  # a method only the paper has
    assert any("NOT comparable: dataset digits (paper: cifar10); model cnn (paper: resnet18)" in n for n in notes)
    assert any("no row holds aus, rmia, rus_o, rus_r" in n and "audit" in n for n in notes)


# --- TARF wiring ----------------------------------------------------------------------------------


def test_known_target_count_is_read_off_the_request(small_digits: Dataset) -> None:
    grouped = attach_hierarchy(small_digits, Hierarchy.from_groups(small_digits.class_names, DIGIT_GROUPS))
    counts = {spec: known_target_count(make_request(grouped, spec)) for spec in
              ("full-match:3", "target-mismatch:3->mid", "target-mismatch:3->mid,low", "model-mismatch:3", "data-mismatch:3->mid")}  # fmt: skip
    assert counts == {"full-match:3": 0, "target-mismatch:3->mid": 2, "target-mismatch:3->mid,low": 5, "model-mismatch:3": 0, "data-mismatch:3->mid": 1}
    request = make_request(grouped, "target-mismatch:3->mid")
    assert TARF.request_overrides({"beta_mode": "known_count"}, request)["n_target_classes"] == 2
    assert TARF.request_overrides({"beta_mode": "known_count", "n_target_classes": 1}, request)["n_target_classes"] == 1
    assert TARF.request_overrides({}, request) == {}  # quantile mode needs no count
    assert known_target_count(class_request(small_digits, ["3"])) == 0  # no target beyond D_f


def test_bench_rows_of_tarf_tasks_hold_the_tarf_metrics_and_both_gaps(tmp_path: Path) -> None:
    config = BenchConfig(
        dataset="digits", model="mlp", tasks=["target-mismatch:3->mid", "class:3"], methods=["ga", "tarf"],
        out=tmp_path, device="cpu", recipe=TrainRecipe(epochs=3, batch_size=64, lr=0.05, label_smoothing=0.0),
        hparams={"ga": {"epochs": 1}, "tarf": {"epochs": 2, "t1": 1, "t0": 1, "beta_mode": "known_count"}},
        cache_dir=tmp_path / "cache", train_size=400, test_size=150, hierarchy=DIGIT_GROUPS,
    )  # fmt: skip
    rows = run_bench(config)
    tarf_rows = [r for r in rows if r["task"].startswith("target-mismatch")]
    assert {r["method"] for r in tarf_rows} == {"original", "retrain", "ga", "tarf"}
    oracle = next(r for r in tarf_rows if r["method"] == "retrain")
    for row in tarf_rows:
        for which in ("given", "target"):
            keys = (f"ua_{which}", "ra_true", "ta_true", f"mia_{which}")
            expected = np.mean([abs(row[k] - oracle[k]) for k in keys])
            assert row[f"gap_{which}"] == pytest.approx(expected)
    assert oracle["gap_given"] == 0 and oracle["gap_target"] == 0
    assert oracle["ua_target"] == 0  # the oracle never saw the target concept's classes
    assert next(r for r in tarf_rows if r["method"] == "tarf")["hparams"]["n_target_classes"] == 2
    class_rows = [r for r in rows if r["task"].startswith("class:")]
    assert len(class_rows) == 4 and all("gap_given" not in r and "ua_given" not in r for r in class_rows)
    assert next(r for r in class_rows if r["method"] == "tarf")["hparams"]["n_target_classes"] == 0


# --- end to end ---------------------------------------------------------------------------------


def test_bench_suite_pour_quick_runs_and_prints_the_paper_layout(tmp_path: Path) -> None:
    out = tmp_path / "pour"
    args = [
        "bench", "--suite", "pour", "--quick", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
        "--device", "cpu", "--epochs", "2", "--train-size", "300", "--test-size", "100", "--model", "mlp",
        "--hparam", "ga.epochs=1", "--hparam", "boundary-shrink.epochs=1", "--hparam", "pour-d.epochs=1",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args, env=WIDE)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["method"] for r in rows} == {"original", "retrain", "ga", "boundary-shrink", "pour-p", "pour-d"}
    assert all(r["n_train"] == 300 and r["model"] == "mlp" for r in rows)
    assert all(r.get("aus") is not None and r.get("rmia") is not None for r in rows)  # audit: membership, representation
    pour_p = next(r for r in rows if r["method"] == "pour-p")
    assert pour_p["test_forget_acc"] < 5  # the projection removes the class (spec 2.5)
    for text in ("Acc_r (paper)", "RUS(o) (paper)", "94.47", "DELETE (paper)", "NOT comparable: dataset digits"):
        assert text in result.output, text
    table = (out / "table.md").read_text()
    assert "| class:0 | pour-p |" in table and "quick mode" in table
    assert json.loads((out / "suite.json").read_text())["train_size"] == 300


def test_minnorm_suite_runs_the_sine_table_and_notes_missing_colour_parts(tmp_path: Path, monkeypatch) -> None:
    real_import = runner.importlib.import_module

    def no_colour(name: str, *args, **kwargs):  # torch imports its own modules through importlib too
        if name.startswith("unlearnkit.suites.colour_"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(runner.importlib, "import_module", no_colour)
    config = load_suite("minnorm", quick=True)
    config = replace(config, out=tmp_path, cache_dir=tmp_path, sine=replace(config.sine, seeds=1, budgets=(10,), methods=("retrain", "minnorm-og"), original_epochs=200, hidden=32))
    result = runner.run_suite(config)
    assert [(r["method"], r["epochs"]) for r in result.rows] == [("retrain", 10), ("minnorm-og", 10)]
    assert "| 10 |" in result.markdown and "\\| 1.5 |" in result.markdown  # the paper's T=10 medians, 1.50 both
    assert any("NOT the paper's setup: 1 seeds" in n for n in result.notes)
    assert any(n.startswith("colour erasure: unlearnkit.suites.colour_erasure is not available") for n in result.notes)
    assert json.loads((tmp_path / "sine.json").read_text())[0]["paper_median"] == 1.5


def test_minnorm_colour_tables_go_to_table_md_with_dashes_for_missing_paper_numbers(tmp_path: Path, monkeypatch) -> None:
    import types

    real_import = runner.importlib.import_module
    fake = types.SimpleNamespace(run_collapse_benchmark=lambda quick: [{"method": "ga", "mean": 41.5, "paper_se": None}])

    def only_fake_collapse(name: str, *args, **kwargs):
        if name == "unlearnkit.suites.colour_collapse":
            return fake
        if name.startswith("unlearnkit.suites.colour_"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(runner.importlib, "import_module", only_fake_collapse)
    config = replace(load_suite("minnorm", quick=True), out=tmp_path, cache_dir=tmp_path, sine=None)
    result = runner.run_suite(config)
    table = (tmp_path / "table.md").read_text()
    assert "### MinNorm-OG colour collapse" in table and "| colour_collapse | ga | 41.5 | - |" in table
    assert [r["method"] for r in result.rows] == ["ga"]

