#!/usr/bin/env python3
"""Set up ``.venv/`` and run the demo or the tests: the README's two commands.

    python3 scripts/dev.py demo     # create .venv if needed, install, run `unlearnkit demo`
    python3 scripts/dev.py test     # create .venv if needed, install, run the test suite

Only the Python standard library is used here, so it runs on a fresh machine with Python 3.11+.
PyTorch is installed first: a CPU wheel that pip's configured find-links folders already hold is
preferred (no multi-GB CUDA download on CPU-only machines); otherwise pip's default ``torch``.
``UNLEARNKIT_TORCH`` overrides the requirement (e.g. ``torch==2.5.1``).
"""

from __future__ import annotations

import glob
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".unlearnkit-installed"


def run(*cmd: str | Path) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def find_links_dirs() -> list[str]:
    dirs = os.environ.get("PIP_FIND_LINKS", "").split()
    try:
        configured = subprocess.run(
            [str(PYTHON), "-m", "pip", "config", "get", "global.find-links"], capture_output=True, text=True, check=False
        ).stdout.split()
    except OSError:
        configured = []
    return [d.removeprefix("file://") for d in dirs + configured if d and not d.startswith("http")]


def torch_requirement() -> str:
    if os.environ.get("UNLEARNKIT_TORCH"):
        return os.environ["UNLEARNKIT_TORCH"]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    wheels = sorted(w for d in find_links_dirs() for w in glob.glob(os.path.join(d, f"torch-*+cpu-{tag}-*.whl")))
    return wheels[-1] if wheels else "torch"


def set_up() -> None:
    """Create the venv and install the project (editable, with test extras) unless already done."""
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    has_torch = subprocess.run([str(PYTHON), "-c", "import torch"], capture_output=True).returncode == 0
    if not has_torch:
        run(PYTHON, "-m", "pip", "install", "--quiet", torch_requirement())
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]")
    STAMP.write_text(wanted)


def main() -> int:
    commands = {
        "demo": [VENV / "bin" / "unlearnkit", "demo", *sys.argv[2:]],
        "test": [PYTHON, "-m", "pytest", *sys.argv[2:]],
        "setup": None,
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(f"usage: python3 scripts/dev.py {{{'|'.join(commands)}}} [args...]", file=sys.stderr)
        return 2
    set_up()
    command = commands[sys.argv[1]]
    return subprocess.run([str(c) for c in command], cwd=ROOT).returncode if command else 0


if __name__ == "__main__":
    sys.exit(main())
