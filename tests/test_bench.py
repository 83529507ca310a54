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
