"""Unlearning methods: one file per method, registered by name; ``unlearn`` runs any of them."""

import importlib
import pkgutil

from unlearnkit.methods.base import (
    METHODS,
    Access,
    AccessError,
    Granted,
    LossGuard,
    Method,
    MethodError,
    Split,
    get_method,
    make_params,
    register_method,
)
from unlearnkit.methods.runner import UnlearnRecord, retain_subset, unlearn

_INFRASTRUCTURE = {"base", "common", "runner"}
# One file per method: importing every other module of this package registers all methods.
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _INFRASTRUCTURE and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "METHODS",
    "Access",
    "AccessError",
    "Granted",
    "LossGuard",
    "Method",
    "MethodError",
    "Split",
    "UnlearnRecord",
    "get_method",
    "make_params",
    "register_method",
    "retain_subset",
    "unlearn",
]
