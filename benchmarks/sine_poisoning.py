"""Run MinNorm-OG's data-poisoning benchmark (spec 3.4a, Table 1) on the CPU and write JSON.

Usage:
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/sine_poisoning.py OUT.json \
        [--cache DIR] [--seeds 1-10] [--budgets 10,100,1000] [--original-epochs 100000] [--hidden 300] \
        [--grid full|full-cpu|default|reduced]

The JSON holds one row per (method, T): median, central range (3rd..8th smallest of 10), mean,
the per-seed values, the selected hyperparameters and the paper's median, plus the settings and
timings of the run. ``--cache`` keeps the trained originals (~100 s each at 100,000 epochs).
Every scored hyperparameter candidate is appended to ``OUT.journal.jsonl`` as it finishes; a rerun
with the same seeds and originals reads those back and computes only the missing ones (any grid:
candidates are keyed by T, method and hyperparameters; a journal of other settings is started over).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

from unlearnkit.checkpoint import atomic_write_bytes
from unlearnkit.suites.sine_poisoning import (
    EPOCH_BUDGETS,
    METHODS,
    SEEDS,
    SINE_GRIDS,
    original_model,
    run_sine_benchmark,
)
from unlearnkit.suites.trials import TrialJournal
from unlearnkit.tasks.sine import HIDDEN, ORIGINAL_EPOCHS


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"1-10"`` or ``"1,2,5"``."""
    if "-" in text:
        first, last = (int(v) for v in text.split("-"))
        return tuple(range(first, last + 1))
    return tuple(int(v) for v in text.split(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--seeds", type=parse_seeds, default=SEEDS)
    parser.add_argument("--budgets", type=lambda s: tuple(int(v) for v in s.split(",")), default=EPOCH_BUDGETS)
    parser.add_argument("--methods", type=lambda s: tuple(s.split(",")), default=METHODS)
    parser.add_argument("--original-epochs", type=int, default=ORIGINAL_EPOCHS)
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--grid", choices=list(SINE_GRIDS), default="default", help="hyperparameter grid (see the suite module)")
    args = parser.parse_args()

    start = time.perf_counter()
    for seed in args.seeds:  # train (or load) the originals first, timed separately
        original_model(seed, args.original_epochs, args.hidden, args.cache)
    originals_s = time.perf_counter() - start
    journal = TrialJournal(
        args.out.with_suffix(".journal.jsonl"), {"seeds": list(args.seeds), "original_epochs": args.original_epochs, "hidden": args.hidden}
    )
    if journal.entries:
        print(f"resuming: {len(journal.entries)} scored candidates from {journal.path}", flush=True)
    rows = run_sine_benchmark(
        args.seeds,
        args.budgets,
        args.methods,
        original_epochs=args.original_epochs,
        hidden=args.hidden,
        cache_dir=args.cache,
        grid=SINE_GRIDS[args.grid],
        progress=lambda line: print(line, flush=True),
        journal=journal,
    )
    result = {
        "benchmark": "sine data poisoning (spec 3.4a, Table 1)",
        "settings": {
            "seeds": list(args.seeds),
            "budgets": list(args.budgets),
            "original_epochs": args.original_epochs,
            "hidden": args.hidden,
            "grid": args.grid,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(),
        },
        "originals_s": originals_s,
        "total_s": time.perf_counter() - start,
        "rows": [asdict(row) for row in rows],
    }
    atomic_write_bytes(args.out, json.dumps(result, indent=1, default=float).encode())  # a crash keeps the old file
    print(f"wrote {args.out} ({result['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
