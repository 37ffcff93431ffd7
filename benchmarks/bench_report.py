"""Report build time and page size for a run the size of the 300-edit sequential study.

With `--run DIR` it reports that run (e.g. runs/sequential_study, 21,195 rows). Without, it
builds a stand-in once with the engine: `examples/sequential_study.yaml` (300 sequential edits
x 5 editors, retention every 25, general ability every 50, request rows) on the tiny-llama
fixture instead of smollm2 (facts not filtered by what the model knows), cached under
$EDITRISK_CACHE/bench/report_study. Target: under 30 s and under 10 MB."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, os.path.dirname(__file__))

from common import report  # noqa: E402

from editrisk.engine import load_run, resolve, run_study  # noqa: E402
from editrisk.progress import report_progress  # noqa: E402
from editrisk.settings import cache_dir  # noqa: E402

STUDY = Path(__file__).parent.parent / "examples" / "sequential_study.yaml"


def stand_in(path: Path) -> Path:
    """The 300-edit study's config on tiny-llama, run once (resumes if interrupted)."""
    cfg = yaml.safe_load(STUDY.read_text())
    cfg.update(name="report_study_tiny", model="tiny-llama", checkpoint_every=50)
    cfg["data"]["filter_known"] = False
    t = time.perf_counter()
    with report_progress() as progress:
        rd = run_study(resolve(cfg), path, workers=1, on_progress=progress)
    print(f"stand-in run: {len(rd.results):,} rows in {time.perf_counter() - t:.0f} s")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", type=Path, help="an existing run directory to report")
    ap.add_argument("--repeat", type=int, default=3, help="builds to time (median)")
    args = ap.parse_args()
    from editrisk.report import write_report

    run = args.run or stand_in(cache_dir() / "bench" / "report_study")
    n_rows = len(load_run(run).rows)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            t = time.perf_counter()
            page = write_report(run, Path(tmp) / f"r{i}")
            times.append(time.perf_counter() - t)
        html = page.read_text()
        size = page.stat().st_size
    from plotly.offline import get_plotlyjs

    js = len(get_plotlyjs().encode())
    rows = [
        {"what": "run", "value": str(run)},
        {"what": "rows", "value": f"{n_rows:,}"},
        {"what": f"build seconds (median of {args.repeat})", "value": statistics.median(times)},
        {"what": "page MB", "value": size / 1e6},
        {"what": "  of which plotly.js MB", "value": js / 1e6},
        {"what": "plots", "value": html.count("class='plot'")},
        {"what": "per-edit rows", "value": html.count("<td class='gen'>") // 3},
    ]
    report("report", rows, note="targets: build under 30 s, page under 10 MB")


if __name__ == "__main__":
    main()
