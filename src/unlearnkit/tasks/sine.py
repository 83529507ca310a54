"""The data-poisoning task of MinNorm-OG (spec 3.4a): fit sin(x), forget five poisoned points.

Everything here is one seed's ingredients: the data, the MLP, the original (poisoned) training
and the sup-norm metric. The unlearning benchmark over seeds, methods and epoch budgets is
:mod:`unlearnkit.suites.sine_poisoning`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnkit.models.layers import Classifier

HALF_WIDTH = 5 * math.pi  # the domain is [-5 pi, 5 pi]; S1's scripts write +-15.708 [V-code]
N_RETAIN = 50
N_FORGET = 5
POISON = 1.5
GRID_POINTS = 1000
HIDDEN = 300
ORIGINAL_EPOCHS = 100_000
ORIGINAL_LR = 1e-3


class SineError(ValueError):
    """A bad argument to the sine task (a size, an epoch count, a width)."""


@dataclass(frozen=True)
class SineData:
    """One seed's data: retain ``(x_r, sin x_r)`` and forget ``(x_f, 1.5)``, each ``(n, 1)`` float32."""

    retain_x: torch.Tensor
    retain_y: torch.Tensor
    forget_x: torch.Tensor
    forget_y: torch.Tensor

    @property
    def train_x(self) -> torch.Tensor:
        """D_r followed by D_f (the original model's training inputs)."""
        return torch.cat([self.retain_x, self.forget_x])

    @property
    def train_y(self) -> torch.Tensor:
        return torch.cat([self.retain_y, self.forget_y])


def make_sine_data(seed: int, n_retain: int = N_RETAIN, n_forget: int = N_FORGET, poison: float = POISON) -> SineData:
    """Spec 3.4a [V-code]: ``x ~ U[-5 pi, 5 pi]``; retain targets ``sin x``, forget targets ``poison``.

    Drawn from a CPU generator seeded with ``seed`` (retain inputs first, then forget inputs), so a
    seed always gives the same data. S1 draws with the global torch generator on its device after
    its ``set_seed`` and initialises the original from the same stream, so the exact points (and
    originals) differ from S1's [V-code: ``experiments/sin/data_module.py``].
    """
    if n_retain < 1 or n_forget < 1:
        raise SineError(f"n_retain and n_forget must be >= 1; got {n_retain} and {n_forget}")
    generator = torch.Generator().manual_seed(seed)
    retain_x = (torch.rand(n_retain, 1, generator=generator) * 2 - 1) * HALF_WIDTH
    forget_x = (torch.rand(n_forget, 1, generator=generator) * 2 - 1) * HALF_WIDTH
    return SineData(retain_x, torch.sin(retain_x), forget_x, torch.full((n_forget, 1), float(poison)))


def sine_mlp(hidden: int = HIDDEN, seed: int | None = None) -> Classifier:
    """The MLP ``1 -> hidden -> hidden -> 1`` with SiLU after the first two layers (spec 3.4a) [V-code].

    A :class:`~unlearnkit.models.Classifier`: ``features`` is the second hidden layer, ``head``
    the final ``Linear(hidden, 1)``. PyTorch's default initialisation, from ``seed`` when given.
    """
    if hidden < 1:
        raise SineError(f"hidden must be >= 1; got {hidden}")
    if seed is not None:
        torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
    return Classifier(encoder, nn.Linear(hidden, 1))


def mse_loss(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The data loss of the sine task: mean squared error (S1's ``nn.MSELoss``) [V-code]."""
    return F.mse_loss(output, targets)


def train_original(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = ORIGINAL_EPOCHS, lr: float = ORIGINAL_LR
) -> float:
    """Full-batch AdamW (PyTorch's default weight decay 0.01) on MSE, in place; returns the final loss.

    Spec 3.4a: the original model takes 100,000 epochs on D_r u D_f, the GT model 50,000 on D_r,
    both at lr 1e-3 [V-code]. One epoch is one step. Cost: about 1 ms per step for the width-300
    MLP on one CPU core (55 points), so 100,000 epochs take ~100 s per seed.
    """
    if epochs < 0:
        raise SineError(f"epochs must be >= 0; got {epochs}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    loss = torch.zeros(())
    for _ in range(epochs):
        loss = mse_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    return float(loss.detach())


def evaluation_grid(points: int = GRID_POINTS) -> torch.Tensor:
    """``points`` equispaced inputs on ``[-5 pi, 5 pi]``, ends included, shape ``(points, 1)``."""
    return torch.linspace(-HALF_WIDTH, HALF_WIDTH, points).unsqueeze(1)


@torch.no_grad()
def sup_norm_error(model: nn.Module, points: int = GRID_POINTS) -> float:
    """``max_x |f(x) - sin x|`` over :func:`evaluation_grid` (spec 3.4a's metric; lower is better)."""
    grid = evaluation_grid(points).to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    error = (model(grid) - torch.sin(grid)).abs().max()
    model.train(was_training)
    return float(error)


__all__ = [
    "SineData",
    "SineError",
    "evaluation_grid",
    "make_sine_data",
    "mse_loss",
    "sine_mlp",
    "sup_norm_error",
    "train_original",
]
