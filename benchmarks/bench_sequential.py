"""D4S sequential editing on smollm2-135m: editor state size, process RSS and seconds per
edit, every `--every` edits up to `--edits`. Target: state and RSS flat (within 5 %) from
edit 100 to edit 1000, seconds per edit flat.

The full target (1000 edits at default settings) takes hours on a 2-core machine; `--steps`,
`--prefixes`, `--corpus-tokens` and `--edits` cut the cost and are printed with the table.
Usage: python benchmarks/bench_sequential.py --edits 1000 --every 100 [--steps 5]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import gc
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from common import report, setup_threads  # noqa: E402

from editrisk.data.worldfacts import build_worldfacts  # noqa: E402
from editrisk.editors import get_editor  # noqa: E402
from editrisk.models import load_model  # noqa: E402


def rss_mb() -> float:
    """Resident set size of this process, MiB (Linux /proc), after the garbage collector and
    glibc's malloc_trim: memory the process still holds, not freed pages malloc keeps cached
    (those come and go with the last edit's temporaries, +-6 % between samples)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: the untrimmed RSS
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def state_mb(editor) -> float:
    return sum(t.numel() * t.element_size() for t in editor.state_dict().values()) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edits", type=int, default=1000)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--steps", type=int, default=20, help="target optimisation steps")
    ap.add_argument("--prefixes", action="store_true", help="use the default context prefixes")
    ap.add_argument("--corpus-tokens", type=int, default=32768)
    ap.add_argument("--model", default="smollm2-135m")
    args = ap.parse_args()
    threads = setup_threads()
    h = load_model(args.model, device="cpu")
    hp = {"steps": args.steps, "corpus_tokens": args.corpus_tokens}
    if not args.prefixes:
        hp["prefixes"] = ()
    editor = get_editor("d4s", hp)
    facts = build_worldfacts(None)
    reqs = [
        dataclasses.replace(facts[i % len(facts)], id=f"{facts[i % len(facts)].id}#{i}")
        for i in range(args.edits)
    ]
    editor.covariances(h, editor.layers_for(h))  # cached statistics: not part of the timing
    rows, window, t_window = [], 0, time.perf_counter()
    for i, r in enumerate(reqs, 1):
        editor.edit(h, [r]).apply(h.model, backup=False)
        window += 1
        if i % args.every == 0 or i == args.edits:
            now = time.perf_counter()
            rows.append(
                {
                    "edits": i,
                    "state_MiB": state_mb(editor),
                    "rss_MiB": rss_mb(),
                    "peak_rss_MiB": peak_rss_mb(),
                    "s_per_edit": (now - t_window) / window,
                }
            )
            print(rows[-1], flush=True)
            window, t_window = 0, time.perf_counter()  # sampling memory is not edit time
    first, last = rows[0], rows[-1]
    keys = ("state_MiB", "rss_MiB", "peak_rss_MiB", "s_per_edit")
    spread = {k: max(r[k] for r in rows) / min(r[k] for r in rows) for k in keys}
    note = (
        f"D4S on {args.model}, layers {list(editor.layers_for(h))}, steps={args.steps}, "
        f"prefixes={'default' if args.prefixes else 'none'}, corpus_tokens="
        f"{args.corpus_tokens}, {threads} threads. Max/min over the samples: "
        + ", ".join(f"{k} {v:.3f}" for k, v in spread.items())
        + f" (edits {first['edits']} -> {last['edits']}; target within 1.05)"
    )
    report("sequential_d4s", rows, note)


if __name__ == "__main__":
    main()
