"""Train the CIFAR-10 ResNet-18 original model and report images/s, seconds and test accuracy.

Usage (GPU machine, data from ../shared/data copied into .data/):
    PYTHONPATH=src python benchmarks/train_speed.py --data-root .data --out speed.json

The timed span is the training loop alone (data already on the device, CUDA-synchronised at both
ends), as in spec/performance.md; data loading and evaluation are reported separately. The model
is trained through the same ``unlearnkit.train.train`` that trains originals and oracles.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from unlearnkit.bench import environment
from unlearnkit.data import DeviceImages, load_dataset
from unlearnkit.inference import predict
from unlearnkit.models import build_model
from unlearnkit.runtime import resolve_device, to_device
from unlearnkit.train import default_recipe, train


def flip_tta_accuracy(model: torch.nn.Module, test: DeviceImages) -> float:
    """Accuracy of the mean softmax over the image and its mirror (reported beside plain accuracy)."""
    idx = np.arange(len(test))
    plain, _ = predict(model, test, idx)
    mirrored, _ = predict(model, test.mirrored(), idx)
    probs = plain.softmax(1) + mirrored.softmax(1)
    return 100.0 * (probs.argmax(1) == test.labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--label-smoothing", type=float, default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--no-decay-norm-bias", action="store_true", help="exempt 1-D parameters from weight decay")
    parser.add_argument("--no-bf16", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("train_speed.json"))
    args = parser.parse_args()

    device = resolve_device(args.device)
    start = time.perf_counter()
    dataset = load_dataset(args.dataset, args.data_root)
    train_images = DeviceImages(dataset.train, device)
    test_images = DeviceImages(dataset.test, device)
    load_s = time.perf_counter() - start

    recipe = default_recipe(args.dataset)
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "label_smoothing": args.label_smoothing,
    }
    recipe = replace(recipe, **{k: v for k, v in overrides.items() if v is not None}, compile=args.compile, bf16=not args.no_bf16,
        decay_norm_and_bias=not args.no_decay_norm_bias)

    torch.manual_seed(args.seed)
    mean, std = dataset.channel_stats()
    model = to_device(build_model(args.model, dataset.num_classes, dataset.image_shape, mean, std), device)
    stats = train(model, train_images, np.arange(len(dataset.train)), recipe, seed=args.seed, augment=recipe.augment_for(args.dataset))

    eval_start = time.perf_counter()
    logits, _ = predict(model, test_images, np.arange(len(dataset.test)))
    test_acc = 100.0 * (logits.argmax(1) == test_images.labels).float().mean().item()
    eval_s = time.perf_counter() - eval_start
    result = {
        "dataset": args.dataset,
        "source": dataset.source,
        "model": args.model,
        "recipe": asdict(recipe),
        "seed": args.seed,
        "train_seconds": round(stats.time_s, 2),
        "images_per_s": round(stats.images_per_s),
        "test_acc": round(test_acc, 2),
        "test_acc_flip_tta": round(flip_tta_accuracy(model, test_images), 2),
        "eval_seconds": round(eval_s, 3),
        "data_load_seconds": round(load_s, 2),
        "final_train_loss": round(stats.final_loss, 4),
        "environment": environment(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
