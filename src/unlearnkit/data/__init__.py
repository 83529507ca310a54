"""Datasets: one in-memory type, registered loaders, device-resident batching."""

from unlearnkit.data.batches import NO_AUGMENT, Augment, DeviceImages
from unlearnkit.data.dataset import DataError, Dataset, ImageData
from unlearnkit.data.registry import (
    DATASETS,
    available_datasets,
    dataset_info,
    default_cache_dir,
    load_dataset,
    register_dataset,
)

__all__ = [
    "DATASETS",
    "NO_AUGMENT",
    "Augment",
    "DataError",
    "Dataset",
    "DeviceImages",
    "ImageData",
    "available_datasets",
    "dataset_info",
    "default_cache_dir",
    "load_dataset",
    "register_dataset",
]
