"""MQD builder (Huang et al. 2024): the same facts as true/false, multiple-choice and
direct-generation questions, as editrisk requests.

For a fact request (subject, prompt, target_true, counterfactual target_new):

- `tf`: "True or false: <statement>. Answer:" where the statement asserts either the
  counterfactual (edit target "True") or the true object (edit target "False"), chosen by seed so
  the answer keys are balanced; the unedited answer is the other one.
- `mcq`: the prompt with k lettered options (the true object, the new one and k-2 of the
  relation's other objects, shuffled by seed); targets are option letters.
- `gen`: the fact's own prompt; the target is the new object itself.

Controls for the data-side causes the paper studies: `max_distinct_targets` draws every `gen`
target_new from a pool of that many objects per relation (target diversity) and `target_tokens`
keeps only objects whose token length lies in [lo, hi] (target length).
"""

from __future__ import annotations

import random
import string
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from editrisk.errors import EditriskError
from editrisk.requests import EditRequest, Neighbour

QUESTION_TYPES = ("tf", "mcq", "gen")
TF_TEMPLATE = "True or false: {statement}. Answer:"
MCQ_TEMPLATE = "Question: {question} ...?\nOptions: {options}\nAnswer:"


def _src(r: EditRequest) -> str:
    return str(r.extra.get("source_id", r.id))


def _statement(prompt: str, obj: str) -> str:
    return f"{prompt} {obj}"


def _tf(r: EditRequest, rng: random.Random) -> EditRequest:
    assert r.target_true is not None
    claim_new = rng.random() < 0.5
    obj = r.target_new if claim_new else r.target_true
    new, true = ("True", "False") if claim_new else ("False", "True")

    def q(prompt: str, o: str) -> str:
        return TF_TEMPLATE.format(statement=_statement(prompt, o))

    return EditRequest(
        subject=r.subject,
        prompt=q(r.prompt, obj),
        target_new=new,
        target_true=true,
        paraphrases=tuple(q(p, obj) for p in r.paraphrases),
        neighbours=tuple(Neighbour(q(n.prompt, n.target), "True") for n in r.neighbours),
        id=f"{_src(r)}/tf",
        relation=r.relation,
        extra={
            "question_type": "tf",
            "source_id": _src(r),
            "claim": obj,
            "answer_key": {"edited": new, "unedited": true},
        },
    )


def _options(correct: Sequence[str], pool: Sequence[str], k: int, rng: random.Random) -> list[str]:
    others = [o for o in dict.fromkeys(pool) if o not in correct]
    opts = list(dict.fromkeys(correct)) + rng.sample(
        others, min(k - len(set(correct)), len(others))
    )
    rng.shuffle(opts)
    return opts


def _mcq_text(prompt: str, opts: Sequence[str]) -> str:
    listed = " ".join(f"{string.ascii_uppercase[i]}. {o}" for i, o in enumerate(opts))
    return MCQ_TEMPLATE.format(question=prompt, options=listed)


def _mcq(r: EditRequest, pool: Sequence[str], k: int, rng: random.Random) -> EditRequest:
    assert r.target_true is not None
    opts = _options([r.target_true, r.target_new], pool, k, rng)
    letter = {o: string.ascii_uppercase[i] for i, o in enumerate(opts)}
    neighbours = []
    for n in r.neighbours:
        n_opts = _options([n.target, r.target_new], pool, k, rng)
        neighbours.append(
            Neighbour(_mcq_text(n.prompt, n_opts), string.ascii_uppercase[n_opts.index(n.target)])
        )
    return EditRequest(
        subject=r.subject,
        prompt=_mcq_text(r.prompt, opts),
        target_new=letter[r.target_new],
        target_true=letter[r.target_true],
        paraphrases=tuple(_mcq_text(p, opts) for p in r.paraphrases),
        neighbours=tuple(neighbours),
        id=f"{_src(r)}/mcq",
        relation=r.relation,
        extra={
            "question_type": "mcq",
            "source_id": _src(r),
            "options": opts,
            "answer_key": {"edited": letter[r.target_new], "unedited": letter[r.target_true]},
        },
    )


def _gen(r: EditRequest, target_new: str) -> EditRequest:
    return EditRequest(
        subject=r.subject,
        prompt=r.prompt,
        target_new=target_new,
        target_true=r.target_true,
        paraphrases=r.paraphrases,
        neighbours=tuple(n for n in r.neighbours if n.target != target_new),
        generation_prompts=r.generation_prompts,
        id=f"{r.id}/gen",
        relation=r.relation,
        extra={
            "question_type": "gen",
            "source_id": r.id,
            "answer_key": {"edited": target_new, "unedited": r.target_true},
        },
    )


def build_mqd(
    facts: Sequence[EditRequest],
    question_types: Sequence[str] = QUESTION_TYPES,
    k: int = 4,
    seed: int = 0,
    max_distinct_targets: int | None = None,
    target_tokens: tuple[int, int] | None = None,
    tokenizer: Any = None,
) -> list[EditRequest]:
    """The facts as MQD questions, in fact order, one request per (fact, question type).

    Facts need `target_true`. Objects of the same relation (true and new targets of all
    facts) form the option and target pools. `target_tokens` needs `tokenizer`.
    """
    bad = set(question_types) - set(QUESTION_TYPES)
    if bad:
        raise EditriskError(f"unknown question type(s) {sorted(bad)}; choose from {QUESTION_TYPES}")
    if k < 2:
        raise EditriskError("multiple-choice questions need k >= 2 options")
    if target_tokens is not None and tokenizer is None:
        raise EditriskError("target_tokens needs a tokenizer to measure target length")
    for i, r in enumerate(facts):
        if r.target_true is None:
            raise EditriskError(
                f"fact {i} ({r.id!r}) has no target_true; MQD needs the true answer"
            )
    pools: dict[str | None, list[str]] = defaultdict(list)
    for r in facts:
        pools[r.relation] += [r.target_true, r.target_new]  # type: ignore[list-item]
    pools = {rel: list(dict.fromkeys(objs)) for rel, objs in pools.items()}
    targets = _target_pools(pools, seed, max_distinct_targets, target_tokens, tokenizer)
    out = []
    for r in facts:
        rng = random.Random(f"{seed}:mqd:{r.id}")
        new = r.target_new
        allowed = [o for o in targets[r.relation] if o != r.target_true]
        if new not in allowed:
            if not allowed:
                continue  # no target of the wanted length/diversity for this fact
            new = rng.choice(allowed)
        base = _gen(r, new)
        for qt in question_types:
            if qt == "tf":
                out.append(_tf(base, rng))
            elif qt == "mcq":
                out.append(_mcq(base, pools[r.relation], k, rng))
            else:
                out.append(base)
    return out


def _target_pools(
    pools: dict[str | None, list[str]],
    seed: int,
    max_distinct: int | None,
    tokens: tuple[int, int] | None,
    tokenizer: Any,
) -> dict[str | None, list[str]]:
    from editrisk.tokens import target_ids

    out = {}
    for rel, objs in pools.items():
        keep = list(objs)
        if tokens is not None:
            lo, hi = tokens
            keep = [o for o in keep if lo <= len(target_ids(tokenizer, o)) <= hi]
        if max_distinct is not None:
            keep = random.Random(f"{seed}:pool:{rel}").sample(keep, min(max_distinct, len(keep)))
        out[rel] = keep
    return out
