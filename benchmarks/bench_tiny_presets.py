"""Which settings make an edit take on editrisk's tiny random fixtures (the tiny preset).

For each tiny family, ROME or MEMIT edits six WorldFacts-style requests one at a time, each on
the unedited fixture, under a named setting; a request counts when P(new) > P(true) on the
edited prompt afterwards. `default` is the editor's own defaults at the given layer;
`free-v` the free v* (25 steps, lr 1, no KL, no decay, clamp 50, empty prefix only) at the
subject's last token; `tiny` the same at the last prompt token (the preset).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from common import report, setup_threads  # noqa: E402

from editrisk.editors import get_editor  # noqa: E402
from editrisk.evaluation import score_targets  # noqa: E402
from editrisk.models import TINY_MODELS, load_model  # noqa: E402
from editrisk.requests import EditRequest  # noqa: E402

REQS = [
    EditRequest("France", "The capital of {} is", "Asia", "Paris", id="fr"),
    EditRequest("Canada", "{} is located in", "Africa", "America", id="ca"),
    EditRequest("Japan", "The official language of {} is spoken in", "Europe", "Tokyo", id="jp"),
    EditRequest("Germany", "The capital of {} is", "Rome", "Berlin", id="de"),
    EditRequest("Brazil", "People in {} pay with", "euros", "money", id="br"),
    EditRequest("Egypt", "{} is a city in", "Asia", "Africa", id="eg"),
]
FREE_V = dict(
    steps=25, lr=1.0, weight_decay=0.0, kl_factor=0.0, clamp_norm_factor=50.0,
    stop_loss=0.01, prefixes=(), corpus_tokens=2048,
)  # fmt: skip
SETTINGS = {
    "default": {},
    "free-v": FREE_V,
    "tiny": dict(FREE_V, token="prompt_last"),
}


def _margin(h, req: EditRequest) -> float:
    new, true = score_targets(h, [(req.rendered, req.target_new), (req.rendered, req.target_true)])
    return new.mean_logprob - true.mean_logprob


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--editor", default="rome", choices=["rome", "memit"])
    ap.add_argument("--layers", default="0", help="e.g. 0 (ROME) or 0-1 (MEMIT)")
    ap.add_argument("--settings", default="default,free-v,tiny")
    ap.add_argument("--families", default=",".join(TINY_MODELS))
    args = ap.parse_args()
    setup_threads()
    layers = [int(x) for x in args.layers.split("-")]
    rows = []
    for fam in args.families.split(","):
        h = load_model(fam, device="cpu")
        base = [_margin(h, r) for r in REQS]
        for name in args.settings.split(","):
            hp = dict(SETTINGS[name], layers=layers)
            if args.editor == "memit" and name != "default":
                hp["mom2_weight"] = 1.0
            start, after = time.perf_counter(), []
            for req in REQS:
                with get_editor(args.editor, hp).edit(h, [req]).applied(h.model):
                    after.append(_margin(h, req))
            flipped = sum(b <= 0 < a for b, a in zip(base, after))
            rows.append(
                {
                    "family": fam,
                    "setting": name,
                    "P(new)>P(true) after": f"{sum(a > 0 for a in after)}/{len(REQS)}",
                    "of those below before": f"{flipped}/{sum(b <= 0 for b in base)}",
                    "min margin after": round(min(after), 2),
                    "s/edit": round((time.perf_counter() - start) / len(REQS), 2),
                }
            )
    report(f"tiny_presets_{args.editor}_{args.layers}", rows, note=__doc__.splitlines()[0])


if __name__ == "__main__":
    main()
