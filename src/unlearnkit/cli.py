"""The command line: parses, calls the API, prints. ``unlearnkit --help`` lists the commands."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from unlearnkit.audit import AUDIT_METRICS, FAMILIES, AuditConfig, AuditError
from unlearnkit.bench import (
    BenchConfig,
    SettingsChangedError,
    check_rows,
    latest_rows,
    read_results,
    refuse_repeats,
    run_bench,
    with_epochs,
)
from unlearnkit.checkpoint import CheckpointError
from unlearnkit.data import DataError, available_datasets, dataset_info
from unlearnkit.methods import METHODS, MethodError
from unlearnkit.metrics import METRICS
from unlearnkit.models import MODELS, ModelError
from unlearnkit.report import (
    AUDIT_COLUMNS,
    COLUMNS,
    markdown_table,
    residual_markdown,
    results_table,
    table_notes,
)
from unlearnkit.tasks import REQUEST_KINDS, RequestError
from unlearnkit.train import NonFiniteLossError, default_recipe

# Plain (click) help: rich help panels cut option names and help text with "…" at 80 columns.
app = typer.Typer(help="Machine unlearning for image classifiers: unlearn, compare, audit.", no_args_is_help=True, rich_markup_mode=None)
console = Console()
if not console.is_terminal:  # logs and pipes: keep table rows on one line instead of 80 columns
    console = Console(width=160)
USER_ERRORS = (DataError, RequestError, MethodError, ModelError, CheckpointError, NonFiniteLossError, AuditError, ValueError)


class DeviceChoice(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def _fail(err: Exception) -> None:
    console.print(f"[bold red]error:[/] {escape(str(err))}", soft_wrap=True)
    raise typer.Exit(code=2)


def _parse_hparams(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["ft.lr=0.1", "ga.epochs=3"]`` -> ``{"ft": {"lr": "0.1"}, "ga": {"epochs": "3"}}``."""
    parsed: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise MethodError(f"--hparam {item!r} must look like METHOD.NAME=VALUE, e.g. ft.lr=0.05")
        if name in parsed.get(method, {}):
            raise MethodError(f"--hparam {method}.{name} is given more than once; give each once")
        parsed.setdefault(method, {})[name] = value
    return parsed


def _method_list(methods: str) -> list[str]:
    """``"ft,ga"`` -> ``["ft", "ga"]``; ``"all"`` -> every registered method (retrain is always the reference row)."""
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise MethodError(f"--methods {methods!r} names no method; give e.g. ft,ga or 'all'")
    refuse_repeats("--methods", names)  # before any folder is made, as the other --methods errors
    if names == ["all"]:
        names = sorted(METHODS)
    return [m for m in names if m not in ("original", "retrain")]


def _writable_dir(path: Path, option: str) -> None:
    """Create ``path``; an OSError (a file in the way, no permission) becomes a user error naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{option} {path} cannot be used as a folder: {err.strerror or err}; give another path") from err


def _run_and_print(config: BenchConfig) -> None:
    config.validate()  # before any folder is made
    _writable_dir(Path(config.out), "--out")
    if config.cache_dir is not None:
        _writable_dir(Path(config.cache_dir), "--cache-dir")
    results = Path(config.out) / "results.jsonl"
    try:
        rows = run_bench(config, console)
    except KeyboardInterrupt:  # rows are appended as they finish, so nothing done is lost
        kept = f"finished rows are in {results}" if results.exists() else "no row had finished"
        console.print(f"interrupted; {kept}; rerun the same command to resume", markup=False)
        raise typer.Exit(code=130) from None
    console.print(results_table(rows, title=f"{config.dataset} / {config.model}"))
    _print_notes(rows)
    others = len(latest_rows(read_results(results))) - len(rows)
    if others > 0:
        console.print(f"{others} other rows of {results} (other tasks, methods or seeds) are not shown; "
                      f"`unlearnkit report {config.out}` shows them all", markup=False, soft_wrap=True)
    console.print(f"results: {results}")


def _print_notes(rows: list[dict[str, Any]]) -> None:
    """Failed rows show as dashes and skipped methods are left out of the table; say why under it."""
    for note in table_notes(rows):
        console.print(note, markup=False, soft_wrap=True)


def _os_error(err: OSError) -> ValueError:
    """A file-system error met while running (e.g. disk full), as one line naming the path."""
    return ValueError(f"{err.filename or 'a file'}: {err.strerror or err}")


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn a user error, or a file-system error met while running, into one ``error:`` line (exit 2)."""
    try:
        yield
    except USER_ERRORS as err:
        _fail(err)
    except OSError as err:
        _fail(_os_error(err))


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder for results.jsonl.")] = Path("runs/demo"),
    device: Annotated[DeviceChoice, typer.Option(help="auto, cpu or cuda.")] = DeviceChoice.auto,
) -> None:
    """Forget one digit class with every registered method on the embedded digits data (small CNN)."""
    config = BenchConfig(
        dataset="digits",
        model="cnn",
        tasks=["class:3"],
        methods=[m for m in sorted(METHODS) if m != "retrain"],
        out=out,
        device=device.value,
    )
    with _user_errors():
        try:
            _run_and_print(config)
        except SettingsChangedError:  # rows of an older version or other defaults: the demo's rows are disposable
            previous = out / "results.previous.jsonl"
            (out / "results.jsonl").replace(previous)
            console.print(f"{out} held demo rows made with other settings; they are now in {previous}, starting over", markup=False)
            _run_and_print(config)


@app.command()
def bench(
    dataset: Annotated[str, typer.Option(help="A registered dataset (see `unlearnkit list`).")] = "digits",
    model: Annotated[str, typer.Option(help="A registered model.")] = "cnn",
    task: Annotated[list[str], typer.Option(help="class:NAME[,NAME], random:FRACTION|COUNT, or a TARF task such as target-mismatch:GIVEN[,..]->TARGET (docs/tasks.md); repeatable.")] = ["class:0"],  # noqa: B006
    methods: Annotated[str, typer.Option(help="Comma-separated method names, or 'all' (original and retrain rows are always added).")] = "ft,ga,rl,neggrad+",
    seeds: Annotated[int, typer.Option(min=1, help="Seeds 0..N-1.")] = 1,
    out: Annotated[Path, typer.Option(help="Output folder; results.jsonl is appended and resumed.")] = Path("runs/bench"),
    data_root: Annotated[Path | None, typer.Option(help="Where the dataset files are.")] = None,
    device: Annotated[DeviceChoice, typer.Option(help="auto, cpu or cuda.")] = DeviceChoice.auto,
    epochs: Annotated[int | None, typer.Option(help="Override the epochs of the original/oracle recipe.")] = None,
    hparam: Annotated[list[str], typer.Option(help="METHOD.NAME=VALUE hyperparameter override; repeatable.")] = [],  # noqa: B006
    cache_dir: Annotated[Path | None, typer.Option(help="Checkpoint/data cache (default ~/.cache/unlearnkit).")] = None,
    train_size: Annotated[int | None, typer.Option(help="Use a class-stratified subset of this many training images.")] = None,
    test_size: Annotated[int | None, typer.Option(help="Use a class-stratified subset of this many test images.")] = None,
    audit: Annotated[bool, typer.Option(help="Add the deep-forgetting audits (MIA family, CKA/RUS/AUS, recovery, reconstruction) to every row.")] = False,
    audit_reconstruction: Annotated[int, typer.Option(min=0, help="With --audit: forget samples inverted per model (0: none).")] = 2,
    audit_steps: Annotated[int, typer.Option(min=1, help="With --audit: gradient-inversion steps per sample.")] = 1000,
    save_models: Annotated[bool, typer.Option(help="Keep every model as OUT/models/<task>/seed<N>/<method>.safetensors (for `unlearnkit audit`).")] = False,
    suite: Annotated[str | None, typer.Option(help="Run a shipped suite (tarf, pour, opc, famr, minnorm) and print its paper's table; options given explicitly override its config.")] = None,
    quick: Annotated[bool, typer.Option(help="With --suite: its quick settings (small data, few epochs; minutes on a CPU).")] = False,
    ctx: typer.Context = None,  # type: ignore[assignment]  # typer fills it in; read by --suite
) -> None:
    """Run methods x tasks x seeds, with the original and the retrained oracle as reference rows."""
    if suite is not None or quick:
        return _bench_suite(ctx, suite, quick)
    with _user_errors():
        names = _method_list(methods)
        config = BenchConfig(
            dataset=dataset,
            model=model,
            tasks=list(task),
            methods=names,
            seeds=seeds,
            out=out,
            data_root=data_root,
            device=device.value,
            recipe=with_epochs(default_recipe(dataset), epochs),
            hparams=_parse_hparams(hparam),
            cache_dir=cache_dir,
            train_size=train_size,
            test_size=test_size,
            audit=AuditConfig(reconstruction_samples=audit_reconstruction, reconstruction_steps=audit_steps) if audit else None,
            save_models=save_models,
        )
        if model not in MODELS:
            raise ModelError(f"unknown model {model!r}; registered models: {', '.join(sorted(MODELS))}")
        _run_and_print(config)


def _bench_suite(ctx: typer.Context, name: str | None, quick: bool) -> None:
    """``bench --suite NAME [--quick]``: the suite's config, then every option given on the command line."""
    from unlearnkit.suites.config import load_suite, with_overrides
    from unlearnkit.suites.runner import run_suite

    def given(option: str) -> bool:
        source = ctx.get_parameter_source(option)
        return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")

    params = ctx.params
    convert = {  # bench option -> (suite config field, value)
        "dataset": ("dataset", lambda v: v), "model": ("model", lambda v: v), "task": ("tasks", list),
        "methods": ("methods", _method_list), "seeds": ("seeds", lambda v: v), "out": ("out", lambda v: v),
        "data_root": ("data_root", lambda v: v), "device": ("device", lambda v: v.value),
        "epochs": ("epochs", lambda v: v), "hparam": ("hparams", _parse_hparams), "cache_dir": ("cache_dir", lambda v: v),
        "train_size": ("train_size", lambda v: v), "test_size": ("test_size", lambda v: v),
        "audit": ("audit", lambda v: FAMILIES if v else ()), "audit_reconstruction": ("audit_reconstruction", lambda v: v),
        "audit_steps": ("audit_steps", lambda v: v), "save_models": ("save_models", lambda v: v),
    }  # fmt: skip
    with _user_errors():
        if name is None:
            raise ValueError("--quick needs --suite NAME")
        overrides = {field: fn(params[option]) for option, (field, fn) in convert.items() if given(option)}
        config = with_overrides(load_suite(name, quick=quick), overrides)
        if config.kind == "bench" and config.model not in MODELS:
            raise ModelError(f"unknown model {config.model!r}; registered models: {', '.join(sorted(MODELS))}")
        try:
            run_suite(config, console)
        except KeyboardInterrupt:  # rows and scored candidates are appended as they finish
            console.print(f"interrupted; what had finished is kept in {config.out_dir}; rerun the same command to resume", markup=False)
            raise typer.Exit(code=130) from None


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="A results.jsonl file (or the folder holding it).")],
    markdown: Annotated[bool, typer.Option(help="Print a Markdown table instead of a terminal table.")] = False,
    audit: Annotated[bool, typer.Option(help="Show the audit metrics of a `bench --audit` run instead of the main ones.")] = False,
    residuals: Annotated[bool, typer.Option(help="Where each method lies between its oracle (0) and original (1), per audit attack (Markdown; implies --audit).")] = False,
) -> None:
    """Summarise a results file: mean ± std over seeds per (task, method), the oracle as reference."""
    path = results / "results.jsonl" if results.is_dir() else results
    if not path.exists():
        where = f"{results} holds no results.jsonl" if results.is_dir() else f"{results} does not exist"
        _fail(ValueError(f"{where}; give a results.jsonl or the --out folder of `unlearnkit bench`"))
    try:
        rows = read_results(path)
    except (OSError, UnicodeDecodeError) as err:
        _fail(ValueError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}"))
    if not rows:
        _fail(ValueError(f"no results in {path} (no JSON rows); run `unlearnkit bench --out DIR` first"))
    with _user_errors():
        check_rows(rows, str(path))
    columns = AUDIT_COLUMNS if audit or residuals else COLUMNS
    if (audit or residuals) and not any(key in row for row in rows for key in AUDIT_METRICS):
        wanted = "residuals" if residuals else "an audit table"
        _fail(ValueError(f"{path} has no audit metrics; run `unlearnkit bench ... --audit` to get {wanted}"))
    if residuals:
        print(residual_markdown(rows))
    elif markdown:
        notes = "\n".join(table_notes(rows))
        print(markdown_table(rows, columns) + (f"\n\n{notes}" if notes else ""))
    else:
        console.print(results_table(rows, title=str(path), columns=columns))
        _print_notes(rows)


@app.command()
def audit(
    original: Annotated[Path, typer.Option(help="Checkpoint (.safetensors + .json sidecar) of the model before unlearning.")],
    unlearned: Annotated[Path, typer.Option(help="Checkpoint of the unlearned model.")],
    dataset: Annotated[str, typer.Option(help="The dataset the models were trained on.")],
    task: Annotated[str, typer.Option(help="The forget request that was unlearned, e.g. class:3 or random:0.1.")],
    oracle: Annotated[Path | None, typer.Option(help="Checkpoint of the model retrained without the forget set (reference).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder for audit.json, report.md and reconstruction.png.")] = Path("runs/audit"),
    data_root: Annotated[Path | None, typer.Option(help="Where the dataset files are.")] = None,
    request_seed: Annotated[int, typer.Option(help="Seed of a random request (as given to bench or make_request).")] = 0,
    train_size: Annotated[int | None, typer.Option(help="The class-stratified training subset the models used, if any.")] = None,
    test_size: Annotated[int | None, typer.Option(help="The class-stratified test subset, if any.")] = None,
    skip: Annotated[list[str], typer.Option(help=f"An audit family to skip: {', '.join(FAMILIES)}; repeatable.")] = [],  # noqa: B006
    reconstruction_samples: Annotated[int, typer.Option(min=0, help="Forget samples to invert per model (0: none).")] = 4,
    reconstruction_steps: Annotated[int, typer.Option(min=1, help="Gradient-inversion steps per sample.")] = 1000,
    device: Annotated[DeviceChoice, typer.Option(help="auto, cpu or cuda.")] = DeviceChoice.auto,
) -> None:
    """Audit an unlearned checkpoint against the original (and the oracle): MIA, CKA/RUS, recovery, reconstruction."""
    from unlearnkit.audit.checkpoints import audit_checkpoints

    with _user_errors():
        families = tuple(f for f in FAMILIES if f not in skip)
        if set(skip) - set(FAMILIES):
            raise AuditError(f"--skip {sorted(set(skip) - set(FAMILIES))} is not an audit family; choose from {list(FAMILIES)}")
        config = AuditConfig(families, reconstruction_samples=reconstruction_samples, reconstruction_steps=reconstruction_steps)
        _writable_dir(out, "--out")  # before the audit's work, not after it
        checkpoints = {"original": original, "unlearned": unlearned} | ({"oracle": oracle} if oracle else {})
        document = audit_checkpoints(
            checkpoints, dataset, task, out, config, data_root=data_root, request_seed=request_seed,
            train_size=train_size, test_size=test_size, device=device.value, console=console,
        )
    console.print(f"audited {', '.join(document['models'])}: {out / 'report.md'}")


@app.command("list")
def list_registered() -> None:
    """Show the registered datasets, models, tasks, methods and metrics."""
    table = Table(title="unlearnkit registry", show_lines=False)
    table.add_column("Kind")
    table.add_column("Name")
    table.add_column("Description")
    for name in available_datasets():
        table.add_row("dataset", name, dataset_info(name).description)
    for name, info in sorted(MODELS.items()):
        table.add_row("model", name, info.description)
    for kind, (_, usage) in sorted(REQUEST_KINDS.items()):
        table.add_row("task", kind, usage)
    for name, cls in sorted(METHODS.items()):
        table.add_row("method", name, escape(f"{cls.summary} [needs: {cls.needs.describe()}]"))
    for name, info in sorted(METRICS.items()):
        table.add_row("metric", name, f"{', '.join(info.keys)}: {info.description}")
    # gap and time are columns of a bench row, computed from the oracle's row and the run's clock
    table.add_row("row column", "gap", "mean |Δ| to the retrained oracle over UA, RA, TA, MIA (TARF); in bench rows, not evaluate()")
    table.add_row("row column", "time_s", "wall-clock seconds of the method (training time for original/oracle)")
    console.print(table)


class _PlainFormatter(logging.Formatter):
    """Without ``-v``, an info line is just its message and a warning reads ``warning: ...``, like the CLI's own lines."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {message}"


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s") if verbose else _PlainFormatter("%(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])
    # Decoding or downloading a dataset the first time takes a minute on CIFAR: always say so.
    logging.getLogger("unlearnkit.data").setLevel(logging.INFO)


def _warning_line(message: Warning | str, *_: object, **__: object) -> str:
    # A user of the command line needs the advice, not the library source line that raised it.
    return f"warning: {message}\n"


def main() -> None:
    """The ``unlearnkit`` command: the Typer app, with warnings printed as one ``warning:`` line."""
    warnings.formatwarning = _warning_line  # set here, not on import, so library users keep Python's format
    app(prog_name="unlearnkit")
