"""The colour benchmarks of MinNorm-OG (spec 3.4b label erasure, 3.4c representation collapse).

Renderings, splits and metrics only; training and unlearning are left to a runner (they need a
GPU at CIFAR size). Every rendering starts from the luminance of an image:

- ITU-R BT.601 luma weights ``Y = 0.299 R + 0.587 G + 0.114 B`` [I: S1 uses a grayscale
  conversion whose weights the spec does not record; PIL's ``convert("L")`` and torchvision's
  ``rgb_to_grayscale`` both use these]; a 1-channel image is its own luminance.
- A colour ``(r, g, b)`` renders ``Y`` as the channels ``Y * (r, g, b) / 255``, rounded to uint8.
  Gray = (255, 255, 255) (``Y`` replicated), red = (255, 0, 0) (``Y`` in R only), green =
  (0, 255, 0) (``Y`` in G only) [V-code, spec 3.4b].

Label erasure labels are the pair (content class, colour in {gray 0, red 1, green 2}). To use the
toolkit's one-label datasets they are stored as one joint label ``class * 3 + colour``
(:func:`joint_label`); :func:`two_head_cross_entropy` decodes it for the two-head model
(:mod:`unlearnkit.models.two_head`), and MinNorm-OG's class-balanced subsample over joint labels
of the (all-gray) retain set is balanced over content classes, as S1's first-head rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from unlearnkit.data import ImageData

LUMA_601 = (0.299, 0.587, 0.114)
ERASE_COLOURS = ("gray", "red", "green")
ERASE_RGB = ((255, 255, 255), (255, 0, 0), (0, 255, 0))
GRAY, RED, GREEN = 0, 1, 2
# Spec 3.4c names the ten colours and gives gray = (128, 128, 128); the other values are the
# common (CSS/X11) definitions of those names [I].
PALETTE_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "purple", "gray", "teal")
PALETTE_RGB = (
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (255, 0, 255),
    (0, 255, 255),
    (255, 165, 0),
    (128, 0, 128),
    (128, 128, 128),
    (0, 128, 128),
)


class ColourError(ValueError):
    """A bad argument to the colour benchmarks (a fraction, a colour index, an image shape)."""


# --- renderings -------------------------------------------------------------------------------


def luminance(images: np.ndarray) -> np.ndarray:
    """BT.601 luma of uint8 images ``(N, 3, H, W)`` (or ``(N, 1, H, W)`` as is), float32 ``(N, H, W)`` in [0, 255]."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ColourError(f"images must have shape (N, 1 or 3, H, W); got {images.shape}")
    pixels = images.astype(np.float32)
    if images.shape[1] == 1:
        return pixels[:, 0]
    weights = np.asarray(LUMA_601, dtype=np.float32)
    return np.einsum("nchw,c->nhw", pixels, weights)


def render(luma: np.ndarray, rgb: tuple[int, int, int] | np.ndarray) -> np.ndarray:
    """uint8 RGB images ``(N, 3, H, W)``: ``luma * rgb / 255`` per channel, rounded.

    ``rgb`` is one colour for every image, or an ``(N, 3)`` array of one colour per image.
    """
    colours = np.asarray(rgb, dtype=np.float32)
    if colours.ndim == 1:
        colours = np.broadcast_to(colours, (len(luma), 3))
    if colours.shape != (len(luma), 3):
        raise ColourError(f"rgb must be one (r, g, b) or an ({len(luma)}, 3) array; got shape {colours.shape}")
    channels = luma[:, None, :, :] * (colours[:, :, None, None] / 255.0)
    return np.clip(np.rint(channels), 0, 255).astype(np.uint8)


def erase_copies(images: np.ndarray) -> dict[str, np.ndarray]:
    """The gray, red and green copies of ``images`` (spec 3.4b), keyed by colour name."""
    luma = luminance(images)
    return {name: render(luma, rgb) for name, rgb in zip(ERASE_COLOURS, ERASE_RGB, strict=True)}


def palette_render(images: np.ndarray, colour_idx: np.ndarray) -> np.ndarray:
    """Each image in palette colour ``colour_idx[i]`` (spec 3.4c): luminance scaled by the RGB colour."""
    colour_idx = np.asarray(colour_idx, dtype=np.int64)
    if colour_idx.shape != (len(images),) or (len(colour_idx) and not 0 <= colour_idx.min() <= colour_idx.max() < 10):
        raise ColourError(f"colour_idx must be {len(images)} palette indices in [0, 10); got shape {colour_idx.shape}")
    return render(luminance(images), np.asarray(PALETTE_RGB, dtype=np.float32)[colour_idx])


# --- label erasure (spec 3.4b) ------------------------------------------------------------------


def joint_label(classes: np.ndarray | torch.Tensor, colours: np.ndarray | torch.Tensor, n_colours: int = 3):
    """``class * n_colours + colour``: one integer label holding both heads' targets."""
    return classes * n_colours + colours


def split_joint(labels: torch.Tensor, n_colours: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """``(class, colour)`` of joint labels (the inverse of :func:`joint_label`)."""
    return labels // n_colours, labels % n_colours


def two_head_cross_entropy(output: tuple[torch.Tensor, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """``CE(class head, class) + CE(colour head, colour)`` with joint targets (S1's erasure loss) [V-code].

    The data loss (``Granted.loss``) for the two-head model on erasure data.
    """
    if not isinstance(output, (tuple, list)) or len(output) != 2:
        raise ColourError("two_head_cross_entropy needs the (class_logits, colour_logits) pair of a two-head model")
    classes, colours = split_joint(targets, len(ERASE_COLOURS))
    return F.cross_entropy(output[0], classes) + F.cross_entropy(output[1], colours)


@dataclass(frozen=True)
class ErasureData:
    """Spec 3.4b's training set and test copies.

    ``train`` holds the gray copy of every train image (indices ``retain_idx``) followed by the
    forget copies (``forget_idx``): a fraction ``p_color`` of the red copies and the same fraction
    of the green copies. Labels are joint (:func:`joint_label`); class names ``"cls/colour"``.
    ``test`` maps gray/red/green to the full test set in that colour, with joint labels.
    """

    train: ImageData
    retain_idx: np.ndarray
    forget_idx: np.ndarray
    test: dict[str, ImageData]
    class_names: tuple[str, ...]


def make_erasure_data(train: ImageData, test: ImageData, p_color: float = 0.01, seed: int = 0) -> ErasureData:
    """Gray retain set and the red/green forget copies (spec 3.4b; ``p_color`` 0.01 in the main results).

    ``round(p_color * N)`` train images are drawn for the red copies and, independently, as many
    for the green ones (seeded NumPy draws without replacement) [I: S1 draws its own subsets].
    """
    if not 0 < p_color <= 1:
        raise ColourError(f"p_color (the forgotten fraction of each coloured copy) must lie in (0, 1]; got {p_color}")
    rng = np.random.default_rng(seed)
    n = len(train)
    count = max(1, round(p_color * n))
    red_src, green_src = (np.sort(rng.choice(n, size=count, replace=False)) for _ in range(2))
    copies = erase_copies(train.images)
    images = np.concatenate([copies["gray"], copies["red"][red_src], copies["green"][green_src]])
    classes = np.concatenate([train.labels, train.labels[red_src], train.labels[green_src]])
    colours = np.concatenate([np.full(n, GRAY), np.full(count, RED), np.full(count, GREEN)])
    names = tuple(f"{cls}/{colour}" for cls in train.class_names for colour in ERASE_COLOURS)
    joint_train = ImageData(images, joint_label(classes, colours), names)
    test_copies = {
        name: ImageData(copy, joint_label(test.labels, np.full(len(test), k)), names)
        for k, (name, copy) in enumerate(erase_copies(test.images).items())
    }
    return ErasureData(joint_train, np.arange(n), np.arange(n, n + 2 * count), test_copies, train.class_names)


def retain_quality(class_logits: torch.Tensor, colour_logits: torch.Tensor, classes: torch.Tensor) -> float:
    """Accuracy on gray test images counting a sample only if class **and** colour (gray) are right (spec 3.4b)."""
    right = (class_logits.argmax(1) == classes) & (colour_logits.argmax(1) == GRAY)
    return float(right.float().mean())


def forget_quality_error(colour_logits: list[torch.Tensor] | torch.Tensor) -> float:
    """``mean (p(gray | x) - 1)^2`` over the gray, red and green test copies together (spec 3.4b).

    Give the colour logits of all copies (a list is concatenated); lower is better, 0 is ideal.
    """
    logits = torch.cat(list(colour_logits)) if isinstance(colour_logits, (list, tuple)) else colour_logits
    p_gray = logits.float().softmax(1)[:, GRAY]
    return float(((p_gray - 1) ** 2).mean())


@torch.no_grad()
def erasure_metrics(
    model: torch.nn.Module, test: dict[str, ImageData], device: torch.device, batch_size: int = 1000
) -> dict[str, float]:
    """``retain_quality`` and ``forget_quality_error`` of a two-head model on :attr:`ErasureData.test`."""
    outputs = {name: _two_head_logits(model, split.images, device, batch_size) for name, split in test.items()}
    classes, _ = split_joint(torch.as_tensor(test["gray"].labels), len(ERASE_COLOURS))
    gray_class, gray_colour = outputs["gray"]
    return {
        "retain_quality": retain_quality(gray_class, gray_colour, classes),
        "forget_quality_error": forget_quality_error([colour for _, colour in outputs.values()]),
    }


def _two_head_logits(model: torch.nn.Module, images: np.ndarray, device: torch.device, batch_size: int):
    was_training = model.training
    model.eval()
    pieces = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start : start + batch_size]).to(device).float().div_(255.0)
        pieces.append(tuple(head.float().cpu() for head in model(x)))
    model.train(was_training)
    return tuple(torch.cat(parts) for parts in zip(*pieces, strict=True))


# --- representation collapse (spec 3.4c) --------------------------------------------------------


@dataclass(frozen=True)
class CollapseData:
    """Spec 3.4c's training set: retain (own-colour copies) then forget (off-colour copies).

    Labels are the content classes. ``colours[i]`` is the palette index image ``i`` is drawn in;
    ``source[i]`` the index of the original train image.
    """

    train: ImageData
    retain_idx: np.ndarray
    forget_idx: np.ndarray
    colours: np.ndarray
    source: np.ndarray


def make_collapse_data(train: ImageData, forget_fraction: float = 0.01, seed: int = 0) -> CollapseData:
    """Every image in its class's colour (retain) plus ``forget_fraction`` per class in another colour.

    Spec 3.4c [V-code]: class k has palette colour k; the forget set is 1% of each class (50 per
    CIFAR-10 class) re-rendered in a uniformly random *other* class's colour, keeping the
    content label. ``round(forget_fraction * n_k)`` per class, at least one [I]; seeded NumPy draws.
    """
    classes = train.num_classes
    if not 2 <= classes <= len(PALETTE_RGB):
        raise ColourError(f"the collapse task needs 2 to {len(PALETTE_RGB)} classes (one palette colour each); the data has {classes}")
    if not 0 < forget_fraction <= 1:
        raise ColourError(f"forget_fraction must lie in (0, 1]; got {forget_fraction}")
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in range(train.num_classes):
        members = np.flatnonzero(train.labels == cls)
        if len(members):
            chosen.append(
                np.sort(rng.choice(members, size=max(1, round(forget_fraction * len(members))), replace=False))
            )
    forget_src = np.concatenate(chosen)
    # another class's colour: with fewer than 10 classes the palette's extra colours belong to no class
    shift = rng.integers(1, classes, size=len(forget_src))  # never 0: always another colour
    forget_colours = (train.labels[forget_src] + shift) % classes
    source = np.concatenate([np.arange(len(train)), forget_src])
    colours = np.concatenate([train.labels, forget_colours])
    images = palette_render(train.images[source], colours)
    data = ImageData(images, train.labels[source], train.class_names)
    n = len(train)
    return CollapseData(data, np.arange(n), np.arange(n, len(source)), colours, source)


def collapse_sample_weights(n_retain: int, n_forget: int, p: float = 0.01) -> np.ndarray:
    """The original model's per-sample loss weights (spec 3.4c): retain ``p/(1+p)``, forget ``1/(1+p)``."""
    return np.concatenate([np.full(n_retain, p / (1 + p)), np.full(n_forget, 1 / (1 + p))]).astype(np.float32)


def palette_test_set(test: ImageData) -> ImageData:
    """Every test image in each class colour (the first ``num_classes`` palette colours: all 10 on
    CIFAR-10), labelled by colour index (spec 3.4c's metric set).

    Colour-major order: the first ``len(test)`` images are red, the next green, and so on.
    """
    n, classes = len(test), test.num_classes
    if classes > len(PALETTE_RGB):
        raise ColourError(f"the palette has {len(PALETTE_RGB)} colours; the data has {classes} classes")
    colours = np.repeat(np.arange(classes), n)
    images = palette_render(np.tile(test.images, (classes, 1, 1, 1)), colours)
    return ImageData(images, colours, PALETTE_NAMES[:classes])


def colour_accuracy(logits: torch.Tensor, colours: torch.Tensor) -> float:
    """Fraction of predictions equal to the **colour** index (not the content label; spec 3.4c)."""
    return float((logits.argmax(1) == colours).float().mean())


__all__ = [
    "ERASE_COLOURS",
    "ERASE_RGB",
    "LUMA_601",
    "PALETTE_NAMES",
    "PALETTE_RGB",
    "CollapseData",
    "ColourError",
    "ErasureData",
    "collapse_sample_weights",
    "colour_accuracy",
    "erase_copies",
    "erasure_metrics",
    "forget_quality_error",
    "joint_label",
    "luminance",
    "make_collapse_data",
    "make_erasure_data",
    "palette_render",
    "palette_test_set",
    "render",
    "retain_quality",
    "split_joint",
    "two_head_cross_entropy",
]
