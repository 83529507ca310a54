"""Forget requests: turn a dataset and a deletion request into named index sets (class-wise,
random, explicit indices, and TARF's four hierarchy tasks)."""

from unlearnkit.tasks.builders import (
    REQUEST_KINDS,
    class_request,
    index_request,
    make_request,
    random_request,
    register_request,
    resolve_classes,
)
from unlearnkit.tasks.hierarchy import Hierarchy, attach_hierarchy, builtin_hierarchy, hierarchy_of, with_hierarchy
from unlearnkit.tasks.request import TRUE_REMAINING, DeviceSplits, ForgetRequest, RequestError, check_partition, place
from unlearnkit.tasks.tarf_tasks import TARF_TASKS, tarf_request

__all__ = [
    "REQUEST_KINDS",
    "TARF_TASKS",
    "TRUE_REMAINING",
    "Hierarchy",
    "attach_hierarchy",
    "builtin_hierarchy",
    "hierarchy_of",
    "tarf_request",
    "with_hierarchy",
    "DeviceSplits",
    "ForgetRequest",
    "place",
    "RequestError",
    "check_partition",
    "class_request",
    "index_request",
    "make_request",
    "random_request",
    "register_request",
    "resolve_classes",
]
