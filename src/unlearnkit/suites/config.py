"""Suite definitions: the YAML files in ``unlearnkit/configs/suites/``, loaded into a typed config.

A suite reproduces one paper's benchmark setting (``unlearnkit bench --suite NAME``). Its file
names the dataset, model, requests, methods and their budgets, seeds, subset sizes, the table
columns (``metrics``) and the paper table to print beside them; a ``quick`` section overrides
any of those so the suite runs on two CPU cores in minutes. Precedence, lowest first: the file,
its ``quick`` section (with ``--quick``), then options given on the command line
(:func:`with_overrides`). Schema: ``docs/suites.md``; every key is checked (:func:`parse_suite`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from unlearnkit.audit import AUDIT_METRICS, FAMILIES, AuditConfig
from unlearnkit.bench import BenchConfig, with_epochs
from unlearnkit.methods import MethodError, get_method, make_params
from unlearnkit.metrics import METRICS
from unlearnkit.suites.paper_tables import PAPER_TABLES
from unlearnkit.train import default_recipe

KINDS = ("bench", "minnorm")
COLOUR_PARTS = ("erasure", "collapse")
EXTRA_ROW_KEYS = ("gap", "gap_given", "gap_target", "time_s")


class SuiteError(ValueError):
    """A suite name, key or value that is not valid; the message lists what is."""


@dataclass(frozen=True)
class SineSettings:
    """MinNorm-OG's data-poisoning part (spec 3.4a): seeds 1..``seeds``, the epoch budgets T,
    the methods, the original model's epochs and width, and the hyperparameter grid."""

    seeds: int = 10
    budgets: tuple[int, ...] = (10, 100, 1000)
    methods: tuple[str, ...] = ("retrain", "minnorm-og", "gd", "ga", "ngp", "ngd", "ridge", "l1-sparse")
    original_epochs: int = 100_000
    hidden: int = 300
    grid: str = "default"


@dataclass(frozen=True)
class SuiteConfig:
    """One suite, resolved (file, then quick section, then command-line overrides).

    ``metrics`` maps a row key to its column header, in table order. ``audit`` lists the audit
    families to run (empty: none); ``hierarchy`` is ``{superclass: [fine class names]}`` for
    TARF tasks on a dataset without a built-in grouping. ``seeds`` is a count: bench seeds
    0..N-1 (for ``kind: minnorm`` it sets ``sine.seeds``, seeds 1..N as the paper).
    """

    name: str
    title: str
    source: str
    dataset: str
    model: str
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    metrics: dict[str, str]
    kind: str = "bench"
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: int = 1
    train_size: int | None = None
    test_size: int | None = None
    epochs: int | None = None
    audit: tuple[str, ...] = ()
    audit_reconstruction: int = 2
    audit_steps: int = 1000
    hierarchy: dict[str, list[str]] | None = None
    data_root: Path | None = None
    paper_table: str | None = None
    sine: SineSettings | None = None
    colour: tuple[str, ...] = ()
    colour_dataset: str = "cifar10"
    notes: tuple[str, ...] = ()
    quick: bool = False
    out: Path | None = None
    device: str = "auto"
    cache_dir: Path | None = None
    save_models: bool = False

    @property
    def out_dir(self) -> Path:
        return self.out or Path("runs/suites") / (f"{self.name}-quick" if self.quick else self.name)

    def bench_config(self) -> BenchConfig:
        """The :class:`~unlearnkit.bench.BenchConfig` of a ``kind: bench`` suite."""
        audit = None
        if self.audit:
            audit = AuditConfig(self.audit, reconstruction_samples=self.audit_reconstruction, reconstruction_steps=self.audit_steps)
        return BenchConfig(
            dataset=self.dataset,
            model=self.model,
            tasks=list(self.tasks),
            methods=list(self.methods),
            seeds=self.seeds,
            out=self.out_dir,
            data_root=self.data_root,
            device=self.device,
            recipe=with_epochs(default_recipe(self.dataset), self.epochs),
            hparams={m: dict(v) for m, v in self.hparams.items()},
            cache_dir=self.cache_dir,
            train_size=self.train_size,
            test_size=self.test_size,
            audit=audit,
            save_models=self.save_models,
            hierarchy=self.hierarchy,
        )


# Keys a suite file may hold (top level) and its quick section may override.
FILE_ONLY_KEYS = ("name", "title", "source", "kind", "paper_table", "notes", "quick")
QUICK_KEYS = (
    "dataset", "data_root", "hierarchy", "model", "tasks", "methods", "hparams", "seeds", "train_size",
    "test_size", "epochs", "metrics", "audit", "audit_reconstruction", "audit_steps", "sine", "colour", "colour_dataset",
)  # fmt: skip
FILE_KEYS = FILE_ONLY_KEYS + QUICK_KEYS
# Keys the command line may override (``unlearnkit bench --suite`` options, by SuiteConfig field).
OVERRIDE_KEYS = (
    "dataset", "data_root", "model", "tasks", "methods", "hparams", "seeds", "train_size", "test_size", "epochs",
    "audit", "audit_reconstruction", "audit_steps", "out", "device", "cache_dir", "save_models",
)  # fmt: skip
# seeds: the sine part's seed count; dataset: the colour parts' data
MINNORM_OVERRIDE_KEYS = ("dataset", "data_root", "seeds", "out", "device", "cache_dir")


def suites_dir() -> Path:
    return Path(str(resources.files("unlearnkit") / "configs" / "suites"))


def suite_names() -> list[str]:
    """The suites shipped with the package (the YAML files' names)."""
    return sorted(p.stem for p in suites_dir().glob("*.yaml"))


def load_suite(name: str, quick: bool = False, path: Path | None = None) -> SuiteConfig:
    """Load the shipped suite ``name`` (or the file ``path``), with its quick section if ``quick``.

    Raises:
        SuiteError: an unknown suite (the message lists the valid ones), an unknown key or a bad value.
    """
    if path is None:
        if name not in suite_names():
            raise SuiteError(f"unknown suite {name!r}; valid suites: {', '.join(suite_names())}")
        path = suites_dir() / f"{name}.yaml"
    raw = yaml.safe_load(Path(path).read_text())
    if not isinstance(raw, dict):
        raise SuiteError(f"{path}: a suite file must be a mapping of keys to values")
    return parse_suite(raw, quick=quick, where=str(path))


def parse_suite(raw: Mapping[str, Any], quick: bool = False, where: str = "suite") -> SuiteConfig:
    """Validate a suite mapping (as read from YAML) and resolve its quick section if ``quick``."""
    _check_keys(raw, FILE_KEYS, where)
    for key in ("name", "title", "source", "dataset", "model"):
        if key not in raw:
            raise SuiteError(f"{where}: the required key {key!r} is missing")
    values = dict(raw)
    quick_section = values.pop("quick", None) or {}
    if not isinstance(quick_section, Mapping):
        raise SuiteError(f"{where}: 'quick' must be a mapping of overrides; got {quick_section!r}")
    _check_keys(quick_section, QUICK_KEYS, f"{where} (quick section)")
    if quick:
        values = _merge(values, quick_section)
    config = _build(values, where)
    return replace(config, quick=quick)


def with_overrides(config: SuiteConfig, overrides: Mapping[str, Any]) -> SuiteConfig:
    """``config`` with command-line values on top (they win over the file and its quick section).

    ``hparams`` merge per method and key; a new ``methods`` list drops the file's hyperparameters
    of methods no longer run; a new ``dataset`` drops the file's ``hierarchy`` (it names the
    file's classes) [I]. For a minnorm suite ``seeds`` sets the sine part's seed count and
    ``dataset`` the colour parts' dataset.
    """
    _check_keys(overrides, OVERRIDE_KEYS, "command-line overrides")
    if config.kind == "minnorm":  # its runners take their own presets: an ignored option would mislead
        ignored = [key for key in overrides if key not in MINNORM_OVERRIDE_KEYS]
        if ignored:
            raise SuiteError(
                f"{config.name}: {', '.join(ignored)} do not apply to the MinNorm-OG suite (its sine and colour runners "
                f"use their own presets); it takes {', '.join(MINNORM_OVERRIDE_KEYS)} (docs/suites.md)"
            )
    changes = dict(overrides)
    if "hparams" in changes:
        changes["hparams"] = _merge_hparams(config.hparams, changes["hparams"])
    if "methods" in changes:
        kept = changes.get("hparams", config.hparams)
        changes["hparams"] = {m: v for m, v in kept.items() if m in changes["methods"]}
        changes["methods"] = tuple(changes["methods"])
    if "tasks" in changes:
        changes["tasks"] = tuple(changes["tasks"])
    if "audit" in changes:
        changes["audit"] = tuple(changes["audit"])
    if "dataset" in changes and changes["dataset"] != config.dataset:
        changes["hierarchy"] = None
    if config.kind == "minnorm" and "seeds" in changes and config.sine is not None:
        changes["sine"] = replace(config.sine, seeds=changes["seeds"])
    if config.kind == "minnorm" and "dataset" in changes:  # the only image data of minnorm: its colour parts
        changes["colour_dataset"] = changes.pop("dataset")
    updated = replace(config, **changes)
    _validate(updated, "command-line overrides")
    return updated


def _merge(base: dict[str, Any], quick: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in quick.items():
        if key == "hparams":
            merged[key] = _merge_hparams(base.get("hparams") or {}, value or {})
        elif key == "sine" and isinstance(value, Mapping) and isinstance(base.get("sine"), Mapping):
            merged[key] = {**base["sine"], **value}
        else:
            merged[key] = value
    return merged


def _merge_hparams(base: Mapping[str, Mapping[str, Any]], extra: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    merged = {m: dict(v) for m, v in base.items()}
    for method, values in extra.items():
        if not isinstance(values, Mapping):
            raise SuiteError(f"hparams.{method} must be a mapping of hyperparameter names to values; got {values!r}")
        merged.setdefault(method, {}).update(values)
    return merged


def _check_keys(raw: Mapping[str, Any], valid: tuple[str, ...], where: str) -> None:
    unknown = [k for k in raw if k not in valid]
    if unknown:
        raise SuiteError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}")


def _build(values: dict[str, Any], where: str) -> SuiteConfig:
    sine = values.get("sine")
    if sine is not None:
        if not isinstance(sine, Mapping):
            raise SuiteError(f"{where}: 'sine' must be a mapping; got {sine!r}")
        valid = tuple(f.name for f in dataclasses.fields(SineSettings))
        _check_keys(sine, valid, f"{where} (sine section)")
        sine = SineSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in sine.items()})
        if "seeds" in values:  # one seed count per suite: the top-level one wins [I]
            sine = replace(sine, seeds=_typed(values, "seeds", int, where))
    config = SuiteConfig(
        name=_typed(values, "name", str, where),
        title=_typed(values, "title", str, where),
        source=_typed(values, "source", str, where),
        kind=_typed(values, "kind", str, where, "bench"),
        dataset=_typed(values, "dataset", str, where),
        model=_typed(values, "model", str, where),
        tasks=tuple(_typed(values, "tasks", list, where, [])),
        methods=tuple(_typed(values, "methods", list, where, [])),
        metrics=dict(_typed(values, "metrics", dict, where, {})),
        hparams={m: dict(v or {}) for m, v in (_typed(values, "hparams", dict, where, {}) or {}).items()},
        seeds=_typed(values, "seeds", int, where, 1),
        train_size=_typed(values, "train_size", int, where, None),
        test_size=_typed(values, "test_size", int, where, None),
        epochs=_typed(values, "epochs", int, where, None),
        audit=tuple(_typed(values, "audit", list, where, [])),
        audit_reconstruction=_typed(values, "audit_reconstruction", int, where, 2),
        audit_steps=_typed(values, "audit_steps", int, where, 1000),
        hierarchy=_typed(values, "hierarchy", dict, where, None),
        data_root=Path(values["data_root"]).expanduser() if values.get("data_root") else None,
        paper_table=_typed(values, "paper_table", str, where, None),
        sine=sine,
        colour=tuple(_typed(values, "colour", list, where, [])),
        colour_dataset=_typed(values, "colour_dataset", str, where, "cifar10"),
        notes=tuple(_typed(values, "notes", list, where, [])),
    )
    _validate(config, where)
    return config


def _typed(values: Mapping[str, Any], key: str, kind: type, where: str, default: Any = ...) -> Any:
    if key not in values or values[key] is None:
        if default is ...:
            raise SuiteError(f"{where}: {key!r} needs a value")
        return default
    value = values[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SuiteError(f"{where}: {key!r} must be a {kind.__name__}; got {value!r}")
    return value


def row_keys() -> list[str]:
    """Every key a benchmark row may hold that a table can show."""
    keys = [k for info in METRICS.values() for k in info.keys]
    return [*keys, *AUDIT_METRICS, *EXTRA_ROW_KEYS]


def _validate(config: SuiteConfig, where: str) -> None:
    """Every value of ``config`` against the registries; raises SuiteError naming what is valid."""
    if config.kind not in KINDS:
        raise SuiteError(f"{where}: kind {config.kind!r} is not one of {', '.join(KINDS)}")
    if config.paper_table is not None and config.paper_table not in PAPER_TABLES:
        raise SuiteError(f"{where}: paper_table {config.paper_table!r} is not one of {', '.join(PAPER_TABLES)}")
    unknown = [k for k in config.metrics if k not in row_keys()]
    if unknown:
        raise SuiteError(f"{where}: metrics {unknown} are not row keys; valid: {', '.join(row_keys())}")
    bad = [f for f in config.audit if f not in FAMILIES]
    if bad:
        raise SuiteError(f"{where}: audit families {bad} are not valid; choose from {', '.join(FAMILIES)}")
    bad = [c for c in config.colour if c not in COLOUR_PARTS]
    if bad:
        raise SuiteError(f"{where}: colour parts {bad} are not valid; choose from {', '.join(COLOUR_PARTS)}")
    for name, value in (("seeds", config.seeds), ("train_size", config.train_size), ("test_size", config.test_size), ("epochs", config.epochs)):
        if value is not None and value < 1:
            raise SuiteError(f"{where}: {name} must be at least 1; got {value}")
    if config.sine is not None:
        _validate_sine(config.sine, where)
    if config.kind == "bench":
        _validate_bench(config, where)


def _validate_bench(config: SuiteConfig, where: str) -> None:
    if not config.tasks or not config.methods or not config.metrics:
        raise SuiteError(f"{where}: a bench suite needs at least one task, one method and one metrics column")
    for method in config.methods:
        try:
            get_method(method)
        except MethodError as err:
            raise SuiteError(f"{where}: {err}") from err
    for method, overrides in config.hparams.items():
        if method not in config.methods:
            raise SuiteError(f"{where}: hparams given for {method!r}, which is not among the methods {list(config.methods)}")
        try:
            make_params(get_method(method), overrides)
        except (MethodError, TypeError) as err:
            raise SuiteError(f"{where}: hparams.{method}: {err}") from err
    if config.hierarchy is not None:
        for superclass, members in config.hierarchy.items():
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                raise SuiteError(f"{where}: hierarchy.{superclass} must be a list of fine class names; got {members!r}")


def _validate_sine(sine: SineSettings, where: str) -> None:
    from unlearnkit.suites.sine_poisoning import SINE_GRIDS, SPEC_GD_EPOCHS, UNLEARNERS

    bad = [m for m in sine.methods if m not in UNLEARNERS]
    if bad:
        raise SuiteError(f"{where}: sine methods {bad} are not valid; choose from {', '.join(UNLEARNERS)}")
    if sine.grid not in SINE_GRIDS:
        raise SuiteError(f"{where}: sine.grid {sine.grid!r} is not one of {', '.join(SINE_GRIDS)}")
    if sine.grid.startswith("full") and not set(sine.budgets) <= set(SPEC_GD_EPOCHS):
        raise SuiteError(
            f"{where}: sine.grid {sine.grid!r} is spec 3.6's grid, defined for budgets {sorted(SPEC_GD_EPOCHS)} only; "
            f"got budgets {list(sine.budgets)} (use grid: default for other budgets)"
        )
    if sine.seeds < 1 or sine.original_epochs < 1 or sine.hidden < 1 or not sine.budgets or min(sine.budgets) < 1:
        raise SuiteError(f"{where}: sine seeds, budgets, original_epochs and hidden must be positive; got {sine}")
