"""Edit metrics, each number labelled with its convention.

Conventions (keys are `<metric>.<convention>`):

- `prob_compare` (ROME/MEMIT): 1 when the wanted answer has a higher per-token probability
  (exp of the mean token log-prob) than the unwanted one, averaged over prompts.
- `prob_margin` (ROME/MEMIT "magnitude"): wanted minus unwanted per-token probability.
- `token_acc` (EasyEdit): teacher-forced accuracy of the wanted answer's tokens.
- `gen_match` (generation-based): 1 when the model's greedy continuation of the prompt
  (`GEN_MATCH_TOKENS` new tokens) states the wanted answer in its first sentence and no longer
  states the unwanted one (`gen_match()` documents the matcher), averaged over prompts. The
  three above are teacher-forced and flatter editors; this one asks the model to answer.
- `gen_match_sampled`: the same verdict on a sampled continuation (`Sampling`: temperature,
  nucleus, seed). Each prompt draws from its own generator, seeded by the seed and the prompt's
  text, so a verdict does not depend on the batch or on the other prompts evaluated.

Metrics: `efficacy` (rewrite prompt; wanted target_new over target_true), `generalization`
(paraphrases; same comparison), `specificity` (neighbour prompts; wanted the neighbour's own
answer over target_new), and per question kind of `EditRequest.questions` (`portability`,
`reverse`, `subject_other`; wanted the question's target over its unwanted answer). EasyEdit's
"locality" compares post-edit with pre-edit predictions;
`specificity.token_acc` here scores the neighbour's recorded answer instead.

Generation metrics: `fluency.ngram_entropy` (ROME: weighted mean of bigram and trigram
entropies, weights 2/3 and 4/3, in bits) and `consistency.tfidf` (ROME's reference score:
TF-IDF cosine similarity of the generations to reference text about target_new; the IDF here is
fitted on the evaluated texts, not on Wikipedia).
"""

from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from editrisk.evaluation.scoring import TargetScore, score_targets
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest
from editrisk.tokens import prompt_ids, target_ids

Pair = tuple[str, str]
TEACHER_FORCED = ("prob_compare", "prob_margin", "token_acc")
GENERATED = ("gen_match", "gen_match_sampled")
CONVENTIONS = (*TEACHER_FORCED, *GENERATED)
EDIT_METRICS = ("efficacy", "generalization", "specificity")
GEN_MATCH_TOKENS = 16  # greedy tokens per prompt for gen_match: room for a short answer sentence


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
        return {f"{prefix}.{c}": None for c in TEACHER_FORCED}
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
    """Every (prompt, target) pair the teacher-forced edit metrics of `r` need."""
    prompts = [r.rendered, *r.paraphrases]
    pairs = [(p, r.target_new) for p in prompts]
    if r.target_true is not None:
        pairs += [(p, r.target_true) for p in prompts]
    for n in r.neighbours:
        pairs += [(n.prompt, n.target), (n.prompt, r.target_new)]
    for q in r.questions:
        pairs += [(q.prompt, q.target)] + ([(q.prompt, q.unwanted)] if q.unwanted else [])
    return pairs


def edit_prompts(r: EditRequest) -> list[str]:
    """Every prompt the `gen_match` metrics of `r` generate from."""
    prompts = [r.rendered, *r.paraphrases, *(n.prompt for n in r.neighbours)]
    return prompts + [q.prompt for q in r.questions]


def keep_questions(requests: Sequence[EditRequest], kinds: Sequence[str]) -> list[EditRequest]:
    """`requests` carrying only their questions of `kinds` (so no other question is scored or
    generated from); unchanged requests are passed through as they are."""
    return [
        r
        if all(q.kind in kinds for q in r.questions)
        else dataclasses.replace(r, questions=tuple(q for q in r.questions if q.kind in kinds))
        for r in requests
    ]


def edit_scores(
    h: ModelHandle, requests: Sequence[EditRequest], batch_size: int = 32
) -> dict[Pair, TargetScore]:
    """Every (prompt, target) pair of `edit_pairs` over `requests`, scored in one batched pass."""
    pairs = list(dict.fromkeys(p for r in requests for p in edit_pairs(r)))
    return dict(zip(pairs, score_pairs(h, pairs, batch_size)))


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How `gen_match_sampled` samples: softmax at `temperature`, restricted to the smallest
    set of tokens holding `top_p` of the probability (nucleus), drawn with `seed`."""

    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def edit_generations(
    h: ModelHandle,
    requests: Sequence[EditRequest],
    max_new_tokens: int = GEN_MATCH_TOKENS,
    batch_size: int = 32,
    sampling: Sampling | None = None,
) -> dict[str, str]:
    """Continuation of every prompt of `edit_prompts` over `requests` (greedy, or sampled with
    `sampling`), in one batched pass (prompt -> new text), each up to the end of its first
    sentence (all gen_match reads)."""
    prompts = list(dict.fromkeys(p for r in requests for p in edit_prompts(r)))
    texts = greedy_continuations(
        h, prompts, max_new_tokens, batch_size, until_sentence_end=True, sampling=sampling
    )
    return dict(zip(prompts, texts))


def _gen_matches(
    r: EditRequest,
    gens: dict[str, str],
    items: Sequence[tuple[str, str, str | None]],
    prefix: str,
    convention: str = "gen_match",
) -> dict[str, float | None]:
    """`<prefix>.<convention>`: mean gen_match verdict over (prompt, wanted, unwanted) items."""
    verdicts = [
        float(gen_match(gens[p], r.forms(w), r.forms(u) if u is not None else None))
        for p, w, u in items
    ]
    return {f"{prefix}.{convention}": _mean(verdicts)}


def edit_metrics(
    h: ModelHandle,
    requests: Sequence[EditRequest],
    batch_size: int = 32,
    scores: dict[Pair, TargetScore] | None = None,
    conventions: Sequence[str] = TEACHER_FORCED,
    generations: dict[str, str] | None = None,
    questions: Sequence[str] = (),
    sampled: dict[str, str] | None = None,
) -> list[dict[str, float | None]]:
    """Per request: efficacy, generalization, specificity and each question kind of
    `questions` (none by default: WorldFacts' questions make teacher-forced scoring 2.3-2.6x
    slower; `QUESTION_KINDS` for all), in each of `conventions`.

    Teacher-forced conventions score all pairs of all requests in one batched pass (or take
    them from `scores`, an `edit_scores` of the same requests); `gen_match` generates from all
    prompts in one batched pass (or reads `generations`, an `edit_generations`), and
    `gen_match_sampled` likewise with the default `Sampling` (or reads `sampled`). A metric
    without prompts (or a comparison without an unwanted answer) is None; question kinds are
    measured on requests that carry questions.
    """
    unknown = set(conventions) - set(CONVENTIONS)
    if unknown:
        raise ValueError(f"unknown convention(s) {sorted(unknown)}; choose from {CONVENTIONS}")
    requests = keep_questions(requests, questions)
    tf = any(c in TEACHER_FORCED for c in conventions)
    if tf and scores is None:
        scores = edit_scores(h, requests, batch_size)
    if "gen_match" in conventions and generations is None:
        generations = edit_generations(h, requests, batch_size=batch_size)
    if "gen_match_sampled" in conventions and sampled is None:
        sampled = edit_generations(h, requests, batch_size=batch_size, sampling=Sampling())
    generated = [(c, g) for c, g in (("gen_match", generations), ("gen_match_sampled", sampled))
                 if c in conventions and g is not None]  # fmt: skip
    keep = {f"{m}.{c}" for m in (*EDIT_METRICS, *questions) for c in conventions}
    rows = []
    for r in requests:
        prompts = [r.rendered, *r.paraphrases]
        groups: list[tuple[str, list[tuple[str, str, str | None]]]] = [
            ("efficacy", [(prompts[0], r.target_new, r.target_true)]),
            ("generalization", [(p, r.target_new, r.target_true) for p in prompts[1:]]),
            ("specificity", [(n.prompt, n.target, r.target_new) for n in r.neighbours]),
        ]
        groups += [
            (kind, [(q.prompt, q.target, q.unwanted) for q in r.questions if q.kind == kind])
            for kind in (questions if r.questions else ())
        ]
        row: dict[str, float | None] = {}
        for name, items in groups:
            if tf and scores is not None:
                row.update(
                    _comparisons(
                        [scores[(p, w)] for p, w, _ in items],
                        [scores[(p, u)] if u is not None else None for p, _, u in items],
                        name,
                    )
                )
            for convention, gens in generated:
                row.update(_gen_matches(r, gens, items, name, convention))
        rows.append({"id": r.id, **{k: v for k, v in row.items() if k in keep}})
    return rows


def summarize(rows: Sequence[dict[str, float | str | None]]) -> dict[str, float | None]:
    """Mean of every numeric key over rows (None values are skipped), with `n` per key."""
    keys = dict.fromkeys(k for r in rows for k, v in r.items() if not isinstance(v, str))
    out: dict[str, float | None] = {}
    for k in keys:
        vals = [r[k] for r in rows if isinstance(r.get(k), (int, float))]
        out[k] = sum(vals) / len(vals) if vals else None
    return out


# -- generation-based success (the `gen_match` convention) ----------------------------------------
_ABBREVIATIONS = frozenset(
    {"st", "mt", "ft", "dr", "mr", "mrs", "ms", "jr", "sr", "no", "vs", "etc", "co", "inc"}
)
_SENTENCE_END = re.compile(r"\n|[.!?](?=\s|$)")
_ARTICLES = frozenset({"the", "a", "an"})


def first_sentence(text: str) -> str:
    """`text` up to its first sentence end: a line break, or `.`/`!`/`?` before a space or the
    end, unless the period closes a capital initial ("D.C.", "J. Smith") or a common abbreviation
    ("St.", "Mt.", "Dr."). A generation continues its prompt, so its first sentence is the
    prompt's own sentence, completed."""
    text = text.lstrip()
    for m in _SENTENCE_END.finditer(text):
        before = text[: m.start()]
        word = re.search(r"(\w*)$", before).group(1)  # type: ignore[union-attr]
        initial = len(word) == 1 and word.isupper() and re.search(r"(?:^|[\s.])\w$", before)
        if m.group() == "." and (initial or word.lower() in _ABBREVIATIONS):
            continue
        return before
    return text


def normalised_words(text: str) -> list[str]:
    """Case-folded, accent-free alphanumeric words: punctuation, apostrophes and hyphens
    separate words ("Côte d'Ivoire" -> ["cote", "d", "ivoire"]), "&" reads "and"."""
    text = unicodedata.normalize("NFKD", text.replace("&", " and "))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return re.findall(r"[^\W_]+", text)


def _spans(words: Sequence[str], forms: Iterable[str]) -> list[tuple[int, int]]:
    """Where any of `forms` (a leading article dropped) occurs in `words` as whole words."""
    out = []
    for form in forms:
        w = normalised_words(form)
        if len(w) > 1 and w[0] in _ARTICLES:
            w = w[1:]
        n = len(w)
        out += [(i, i + n) for i in range(len(words) - n + 1) if n and words[i : i + n] == w]
    return out


def states(text: str, answer: str | Sequence[str]) -> bool:
    """Whether the first sentence of `text` names `answer` (or any of a list of aliases)."""
    forms = [answer] if isinstance(answer, str) else answer
    return bool(_spans(normalised_words(first_sentence(text)), forms))


def gen_match(
    text: str, wanted: str | Sequence[str], unwanted: str | Sequence[str] | None = None
) -> bool:
    """The `gen_match` verdict on one generation: its first sentence states `wanted` (any of
    its aliases) and no longer states `unwanted` (an old answer only inside the wanted one,
    "Guinea" in "Papua New Guinea", does not count)."""
    words = normalised_words(first_sentence(text))
    good = _spans(words, [wanted] if isinstance(wanted, str) else wanted)
    if not good:
        return False
    if unwanted is None:
        return True
    bad = _spans(words, [unwanted] if isinstance(unwanted, str) else unwanted)
    return not any(not any(a <= i and j <= b for a, b in good) for i, j in bad)


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


def prompt_seed(seed: int, prompt: str) -> int:
    """The sampling seed of one prompt: the run's seed and the prompt's text (stable across
    processes, unlike `hash`)."""
    return (seed * 0x9E3779B1 + zlib.crc32(prompt.encode("utf-8"))) % 2**63


def greedy_continuations(
    h: ModelHandle,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 32,
    until_sentence_end: bool = False,
    sampling: Sampling | None = None,
) -> list[str]:
    """Greedy completions (new text only) of `prompts`: each distinct prompt once, batched in
    token-length order with left padding, reusing each step's keys and values (`generate`'s
    cache), so a batch costs one prompt pass and one token per new step.

    `until_sentence_end`: a row stops once its first sentence is over (its end and one more
    character are out: `first_sentence` can no longer change), and a batch once all its rows
    have; the text is then a prefix of the full completion with the same first sentence.
    `sampling`: sample instead, each row from its own generator (`prompt_seed`), so a prompt's
    text is the same whatever batch it is in."""
    import torch
    from transformers import (
        LogitsProcessor,
        LogitsProcessorList,
        StoppingCriteria,
        StoppingCriteriaList,
    )

    class SeededSampler(LogitsProcessor):
        """Draws each row's next token from its own generator and leaves only that token
        possible, so `generate`'s greedy step takes it."""

        def __init__(self, chunk: Sequence[str], s: Sampling) -> None:
            self.s = s
            self.gens = [torch.Generator().manual_seed(prompt_seed(s.seed, p)) for p in chunk]

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            probs = torch.softmax(scores.float() / self.s.temperature, dim=-1).cpu()
            out = torch.full_like(scores, -math.inf)
            for i, g in enumerate(self.gens):
                p, order = probs[i].sort(descending=True)
                keep = int((p.cumsum(0) < self.s.top_p).sum()) + 1  # smallest set >= top_p
                pick = torch.multinomial(p[:keep], 1, generator=g)
                out[i, order[pick]] = 0.0
            return out

    class SentenceOver(StoppingCriteria):
        def __init__(self, start: int) -> None:
            self.start = start

        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            texts = tok.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
            over = [len(t.lstrip()) > len(first_sentence(t)) + 1 for t in texts]
            return torch.tensor(over, dtype=torch.bool, device=input_ids.device)

    tok, by_prompt = h.tokenizer, {}
    unique = list(dict.fromkeys(prompts))
    unique.sort(key=lambda p: len(prompt_ids(tok, p)))
    side = tok.padding_side
    tok.padding_side = "left"
    try:
        for i in range(0, len(unique), batch_size):
            chunk = unique[i : i + batch_size]
            batch = tok(chunk, return_tensors="pt", padding=True)
            batch = {k: v.to(h.device) for k, v in batch.items()}
            start = batch["input_ids"].shape[1]
            stop = StoppingCriteriaList([SentenceOver(start)] if until_sentence_end else [])
            sample = LogitsProcessorList([SeededSampler(chunk, sampling)] if sampling else [])
            with torch.no_grad():
                ids = h.model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    use_cache=True,
                    pad_token_id=tok.pad_token_id,
                    stopping_criteria=stop,
                    logits_processor=sample,
                )
            new = ids[:, start:]
            by_prompt.update(zip(chunk, tok.batch_decode(new, skip_special_tokens=True)))
    finally:
        tok.padding_side = side
    return [by_prompt[p] for p in prompts]


def request_detail(
    h: ModelHandle,
    requests: Sequence[EditRequest],
    batch_size: int = 32,
    max_new_tokens: int = GENERATION_TOKENS,
    scores: dict[Pair, TargetScore] | None = None,
    generations: dict[str, str] | None = None,
) -> list[dict[str, str | float | None]]:
    """Per request, what a reader checks by eye: the rewrite prompt, both targets, their
    per-token probabilities (`p_new.per_token`, `p_true.per_token`: exp of the mean token
    log-prob; from `scores` when given) and the greedy continuation of the prompt
    (`generation.greedy`; from `generations`, an `edit_generations`, when given)."""
    if scores is None:
        pairs = [(r.rendered, r.target_new) for r in requests]
        pairs += [(r.rendered, r.target_true) for r in requests if r.target_true is not None]
        scores = dict(zip(pairs, score_pairs(h, pairs, batch_size)))
    probs = {pair: score.prob for pair, score in scores.items()}
    prompts = [r.rendered for r in requests]
    gens = (
        [generations[p] for p in prompts]
        if generations is not None
        else greedy_continuations(h, prompts, max_new_tokens, batch_size)
    )
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
