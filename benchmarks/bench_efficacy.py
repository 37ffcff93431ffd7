"""Single edits of real facts on smollm2-135m, each on the unedited model: efficacy, paraphrase
generalisation and neighbourhood accuracy before/after (ROME/MEMIT probability comparison),
plus EasyEdit-style token accuracy. Targets: efficacy >= 95 %, paraphrase >= 70 %,
neighbourhood drop <= 10 points, over >= 50 facts.

`--gen-match`: teacher-forced (prob_compare) and generation-based (gen_match: the greedy
continuation's first sentence states the answer) success side by side, for the rewrite prompt,
paraphrases, neighbours and the requests' portability / reverse / subject_other questions."""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from common import report, setup_threads  # noqa: E402
from realfacts import sample_known, single_edit_scores  # noqa: E402

from editrisk.evaluation.metrics import GEN_MATCH_TOKENS  # noqa: E402
from editrisk.models import load_model  # noqa: E402
from editrisk.requests import QUESTION_KINDS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--facts", type=int, default=50)
    ap.add_argument("--editors", default="rome,memit")
    ap.add_argument("--gen-match", action="store_true", help="teacher-forced vs gen_match")
    args = ap.parse_args()
    setup_threads()
    h = load_model("smollm2-135m", device="cpu")
    reqs = sample_known(h, args.facts)
    if args.gen_match:
        return side_by_side(h, reqs, args.editors.split(","))
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
    editors = args.editors.split(",")
    report(
        "efficacy_smollm2" + ("" if editors == ["rome", "memit"] else "_" + "_".join(editors)),
        rows,
        note="WorldFacts known by smollm2-135m, round-robin over "
        "relations; ROME/MEMIT probability-comparison convention unless marked token acc.",
    )


def side_by_side(h, reqs, editors: list[str]) -> None:
    """One row per (editor, metric): the unedited and edited share of prompts that succeed,
    by probability comparison and by greedy generation."""
    rows = []
    for editor in editors:
        conventions = ("prob_compare", "gen_match")
        s = single_edit_scores(h, editor, reqs, conventions=conventions, questions=QUESTION_KINDS)
        for m in ("efficacy", "generalization", "specificity", *QUESTION_KINDS):
            rows.append(
                {
                    "editor": editor,
                    "metric": m,
                    "prob_compare before": s.get(f"base.{m}.prob_compare"),
                    "prob_compare after": s.get(f"{m}.prob_compare"),
                    "gen_match before": s.get(f"base.{m}.gen_match"),
                    "gen_match after": s.get(f"{m}.gen_match"),
                }
            )
            print(rows[-1], flush=True)
    report(
        "efficacy_gen_match_smollm2",
        rows,
        note=f"{len(reqs)} WorldFacts known by smollm2-135m, round-robin over relations, single "
        f"edits with default settings; gen_match: greedy, up to {GEN_MATCH_TOKENS} new tokens.",
    )


if __name__ == "__main__":
    main()
