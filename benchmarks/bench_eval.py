"""Evaluation throughput (edit metrics on WorldFacts requests) vs plain batched forward, in
tokens/s, on smollm2-135m. Target: evaluation >= 80 % of plain forward throughput.

Tokens are counted per (prompt, target) pair, as a plain scorer runs them. editrisk runs each
distinct prompt once and continues every target from its cached keys and values, so this
rate can exceed the plain forward's. The last row times the known-facts filter (a prompt with
seven candidate answers) on the same model.

Then generation-based vs teacher-forced success on the same 50 requests (rewrite prompt, two
paraphrases, five neighbours each): `gen_match` (greedy, up to 16 new tokens, batched with a
KV cache, each row stopped after its first sentence) against the three teacher-forced
conventions' one scoring pass. Target: at most 3x. Then both with the requests' portability,
reverse and subject_other questions."""

from __future__ import annotations

import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402
from common import report, setup_threads  # noqa: E402

from editrisk.data.worldfacts import build_worldfacts, candidate_facts, known_mask  # noqa: E402
from editrisk.evaluation.metrics import (  # noqa: E402
    GEN_MATCH_TOKENS,
    TEACHER_FORCED,
    edit_metrics,
    edit_pairs,
    edit_prompts,
    summarize,
)
from editrisk.models import load_model  # noqa: E402
from editrisk.requests import QUESTION_KINDS  # noqa: E402
from editrisk.tokens import prompt_ids, target_ids  # noqa: E402

N_REQUESTS = int(os.environ.get("EDITRISK_BENCH_REQUESTS", 40))
REPEAT = int(os.environ.get("EDITRISK_BENCH_REPEAT", 5))
BATCH = 32
N_GEN_REQUESTS = 50


def main() -> None:
    threads = setup_threads()
    h = load_model("smollm2-135m", device="cpu")
    reqs = build_worldfacts(None, seed=0, limit_per_relation=N_REQUESTS // 5)
    reqs = [dataclasses.replace(r, questions=()) for r in reqs]  # as measured before them
    pairs = list(dict.fromkeys(p for r in reqs for p in edit_pairs(r)))
    lengths = [len(prompt_ids(h.tokenizer, p)) + len(target_ids(h.tokenizer, t)) for p, t in pairs]
    n_tokens = sum(lengths)
    mean_len = round(n_tokens / len(pairs))
    # Plain forward: the same number of tokens as unpadded batches of the mean length.
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, h.model.config.vocab_size, (len(pairs), mean_len), generator=gen)

    @torch.no_grad()
    def plain() -> None:
        for i in range(0, len(ids), BATCH):
            h.model(input_ids=ids[i : i + BATCH])

    def evaluate() -> None:
        edit_metrics(h, reqs, batch_size=BATCH)

    plain(), evaluate()  # warm-up
    best = {"plain": float("inf"), "eval": float("inf")}
    for _ in range(REPEAT):  # interleaved, so load from other processes hits both alike
        for name, fn in (("plain", plain), ("eval", evaluate)):
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    plain_tps = len(ids) * mean_len / best["plain"]
    eval_tps = n_tokens / best["eval"]
    rows = [
        {
            "what": f"plain forward, batch {BATCH} x len {mean_len}",
            "sequences": len(ids),
            "tokens": len(ids) * mean_len,
            "seconds": best["plain"],
            "tokens/s": plain_tps,
        },
        {
            "what": f"edit_metrics on {len(reqs)} WorldFacts requests",
            "sequences": len(pairs),
            "tokens": n_tokens,
            "seconds": best["eval"],
            "tokens/s": eval_tps,
        },
        {"what": "evaluation / plain", "ratio": eval_tps / plain_tps},
    ]
    facts = candidate_facts(0)[:200]
    t = time.perf_counter()
    known_mask(h, facts)
    rows.append(
        {
            "what": f"known-facts filter, {len(facts)} facts x 7 answers",
            "sequences": 7 * len(facts),
            "seconds": time.perf_counter() - t,
        }
    )
    rows += generation_vs_teacher_forced(h)
    report("eval", rows, note=f"smollm2-135m, {threads} threads, best of {REPEAT} interleaved runs")


def generation_vs_teacher_forced(h) -> list[dict]:
    """gen_match against the teacher-forced conventions on the same requests (without, then
    with their questions), best of REPEAT interleaved runs."""
    with_q = build_worldfacts(None, seed=0, limit_per_relation=N_GEN_REQUESTS // 5)
    with_q = [dataclasses.replace(r, paraphrases=r.paraphrases[:2]) for r in with_q]
    reqs = [dataclasses.replace(r, questions=()) for r in with_q]
    runs = {
        "teacher-forced": (reqs, TEACHER_FORCED),
        "gen_match": (reqs, ("gen_match",)),
        "teacher-forced, questions": (with_q, TEACHER_FORCED),
        "gen_match, questions": (with_q, ("gen_match",)),
    }
    best, means = dict.fromkeys(runs, float("inf")), {}
    for _ in range(REPEAT):
        for name, (rs, conventions) in runs.items():
            t = time.perf_counter()
            rows = edit_metrics(
                h, rs, batch_size=BATCH, conventions=conventions, questions=QUESTION_KINDS
            )
            best[name] = min(best[name], time.perf_counter() - t)
            means[name] = summarize(rows)
    tf, gm = means["teacher-forced"], means["gen_match"]
    n_q = sum(len(r.questions) for r in with_q)
    return [
        {
            "what": f"teacher-forced metrics, {len(reqs)} requests (3 conventions)",
            "sequences": len({p for r in reqs for p in edit_pairs(r)}),
            "seconds": best["teacher-forced"],
            "efficacy": tf["efficacy.prob_compare"],
            "specificity": tf["specificity.prob_compare"],
        },
        {
            "what": f"gen_match, same requests, up to {GEN_MATCH_TOKENS} new tokens",
            "sequences": len({p for r in reqs for p in edit_prompts(r)}),
            "seconds": best["gen_match"],
            "efficacy": gm["efficacy.gen_match"],
            "specificity": gm["specificity.gen_match"],
        },
        {
            "what": "gen_match / teacher-forced (target <= 3)",
            "ratio": best["gen_match"] / best["teacher-forced"],
        },
        {
            "what": f"teacher-forced + {n_q} questions (ratio: to without)",
            "seconds": best["teacher-forced, questions"],
            "ratio": best["teacher-forced, questions"] / best["teacher-forced"],
        },
        {
            "what": f"gen_match + {n_q} questions (ratio: to teacher-forced + questions)",
            "seconds": best["gen_match, questions"],
            "ratio": best["gen_match, questions"] / best["teacher-forced, questions"],
        },
    ]


if __name__ == "__main__":
    main()
