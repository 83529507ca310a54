"""The audit report: ``audit.json``, ``report.md`` and ``reconstruction.png`` in one folder.

:func:`run_audit` audits named models (typically ``original``, ``unlearned``, ``oracle``) of
one request and writes the three files atomically; the Markdown table puts every metric beside
its reading direction and, when both references are present, the unlearned model's
:func:`~unlearnkit.audit.auditor.residual` (0 = where the oracle is, 1 = where the original is).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch.nn as nn

from unlearnkit.audit.auditor import AUDIT_METRICS, AuditConfig, Auditor, metric_residual
from unlearnkit.audit.reconstruction import save_image_grid
from unlearnkit.audit.recovery import AuditError
from unlearnkit.checkpoint import atomic_write_bytes, atomic_write_json
from unlearnkit.models import ModelError, as_classifier
from unlearnkit.tasks import DeviceSplits, ForgetRequest
from unlearnkit.tasks.compatibility import check_compatible

SHALLOW_RESIDUAL = 0.5  # an attack that still finds more than half the original's signal flags the model
# [I] How far past 1 (or below 0) a residual must lie to read as beyond the original (past the
# oracle): one run's attack scores are noisy, so 1.05 reads as "at the original", not beyond it.
RESIDUAL_MARGIN = 0.2


def run_audit(
    request: ForgetRequest,
    splits: DeviceSplits,
    models: dict[str, nn.Module],
    out: Path,
    config: AuditConfig | None = None,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Audit every model in ``models`` (must contain ``original``; ``oracle`` is the reference
    when present) and write ``audit.json``, ``report.md`` and, if reconstruction ran,
    ``reconstruction.png`` under ``out``. Returns the JSON document."""
    if "original" not in models:
        raise AuditError("models must include 'original' (the model before unlearning)")
    for name, model in models.items():
        try:
            check_compatible(as_classifier(model), request, splits, trainable=False)
        except ModelError as err:
            raise AuditError(f"the {name} model: {err}") from err
    auditor = Auditor(request, splits, models["original"], models.get("oracle"), config)
    results = {name: auditor.audit(model, name) for name, model in models.items()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = None
    if auditor.gallery:
        images, _ = auditor.reconstruction_targets()
        grid = save_image_grid(images.cpu(), auditor.gallery, out / "reconstruction.png")
    document = {
        "request": request.summary(),
        "config": auditor.config.describe(),
        "context": context or {},
        "models": results,
        "metrics": {k: {"label": v.label, "direction": v.direction, "family": v.family} for k, v in AUDIT_METRICS.items()},
    }
    atomic_write_json(out / "audit.json", document)
    atomic_write_bytes(out / "report.md", markdown_report(document, grid.name if grid else None).encode())
    return document


def markdown_report(document: dict[str, Any], grid_name: str | None = None) -> str:
    """The Markdown report of an ``audit.json`` document."""
    models = document["models"]
    names = list(models)
    lines = [
        "# Unlearning audit",
        "",
        f"Request: {document['request']}",
        "",
        "Read every attack against the references: the oracle (retrained without the forget set) is",
        "what forgotten looks like, the original what not forgotten looks like. *Residual* is where",
        "the unlearned model lies between them (0 = oracle, 1 = original); above",
        f"{SHALLOW_RESIDUAL} the attack still finds most of the original's signal (**shallow**). Above",
        f"{1 + RESIDUAL_MARGIN:g} the unlearned model reads further from the oracle than the original does (**beyond",
        "original**: it moved, but not towards the oracle); below",
        f"{-RESIDUAL_MARGIN:g} it overshoots the oracle (*past oracle*: more forgotten-looking than a retrained",
        "model, which an attacker can notice too). Where the",
        "references differ by less than the metric's resolution (2 points for percentages, 0.02 for",
        "CKA and SSIM, 0.5 dB for PSNR) the attack cannot tell them apart and no residual is given;",
        "nor is one given where the oracle reads as less forgotten than the original (the references",
        "contradict the attack's reading direction). Gradient-inversion scores rest on a few inverted",
        "samples (reconstruction_samples) and vary between runs: read them as a trend, not a verdict.",
        "",
    ]
    lines += _table(models, names)
    if grid_name:
        lines += ["", "## Gradient-inversion reconstructions", "", f"![reconstructions]({grid_name})", ""]
    settings = {k: ", ".join(map(str, v)) if isinstance(v, list | tuple) else v for k, v in document["config"].items()}
    lines += ["", "Audit settings: " + "; ".join(f"{k}: {v}" for k, v in settings.items()), ""]
    return "\n".join(lines)


def _table(models: dict[str, dict[str, float]], names: list[str]) -> list[str]:
    with_residual = {"unlearned", "original", "oracle"} <= set(names)
    header = "| family | metric | " + " | ".join(names) + (" | residual |" if with_residual else " |") + " reading |"
    lines = [header, "|" + "---|" * (len(names) + 3 + with_residual)]
    for key, info in AUDIT_METRICS.items():
        values = [models[n].get(key) for n in names]
        if all(v is None for v in values):
            continue
        row = f"| {info.family} | {info.label} | " + " | ".join(_fmt(v) for v in values)
        if with_residual:
            row += " | " + (_residual_cell(models, key) if info.forgetting else "-")
        lines.append(row + f" | {info.direction} |")
    return lines


def _residual_cell(models: dict[str, dict[str, float]], key: str) -> str:
    values = [models[n].get(key) for n in ("unlearned", "original", "oracle")]
    if any(v is None for v in values):
        return "-"
    if not all(math.isfinite(v) for v in values):  # e.g. an exact reconstruction's infinite PSNR
        return "n/a (a value is not finite)"
    share = metric_residual(key, *values)
    if math.isnan(share):
        return "n/a (references too close or reversed)"
    return residual_text(share)


def residual_reading(share: float, shallow: float = SHALLOW_RESIDUAL, margin: float = RESIDUAL_MARGIN) -> str | None:
    """How to read a residual: ``"beyond original"`` above ``1 + margin`` (further from the oracle
    than the original is), ``"shallow"`` above ``shallow``, ``"past oracle"`` below ``-margin``
    (overshoots the oracle), else None (near the oracle, or undefined)."""
    if math.isnan(share):
        return None
    if share > 1 + margin:
        return "beyond original"
    if share > shallow:
        return "shallow"
    return "past oracle" if share < -margin else None


def residual_text(share: float) -> str:
    """A residual with its reading, as in the audit report: ``1.73 **beyond original**``."""
    reading = residual_reading(share)
    if reading is None:
        return "n/a" if math.isnan(share) else f"{share:.2f}"
    return f"{share:.2f} " + (f"*{reading}*" if reading == "past oracle" else f"**{reading}**")


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
