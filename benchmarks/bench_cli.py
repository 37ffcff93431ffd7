"""How fast the `editrisk` command answers: `--help`, `--version` and a sub-command's help,
each in a fresh interpreter (what a user waits for), median and spread of N runs, beside a bare
`python -c pass` (the floor no command goes below) and `import torch` (what the package used to
pay at import).

    python benchmarks/bench_cli.py [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

from common import report

ENTRY = [sys.executable, "-c", "from editrisk.cli import main; main()"]
CASES = {
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "editrisk --help": [*ENTRY, "--help"],
    "editrisk --version": [*ENTRY, "--version"],
    "editrisk run --help": [*ENTRY, "run", "--help"],
    "editrisk vision --help": [*ENTRY, "vision", "--help"],
}


def time_command(cmd: list[str], runs: int) -> list[float]:
    """Wall-clock seconds of `runs` fresh runs of `cmd` (one untimed warm-up for disk caches)."""
    subprocess.run(cmd, capture_output=True, check=True)
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    rows = []
    for name, cmd in CASES.items():
        ts = time_command(cmd, args.runs)
        q = statistics.quantiles(ts, n=4)
        rows.append({"command": name, "runs": args.runs, "median_s": statistics.median(ts),
                     "q1_s": q[0], "q3_s": q[2], "max_s": max(ts)})  # fmt: skip
    script = shutil.which("editrisk")
    note = (
        "Fresh interpreter per run; the `editrisk` script "
        f"({script or 'not on PATH'}) runs the same entry point."
    )
    report("cli", rows, note)


if __name__ == "__main__":
    main()
