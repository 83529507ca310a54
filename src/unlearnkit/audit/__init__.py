"""Deep-forgetting audits: does the model still hold the forget data, whatever its outputs say?

``Auditor(request, splits, original, oracle).audit(model)`` returns every metric as a flat dict;
``run_audit(...)`` also writes ``audit.json``, ``report.md`` and ``reconstruction.png``. The
building blocks (:mod:`membership`, :mod:`representation`, :mod:`recovery`,
:mod:`reconstruction`) can be used on their own.
"""

from unlearnkit.audit.auditor import AUDIT_METRICS, FAMILIES, AuditConfig, Auditor, metric_residual, residual
from unlearnkit.audit.recovery import AuditError
from unlearnkit.audit.report import markdown_report, run_audit

__all__ = [
    "AUDIT_METRICS",
    "FAMILIES",
    "AuditConfig",
    "AuditError",
    "Auditor",
    "markdown_report",
    "metric_residual",
    "residual",
    "run_audit",
]
