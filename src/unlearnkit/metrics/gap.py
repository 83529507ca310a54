"""Gap to the retrain-from-scratch oracle (TARF definition, spec 7)."""

from __future__ import annotations

from collections.abc import Mapping

GAP_KEYS = ("forget_acc", "retain_acc", "test_acc", "mia")


def gap_to_oracle(metrics: Mapping[str, float], oracle: Mapping[str, float]) -> float:
    """Mean absolute difference to the oracle over UA, RA, TA and MIA, in percentage points.

    UA = 100 - forget accuracy, so ``|UA - UA_r| = |forget_acc - forget_acc_r|``.
    """
    return sum(abs(metrics[key] - oracle[key]) for key in GAP_KEYS) / len(GAP_KEYS)
