"""How fast the `editrisk` command answers: `--help`, `--version` and a sub-command's help,
each in a fresh interpreter (what a user waits for), median and spread of N runs, beside a bare
`python -c pass` (the floor no command goes below) and `import torch` (what the package used to
pay at import).

    python benchmarks/bench_cli.py [--runs 15] [--src OTHER_TREE/src --label before]

`--src` times the same commands from another source tree (PYTHONPATH first), e.g. an older
commit unpacked with `git archive COMMIT src | tar -x -C /tmp/old`.
"""

from __future__ import annotations

import argparse
import os
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


def time_command(cmd: list[str], runs: int, env: dict[str, str] | None = None) -> list[float]:
    """Wall-clock seconds of `runs` fresh runs of `cmd` (one untimed warm-up for disk caches)."""
    subprocess.run(cmd, capture_output=True, check=True, env=env)
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, env=env)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--src", help="also time the editrisk commands from this source tree")
    ap.add_argument("--label", default="other tree", help="name of --src in the table")
    args = ap.parse_args()
    trees: list[tuple[str, dict[str, str] | None]] = [("this tree", None)]
    if args.src:
        path = os.pathsep.join([os.path.abspath(args.src), os.environ.get("PYTHONPATH", "")])
        trees.append((args.label, {**os.environ, "PYTHONPATH": path}))
    rows = []
    for tree, env in trees:
        for name, cmd in CASES.items():
            if env is not None and not name.startswith("editrisk"):
                continue  # the floor and torch do not depend on the tree
            ts = time_command(cmd, args.runs, env)
            q = statistics.quantiles(ts, n=4)
            rows.append({"tree": tree, "command": name, "runs": args.runs,
                         "median_s": statistics.median(ts), "q1_s": q[0], "q3_s": q[2],
                         "max_s": max(ts)})  # fmt: skip
    script = shutil.which("editrisk")
    note = (
        "Fresh interpreter per run; the `editrisk` script "
        f"({script or 'not on PATH'}) runs the same entry point."
    )
    report("cli", rows, note)


if __name__ == "__main__":
    main()
