"""The language family: a causal LM, edit sets of fact requests, edit metrics by the three
teacher-forced conventions and/or generation (gen_match), on the rewrite, paraphrases,
neighbours and selected question kinds, general ability (held-out facts, perplexity, shifted
prompts)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from torch import nn

from editrisk.editors.base import Editor
from editrisk.engine.config import Section
from editrisk.errors import EditriskError, InputError
from editrisk.families import register_family
from editrisk.families.base import Family, Row
from editrisk.requests import EditRequest


class MQDSpec(Section):
    question_types: list[str] = Field(default_factory=lambda: ["gen"])
    k: int = Field(4, ge=2)
    max_distinct_targets: int | None = None
    target_tokens: list[int] | None = None


class LanguageData(Section):
    """Where the edit pool and the held-out facts come from."""

    source: Literal["worldfacts", "mqd", "file", "bigfacts"] = Field(
        "worldfacts",
        description="bigfacts: tens of thousands of facts, known or not (marked when "
        "filter_known), held-out facts known ones",
    )
    n_edits: int = Field(30, ge=1, description="size of an edit set that gives no `n`")
    n_heldout: int = Field(50, ge=0, description="known facts never edited")
    filter_known: bool = Field(True, description="keep only facts the model knows")
    relations: list[str] | None = None
    limit_per_relation: int | None = Field(None, ge=1)
    order: Literal["shuffled", "round_robin"] = Field(
        "shuffled", description="seeded shuffle, or relations taken in turn"
    )
    heldout_from: Literal["after_edits", "end"] = Field(
        "after_edits", description="held-out facts right after the edit sets, or the last ones"
    )
    path: str | None = Field(None, description="source 'file': requests file")
    format: str = "auto"
    heldout_path: str | None = None
    mqd: MQDSpec = Field(default_factory=MQDSpec)

    @model_validator(mode="after")
    def _file_needs_path(self) -> LanguageData:
        if self.source == "file" and not self.path:
            raise ValueError("source 'file' needs data.path (a requests file)")
        return self


class LanguageEditSet(Section):
    """A slice of the edit pool."""

    start: int = Field(0, ge=0)
    n: int | None = Field(None, ge=1, description="default: data.n_edits")


Convention = Literal["prob_compare", "prob_margin", "token_acc", "gen_match", "gen_match_sampled"]
QuestionKind = Literal["portability", "reverse", "subject_other"]


class GenSampling(Section):
    """How `gen_match_sampled` samples (editrisk.evaluation.metrics.Sampling)."""

    temperature: float = Field(0.7, gt=0, allow_inf_nan=False)
    top_p: float = Field(0.95, gt=0, le=1)
    seed: int = 0


class LanguageEvaluation(Section):
    OMIT_AT_DEFAULT = frozenset({"gen_match_sampling"})

    batch_size: int = Field(32, ge=1)
    conventions: list[Convention] = Field(
        default_factory=lambda: ["prob_compare", "prob_margin", "token_acc"],
        min_length=1,
        description="edit-metric conventions: the teacher-forced three (one scoring pass) "
        "and/or gen_match (greedy generation from every prompt)",
    )
    gen_match_tokens: int = Field(16, ge=1, description="gen_match: new tokens per prompt")
    gen_match_sampling: GenSampling = Field(
        default_factory=GenSampling,
        description="gen_match_sampled: temperature, nucleus (top_p) and seed; each prompt "
        "samples from its own generator, seeded by the seed and its text",
    )
    questions: list[QuestionKind] = Field(
        default_factory=list,
        description="question kinds of the requests to measure (portability, reverse, "
        "subject_other; a request without one of them: None); none by default",
    )
    request_rows: bool = Field(
        True,
        description="one row per request besides the summary (with its prompt, targets, "
        "their probabilities and a short greedy generation)",
    )
    perplexity_sentences: int = Field(48, ge=0)
    shifts: list[str] = Field(default_factory=list)
    shift_severities: list[int] = Field(default_factory=lambda: [1, 3])

    @field_validator("conventions", "questions")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"has duplicates: {v}")
        return v


@register_family
class LanguageFamily(Family):
    name = "language"
    Data = LanguageData
    EditSet = LanguageEditSet
    Evaluation = LanguageEvaluation

    @classmethod
    def resolve_model(cls, model: Any, source: str) -> Any:
        if model is None:
            return "smollm2-135m"
        if not isinstance(model, str) or not model:
            raise InputError("a model name, folder or hub id", file=source, field="model")
        return model

    def __init__(self, cfg: Any, seed: int) -> None:
        from editrisk.models import load_model

        super().__init__(cfg, seed)
        self.h = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype, seed=seed)
        self.data = LanguageData.model_validate(cfg.data)
        self.ev = LanguageEvaluation.model_validate(cfg.evaluation)
        self.sets, self.heldout = self._build()

    @property
    def module(self) -> nn.Module:
        return self.h.model

    @property
    def handle(self) -> Any:
        return self.h

    def model_info(self) -> dict[str, Any]:
        return {
            "model": self.cfg.model,
            "fingerprint": self.h.fingerprint(),
            "n_params": self.h.n_params,
        }

    def edit_set(self, name: str) -> list[EditRequest]:
        return self.sets[name]

    def request_id(self, request: EditRequest) -> str:
        return request.id

    def n_layers(self) -> int:
        return self.h.arch.n_layers

    def layer_index(self, param: str) -> int | None:
        return self.h.arch.layer_of(param)

    def layer_params(self, layer: int) -> dict[str, Any]:
        return {"layers": [layer]}

    def check_inputs(self, editor: Editor) -> None:
        from editrisk.tokens import check_fits

        for layer in getattr(editor.hparams, "layers", ()) or ():
            self.check_layer(layer)
        generates = any(c in ("gen_match", "gen_match_sampled") for c in self.ev.conventions)
        gen = self.ev.gen_match_tokens if generates else 0
        d, reserve = self.data, max(editor.tokens_before_prompt(), gen)
        sets = [(d.path or f"edit set {n!r}", reqs) for n, reqs in self.sets.items()]
        for where, reqs in (*sets, (d.heldout_path or "held-out facts", self.heldout)):
            check_fits(self.h.tokenizer, self.h.context_length, reqs, reserve=reserve,
                       model=self.h.name, file=where)  # fmt: skip

    def warm(self, editor: Editor) -> None:
        if hasattr(editor, "covariances"):
            editor.covariances(self.h, editor.layers_for(self.h))
            editor.prefixes(self.h)

    def evaluate(self, what: str, requests: Sequence[EditRequest]) -> list[Row]:
        from editrisk.evaluation.metrics import (
            TEACHER_FORCED,
            Sampling,
            edit_generations,
            edit_metrics,
            edit_scores,
            keep_questions,
            request_detail,
            summarize,
        )

        if what == "general":
            return self._general()
        ev, scores, gens, sampled = self.ev, None, None, None
        requests = keep_questions(requests, ev.questions)
        if any(c in TEACHER_FORCED for c in ev.conventions):
            scores = edit_scores(self.h, requests, ev.batch_size)
        if "gen_match" in ev.conventions:
            gens = edit_generations(self.h, requests, ev.gen_match_tokens, ev.batch_size)
        if "gen_match_sampled" in ev.conventions:
            how = Sampling(**ev.gen_match_sampling.model_dump())
            sampled = edit_generations(
                self.h, requests, ev.gen_match_tokens, ev.batch_size, sampling=how
            )
        per_request = edit_metrics(
            self.h, requests, ev.batch_size, scores, ev.conventions, gens, ev.questions, sampled
        )
        rows: list[Row] = [{"kind": "summary", "n": len(requests), **summarize(per_request)}]
        if ev.request_rows:
            detail = request_detail(
                self.h, requests, ev.batch_size, scores=scores, generations=gens
            )
            rows += [
                {"kind": "request", "request": r.id, **m, **d}
                | ({"known": r.extra["known"]} if "known" in r.extra else {})
                | ({"generation.sampled": sampled[r.rendered]} if sampled is not None else {})
                for r, m, d in zip(requests, per_request, detail)
            ]
        return rows

    def _general(self) -> list[Row]:
        from editrisk.evaluation.general import default_text_sample, heldout_accuracy, perplexity
        from editrisk.evaluation.shifts import shift_table

        ev, general = self.ev, {}
        if self.heldout:
            general.update(heldout_accuracy(self.h, self.heldout, ev.batch_size))
        if ev.perplexity_sentences:
            texts = default_text_sample(ev.perplexity_sentences)
            general.update(perplexity(self.h, texts, batch_size=ev.batch_size))
        if (le := getattr(self.cfg, "lm_eval", None)) is not None:
            from editrisk.evaluation.general import lm_eval_columns, run_lm_eval

            tasks = run_lm_eval(self.h, le.tasks, le.include_path, le.limit, le.batch_size,
                                le.num_fewshot)  # fmt: skip
            general.update(lm_eval_columns(tasks))
        rows: list[Row] = [{"kind": "general", **general}]
        if ev.shifts and self.heldout:
            table = shift_table(
                self.h, self.heldout, ev.shifts, ev.shift_severities, batch_size=ev.batch_size
            )
            rows += [{"kind": "shift", **r} for r in table]
        return rows

    def _build(self) -> tuple[dict[str, list[EditRequest]], list[EditRequest]]:
        """The edit sets (slices of the pool) and the held-out facts, seeded."""
        from editrisk.data.formats import load_requests
        from editrisk.data.mqd import build_mqd
        from editrisk.data.worldfacts import build_worldfacts, round_robin

        d, seed = self.data, self.seed
        spans = {
            name: (spec["start"], spec["start"] + (spec["n"] or d.n_edits))
            for name, spec in self.cfg.edit_sets.items()
        }
        end = max(stop for _, stop in spans.values())
        if d.source == "file":
            pool = load_requests(d.path, d.format, end)
            held = load_requests(d.heldout_path, "auto", d.n_heldout) if d.heldout_path else []
            return self._slices(pool, spans), held
        if d.source == "bigfacts":
            return self._bigfacts(spans, end)
        facts = build_worldfacts(
            self.h if d.filter_known else None, seed, d.relations, d.limit_per_relation
        )
        if d.order == "round_robin":
            facts = round_robin(facts, len(facts), seed)
        else:
            random.Random(seed).shuffle(facts)
        if d.source == "worldfacts":
            if d.heldout_from == "end":
                held = facts[len(facts) - d.n_heldout :] if d.n_heldout else []
                if end > len(facts) - len(held):
                    raise EditriskError(
                        f"data: the edit sets need {end} facts but only "
                        f"{len(facts) - len(held)} known facts are not held out"
                    )
            else:
                held = facts[end : end + d.n_heldout]
            return self._slices(facts, spans), held
        q = d.mqd
        tt = tuple(q.target_tokens) if q.target_tokens else None
        questions = build_mqd(
            facts, q.question_types, q.k, seed, q.max_distinct_targets, tt, self.h.tokenizer
        )
        sets = self._slices(questions, spans)
        used = {e.id.rsplit("/", 1)[0] for es in sets.values() for e in es}  # "<fact>/<type>"
        held = [f for f in facts if f.id not in used][: d.n_heldout]
        return sets, held

    def _bigfacts(
        self, spans: dict[str, tuple[int, int]], end: int
    ) -> tuple[dict[str, list[EditRequest]], list[EditRequest]]:
        """BigFacts in seeded order: the edit sets take what comes, known or not (marked in
        `extra["known"]` with `filter_known`); held-out facts are known ones never edited."""
        from editrisk.data.bigfacts import build_bigfacts, known_heldout, mark_known
        from editrisk.data.worldfacts import round_robin

        d, seed = self.data, self.seed
        pool = build_bigfacts(seed, d.relations, d.limit_per_relation)
        if d.order == "round_robin":
            pool = round_robin(pool, len(pool), seed)
        else:
            random.Random(seed).shuffle(pool)
        h = self.h if d.filter_known else None
        edits = mark_known(h, pool[:end], seed) if h is not None else pool[:end]
        rest = pool[end:] if d.heldout_from == "after_edits" else pool[end:][::-1]
        return self._slices(edits, spans), known_heldout(h, rest, d.n_heldout, seed)

    @staticmethod
    def _slices(
        pool: Sequence[EditRequest], spans: dict[str, tuple[int, int]]
    ) -> dict[str, list[EditRequest]]:
        out = {}
        for name, (start, stop) in spans.items():
            if stop > len(pool):
                raise EditriskError(
                    f"edit set {name!r} needs requests {start}..{stop} but only {len(pool)} "
                    "are available"
                )
            out[name] = list(pool[start:stop])
        return out
