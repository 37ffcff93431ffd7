"""Sweep costs. (1) A 1-LI sweep of 11 alphas of one ROME edit on smollm2-135m: the edit
(keys, values, covariance) is computed once and the unedited baseline evaluated once, so each
further alpha costs one evaluation. (2) An 8-cell vision sweep (fine-tuning, 2 editors x 4
layers, 100 steps each) on the local executor with 1 worker (in-process, 2 threads) and with
2 workers (1 thread each).
Target: 2 workers >= 1.5x faster on 2 cores."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

from common import report, setup_threads  # noqa: E402

from editrisk.sweep import resolve_sweep, run_sweep  # noqa: E402
from editrisk.sweep.worker import Worker  # noqa: E402

ALPHAS = [i / 10 for i in range(11)]


def one_li(rows: list[dict]) -> None:
    cfg = resolve_sweep(
        {
            "name": "bench-1li",
            "model": "smollm2-135m",
            "grid": {"editor": ["rome"], "layer": [6], "alpha": ALPHAS},
            "edit_sets": {"default": {"n": 1}},
            "evaluation": {"heldout": 20},
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        Worker(cfg, tmp).context(0)  # model, facts and caches loaded outside the timing
        t = time.perf_counter()
        out = run_sweep(cfg, tmp, workers=1).results.rows()
        wall = time.perf_counter() - t
    base = next(r for r in out if r["alpha"] == 0.0)
    edited = [r for r in out if r["alpha"] > 0]
    edit_s = edited[0]["edit_seconds"]
    per_alpha = sum(r["eval_seconds"] for r in edited) / len(edited)
    rows += [
        {"what": "1-LI, 11 alphas: whole sweep (wall)", "seconds": wall},
        {"what": "  the ROME edit, computed once", "seconds": edit_s},
        {"what": "  unedited evaluation (alpha 0), once", "seconds": base["eval_seconds"]},
        {"what": "  per further alpha (scale, apply, evaluate)", "seconds": per_alpha},
        {
            "what": "  naive: edit + evaluate at every alpha (estimate)",
            "seconds": 11 * (edit_s + per_alpha),
        },  # fmt: skip
    ]


def workers(rows: list[dict]) -> None:
    cfg = resolve_sweep(
        {
            "name": "bench-workers",
            "family": "vision",
            "model": {"family": "vgg", "width": 8, "epochs": 8, "size": 32},
            "grid": {"editor": ["ft-local", "ft-global"], "layer": [1, 2, 3, 4], "alpha": [1.0]},
            "edit_sets": {"default": {"style": "checker", "n_train": 10}},
            "editor_params": {
                "ft-local": {"steps": 100, "lr": 0.001},
                "ft-global": {"steps": 100, "lr": 0.001},
            },
            "evaluation": {"n_images": 300},
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        Worker(cfg, tmp).context(0)  # train (or load) the classifier once, outside the timing
    walls = {}
    for n in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            done = run_sweep(cfg, tmp, workers=n).results.rows()
            walls[n] = time.perf_counter() - t
        assert len(done) == 8
        rows.append({"what": f"8-cell vision sweep, {n} worker(s)", "seconds": walls[n]})
    rows.append({"what": "  speed-up of 2 workers (target >= 1.5)", "seconds": walls[1] / walls[2]})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["1li", "workers"], default=None)
    args = ap.parse_args()
    setup_threads()
    rows: list[dict] = []
    if args.only in (None, "1li"):
        one_li(rows)
    if args.only in (None, "workers"):
        workers(rows)
    report("sweep", rows, note="seconds; the speed-up row is a ratio")


if __name__ == "__main__":
    main()
