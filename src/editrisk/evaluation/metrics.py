"""Edit metrics, each number labelled with its convention.

Conventions (keys are `<metric>.<convention>`):

- `prob_compare` (ROME/MEMIT): 1 when the wanted answer has a higher per-token probability
  (exp of the mean token log-prob) than the unwanted one, averaged over prompts.
- `prob_margin` (ROME/MEMIT "magnitude"): wanted minus unwanted per-token probability.
- `token_acc` (EasyEdit): teacher-forced accuracy of the wanted answer's tokens.

Metrics: `efficacy` (rewrite prompt; wanted target_new over target_true), `generalization`
(paraphrases; same comparison), `specificity` (neighbour prompts; wanted the neighbour's own
answer over target_new). EasyEdit's "locality" compares post-edit with pre-edit predictions;
`specificity.token_acc` here scores the neighbour's recorded answer instead.

Generation metrics: `fluency.ngram_entropy` (ROME: weighted mean of bigram and trigram
entropies, weights 2/3 and 4/3, in bits) and `consistency.tfidf` (ROME's reference score:
TF-IDF cosine similarity of the generations to reference text about target_new; the IDF here is
fitted on the evaluated texts, not on Wikipedia).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from editrisk.evaluation.scoring import TargetScore, score_targets
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest
from editrisk.tokens import prompt_ids, target_ids

Pair = tuple[str, str]
CONVENTIONS = ("prob_compare", "prob_margin", "token_acc")
EDIT_METRICS = ("efficacy", "generalization", "specificity")


def score_pairs(h: ModelHandle, pairs: Sequence[Pair], batch_size: int = 32) -> list[TargetScore]:
    """`score_targets` over deduplicated pairs, batched in token-length order to cut padding."""
    unique = list(dict.fromkeys(pairs))
    tok = h.tokenizer
    length = [len(prompt_ids(tok, p)) + len(target_ids(tok, t)) for p, t in unique]
    order = sorted(range(len(unique)), key=length.__getitem__)
    scored = score_targets(h, [unique[i] for i in order], batch_size=batch_size)
    by_pair = {unique[i]: s for i, s in zip(order, scored)}
    return [by_pair[p] for p in pairs]


def _comparisons(
    wanted: list[TargetScore], unwanted: list[TargetScore | None], prefix: str
) -> dict[str, float | None]:
    """Mean prob_compare / prob_margin / token_acc over aligned prompt lists."""
    if not wanted:
        return {f"{prefix}.{c}": None for c in CONVENTIONS}
    pairs = [(w, u) for w, u in zip(wanted, unwanted) if u is not None]
    out: dict[str, float | None] = {
        f"{prefix}.prob_compare": _mean(float(w.prob > u.prob) for w, u in pairs),
        f"{prefix}.prob_margin": _mean(w.prob - u.prob for w, u in pairs),
        f"{prefix}.token_acc": _mean(w.token_accuracy for w in wanted),
    }
    return out


def _mean(xs: Iterable[float]) -> float | None:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else None


def edit_pairs(r: EditRequest) -> list[Pair]:
    """Every (prompt, target) pair the edit metrics of `r` need."""
    prompts = [r.rendered, *r.paraphrases]
    pairs = [(p, r.target_new) for p in prompts]
    if r.target_true is not None:
        pairs += [(p, r.target_true) for p in prompts]
    for n in r.neighbours:
        pairs += [(n.prompt, n.target), (n.prompt, r.target_new)]
    return pairs


def edit_scores(
    h: ModelHandle, requests: Sequence[EditRequest], batch_size: int = 32
) -> dict[Pair, TargetScore]:
    """Every (prompt, target) pair of `edit_pairs` over `requests`, scored in one batched pass."""
    pairs = list(dict.fromkeys(p for r in requests for p in edit_pairs(r)))
    return dict(zip(pairs, score_pairs(h, pairs, batch_size)))


def edit_metrics(
    h: ModelHandle,
    requests: Sequence[EditRequest],
    batch_size: int = 32,
    scores: dict[Pair, TargetScore] | None = None,
) -> list[dict[str, float | None]]:
    """Per request: efficacy, generalization and specificity in every convention.

    All prompts of all requests are scored in one batched pass (or taken from `scores`, an
    `edit_scores` of the same requests). A metric without prompts (or a comparison without
    target_true) is None.
    """
    if scores is None:
        scores = edit_scores(h, requests, batch_size)
    rows = []
    for r in requests:
        prompts = [r.rendered, *r.paraphrases]
        new = [scores[(p, r.target_new)] for p in prompts]
        true = [scores[(p, r.target_true)] if r.target_true else None for p in prompts]
        row = {"id": r.id}
        row.update(_comparisons(new[:1], true[:1], "efficacy"))
        row.update(_comparisons(new[1:], true[1:], "generalization"))
        row.update(
            _comparisons(
                [scores[(n.prompt, n.target)] for n in r.neighbours],
                [scores[(n.prompt, r.target_new)] for n in r.neighbours],
                "specificity",
            )
        )
        rows.append(row)
    return rows


def summarize(rows: Sequence[dict[str, float | str | None]]) -> dict[str, float | None]:
    """Mean of every numeric key over rows (None values are skipped), with `n` per key."""
    keys = dict.fromkeys(k for r in rows for k, v in r.items() if not isinstance(v, str))
    out: dict[str, float | None] = {}
    for k in keys:
        vals = [r[k] for r in rows if isinstance(r.get(k), (int, float))]
        out[k] = sum(vals) / len(vals) if vals else None
    return out


# -- generation metrics ---------------------------------------------------------------------------
_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens."""
    return _WORD.findall(text.lower())


def ngram_entropy(
    text: str, ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3)
) -> float:
    """ROME's fluency: weighted arithmetic mean of n-gram entropies (bits) of `text`."""
    toks = words(text)
    vals = []
    for n, w in zip(ns, weights):
        counts = Counter(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))
        total = sum(counts.values())
        ent = -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0
        vals.append(w * ent)
    return sum(vals) / len(vals)


def tfidf_similarity(
    texts: Sequence[str], references: Sequence[str], corpus: Sequence[str] | None = None
) -> list[float]:
    """Cosine similarity of TF-IDF vectors of `texts[i]` and `references[i]`.

    The IDF is fitted on `corpus` (default: the texts and references themselves).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(tokenizer=words, lowercase=False, token_pattern=None)
    vec.fit(list(corpus) if corpus is not None else [*texts, *references])
    a, b = vec.transform(texts), vec.transform(references)
    return [float(x) for x in a.multiply(b).sum(axis=1).A1]  # rows are L2-normalised


def generation_metrics(
    h: ModelHandle, requests: Sequence[EditRequest], max_new_tokens: int = 32
) -> list[dict[str, float | None]]:
    """Per request: fluency of its generations and their consistency with the reference text
    about target_new (`extra['reference']`; None when a request has none)."""
    gens = [
        " ".join(p + h.generate(p, max_new_tokens) for p in r.generation_prompts) for r in requests
    ]
    refs = [r.extra.get("reference") for r in requests]
    with_ref = [i for i, ref in enumerate(refs) if isinstance(ref, str) and ref.strip()]
    sims = (
        tfidf_similarity([gens[i] for i in with_ref], [refs[i] for i in with_ref])
        if with_ref
        else []
    )
    sim_of = dict(zip(with_ref, sims))
    return [
        {
            "id": r.id,
            "fluency.ngram_entropy": ngram_entropy(g) if r.generation_prompts else None,
            "consistency.tfidf": sim_of.get(i) if r.generation_prompts else None,
        }
        for i, (r, g) in enumerate(zip(requests, gens))
    ]


# -- per-request detail (the report's drill-down) --------------------------------------------------
GENERATION_TOKENS = 8  # greedy tokens per edited prompt: a few words, cheap at every check


def greedy_continuations(
    h: ModelHandle, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 32
) -> list[str]:
    """Greedy completions (new text only) of `prompts`, batched with left padding."""
    import torch

    tok, out = h.tokenizer, []
    side = tok.padding_side
    tok.padding_side = "left"
    try:
        for i in range(0, len(prompts), batch_size):
            batch = tok(list(prompts[i : i + batch_size]), return_tensors="pt", padding=True)
            batch = {k: v.to(h.device) for k, v in batch.items()}
            with torch.no_grad():
                ids = h.model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tok.pad_token_id,
                )
            new = ids[:, batch["input_ids"].shape[1] :]
            out += tok.batch_decode(new, skip_special_tokens=True)
    finally:
        tok.padding_side = side
    return out


def request_detail(
    h: ModelHandle,
    requests: Sequence[EditRequest],
    batch_size: int = 32,
    max_new_tokens: int = GENERATION_TOKENS,
    scores: dict[Pair, TargetScore] | None = None,
) -> list[dict[str, str | float | None]]:
    """Per request, what a reader checks by eye: the rewrite prompt, both targets, their
    per-token probabilities (`p_new.per_token`, `p_true.per_token`: exp of the mean token
    log-prob; from `scores` when given) and the greedy continuation of the prompt
    (`generation.greedy`)."""
    if scores is None:
        pairs = [(r.rendered, r.target_new) for r in requests]
        pairs += [(r.rendered, r.target_true) for r in requests if r.target_true is not None]
        scores = dict(zip(pairs, score_pairs(h, pairs, batch_size)))
    probs = {pair: score.prob for pair, score in scores.items()}
    gens = greedy_continuations(h, [r.rendered for r in requests], max_new_tokens, batch_size)
    return [
        {
            "prompt": r.rendered,
            "target_new": r.target_new,
            "target_true": r.target_true,
            "p_new.per_token": probs[(r.rendered, r.target_new)],
            "p_true.per_token": probs.get((r.rendered, r.target_true)),
            "generation.greedy": g,
        }
        for r, g in zip(requests, gens)
    ]
