"""Evaluation throughput (edit metrics on WorldFacts requests) vs plain batched forward, in
tokens/s, on smollm2-135m. Target: evaluation >= 80 % of plain forward throughput.

Tokens are counted per (prompt, target) pair, as a plain scorer runs them. editrisk runs each
distinct prompt once and continues every target from its cached keys and values, so this
rate can exceed the plain forward's. The last row times the known-facts filter (a prompt with
seven candidate answers) on the same model."""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402
from common import report, setup_threads  # noqa: E402

from editrisk.data.worldfacts import build_worldfacts, candidate_facts, known_mask  # noqa: E402
from editrisk.evaluation.metrics import edit_metrics, edit_pairs  # noqa: E402
from editrisk.models import load_model  # noqa: E402
from editrisk.tokens import prompt_ids, target_ids  # noqa: E402

N_REQUESTS = int(os.environ.get("EDITRISK_BENCH_REQUESTS", 40))
REPEAT = int(os.environ.get("EDITRISK_BENCH_REPEAT", 5))
BATCH = 32


def main() -> None:
    threads = setup_threads()
    h = load_model("smollm2-135m", device="cpu")
    reqs = build_worldfacts(None, seed=0, limit_per_relation=N_REQUESTS // 5)
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
    report("eval", rows, note=f"smollm2-135m, {threads} threads, best of {REPEAT} interleaved runs")


if __name__ == "__main__":
    main()
