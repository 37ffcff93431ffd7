"""Grid costs. (1) A 1-LI grid of 11 alphas of one ROME edit on smollm2-135m: the edit
(keys, values, covariance) is computed once and the unedited model evaluated once, so each
further alpha costs one evaluation. (2) An 8-job vision grid (fine-tuning, 2 editors x 4
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

from editrisk.engine import resolve, run_study  # noqa: E402
from editrisk.engine.runner import Contexts  # noqa: E402

ALPHAS = [i / 10 for i in range(11)]


def one_li(rows: list[dict]) -> None:
    cfg = resolve(
        {
            "name": "bench-1li",
            "model": "smollm2-135m",
            "data": {"order": "round_robin", "heldout_from": "end", "n_heldout": 20},
            "edit_sets": {"default": {"n": 1}},
            "protocol": {"name": "batch"},
            "schedule": {"immediate": False, "final": True, "general_every": 1},
            "evaluation": {"perplexity_sentences": 0, "request_rows": False},
            "grid": {"layer": [6], "alpha": ALPHAS},
            "methods": ["rome"],
        }
    )
    Contexts(cfg).get(0)  # model and facts cached outside the timing
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        out = run_study(cfg, tmp).results.rows()
        wall = time.perf_counter() - t
    edit_s = next(r["time.edit_s"] for r in out if r["kind"] == "timing")
    rows += [
        {"what": "1-LI, 11 alphas: whole run (wall, model load included)", "seconds": wall},
        {"what": "  the ROME edit, computed once", "seconds": edit_s},
        {"what": "  per alpha (scale, apply, evaluate: the rest / 11)",
         "seconds": (wall - edit_s) / 11},
        {"what": "  naive: edit + evaluate at every alpha (estimate)",
         "seconds": 11 * edit_s + (wall - edit_s)},
    ]  # fmt: skip


def workers(rows: list[dict]) -> None:
    cfg = resolve(
        {
            "name": "bench-workers",
            "family": "vision",
            "model": {"arch": "vgg", "width": 8, "epochs": 8, "size": 32},
            "edit_sets": {"default": {"style": "checker", "n_train": 10}},
            "protocol": {"name": "batch"},
            "schedule": {"immediate": False, "final": True, "general_every": 1},
            "data": {"n_images": 300},
            "grid": {"layer": [1, 2, 3, 4], "alpha": [1.0]},
            "methods": [
                {"name": "ft-local", "hparams": {"steps": 100, "lr": 0.001}},
                {"name": "ft-global", "hparams": {"steps": 100, "lr": 0.001}},
            ],
        }
    )
    Contexts(cfg).get(0)  # train (or load) the classifier once, outside the timing
    walls = {}
    for n in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            done = run_study(cfg, tmp, workers=n).results.rows()
            walls[n] = time.perf_counter() - t
        assert sum(r["kind"] == "timing" for r in done) == 8
        rows.append({"what": f"8-job vision grid, {n} worker(s)", "seconds": walls[n]})
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
