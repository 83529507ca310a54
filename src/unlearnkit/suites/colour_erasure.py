"""MinNorm-OG's multi-class label-erasure benchmark (spec 3.4b): Pareto fronts of retain quality vs forget error.

The data are gray copies of a dataset's train images (the retain set) plus red and green copies
of a fraction ``p_color`` of them (the forget set), labelled (content class, colour)
(:func:`~unlearnkit.tasks.colour.make_erasure_data`). The original two-head model
(:func:`~unlearnkit.models.two_head.build_two_head`) is trained on all of it with
``CE_class + CE_colour`` (SGD, StepLR, spec 3.4b); the GT reference is the same recipe on gray only.

For each retain-access fraction, method and hyperparameter candidate, every trial (seed)
unlearns from the original with a seeded ``fraction`` of the gray train set and the forget set,
as in-memory tensors through :func:`~unlearnkit.methods.runner.unlearn_tensors` (two-head CE as
the data loss, logits clamped to +-30 [V-code]). A candidate's point is the mean over trials of
(retain quality, forget quality error) (:func:`~unlearnkit.tasks.colour.erasure_metrics`); a
method's result is the **Pareto front** of its candidates' points (:func:`pareto_front`), as the
paper reports (spec 3.4b: "Pareto frontiers over the hyperparameter grid ... no scalar table").

The methods are those of :mod:`~unlearnkit.suites.sine_poisoning`, in S1's forms (spec 3.5):
``minnorm-og``, ``ngd``, ``ridge``; ``gd`` = ``ngd`` with sigma 0 (AdamW on J_r); ``retrain`` =
re-initialise (seeded by the trial) then ``gd``; ``ga``/``ngp`` = AdamW on ``-J_f`` /
``J_r - lambda_GA J_f`` (:func:`~unlearnkit.methods.common.forget_paced_descent`); ``l1-sparse``
with S1's ``(2 - 2t/T) lambda_reg`` schedule (its epoch is one pass over the granted retain data,
the toolkit method's documented deviation). SCRUB, NPO and SalUn are not run [I].

Choices [I]:

- One original (and one forget draw, ``data_seed``) shared by all trials; trials differ in the
  retain subset, batch order and method randomness (S1 trains its CIFAR original once; the spec
  does not say whether the forget draw changes per trial).
- Summary numbers (the paper gives none for this benchmark): per (method, fraction), the
  **hypervolume** of the front (area of the (forget error, retain quality) box [0, 1]^2 that the
  front dominates, reference point (error 1, quality 0); 1 is the ideal (0 error, quality 1)),
  and the front's smallest Euclidean distance to the GT model's point (``distance_to_gt``) and to
  the ideal (``distance_to_ideal``). The paper's claim "MinNorm-OG is closest to GT" reads as
  MinNorm-OG having the smallest ``distance_to_gt`` among the methods other than Retrain.
- A diverged run (non-finite loss) gives a NaN point, which no front contains.
- Time per unlearning epoch is recorded for comparison with Table 3 (:data:`PAPER_ERASURE_RUNTIME`).
- Presets: :data:`FULL_ERASURE` is spec 3.4b's CIFAR setting (p_color 0.01, retain 1% and 0.1%,
  T = 2, batch 256, 5 trials, the spec 3.6 grid, the 100-epoch SGD original) with the small
  ``cnn`` encoder (for fashion-mnist). :data:`QUICK_ERASURE` is a CPU preset for ``digits``
  (8x8 images, which the ``cnn`` handles without upsampling): batch 8, so that the 28 forget
  images give 4 steps per epoch as CIFAR's 1000 forget images at batch 256; retain fractions 5%
  and 1% (72 and 14 gray images, near CIFAR's 500 and 50); a 20-epoch original; a small grid.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from unlearnkit.checkpoint import atomic_write_bytes, cached_fit
from unlearnkit.data import Dataset, ImageData
from unlearnkit.methods.runner import retain_subset
from unlearnkit.models.two_head import build_two_head
from unlearnkit.runtime import cpu_generator, resolve_device, seed_everything
from unlearnkit.suites.s1_family import UNLEARNERS, Trial
from unlearnkit.suites.s1_family import unlearn_trial as s1_unlearn_trial
from unlearnkit.tasks.colour import (
    ERASE_COLOURS,
    ErasureData,
    erasure_metrics,
    make_erasure_data,
    two_head_cross_entropy,
)
from unlearnkit.train import NonFiniteLossError

SEEDS = (1, 2, 3, 4, 5)
METHODS = ("retrain", "minnorm-og", "gd", "ga", "ngp", "ngd", "ridge", "l1-sparse")
Grid = dict[str, list[dict[str, Any]]]

# Spec 3.4b: the paper shows Pareto-frontier figures only (no scalar table); its findings.
PAPER_ERASURE_FINDINGS = {
    "source": "spec 3.4b (S2 label-erasure figures, CIFAR-10 p_color 0.01, p_retain 0.01, T = 2)",
    "minnorm-og": "closest to GT of all methods",
    "retrain": "near-zero forget error but chance-level gray accuracy",
    "gt": "good accuracy, forget error ~0",
}
# Spec 3.7 Table 3: seconds per unlearning epoch, label erasure, Tiny ImageNet, ResNet-50, mean of 5.
PAPER_ERASURE_RUNTIME = {
    "retrain": 0.90,
    "minnorm-og": 0.78,
    "gd": 0.67,
    "ga": 0.68,
    "ngp": 0.74,
    "ngd": 0.69,
    "ridge": 0.68,
    "l1-sparse": 0.69,
    "scrub": 0.96,
    "npo": 0.94,
    "salun": 1.09,
}


@dataclass(frozen=True)
class SGDRecipe:
    """The original model's recipe (spec 3.4b/c): SGD with momentum and weight decay, StepLR."""

    epochs: int = 100
    lr: float = 3e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    step_size: int = 50
    gamma: float = 0.1


def method_grid(
    rates: Sequence[float],
    *,
    lambda_ga: Sequence[float],
    lambda_reg: Sequence[float],
    gamma_reg: Sequence[float],
    sigma: Sequence[float],
    gd_epochs: Sequence[int] = (0,),
) -> Grid:
    """Every method's candidates: the learning rates crossed with each method's own parameters (spec 3.6).

    MinNorm-OG and Ridge share ``lambda_reg`` x ``gamma_reg``; ``l1-sparse`` uses ``lambda_reg``;
    MinNorm-OG has T_proj 1 and n_pert 50 throughout [V-code].
    """
    lr_only = [{"lr": lr} for lr in rates]
    return {
        "retrain": lr_only,
        "gd": lr_only,
        "ga": lr_only,
        "minnorm-og": [
            {"lr": lr, "lambda_reg": lam, "gamma_reg": gam, "gd_epochs": tgd, "proj_period": 1, "n_pert": 50}
            for lr in rates
            for lam in lambda_reg
            if lam <= 1  # MinNorm-OG needs c = lambda_reg <= 1 (S1 drops larger values)
            for gam in gamma_reg
            for tgd in gd_epochs
        ],
        "ngp": [{"lr": lr, "lambda_ga": a} for lr in rates for a in lambda_ga],
        "ngd": [{"lr": lr, "sigma": s} for lr in rates for s in sigma],
        "ridge": [{"lr": lr, "lambda_reg": lam, "gamma_reg": gam} for lr in rates for lam in lambda_reg for gam in gamma_reg],
        "l1-sparse": [{"lr": lr, "lambda_reg": lam} for lr in rates for lam in lambda_reg],
    }


def spec_erasure_grid(epochs: int) -> Grid:
    """Spec 3.6's CIFAR label-erasure grid (T_GD 0, T_proj 1, n_pert 50); ``epochs`` is unused [V-code]."""
    return method_grid(
        (1e-3, 1e-4, 1e-5, 1e-6),
        lambda_ga=(1e-3, 1e-2, 1e-1),
        lambda_reg=(1e-3, 1e-2, 5e-2, 1e-1),
        gamma_reg=(0.2, 0.4, 0.8),
        sigma=(0.1, 1.0, 10.0),
    )


def quick_erasure_grid(epochs: int) -> Grid:
    """A CPU subset of :func:`spec_erasure_grid` [I]: its two largest rates, 2-3 values of each own parameter."""
    return method_grid(
        (1e-3, 1e-4), lambda_ga=(1e-2, 1e-1), lambda_reg=(1e-2, 5e-2, 1e-1), gamma_reg=(0.4, 0.8), sigma=(0.1, 1.0)
    )


def reduced_erasure_grid(epochs: int) -> Grid:
    """:func:`quick_erasure_grid` with MinNorm-OG at lr 1e-3 and gamma_reg 0.8 only (2 candidates) [I].

    For CPU runs on 28x28 data, where MinNorm-OG's per-sample gradient loop (one backward per
    point and head at every projection) costs ~10x a GD run.
    """
    grid = quick_erasure_grid(epochs)
    grid["minnorm-og"] = [hp for hp in grid["minnorm-og"] if hp["lr"] == 1e-3 and hp["gamma_reg"] == 0.8 and hp["lambda_reg"] != 5e-2]
    return grid


@dataclass(frozen=True)
class ErasurePreset:
    """The settings of one erasure run (see the module for the two presets)."""

    seeds: tuple[int, ...] = SEEDS
    retain_fractions: tuple[float, ...] = (0.01, 0.001)
    p_color: float = 0.01
    epochs: int = 2
    batch_size: int = 256
    model: str = "cnn"
    original: SGDRecipe = field(default_factory=SGDRecipe)
    grid: Callable[[int], Grid] = spec_erasure_grid
    train_size: int | None = None
    test_size: int | None = None
    data_seed: int = 0


FULL_ERASURE = ErasurePreset()
QUICK_ERASURE = ErasurePreset(
    seeds=(1, 2, 3),
    retain_fractions=(0.05, 0.01),
    batch_size=8,
    original=SGDRecipe(epochs=20, batch_size=64, step_size=10),
    grid=quick_erasure_grid,
)


# --- pieces shared with the representation-collapse runner ------------------------------------


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated ``(retain_quality, forget_error)`` points, by forget error ascending.

    Retain quality is maximised and forget error minimised. A point is dominated when another is
    at least as good in both and strictly better in one; equal points are all kept. Points
    with a NaN or infinite coordinate are never on the front.
    """
    finite = [i for i, (quality, error) in enumerate(points) if math.isfinite(quality) and math.isfinite(error)]

    def dominated(i: int) -> bool:
        qi, ei = points[i]
        return any(
            points[j][0] >= qi and points[j][1] <= ei and (points[j][0] > qi or points[j][1] < ei) for j in finite
        )

    front = [i for i in finite if not dominated(i)]
    return sorted(front, key=lambda i: (points[i][1], -points[i][0]))


def hypervolume(points: Sequence[tuple[float, float]]) -> float:
    """Area of ``[0, 1]^2`` in (forget error, retain quality) dominated by ``points`` (reference: error 1, quality 0).

    1 is the ideal point (error 0, quality 1); coordinates are clipped to [0, 1]; no finite
    point gives 0.
    """
    front = [(min(max(points[i][1], 0.0), 1.0), min(max(points[i][0], 0.0), 1.0)) for i in pareto_front(points)]
    area = 0.0
    for k, (error, quality) in enumerate(front):
        next_error = front[k + 1][0] if k + 1 < len(front) else 1.0
        area += (next_error - error) * quality
    return area


def train_original(
    model: nn.Module,
    images: np.ndarray,
    loss: Callable[[Any, torch.Tensor], torch.Tensor],
    recipe: SGDRecipe,
    seed: int,
    device: torch.device,
) -> nn.Module:
    """Train ``model`` in place on uint8 ``images`` with ``loss(output, sample indices)`` (SGD + StepLR).

    Batches are seeded shuffles of all samples (the last one may be short); no augmentation
    (S1's colour datasets only recolour and normalise) [V-code]. Raises
    :class:`~unlearnkit.train.NonFiniteLossError` if an epoch's loss is NaN/inf.
    """
    seed_everything(seed)
    generator = cpu_generator(seed)
    pixels = torch.from_numpy(images).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, recipe.step_size, recipe.gamma)
    model.to(device).train()
    for epoch in range(recipe.epochs):
        total = torch.zeros((), device=device)
        for idx in torch.randperm(len(images), generator=generator).split(recipe.batch_size):
            idx = idx.to(device)
            value = loss(model(pixels[idx].float().div_(255.0)), idx)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            total += value.detach()
        schedule.step()
        if not math.isfinite(total.item()):
            raise NonFiniteLossError(f"the original model's loss became NaN/inf in epoch {epoch + 1}; lower lr {recipe.lr}")
    return model.eval()


def split_tensors(data: ImageData, idx: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images / 255, labels)`` of ``data[idx]`` on ``device``."""
    x = torch.from_numpy(data.images[idx]).to(device).float().div_(255.0)
    return x, torch.as_tensor(data.labels[idx], device=device)


def unlearn_trial(method: str, original: nn.Module, trial: Trial, hp: dict[str, Any]) -> nn.Module | None:
    """The unlearned model of ``method`` with hyperparameters ``hp``; None when its loss diverged."""
    return s1_unlearn_trial(method, original, trial, hp, "colour")


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (``std(ddof=1) / sqrt(n)``; 0 for one value) of ``values``."""
    array = np.asarray(values, dtype=np.float64)
    se = float(array.std(ddof=1) / math.sqrt(len(array))) if len(array) > 1 else 0.0
    return float(array.mean()), se


def write_json_atomic(path: str | Path, payload: Any) -> None:
    """Write ``payload`` as JSON to ``path`` atomically (numpy scalars as floats)."""
    atomic_write_bytes(Path(path), json.dumps(payload, indent=1, default=float).encode())


# --- the erasure benchmark ---------------------------------------------------------------------


@dataclass(frozen=True)
class ErasurePoint:
    """One hyperparameter candidate: mean and s.e. over trials of both metrics, and the per-trial values."""

    hparams: dict[str, Any]
    retain_quality: float
    retain_quality_se: float
    forget_error: float
    forget_error_se: float
    retain_values: tuple[float, ...]
    forget_values: tuple[float, ...]


@dataclass(frozen=True)
class ErasureRow:
    """A method at one retain fraction: all candidates' points, the front (indices into points), summaries."""

    method: str
    retain_fraction: float
    epochs: int
    points: list[ErasurePoint]
    front: list[int]
    hypervolume: float
    distance_to_gt: float
    distance_to_ideal: float
    time_per_epoch_s: float
    paper_time_per_epoch_s: float | None


@dataclass
class ErasureResult:
    """Settings, the original and GT reference points, the rows, and the wall time."""

    settings: dict[str, Any]
    references: dict[str, dict[str, float]]
    rows: list[ErasureRow]
    time_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"benchmark": "label erasure (spec 3.4b)", **asdict(self), "paper": PAPER_ERASURE_FINDINGS}


def erasure_model(dataset_shape: tuple[int, int, int], num_classes: int, preset: ErasurePreset, seed: int) -> nn.Module:
    """The two-head model (``preset.model`` encoder, class and 3-way colour heads) on RGB images, seeded."""
    torch.manual_seed(seed)
    return build_two_head(preset.model, num_classes, len(ERASE_COLOURS), (3, *dataset_shape[1:]))


def erasure_original(
    data: ErasureData, preset: ErasurePreset, device: torch.device, cache_dir: Path | None, gray_only: bool = False
) -> nn.Module:
    """The original model (gray + forget copies) or, with ``gray_only``, the GT model; two-head CE (spec 3.4b)."""
    idx = data.retain_idx if gray_only else np.arange(len(data.train))
    images = data.train.images[idx]
    targets = torch.as_tensor(data.train.labels[idx], device=device)
    num_classes = len(data.class_names)
    key = {
        "kind": "erasure-gt" if gray_only else "erasure-original",
        "data": data.train.fingerprint(),
        "model": preset.model,
        "recipe": asdict(preset.original),
        "seed": preset.data_seed,
    }
    return cached_fit(
        erasure_model(images.shape[1:], num_classes, preset, preset.data_seed).to(device),
        lambda m: train_original(
            m, images, lambda out, i: two_head_cross_entropy(out, targets[i]), preset.original, preset.data_seed, device
        ),
        key,
        cache_dir,
    ).to(device)


def erasure_trial(data: ErasureData, fraction: float, seed: int, preset: ErasurePreset, device: torch.device) -> Trial:
    """Trial ``seed``: a seeded ``fraction`` of the gray train set (drawn once per trial) and the forget set."""
    granted = retain_subset(data.retain_idx, fraction, seed)
    return Trial(
        retain=split_tensors(data.train, granted, device),
        forget=split_tensors(data.train, data.forget_idx, device),
        loss=two_head_cross_entropy,
        epochs=preset.epochs,
        batch_size=preset.batch_size,
        seed=seed,
    )


def score_erasure(model: nn.Module | None, data: ErasureData, device: torch.device) -> tuple[float, float]:
    """``(retain_quality, forget_error)`` of an unlearned model; NaN for a diverged run."""
    if model is None:
        return math.nan, math.nan
    metrics = erasure_metrics(model, data.test, device)
    return metrics["retain_quality"], metrics["forget_quality_error"]


def erasure_point(hp: dict[str, Any], scores: Sequence[tuple[float, float]]) -> ErasurePoint:
    """The mean/s.e. summary of one candidate's per-trial ``(retain_quality, forget_error)``."""
    quality, error = zip(*scores, strict=True)
    q_mean, q_se = mean_se(quality)
    e_mean, e_se = mean_se(error)
    return ErasurePoint(dict(hp), q_mean, q_se, e_mean, e_se, tuple(quality), tuple(error))


def erasure_row(
    method: str,
    fraction: float,
    original: nn.Module,
    data: ErasureData,
    trials: Sequence[Trial],
    candidates: list[dict[str, Any]],
    gt_point: tuple[float, float],
) -> ErasureRow:
    """Score every candidate over the trials and summarise the method's Pareto front (time excludes scoring)."""
    elapsed = 0.0

    def scored(hp: dict[str, Any], trial: Trial) -> tuple[float, float]:
        nonlocal elapsed
        start = time.perf_counter()
        model = unlearn_trial(method, original, trial, hp)
        elapsed += time.perf_counter() - start
        return score_erasure(model, data, trial.retain[0].device)

    points = [erasure_point(hp, [scored(hp, t) for t in trials]) for hp in candidates]
    pairs = [(p.retain_quality, p.forget_error) for p in points]
    front = pareto_front(pairs)

    def nearest(target: tuple[float, float]) -> float:
        return min((math.dist(pairs[i], target) for i in front), default=math.nan)

    return ErasureRow(
        method=method,
        retain_fraction=fraction,
        epochs=trials[0].epochs,
        points=points,
        front=front,
        hypervolume=hypervolume(pairs),
        distance_to_gt=nearest(gt_point),
        distance_to_ideal=nearest((1.0, 0.0)),
        time_per_epoch_s=elapsed / max(1, len(candidates) * len(trials) * trials[0].epochs),
        paper_time_per_epoch_s=PAPER_ERASURE_RUNTIME.get(method),
    )


def run_erasure_benchmark(
    dataset: Dataset,
    *,
    quick: bool = False,
    preset: ErasurePreset | None = None,
    methods: Iterable[str] = METHODS,
    device: str | torch.device = "cpu",
    cache_dir: Path | None = None,
    out_json: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    **overrides: Any,
) -> ErasureResult:
    """Spec 3.4b end to end on ``dataset`` (any toolkit dataset: ``digits``, ``fashion-mnist``, ``cifar10``).

    ``preset`` (default :data:`QUICK_ERASURE` with ``quick``, else :data:`FULL_ERASURE`) with
    ``overrides`` of its fields (``seeds``, ``retain_fractions``, ``epochs``, ``grid``, ``model``,
    ``original``, ``train_size``...). Returns (and with ``out_json`` writes) the rows per
    (fraction, method) and the original/GT reference points. ``cache_dir`` keeps both trained models.
    """
    start = time.perf_counter()
    preset = replace(preset or (QUICK_ERASURE if quick else FULL_ERASURE), **overrides)
    device = resolve_device(device)
    dataset = dataset.subset(preset.train_size, preset.test_size, seed=preset.data_seed)
    data = make_erasure_data(dataset.train, dataset.test, preset.p_color, preset.data_seed)
    original = erasure_original(data, preset, device, cache_dir)
    references = {
        name: dict(zip(("retain_quality", "forget_error"), score_erasure(model, data, device), strict=True))
        for name, model in (("original", original), ("gt", erasure_original(data, preset, device, cache_dir, True)))
    }
    gt_point = (references["gt"]["retain_quality"], references["gt"]["forget_error"])
    _report(progress, f"references {references} ({time.perf_counter() - start:.0f} s)")
    grid, rows = preset.grid(preset.epochs), []
    for fraction in preset.retain_fractions:
        trials = [erasure_trial(data, fraction, seed, preset, device) for seed in preset.seeds]
        for method in methods:
            rows.append(erasure_row(method, fraction, original, data, trials, grid.get(method, []), gt_point))
            _report(progress, _describe(rows[-1]))
    settings = {**asdict(preset), "grid": preset.grid.__name__, "dataset": dataset.name, "source": dataset.source}
    result = ErasureResult(settings, references, rows, time.perf_counter() - start)
    if out_json is not None:
        write_json_atomic(out_json, result.to_dict())
    return result


def _report(progress: Callable[[str], None] | None, line: str) -> None:
    if progress is not None:
        progress(line)


def _describe(row: ErasureRow) -> str:
    front = ", ".join(f"({row.points[i].retain_quality:.3f}, {row.points[i].forget_error:.3f})" for i in row.front)
    return (
        f"p_retain={row.retain_fraction} {row.method}: hypervolume {row.hypervolume:.3f}, "
        f"distance to GT {row.distance_to_gt:.3f}; front {front}"
    )


__all__ = [
    "FULL_ERASURE",
    "METHODS",
    "PAPER_ERASURE_FINDINGS",
    "PAPER_ERASURE_RUNTIME",
    "QUICK_ERASURE",
    "SEEDS",
    "UNLEARNERS",
    "ErasurePoint",
    "ErasurePreset",
    "ErasureResult",
    "ErasureRow",
    "SGDRecipe",
    "Trial",
    "erasure_original",
    "erasure_trial",
    "hypervolume",
    "mean_se",
    "method_grid",
    "pareto_front",
    "quick_erasure_grid",
    "reduced_erasure_grid",
    "run_erasure_benchmark",
    "spec_erasure_grid",
    "split_tensors",
    "train_original",
    "unlearn_trial",
    "write_json_atomic",
]
