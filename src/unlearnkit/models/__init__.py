"""Models: a registry of architectures that all expose ``features(x)`` and a linear ``head``."""

from unlearnkit.models import cnn, mlp, resnet  # noqa: F401  (registers the models)
from unlearnkit.models.adapter import ClassifierAdapter, as_classifier, check_protocol, features, head, reinitialize
from unlearnkit.models.layers import Classifier, Normalize
from unlearnkit.models.registry import (
    MODELS,
    ModelError,
    available_models,
    build_from_spec,
    build_model,
    register_model,
)

__all__ = [
    "MODELS",
    "Classifier",
    "ClassifierAdapter",
    "ModelError",
    "Normalize",
    "as_classifier",
    "available_models",
    "build_from_spec",
    "build_model",
    "check_protocol",
    "features",
    "head",
    "reinitialize",
    "register_model",
]
