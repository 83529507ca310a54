"""Run MinNorm-OG's colour benchmarks (spec 3.4b label erasure, 3.4c representation collapse) and write JSON.

Usage:
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/colour_benchmarks.py {erasure,collapse} \
        [--dataset digits] [--root DIR] [--quick] [--seeds 1-3] [--retain-fractions 0.01,0.001] \
        [--budgets 5,10] [--epochs 2] [--original-epochs N --original-step N] [--train-size N] \
        [--test-size N] [--grid quick|reduced|spec] [--methods minnorm-og,retrain] [--cache DIR] [--out OUT.json]

``--quick`` starts from the CPU preset (QUICK_ERASURE / QUICK_COLLAPSE, meant for ``digits``),
otherwise from the spec preset (FULL_*); every other option overrides one preset field. The
JSON (written atomically) holds the settings, the original/GT references and the rows, with the
paper's numbers or findings for comparison. Default output:
``benchmarks/results/cpu-2026-11-24/colour_{benchmark}_{dataset}[_quick].json``.
"""

from __future__ import annotations

import argparse
import platform
from dataclasses import replace
from pathlib import Path

import torch

from unlearnkit.data import load_dataset
from unlearnkit.suites import colour_collapse, colour_erasure

RESULTS = Path(__file__).parent / "results" / "cpu-2026-11-24"
GRIDS = {
    "erasure": {
        "quick": colour_erasure.quick_erasure_grid,
        "reduced": colour_erasure.reduced_erasure_grid,
        "spec": colour_erasure.spec_erasure_grid,
    },
    "collapse": {"quick": colour_collapse.quick_collapse_grid, "spec": colour_collapse.spec_collapse_grid},
}


def numbers(kind: type):
    """An argparse type for a comma-separated list (``"1-5"`` also works for integers)."""

    def parse(text: str) -> tuple:
        if kind is int and "-" in text:
            first, last = (int(v) for v in text.split("-"))
            return tuple(range(first, last + 1))
        return tuple(kind(v) for v in text.split(","))

    return parse


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", choices=("erasure", "collapse"))
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--root", type=Path, default=None, help="dataset files (e.g. .data/fashion-mnist)")
    parser.add_argument("--quick", action="store_true", help="start from the CPU preset instead of the spec one")
    parser.add_argument("--seeds", type=numbers(int))
    parser.add_argument("--retain-fractions", type=numbers(float))
    parser.add_argument("--budgets", type=numbers(int), help="collapse: unlearning epochs T")
    parser.add_argument("--epochs", type=int, help="erasure: unlearning epochs T")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--original-epochs", type=int)
    parser.add_argument("--original-step", type=int, help="StepLR step of the original (and warm start)")
    parser.add_argument("--train-size", type=int)
    parser.add_argument("--test-size", type=int)
    parser.add_argument("--grid", choices=("quick", "reduced", "spec"), help="reduced: erasure only")
    parser.add_argument("--methods", type=lambda s: tuple(s.split(",")))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache", type=Path, default=None, help="keep the trained original/GT models here")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args()


def overrides(args: argparse.Namespace, preset) -> dict:
    """Preset fields replaced by the options given."""
    fields = {
        "seeds": args.seeds,
        "retain_fractions": args.retain_fractions,
        "budgets": args.budgets,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "train_size": args.train_size,
        "test_size": args.test_size,
        "grid": GRIDS[args.benchmark][args.grid] if args.grid else None,
    }
    chosen = {key: value for key, value in fields.items() if value is not None}
    if args.original_epochs or args.original_step:
        recipes = ("original", "warm_start") if args.benchmark == "collapse" else ("original",)
        for name in recipes:
            recipe = getattr(preset, name)
            chosen[name] = replace(
                recipe, epochs=args.original_epochs or recipe.epochs, step_size=args.original_step or recipe.step_size
            )
    return chosen


def main() -> None:
    args = parse_args()
    module = colour_erasure if args.benchmark == "erasure" else colour_collapse
    run = module.run_erasure_benchmark if args.benchmark == "erasure" else module.run_collapse_benchmark
    preset = getattr(module, ("QUICK_" if args.quick else "FULL_") + args.benchmark.upper())
    if args.benchmark == "erasure" and args.budgets or args.benchmark == "collapse" and args.epochs:
        raise SystemExit("--budgets is for collapse, --epochs for erasure")
    if args.grid and args.grid not in GRIDS[args.benchmark]:
        raise SystemExit(f"--grid {args.grid} is not offered for {args.benchmark}; valid: {', '.join(GRIDS[args.benchmark])}")
    out = args.out or RESULTS / f"colour_{args.benchmark}_{args.dataset}{'_quick' if args.quick else ''}.json"
    result = run(
        load_dataset(args.dataset, args.root),
        preset=preset,
        methods=args.methods or module.METHODS,
        device=args.device,
        cache_dir=args.cache,
        progress=lambda line: print(line, flush=True),
        **overrides(args, preset),
    )
    payload = result.to_dict()
    payload["environment"] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }
    colour_erasure.write_json_atomic(out, payload)
    print(f"wrote {out} ({result.time_s:.0f} s)")


if __name__ == "__main__":
    main()
