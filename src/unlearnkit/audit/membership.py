"""Membership-inference audits beyond the default MIA-efficacy: the OPTML feature family (spec
6.4a), the SCRUB-repo entropy attack (spec 6.4b) and POUR's representation-level rMIA (spec 2.7).

Each attack reports a percentage, but the conventions differ (spec 7), so read the key's name:

- ``mia_*`` (OPTML MIA-efficacy): % of D_f called **non-member**; higher = more forgetting.
- ``mia_entropy_lr`` (SCRUB) and ``rmia`` (POUR): % of D_f called **member**; lower = more
  forgetting.

All three judge against the oracle's value, not against 0 or 100: a retrained model is not
"perfectly unlearned" at 100 (or 0) in random forgetting (spec 6.4a).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from unlearnkit.metrics.mia import confidence, shadow_members, svc_attack
from unlearnkit.metrics.outputs import ModelOutputs, SplitOutputs

MEntropyForm = Literal["song_mittal", "optml"]
M_ENTROPY_FORMS = ("song_mittal", "optml")
LOG_FLOOR = 1e-30  # OPTML's floor inside log(); keeps log(0) finite

FeatureFn = Callable[[SplitOutputs], np.ndarray]


# --- per-sample features of a split's softmax (OPTML SVC_MIA, spec 6.4a) ------------------------


def _probs64(split: SplitOutputs) -> torch.Tensor:
    return split.logits.double().softmax(1)


def _safe_log(values: torch.Tensor) -> torch.Tensor:
    return values.clamp_min(LOG_FLOOR).log()


def correctness(split: SplitOutputs) -> np.ndarray:
    """1.0 where the top-1 prediction is the label, else 0.0, as a column [V-code S11]."""
    return (split.logits.argmax(1) == split.labels).double().numpy()[:, None]


def entropy(split: SplitOutputs) -> np.ndarray:
    """Softmax entropy ``-sum_k p_k log p_k`` (0 log 0 = 0), as a column [V-code S11, S13]."""
    probs = _probs64(split)
    terms = torch.where(probs > 0, probs * _safe_log(probs), torch.zeros_like(probs))
    return (-terms.sum(1)).numpy()[:, None]


def modified_entropy(split: SplitOutputs) -> np.ndarray:
    """Song & Mittal's modified entropy (USENIX Security 2021), as a column:
    ``-(1 - p_y) log p_y - sum_{k != y} p_k log(1 - p_k)``.

    Low for a confident correct prediction, high for a confident wrong one; unlike the entropy it
    uses the label. This is the paper's formula, not OPTML's code (see
    :func:`modified_entropy_optml`). Logs are floored at 1e-30 as in OPTML.
    """
    probs = _probs64(split)
    rows = torch.arange(len(split))
    p_true = probs[rows, split.labels]
    others = probs * _safe_log(1.0 - probs)
    others[rows, split.labels] = 0.0
    return (-(1.0 - p_true) * _safe_log(p_true) - others.sum(1)).numpy()[:, None]


def modified_entropy_optml(split: SplitOutputs) -> np.ndarray:
    """OPTML's ``m_entropy`` as coded (S11/S12 ``evaluation/SVC_MIA.py``) [V-code], as a column.

    Two deviations from :func:`modified_entropy` are reproduced (spec 6.4a records the first; the
    second we read in the same OPTML code):

    1. the "reverse" log is ``log p_k``, not ``log(1 - p_k)``;
    2. the label columns are selected with ``[:, labels]`` over the **whole split**, so every row
       weights every class that occurs anywhere in the split by ``1 - p_k`` and the other classes
       by ``p_k``.

    The result is ``-sum_k w_k log p_k`` with ``w_k = 1 - p_k`` for ``k`` in the split's label
    set, else ``p_k``: a label-free quantity that depends on which classes the split contains
    (for a class-wise D_f only the forgotten class; for the shadow splits all the others).
    """
    probs = _probs64(split)
    in_split = torch.zeros(probs.shape[1], dtype=torch.bool)
    in_split[torch.unique(split.labels)] = True
    weights = torch.where(in_split, 1.0 - probs, probs)
    return (-(weights * _safe_log(probs)).sum(1)).numpy()[:, None]


def probabilities(split: SplitOutputs) -> np.ndarray:
    """The full softmax vector, one row per sample [V-code S11]."""
    return _probs64(split).numpy()


def optml_features(m_entropy: MEntropyForm = "song_mittal") -> dict[str, FeatureFn]:
    """The five OPTML features by name, with the chosen form of the modified entropy."""
    if m_entropy not in M_ENTROPY_FORMS:
        raise ValueError(f"m_entropy must be one of {M_ENTROPY_FORMS}; got {m_entropy!r}")
    return {
        "correctness": correctness,
        "confidence": confidence,
        "entropy": entropy,
        "m_entropy": modified_entropy if m_entropy == "song_mittal" else modified_entropy_optml,
        "prob": probabilities,
    }


# --- input checks -------------------------------------------------------------------------------


def _check_split(name: str, split: SplitOutputs) -> None:
    if len(split) == 0:
        raise ValueError(f"the {name!r} split is empty: a membership attack needs samples there")
    if split.logits.ndim != 2 or split.logits.shape[0] != len(split):
        raise ValueError(
            f"the {name!r} split has logits of shape {tuple(split.logits.shape)} for {len(split)} labels; "
            "expected (n_samples, n_classes)"
        )


def _check_outputs(outputs: ModelOutputs, names: tuple[str, ...]) -> None:
    for name in names:
        if name not in outputs.splits:
            raise ValueError(f"the outputs have no {name!r} split; present: {sorted(outputs.splits)}")
        _check_split(name, outputs[name])
    widths = {name: outputs[name].logits.shape[1] for name in names}
    if len(set(widths.values())) > 1:
        raise ValueError(f"the splits disagree on the number of classes: {widths}")


# --- (a) OPTML SVC family -----------------------------------------------------------------------


def optml_mia_family(outputs: ModelOutputs, m_entropy: MEntropyForm = "song_mittal") -> dict[str, float]:
    """OPTML's SVC membership attack with each of its five features (spec 6.4a) [V-code S11/S12].

    Shadow members are ``|test_retain|`` seeded random retain samples
    (:func:`~unlearnkit.metrics.mia.shadow_members`), shadow non-members the ``test_retain``
    split, targets the forget set: exactly :func:`unlearnkit.metrics.mia.mia_efficacy`, whose
    ``mia`` equals ``mia_confidence`` here. For each feature an ``SVC(C=3, gamma='auto', rbf)``
    is fit on the shadow sets; the value is the MIA-efficacy, the % of D_f predicted
    **non-member** (higher = more forgetting; a model that memorised D_f scores well below 50).

    ``m_entropy``: ``"song_mittal"`` (default, the published formula, :func:`modified_entropy`)
    or ``"optml"`` (the quirky formula as coded, :func:`modified_entropy_optml`) [our choice:
    the default measures what the feature is meant to; ``"optml"`` reproduces their numbers].

    Returns ``mia_correctness``, ``mia_confidence``, ``mia_entropy``, ``mia_m_entropy``,
    ``mia_prob`` in percent.
    """
    _check_outputs(outputs, ("forget", "retain", "test_retain"))
    test, retain, forget = outputs["test_retain"], outputs["retain"], outputs["forget"]
    shadow = shadow_members(retain, len(test))
    return {
        f"mia_{name}": svc_attack(feature(shadow), feature(test), feature(forget))
        for name, feature in optml_features(m_entropy).items()
    }


# --- (b) SCRUB-repo entropy attack --------------------------------------------------------------


def _sample(split: SplitOutputs, n_samples: int, rng: np.random.Generator) -> SplitOutputs:
    """Up to ``n_samples`` rows of ``split``, drawn without replacement."""
    if len(split) <= n_samples:
        return split
    rows = torch.as_tensor(np.sort(rng.choice(len(split), n_samples, replace=False)))
    return SplitOutputs(split.logits[rows], split.labels[rows])


def entropy_lr_mia(outputs: ModelOutputs, n_samples: int = 4000, seed: int = 0) -> dict[str, float]:
    """The SCRUB repository's membership attack (Kurmanji et al., NeurIPS 2023; spec 6.4b) [V-code S13].

    Up to ``n_samples`` random samples of each of retain, test (``test_retain``: the retained
    classes' test split for a class-wise request, as for the OPTML attack [I]) and forget; the
    feature is the softmax entropy; a ``LogisticRegression(class_weight='balanced', lbfgs)`` is
    fit on retain (member, 1) vs test (non-member, 0) and predicts the forget samples.

    Returns ``{"mia_entropy_lr": % of D_f predicted MEMBER}``: the opposite direction to the
    OPTML efficacy, **lower = more forgetting** (a memorising model scores well above 50).
    SCRUB passes ``multi_class='multinomial'``, gone from scikit-learn 1.7; for two classes the
    binary logistic model used here gives the same decision rule up to the regularisation's
    scale [I].
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer; got {n_samples}")
    _check_outputs(outputs, ("forget", "retain", "test_retain"))
    rng = np.random.default_rng(seed)
    retain, test, forget = (_sample(outputs[name], n_samples, rng) for name in ("retain", "test_retain", "forget"))
    features = np.concatenate([entropy(retain), entropy(test)])
    members = np.concatenate([np.ones(len(retain)), np.zeros(len(test))])
    attack = LogisticRegression(class_weight="balanced", solver="lbfgs").fit(features, members)
    return {"mia_entropy_lr": 100.0 * float(attack.predict(entropy(forget)).mean())}


# --- (d) POUR representation-level MIA ----------------------------------------------------------


def _as_features(name: str, values: object) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or len(array) == 0:
        raise ValueError(f"{name} must be a non-empty (n_samples, n_features) array; got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _as_labels(name: str, values: object, n_rows: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or len(array) != n_rows:
        raise ValueError(
            f"{name} must be a 1-D array of {n_rows} labels (one per feature row); got shape {array.shape}"
        )
    return array


def _as_forget_mask(values: object, n_train: int) -> np.ndarray:
    mask = np.asarray(values)
    if mask.dtype != np.bool_ or mask.shape != (n_train,):
        raise ValueError(
            f"forget_mask must be a boolean array of shape ({n_train},), one entry per train sample; "
            f"got {mask.dtype} of shape {mask.shape}"
        )
    if not mask.any():
        raise ValueError("forget_mask selects no train sample: there is no forget set to attack")
    return mask


def stratified_subsample(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of ``size`` rows drawn without replacement, each class keeping its share
    (largest-remainder rounding): the size balancing of spec 2.7 step 2."""
    if not 0 < size <= len(labels):
        raise ValueError(f"size must lie in [1, {len(labels)}]; got {size}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / len(labels)
    quota = np.floor(exact).astype(int)
    quota[np.argsort(quota - exact, kind="stable")[: size - quota.sum()]] += 1
    picks = [rng.choice(np.flatnonzero(labels == c), q, replace=False) for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(picks))


def _fold_attack(
    features: np.ndarray, members: np.ndarray, fit_rows: np.ndarray
) -> tuple[StandardScaler, LogisticRegression]:
    scaler = StandardScaler().fit(features[fit_rows])
    attack = LogisticRegression(class_weight="balanced", solver="lbfgs", max_iter=1000)
    return scaler, attack.fit(scaler.transform(features[fit_rows]), members[fit_rows])


def feature_rmia(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    forget_mask: np.ndarray,
    seed: int = 42,
    folds: int = 5,
) -> dict[str, float]:
    """POUR's representation-level MIA (Le et al., arXiv 2511.19339, CVPR 2026; spec 2.7 and 6.4d).

    Protocol as reconstructed by the third-party S4 ``pour_rmia`` [V-code S4, not the official code]:

    1. members = penultimate features of the whole train set, non-members = the test set;
    2. the train set is subsampled to ``|test|`` rows, stratified by class (skipped when
       ``|train| <= |test|``; our sampler, :func:`stratified_subsample`, so the draws differ
       from S4's ``train_test_split``);
    3. the rows are stratified on (class, membership) into ``folds`` shuffled folds (seed ``seed``);
    4. per fold: ``StandardScaler`` fit on the training folds, ``LogisticRegression(
       class_weight='balanced', lbfgs, max_iter=1000)``, prediction of the held-out rows;
    5. ASR = mean over folds of the % of held-out forget samples predicted member.

    Returns ``{"rmia": ASR}``, **lower = more forgetting** (POUR: original 56.7, POUR-D 51.8 on
    CIFAR-10).

    Deviations, both [I]:

    - **Every forget sample is scored.** S4's subsample keeps only a class-proportional share of
      D_f and scores just those. Keeping all of D_f in the subsample instead would over-represent
      its class among members and let the attack learn "class u means member", so the attack's
      training data follow S4, and the forget samples the subsample dropped are added to every
      fold's held-out set: they never trained any fold's attack. No sample is scored by a model
      that saw it.
    - **Any forget set.** POUR's D_f is "train samples of class u"; ``forget_mask`` (boolean,
      one entry per train row) generalises it to any subset, e.g. a random-forgetting request.
      The stratification still uses the class labels only.

    Inputs are CPU arrays (numpy, CPU tensors, anything ``np.asarray`` takes; move CUDA tensors
    to the CPU first); features are used in float64.
    """
    train = _as_features("train_features", train_features)
    test = _as_features("test_features", test_features)
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train and test features differ in width: {train.shape[1]} vs {test.shape[1]}")
    train_y = _as_labels("train_labels", train_labels, len(train))
    test_y = _as_labels("test_labels", test_labels, len(test))
    forget = _as_forget_mask(forget_mask, len(train))
    if folds < 2:
        raise ValueError(f"folds must be at least 2; got {folds}")

    rng = np.random.default_rng(seed)
    kept = np.arange(len(train)) if len(train) <= len(test) else stratified_subsample(train_y, len(test), rng)
    dropped_forget = np.setdiff1d(np.flatnonzero(forget), kept)
    features = np.concatenate([train[kept], test])
    members = np.concatenate([np.ones(len(kept)), np.zeros(len(test))])
    is_forget = np.concatenate([forget[kept], np.zeros(len(test), dtype=bool)])
    _, strata = np.unique(np.stack([np.concatenate([train_y[kept], test_y]), members]), axis=1, return_inverse=True)

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    rates = []
    for fit_rows, held_out in splitter.split(features, strata.ravel()):
        scaler, attack = _fold_attack(features, members, fit_rows)
        targets = np.concatenate([features[held_out[is_forget[held_out]]], train[dropped_forget]])
        if len(targets):
            rates.append(attack.predict(scaler.transform(targets)).mean())
    return {"rmia": 100.0 * float(np.mean(rates))}
