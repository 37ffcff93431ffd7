"""Single edits of real facts on smollm2-135m, each on the unedited model: efficacy, paraphrase
generalisation and neighbourhood accuracy before/after (ROME/MEMIT probability comparison),
plus EasyEdit-style token accuracy. Targets: efficacy >= 95 %, paraphrase >= 70 %,
neighbourhood drop <= 10 points, over >= 50 facts."""

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
    ap.add_argument("--facts", type=int, default=50)
    ap.add_argument("--editors", default="rome,memit")
    args = ap.parse_args()
    setup_threads()
    h = load_model("smollm2-135m", device="cpu")
    reqs = sample_known(h, args.facts)
    rows = []
    for editor in args.editors.split(","):
        s = single_edit_scores(h, editor, reqs)
        rows.append(
            {
                "editor": editor,
                "facts": len(reqs),
                "efficacy": s["efficacy.prob_compare"],
                "paraphrase": s["generalization.prob_compare"],
                "neighbourhood before": s["specificity.base"],
                "neighbourhood after": s["specificity.prob_compare"],
                "drop (points)": 100 * (s["specificity.base"] - s["specificity.prob_compare"]),
                "efficacy token acc": s["efficacy.token_acc"],
                "paraphrase token acc": s["generalization.token_acc"],
                "s/edit": s["s/edit"],
            }
        )
        print(rows[-1], flush=True)
    report(
        "efficacy_smollm2",
        rows,
        note="WorldFacts known by smollm2-135m, round-robin over "
        "relations; ROME/MEMIT probability-comparison convention unless marked token acc.",
    )


if __name__ == "__main__":
    main()
