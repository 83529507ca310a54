"""Representation-level audits and POUR's summary scores: linear CKA, RUS (spec 2.3) and AUS (spec 2.7)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

Reference = Literal["original", "oracle"]
RUS_EPS = 1e-8  # spec 2.3: added to the harmonic mean's denominator


def _centred64(name: str, values: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A float64 copy of ``values`` (n x d) with zero-mean columns; the caller's tensor is untouched."""
    matrix = torch.as_tensor(values)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n_samples, n_features) matrix; got shape {tuple(matrix.shape)}")
    matrix = matrix.to(torch.float64, copy=True)
    if not torch.isfinite(matrix).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return matrix.sub_(matrix.mean(0, keepdim=True))


def linear_cka(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Linear CKA between two representations of the same ``n`` samples (Kornblith et al. 2019;
    POUR's estimator, spec 2.3) [V-note S3, code form V-code S4].

    ``CKA(X, Y) = ||X^T Y||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred ``X`` (n x d1) and
    ``Y`` (n x d2), in float64 on the inputs' device. The d x d form costs O(n d^2) time and
    O(d^2) extra memory (n = 50,000, d = 512: about 4 s on one CPU thread), never an n x n Gram
    matrix. Each matrix is first scaled to unit Frobenius norm (CKA is scale-free), so the
    products stay O(1) whatever the features' magnitude.

    In [0, 1]; 1 for representations equal up to an orthogonal map and an isotropic scale.
    A constant (zero-variance) representation has no defined CKA: 0.0 is returned, the value the
    usual ``+ 1e-8`` guard gives [I].
    """
    x, y = _centred64("x", x), _centred64("y", y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must describe the same samples: {x.shape[0]} rows vs {y.shape[0]}")
    if x.shape[0] < 2:
        raise ValueError(f"linear CKA needs at least 2 samples; got {x.shape[0]}")
    norm_x, norm_y = torch.linalg.matrix_norm(x), torch.linalg.matrix_norm(y)
    if norm_x == 0 or norm_y == 0:
        return 0.0
    x, y = x.div_(norm_x), y.div_(norm_y)
    cross = torch.linalg.matrix_norm(x.T @ y).square()
    return float(cross / (torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)))


def rus(
    unlearned_forget: torch.Tensor | np.ndarray,
    unlearned_retain: torch.Tensor | np.ndarray,
    reference_forget: torch.Tensor | np.ndarray,
    reference_retain: torch.Tensor | np.ndarray,
    reference: Reference,
) -> float:
    """Representation Unlearning Score (POUR, Le et al. 2025, spec 2.3) [V-note S3, code form V-code S4].

    ``RUS = 2 Phi_f CKA_r / (Phi_f + CKA_r + 1e-8)``, the harmonic mean of a forgetting term and
    the retained representation's alignment ``CKA_r = CKA(Z_r^u, Z_r^ref)``:

    - ``reference="original"`` (RUS^(o)): ``Phi_f = 1 - CKA(Z_f^u, Z_f^o)``, forgetting = moving
      away from the original's forget-set features;
    - ``reference="oracle"`` (RUS^(r)): ``Phi_f = CKA(Z_f^u, Z_f^r)``, forgetting = matching the
      retrained model's forget-set features.

    Arguments are penultimate features (n x d) of the unlearned and the reference model on the
    same train forget samples (``*_forget``) and the same train retain samples (``*_retain``).
    In [0, 1], higher is better. POUR-P leaves the encoder unchanged, hence RUS^(o) = 0 for it
    (reported "-" in POUR's tables).
    """
    if reference not in ("original", "oracle"):
        raise ValueError(f"reference must be 'original' or 'oracle'; got {reference!r}")
    cka_forget = linear_cka(unlearned_forget, reference_forget)
    cka_retain = linear_cka(unlearned_retain, reference_retain)
    forgetting = 1.0 - cka_forget if reference == "original" else cka_forget
    return 2.0 * forgetting * cka_retain / (forgetting + cka_retain + RUS_EPS)


def _fraction(name: str, percent: float) -> float:
    if not (math.isfinite(percent) and 0.0 <= percent <= 100.0):
        raise ValueError(f"{name} must be an accuracy in percent, in [0, 100]; got {percent}")
    return percent / 100.0


def aus(acc_r_original: float, acc_r_unlearned: float, acc_f_unlearned: float) -> float:
    """Adaptive Unlearning Score for class removal (DUCK, Cotogni et al. 2023; POUR form, spec 2.7)
    [V-note S3, checked against POUR's CIFAR-10 table].

    ``AUS = (1 - (Acc_r^orig - Acc_r^unl)) / (1 + Acc_f^unl)`` with accuracies as fractions.
    The arguments are in **percent** (the toolkit's unit) and are divided by 100 here.
    ``acc_r_*``: accuracy on the retained classes' test data; ``acc_f_unlearned``: accuracy on
    the forgotten classes' test data. 1 is ideal (the oracle); it exceeds 1 when unlearning
    raises the retained accuracy.
    """
    original = _fraction("acc_r_original", acc_r_original)
    unlearned = _fraction("acc_r_unlearned", acc_r_unlearned)
    forget = _fraction("acc_f_unlearned", acc_f_unlearned)
    return (1.0 - (original - unlearned)) / (1.0 + forget)


def aus_random(acc_r_original: float, acc_r_unlearned: float, acc_test: float, acc_forget: float) -> float:
    """AUS for random (sample-wise) forgetting (DUCK; form seen in public code, S14) [I for the
    exact arguments].

    ``AUS = (1 - (Acc_r^orig - Acc_r^unl)) / (1 + |Acc_test - Acc_forget|)``, fractions inside,
    arguments in **percent**. A forgotten sample should look like an unseen one, so the
    denominator penalises the gap between the unlearned model's test accuracy and its
    forget-set accuracy, not the forget accuracy itself. In DUCK the retained-accuracy terms are
    test accuracies, so ``acc_r_unlearned`` is usually ``acc_test``.
    """
    original = _fraction("acc_r_original", acc_r_original)
    unlearned = _fraction("acc_r_unlearned", acc_r_unlearned)
    gap = abs(_fraction("acc_test", acc_test) - _fraction("acc_forget", acc_forget))
    return (1.0 - (original - unlearned)) / (1.0 + gap)
