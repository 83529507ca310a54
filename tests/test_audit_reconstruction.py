"""Gradient inversion (spec 1.6): it recovers a digit through a small MLP and not some other
digit; the model is attacked in eval mode and left as it was; the image grid is written whole."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import CPU

from unlearnkit.audit.reconstruction import (
    AuditError,
    image_grid_figure,
    invert_gradient,
    reconstruction_audit,
    reconstruction_scores,
    save_image_grid,
)
from unlearnkit.tasks import ForgetRequest, place

STEPS = 150  # enough for > 25 dB on 8x8 digits through the test MLP, about 0.2 s per sample


def _forget_samples(request: ForgetRequest, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    return place(request, CPU).train.gather(request.forget_idx[:count])


def test_inversion_recovers_the_matched_sample_only(original: nn.Module, class_3: ForgetRequest) -> None:
    images, labels = _forget_samples(class_3, 2)
    x_hat = invert_gradient(original, images[:1], labels[:1], steps=STEPS)
    matched = reconstruction_scores(x_hat, images[:1])
    other = reconstruction_scores(x_hat, images[1:2])
    assert matched["psnr"] > 25 and matched["ssim"] > 0.9
    assert other["psnr"] < matched["psnr"] - 10
    assert 0.0 <= x_hat.min() and x_hat.max() <= 1.0


def test_inversion_is_seeded_and_starts_far_from_the_answer(original: nn.Module, class_3: ForgetRequest) -> None:
    images, labels = _forget_samples(class_3, 1)
    start = invert_gradient(original, images, labels, steps=1, lr=0.0)
    assert reconstruction_scores(start, images)["psnr"] < 12
    assert torch.equal(
        invert_gradient(original, images, labels, steps=5, seed=4),
        invert_gradient(original, images, labels, steps=5, seed=4),
    )


def test_inversion_uses_eval_mode_and_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).train()
    running_mean = model[2].running_mean.clone()
    x, y = torch.rand(1, 1, 4, 4), torch.tensor([1])
    # BatchNorm1d refuses a batch of one in train mode, so this only runs in eval mode.
    invert_gradient(model, x, y, steps=3)
    assert model.training
    assert torch.equal(model[2].running_mean, running_mean)
    assert all(p.grad is None for p in model.parameters())


def test_scores_are_perfect_for_identical_images_and_checked_for_shape() -> None:
    images = torch.rand(2, 1, 8, 8)
    scores = reconstruction_scores(images, images)
    assert scores["psnr"] == float("inf") and scores["ssim"] == pytest.approx(1.0)
    with pytest.raises(AuditError, match="shape"):
        reconstruction_scores(images, images[:1])


def test_audit_scores_each_model_on_the_same_samples(original: nn.Module, class_3: ForgetRequest) -> None:
    images, labels = _forget_samples(class_3, 2)
    dead = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    nn.init.zeros_(dead[1].weight)  # gradient w.r.t. the weight is (p - y) x^T: still reveals x
    blind = _ConstantOutput()
    scores, recon = reconstruction_audit(
        {"original": original, "linear": dead, "blind": blind}, images, labels, steps=STEPS
    )
    assert set(scores) == set(recon) == {"original", "linear", "blind"}
    assert recon["original"].shape == images.shape
    assert scores["original"]["psnr"] > 25 and scores["linear"]["psnr"] > 25
    assert scores["blind"]["psnr"] < scores["original"]["psnr"] - 10


class _ConstantOutput(nn.Module):
    """Logits that ignore the input: its parameter gradient reveals nothing about the image."""

    def __init__(self):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1) + 0.0 * x.sum()


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_grid_has_a_panel_per_sample_and_column(tmp_path: Path) -> None:
    images = torch.rand(3, 1, 8, 8)
    two = save_image_grid(images, {"original": images, "unlearned": images.flip(3)}, tmp_path / "two.png")
    one = save_image_grid(images, {"unlearned": images}, tmp_path / "one.png")
    assert _png_size(two) == (3 * 120, 3 * 120 + 36)
    assert _png_size(one) == (2 * 120, 3 * 120 + 36)
    figure = image_grid_figure(torch.rand(2, 3, 8, 8), {"a": torch.rand(2, 3, 8, 8), "b": torch.rand(2, 3, 8, 8)})
    assert len(figure.axes) == 2 * 3
    assert [ax.get_title() for ax in figure.axes[:3]] == ["true", "a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png", "two.png"]


def test_a_failed_grid_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    images = torch.rand(2, 1, 8, 8)
    target = save_image_grid(images, {"m": images}, tmp_path / "grid.png")
    before = target.read_bytes()

    def broken_savefig(self, stream, **kwargs):
        stream.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        save_image_grid(images, {"m": images.flip(2)}, tmp_path / "grid.png")
    with pytest.raises(OSError, match="disk full"):
        save_image_grid(images, {"m": images}, tmp_path / "new.png")
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]
    assert target.read_bytes() == before


def test_grid_refuses_mismatched_columns(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="column 'm'"):
        save_image_grid(torch.rand(2, 1, 8, 8), {"m": torch.rand(3, 1, 8, 8)}, tmp_path / "g.png")
    assert not any(tmp_path.iterdir())


def test_audit_refuses_empty_inputs(original: nn.Module) -> None:
    with pytest.raises(AuditError, match="no models"):
        reconstruction_audit({}, torch.rand(1, 1, 8, 8), torch.tensor([0]))
    with pytest.raises(AuditError, match="N >= 1"):
        reconstruction_audit({"m": original}, torch.rand(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))
    assert np.isfinite(reconstruction_scores(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))["psnr"])
