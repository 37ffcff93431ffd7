"""General ability of a (possibly edited) model: held-out facts, perplexity, and an adapter
that lets lm-evaluation-harness evaluate it. Every number comes from `score_targets`."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from editrisk.errors import EditriskError
from editrisk.evaluation.metrics import score_pairs
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest


def heldout_accuracy(
    h: ModelHandle, requests: Sequence[EditRequest], batch_size: int = 32
) -> dict[str, float | int | None]:
    """Knowledge of facts that were not edited.

    `heldout.prob_compare`: share of facts whose target_true has a higher per-token
    probability than every alternative (`extra['alternatives']`, else target_new).
    `heldout.token_acc`: mean teacher-forced token accuracy of target_true.
    """
    facts = [r for r in requests if r.target_true is not None]
    rivals = [
        [a for a in (r.extra.get("alternatives") or [r.target_new]) if a != r.target_true]
        for r in facts
    ]
    pairs = []
    for r, alts in zip(facts, rivals):
        pairs += [(r.rendered, r.target_true)] + [(r.rendered, a) for a in alts]
    scores = iter(score_pairs(h, pairs, batch_size))
    hits, accs = [], []
    for alts in rivals:
        true = next(scores)
        others = [next(scores) for _ in alts]
        hits.append(float(all(true.prob > o.prob for o in others)))
        accs.append(true.token_accuracy)
    n = len(facts)
    return {
        "heldout.prob_compare": sum(hits) / n if n else None,
        "heldout.token_acc": sum(accs) / n if n else None,
        "heldout.n": n,
    }


def _word_chunks(text: str, max_words: int) -> list[tuple[str, str]]:
    """(first word, rest) per chunk of at most `max_words` words; the first word is context."""
    words = text.split()
    out = []
    for i in range(0, len(words), max_words):
        chunk = words[i : i + max_words]
        if len(chunk) >= 2:
            out.append((chunk[0], " ".join(chunk[1:])))
    return out


def _fitting(h: ModelHandle, chunks: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`chunks`, each split in halves (by words) until it fits the model's context."""
    limit = h.context_length
    out = []
    for first, rest in chunks:
        text = f"{first} {rest}"
        if limit is None or len(h.tokenizer(text, add_special_tokens=False)["input_ids"]) < limit:
            out.append((first, rest))
            continue
        words = text.split()
        if len(words) < 4:
            raise EditriskError(f"perplexity text {text[:40]!r}... exceeds {limit} tokens")
        half = len(words) // 2
        out += _fitting(h, _word_chunks(" ".join(words[:half]), half))
        out += _fitting(h, _word_chunks(" ".join(words[half:]), len(words) - half))
    return out


def perplexity(
    h: ModelHandle, texts: Sequence[str], max_words: int = 64, batch_size: int = 16
) -> dict[str, float | int]:
    """Token-level perplexity over `texts`, in chunks of `max_words` words; each chunk's first
    word is its context and is not scored."""
    pairs = [p for t in texts for p in _fitting(h, _word_chunks(t, max_words))]
    if not pairs:
        raise EditriskError("perplexity needs texts with at least two words")
    scores = score_pairs(h, pairs, batch_size)
    n = sum(s.n_tokens for s in scores)
    return {"perplexity": math.exp(-sum(s.logprob for s in scores) / n), "perplexity.tokens": n}


def default_text_sample(n_sentences: int = 120, seed: int = 0) -> list[str]:
    """Plain English statements of real facts from the packaged geonames data (offline)."""
    from editrisk.data.worldfacts import REFERENCE_TEMPLATES, candidate_facts

    facts = candidate_facts(seed)
    rng = random.Random(seed)
    picked = rng.sample(facts, min(n_sentences, len(facts)))
    sentences = [
        REFERENCE_TEMPLATES[f.relation].format(subj=f.subject, obj=f.object) for f in picked
    ]
    sentences = [s[0].upper() + s[1:] for s in sentences]
    return [" ".join(sentences[i : i + 8]) for i in range(0, len(sentences), 8)]


# -- lm-evaluation-harness adapter ---------------------------------------------------------------
def lm_eval_model(h: ModelHandle, batch_size: int = 32) -> Any:
    """An `lm_eval.api.model.LM` backed by `h` (edited or not): pass it to
    `lm_eval.simple_evaluate(model=...)`. Needs the optional extra: pip install 'editrisk[lm-eval]'.

    Continuations are scored as editrisk scores targets (one leading space), which is exact
    for lm-eval's usual " answer" continuations; rolling log-likelihoods leave each window's
    first word unscored.
    """
    try:
        from lm_eval.api.model import LM
    except ImportError as err:
        raise EditriskError(
            "the lm-evaluation-harness adapter needs lm-eval: pip install 'editrisk[lm-eval]'"
        ) from err

    class EditriskLM(LM):
        def __init__(self) -> None:
            super().__init__()
            self.handle = h

        def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
            pairs = [(ctx.rstrip(" "), cont) for ctx, cont in (r.args for r in requests)]
            return [(s.logprob, all(s.token_correct)) for s in score_pairs(h, pairs, batch_size)]

        def loglikelihood_rolling(self, requests: list[Any]) -> list[float]:
            out = []
            for r in requests:
                chunks = _word_chunks(r.args[0], 64)
                out.append(sum(s.logprob for s in score_pairs(h, chunks, batch_size)))
            return out

        def generate_until(self, requests: list[Any]) -> list[str]:
            out = []
            for r in requests:
                ctx, kwargs = r.args
                text = h.generate(ctx, int(kwargs.get("max_gen_toks", 32)))
                for stop in kwargs.get("until") or []:
                    text = text.split(stop)[0]
                out.append(text)
            return out

    return EditriskLM()


def run_lm_eval(
    h: ModelHandle,
    tasks: Sequence[str],
    include_path: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 32,
) -> dict[str, dict[str, float]]:
    """Run lm-evaluation-harness `tasks` (task YAMLs may live in `include_path`) on `h`;
    returns {task: {metric: value}}."""
    model = lm_eval_model(h, batch_size)
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(
        include_path=str(include_path) if include_path else None,
        include_defaults=include_path is None,
    )
    res = lm_eval.simple_evaluate(
        model=model,
        tasks=list(tasks),
        task_manager=manager,
        limit=limit,
        bootstrap_iters=0,
        log_samples=False,
    )
    if res is None:
        raise EditriskError("lm-evaluation-harness returned no results")
    return {
        task: {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        for task, metrics in res["results"].items()
    }
