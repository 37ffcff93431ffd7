"""Layer sweep that chose smollm2-135m's default ROME layer and MEMIT layer window.

Single ROME edits of real WorldFacts at each candidate layer: efficacy, paraphrase
generalisation and neighbourhood accuracy (ROME's probability-comparison convention).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from common import report, setup_threads  # noqa: E402
from realfacts import sample_known, single_edit_scores  # noqa: E402

from editrisk.models import load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--facts", type=int, default=20)
    ap.add_argument("--layers", default="2,3,4,5,6,8,10,13")
    args = ap.parse_args()
    setup_threads()
    h = load_model("smollm2-135m", device="cpu")
    reqs = sample_known(h, args.facts)
    rows = []
    for layer in map(int, args.layers.split(",")):
        s = single_edit_scores(h, "rome", reqs, {"layers": [layer]})
        rows.append(
            {
                "layer": layer,
                "efficacy": s["efficacy.prob_compare"],
                "paraphrase": s["generalization.prob_compare"],
                "neighbourhood": s["specificity.prob_compare"],
                "neighbourhood (unedited)": s["specificity.base"],
                "s/edit": s["s/edit"],
            }
        )
        print(rows[-1], flush=True)
    report("layers_rome_smollm2", rows, note=f"{len(reqs)} WorldFacts, single ROME edits")


if __name__ == "__main__":
    main()
