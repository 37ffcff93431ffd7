"""Leave-one-relation-out on smollm2-135m: do editing defaults transfer to relations they were
not chosen on? For each editor, a tiny grid of candidate settings is scored on every relation
(single edits of known facts, each on the unedited model); for each relation, the candidate
with the best mean score on the OTHER relations is chosen and scored on the one left out.

Relations: WorldFacts' five plus `editrisk.data.morefacts` (subregion, US state, developer,
author, founder, sport; a relation with fewer than 3 known facts -- founder, 2 of 12 -- is left
out). Score for tuning: efficacy + paraphrase - neighbourhood drop (probability comparison).
Targets per held-out relation: efficacy >= 0.95, paraphrase >= 0.70, neighbourhood drop <= 10
points."""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from common import report, setup_threads  # noqa: E402

from editrisk.data.morefacts import build_morefacts  # noqa: E402
from editrisk.data.splits import by_relation, leave_one_relation_out, tune  # noqa: E402
from editrisk.data.worldfacts import build_worldfacts  # noqa: E402
from editrisk.editors import get_editor  # noqa: E402
from editrisk.evaluation.metrics import edit_metrics, summarize  # noqa: E402
from editrisk.models import ModelHandle, load_model  # noqa: E402
from editrisk.requests import EditRequest  # noqa: E402

# The shared target optimisation's stopping point: editrisk's default stops once the target's
# mean NLL is below 0.05 (P ~ 0.95 per token, as ROME's code stops on its whole loss); a
# looser stop (0.3, P ~ 0.74) pushes v* less far, trading edit strength for neighbours. (An
# earlier run of this benchmark compared the weight decay, editrisk's ||delta||^2/||h||^2
# against the papers' ||delta||/||h||^2: ROME chose editrisk's on every fold, MEMIT tied.)
RULES: dict[str, dict[str, Any]] = {
    "stop 0.05": {},
    "stop 0.3": {"stop_loss": 0.3},
}
# D4S's single edit is MEMIT's (`test_d4s_sequential_matches_memit_batch`) and AlphaEdit's
# target optimisation is MEMIT's: both are scored with the default only, to keep the run
# within an hour on 2 shared cores.
CANDIDATES: dict[str, dict[str, dict[str, Any]]] = {
    "rome": RULES,
    "memit": RULES,
    "alphaedit": {"stop 0.05": {}},
    "d4s": {"stop 0.05": {}},
    # The editors against the decline: each one's own knob, its current default first (a tie
    # keeps the first). RECT: the kept fraction (paper 0.2); ENCORE: the norm constraint's
    # weight; NSE: the share of activation mass whose neurons are updated; GRACE: the initial
    # deferral radius (paper 1.0; smollm2's keys at 85% depth have norms far above 1);
    # PRUNE: its base's stopping point (on a single edit the restraint acts only if the
    # update's largest singular value exceeds the weight's).
    "rect": {"keep 0.2": {}, "keep 0.5": {"keep_fraction": 0.5}},
    "encore": {"norm 1.0": {}, "norm 0.3": {"norm_weight": 0.3}},
    "nse": {"mass 0.8": {}, "mass 0.5": {"neuron_mass": 0.5}},
    "grace": {"radius 1": {}, "radius 4": {"radius": 4.0}, "radius 16": {"radius": 16.0}},
    "prune": {"stop 0.05": {}, "stop 0.3": {"base_hparams": {"stop_loss": 0.3}}},
    # UltraEdit: the pseudo-values' step size, around the default over 2 orders of magnitude
    # (its output shift per layer grows as lr * d_in * sqrt(d_out); no number transfers from
    # the papers' 7B-27B models).
    # Where keys and gradients are read: the positions predicting the answer (the paper's) or
    # every position (EasyEdit's `token: mask`; an earlier run: every lr either misses
    # efficacy or flips the relation's neighbours, drop 45-100 points at lr >= 1e-4).
    "ultraedit": {
        "answer lr 1e-4": {"positions": "answer", "lr": 1e-4},
        "answer lr 3e-5": {"positions": "answer", "lr": 3e-5},
        "answer lr 3e-4": {"positions": "answer", "lr": 3e-4},
        "answer lr 1e-3": {"positions": "answer", "lr": 1e-3},
        "all lr 3e-5": {"positions": "all", "lr": 3e-5},
    },
}
# Editors scored only when asked for (`--editors`): the new six take hours on 2 shared cores.
DEFAULT_EDITORS = ("rome", "memit", "alphaedit", "d4s")


def score(m: dict[str, float], editor: str = "") -> float:
    """One number to tune on: efficacy + paraphrase - neighbourhood drop; for GRACE, whose
    paraphrase figure the targets exempt (a codebook generalises only within its radius),
    efficacy - drop (with paraphrases counted it buys them with neighbours: radius 16 on 8 of
    10 folds, drop 27 points mean, 90 max)."""
    if editor == "grace":
        return m["efficacy"] - m["drop"]
    return m["efficacy"] + m["paraphrase"] - m["drop"]


def single_edits(
    h: ModelHandle, editor: str, hparams: dict[str, Any], reqs: list[EditRequest]
) -> dict[str, float]:
    """Mean metrics of single edits of `reqs` (stateful editors reset before each edit)."""
    ed = get_editor(editor, hparams)
    rows, seconds, steps = [], 0.0, []
    # UltraEdit's memory is statistics of the edit features, not edits: they run on across
    # the single edits (its lifelong normalisation needs a stream), seeded with the cell's
    # requests.
    carry = getattr(ed, "statistics_only_memory", False)
    if carry:
        ed.observe(h, reqs)
    for r in reqs:
        if not carry:
            ed.reset()
        t = time.perf_counter()
        delta = ed.edit(h, [r])
        seconds += time.perf_counter() - t
        steps += delta.metadata.get("target_steps", [])
        with delta.applied(h.model):
            rows.extend(edit_metrics(h, [r]))
    s = summarize(rows)
    base = summarize(edit_metrics(h, reqs))["specificity.prob_compare"]
    return {
        "efficacy": s["efficacy.prob_compare"],
        "paraphrase": s["generalization.prob_compare"],
        "neighbours before": base,
        "neighbours after": s["specificity.prob_compare"],
        "drop": base - s["specificity.prob_compare"],
        "steps": sum(steps) / max(1, len(steps)),
        "s/edit": seconds / len(reqs),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--facts", type=int, default=5, help="facts per relation")
    ap.add_argument("--editors", default=",".join(DEFAULT_EDITORS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    setup_threads()
    h = load_model("smollm2-135m", device="cpu")
    groups = by_relation(build_worldfacts(h, seed=args.seed) + build_morefacts(h, seed=args.seed))
    rng = random.Random(args.seed)
    sample = {
        rel: rng.sample(rs, min(args.facts, len(rs))) for rel, rs in groups.items() if len(rs) >= 3
    }
    print({rel: len(rs) for rel, rs in groups.items()}, "known facts per relation", flush=True)
    rows, summary = [], []
    for editor in args.editors.split(","):
        cells: dict[tuple[str, str], dict[str, float]] = {}

        def cell(cand: str, rel: str, editor: str = editor, cells: dict = cells) -> dict:
            if (cand, rel) not in cells:
                hp = CANDIDATES[editor][cand]
                cells[(cand, rel)] = single_edits(h, editor, hp, sample[rel])
                print(editor, cand, rel, cells[(cand, rel)], flush=True)
            return cells[(cand, rel)]

        held = []
        for fold in leave_one_relation_out(list(sample)):
            chosen = tune(
                list(CANDIDATES[editor]), fold, lambda c, r, f=cell, e=editor: score(f(c, r), e)
            )
            m = cell(chosen, fold.held_out)
            held.append(m)
            rows.append(
                {
                    "editor": editor,
                    "held out": fold.held_out,
                    "chosen": chosen,
                    "efficacy": m["efficacy"],
                    "paraphrase": m["paraphrase"],
                    "neighbours": f"{m['neighbours before']:.2f} -> {m['neighbours after']:.2f}",
                    "drop (points)": 100 * m["drop"],
                    "steps": m["steps"],
                    "s/edit": m["s/edit"],
                }
            )
        n = len(held)
        print(*[r for r in rows if r["editor"] == editor], sep="\n", flush=True)
        summary.append(
            {
                "editor": editor,
                "relations": n,
                "efficacy (mean / min)": f"{sum(m['efficacy'] for m in held) / n:.2f} / "
                f"{min(m['efficacy'] for m in held):.2f}",
                "paraphrase (mean / min)": f"{sum(m['paraphrase'] for m in held) / n:.2f} / "
                f"{min(m['paraphrase'] for m in held):.2f}",
                "drop, points (mean / max)": f"{100 * sum(m['drop'] for m in held) / n:.1f} / "
                f"{100 * max(m['drop'] for m in held):.1f}",
                "relations meeting all targets": sum(
                    m["efficacy"] >= 0.95 and m["paraphrase"] >= 0.70 and m["drop"] <= 0.10
                    for m in held
                ),
            }
        )
        print(summary[-1], flush=True)
    note = (
        f"{args.facts} known facts per relation, single edits on smollm2-135m; each relation's "
        "settings chosen on the other relations (efficacy + paraphrase - drop)."
    )
    name = "transfer_smollm2" + suffix(args.editors.split(","))
    report(name, rows, note=note)
    report(name + "_summary", summary)


def suffix(editors: list[str]) -> str:
    """'' for the default editors, else '_<editor>_...' (one results file per invocation)."""
    return "" if tuple(editors) == DEFAULT_EDITORS else "_" + "_".join(editors)


if __name__ == "__main__":
    main()
