"""General ability of a (possibly edited) model: held-out facts and perplexity (every number
from `score_targets`), and lm-evaluation-harness tasks through lm-eval's own `HFLM` wrapper
around the in-memory model, so they compare with published numbers."""

from __future__ import annotations

import contextlib
import functools
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from editrisk.delta import Delta
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


# -- lm-evaluation-harness -----------------------------------------------------------------------
def lm_eval_model(h: ModelHandle, batch_size: int = 16) -> Any:
    """lm-evaluation-harness's own `HFLM` around the in-memory model of `h` (edited or not:
    it reads the weights as they are when it runs), so the numbers are those `lm_eval --model
    hf` gives on the same weights. Needs the optional extra: pip install 'editrisk[lm-eval]'."""
    try:
        from lm_eval.models.huggingface import HFLM
    except ImportError as err:
        raise EditriskError(
            "lm-evaluation-harness is not installed: pip install 'editrisk[lm-eval]'"
        ) from err
    return HFLM(pretrained=h.model, tokenizer=h.tokenizer, batch_size=batch_size)


def lm_eval_tasks(tasks: Sequence[str], include_path: str | Path | None = None) -> Any:
    """lm-eval's `TaskManager` holding `tasks`, or an error naming those it lacks. Tasks are
    looked up in `include_path` first (indexing only that folder takes a second; lm-eval's
    full task list takes half a minute), then among lm-eval's own. Kept for the process, so
    a study measuring general ability at every step indexes once."""
    return _task_manager(tuple(tasks), str(include_path) if include_path is not None else None)


@functools.lru_cache(maxsize=8)
def _task_manager(tasks: tuple[str, ...], include_path: str | None) -> Any:
    try:
        from lm_eval.tasks import TaskManager
    except ImportError as err:
        raise EditriskError(
            "lm-evaluation-harness is not installed: pip install 'editrisk[lm-eval]'"
        ) from err
    if not tasks:
        raise EditriskError("name at least one lm-eval task")
    if include_path is not None and not Path(include_path).is_dir():
        raise EditriskError(f"lm-eval include path {include_path} is not a folder")
    manager = None
    if include_path is not None:
        manager = TaskManager(include_path=str(include_path), include_defaults=False)
    if manager is None or any(t not in manager.all_tasks for t in tasks):
        manager = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        where = f" (nor in {include_path})" if include_path else ""
        raise EditriskError(f"lm-eval has no task {unknown}{where}")
    return manager


def lm_eval_results(
    lm: Any,
    tasks: Sequence[str],
    include_path: str | Path | None = None,
    limit: int | float | None = None,
    num_fewshot: int | None = None,
    manager: Any = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """lm-eval's `simple_evaluate` of the `LM` (or registered model name) `lm` on `tasks`
    (from `manager`, else `lm_eval_tasks(tasks, include_path)`): its whole results."""
    import lm_eval

    res = lm_eval.simple_evaluate(
        model=lm,
        tasks=list(tasks),
        task_manager=manager or lm_eval_tasks(tasks, include_path),
        limit=limit,
        num_fewshot=num_fewshot,
        bootstrap_iters=0,
        **kwargs,
    )
    if res is None:
        raise EditriskError("lm-evaluation-harness returned no results")
    return res


def lm_eval_metrics(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} of lm-eval's results, numbers only ("acc,none" -> "acc"; a
    filter other than none stays: "exact_match,strict-match" -> "exact_match.strict-match")."""
    out: dict[str, dict[str, float]] = {}
    for task, metrics in results["results"].items():
        out[task] = {
            k.replace(",none", "").replace(",", "."): float(v)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    return out


def run_lm_eval(
    h: ModelHandle,
    tasks: Sequence[str],
    include_path: str | Path | None = None,
    limit: int | float | None = None,
    batch_size: int = 16,
    num_fewshot: int | None = None,
    delta: Delta | None = None,
    manager: Any = None,
) -> dict[str, dict[str, float]]:
    """lm-evaluation-harness `tasks` on `h` through lm-eval's `HFLM` (with `delta`: on the
    edited model, inside `delta.applied`, restored bitwise afterwards); {task: {metric:
    value}}. Task YAMLs may live in `include_path` (or come in `manager`, `lm_eval_tasks`)."""
    manager = manager or lm_eval_tasks(tasks, include_path)
    ctx = delta.applied(h.model) if delta is not None else contextlib.nullcontext()
    with ctx:
        lm = lm_eval_model(h, batch_size)
        res = lm_eval_results(lm, tasks, limit=limit, num_fewshot=num_fewshot, manager=manager)
    return lm_eval_metrics(res)


def lm_eval_columns(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """Flat row columns `lm_eval.<task>.<metric>` of `run_lm_eval`'s result."""
    return {f"lm_eval.{t}.{k}": v for t, m in metrics.items() for k, v in m.items()}
