"""A ROME edit on a shared CPU. editrisk picks its torch threads from the cores other
processes leave free (`settings.free_cores`, used by every command when --threads is 0); this
measures what that buys when one other 2-thread process competes for the cores.

Cases: the quiet machine (threads = free cores); one competing 2-thread torch process with
torch's default threads (all cores: what editrisk did before) and with editrisk's choice.
Target: with the competitor, editrisk's choice edits at most 2.5x slower than the quiet machine.
Run it alone on the machine: anything else running is part of the measurement."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402
from common import report  # noqa: E402
from realfacts import sample_known  # noqa: E402

from editrisk import load_model  # noqa: E402
from editrisk.editors import get_editor  # noqa: E402
from editrisk.settings import free_cores  # noqa: E402

COMPETITOR = (
    "import torch; torch.set_num_threads(2); a = torch.randn(1024, 1024)\n"
    "while True: a = (a @ a).tanh()"
)


def edit_seconds(h, editor, reqs, threads: int) -> list[float]:  # noqa: ANN001
    torch.set_num_threads(threads)
    out = []
    for r in reqs:
        t = time.perf_counter()
        editor.edit(h, [r])
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=3, help="edits timed per case")
    args = ap.parse_args()
    h = load_model("smollm2-135m")
    editor = get_editor("rome")
    reqs = sample_known(h, 2 * args.edits + 2)
    editor.edit(h, [reqs[-1]])  # covariance, context prefixes: cached before the timing
    rows = []
    quiet_threads = free_cores()
    quiet = statistics.median(edit_seconds(h, editor, reqs[: args.edits], quiet_threads))
    rows.append({"case": "quiet machine, free cores", "threads": quiet_threads,
                 "s/edit": quiet, "slowdown": 1.0})  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    rival = subprocess.Popen([sys.executable, "-c", COMPETITOR], env=env)
    try:
        time.sleep(3)  # the competitor is up to speed
        chosen = free_cores()
        mine = statistics.median(edit_seconds(h, editor, reqs[args.edits : 2 * args.edits], chosen))
        rows.append({"case": "+ a 2-thread process, editrisk's choice", "threads": chosen,
                     "s/edit": mine, "slowdown": mine / quiet})  # fmt: skip
        default = os.cpu_count() or 1
        old = statistics.median(edit_seconds(h, editor, reqs[-2:-1], default))
        rows.append({"case": "+ a 2-thread process, all cores (before)", "threads": default,
                     "s/edit": old, "slowdown": old / quiet})  # fmt: skip
    finally:
        rival.kill()
    report("shared_cpu", rows, note="target: editrisk's choice slowdown <= 2.5")


if __name__ == "__main__":
    main()
