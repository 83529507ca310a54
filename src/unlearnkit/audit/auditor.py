"""Every audit of one forget request, run on any number of models against shared references.

:class:`Auditor` computes what the references need once (the original's and the oracle's
features, the calibration, probe and reconstruction samples) and then audits each model with
:meth:`Auditor.audit`, which returns one flat ``{metric: value}`` dict (the keys of
:data:`AUDIT_METRICS`), ready to be merged into a benchmark row.

The four families (spec 6.4, 2.3, 2.7, 1.5-1.7, 7):

- membership: OPTML's SVC family, the SCRUB entropy + logistic regression attack, POUR's rMIA;
- representation: linear CKA of forget and retain features against the original and the oracle,
  RUS^(o), RUS^(r) and AUS;
- recovery: the training-free feature-map attack and a linear probe on frozen features;
- reconstruction: gradient inversion of a few forget samples (PSNR, SSIM).

None of them has an absolute pass mark: the oracle (retrained without D_f) is the reference
for "forgotten" and the original for "not forgotten"; :func:`residual` says where a model lies
between the two.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from unlearnkit.audit.membership import entropy_lr_mia, feature_rmia, optml_mia_family
from unlearnkit.audit.reconstruction import reconstruction_audit
from unlearnkit.audit.recovery import (
    AuditError,
    default_calibration_split,
    default_probe_split,
    feature_map_attack,
    linear_probe_attack,
)
from unlearnkit.audit.representation import aus, aus_random, linear_cka, rus
from unlearnkit.inference import predict
from unlearnkit.metrics.outputs import ModelOutputs, SplitOutputs
from unlearnkit.models import as_classifier
from unlearnkit.tasks import DeviceSplits, ForgetRequest


@dataclass(frozen=True)
class MetricInfo:
    label: str
    direction: str  # how to read it; "forgetting" = the oracle's side
    family: str
    forgetting: bool = True  # measures what is left of D_f (False: retained utility or a combined score)
    resolution: float = 2.0  # references closer than this cannot be told apart [I]: 2 points for percentages

    @property
    def higher_forgets(self) -> bool | None:
        """True when a higher reading means more forgetting, False when lower does, None when neither."""
        return {_HIGHER: True, _LOWER: False}.get(self.direction)


_HIGHER = "higher = more forgetting"
_LOWER = "lower = more forgetting"
_CLOSER = "closer to the oracle = better"

AUDIT_METRICS: dict[str, MetricInfo] = {
    "mia_correctness": MetricInfo("MIA-eff. (correctness) %", _HIGHER, "membership"),
    "mia_confidence": MetricInfo("MIA-eff. (confidence) %", _HIGHER, "membership"),
    "mia_entropy": MetricInfo("MIA-eff. (entropy) %", _HIGHER, "membership"),
    "mia_m_entropy": MetricInfo("MIA-eff. (modified entropy) %", _HIGHER, "membership"),
    "mia_prob": MetricInfo("MIA-eff. (probabilities) %", _HIGHER, "membership"),
    "mia_entropy_lr": MetricInfo("entropy-LR MIA, % of D_f called member", _LOWER, "membership"),
    "rmia": MetricInfo("feature rMIA, % of D_f called member", _LOWER, "membership"),
    "cka_forget_original": MetricInfo("CKA(D_f features, original)", _LOWER, "representation", resolution=0.02),
    "cka_retain_original": MetricInfo("CKA(D_r features, original)", "higher = retained representation kept", "representation", forgetting=False),
    "rus_o": MetricInfo("RUS^(o)", "higher = better", "representation", forgetting=False),
    # Not a forgetting reading: the oracle's own value is CKA(oracle, oracle) = 1, a reference no other
    # model (not even a second retrain) reaches, so a residual against it would call retrains shallow.
    "cka_forget_oracle": MetricInfo(
        "CKA(D_f features, oracle)", "higher = closer to the oracle (its own reading is 1)", "representation", forgetting=False
    ),
    "cka_retain_oracle": MetricInfo("CKA(D_r features, oracle)", _CLOSER, "representation", forgetting=False),
    "rus_r": MetricInfo("RUS^(r)", "higher = better", "representation", forgetting=False),
    "aus": MetricInfo("AUS", "higher = better (1 = ideal)", "representation", forgetting=False),
    "fm_forget": MetricInfo("feature-map recovery, D_f acc %", _LOWER, "recovery"),
    "fm_test_forget": MetricInfo("feature-map recovery, forget-class test acc %", _LOWER, "recovery"),
    "fm_test_retain": MetricInfo("feature-map recovery, retained test acc %", _CLOSER, "recovery", forgetting=False),
    "probe_forget": MetricInfo("linear-probe recovery, D_f acc %", _LOWER, "recovery"),
    "probe_test_forget": MetricInfo("linear-probe recovery, forget-class test acc %", _LOWER, "recovery"),
    "probe_test_retain": MetricInfo("linear-probe recovery, retained test acc %", _CLOSER, "recovery", forgetting=False),
    "recon_psnr": MetricInfo("gradient-inversion PSNR (dB) on D_f", _LOWER, "reconstruction", resolution=0.5),
    "recon_ssim": MetricInfo("gradient-inversion SSIM on D_f", _LOWER, "reconstruction", resolution=0.02),
}
FAMILIES = ("membership", "representation", "recovery", "reconstruction")


@dataclass(frozen=True)
class AuditConfig:
    """Which audits run and their budgets. Defaults follow the spec where it has one, else [I].

    ``feature_samples``: at most this many forget and retain samples (seeded draw) enter the CKA
    and RUS scores [I] (CKA's cost is O(n d^2); 5,000 keeps a CIFAR-size audit in seconds).
    ``reconstruction_samples``: forget samples inverted per model (0 skips the family; each
    costs ``reconstruction_steps`` forward-backward-backward passes).
    """

    families: tuple[str, ...] = FAMILIES
    feature_samples: int = 5000
    probe_epochs: int = 300
    reconstruction_samples: int = 4
    reconstruction_steps: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        # One family named alone is that family, not a sequence of letters.
        object.__setattr__(self, "families", (self.families,) if isinstance(self.families, str) else tuple(self.families))
        for name in ("feature_samples", "probe_epochs", "reconstruction_samples", "reconstruction_steps", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise AuditError(f"{name} must be a whole number; got {value!r}")
        unknown = set(self.families) - set(FAMILIES)
        if unknown:
            raise AuditError(f"unknown audit families {sorted(unknown)}; choose from {list(FAMILIES)}")
        if not self.families:
            raise AuditError(f"no audit family is left to run; skip fewer of {list(FAMILIES)}")
        for name in ("feature_samples", "probe_epochs", "reconstruction_steps"):
            if getattr(self, name) < 1:
                raise AuditError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.reconstruction_samples < 0:
            raise AuditError(f"reconstruction_samples must be >= 0; got {self.reconstruction_samples}")

    def wants(self, family: str) -> bool:
        if family == "reconstruction":
            return family in self.families and self.reconstruction_samples > 0
        return family in self.families

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _View:
    """One model's logits and penultimate features on the whole train and test splits."""

    train_logits: torch.Tensor
    train_features: torch.Tensor
    test_logits: torch.Tensor
    test_features: torch.Tensor


class Auditor:
    """Audits models that unlearned ``request`` from ``original``, with ``oracle`` as reference.

    Without an oracle, the oracle-referenced scores (``*_oracle``, ``rus_r``) are left out.
    Models must accept the same input as the original (float images in [0, 1]); any classifier
    whose last layer is ``nn.Linear`` is adapted as in :func:`unlearnkit.unlearn`.
    """

    def __init__(
        self,
        request: ForgetRequest,
        splits: DeviceSplits,
        original: nn.Module,
        oracle: nn.Module | None = None,
        config: AuditConfig | None = None,
    ) -> None:
        if len(request.forget_idx) == 0:
            raise AuditError("the request's forget set is empty; there is nothing to audit")
        self.request, self.splits, self.config = request, splits, config or AuditConfig()
        self.original = as_classifier(original)
        self.oracle = as_classifier(oracle) if oracle is not None else None
        rng = np.random.default_rng(self.config.seed)
        self.cka_forget = _draw(request.forget_idx, self.config.feature_samples, rng)
        self.cka_retain = _draw(request.retain_idx, self.config.feature_samples, rng)
        self.recon_idx = np.sort(_draw(request.forget_idx, self.config.reconstruction_samples, rng))
        self.references = {"original": self._view(self.original)}
        if self.oracle is not None:
            self.references["oracle"] = self._view(self.oracle)
        self.original_accuracy = _accuracies(self.references["original"], request, splits)
        # Per-request constants of the attacks, shared by every audited model.
        self.forget_mask = np.zeros(len(splits.train), dtype=bool)
        self.forget_mask[request.forget_idx] = True
        self.train_labels, self.test_labels = splits.train.labels.cpu().numpy(), splits.test.labels.cpu().numpy()
        self.calibration, self.fm_targets = default_calibration_split(request, self.config.seed)
        self.probe_sets, self.probe_targets = default_probe_split(request, self.config.seed)
        self.gallery: dict[str, torch.Tensor] = {}  # name -> reconstructions (CPU), when audit() got a name

    def audit(self, model: nn.Module, name: str | None = None) -> dict[str, float]:
        """Every configured audit of ``model``: a flat dict of the keys of :data:`AUDIT_METRICS`.
        With a ``name``, the model's reconstructions are kept in :attr:`gallery` for an image grid."""
        model = as_classifier(model)
        view = self._view(model)
        result: dict[str, float] = {}
        if self.config.wants("membership"):
            result |= self._membership(view)
        if self.config.wants("representation"):
            result |= self._representation(view)
        if self.config.wants("recovery"):
            result |= self._recovery(model)
        if self.config.wants("reconstruction"):
            scores, images = self.reconstruct({"model": model})
            if name is not None:
                self.gallery[name] = images["model"].cpu()
            result |= {"recon_psnr": scores["model"]["psnr"], "recon_ssim": scores["model"]["ssim"]}
        return result

    def reconstruct(self, models: dict[str, nn.Module]) -> tuple[dict[str, dict[str, float]], dict[str, torch.Tensor]]:
        """Gradient inversion of the audit's forget samples through each named model (paired seeds)."""
        images, labels = self.reconstruction_targets()
        return reconstruction_audit(
            {name: as_classifier(m) for name, m in models.items()},
            images,
            labels,
            self.config.reconstruction_steps,
            seed=self.config.seed,
        )

    def reconstruction_targets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The forget samples the reconstruction attack targets: float images in [0, 1] and labels."""
        return self.splits.train.gather(self.recon_idx)

    # --- families -------------------------------------------------------------------------------

    def _membership(self, view: _View) -> dict[str, float]:
        outputs = _outputs(view, self.request, self.splits)
        result = optml_mia_family(outputs) | entropy_lr_mia(outputs, seed=self.config.seed)
        return result | feature_rmia(
            view.train_features.numpy(), self.train_labels, view.test_features.numpy(), self.test_labels, self.forget_mask, seed=42
        )

    def _representation(self, view: _View) -> dict[str, float]:
        result: dict[str, float] = {}
        for name, reference in self.references.items():
            ours_f, ours_r = view.train_features[self.cka_forget], view.train_features[self.cka_retain]
            ref_f, ref_r = reference.train_features[self.cka_forget], reference.train_features[self.cka_retain]
            result[f"cka_forget_{name}"] = linear_cka(ours_f, ref_f)
            result[f"cka_retain_{name}"] = linear_cka(ours_r, ref_r)
            result["rus_o" if name == "original" else "rus_r"] = rus(ours_f, ours_r, ref_f, ref_r, reference=name)
        return result | {"aus": self._aus(view)}

    def _aus(self, view: _View) -> float:
        ours = _accuracies(view, self.request, self.splits)
        if self.request.forget_classes:
            if math.isnan(ours["test_forget"]):  # no test images of the forgotten classes: Acc_f, so AUS, undefined
                return float("nan")
            return aus(self.original_accuracy["test_retain"], ours["test_retain"], ours["test_forget"])
        return aus_random(self.original_accuracy["test_retain"], ours["test_retain"], ours["test_retain"], ours["forget"])

    def _recovery(self, model: nn.Module) -> dict[str, float]:
        mapped = feature_map_attack(
            model, self.original, self.splits, self.calibration[1], self.fm_targets, calibration_split=self.calibration[0],
            forget_idx=self.request.test_forget_idx,
        )
        probed = linear_probe_attack(model, self.splits, self.probe_sets, self.probe_targets, epochs=self.config.probe_epochs)
        return {f"fm_{k}": v for k, v in mapped.items()} | {f"probe_{k}": v for k, v in probed.items()}

    def _view(self, model: nn.Module) -> _View:
        every_train = np.arange(len(self.splits.train))
        every_test = np.arange(len(self.splits.test))
        train_logits, train_features = predict(model, self.splits.train, every_train, with_features=True)
        test_logits, test_features = predict(model, self.splits.test, every_test, with_features=True)
        return _View(train_logits.cpu(), train_features.cpu(), test_logits.cpu(), test_features.cpu())


def residual(value: float, original: float, oracle: float, min_spread: float = 1e-9, higher_forgets: bool | None = None) -> float:
    """Where ``value`` lies between the oracle (0) and the original (1): the share of the
    original's signal an attack still finds. NaN when the two references (nearly) agree, since
    the attack then cannot tell forgotten from not forgotten at all, and, when the reading
    direction is given, when the oracle reads as *less* forgotten than the original: the
    references then contradict the attack's direction and a share would point the wrong way."""
    spread = original - oracle
    if not all(map(math.isfinite, (value, original, oracle))) or abs(spread) <= min_spread:
        return float("nan")
    if higher_forgets is not None and (spread > 0) == higher_forgets:
        return float("nan")
    return (value - oracle) / spread


def metric_residual(key: str, value: float, original: float, oracle: float) -> float:
    """:func:`residual` of the audit metric ``key`` with its resolution and reading direction."""
    info = AUDIT_METRICS[key]
    return residual(value, original, oracle, min_spread=info.resolution, higher_forgets=info.higher_forgets)


def _draw(indices: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    indices = np.asarray(indices)
    if len(indices) <= size:
        return indices
    return np.sort(rng.choice(indices, size, replace=False))


def _outputs(view: _View, request: ForgetRequest, splits: DeviceSplits) -> ModelOutputs:
    """The four standard splits' outputs, sliced from the full-split logits."""
    train_labels, test_labels = splits.train.labels.cpu(), splits.test.labels.cpu()

    def part(logits: torch.Tensor, labels: torch.Tensor, idx: np.ndarray) -> SplitOutputs:
        rows = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return SplitOutputs(logits[rows], labels[rows])

    return ModelOutputs(
        {
            "forget": part(view.train_logits, train_labels, request.forget_idx),
            "retain": part(view.train_logits, train_labels, request.retain_idx),
            "test_forget": part(view.test_logits, test_labels, request.test_forget_idx),
            "test_retain": part(view.test_logits, test_labels, request.test_retain_idx),
        }
    )


def _accuracies(view: _View, request: ForgetRequest, splits: DeviceSplits) -> dict[str, float]:
    outputs = _outputs(view, request, splits)
    return {name: outputs[name].accuracy() for name in ("forget", "test_forget", "test_retain")}
