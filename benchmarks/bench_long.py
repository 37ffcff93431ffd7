"""The long-horizon study's cost on smollm2-135m (issue 21), in two modes.

`--profile`: one step of `--batch` BigFacts edits per editor (after a warm-up step, with the
covariances cached), its wall time split into the phases of the key/value editors: the target
optimisation (z*), the layer loop's forwards (each layer's keys and the last edited layer's
output, one forward per layer), the solve, the covariance look-up and the rest. It says what
dominates the per-edit cost.

`--layer-loop`: the layer loop's forwards for one batch, rows whole or only up to the edit
position (the same numbers, fewer tokens).

`--study`: one method of examples/long_horizon.yaml driven by the engine's own job runner for
`--edits` edits (steps of 100, its schedule cut to those edits): edits per hour including the
scheduled evaluations, and editor state and process RSS after every step (flat within 5 %
is the target from edit 1,000 on). `--minutes` stops it after the step that passes a time
budget; the same command resumes it from its last checkpoint.

Usage:
  EDITRISK_BENCH_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_long.py --profile \
      --methods memit d4s alphaedit encore ultraedit
  EDITRISK_BENCH_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_long.py --study \
      --method d4s --edits 1000 --run-dir /tmp/long_d4s
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from bench_sequential import peak_rss_mb, rss_mb, state_mb  # noqa: E402
from common import report, setup_threads  # noqa: E402

ROOT = Path(__file__).parents[1]
CONFIG = ROOT / "examples" / "long_horizon.yaml"


@contextlib.contextmanager
def phase_timers(seconds: dict[str, float]) -> Iterator[None]:
    """Add the wall time spent in each phase of the key/value editors to `seconds`."""
    import editrisk.editors.memit as memit
    from editrisk.editors._kv import KVEditor
    from editrisk.editors.alphaedit import AlphaEdit
    from editrisk.editors.d4s import D4S
    from editrisk.editors.encore import ENCORE

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                seconds[name] += time.perf_counter() - t0

        return wrapper

    patches = [
        (memit, "gather_at_index", "keys and current outputs (layer loop)"),
        (KVEditor, "covariances", "covariance look-up"),
        (KVEditor, "prefixes", "prefixes"),
        (memit.MEMIT, "targets", "target optimisation"),
    ] + [(cls, "solve", "solve") for cls in (memit.MEMIT, D4S, AlphaEdit, ENCORE)]
    saved = [(obj, attr, obj.__dict__[attr]) for obj, attr, _ in patches]
    try:
        for obj, attr, name in patches:
            setattr(obj, attr, timed(name, obj.__dict__[attr]))
        yield
    finally:
        for obj, attr, fn in saved:
            setattr(obj, attr, fn)


def method_hparams(label: str) -> tuple[str, dict[str, Any]]:
    from editrisk.engine import load_config

    cfg = load_config(CONFIG)
    (m,) = [m for m in cfg.methods if m.label == label]
    return m.name, dict(m.hparams)


def profile(args: argparse.Namespace) -> None:
    from editrisk.data.bigfacts import build_bigfacts
    from editrisk.editors import get_editor
    from editrisk.models import load_model

    h = load_model(args.model, device="cpu")
    pool = build_bigfacts(seed=0)
    random.Random(0).shuffle(pool)
    rows = []
    for label in args.methods:
        name, hp = method_hparams(label)
        editor = get_editor(name, hp)
        if hasattr(editor, "covariances"):
            editor.covariances(h, editor.layers_for(h))  # cached statistics: not timed
            editor.prefixes(h)
        warm = pool[: args.batch]
        editor.edit(h, warm)  # warm-up: first-call costs (projectors, allocations)
        reqs = pool[args.batch : 2 * args.batch]
        seconds: dict[str, float] = defaultdict(float)
        with phase_timers(seconds):
            t0 = time.perf_counter()
            delta = editor.edit(h, reqs)
            total = time.perf_counter() - t0
        steps = delta.metadata.get("target_steps")
        row: dict[str, Any] = {
            "method": label,
            "s_per_step": total,
            "s_per_edit": total / len(reqs),
        }
        for k, v in sorted(seconds.items()):
            row[k] = f"{v:.1f} s ({100 * v / total:.0f}%)"
        row["other"] = f"{total - sum(seconds.values()):.1f} s"
        if steps:
            row["target_steps_mean"] = sum(steps) / len(steps)
        rows.append(row)
        print(row, flush=True)
    note = (
        f"One step of {args.batch} BigFacts edits per editor on {args.model}, settings of "
        f"examples/long_horizon.yaml, after a warm-up step; {setup_threads()} thread(s). "
        "Phases are nested in the editor's own calls (the layer loop's forwards "
        "sum over layers)."
    )
    report("long_profile", rows, note)


def layer_loop(args: argparse.Namespace) -> None:
    """The forwards of the key/value editors' layer loop (the keys at each edited layer and
    the last edited layer's output) for one batch, rows run whole or only up to the edit
    position (`gather_at_index(upto_index=)`): seconds and the largest difference."""
    from editrisk.data.bigfacts import build_bigfacts
    from editrisk.editing.keys import gather_at_index
    from editrisk.editing.prompts import edit_rows
    from editrisk.editors import get_editor
    from editrisk.models import load_model

    h = load_model(args.model, device="cpu")
    pool = build_bigfacts(seed=0)
    random.Random(0).shuffle(pool)
    reqs = pool[: args.batch]
    name, hp = method_hparams("d4s")
    editor = get_editor(name, hp)
    layers = editor.layers_for(h)
    last = h.arch.layer_module(layers[-1])
    rows = edit_rows(h.tokenizer, reqs, editor.prefixes(h), with_targets=False)
    out, rows_out = {}, []
    for upto in (False, True, False, True):  # twice each, interleaved: load drifts
        t0 = time.perf_counter()
        got = {}
        for layer in layers:
            mod = h.arch.name("mlp_out", layer)
            got[layer] = gather_at_index(h, rows, inputs_of=[mod], upto_index=upto)[f"{mod}:in"]
            got["last", layer] = gather_at_index(h, rows, outputs_of=[last], upto_index=upto)[last]
        seconds = time.perf_counter() - t0
        out.setdefault(upto, got)
        rows_out.append({"rows": "up to the edit position" if upto else "whole", "s": seconds})
        print(rows_out[-1], flush=True)
    diff = max(
        float((out[True][k] - out[False][k]).abs().max() / out[False][k].abs().max())
        for k in out[False]
    )
    tokens = {
        "whole": sum(len(r.ids) for r in rows),
        "upto": sum(r.index + 1 for r in rows),
    }
    note = (
        f"Layer loop forwards of {args.model} for {args.batch} BigFacts requests at d4s layers "
        f"{list(layers)} ({len(layers)} x keys + last output, as MEMIT/D4S/AlphaEdit/ENCORE run "
        f"them), {tokens['whole']} tokens whole, {tokens['upto']} up to the edit position; "
        f"largest difference relative to the largest value: {diff:.2e}. {setup_threads()} "
        "thread(s)."
    )
    report("long_layer_loop", rows_out, note)


def study(args: argparse.Namespace) -> None:
    from editrisk.engine import RunDir, load_config, select_methods
    from editrisk.engine.plan import plan_jobs
    from editrisk.engine.runner import Contexts, JobRunner

    cfg = select_methods(load_config(CONFIG), [args.method])
    sched = cfg.schedule
    cfg.data = {**cfg.data, "n_edits": args.edits}
    cfg.schedule = sched.model_copy(
        update={
            "retention_at": [k for k in sched.retention_at if k <= args.edits],
            "general_at": [k for k in sched.general_at if k <= args.edits],
        }
    )
    (job,) = plan_jobs(cfg)
    t_build = time.perf_counter()
    fam = Contexts(cfg).get(job.seed)
    rd = RunDir(args.run_dir)
    rd.start({k: v for k, v in cfg.to_dict().items() if k != "executor"}, fam.model_info())
    runner = JobRunner(fam, job, cfg, rd)
    build_s = time.perf_counter() - t_build
    samples: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    class OutOfTime(Exception):
        pass

    def progress(_job: str, done: int, _total: int) -> None:
        samples.append(
            {
                "edits": done,
                "wall_s": time.perf_counter() - t0,
                "state_MiB": state_mb(runner.editor),
                "rss_MiB": rss_mb(),
                "peak_rss_MiB": peak_rss_mb(),
            }
        )
        print(samples[-1], flush=True)
        if args.minutes and samples[-1]["wall_s"] > 60 * args.minutes and done < _total:
            raise OutOfTime  # rerun the same command to resume (from the last checkpoint)

    with rd.writer():
        try:
            runner.run(progress)
            stopped = ""
        except OutOfTime:
            stopped = f" Stopped by the {args.minutes:g}-minute budget."
    wall = time.perf_counter() - t0
    collapsed = [r for r in rd.results if r.get("kind") == "collapsed"]
    if collapsed and samples:  # the runner reports a collapsed job as done: say where it stopped
        samples[-1]["edits"] = collapsed[0]["edits"]
    steps = [s for s in samples if s["edits"] > 0]
    done = steps[-1]["edits"] if steps else 0
    first = samples[0]["edits"] if samples else 0  # > 0 when resumed from a checkpoint
    late = [s for s in steps if s["edits"] >= min(1000, done)]
    spread = {
        k: max(s[k] for s in late) / max(min(s[k] for s in late), 1e-9)
        for k in ("state_MiB", "rss_MiB")
    }
    edit_s = sum(r.get("time.edit_s", 0.0) for r in rd.results if r.get("kind") == "timing")
    note = (
        f"{args.method} of examples/long_horizon.yaml on {cfg.model}, {done} edits in steps of "
        f"100{f' (resumed at {first})' if first else ''} (data, held-out facts and "
        f"known-marking built in {build_s:.0f} s, not counted); "
        f"{wall:.0f} s of wall time, the rest the "
        f"scheduled evaluations: {3600 * (done - first) / wall:,.0f} edits/hour. Max/min from edit "
        f"{late[0]['edits'] if late else '-'}: "
        + ", ".join(f"{k} {v:.3f}" for k, v in spread.items())
        + (f". Collapsed at {collapsed[0]['edits']} edits." if collapsed else ".")
        + stopped
        + f" {edit_s:.0f} s in the editor over the whole run."
        + f" {setup_threads()} thread(s)."
    )
    report(f"long_study_{args.method}", steps, note)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--profile", action="store_true")
    mode.add_argument("--study", action="store_true")
    mode.add_argument("--layer-loop", action="store_true")
    ap.add_argument("--methods", nargs="+", default=["memit", "d4s", "alphaedit", "encore"])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--method", default="d4s")
    ap.add_argument("--edits", type=int, default=1000)
    ap.add_argument("--run-dir", default="/tmp/editrisk_long_study")
    ap.add_argument(
        "--minutes", type=float, default=0, help="stop after the step that passes this budget"
    )
    ap.add_argument("--model", default="smollm2-135m")
    args = ap.parse_args()
    setup_threads()
    if args.profile:
        profile(args)
    elif args.layer_loop:
        layer_loop(args)
    else:
        study(args)


if __name__ == "__main__":
    main()
