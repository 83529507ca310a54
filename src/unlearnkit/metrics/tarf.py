"""TARF's evaluation (spec 5.6): UA on the given and on the target data, RA and TA on the true
remaining concept, MIA-efficacy, UA-F / UA-R for model mismatch, and both Gaps.

All accuracies use the model's own labels (superclass labels in model and data mismatch, spec
5.6) and are plain accuracies in percent: TARF's tables report UA as the accuracy on the
forgetting data (retrained UA = 0.00 in full/target match), not OPTML's 100 - acc [V-note].

Which forget data enters TARF's UA (and so its Gap) in target and data mismatch is [U] (spec 5.6):
we report both, ``ua_given`` on D_f and ``ua_target`` on D_t, and likewise ``mia_given`` /
``mia_target`` and :func:`tarf_gaps`' ``gap_given`` / ``gap_target``. In full match and model
mismatch D_t = D_f, so each pair agrees.

For a request that is not a TARF task (no true remaining set) every key is NaN, so result rows
keep one shape; the ``accuracy`` and ``mia`` metrics cover those requests.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from unlearnkit.metrics.mia import confidence, shadow_members, svc_attack
from unlearnkit.metrics.outputs import ModelOutputs
from unlearnkit.metrics.registry import register_metric
from unlearnkit.tasks import TARF_TASKS, TRUE_REMAINING, ForgetRequest

TARF_KEYS = ("ua_given", "ua_target", "ra_true", "ta_true", "mia_given", "mia_target", "ua_f", "ua_r")


@register_metric(
    "tarf",
    TARF_KEYS,
    "TARF tasks (spec 5.6): accuracy on D_f (ua_given) and D_t (ua_target), on the true D_r (ra_true) and its "
    "test split (ta_true), MIA-efficacy on D_f / D_t against D_r members, model-mismatch UA-F (D_f) / UA-R (D_ar); "
    "NaN for other requests",
)
def tarf_metrics(outputs: ModelOutputs, request: ForgetRequest) -> dict[str, float]:
    if request.kind not in TARF_TASKS or TRUE_REMAINING not in request.extra_sets:
        return dict.fromkeys(TARF_KEYS, float("nan"))
    given, target = outputs["forget"], outputs["train_target"]
    result = {
        "ua_given": given.accuracy(),
        "ua_target": target.accuracy(),
        "ra_true": outputs[TRUE_REMAINING].accuracy(),
        "ta_true": outputs["test_retain"].accuracy(),  # the true-remaining concept's test split (spec 5.6 [U])
        "ua_f": float("nan"),
        "ua_r": float("nan"),
    }
    result["mia_given"], result["mia_target"] = _mia_pair(outputs, same_data=len(given) == len(target))
    if request.kind == "model-mismatch":  # Table 2: forgotten subclass vs retained sibling subclasses
        result["ua_f"] = given.accuracy()
        result["ua_r"] = outputs["train_affected_remaining"].accuracy()
    return result


def _mia_pair(outputs: ModelOutputs, same_data: bool) -> tuple[float, float]:
    """MIA-efficacy (spec 6.4a) on D_f and on D_t, with the true remaining data as members.

    As :func:`unlearnkit.metrics.mia.mia_efficacy` but with TARF's sets [I]: shadow members are
    ``|test|`` seeded random samples of the true D_r, non-members the true-remaining test split.
    """
    test, remaining = outputs["test_retain"], outputs[TRUE_REMAINING]
    shadow = shadow_members(remaining, len(test))
    members, non_members = confidence(shadow), confidence(test)
    on_given = svc_attack(members, non_members, confidence(outputs["forget"]))
    if same_data:  # D_t = D_f (full match, model mismatch): one fit serves both
        return on_given, on_given
    return on_given, svc_attack(members, non_members, confidence(outputs["train_target"]))


def tarf_gaps(metrics: Mapping[str, float], oracle: Mapping[str, float]) -> dict[str, float]:
    """TARF's Gap (spec 5.6): mean |metric - oracle's| over UA, RA, TA and MIA, in points, once with
    UA and MIA on D_f (``gap_given``) and once on D_t (``gap_target``); NaN where a value is NaN."""
    gaps = {}
    for which in ("given", "target"):
        keys = (f"ua_{which}", "ra_true", "ta_true", f"mia_{which}")
        gaps[f"gap_{which}"] = float(np.mean([abs(metrics[k] - oracle[k]) for k in keys]))
    return gaps
