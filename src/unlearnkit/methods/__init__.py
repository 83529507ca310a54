"""Unlearning methods: one file per method, registered by name; ``unlearn`` runs any of them."""

from unlearnkit.methods import ft, ga, neggrad_plus, retrain, rl  # noqa: F401  (registers the methods)
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
