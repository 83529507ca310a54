"""Forget requests: turn a dataset and a deletion request into named index sets."""

from unlearnkit.tasks.builders import (
    REQUEST_KINDS,
    class_request,
    index_request,
    make_request,
    random_request,
    register_request,
    resolve_classes,
)
from unlearnkit.tasks.request import DeviceSplits, ForgetRequest, RequestError, check_partition, place

__all__ = [
    "REQUEST_KINDS",
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
