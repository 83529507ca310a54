"""Linear CKA, RUS and AUS (spec 2.3, 2.7): invariances, controls that must break them, and values
computed by hand or taken from POUR's CIFAR-10 table."""

from __future__ import annotations

import math

import pytest
import torch

from unlearnkit.audit.representation import aus, aus_random, linear_cka, rus

# Four centred rows with orthogonal columns of equal norm: X^T X = 4 I.
SQUARE = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
SQUASHED = SQUARE * torch.tensor([1.0, 0.0])  # CKA(SQUARE, SQUASHED) = 4^2 / (4 sqrt2 * 4) = 1/sqrt2


def _gaussian(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(_gaussian(d, d, seed))
    return q


def _gram_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """The n x n form of spec 2.3: <K, L>_F / (||K|| ||L||) with K, L the centred Gram matrices."""
    n = x.shape[0]
    centring = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k = centring @ (x @ x.T) @ centring
    gram_y = centring @ (y @ y.T) @ centring
    return float((k * gram_y).sum() / (k.norm() * gram_y.norm()))


# --- linear CKA ------------------------------------------------------------------------------------


def test_cka_of_a_representation_with_itself_is_one() -> None:
    x = _gaussian(200, 16, 0)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x.float(), x.float()) == pytest.approx(1.0, abs=1e-12)


def test_cka_hand_computed() -> None:
    assert linear_cka(SQUARE, SQUASHED) == pytest.approx(1.0 / math.sqrt(2.0), abs=1e-12)


def test_cka_matches_the_gram_matrix_form() -> None:
    x, y = _gaussian(60, 7, 1), _gaussian(60, 3, 2) + 0.5 * _gaussian(60, 7, 1)[:, :3]
    assert linear_cka(x, y) == pytest.approx(_gram_cka(x, y), abs=1e-10)
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x), abs=1e-12)


def test_cka_is_invariant_to_orthogonal_maps_isotropic_scaling_and_shifts() -> None:
    x, y = _gaussian(300, 12, 3), _gaussian(300, 12, 4) + _gaussian(300, 12, 3)
    reference = linear_cka(x, y)
    assert linear_cka(x @ _orthogonal(12, 5), y) == pytest.approx(reference, abs=1e-10)
    assert linear_cka(x @ _orthogonal(12, 6), y @ _orthogonal(12, 7)) == pytest.approx(reference, abs=1e-10)
    assert linear_cka(x * 1e-6, y * 3.7e4) == pytest.approx(reference, abs=1e-10)
    assert linear_cka(x + 100.0, y - 5.0) == pytest.approx(reference, abs=1e-10)  # columns are centred
    assert linear_cka(x, x @ _orthogonal(12, 8) * 0.01) == pytest.approx(1.0, abs=1e-10)


def test_cka_is_not_invariant_to_anisotropic_maps() -> None:
    # Control: for X^T X ~ n I and Y = X diag(1..10), CKA ~ sum d^2 / sqrt(10 sum d^4) = 0.765.
    x = _gaussian(5000, 10, 9)
    stretched = x * torch.arange(1.0, 11.0, dtype=torch.float64)
    assert linear_cka(x, stretched) == pytest.approx(0.765, abs=0.02)
    assert linear_cka(x, x @ _gaussian(10, 10, 10)) < 0.95  # a general linear map


def test_cka_of_independent_features_is_small() -> None:
    assert linear_cka(_gaussian(2000, 8, 11), _gaussian(2000, 8, 12)) < 0.05


def test_cka_handles_widths_numpy_and_leaves_inputs_alone() -> None:
    x = _gaussian(50, 5, 13)
    before = x.clone()
    value = linear_cka(x, x[:, :2].numpy())
    assert 0.0 < value < 1.0
    assert torch.equal(x, before)


def test_cka_of_a_constant_representation_is_zero() -> None:
    assert linear_cka(torch.ones(10, 3), _gaussian(10, 3, 14)) == 0.0


def test_cka_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(_gaussian(10, 3, 0), _gaussian(11, 3, 0))
    with pytest.raises(ValueError, match="at least 2 samples"):
        linear_cka(_gaussian(1, 3, 0), _gaussian(1, 3, 0))
    with pytest.raises(ValueError, match="2-D"):
        linear_cka(torch.ones(10), torch.ones(10))
    with pytest.raises(ValueError, match="NaN"):
        linear_cka(torch.full((4, 2), float("nan")), torch.ones(4, 2))


# --- RUS -------------------------------------------------------------------------------------------


def test_rus_hand_computed() -> None:
    # Original reference: Phi_f = 1 - 1/sqrt2, CKA_r = 1; oracle reference: both 1/sqrt2.
    phi = 1.0 - 1.0 / math.sqrt(2.0)
    assert rus(SQUASHED, SQUARE, SQUARE, SQUARE, "original") == pytest.approx(2 * phi / (phi + 1.0), abs=1e-7)
    assert rus(SQUASHED, SQUASHED, SQUARE, SQUARE, "oracle") == pytest.approx(1.0 / math.sqrt(2.0), abs=1e-7)


def test_rus_extremes() -> None:
    forget, retain = _gaussian(100, 6, 20), _gaussian(100, 6, 21)
    # An unchanged encoder has not forgotten anything against the original (POUR-P: "-").
    assert rus(forget, retain, forget, retain, "original") == pytest.approx(0.0, abs=1e-7)
    # Matching the oracle on both sets is perfect.
    assert rus(forget, retain, forget, retain, "oracle") == pytest.approx(1.0, abs=1e-7)
    # Forget features unrelated to the original's, retain features kept: close to 1.
    assert rus(_gaussian(2000, 6, 22), retain, _gaussian(2000, 6, 23), retain, "original") > 0.95


def test_rus_rejects_unknown_reference() -> None:
    with pytest.raises(ValueError, match="reference"):
        rus(SQUARE, SQUARE, SQUARE, SQUARE, "retrained")


# --- AUS -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("acc_r", "acc_f", "expected"),
    [
        (94.47, 95.03, 0.51),  # Original
        (94.68, 0.00, 1.00),  # Retrained
        (86.71, 15.37, 0.80),  # Gradient Ascent
        (85.30, 12.33, 0.81),  # Boundary Shrink
        (88.73, 2.43, 0.92),  # DELETE
        (94.97, 0.00, 1.01),  # POUR-P
    ],
)
def test_aus_reproduces_pour_cifar10_table(acc_r: float, acc_f: float, expected: float) -> None:
    # The table's two decimals, half-up (POUR-P's exact 1.005 is printed 1.01).
    assert aus(94.47, acc_r, acc_f) == pytest.approx(expected, abs=0.005 + 1e-9)


def test_aus_spec_checks() -> None:
    assert aus(94.47, 94.47, 95.03) == pytest.approx(1.0 / 1.9503, abs=1e-12)  # 0.513
    assert aus(94.47, 86.71, 15.37) == pytest.approx((1 - (0.9447 - 0.8671)) / 1.1537, abs=1e-12)  # 0.7995
    assert aus(94.47, 94.97, 0.0) == pytest.approx(1.005, abs=1e-12)


def test_aus_random_hand_computed() -> None:
    assert aus_random(95.0, 93.0, 90.0, 92.0) == pytest.approx(0.98 / 1.02, abs=1e-12)
    assert aus_random(95.0, 95.0, 90.0, 90.0) == pytest.approx(1.0)
    assert aus_random(95.0, 95.0, 90.0, 100.0) == aus_random(95.0, 95.0, 100.0, 90.0)


@pytest.mark.parametrize("bad", [-1.0, 100.5, float("nan")])
def test_aus_rejects_values_outside_percent(bad: float) -> None:
    with pytest.raises(ValueError, match="percent"):
        aus(94.0, bad, 1.0)
    with pytest.raises(ValueError, match="percent"):
        aus_random(94.0, 94.0, 90.0, bad)
