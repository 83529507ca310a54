"""The audit orchestrator, its report, `unlearnkit audit` on checkpoints and `bench --audit`."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from unlearnkit.audit import AUDIT_METRICS, AuditConfig, AuditError, Auditor, metric_residual, residual, run_audit
from unlearnkit.cli import app
from unlearnkit.tasks import place, random_request
from unlearnkit.train import default_recipe

CPU = torch.device("cpu")

FAST = AuditConfig(probe_epochs=50, reconstruction_samples=1, reconstruction_steps=30)


@pytest.fixture(scope="module")
def auditor(class_3, original, oracle) -> Auditor:
    return Auditor(class_3, place(class_3, CPU), original, oracle, FAST)


def test_every_metric_is_reported_and_references_score_themselves_perfectly(auditor, original, oracle) -> None:
    own = auditor.audit(original)
    assert set(own) == set(AUDIT_METRICS)
    assert all(math.isfinite(v) for v in own.values())
    assert own["cka_forget_original"] == pytest.approx(1.0) and own["rus_o"] == pytest.approx(0.0, abs=1e-6)
    ref = auditor.audit(oracle)
    assert ref["cka_forget_oracle"] == pytest.approx(1.0) and ref["rus_r"] == pytest.approx(1.0, abs=1e-6)
    assert ref["aus"] > own["aus"]  # the oracle forgot class 3, the original did not


def test_audit_separates_the_original_from_the_oracle(auditor, original, oracle) -> None:
    own, ref = auditor.audit(original), auditor.audit(oracle)
    assert own["mia_entropy_lr"] > ref["mia_entropy_lr"] + 20  # the original still calls D_f members
    assert own["mia_confidence"] < ref["mia_confidence"] - 20


def test_auditing_does_not_change_the_model(auditor, original) -> None:
    model = copy.deepcopy(original)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    auditor.audit(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_families_can_be_skipped_and_unknown_ones_are_refused(class_3, original) -> None:
    only = Auditor(class_3, place(class_3, CPU), original, None, AuditConfig(families=("membership",)))
    keys = set(only.audit(original))
    assert keys == {k for k, v in AUDIT_METRICS.items() if v.family == "membership"}
    with pytest.raises(AuditError, match="unknown audit families"):
        AuditConfig(families=("membership", "vibes"))
    with pytest.raises(AuditError, match="no audit family is left"):
        AuditConfig(families=())


def test_without_an_oracle_the_oracle_scores_are_left_out(class_3, original) -> None:
    result = Auditor(class_3, place(class_3, CPU), original, None, replace(FAST, families=("representation",))).audit(original)
    assert "rus_o" in result and "rus_r" not in result and "cka_forget_oracle" not in result


def test_random_requests_are_audited_with_the_sample_wise_aus(small_digits, original) -> None:
    request = random_request(small_digits, 0.1, seed=0)
    result = Auditor(request, place(request, CPU), original, None, replace(FAST, families=("representation", "recovery"))).audit(original)
    assert 0 < result["aus"] <= 1.5 and "fm_test_forget" not in result


def test_aus_is_undefined_without_test_images_of_the_forgotten_class(small_digits, original) -> None:
    from unlearnkit.data import Dataset
    from unlearnkit.tasks import make_request

    test = small_digits.test
    kept = test.labels != 3
    no_threes = replace(test, images=test.images[kept], labels=test.labels[kept])
    request = make_request(Dataset("digits-no-test-3", small_digits.train, no_threes), "class:3")
    config = replace(FAST, families=("representation",))
    result = Auditor(request, place(request, CPU), original, None, config).audit(original)
    assert math.isnan(result["aus"])  # Acc_f has no data: not the ideal-looking 1 - dAcc_r that Acc_f = 0 gave


def test_cka_with_the_oracle_is_not_read_as_a_residual() -> None:
    # the oracle scores CKA(oracle, oracle) = 1, which even a second retrain does not reach
    assert not AUDIT_METRICS["cka_forget_oracle"].forgetting and AUDIT_METRICS["cka_forget_original"].forgetting


def test_residual_places_a_value_between_the_references() -> None:
    assert residual(50.0, original=100.0, oracle=0.0) == 0.5
    assert residual(0.0, original=100.0, oracle=0.0) == 0.0
    assert math.isnan(residual(50.0, original=10.0, oracle=10.5, min_spread=2.0))


def test_residual_is_not_given_when_the_references_contradict_the_reading_direction() -> None:
    # "lower = more forgetting", but the oracle reads higher than the original: no share can be read
    assert math.isnan(residual(29.4, original=39.0, oracle=41.9, higher_forgets=False))
    assert residual(29.4, original=39.0, oracle=41.9) == pytest.approx((29.4 - 41.9) / (39.0 - 41.9))  # direction-blind
    assert residual(30.0, original=40.0, oracle=20.0, higher_forgets=False) == pytest.approx(0.5)
    assert residual(30.0, original=20.0, oracle=40.0, higher_forgets=True) == pytest.approx(0.5)
    assert math.isnan(metric_residual("rmia", 29.4, 39.0, 41.9))  # rmia reads "lower = more forgetting"
    assert metric_residual("rmia", 60.0, 80.0, 0.0) == pytest.approx(0.75)


def test_run_audit_writes_json_markdown_and_grid(tmp_path, class_3, original, oracle) -> None:
    unlearned = copy.deepcopy(oracle)
    document = run_audit(class_3, place(class_3, CPU), {"original": original, "unlearned": unlearned, "oracle": oracle}, tmp_path, FAST)
    saved = json.loads((tmp_path / "audit.json").read_text())
    assert saved["models"]["unlearned"]["rus_r"] == pytest.approx(document["models"]["unlearned"]["rus_r"])
    report = (tmp_path / "report.md").read_text()
    assert "| residual |" in report and "![reconstructions](reconstruction.png)" in report
    assert (tmp_path / "reconstruction.png").stat().st_size > 0
    # an unlearned model identical to the oracle sits at residual 0 wherever the references differ
    row = next(line for line in report.splitlines() if line.startswith("| membership | entropy-LR"))
    assert "| 0.00 |" in row or "-0.00" in row


def test_run_audit_refuses_a_model_of_another_label_space(tmp_path, class_3, original) -> None:
    wrong = copy.deepcopy(original)
    wrong.head = torch.nn.Linear(wrong.head.in_features, 3)
    with pytest.raises(AuditError, match="3 outputs"):
        run_audit(class_3, place(class_3, CPU), {"original": original, "unlearned": wrong}, tmp_path, FAST)


def test_bench_audit_and_the_audit_command_on_saved_checkpoints(tmp_path) -> None:
    from unlearnkit.bench import BenchConfig, run_bench

    config = BenchConfig(
        "digits", "mlp", ["class:3"], ["ft"], out=tmp_path / "bench", cache_dir=tmp_path / "cache",
        recipe=replace(default_recipe("digits"), epochs=2), audit=FAST, save_models=True,
    )
    rows = run_bench(config)
    assert {r["method"] for r in rows} == {"original", "retrain", "ft"}
    assert all(set(AUDIT_METRICS) <= set(r) for r in rows)
    assert list((tmp_path / "bench" / "audit").glob("class_3-*-seed0.png"))
    models = next((tmp_path / "bench" / "models").glob("class_3-*")) / "seed0"
    result = CliRunner().invoke(app, [
        "audit", "--original", str(models / "original"), "--unlearned", str(models / "ft.safetensors"),
        "--oracle", str(models / "retrain"), "--dataset", "digits", "--task", "class:3", "--out", str(tmp_path / "audit"),
        "--reconstruction-samples", "1", "--reconstruction-steps", "20", "--skip", "recovery",
    ])
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "audit" / "audit.json").read_text())
    ft_row = next(r for r in rows if r["method"] == "ft")
    assert document["models"]["unlearned"]["rus_o"] == pytest.approx(ft_row["rus_o"], abs=1e-6)  # same model, same score
    assert "fm_forget" not in document["models"]["unlearned"]
    wrong_task = CliRunner().invoke(app, [
        "audit", "--original", str(models / "original"), "--unlearned", str(models / "ft.safetensors"),
        "--dataset", "digits", "--task", "class:4", "--out", str(tmp_path / "audit4"),
    ])
    assert wrong_task.exit_code == 2 and "was made with task 'class:3'" in wrong_task.output, wrong_task.output
    other_data = CliRunner().invoke(app, [
        "audit", "--original", str(models / "original"), "--unlearned", str(models / "ft.safetensors"),
        "--dataset", "digits", "--task", "class:3", "--train-size", "500", "--out", str(tmp_path / "audit5"),
    ])
    assert other_data.exit_code == 2 and "data_fingerprint" in other_data.output, other_data.output


def test_audit_command_names_a_missing_checkpoint(tmp_path) -> None:
    result = CliRunner().invoke(app, [
        "audit", "--original", str(tmp_path / "nope"), "--unlearned", str(tmp_path / "nope2"),
        "--dataset", "digits", "--task", "class:3",
    ])
    assert result.exit_code == 2 and "no such checkpoint" in result.output


def test_residual_table_of_a_bench_run_uses_each_seeds_references() -> None:
    from unlearnkit.report import residual_markdown, residual_rows

    def row(method, seed, value, psnr):
        return {"task": "class:3", "method": method, "seed": seed, "mia_entropy_lr": value, "recon_psnr": psnr}

    rows = [
        row("original", 0, 80.0, 20.0), row("retrain", 0, 0.0, 20.1), row("ft", 0, 60.0, 20.0),
        row("original", 1, 60.0, 20.0), row("retrain", 1, 20.0, 20.2), row("ft", 1, 20.0, 20.0),
        {"task": "class:3", "method": "pour-p", "seed": 0, "skipped": "class-wise only"},
    ]
    table = residual_rows(rows)
    assert list(table) == [("class:3", "ft")]
    assert table[("class:3", "ft")]["mia_entropy_lr"] == pytest.approx((0.75 + 0.0) / 2)
    assert math.isnan(table[("class:3", "ft")]["recon_psnr"])  # references 0.1-0.2 dB apart: below resolution
    assert "| class:3 | ft | **0.38** | n/a |" not in residual_markdown(rows)  # 0.375 is not above 0.5
    assert "| class:3 | ft | 0.38 | n/a |" in residual_markdown(rows)


def test_run_audit_reads_the_output_width_of_a_users_module(tmp_path, class_3, original) -> None:
    # A plain user module has no `head` attribute to read a width from: its outputs are checked.
    narrow = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 7))
    with pytest.raises(AuditError, match="the unlearned model: the model has 7 outputs"):
        run_audit(class_3, place(class_3, CPU), {"original": original, "unlearned": narrow}, tmp_path, FAST)


def test_audit_config_takes_one_family_by_name_and_refuses_fractional_budgets() -> None:
    assert AuditConfig(families="membership").families == ("membership",)
    with pytest.raises(AuditError, match="reconstruction_samples must be a whole number; got 1.5"):
        AuditConfig(reconstruction_samples=1.5)


@pytest.mark.parametrize(
    ("share", "text"),
    [(0.1, "0.10"), (-0.1, "-0.10"), (0.7, "0.70 **shallow**"), (1.1, "1.10 **shallow**"),
     (2.59, "2.59 **beyond original**"), (-1.98, "-1.98 *past oracle*"), (float("nan"), "n/a")],
)
def test_residuals_outside_the_references_are_read_as_such(share, text) -> None:
    from unlearnkit.audit.report import residual_text

    assert residual_text(share) == text


def test_report_settings_line_lists_families_plainly(tmp_path, class_3, original) -> None:
    run_audit(class_3, place(class_3, CPU), {"original": original}, tmp_path, replace(FAST, families=("membership",)))
    settings = next(line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("Audit settings"))
    assert "families: membership;" in settings and "(" not in settings


@pytest.mark.parametrize(("value", "cell"), [(150.0, "**1.88** (beyond)"), (-40.0, "-0.50 (past)"), (60.0, "**0.75**"), (10.0, "0.12")])
def test_residual_table_marks_values_outside_the_references(value, cell) -> None:
    from unlearnkit.report import residual_markdown

    rows = [{"task": "class:3", "method": m, "seed": 0, "mia_entropy_lr": v} for m, v in (("original", 80.0), ("retrain", 0.0), ("ft", value))]
    table = residual_markdown(rows)
    assert f"| class:3 | ft | {cell} |" in table
    assert "(beyond) above 1.2 = further from the oracle than the original" in table


def test_a_residual_cell_with_an_infinite_value_says_so() -> None:
    from unlearnkit.audit.report import _residual_cell

    models = {"unlearned": {"recon_psnr": math.inf}, "original": {"recon_psnr": 30.0}, "oracle": {"recon_psnr": 12.0}}
    assert _residual_cell(models, "recon_psnr") == "n/a (a value is not finite)"
    models["unlearned"]["recon_psnr"] = 12.5
    assert _residual_cell(models, "recon_psnr") != "n/a (a value is not finite)"
